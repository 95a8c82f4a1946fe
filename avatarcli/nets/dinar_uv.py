"""How DINAR maps UV coordinates to texels; the rendering and the photo-sampling paths differ.

u selects texture columns and v rows, with v = 0 at the top row (no flip). Rendering reads the
texture with ``grid_sample(align_corners=True)``, i.e. at the continuous texel u·(T−1).
Photo→texture sampling writes at round(u·T) (round half to even), then moves positions on the
first or last row/column inward. The two disagree by up to one texel; DINAR-compatible code
must use each where DINAR does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def uv_to_ndc(uv01: torch.Tensor) -> torch.Tensor:
    """[0,1] UVs → the [−1,1] values DINAR's rasteriser writes (2·uv − 1)."""
    return 2.0 * uv01 - 1.0


def render_texel_position(uv_ndc: torch.Tensor, texture_size: int) -> torch.Tensor:
    """Continuous (col, row) that ``grid_sample(align_corners=True)`` reads: (uv_ndc+1)/2·(T−1)."""
    return (uv_ndc + 1.0) / 2.0 * (texture_size - 1)


def sample_texel_index(uv_ndc: torch.Tensor, texture_size: int) -> torch.Tensor:
    """Integer (row, col) where DINAR's photo sampling writes a pixel's colour.

    ``uv_ndc`` is (..., 2) as (u, v) in float32. The texel is round((uv_ndc+1)·T/2) clipped to
    [0, T−1]; then a position with a 0 in either coordinate becomes (1, 1), and otherwise one
    with T−1 in either coordinate becomes (T−2, T−2) (the whole position is overwritten, as
    upstream does).
    """
    import torch

    last = texture_size - 1
    xy = uv_ndc.to(torch.float32)
    col_row = torch.round((xy + 1.0) * texture_size / 2.0).clamp(0, last).to(torch.int64)
    rc = col_row.flip(-1)
    low = (rc == 0).any(dim=-1, keepdim=True)
    high = (rc == last).any(dim=-1, keepdim=True) & ~low
    rc = torch.where(low, torch.ones_like(rc), rc)
    return torch.where(high, torch.full_like(rc, last - 1), rc)


def uv_island_mask(
    uv01: torch.Tensor, uv_faces: torch.Tensor, texture_size: int = 256, supersample: int = 4
) -> torch.Tensor:
    """(T, T) float mask of the UV islands, soft at their edges, like DINAR's ``binary_uv_map``.

    DINAR reads a 1024² drawing of the layout and shrinks it to 256² bilinearly; here the
    triangles are filled at ``supersample``× the texture size (at (u·S, v·S), v down) and shrunk
    the same way, so the copy-back blend sees the same soft island borders.
    """
    import cv2
    import numpy as np
    import torch

    size = texture_size * supersample
    shift = 4  # sub-pixel vertex precision for OpenCV's fixed-point polygon filling
    corners = uv01.detach().cpu().double().numpy()[uv_faces.detach().cpu().long().numpy()]  # (F, 3, 2)
    points = np.round(corners * size * (1 << shift)).astype(np.int32)
    canvas = np.zeros((size, size), np.uint8)
    for triangle in points:
        cv2.fillConvexPoly(canvas, triangle, 255, lineType=cv2.LINE_8, shift=shift)
    small = cv2.resize(canvas, (texture_size, texture_size), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(small.astype(np.float32) / 255.0)
