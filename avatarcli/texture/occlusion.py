"""Occlusion-boundary detector (DINAR §3.5, fact sheet §1.7).

Where an arm crosses in front of the torso, a fit that is off by a few pixels makes torso texels
sample the arm's colour. The detector finds those boundaries in *the mesh's own render*: a
colour-coded body-part texture is rendered with the UV render, Canny marks where the colour
jumps, the outer silhouette contour is removed (a body edge against the background is not an
occlusion — silhouette erosion already deals with it), and the edge band is dilated so the
sampler skips it.

The part texture is our own: one hue per body part (spread with the golden ratio so parts with
neighbouring ids differ) and a brightness gradient along the part's main axis, computed from the
rest-pose 3D position of each texel — so it is continuous across UV seams and only changes
quickly where two different parts (or far-apart places of one part) meet in the image.
Optional smoothing over the surface graph softens the junctions of connected parts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avatarcli.texture.sampling import as_mask, dilate_mask
from avatarcli.texture.texel_graph import TexelGraph

_GOLDEN = 0.618033988749895
CANNY_LOW = 150
CANNY_HIGH = 200
#: rest-pose distance (metres) between neighbouring pixels that marks a real occlusion
MIN_REST_JUMP = 0.05


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV → RGB, all in [0, 1]; returns (..., 3)."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(table):
        sel = i == k
        rgb[sel] = np.stack([r[sel], g[sel], b[sel]], axis=-1)
    return rgb


def part_colormap_texture(
    parts: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
    *,
    graph: TexelGraph | None = None,
    smooth_steps: int = 0,
    pad_texels: int = 4,
) -> torch.Tensor:
    """A (3, T, T) colour-coded body-part texture in [0, 1].

    ``parts`` (T, T) part id per texel, ``positions`` (T, T, 3) rest-pose surface points,
    ``mask`` (T, T) texels inside the UV islands. Each part gets its own hue; brightness runs
    from 0.55 to 1 along the part's principal axis (limbs get a gradient from root to tip).
    ``smooth_steps`` rounds of neighbour averaging over ``graph`` soften part junctions. The
    islands are padded by ``pad_texels`` so bilinear lookups at seams do not blend in black.
    """
    parts_np = parts.detach().cpu().numpy().astype(np.int64)
    points = positions.detach().cpu().numpy().astype(np.float64)
    inside = mask.detach().cpu().numpy().astype(bool)
    size = inside.shape[0]
    rgb = np.zeros((size, size, 3))
    for part in np.unique(parts_np[inside]):
        sel = inside & (parts_np == part)
        xyz = points[sel]
        centred = xyz - xyz.mean(axis=0)
        if len(xyz) >= 3:
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            along = centred @ vt[0]
        else:
            along = np.zeros(len(xyz))
        span = along.max() - along.min()
        ramp = (along - along.min()) / span if span > 0 else np.full(len(xyz), 0.5)
        hue = np.full(len(xyz), (int(part) * _GOLDEN) % 1.0)
        rgb[sel] = _hsv_to_rgb(hue, np.full(len(xyz), 0.9), 0.55 + 0.45 * ramp)
    texture = torch.from_numpy(rgb).permute(2, 0, 1).float()
    if graph is not None and smooth_steps > 0:
        values = graph.gather(texture)
        degree = np.asarray(graph.adjacency.sum(axis=1)).clip(1)
        for _ in range(smooth_steps):
            values = 0.5 * values + 0.5 * (graph.adjacency @ values) / degree
        texture = graph.scatter(values, texture)
    return pad_texture_islands(texture, torch.as_tensor(inside), pad_texels)


def pad_texture_islands(texture: torch.Tensor, mask: torch.Tensor, texels: int) -> torch.Tensor:
    """Grow each UV island by ``texels`` rings, each new texel the mean of its set neighbours."""
    values = texture.unsqueeze(0) * mask
    known = mask.float()[None, None]
    kernel = torch.ones(1, 1, 3, 3, dtype=values.dtype)
    for _ in range(texels):
        total = F.conv2d(values, kernel.expand(values.shape[1], 1, 3, 3), padding=1, groups=values.shape[1])
        count = F.conv2d(known, kernel, padding=1)
        grow = (count > 0) & (known == 0)
        values = torch.where(grow, total / count.clamp_min(1), values)
        known = torch.where(grow, torch.ones_like(known), known)
    return values[0]


def lookup_texture(texture: torch.Tensor, uv_render: torch.Tensor, uv_mask: torch.Tensor) -> torch.Tensor:
    """Render a texture (C, T, T) or (B, C, T, T) through a UV render (B, H, W, 2) → (B, C, H, W).

    Same lookup as DINAR's renderer (bilinear, ``align_corners=True``); background is 0.
    """
    b = uv_render.shape[0]
    if texture.dim() == 3:
        texture = texture.unsqueeze(0).expand(b, -1, -1, -1)
    grid = uv_render.to(texture.dtype) * 2 - 1
    image = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return image * as_mask(uv_mask).unsqueeze(1).to(image.dtype)


def occlusion_boundary_mask(
    colormap_render: torch.Tensor,
    silhouette: torch.Tensor,
    *,
    low: int = CANNY_LOW,
    high: int = CANNY_HIGH,
    contour_thickness: int = 2,
    dilate_iterations: int = 2,
    rest_positions: torch.Tensor | None = None,
    min_jump: float = MIN_REST_JUMP,
) -> torch.Tensor:
    """Pixels (B, H, W) bool near an occlusion boundary inside the rendered body.

    ``colormap_render`` (B, 3, H, W) in [0, 1] is the part texture seen through the UV render,
    ``silhouette`` (B, H, W) the mesh coverage. Canny (thresholds 150/200 as DINAR) on the 8-bit
    render, minus the outer silhouette contour, dilated 3×3 ``dilate_iterations`` times.

    With ``rest_positions`` (B, 3, H, W) — the rest-pose surface point seen at each pixel — an
    edge only counts where neighbouring pixels show points more than ``min_jump`` metres apart
    on the rest body: a real occlusion, not the colour border of two connected parts (neck,
    shoulder, wrist), which the plain colormap detector also flags.
    """
    import cv2

    sil = as_mask(silhouette)
    image = (colormap_render.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    image = image.permute(0, 2, 3, 1).cpu().numpy()
    edges = np.zeros(sil.shape, dtype=bool)
    for i in range(image.shape[0]):
        found = cv2.Canny(np.ascontiguousarray(image[i]), low, high) > 0
        body = sil[i].cpu().numpy().astype(np.uint8)
        contours, _ = cv2.findContours(body, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        outline = np.zeros_like(body)
        cv2.drawContours(outline, contours, -1, 1, thickness=contour_thickness)
        edges[i] = found & (outline == 0) & (body > 0)
    mask = torch.from_numpy(edges).to(sil.device)
    if rest_positions is not None:
        mask &= rest_position_jumps(rest_positions, sil, min_jump)
    return dilate_mask(mask, 3, dilate_iterations) & sil


def rest_position_jumps(
    rest_positions: torch.Tensor, silhouette: torch.Tensor, min_jump: float
) -> torch.Tensor:
    """(B, H, W) pixels within two pixels of a neighbour pair whose rest-pose points are more
    than ``min_jump`` apart (a discontinuity on the body surface, i.e. an occlusion)."""
    sil = as_mask(silhouette)
    points = rest_positions.detach().float()
    jump = torch.zeros(sil.shape, dtype=points.dtype, device=points.device)
    h, w = sil.shape[-2:]
    # Each neighbour pair (p, q = p + offset) marks both of its pixels with their distance.
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        rows_p, rows_q = slice(0, h - dr), slice(dr, h)
        cols_p = slice(max(0, -dc), w - max(0, dc))
        cols_q = slice(max(0, dc), w - max(0, -dc))
        distance = (points[:, :, rows_p, cols_p] - points[:, :, rows_q, cols_q]).norm(dim=1)
        distance = distance * (sil[:, rows_p, cols_p] & sil[:, rows_q, cols_q])
        jump[:, rows_p, cols_p] = torch.maximum(jump[:, rows_p, cols_p], distance)
        jump[:, rows_q, cols_q] = torch.maximum(jump[:, rows_q, cols_q], distance)
    return dilate_mask(jump > min_jump, 5, 1)


def detect_occlusions(
    colormap_texture: torch.Tensor,
    uv_render: torch.Tensor,
    uv_mask: torch.Tensor,
    rest_position_texture: torch.Tensor | None = None,
    **options,
) -> torch.Tensor:
    """Render the part colormap through ``uv_render`` and return the occlusion-boundary pixels.

    Pass ``rest_position_texture`` (3, T, T) (padded like the colormap) to keep only edges that
    are real surface discontinuities (see :func:`occlusion_boundary_mask`).
    """
    render = lookup_texture(colormap_texture, uv_render, uv_mask)
    if rest_position_texture is not None:
        options["rest_positions"] = lookup_texture(rest_position_texture, uv_render, uv_mask)
    return occlusion_boundary_mask(render, uv_mask, **options)
