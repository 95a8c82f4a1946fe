"""Synthetic fitting problems with known answers: random plausible people photographed by known cameras.

Used by the tests and ``benchmarks/eval_fit.py`` to measure what fitting can recover: pose
and shape are drawn from ranges a standing person takes (arms down to raised, knees and
elbows bent the right way, a turn of up to ±``max_yaw`` degrees), the camera frames the
person to 60–85 % of the image height, keypoints get Gaussian pixel noise, and the mask is
the exact rendered silhouette.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from avatarcli.body.joints import JOINT_INDEX
from avatarcli.fitting.camera import FRONT_VIEW_R, intrinsics_matrix, yaw_axis_angle
from avatarcli.fitting.landmarks import body_landmark_map
from avatarcli.fitting.optimize import ViewInput
from avatarcli.fitting.quality import silhouette


@dataclass
class SyntheticCase:
    view: ViewInput
    shape: torch.Tensor  # (1, K)
    pose: torch.Tensor  # (1, 55, 3)
    transl: torch.Tensor  # (1, 3)
    joints: torch.Tensor  # (55, 3) true joints


def random_pose(rng: np.random.Generator, rest_joints: torch.Tensor, max_yaw: float = 40.0) -> torch.Tensor:
    """A plausible standing pose (1, 55, 3) for a body with these (55, 3) rest joints.

    Arm raise is drawn as an absolute angle (15°–95° from hanging straight down) and turned
    into a rotation from the body's own rest pose, so T-pose and A-pose backends get the same
    distribution; elbows and knees bend about their hinge axes.
    """
    from avatarcli.fitting.priors import hinge_axes

    rest = rest_joints.detach().cpu().float()
    pose = np.zeros((55, 3), np.float32)
    pose[0] = yaw_axis_angle(float(rng.uniform(-max_yaw, max_yaw))).numpy()
    pose[0, 0] += rng.uniform(-0.1, 0.1)
    ids, axes = hinge_axes(rest)
    hinge = {int(i): a.numpy() for i, a in zip(ids, axes, strict=True)}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        arm = (rest[JOINT_INDEX[f"{side}_elbow"]] - rest[JOINT_INDEX[f"{side}_shoulder"]]).numpy()
        rest_raise = math.atan2(sign * arm[0], -arm[1])  # 0 = hanging down, π/2 = horizontal
        raise_by = math.radians(rng.uniform(15.0, 95.0)) - rest_raise
        swing = rng.uniform(-0.5, 0.15)  # negative = forward for the left arm's convention below
        pose[JOINT_INDEX[f"{side}_shoulder"]] = (0.0, sign * swing, sign * raise_by)
        elbow = JOINT_INDEX[f"{side}_elbow"]
        pose[elbow] = hinge[elbow] * rng.uniform(0.0, 1.3)
        pose[JOINT_INDEX[f"{side}_hip"]] = (rng.uniform(-0.5, 0.15), 0.0, sign * rng.uniform(-0.05, 0.25))
        knee = JOINT_INDEX[f"{side}_knee"]
        pose[knee] = hinge[knee] * rng.uniform(0.0, 0.8)
    for name in ("spine1", "spine2", "spine3", "neck", "head"):
        pose[JOINT_INDEX[name]] = rng.normal(scale=0.07, size=3)
    return torch.from_numpy(pose)[None]


def make_case(
    body,
    seed: int,
    size: int = 512,
    noise_pct: float = 0.3,
    focal_ratio: float | None = None,
    max_yaw: float = 40.0,
) -> SyntheticCase:
    """One synthetic photo: keypoints (+noise, in % of person height) and the exact mask."""
    rng = np.random.default_rng(seed)
    shape = torch.from_numpy(rng.normal(scale=0.8, size=(1, body.num_shape)).clip(-2, 2).astype(np.float32))
    shape = body.default_shape(1) + shape
    pose = random_pose(rng, body.rest_joints, max_yaw)
    ratio = focal_ratio if focal_ratio is not None else float(rng.uniform(1.2, 3.0))
    focal = ratio * size
    with torch.no_grad():
        out0 = body(shape=shape, pose=pose)
        verts = out0.vertices[0]
        tall = float(verts[:, 1].max() - verts[:, 1].min())
        fill = rng.uniform(0.6, 0.85)
        depth = focal * tall / (fill * size)
        center = (verts.max(0).values + verts.min(0).values) / 2
        # place the body's centre on the optical axis (± a little), at that depth
        shift = torch.tensor(
            [rng.uniform(-0.05, 0.05) * depth / ratio, rng.uniform(-0.05, 0.05) * depth / ratio, 0.0]
        )
        transl = (torch.tensor([0.0, 0.0, -depth]) - center + shift)[None]
        out = body(shape=shape, pose=pose, transl=transl)
    K = intrinsics_matrix(focal, size, size)
    from avatarcli.render.camera import Camera

    cam = Camera(K=K, R=FRONT_VIEW_R.clone(), t=torch.zeros(3), width=size, height=size)
    lmap = body_landmark_map(body)
    lpix, _ = cam.project(lmap.gather(out.vertices, out.joints))
    vpix, vdepth = cam.project(out.vertices)
    mask = silhouette(vpix[0].numpy(), body.faces.numpy(), size, size, vdepth[0].numpy()).astype(np.float32)
    rows = np.flatnonzero(mask.any(1))
    height_px = float(rows[-1] - rows[0] + 1)
    kp = np.ones((lpix.shape[1], 3), np.float32)
    kp[:, :2] = lpix[0].numpy() + rng.normal(scale=noise_pct / 100 * height_px, size=(lpix.shape[1], 2))
    view = ViewInput(
        keypoints=kp, width=size, height=size, mask=mask, K=K.numpy(), image_path=f"synthetic-{seed}"
    )
    return SyntheticCase(view=view, shape=shape, pose=pose, transl=transl, joints=out.joints[0])


def procrustes_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean per-joint distance after the best similarity transform (rotation, scale, translation)."""
    p = pred - pred.mean(0)
    t = true - true.mean(0)
    u, s, vt = np.linalg.svd(p.T @ t)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    rot = u @ fix @ vt
    scale = (s * np.diag(fix)).sum() / (p**2).sum()
    aligned = scale * p @ rot
    return float(np.linalg.norm(aligned - t, axis=1).mean())


def evaluate(body, case: SyntheticCase, fit) -> dict[str, float]:
    """Scores of ``fit`` against the known truth: PA joint error (mm), 2D error (%), IoU."""
    shape, pose, transl = fit.body_params()
    with torch.no_grad():
        joints = body(shape=shape, pose=pose, transl=transl).joints[0]
    body_ids = list(range(22))
    pa = procrustes_error(
        joints[body_ids].numpy().astype(np.float64), case.joints[body_ids].numpy().astype(np.float64)
    )
    return {
        "pa_joint_error_mm": pa * 1000.0,
        "keypoint_error_pct": float(fit.quality["keypoint_error_pct"]),
        "silhouette_iou": float(fit.quality["silhouette_iou"]),
        "angle_deg": math.degrees(float(np.linalg.norm(pose[0, 0].numpy() - case.pose[0, 0].numpy()))),
    }
