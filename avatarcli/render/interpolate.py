"""Attribute interpolation over rasterised fragments (per-vertex and per-face-corner values).

Both functions weight the three corner values of each pixel's face by the fragments'
perspective-correct barycentrics. They are ordinary autograd operations, so gradients reach
the values (textures, colours, UVs) and, through ``Fragments.bary``, the vertex positions.
Only foreground pixels are computed; background pixels are 0.
"""

from __future__ import annotations

import torch

from avatarcli.render.rasterizer import Fragments


def interpolate(values: torch.Tensor, fragments: Fragments, faces: torch.Tensor) -> torch.Tensor:
    """Per-vertex values (V, C) or (B, V, C) → per-pixel (B, H, W, C); a batch of 1 broadcasts."""
    batch, height, width = fragments.shape
    if values.dim() == 2:
        values = values[None]
    if values.shape[0] == 1 and batch > 1:
        values = values.expand(batch, -1, -1)
    if values.shape[0] != batch:
        raise ValueError(f"values batch {values.shape[0]} does not match fragments batch {batch}")
    num_vertices, channels = values.shape[1], values.shape[2]
    idx, b, face = fragments.foreground()
    faces = faces.to(device=values.device, dtype=torch.long)
    vid = (faces.index_select(0, face) + (b * num_vertices)[:, None]).reshape(-1)
    corners = values.reshape(-1, channels).index_select(0, vid).view(-1, 3, channels)
    return _scatter_pixels(corners, fragments, idx, channels, values.dtype)


def interpolate_corners(values: torch.Tensor, fragments: Fragments) -> torch.Tensor:
    """Per-face-corner values (F, 3, C) or (B, F, 3, C) → per-pixel (B, H, W, C).

    Used for attributes that are discontinuous across faces, such as UVs at texture seams:
    ``uv[uv_faces]`` gives the (F, 3, 2) corner UVs.
    """
    batch, height, width = fragments.shape
    if values.dim() == 3:
        values = values[None]
    if values.shape[0] == 1 and batch > 1:
        values = values.expand(batch, -1, -1, -1)
    if values.shape[0] != batch:
        raise ValueError(f"values batch {values.shape[0]} does not match fragments batch {batch}")
    num_faces, channels = values.shape[1], values.shape[3]
    idx, b, face = fragments.foreground()
    corners = values.reshape(-1, 3, channels).index_select(0, face + b * num_faces)
    return _scatter_pixels(corners, fragments, idx, channels, values.dtype)


def _scatter_pixels(
    corners: torch.Tensor, fragments: Fragments, idx: torch.Tensor, channels: int, dtype: torch.dtype
) -> torch.Tensor:
    batch, height, width = fragments.shape
    bary = fragments.bary.reshape(-1, 3).index_select(0, idx).to(dtype)
    pixel_values = (bary.unsqueeze(-1) * corners).sum(1)
    out = torch.zeros(batch * height * width, channels, dtype=dtype, device=corners.device)
    return out.index_put_((idx,), pixel_values).view(batch, height, width, channels)
