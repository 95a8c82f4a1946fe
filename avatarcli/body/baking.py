"""Bake what a body's posing adds beyond plain skinning into a few morph targets, for one clip.

Why: a glTF viewer poses a mesh by linear blend skinning with at most four (Blender: eight)
influences per vertex. SMPL-X also adds pose-corrective shapes (elbows, knees and hips keep
their volume), and four influences drop some of anny's weights, so the file would pose a little
differently from the tool. For a known clip the difference is exact to compute: per frame, the
rest-space offset that makes the file's skinning land on the tool's vertices. Those offsets, frame
after frame, are highly redundant, so a truncated SVD turns them into ``K`` morph targets (shape
keys) and per-frame weights that every viewer animates; ``K`` is the fewest that keep every
vertex of every frame within ``tolerance`` of the tool's posing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avatarcli.body.kinematics import axis_angle_to_matrix, forward_kinematics, skinning_transforms

#: frames the basis is taken from (evenly spaced over the clip); every frame is then projected
BASIS_FRAMES = 256
#: frames posed at once (bounds the (frames, V, 4, 3, 4) influence matrices to ~110 MB at 15k vertices)
CHUNK = 40


@dataclass
class BakedShapes:
    """``targets`` (K, V, 3) rest-space deltas and ``weights`` (T, K) in [0, 1] (Blender clamps a
    shape key to its slider range, [0, 1] unless its importer widens it, and its glTF importer
    widens it from the first key only); ``error_before``/``error_after``: the largest vertex
    distance (m) from the tool's posing over the clip without / with them."""

    targets: np.ndarray
    weights: np.ndarray
    error_before: float
    error_after: float


def skinning_residuals(
    posed: Callable[[torch.Tensor], torch.Tensor],
    rest_positions: torch.Tensor,
    influence_joints: torch.Tensor,
    influence_weights: torch.Tensor,
    rest_joints: torch.Tensor,
    parents: Sequence[int],
    pose: torch.Tensor,
    transl: torch.Tensor,
    frames: torch.Tensor,
) -> torch.Tensor:
    """(n, V, 3) rest-space offsets that make plain skinning of ``rest_positions`` — each vertex
    bound to joints ``influence_joints`` (V, k) with ``influence_weights`` (V, k), as the file
    stores it — land on ``posed(frames)`` (n, V, 3), the body's own posing."""
    rot = axis_angle_to_matrix(pose[frames].float())
    n, joints = rot.shape[:2]
    rest = rest_joints.float()[None].expand(n, joints, 3)
    world = forward_kinematics(rot, rest, parents)
    world[..., :3, 3] = world[..., :3, 3] + transl[frames].float()[:, None]
    transforms = skinning_transforms(world, rest)[..., :3, :]  # (n, J, 3, 4)
    weights = influence_weights.float()
    blended = sum(
        weights[:, k, None, None] * transforms[:, influence_joints[:, k]] for k in range(weights.shape[1])
    )
    target = posed(frames).float() - blended[..., 3]
    unposed = torch.linalg.solve(blended[..., :3], target[..., None])[..., 0]
    return unposed - rest_positions.float()[None]


def bake_shapes(
    residuals: Callable[[torch.Tensor], torch.Tensor],
    num_frames: int,
    tolerance: float = 5e-4,
    max_targets: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> BakedShapes | None:
    """Morph targets from the fewest SVD components (≤ ``max_targets``) that bring every frame's
    ``residuals`` (``residuals(frame indices)`` → (n, V, 3)) within ``tolerance`` metres; None
    when plain skinning already is.

    The basis is the SVD of up to :data:`BASIS_FRAMES` frames' residuals over the vertices they
    move (by over a thousandth of the tolerance); every frame is then projected onto it and its
    error measured. Vertices a target moves by under a thousandth of the tolerance are set to
    exactly zero, so a file can store the targets sparsely."""
    report = progress or (lambda *_: None)
    picks = torch.linspace(0, num_frames - 1, min(BASIS_FRAMES, num_frames)).round().long().unique()
    sample = torch.cat([residuals(chunk) for chunk in picks.split(CHUNK)])  # (n, V, 3)
    vertices = sample.shape[1]
    active = sample.norm(dim=-1).amax(0) > tolerance * 1e-3  # (V,) vertices the clip moves
    keep = 0
    if active.any():
        moved = sample[:, active].reshape(len(picks), -1).double()
        _, strength, basis = torch.linalg.svd(moved, full_matrices=False)
        keep = min(max_targets, int((strength > strength[0] * 1e-9).sum()))
        basis = basis[:keep].to(sample.dtype)  # (K, 3·active), orthonormal rows
    weights = torch.zeros(num_frames, keep, dtype=sample.dtype)
    worst = torch.zeros(keep + 1, dtype=sample.dtype)  # largest error with the first k targets
    for frames in torch.arange(num_frames).split(CHUNK):
        chunk = residuals(frames)
        still, moving = (_largest(chunk[:, subset]) for subset in (~active, active))
        worst[0] = torch.maximum(worst[0], torch.maximum(still, moving))
        if keep:
            left = chunk[:, active].reshape(len(frames), -1)
            chunk_weights = left @ basis.T
            weights[frames] = chunk_weights
            for k in range(keep):
                left = left - chunk_weights[:, k : k + 1] * basis[k]
                error = _largest(left.reshape(len(frames), -1, 3))
                worst[k + 1] = torch.maximum(worst[k + 1], torch.maximum(still, error))
        report(int(frames[-1]) + 1, num_frames)
    if worst[0] <= tolerance or keep == 0:
        return None
    within = torch.nonzero(worst <= tolerance).flatten()
    count = max(1, int(within[0]) if within.numel() else int(torch.argmin(worst)))
    shapes = torch.zeros(count, vertices, 3, dtype=sample.dtype)
    shapes[:, active] = basis[:count].reshape(count, -1, 3)
    targets, curves = _one_signed(shapes, weights[:, :count])
    targets[targets.norm(dim=-1) < tolerance * 1e-3] = 0.0  # ≤ K × 0.5 µm: sparser targets
    return BakedShapes(
        targets=targets.numpy().astype(np.float32),
        weights=curves.numpy().astype(np.float32),
        error_before=float(worst[0]),
        error_after=float(worst[count]),
    )


def _one_signed(shapes: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same sum Σ w_k(t)·shape_k with every weight in [0, 1]: a component whose weight takes
    both signs becomes two targets (+shape, −shape), each scaled so its weight peaks at 1."""
    targets, curves = [], []
    for shape, weight in zip(shapes, weights.T, strict=True):
        for sign in (1.0, -1.0):
            part = (sign * weight).clamp_min(0.0)
            peak = float(part.max())
            if peak > 0.0:
                targets.append(sign * peak * shape)
                curves.append(part / peak)
    return torch.stack(targets), torch.stack(curves, 1)


def _largest(offsets: torch.Tensor) -> torch.Tensor:
    """The longest of (..., 3) offsets (0 when there are none)."""
    return offsets.norm(dim=-1).amax() if offsets.numel() else offsets.new_zeros(())
