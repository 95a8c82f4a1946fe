"""SMPLify-X-style fitting of a body model to 1..N photos of one person.

Stages (Adam, fixed share of the iteration budget each):

1. ``camera``   global orientation + translation from torso and head keypoints, started from
   several yaws (front, sides, back) in one batch; the best start per photo is kept. This is
   what makes back and side views (a turntable) fit without a facing hint;
2. ``pose``     + body pose, all body keypoints, stiff pose priors;
3. ``shape``    + shared shape and finger poses (when hand keypoints exist), softer priors;
4. ``silhouette`` + the mask term (vertices inside the mask, mask boundary covered); photos
   without a mask just keep refining keypoints with the softest priors.

Multi-view: every photo has its own camera (fixed, see :mod:`avatarcli.fitting.camera`), global
orientation, translation and pose; the shape is one vector for all. A small coupling term
pulls the per-photo body poses towards their mean, since multi-view input is normally one
person holding one pose while the camera (or the person) turns. Frames of a video (views in
time order) can instead use ``temporal_smoothness``: a penalty on the second differences of
body pose, global orientation and translation across neighbouring frames, so each frame's fit
is supported by its neighbours without pulling a moving person towards one pose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avatarcli.body.joints import JOINT_INDEX
from avatarcli.body.kinematics import axis_angle_to_matrix
from avatarcli.fitting.camera import (
    DEFAULT_FOCAL_RATIO,
    FRONT_VIEW_R,
    default_focal,
    initial_translation,
    intrinsics_matrix,
    yaw_axis_angle,
)
from avatarcli.fitting.landmarks import body_landmark_map, hand_landmark_map
from avatarcli.fitting.losses import SilhouetteTarget, dice_loss, keypoint_loss, silhouette_loss
from avatarcli.fitting.priors import (
    extension_axes,
    extension_prior,
    hand_prior,
    hinge_axes,
    hinge_prior,
    pose_prior,
    relaxed_pose,
    shape_prior,
    stiffness_weights,
)
from avatarcli.fitting.quality import (
    keypoint_error_pct,
    mask_iou,
    person_height_px,
    quality_warnings,
    silhouette,
)
from avatarcli.fitting.result import Fit
from avatarcli.perception.keypoints import BODY_INDEX, person_extent

ProgressCallback = Callable[[str, int, int], None]

#: the stages in order with their default share of the iteration budget (the silhouette stage
#: gets the most: on synthetic people it lowered the joint error from 31 to 29.5 mm)
STAGES: tuple[tuple[str, float], ...] = (
    ("camera", 0.15),
    ("pose", 0.3),
    ("shape", 0.25),
    ("silhouette", 0.3),
)
#: keypoints that fix the global placement in stage 1
_TORSO_AND_HEAD = (
    "neck", "mid_hip", "left_shoulder", "right_shoulder", "left_hip", "right_hip",
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)  # fmt: skip


#: per side: body-pose rows (joint index − 1) of the leg joints, and the keypoints they move
_LEGS = {
    side: (
        [JOINT_INDEX[f"{side}_{j}"] - 1 for j in ("hip", "knee", "ankle", "foot")],
        [BODY_INDEX[f"{side}_{k}"] for k in ("hip", "knee", "ankle", "big_toe", "small_toe", "heel")],
    )
    for side in ("left", "right")
}
#: the second pose-stage start: thighs forward, knees bent (radians along the flexion axes)
_BENT_LEGS = {"hip": 0.4, "knee": 0.8}


@dataclass
class FitSettings:
    """Everything that changes a fit's result (stored in each :class:`Fit`)."""

    iters: int = 400
    focal_ratio: float = DEFAULT_FOCAL_RATIO
    #: a fixed focal length in pixels for every photo (5000 = DINAR's default); overrides the ratio
    focal_px: float | None = None
    yaw_candidates: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    use_silhouette: bool = True
    use_hands: bool = True
    pose_coupling: float = 1.0
    #: views are frames in time order: weight of the squared second differences (accelerations)
    #: of body pose, global orientation and translation between neighbouring frames (0 = off)
    temporal_smoothness: float = 0.0
    #: capture time of each view (any unit, strictly increasing) for the temporal term when the
    #: frames are not evenly spaced; None = evenly spaced
    frame_times: tuple[float, ...] | None = None
    seed: int = 0
    # prior weights per stage (camera, pose, shape, silhouette)
    pose_weight: tuple[float, float, float, float] = (0.0, 1.0, 0.2, 0.1)
    shape_weight: float = 0.02
    silhouette_weight: float = 1.0
    #: weight of the Dice term on the render core's soft silhouette (0 = off)
    dice_weight: float = 0.0
    #: longer side of the mask the Dice term renders at
    dice_side: int = 160
    hand_weight: float = 0.5
    #: also start the pose stage with thighs forward and knees bent, then keep per leg the
    #: start that explains that leg's keypoints better (the photo's depth ambiguity)
    leg_hypotheses: bool = True
    #: the pose the magnitude prior pulls towards: knee, elbow and hip flexion in radians.
    #: People rarely lock their knees and elbows (SMPLify's pose GMM has the same bent mean);
    #: a zero-centred prior straightens bent legs whose bend the photo cannot show in depth.
    #: On 12 synthetic people: PA joint error 30.0 → 26.9 mm.
    relaxed_bend: tuple[float, float, float] = (0.2, 0.2, 0.1)
    #: share of ``iters`` for each stage (camera, pose, shape, silhouette)
    stage_shares: tuple[float, float, float, float] = tuple(share for _, share in STAGES)


