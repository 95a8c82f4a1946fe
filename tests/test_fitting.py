"""Fitting on a tiny procedural body (tubes around a T-pose skeleton) so tests run in seconds.

The toy body implements the body protocol with 2 shape parameters (size, girth), so every
part of fitting (landmark picks, priors, camera init, staged optimisation, silhouette term,
quality scores, save/load, preview) is exercised without anny's one-minute first build.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from avatarcli.body.joints import JOINT_INDEX, NUM_JOINTS, SMPLX_PARENTS
from avatarcli.body.kinematics import (
    axis_angle_to_matrix,
    forward_kinematics,
    linear_blend_skinning,
    skinning_transforms,
)
from avatarcli.body.protocol import BodyModel, BodyOutput

torch.set_num_threads(1)


def _toy_joints() -> np.ndarray:
    j = np.zeros((NUM_JOINTS, 3), np.float32)
    base = {
        "pelvis": (0, 0.95, 0), "spine1": (0, 1.05, 0), "spine2": (0, 1.18, 0), "spine3": (0, 1.3, 0),
        "neck": (0, 1.5, 0), "head": (0, 1.6, 0), "jaw": (0, 1.57, 0.05),
        "left_eye_smplhf": (0.03, 1.66, 0.08), "right_eye_smplhf": (-0.03, 1.66, 0.08),
    }  # fmt: skip
    sided = {
        "hip": (0.09, 0.88, 0), "knee": (0.09, 0.5, 0.01), "ankle": (0.09, 0.08, -0.02),
        "foot": (0.09, 0.02, 0.1), "collar": (0.07, 1.42, 0), "shoulder": (0.18, 1.42, 0),
        "elbow": (0.45, 1.42, 0), "wrist": (0.7, 1.42, 0),
    }  # fmt: skip
    for name, xyz in base.items():
        j[JOINT_INDEX[name]] = xyz
    for side, sign in (("left", 1), ("right", -1)):
        for name, (x, y, z) in sided.items():
            j[JOINT_INDEX[f"{side}_{name}"]] = (sign * x, y, z)
        for f, dz in (("index", 0.03), ("middle", 0.01), ("ring", -0.01), ("pinky", -0.03)):
            for k in (1, 2, 3):
                j[JOINT_INDEX[f"{side}_{f}{k}"]] = (sign * (0.76 + 0.03 * k), 1.42, dz)
        for k in (1, 2, 3):
            j[JOINT_INDEX[f"{side}_thumb{k}"]] = (
                sign * (0.72 + 0.025 * k),
                1.41 - 0.005 * k,
                0.05 + 0.01 * k,
            )
    return j


# (joint that moves the tube, start joint, end joint or None for a tip offset, radius)
def _toy_tubes(j: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
    J = JOINT_INDEX
    tubes = [
        (J["pelvis"], j[J["pelvis"]] + (0, -0.08, 0), j[J["spine1"]], 0.15),
        (J["spine1"], j[J["spine1"]], j[J["spine2"]], 0.14),
        (J["spine2"], j[J["spine2"]], j[J["spine3"]], 0.15),
        (J["spine3"], j[J["spine3"]], j[J["neck"]] - (0, 0.05, 0), 0.16),
        (J["neck"], j[J["neck"]] - (0, 0.06, 0), j[J["head"]], 0.05),
        (J["head"], j[J["head"]], j[J["head"]] + (0, 0.2, 0), 0.09),
    ]
    for side in ("left", "right"):
        s = lambda n, side=side: J[f"{side}_{n}"]  # noqa: E731
        tubes += [
            (s("collar"), j[J["spine3"]] + (0, 0.1, 0), j[s("shoulder")], 0.06),
            (s("hip"), j[s("hip")], j[s("knee")], 0.07),
            (s("knee"), j[s("knee")], j[s("ankle")], 0.05),
            (s("ankle"), j[s("ankle")], j[s("foot")] + (0, 0, 0.06), 0.04),
            (s("shoulder"), j[s("shoulder")], j[s("elbow")], 0.045),
            (s("elbow"), j[s("elbow")], j[s("wrist")], 0.035),
            (s("wrist"), j[s("wrist")], j[s("index1")], 0.03),
        ]
        for f in ("index", "middle", "ring", "pinky", "thumb"):
            tubes.append((s(f"{f}1"), j[s(f"{f}1")], j[s(f"{f}2")], 0.008))
            tubes.append((s(f"{f}2"), j[s(f"{f}2")], j[s(f"{f}3")], 0.008))
            tip = j[s(f"{f}3")] + (j[s(f"{f}3")] - j[s(f"{f}2")])
            tubes.append((s(f"{f}3"), j[s(f"{f}3")], tip, 0.007))
    return tubes


class ToyBody(BodyModel):
    """Closed tubes skinned rigidly to one joint each; shape = (size, girth)."""

    name = "toy"
    model_id = "toy-1"
    num_shape = 2

    def __init__(self, ring: int = 8, rings: int = 4) -> None:
        super().__init__()
        joints = _toy_joints()
        verts, faces, owner, radial = [], [], [], []
        for joint, a, b, r in _toy_tubes(joints):
            axis = b - a
            length = np.linalg.norm(axis)
            d = axis / length
            helper = np.array([0, 0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0, 0])
            u = np.cross(d, helper)
            u /= np.linalg.norm(u)
            w = np.cross(d, u)
            start = len(verts)
            for i in range(rings):
                t = i / (rings - 1)
                for k in range(ring):
                    ang = 2 * math.pi * k / ring
                    off = r * (math.cos(ang) * u + math.sin(ang) * w)
                    verts.append(a + t * axis + off)
                    radial.append(off)
                    owner.append(joint)
            caps = len(verts)
            verts += [a, b]
            radial += [np.zeros(3), np.zeros(3)]
            owner += [joint, joint]
            for i in range(rings - 1):
                for k in range(ring):
                    p0, p1 = start + i * ring + k, start + i * ring + (k + 1) % ring
                    q0, q1 = p0 + ring, p1 + ring
                    faces += [(p0, p1, q1), (p0, q1, q0)]
            for k in range(ring):
                faces.append((caps, start + (k + 1) % ring, start + k))
                last = start + (rings - 1) * ring
                faces.append((caps + 1, last + k, last + (k + 1) % ring))
        v = np.asarray(verts, np.float32)
        weights = np.zeros((len(v), NUM_JOINTS), np.float32)
        weights[np.arange(len(v)), owner] = 1.0
        shapedirs = np.stack([0.08 * v, 0.25 * np.asarray(radial, np.float32)], -1)
        self.register_buffer("v_template", torch.tensor(v))
        self.register_buffer("j_template", torch.tensor(joints))
        self.register_buffer("shapedirs", torch.tensor(shapedirs))
        self.register_buffer("faces", torch.tensor(np.asarray(faces), dtype=torch.long))
        self.register_buffer("uv", torch.rand(len(faces) * 3, 2, generator=torch.Generator().manual_seed(0)))
        self.register_buffer("uv_faces", torch.arange(len(faces) * 3).reshape(-1, 3))
        self.register_buffer("skin_weights", torch.tensor(weights))
        self.register_buffer("rest_joints", torch.tensor(joints))
        self.register_buffer("joint_valid", torch.ones(NUM_JOINTS, dtype=torch.bool))
        self.register_buffer("part_ids", torch.zeros(len(faces), dtype=torch.long))

    def forward(self, shape=None, pose=None, transl=None) -> BodyOutput:
        batch = next((t.shape[0] for t in (shape, pose, transl) if t is not None), 1)
        if shape is None:
            shape = torch.zeros(batch, self.num_shape)
        if pose is None:
            pose = torch.zeros(batch, NUM_JOINTS, 3)
        rest_v = self.v_template + torch.einsum("vck,bk->bvc", self.shapedirs, shape)
        rest_j = self.j_template * (1 + 0.08 * shape[:, :1, None])
        world = forward_kinematics(axis_angle_to_matrix(pose), rest_j, SMPLX_PARENTS)
        verts = linear_blend_skinning(rest_v, self.skin_weights, skinning_transforms(world, rest_j))
        joints = world[..., :3, 3]
        if transl is not None:
            verts = verts + transl[:, None]
            joints = joints + transl[:, None]
            world = world.clone()
            world[..., :3, 3] = joints
        return BodyOutput(vertices=verts, joints=joints, joint_transforms=world)


@pytest.fixture(scope="module")
def toy_body() -> ToyBody:
    return ToyBody()


# ----------------------------------------------------------------------------------- helpers
def _fit_case(body, seed: int, iters: int = 120, size: int = 192, **settings):
    from avatarcli.fitting import FitSettings, fit_views
    from avatarcli.fitting.synthetic import make_case

    case = make_case(body, seed, size=size, max_yaw=30.0)
    fit = fit_views([case.view], body, settings=FitSettings(iters=iters, **settings))[0]
    return case, fit


# ---------------------------------------------------------------------- landmarks and priors
def test_surface_landmarks_sit_where_their_names_say(toy_body):
    from avatarcli.fitting.landmarks import body_landmark_map, surface_vertices

    v = toy_body.v_template
    picks = surface_vertices(toy_body)
    head = toy_body.j_template[JOINT_INDEX["head"]]
    assert float(v[picks["nose"], 2]) > float(head[2]) + 0.05  # in front of the head centre
    assert float(v[picks["left_ear"], 0]) > 0.05 > -0.05 > float(v[picks["right_ear"], 0])
    for side in ("left", "right"):
        assert float(v[picks[f"{side}_big_toe"], 2]) > float(v[picks[f"{side}_heel"], 2])
        assert abs(float(v[picks[f"{side}_big_toe"], 0])) < abs(float(v[picks[f"{side}_small_toe"], 0]))
    lmap = body_landmark_map(toy_body)
    assert int(lmap.joint_ids[1]) == JOINT_INDEX["neck"] and int(lmap.vertex_ids[0]) == picks["nose"]


def test_positive_hinge_rotation_bends_knees_back_and_elbows_forward(toy_body):
    from avatarcli.fitting.priors import hinge_axes, hinge_prior

    ids, axes = hinge_axes(toy_body.rest_joints)
    pose = torch.zeros(1, NUM_JOINTS, 3)
    pose[0, ids] = axes * 0.8
    joints = toy_body(pose=pose).joints[0]
    rest = toy_body.rest_joints
    for joint, child, direction in (("left_knee", "left_ankle", -1), ("right_elbow", "right_wrist", 1)):
        moved = joints[JOINT_INDEX[child], 2] - rest[JOINT_INDEX[child], 2]
        assert float(moved) * direction > 0.05, joint
    flexed = hinge_prior(pose, ids, axes).sum()
    hyper = hinge_prior(-pose, ids, axes).sum()
    assert float(hyper) > 10 * float(flexed) + 1.0


def test_hip_extension_is_free_up_to_its_margin_and_flexion_is_free(toy_body):
    from avatarcli.fitting.priors import extension_axes, extension_prior

    ids, axes, margins = extension_axes(toy_body.rest_joints)
    pose = torch.zeros(1, NUM_JOINTS, 3)
    pose[0, ids] = axes * 0.6  # thighs forward
    forward = toy_body(pose=pose).joints[0]
    knee = JOINT_INDEX["left_knee"]
    assert float(forward[knee, 2] - toy_body.rest_joints[knee, 2]) > 0.05
    assert float(extension_prior(pose, ids, axes, margins).sum()) == 0.0
    slight = -pose * (margins.min() / 0.6 * 0.9)  # extension within the margin
    assert float(extension_prior(slight, ids, axes, margins).sum()) == 0.0
    assert float(extension_prior(-pose, ids, axes, margins).sum()) > 1.0


def test_leg_hypotheses_pick_each_leg_from_the_start_that_explains_it(toy_body):
    """Rows 0..n-1 are the straight-leg start, n..2n-1 the bent one; each leg independently
    takes the start whose keypoints fit better."""
    from avatarcli.fitting.optimize import _LEGS, _pick_leg_hypotheses

    n = 1
    target = torch.zeros(2 * n, 25, 2)
    pix = target.clone()
    left_leg, left_kp = _LEGS["left"]
    right_leg, right_kp = _LEGS["right"]
    pix[0, left_kp] += 5.0  # straight start misses the left leg
    pix[1, right_kp] += 5.0  # bent start misses the right leg
    body_pose = torch.zeros(2 * n, 21, 3)
    body_pose[1] = 1.0  # mark the bent start's values
    orient, delta = torch.zeros(2 * n, 3), torch.zeros(2 * n, 3)
    weight, scale = torch.ones(2 * n, 25), torch.full((2 * n,), 100.0)
    _, _, chosen = _pick_leg_hypotheses(
        n, orient, delta, body_pose, pix, target, weight, scale, torch.zeros(2, 21)
    )
    assert bool((chosen[0, left_leg] == 1.0).all())  # from the bent start
    assert bool((chosen[0, right_leg] == 0.0).all())  # from the straight start


def test_front_view_convention_shows_the_body_upright_and_facing_the_camera(toy_body):
    from avatarcli.fitting.camera import initial_translation, intrinsics_matrix, make_camera
    from avatarcli.perception.keypoints import BODY_INDEX

    K = intrinsics_matrix(400.0, 256, 256)
    kp = np.zeros((25, 3), np.float32)
    kp[BODY_INDEX["left_shoulder"]] = (150, 80, 1)
    kp[BODY_INDEX["right_shoulder"]] = (106, 80, 1)
    kp[BODY_INDEX["left_hip"]] = (140, 150, 1)
    kp[BODY_INDEX["right_hip"]] = (116, 150, 1)
    transl = initial_translation(kp, K, 0.5, toy_body.rest_joints[0])
    out = toy_body(transl=transl[None])
    pix, depth = make_camera(K, 256, 256).project(out.joints)
    pix = pix[0]
    assert bool((depth > 0).all())
    assert float(pix[JOINT_INDEX["head"], 1]) < float(pix[JOINT_INDEX["left_ankle"], 1])  # head above feet
    assert float(pix[JOINT_INDEX["left_wrist"], 0]) > float(pix[JOINT_INDEX["right_wrist"], 0])  # mirror view
    assert abs(float(pix[0, 0]) - 128) < 2 and abs(float(pix[0, 1]) - 150) < 2  # pelvis under the hips


def test_silhouette_fills_overlapping_triangles_without_holes():
    from avatarcli.fitting.quality import mask_iou, silhouette

    pts = np.array([[10, 10], [50, 10], [50, 50], [10, 50]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 3], [1, 2, 3]])  # every pixel covered twice
    sil = silhouette(pts, faces, 64, 64)
    assert sil[12:48, 12:48].all() and sil.sum() == pytest.approx(40 * 40, rel=0.06)
    assert mask_iou(sil, sil.astype(np.float32)) == 1.0


# -------------------------------------------------------------------------------- the fit
def test_synthetic_single_view_fit_recovers_keypoints_and_silhouette(toy_body):
    from avatarcli.fitting.synthetic import evaluate

    case, fit = _fit_case(toy_body, seed=4)
    scores = evaluate(toy_body, case, fit)
    # loose bounds: a short run on a crude tube body; the real targets are measured on anny
    # in benchmarks/eval_fit.py and the slow test below
    assert scores["keypoint_error_pct"] < 1.0
    assert scores["silhouette_iou"] > 0.75  # thin tubes at 192 px: a pixel of offset costs a lot
    assert scores["pa_joint_error_mm"] < 70
    assert fit.pose.shape == (55, 3) and fit.shape.shape == (2,)
    assert np.isfinite(fit.transl).all() and fit.transl[2] < 0  # in front of the camera


def test_fit_is_deterministic_for_a_seed(toy_body):
    _, a = _fit_case(toy_body, seed=5, iters=30)
    _, b = _fit_case(toy_body, seed=5, iters=30)
    np.testing.assert_array_equal(a.pose, b.pose)
    np.testing.assert_array_equal(a.transl, b.transl)


def test_multi_view_shares_shape_and_finds_the_back_view(toy_body):
    """Front and back photos: one shape, and the back view's yaw is found from the 4 starts."""
    from avatarcli.fitting import FitSettings, fit_views
    from avatarcli.fitting.synthetic import make_case

    views, yaws = [], []
    for seed, turn in ((11, 0.0), (12, math.pi)):
        case = make_case(toy_body, seed, size=192, max_yaw=10.0)
        # re-shoot the same kind of person turned by `turn`: rotate the global orientation
        pose = case.pose.clone()
        pose[0, 0, 1] += turn
        from avatarcli.fitting.synthetic import SyntheticCase  # noqa: F401 (documents the type)

        with torch.no_grad():
            out = toy_body(shape=case.shape, pose=pose, transl=case.transl)
        from avatarcli.fitting.camera import make_camera
        from avatarcli.fitting.landmarks import body_landmark_map
        from avatarcli.fitting.quality import silhouette

        cam = make_camera(torch.as_tensor(case.view.K), 192, 192)
        lpix, _ = cam.project(body_landmark_map(toy_body).gather(out.vertices, out.joints))
        vpix, vdepth = cam.project(out.vertices)
        case.view.keypoints = np.concatenate([lpix[0].numpy(), np.ones((25, 1), np.float32)], 1)
        case.view.mask = silhouette(
            vpix[0].numpy(), toy_body.faces.numpy(), 192, 192, vdepth[0].numpy()
        ).astype(np.float32)
        views.append(case.view)
        yaws.append(float(pose[0, 0, 1]))
    fits = fit_views(views, toy_body, settings=FitSettings(iters=120))
    np.testing.assert_array_equal(fits[0].shape, fits[1].shape)
    for fit, yaw in zip(fits, yaws, strict=True):
        from avatarcli.body.kinematics import axis_angle_to_matrix

        fwd = axis_angle_to_matrix(torch.tensor(fit.pose[0])) @ torch.tensor([0.0, 0.0, 1.0])
        got = math.atan2(float(fwd[0]), float(fwd[2]))
        diff = (got - yaw + math.pi) % (2 * math.pi) - math.pi
        assert abs(math.degrees(diff)) < 35, (math.degrees(got), math.degrees(yaw))
        assert fit.num_views == 2


