"""Fit clothing offsets: one displacement layer, shared by all views, that makes the posed body's
outline match the person masks (loose clothes, hair).

After the per-view poses are fitted, each vertex may move along its rest normal by ``s_v``
metres. All views see the same ``s`` (skinned with the body, see
:class:`avatarcli.body.clothed.ClothedBody`), so a silhouette seen from the front widens the
sides and one seen from the side deepens the front. The data term is the soft-silhouette Dice
against each mask (the render core's differentiable outline); the priors are a graph-Laplacian
smoothness (cloth is smooth, masks are noisy), a small pull towards zero (nothing where no view
says otherwise) and a hard cap. Hands get no offsets: fingers are thin and their masks noisy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avatarcli.render.camera import Camera


@dataclass(frozen=True)
class ClothingSettings:
    """Everything that changes the offsets (recorded in the avatar's provenance)."""

    steps: int = 80
    lr: float = 2e-3
    #: views per optimisation step (all views when fewer)
    batch: int = 6
    #: longer side of the masks the Dice term compares at
    mask_side: int = 160
    #: weight of the squared uniform-Laplacian of the offsets (per m²)
    smoothness: float = 5000.0
    #: weight of the squared offsets (per m²)
    magnitude: float = 100.0
    #: no vertex moves further than this (metres)
    max_offset: float = 0.08
    seed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _hand_weight(skin_weights: torch.Tensor) -> torch.Tensor:
    """(V,) share of each vertex's skinning that belongs to a hand part."""
    from avatarcli.body.parts import JOINT_PART, PART_NAMES

    hands = [i for i, name in enumerate(PART_NAMES) if name.endswith("_hand")]
    on_hand = torch.tensor(
        [p in hands for p in JOINT_PART], dtype=skin_weights.dtype, device=skin_weights.device
    )
    return (skin_weights * on_hand).sum(-1).clamp(0, 1)


def _uniform_laplacian(faces: torch.Tensor, num_vertices: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``L(x) = x − mean of x over each vertex's mesh neighbours`` for (V,) values."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.unique(torch.cat([edges, edges.flip(1)]), dim=0)
    degree = torch.bincount(edges[:, 0], minlength=num_vertices).clamp_min(1).to(torch.float32)

    def laplacian(x: torch.Tensor) -> torch.Tensor:
        neighbour_sum = torch.zeros_like(x).index_add_(0, edges[:, 0], x[edges[:, 1]])
        return x - neighbour_sum / degree.to(x)

    return laplacian


def _small_mask(mask, camera: Camera, side: int) -> tuple[Camera, torch.Tensor]:
    """The view's camera and mask at ``side`` pixels on the longer side (area-averaged mask)."""
    factor = min(1.0, side / max(camera.width, camera.height))
    small_cam = camera.scale(factor)
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32) if not torch.is_tensor(mask) else mask)
    m = m.reshape(1, 1, *m.shape[-2:]).float()
    small = torch.nn.functional.interpolate(m, size=(small_cam.height, small_cam.width), mode="area")[0, 0]
    return small_cam, small.to(camera.K.device)


def fit_clothing_offsets(
    body,
    shape: torch.Tensor,
    poses: torch.Tensor,
    transl: torch.Tensor,
    cameras: Sequence[Camera],
    masks: Sequence,
    settings: ClothingSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Rest-frame offsets (V, 3) in metres for the fitted views of one person.

    ``body`` is the plain body the poses were fitted with, ``shape`` (1, S), ``poses`` (N, 55, 3),
    ``transl`` (N, 3), one camera and one (H, W) person mask (array or tensor) per view.
    """
    from avatarcli.body.clothed import posed_offsets
    from avatarcli.fitting.losses import dice_loss
    from avatarcli.render.maps import vertex_normals

    s = settings or ClothingSettings()
    n = len(cameras)
    if n == 0 or len(masks) != n or poses.shape[0] != n or transl.shape[0] != n:
        raise ValueError("fit_clothing_offsets needs one pose, translation, camera and mask per view")
    device = body.skin_weights.device
    faces = body.faces
    with torch.no_grad():
        normals = vertex_normals(body.rest(shape.to(device)).vertices, faces)[0]
        posed = [
            body(
                shape=shape.to(device), pose=poses[i : i + 1].to(device), transl=transl[i : i + 1].to(device)
            )
            for i in range(n)
        ]
    free = (1.0 - _hand_weight(body.skin_weights))[:, None]
    direction = normals * free  # (V, 3): where and which way a vertex may move
    laplacian = _uniform_laplacian(faces, body.num_vertices)
    targets = [_small_mask(m, c.to(device), s.mask_side) for m, c in zip(masks, cameras, strict=True)]
    offset = torch.zeros(body.num_vertices, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([offset], lr=s.lr)
    generator = torch.Generator().manual_seed(s.seed)
    batch = min(s.batch, n)
    for step in range(s.steps):
        chosen = torch.randperm(n, generator=generator)[:batch].tolist()
        optimiser.zero_grad()
        displacement = offset[:, None] * direction
        data = 0.0
        for i in chosen:
            out = posed[i]
            vertices = out.vertices + posed_offsets(displacement, body.skin_weights, out.joint_transforms)
            data = data + dice_loss(vertices, faces, *targets[i])
        prior = s.smoothness * laplacian(offset).pow(2).mean() + s.magnitude * offset.pow(2).mean()
        (data / batch + prior).backward()
        optimiser.step()
        with torch.no_grad():
            offset.clamp_(-s.max_offset, s.max_offset)
        if progress is not None:
            progress(step + 1, s.steps)
    return (offset.detach()[:, None] * direction).cpu()


def clothe_body(
    body,
    shape: torch.Tensor,
    poses: torch.Tensor,
    transl: torch.Tensor,
    cameras: Sequence[Camera],
    masks: Sequence,
    settings: ClothingSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """``body`` wearing offsets fitted to these views, and a report for the avatar's provenance:
    the settings and each view's silhouette IoU before and after (same arguments as
    :func:`fit_clothing_offsets`)."""
    from avatarcli.body.clothed import ClothedBody

    s = settings or ClothingSettings()
    views = (shape, poses, transl, cameras, masks)
    before = silhouette_iou(body, *views)
    offsets = fit_clothing_offsets(body, *views, s, progress)
    clothed = ClothedBody(body, offsets.to(body.skin_weights.device))
    after = silhouette_iou(clothed, *views)
    return clothed, {
        "settings": s.as_dict(),
        "silhouette_iou_before": [round(x, 4) for x in before],
        "silhouette_iou_after": [round(x, 4) for x in after],
    }


def silhouette_iou(
    body, shape, poses, transl, cameras: Sequence[Camera], masks: Sequence, side: int = 256
) -> list[float]:
    """IoU of each posed body's hard silhouette with its mask (at ``side`` px), for reports."""
    from avatarcli.render.rasterizer import rasterize

    device = body.skin_weights.device
    out = []
    with torch.no_grad():
        for i, (camera, mask) in enumerate(zip(cameras, masks, strict=True)):
            small_cam, small = _small_mask(mask, camera.to(device), side)
            vertices = body(
                shape=shape.to(device), pose=poses[i : i + 1].to(device), transl=transl[i : i + 1].to(device)
            ).vertices
            covered = rasterize(vertices, body.faces, small_cam).mask[0]
            person = small > 0.5
            union = float((covered | person).sum())
            out.append(float((covered & person).sum()) / union if union else float("nan"))
    return out