@dataclass
class ViewInput:
    """One photo's fitting targets (built from a Perception or synthetically)."""

    keypoints: np.ndarray  # (25, 3)
    width: int
    height: int
    mask: np.ndarray | None = None
    left_hand: np.ndarray | None = None
    right_hand: np.ndarray | None = None
    K: np.ndarray | None = None  # (3, 3); default from the focal ratio
    image_path: str = ""
    image_sha256: str = ""
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_perception(cls, p, K: np.ndarray | None = None) -> ViewInput:
        return cls(
            keypoints=p.keypoints,
            width=p.width,
            height=p.height,
            mask=p.mask if p.mask is not None and p.mask.max() > 0.5 else None,
            left_hand=p.left_hand,
            right_hand=p.right_hand,
            K=K,
            image_path=p.image_path,
            image_sha256=p.image_sha256,
            warnings=tuple(p.warnings),
        )


#: translation enters the temporal term in decimetres: 1 dm of jerk costs as much as 1 radian
_TEMPORAL_TRANSLATION_SCALE = 10.0


def _normalised_times(frame_times: Sequence[float] | None, n: int, device) -> torch.Tensor:
    """(n,) frame times with a median spacing of 1, so the weight does not depend on units."""
    if frame_times is None:
        return torch.arange(n, dtype=torch.float32, device=device)
    times = torch.as_tensor(list(frame_times), dtype=torch.float32, device=device)
    if times.shape != (n,):
        raise ValueError(f"frame_times has {times.numel()} entries for {n} views")
    gaps = times[1:] - times[:-1]
    if n > 1 and not bool((gaps > 0).all()):
        raise ValueError("frame_times must be strictly increasing (views in time order)")
    return times / gaps.median() if n > 1 else times


