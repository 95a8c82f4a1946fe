"""Photometric refinement of a video's poses: each frame's body moved to agree with its
neighbours' photos (a small bundle adjustment over the frames).

Why: each frame's body is fitted to its own keypoints and mask, which leave it a pixel or two
off the person — and differently in every frame. A video avatar's colour is drawn from all its
frames, so their disagreement blurs and ghosts it. Here every frame gets a pose and translation
correction so that its photo agrees with its neighbours' photos read through *their* bodies:
a pixel of frame ``i`` shows body point ``p``; ``p`` on neighbour ``j``'s posed body projects
into photo ``j``; both should show the same colour (L1, only where ``j`` saw ``p``, inside both
persons). The gradient reaches frame ``i``'s body through the barycentrics of its pixels and
``j``'s through where ``p`` lands in photo ``j``. A soft-silhouette Dice term keeps each outline
on its mask, and a squared prior keeps the corrections small. The photos are compared unblurred:
blurred as the view colour reads them, the validation split below scored 21.28 instead of 21.36
dB.

The corrections are largely shared by neighbouring frames (a fit's bias drifts slowly along a
turn), so a frame whose photo may not be used — one held out for scoring — borrows the
correction of its neighbours in time (:func:`borrow_corrections`) rather than keep its raw fit, which
would sit off the avatar's refined frames. Only for frames of one video: views far apart (the
octopus's 45°) change colour too much between neighbours, and there it made things worse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarcli.render.camera import Camera


@dataclass(frozen=True)
class PhotometricSettings:
    """Everything that changes the corrections (recorded in the avatar's provenance).

    Chosen on the iPER turn's training frames alone (every 4th frame refined, the frames between
    them scored with borrowed corrections; the odd frames never used): their view colour 21.05 →
    21.37 dB, SSIM 0.632 → 0.644, person on black 20.15 → 20.17 (see docs/ARCHITECTURE.md).
    """

    steps: int = 50
    lr: float = 2e-3
    #: the translation's learning rate as a share of ``lr`` (metres move more than radians)
    translation_lr_share: float = 0.05
    photo_weight: float = 2.0
    silhouette_weight: float = 2.0
    #: weight of the squared pose correction (radians²)
    prior: float = 0.01
    #: longer side, in pixels, at which each frame's own pixels are compared
    side: int = 256
    #: metres: a neighbour saw a body point when its depth there is this close
    depth_tolerance: float = 0.05

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Frame:
    """One frame's data for the comparison, prepared once."""

    camera: Camera  # full resolution
    small_camera: Camera  # at ``side``
    photo: torch.Tensor  # (1, 3, H, W)
    readable: torch.Tensor  # (1, 1, H, W) inside the person, off the mask's edge
    small_photo: torch.Tensor  # (1, 3, h, w)
    small_mask: torch.Tensor  # (h, w)


def time_neighbours(
    times: Sequence[float], among: Sequence[int], frames: Sequence[int]
) -> dict[int, list[int]]:
    """For each of ``frames``, the nearest earlier and the nearest later frame of ``among``
    (itself excluded): whom it is compared with, or whose corrections it borrows."""
    ordered = sorted(among, key=lambda k: times[k])
    out: dict[int, list[int]] = {}
    for i in frames:
        before = [k for k in ordered if k != i and times[k] <= times[i]]
        after = [k for k in ordered if k != i and times[k] > times[i]]
        out[i] = ([before[-1]] if before else []) + ([after[0]] if after else [])
    return out


def _prepare(camera: Camera, photo: torch.Tensor, mask: torch.Tensor, side: int) -> _Frame:
    mask = mask.reshape(1, 1, *mask.shape[-2:]).to(photo)
    inner = -F.max_pool2d(-mask, 3, stride=1, padding=1)
    small_camera = camera.scale(min(1.0, side / max(camera.width, camera.height)))
    size = (small_camera.height, small_camera.width)
    return _Frame(
        camera,
        small_camera,
        photo,
        (inner > 0.5).to(photo.dtype),
        F.interpolate(photo, size=size, mode="area"),
        F.interpolate(mask, size=size, mode="area")[0, 0],
    )