def test_progress_reports_every_stage_and_accepts_rich_progress(toy_body):
    from rich.progress import Progress

    from avatarcli.fitting import FitSettings, fit_views
    from avatarcli.fitting.synthetic import make_case

    seen: dict[str, int] = {}
    view = make_case(toy_body, 1, size=128).view
    fit_views(
        [view], toy_body, settings=FitSettings(iters=20), progress=lambda s, d, t: seen.__setitem__(s, t)
    )
    assert list(seen) == ["camera", "pose", "shape", "silhouette"]
    with Progress(disable=True) as progress:
        fit_views([view], toy_body, settings=FitSettings(iters=20), progress=progress)
        assert len(progress.tasks) == 4 and all(t.finished for t in progress.tasks)


def test_poor_fit_is_flagged(toy_body):
    from avatarcli.fitting import FitSettings, fit_views
    from avatarcli.fitting.synthetic import make_case

    view = make_case(toy_body, 2, size=128).view
    view.mask = np.zeros_like(view.mask)
    view.mask[:20, :20] = 1.0  # a mask that has nothing to do with the person
    fit = fit_views([view], toy_body, settings=FitSettings(iters=20, use_silhouette=False))[0]
    assert fit.quality["silhouette_iou"] < 0.1
    assert any("IoU" in w for w in fit.warnings)