def temporal_roughness(series: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Sum of squared accelerations of ``series`` (H, N, ...) sampled at ``times`` (N,) along dim 1.

    Central second divided differences; for evenly spaced unit times this is the classic
    ``x[t-1] - 2 x[t] + x[t+1]``. Each hypothesis row (H) is its own sequence.
    """
    if series.shape[1] < 3:
        return series.sum() * 0.0
    expand = (1, -1) + (1,) * (series.dim() - 2)
    slope = (series[:, 1:] - series[:, :-1]) / (times[1:] - times[:-1]).view(expand)
    accel = 2.0 * (slope[:, 1:] - slope[:, :-1]) / (times[2:] - times[:-2]).view(expand)
    return (accel**2).sum()


def _progress_adapter(progress) -> ProgressCallback:
    """Accept a plain callback or a ``rich.progress.Progress`` (one bar per stage)."""
    if progress is None:
        return lambda stage, done, total: None
    if hasattr(progress, "add_task") and hasattr(progress, "update"):
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"fit: {stage}", total=total)
            progress.update(tasks[stage], completed=done)

        return update
    return progress


def _stage_iters(total: int, shares: Sequence[float]) -> list[int]:
    return [max(1, round(total * share)) for share in shares]


def _compose_pose(orient, body_pose, hand_pose) -> torch.Tensor:
    n = orient.shape[0]
    face = torch.zeros(n, 3, 3, dtype=orient.dtype, device=orient.device)  # jaw and eyes stay at rest
    return torch.cat([orient[:, None], body_pose, face, hand_pose], 1)


def _targets(views: Sequence[ViewInput], device) -> dict[str, torch.Tensor]:
    kp = torch.tensor(np.stack([v.keypoints for v in views]), dtype=torch.float32, device=device)
    hands = []
    for side in ("left_hand", "right_hand"):
        arr = [
            getattr(v, side) if getattr(v, side) is not None else np.zeros((21, 3), np.float32) for v in views
        ]
        hands.append(torch.tensor(np.stack(arr), dtype=torch.float32, device=device))
    return {"body": kp, "left_hand": hands[0], "right_hand": hands[1]}


def fit_views(
    views: Sequence[ViewInput],
    body,
    *,
    settings: FitSettings | None = None,
    progress=None,
) -> list[Fit]:
    """Fit ``body`` to one or more views of the same person; one :class:`Fit` per view.

    ``views`` are :class:`ViewInput` or :class:`~avatarcli.perception.Perception` objects;
    ``progress`` is ``callback(stage, done, total)`` or a ``rich.progress.Progress``.
    """
    from avatarcli.render.camera import Camera

    s = settings or FitSettings()
    if not views:
        raise ValueError("fit_views needs at least one view")
    views = [v if isinstance(v, ViewInput) else ViewInput.from_perception(v) for v in views]
    report = _progress_adapter(progress)
    torch.manual_seed(s.seed)
    device = body.uv.device
    n = len(views)

    body_map = body_landmark_map(body)
    hand_maps = {side: hand_landmark_map(body, side.split("_")[0]) for side in ("left_hand", "right_hand")}
    tgt = _targets(views, device)
    trust = body_map.weights.to(device)
    body_w = tgt["body"][..., 2] * trust
    hand_w = {k: tgt[k][..., 2] * s.hand_weight for k in hand_maps}
    use_hands = s.use_hands and any(bool((w > 0).any()) for w in hand_w.values())

    heights = []
    for v in views:
        fallback = person_extent(v.keypoints) * 1.15 or v.height * 0.8
        heights.append(person_height_px(v.mask, fallback))
    scale = torch.tensor(heights, dtype=torch.float32, device=device)
    Ks = [
        torch.as_tensor(v.K, dtype=torch.float32)
        if v.K is not None
        else intrinsics_matrix(
            s.focal_px if s.focal_px else default_focal(v.width, v.height, s.focal_ratio), v.width, v.height
        )
        for v in views
    ]

    with torch.no_grad():
        rest = body.rest(body.default_shape(1))
        rj = rest.joints[0]
        ji = {n: i for i, n in enumerate(body.joint_names)}
        torso_len = float(
            (
                (rj[ji["left_shoulder"]] + rj[ji["right_shoulder"]]) / 2
                - (rj[ji["left_hip"]] + rj[ji["right_hip"]]) / 2
            )
            .norm()
            .cpu()
        )
        hinge_ids, hinge_ax = hinge_axes(body.rest_joints.to(device).float())
        ext_ids, ext_ax, ext_margin = extension_axes(body.rest_joints.to(device).float())
    stiff = stiffness_weights(device)
    t0 = torch.stack(
        [initial_translation(v.keypoints, K, torso_len, rj[0].cpu()) for v, K in zip(views, Ks, strict=True)]
    ).to(device)
    depth0 = (-(t0[:, 2] + rj[0, 2])).abs().clamp_min(0.5)  # camera distance, for scaling translation steps

    sil_targets: list[SilhouetteTarget | None] = [
        SilhouetteTarget.from_mask(v.mask, h, seed=s.seed)
        if (s.use_silhouette and v.mask is not None)
        else None
        for v, h in zip(views, heights, strict=True)
    ]
    stage_iters = _stage_iters(s.iters, s.stage_shares)
    times = _normalised_times(s.frame_times, n, device)
    dice_targets = {}
    if s.dice_weight > 0:
        import cv2

        for k, v in enumerate(views):
            if sil_targets[k] is None:
                continue
            factor = min(1.0, s.dice_side / max(v.width, v.height))
            small_cam = Camera(
                K=Ks[k].to(device), R=FRONT_VIEW_R.to(device), t=torch.zeros(3, device=device), width=v.width,
                height=v.height,
            ).scale(factor)  # fmt: skip
            small = cv2.resize(v.mask.astype(np.float32), (small_cam.width, small_cam.height), cv2.INTER_AREA)
            dice_targets[k] = (small_cam, torch.from_numpy(small).to(device))

    def make_camera(index: torch.Tensor) -> Camera:
        K = torch.stack([Ks[int(i)] for i in index]).to(device)
        return Camera(
            K=K,
            R=FRONT_VIEW_R.to(device).expand(len(index), 3, 3),
            t=torch.zeros(len(index), 3, device=device),
            width=max(v.width for v in views),
            height=max(v.height for v in views),
        )

    # ---- stage 1: global orientation + translation, several starting yaws per view
    yaws = list(s.yaw_candidates) or [0.0]
    c = len(yaws)
    view_of = torch.arange(n, device=device).repeat_interleave(c)
    orient = torch.stack([yaw_axis_angle(y) for y in yaws] * n).to(device).requires_grad_(True)
    delta = torch.zeros(n * c, 3, device=device, requires_grad=True)
    cam1 = make_camera(view_of)
    stage1_mask = torch.zeros(len(trust), device=device)
    for name in _TORSO_AND_HEAD:
        stage1_mask[BODY_INDEX[name]] = 1.0
    w1 = body_w[view_of] * stage1_mask
    zeros_body = torch.zeros(n * c, 21, 3, device=device)
    zeros_hand = torch.zeros(n * c, 30, 3, device=device)
    opt = torch.optim.Adam([{"params": [orient], "lr": 0.05}, {"params": [delta], "lr": 0.01}])

    def stage1_loss() -> torch.Tensor:
        transl = t0[view_of] + delta * depth0[view_of, None]
        out = body(shape=None, pose=_compose_pose(orient, zeros_body, zeros_hand), transl=transl)
        pix, _ = cam1.project(body_map.gather(out.vertices, out.joints))
        return keypoint_loss(pix, tgt["body"][view_of, :, :2], w1, scale[view_of])

    for i in range(stage_iters[0]):
        opt.zero_grad()
        loss = stage1_loss()
        loss.sum().backward()
        opt.step()
        report(STAGES[0][0], i + 1, stage_iters[0])
    with torch.no_grad():
        per_candidate = stage1_loss().reshape(n, c)
        best = per_candidate.argmin(1) + torch.arange(n, device=device) * c
    orient = orient.detach()[best].clone().requires_grad_(True)
    delta = delta.detach()[best].clone().requires_grad_(True)

    # ---- stages 2-4: pose, shape (+hands), silhouette
    body_pose = torch.zeros(n, 21, 3, device=device)
    hand_pose = torch.zeros(n, 30, 3, device=device, requires_grad=True)
    shape = torch.zeros(1, body.num_shape, device=device, requires_grad=True)
    default_shape = body.default_shape(1).to(device)
    losses: dict[str, float] = {}

    relaxed = relaxed_pose(body.rest_joints.to(device).float(), *s.relaxed_bend)

    def prior_terms(pose: torch.Tensor) -> torch.Tensor:
        """(B, 21) per body joint: magnitude + hinge + extension penalties."""
        per_joint = pose_prior(pose, stiff, relaxed)
        hinge = torch.zeros_like(per_joint).index_add(
            1, hinge_ids - 1, hinge_prior(pose, hinge_ids, hinge_ax)
        )
        ext = torch.zeros_like(per_joint).index_add(
            1, ext_ids - 1, extension_prior(pose, ext_ids, ext_ax, ext_margin)
        )
        return per_joint + hinge + ext

    for stage_index in (1, 2, 3):
        stage = STAGES[stage_index][0]
        hypotheses = 2 if (stage_index == 1 and s.leg_hypotheses) else 1
        rows = torch.arange(n, device=device).repeat(hypotheses)  # view of each batch row
        if hypotheses > 1:
            orient = orient.detach()[rows].clone()
            delta = delta.detach()[rows].clone()
            body_pose = body_pose.detach()[rows].clone()
            for leg, _ in _LEGS.values():
                hip, knee = leg[0], leg[1]
                body_pose[n:, hip] = _BENT_LEGS["hip"] * ext_ax[(ext_ids - 1 == hip).nonzero()[0, 0]]
                body_pose[n:, knee] = _BENT_LEGS["knee"] * hinge_ax[(hinge_ids - 1 == knee).nonzero()[0, 0]]
        orient.requires_grad_(True)
        delta.requires_grad_(True)
        body_pose.requires_grad_(True)
        cam = make_camera(rows)
        groups = [{"params": [orient, body_pose], "lr": 0.03}, {"params": [delta], "lr": 0.004}]
        if stage_index >= 2:
            groups.append({"params": [shape], "lr": 0.05})
            if use_hands:
                groups.append({"params": [hand_pose], "lr": 0.03})
        opt = torch.optim.Adam(groups)
        # decay the step size within each stage so it settles instead of jittering around the optimum
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i, n=stage_iters[stage_index]: 1.0 - 0.7 * i / n
        )
        lam_pose = s.pose_weight[stage_index]
        for i in range(stage_iters[stage_index]):
            opt.zero_grad()
            transl = t0[rows] + delta * depth0[rows, None]
            pose = _compose_pose(orient, body_pose, hand_pose[rows])
            out = body(shape=(default_shape + shape).expand(len(rows), -1), pose=pose, transl=transl)
            pix, _ = cam.project(body_map.gather(out.vertices, out.joints))
            data = keypoint_loss(pix, tgt["body"][rows, :, :2], body_w[rows], scale[rows])
            terms = {"keypoints": data.sum()}
            if use_hands and stage_index >= 2:
                for key, hmap in hand_maps.items():
                    if bool((hand_w[key] > 0).any()):
                        hp, _ = cam.project(hmap.gather(out.vertices, out.joints))
                        terms[key] = (
                            keypoint_loss(hp, tgt[key][..., :2], hand_w[key], scale) * s.hand_weight
                        ).sum()
                terms["hand_prior"] = 0.05 * hand_prior(pose).sum()
            terms["pose_prior"] = lam_pose * prior_terms(pose).sum()
            if stage_index >= 2:
                terms["shape_prior"] = s.shape_weight * shape_prior(shape).sum()
            if n > 1 and s.pose_coupling > 0:
                grouped = body_pose.reshape(hypotheses, n, 21, 3)
                terms["coupling"] = s.pose_coupling * ((grouped - grouped.mean(1, keepdim=True)) ** 2).sum()
            if n > 2 and s.temporal_smoothness > 0:
                # orientation as matrices: axis-angle jumps where a turning person passes 180°
                rough = temporal_roughness(body_pose.reshape(hypotheses, n, 21, 3), times)
                rough = rough + temporal_roughness(
                    axis_angle_to_matrix(orient).reshape(hypotheses, n, 9), times
                )
                decimetres = transl.reshape(hypotheses, n, 3) * _TEMPORAL_TRANSLATION_SCALE
                terms["temporal"] = s.temporal_smoothness * (rough + temporal_roughness(decimetres, times))
            if stage == "silhouette" and any(t is not None for t in sil_targets):
                # without any mask this stage is a plain low-prior refinement of the keypoint fit
                vpix, _ = cam.project(out.vertices)
                sil = [silhouette_loss(vpix[k], t) for k, t in enumerate(sil_targets) if t is not None]
                terms["silhouette"] = s.silhouette_weight * torch.stack(sil).sum()
                if s.dice_weight > 0:
                    dice = [
                        dice_loss(out.vertices[k : k + 1], body.faces, small_cam, small_mask)
                        for k, (small_cam, small_mask) in dice_targets.items()
                    ]
                    terms["dice"] = s.dice_weight * torch.stack(dice).sum()
            total = sum(terms.values())
            total.backward()
            opt.step()
            sched.step()
            report(stage, i + 1, stage_iters[stage_index])
        losses = {k: float(v.detach()) for k, v in terms.items()}
        if hypotheses > 1:
            with torch.no_grad():
                orient, delta, body_pose = _pick_leg_hypotheses(
                    n, orient, delta, body_pose, pix, tgt["body"][rows, :, :2], body_w[rows], scale[rows],
                    lam_pose * prior_terms(pose),
                )  # fmt: skip

    return _finish(
        views, body, s, Ks, orient, body_pose, hand_pose, delta, t0, depth0, shape, default_shape, losses
    )


def _pick_leg_hypotheses(n, orient, delta, body_pose, pix, target, weight, scale, prior):
    """Keep, per view and per leg, the pose-stage start whose leg explains its keypoints best.

    Rows 0..n−1 started with straight legs, rows n..2n−1 with bent ones. A leg's share of the
    objective is its keypoints' part of the (weight-normalised) reprojection loss plus its
    joints' prior; the root comes from the start with the lower whole objective.
    """
    total_w = weight.sum(-1).clamp_min(1e-6)
    whole = keypoint_loss(pix, target, weight, scale) + prior.sum(-1)
    root = torch.where(whole[:n] <= whole[n:], 0, 1)  # (n,)
    views = torch.arange(n, device=orient.device)
    pick = views + n * root
    new_pose = body_pose.detach()[pick].clone()
    for leg, keypoints in _LEGS.values():
        mask = torch.zeros_like(weight)
        mask[:, keypoints] = 1.0
        leg_w = weight * mask
        leg_data = keypoint_loss(pix, target, leg_w, scale) * leg_w.sum(-1) / total_w
        leg_loss = leg_data + prior[:, leg].sum(-1)
        bent = leg_loss[n:] < leg_loss[:n]
        src = views + n * bent.long()
        new_pose[:, leg] = body_pose.detach()[src][:, leg]
    return orient.detach()[pick].clone(), delta.detach()[pick].clone(), new_pose


def _finish(
    views, body, s, Ks, orient, body_pose, hand_pose, delta, t0, depth0, shape, default_shape, losses
):
    """Final forward pass, quality scores and :class:`Fit` objects."""
    from dataclasses import asdict

    from avatarcli.render.camera import Camera

    n = len(views)
    body_map = body_landmark_map(body)
    with torch.no_grad():
        transl = t0 + delta * depth0[:, None]
        pose = _compose_pose(orient, body_pose, hand_pose)
        full_shape = (default_shape + shape).expand(n, -1)
        out = body(shape=full_shape, pose=pose, transl=transl)
        landmarks = body_map.gather(out.vertices, out.joints)
    faces = body.faces.cpu().numpy()
    fits = []
    for k, v in enumerate(views):
        cam = Camera(K=Ks[k], R=FRONT_VIEW_R.clone(), t=torch.zeros(3), width=v.width, height=v.height)
        vpix, vdepth = cam.project(out.vertices[k : k + 1].cpu())
        lpix, _ = cam.project(landmarks[k : k + 1].cpu())
        vpix, vdepth, lpix = vpix[0].numpy(), vdepth[0].numpy(), lpix[0].numpy()
        sil = silhouette(vpix, faces, v.width, v.height, vdepth)
        mesh_rows = np.flatnonzero(sil.any(1))
        mesh_height = float(mesh_rows[-1] - mesh_rows[0] + 1) if len(mesh_rows) > 1 else float(v.height)
        height_px = person_height_px(v.mask, mesh_height)
        iou = mask_iou(sil, v.mask) if v.mask is not None else None
        err_pct, scored = keypoint_error_pct(lpix, v.keypoints, height_px)
        warnings = list(v.warnings) + quality_warnings(iou, err_pct)
        fits.append(
            Fit(
                body=body.name,
                model_id=body.model_id,
                shape=full_shape[0].cpu().numpy().copy(),
                pose=pose[k].cpu().numpy().copy(),
                transl=transl[k].cpu().numpy().copy(),
                K=Ks[k].numpy().copy(),
                R=FRONT_VIEW_R.numpy().copy(),
                t=np.zeros(3, np.float32),
                width=v.width,
                height=v.height,
                image_path=v.image_path,
                image_sha256=v.image_sha256,
                view_index=k,
                num_views=n,
                keypoints=np.asarray(v.keypoints, np.float32),
                quality={
                    "silhouette_iou": iou,
                    "keypoint_error_pct": err_pct,
                    "keypoint_error_px": err_pct * height_px / 100.0,
                    "person_height_px": height_px,
                    "scored_keypoints": scored,
                    "final_losses": losses,
                },
                warnings=warnings,
                settings=asdict(s),
            )
        )
    return fits


def fit_perceptions(perceptions, body, *, settings: FitSettings | None = None, progress=None) -> list[Fit]:
    """Fit one person seen in one or more :class:`~avatarcli.perception.Perception` results."""
    return fit_views(
        [ViewInput.from_perception(p) for p in perceptions], body, settings=settings, progress=progress
    )


def fit_photo(
    path, body, *, mask=None, keypoints=None, settings: FitSettings | None = None, progress=None
) -> Fit:
    """Perceive and fit a single photo (convenience for Python users)."""
    from avatarcli.perception import perceive

    return fit_perceptions(
        [perceive(path, mask=mask, keypoints=keypoints)], body, settings=settings, progress=progress
    )[0]
