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
