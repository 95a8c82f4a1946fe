"""Photo → UV texture sampling, following DINAR's Algorithm 1 (fact sheet §1.6).

Every usable pixel of the photo knows, through the UV render, which texel it shows. Its colour
is splatted into the 3×3 texel neighbourhood (averaged), then the exact texel is overwritten by
the exact pixel colour. That gives two masks:

* ``sampled`` (B_smp): texels that received an exact pixel;
* ``filled`` (B_fill): ``sampled`` plus the one-texel ring closed by the neighbour average — the
  small gaps left where the photo has fewer pixels than the texture has texels.

Deliberate differences from the upstream code (documented, not reproduced):

* colours stay float in [0, 1]. Upstream converts to uint8 as ``(rgb + 1) * 128`` so pure white
  (255 → 256) wraps around to black; here white stays white;
* several pixels landing on one texel are averaged (upstream's buffered numpy ``+=`` keeps only
  one of them per offset, in effect a "last write");
* the border rule clamps each coordinate on its own (``border_rule="per_axis"``). Upstream moves
  the *whole* position to (1, 1) when either coordinate is 0 and to (T-2, T-2) when either is
  T-1; ``border_rule="dinar"`` reproduces that for compatibility checks.

The texel mapping itself is DINAR's convention: column ``round(u*T)``, row ``round(v*T)`` (round
half to even), clipped to [0, T-1]. Note that rendering reads texel ``u*(T-1)``
(``grid_sample(align_corners=True)``); the two differ by at most one texel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Texture sizes the CLI offers; the functions here accept any size ≥ 8.
TEXTURE_SIZES = (256, 512, 1024)
BORDER_RULES = ("per_axis", "dinar")


@dataclass
class SampledTexture:
    """Result of sampling one or more photos into UV space (one entry per batch item)."""

    rgb: torch.Tensor  # (B, 3, T, T) float in [0, 1]; 0 where nothing was sampled
    sampled: torch.Tensor  # (B, 1, T, T) bool — B_smp, texels hit exactly by a pixel
    filled: torch.Tensor  # (B, 1, T, T) bool — B_fill, sampled plus the 3×3 gap ring
    view_cos: torch.Tensor  # (B, 1, T, T) float: cosine normal↔camera of the texel; 0 where unknown

    @property
    def ring(self) -> torch.Tensor:
        """Texels known only through neighbour averaging (DINAR's ``inpaint_mask``)."""
        return self.filled & ~self.sampled


def as_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool ``(B, H, W)`` view of a mask given as (B,1,H,W), (B,H,W) or (H,W)."""
    if mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"a mask has one channel, got shape {tuple(mask.shape)}")
        mask = mask[:, 0]
    elif mask.dim() == 2:
        mask = mask.unsqueeze(0)
    return mask > 0.5 if mask.is_floating_point() else mask.bool()


def erode_mask(mask: torch.Tensor, kernel_size: int = 5, iterations: int = 1) -> torch.Tensor:
    """Binary erosion of a (B, H, W) bool mask with a square kernel (pixels outside count as set,
    as OpenCV's default border does)."""
    outside = (~mask).float().unsqueeze(1)
    for _ in range(iterations):
        outside = F.max_pool2d(outside, kernel_size, stride=1, padding=kernel_size // 2)
    return outside[:, 0] < 0.5


def dilate_mask(mask: torch.Tensor, kernel_size: int = 3, iterations: int = 1) -> torch.Tensor:
    """Binary dilation of a (B, H, W) bool mask with a square kernel."""
    inside = mask.float().unsqueeze(1)
    for _ in range(iterations):
        inside = F.max_pool2d(inside, kernel_size, stride=1, padding=kernel_size // 2)
    return inside[:, 0] > 0.5


def uv_to_texel(uv: torch.Tensor, texture_size: int, border_rule: str = "per_axis") -> torch.Tensor:
    """DINAR's photo-sampling texel index ``(row, col)`` for UVs in [0, 1] (``(..., 2)`` → ``(..., 2)``).

    Column ``round(u*T)``, row ``round(v*T)``, clipped, then kept one texel off the border so the
    3×3 splat stays inside the texture (see the module docstring for the two border rules).
    """
    if border_rule not in BORDER_RULES:
        raise ValueError(f"unknown border rule {border_rule!r}; choose one of {BORDER_RULES}")
    t = texture_size
    # Same arithmetic as upstream, in float32: NDC (2u-1) back to texels, round half to even.
    ndc = uv.float() * 2 - 1
    col = torch.round((ndc[..., 0] + 1) * t / 2).clamp(0, t - 1).long()
    row = torch.round((ndc[..., 1] + 1) * t / 2).clamp(0, t - 1).long()
    if border_rule == "per_axis":
        return torch.stack([row.clamp(1, t - 2), col.clamp(1, t - 2)], dim=-1)
    low = (row == 0) | (col == 0)
    row = torch.where(low, torch.ones_like(row), row)
    col = torch.where(low, torch.ones_like(col), col)
    high = (row == t - 1) | (col == t - 1)
    row = torch.where(high, torch.full_like(row, t - 2), row)
    col = torch.where(high, torch.full_like(col, t - 2), col)
    return torch.stack([row, col], dim=-1)


def splat_to_texture(
    values: torch.Tensor,
    texels: torch.Tensor,
    valid: torch.Tensor,
    texture_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Algorithm-1 splat of per-pixel values into UV space.

    ``values`` (B, C, H, W), ``texels`` (B, H, W, 2) long (row, col) away from the border,
    ``valid`` (B, H, W) bool. Returns ``(texture (B,C,T,T), sampled (B,1,T,T), filled (B,1,T,T))``:
    exact texels hold the mean of the pixels that hit them, ring texels the mean of the pixels
    whose 3×3 neighbourhood covers them.
    """
    b, c = values.shape[:2]
    t = texture_size
    flat_values = values.permute(0, 2, 3, 1).reshape(b, -1, c)
    flat_texels = texels.reshape(b, -1, 2)
    flat_valid = valid.reshape(b, -1)
    texture = values.new_zeros(b, c, t, t)
    sampled = torch.zeros(b, 1, t, t, dtype=torch.bool, device=values.device)
    filled = torch.zeros_like(sampled)
    for i in range(b):
        colour = flat_values[i][flat_valid[i]]  # (N, C)
        rc = flat_texels[i][flat_valid[i]]  # (N, 2)
        if colour.shape[0] == 0:
            continue
        ones = colour.new_ones(colour.shape[0])
        ring_sum = colour.new_zeros(t * t, c)
        ring_count = colour.new_zeros(t * t)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                index = (rc[:, 0] + dr) * t + rc[:, 1] + dc
                ring_sum.index_add_(0, index, colour)
                ring_count.index_add_(0, index, ones)
        centre = rc[:, 0] * t + rc[:, 1]
        exact_sum = colour.new_zeros(t * t, c).index_add_(0, centre, colour)
        exact_count = colour.new_zeros(t * t).index_add_(0, centre, ones)
        has_exact = exact_count > 0
        has_ring = ring_count > 0
        out = torch.where(
            has_exact[:, None],
            exact_sum / exact_count.clamp_min(1)[:, None],
            ring_sum / ring_count.clamp_min(1)[:, None],
        )
        out = out * has_ring[:, None]
        texture[i] = out.T.reshape(c, t, t)
        sampled[i, 0] = has_exact.reshape(t, t)
        filled[i, 0] = has_ring.reshape(t, t)
    return texture, sampled, filled


def sample_rgb_texture(
    image: torch.Tensor,
    mask: torch.Tensor,
    uv_render: torch.Tensor,
    uv_mask: torch.Tensor,
    texture_size: int = 256,
    *,
    view_cos: torch.Tensor | None = None,
    min_cos: float = 0.2,
    occlusion_mask: torch.Tensor | None = None,
    erode_kernel: int = 5,
    border_rule: str = "per_axis",
) -> SampledTexture:
    """Sample the photo's colours into a UV texture (DINAR Algorithm 1).

    Args:
        image: (B, 3, H, W) float photo in [0, 1] (uint8 is accepted and divided by 255).
        mask: person silhouette (B, 1, H, W) / (B, H, W); eroded by ``erode_kernel`` (5×5 as in
            DINAR) so the blended edge pixels (background bleeding in) are not sampled.
        uv_render: (B, H, W, 2) per-pixel UV in [0, 1] of the fitted mesh (v = 0 at the top row).
            Only the front-most surface appears in it, so z-buffer visibility is implicit.
        uv_mask: (B, H, W) / (B, 1, H, W) where the mesh covers the pixel.
        texture_size: T of the (T, T) texture (256 default; 512 and 1024 work the same way).
        view_cos: optional (B, H, W) / (B, 1, H, W) cosine between surface normal and the
            direction to the camera. Pixels under ``min_cos`` (grazing, stretched) are skipped and
            the cosine is sampled into UV space for the multi-view merge and refinement weights.
            Without it every covered pixel counts as facing the camera (cosine 1).
        occlusion_mask: optional (B, H, W) pixels to drop, e.g. from
            :func:`avatarcli.texture.occlusion.occlusion_boundary_mask`.
        border_rule: ``per_axis`` (default) or ``dinar`` (upstream's whole-position rule).
    """
    if texture_size < 8:
        raise ValueError(f"texture size must be at least 8, got {texture_size}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if not image.is_floating_point():  # 8-bit photo
        image = image.float() / 255.0
    if uv_render.dim() == 3:
        uv_render = uv_render.unsqueeze(0)
    b, _, h, w = image.shape
    if uv_render.shape[:3] != (b, h, w):
        raise ValueError(f"uv render {tuple(uv_render.shape)} does not match image {tuple(image.shape)}")
    valid = as_mask(uv_mask) & erode_mask(as_mask(mask), erode_kernel)
    if occlusion_mask is not None:
        valid = valid & ~as_mask(occlusion_mask)
    if view_cos is None:
        cos = image.new_ones(b, 1, h, w)
    else:
        cos = view_cos.to(image.dtype).reshape(b, 1, h, w).clamp(0, 1)
        valid = valid & (cos[:, 0] >= min_cos)
    texels = uv_to_texel(uv_render, texture_size, border_rule)
    texture, sampled, filled = splat_to_texture(torch.cat([image, cos], 1), texels, valid, texture_size)
    return SampledTexture(
        rgb=texture[:, :3].clamp(0, 1),
        sampled=sampled,
        filled=filled,
        view_cos=texture[:, 3:4],
    )