def _pair_loss(
    own: _Frame, fragments, other: _Frame, other_vertices: torch.Tensor, other_depth: torch.Tensor,
    faces: torch.Tensor, depth_tolerance: float,
) -> torch.Tensor:  # fmt: skip
    """Mean L1 (per channel) between ``own``'s pixels (``fragments``: its body rasterised
    through its small camera) and the same body points read in ``other``'s photo (whose body's
    depth map, (1, 1, h, w) at any size, says what it saw); 0 when they share no visible point."""
    pixels, _, face = fragments.foreground()
    if pixels.numel() == 0:
        return other_vertices.sum() * 0.0
    bary = fragments.bary.reshape(-1, 3)[pixels]
    points = (bary[:, :, None] * other_vertices[0][faces[face]]).sum(1)
    xy, z = other.camera.project(points[None])
    size = xy.new_tensor([other.camera.width, other.camera.height])
    grid = (xy[0] / size * 2 - 1)[None, None]
    with torch.no_grad():
        depth = F.grid_sample(other_depth, grid, mode="nearest", align_corners=False)[0, 0, 0]
        ok = (depth > 0) & ((depth - z[0]).abs() < depth_tolerance)
        ok &= F.grid_sample(other.readable, grid, align_corners=False)[0, 0, 0] > 0.5
        ok &= own.small_mask.reshape(-1)[pixels] > 0.5
        ok = ok.to(other_vertices.dtype)
    read = F.grid_sample(other.photo, grid, align_corners=False)[0, :, 0]
    mine = own.small_photo.reshape(3, -1)[:, pixels]
    return ((read - mine).abs().mean(0) * ok).sum() / ok.sum().clamp_min(1.0)