# ------------------------------------------------------------------------ files and preview
def test_fit_file_round_trip_and_bad_files(toy_body, tmp_path):
    from avatarcli.errors import InputFileError
    from avatarcli.fitting import load_fit, save_fit

    _, fit = _fit_case(toy_body, seed=4, iters=20)
    path = save_fit(fit, tmp_path / "view0.fit.json")
    back = load_fit(path)
    np.testing.assert_allclose(back.pose, fit.pose, rtol=1e-6)
    np.testing.assert_allclose(back.K, fit.K)
    assert back.quality["silhouette_iou"] == pytest.approx(fit.quality["silhouette_iou"])
    assert back.body == "toy" and back.width == fit.width
    data = json.loads(path.read_text())
    data["version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(data))
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    for name in ("new.json", "junk.json", "other.json", "missing.json"):
        with pytest.raises(InputFileError):
            load_fit(tmp_path / name)


def test_overlay_preview_draws_on_the_photo(toy_body, tmp_path):
    from PIL import Image

    from avatarcli.fitting.preview import render_overlay, save_overlay

    case, fit = _fit_case(toy_body, seed=6, iters=20, size=128)
    photo = np.full((128, 128, 3), 30, np.uint8)
    over = render_overlay(photo, fit, toy_body)
    assert over.shape == photo.shape
    changed = (over != photo).any(2)
    assert changed[case.view.mask > 0.5].mean() > 0.5 and changed.mean() < 0.6
    path = save_overlay(tmp_path / "p.png", photo, fit, toy_body)
    assert Image.open(path).size == (128, 128)


def test_dinar_export_reproduces_camera_space_vertices(smplx_dir, tmp_path):
    """Posing SMPL-X with the exported numbers (identity camera) gives the fit's camera-space mesh."""
    import pickle

    from avatarcli.body import load_body
    from avatarcli.fitting.export import dinar_params, save_dinar_params
    from avatarcli.fitting.result import Fit

    body = load_body("smplx", model_dir=smplx_dir)
    rng = np.random.default_rng(0)
    pose = rng.normal(scale=0.2, size=(55, 3)).astype(np.float32)
    pose[0] = (0.1, 0.4, -0.05)
    fit = Fit(
        body="smplx", model_id=body.model_id, shape=rng.normal(size=10).astype(np.float32), pose=pose,
        transl=np.array([0.1, -0.2, -5.0], np.float32),
        K=np.array([[800, 0, 256], [0, 800, 256], [0, 0, 1]], np.float32),
        R=np.diag([1.0, -1.0, -1.0]).astype(np.float32), t=np.zeros(3, np.float32), width=512, height=512,
    )  # fmt: skip
    params = dinar_params(fit, body, smplx_dir / "SMPLX_NEUTRAL.npz")
    assert params["body_pose"].shape == (1, 63) and params["left_hand_pose"].shape == (1, 6)
    shape, p, t = fit.body_params()
    ours = body(shape=shape, pose=p, transl=t).vertices[0] @ torch.as_tensor(fit.R).T
    pose2 = torch.as_tensor(fit.pose).clone()[None]
    pose2[0, 0] = torch.as_tensor(params["global_orient"][0])
    theirs = body(shape=shape, pose=pose2, transl=torch.as_tensor(params["transl"])).vertices[0]
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    with open(save_dinar_params(tmp_path / "p.pkl", params), "rb") as f:
        assert set(pickle.load(f)) >= {"betas", "global_orient", "body_pose", "transl", "camera_intrinsics"}


# ------------------------------------------------------------------ anny (real body) checks
def test_anny_landmark_picks_are_anatomical(anny_body):
    from avatarcli.fitting.landmarks import surface_vertices

    v = anny_body.rest().vertices[0]
    j = anny_body.rest().joints[0]
    p = surface_vertices(anny_body)
    head, neck = j[JOINT_INDEX["head"]], j[JOINT_INDEX["neck"]]
    assert float(v[p["nose"], 2]) > float(head[2]) + 0.05 and float(v[p["nose"], 1]) > float(neck[1])
    assert float(v[p["left_ear"], 0]) > 0.05 and float(v[p["right_ear"], 0]) < -0.05
    for side in ("left", "right"):
        ankle = j[JOINT_INDEX[f"{side}_ankle"]]
        toe, heel = v[p[f"{side}_big_toe"]], v[p[f"{side}_heel"]]
        assert float(toe[2]) > float(ankle[2]) + 0.1 > float(heel[2]) + 0.1
        assert float(v[p[f"{side}_heel"], 1]) < float(ankle[1])


@pytest.mark.slow
def test_anny_synthetic_fits_meet_the_targets(anny_body):
    """Issue #4 synthetic check on a few cases (the full table: benchmarks/eval_fit.py)."""
    from avatarcli.fitting import FitSettings, fit_views
    from avatarcli.fitting.synthetic import evaluate, make_case

    rows = []
    for seed in range(4):
        case = make_case(anny_body, seed, size=512)
        fit = fit_views([case.view], anny_body, settings=FitSettings())[0]
        rows.append(evaluate(anny_body, case, fit))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    assert mean["keypoint_error_pct"] <= 1.0
    assert mean["silhouette_iou"] >= 0.92
    assert mean["pa_joint_error_mm"] <= 30.0


@pytest.mark.slow
def test_anny_fits_real_masked_photos(anny_body, shared_data):
    from avatarcli.fitting import FitSettings, fit_perceptions
    from avatarcli.perception import perceive

    photos = shared_data / "photos"
    p = perceive(photos / "sith_007.png", keypoints=photos / "sith_007_keypoints.json")
    fit = fit_perceptions([p], anny_body, settings=FitSettings())[0]
    assert fit.quality["silhouette_iou"] >= 0.8
    assert fit.quality["keypoint_error_pct"] <= 2.0


def test_dice_term_on_the_render_core_prefers_the_true_silhouette(toy_body):
    from avatarcli.fitting.camera import make_camera
    from avatarcli.fitting.losses import dice_loss
    from avatarcli.fitting.synthetic import make_case

    case = make_case(toy_body, 7, size=192)
    cam = make_camera(torch.as_tensor(case.view.K), 192, 192)
    with torch.no_grad():
        verts = toy_body(shape=case.shape, pose=case.pose, transl=case.transl).vertices
    verts.requires_grad_(True)
    truth = torch.from_numpy(case.view.mask)
    shifted = torch.roll(truth, 8, dims=1)
    good = dice_loss(verts, toy_body.faces, cam, truth).detach()
    bad = dice_loss(verts, toy_body.faces, cam, shifted)
    # thin tubes are mostly soft edge, so even the true silhouette keeps some loss
    assert float(good) < 0.25 and float(bad.detach()) > float(good) + 0.2
    bad.backward()
    assert float(verts.grad.abs().sum()) > 0


def test_fit_with_dice_term_runs(toy_body):
    _, fit = _fit_case(toy_body, seed=4, iters=20, size=96, dice_weight=1.0)
    assert "dice" in fit.quality["final_losses"]


def test_fit_photo_from_files_end_to_end(toy_body, tmp_path, monkeypatch):
    """Photo + mask + OpenPose files → perceive → fit → fit file, no detector involved."""
    from PIL import Image

    from avatarcli.fitting import FitSettings, fit_photo, load_fit, save_fit
    from avatarcli.fitting.synthetic import make_case

    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path / "cache"))
    case = make_case(toy_body, 8, size=160)
    Image.new("RGB", (160, 160), (70, 70, 70)).save(tmp_path / "p.png")
    Image.fromarray((case.view.mask * 255).astype(np.uint8)).save(tmp_path / "m.png")
    people = [{"pose_keypoints_2d": case.view.keypoints.reshape(-1).tolist()}]
    (tmp_path / "k.json").write_text(json.dumps({"people": people}))
    fit = fit_photo(
        tmp_path / "p.png", toy_body, mask=tmp_path / "m.png", keypoints=tmp_path / "k.json",
        settings=FitSettings(iters=60),
    )  # fmt: skip
    assert fit.image_path.endswith("p.png") and len(fit.image_sha256) == 64
    assert fit.quality["keypoint_error_pct"] < 3.0 and fit.quality["silhouette_iou"] > 0.5
    assert load_fit(save_fit(fit, tmp_path / "f.json")).image_sha256 == fit.image_sha256