def refine_poses(
    body,
    shape: torch.Tensor,
    poses: torch.Tensor,
    transl: torch.Tensor,
    cameras: Sequence[Camera],
    photos: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    neighbours: Mapping[int, Sequence[int]],
    settings: PhotometricSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Pose (N, 55, 3) and translation (N, 3) corrections, and a report.

    ``shape`` (1, S), ``poses`` (N, 55, 3), ``transl`` (N, 3): the fitted frames; one camera,
    photo (1, 3, H, W) and mask (…, H, W) per frame. Each key of ``neighbours`` is refined
    against its listed frames (whose photos it reads); every other frame keeps 0.
    """
    from avatarcli.fitting.losses import dice_loss
    from avatarcli.render import rasterize
    from avatarcli.render.rasterizer import fragments_for_faces

    s = settings or PhotometricSettings()
    n = poses.shape[0]
    if not (len(cameras) == len(photos) == len(masks) == n == transl.shape[0]):
        raise ValueError("refine_poses needs one pose, translation, camera, photo and mask per frame")
    device = body.skin_weights.device
    refined = [i for i in sorted(neighbours) if neighbours[i]]
    d_pose = torch.zeros(n, *poses.shape[1:], device=device)
    d_transl = torch.zeros(n, 3, device=device)
    report = {"settings": s.as_dict(), "frames": len(refined), "loss_first": None, "loss_last": None}
    if not refined or s.steps <= 0:
        return d_pose.cpu(), d_transl.cpu(), report
    still = sorted({j for i in refined for j in neighbours[i]} - set(refined))
    prepared = {
        k: _prepare(cameras[k].to(device), photos[k].to(device).float(), masks[k].to(device).float(), s.side)
        for k in [*refined, *still]
    }
    shape, poses, transl = shape.to(device), poses.to(device), transl.to(device)
    slot = {k: u for u, k in enumerate(refined)}
    faces = body.faces
    # neighbours that are not refined themselves (drawings, held frames) never move: their
    # bodies and z-buffers are computed once, not at every step
    with torch.no_grad():
        still_vertices: dict[int, torch.Tensor] = {}
        if still:
            held = body(shape=shape.expand(len(still), -1), pose=poses[still], transl=transl[still]).vertices
            still_vertices = {k: held[u : u + 1] for u, k in enumerate(still)}
        still_seen = {
            k: rasterize(still_vertices[k][0], faces, prepared[k].small_camera, cull_backfaces=True)
            for k in still
        }
    p_delta = torch.zeros(len(refined), *poses.shape[1:], device=device, requires_grad=True)
    t_delta = torch.zeros(len(refined), 3, device=device, requires_grad=True)
    optimiser = torch.optim.Adam(
        [{"params": [p_delta], "lr": s.lr}, {"params": [t_delta], "lr": s.lr * s.translation_lr_share}]
    )
    for step in range(s.steps):
        optimiser.zero_grad()
        total = 0.0
        posed = body(
            shape=shape.expand(len(refined), -1),
            pose=poses[refined] + p_delta,
            transl=transl[refined] + t_delta,
        ).vertices
        # the frames' terms backpropagate to the posed vertices one frame at a time (each graph
        # freed after its backward), then once through the body to the corrections
        vertices = posed.detach().requires_grad_(True)
        with torch.no_grad():  # the z-buffer pass once per frame: its faces and what it sees
            seen = {
                k: rasterize(vertices[u], faces, prepared[k].small_camera, cull_backfaces=True)
                for k, u in slot.items()
            }
        seen.update(still_seen)
        for i in refined:
            mine, own = vertices[slot[i] : slot[i] + 1], prepared[i]
            fragments = fragments_for_faces(mine, faces, own.small_camera, seen[i].face_index)
            silhouette = dice_loss(
                mine, faces, own.small_camera, own.small_mask, face_index=seen[i].face_index
            )
            loss = s.silhouette_weight * silhouette
            for j in neighbours[i]:
                theirs = still_vertices[j] if j in still_vertices else vertices[slot[j] : slot[j] + 1]
                term = _pair_loss(
                    own, fragments, prepared[j], theirs, seen[j].depth[:, None], faces, s.depth_tolerance
                )
                loss = loss + s.photo_weight * term / len(neighbours[i])
            loss.backward()
            total += float(loss.detach())
        prior = s.prior * p_delta.pow(2).sum()
        torch.autograd.backward([posed, prior], [vertices.grad, None])
        total += float(prior.detach())
        optimiser.step()
        mean = total / len(refined)
        if step == 0:
            report["loss_first"] = round(mean, 5)
        report["loss_last"] = round(mean, 5)
        if progress is not None:
            progress(step + 1, s.steps)
    for i in refined:
        d_pose[i] = p_delta[slot[i]].detach()
        d_transl[i] = t_delta[slot[i]].detach()
    report["mean_rotation_deg"] = round(float(d_pose[refined].norm(dim=-1).mean()) * 180 / torch.pi, 4)
    report["mean_translation_mm"] = round(float(d_transl[refined].norm(dim=-1).mean()) * 1000, 3)
    return d_pose.cpu(), d_transl.cpu(), report


def borrow_corrections(
    d_pose: torch.Tensor,
    d_transl: torch.Tensor,
    times: Sequence[float],
    lenders: Mapping[int, Sequence[int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of the corrections where each key of ``lenders`` (a frame whose photo was not used)
    gets its lenders' corrections — for a frame between two of them, interpolated linearly in
    ``times``; otherwise their mean — so it joins the refined frames' common placement."""
    d_pose, d_transl = d_pose.clone(), d_transl.clone()
    for i, frames in lenders.items():
        if not frames:
            continue
        weights = [1.0 / len(frames)] * len(frames)
        spans = [times[k] for k in frames]
        if len(frames) == 2 and spans[0] < spans[1] and spans[0] <= times[i] <= spans[1]:
            share = (spans[1] - times[i]) / (spans[1] - spans[0])  # of the earlier lender
            weights = [share, 1.0 - share]
        d_pose[i] = sum(w * d_pose[k] for w, k in zip(weights, frames, strict=True))
        d_transl[i] = sum(w * d_transl[k] for w, k in zip(weights, frames, strict=True))
    return d_pose, d_transl
