"""Completing a partial 21-channel DINAR texture with the VQ autoencoder and the diffusion UNet."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from avatarcli.inpaint.ddim import ProgressCallback, inpaint_latent

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


class InpaintResult(NamedTuple):
    texture: torch.Tensor  # the final texture: decoded, with the known texels copied back
    decoded: torch.Tensor  # the VQ decoding of the sampled latent (DINAR's ``diffusion_ntexture``)
    blend_mask: torch.Tensor  # (B,1,T,T) weight of the source texture in ``texture``


def erode3x3(mask: torch.Tensor) -> torch.Tensor:
    """Binary/soft 3×3 erosion in which the image border does not erode (kornia's and OpenCV's default)."""
    import torch.nn.functional as F

    return -F.max_pool2d(-mask, kernel_size=3, stride=1, padding=1)


def copy_back_mask(known_mask: torch.Tensor, uv_island_mask: torch.Tensor) -> torch.Tensor:
    """How much of the source texture to keep per texel (DINAR's ``copy_input_part``).

    (known ∪ outside-UV) is eroded 3×3 and box-blurred 3×3 at 8-bit precision, then the
    outside-UV area is removed again: a soft edge one texel inside the known region.
    """
    import torch
    import torch.nn.functional as F

    outside = 1.0 - uv_island_mask
    mask = torch.clamp(known_mask + outside, 0.0, 1.0)
    mask8 = torch.floor(mask * 255.0)  # like numpy's astype(uint8) on [0, 255] values
    mask8 = erode3x3(mask8)
    padded = F.pad(mask8, (1, 1, 1, 1), mode="reflect")  # OpenCV's default BORDER_REFLECT_101
    mask8 = torch.round(F.avg_pool2d(padded, kernel_size=3, stride=1))  # box mean, rounded to 8 bits
    return torch.clamp(mask8 / 255.0 - outside, 0.0, 1.0)


def inpaint_texture(
    vq: nn.Module,
    unet: nn.Module,
    texture21: torch.Tensor,
    known_mask: torch.Tensor | None = None,
    uv_island_mask: torch.Tensor | None = None,
    steps: int = 200,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    progress: ProgressCallback | None = None,
) -> InpaintResult:
    """Fill the unknown texels of ``texture21`` (B,21,T,T) as DINAR's test step does.

    ``known_mask`` (B,1,T,T) defaults to channel 19 of the texture; ``uv_island_mask`` (1 inside
    the UV islands) defaults to all ones. Steps: encode → condition on (latent, resized mask) →
    masked DDIM → decode (with codebook snapping) → copy the known texels back over all 21
    channels.
    """
    import torch
    import torch.nn.functional as F

    if known_mask is None:
        known_mask = texture21[:, 19:20]
    if uv_island_mask is None:
        uv_island_mask = torch.ones_like(known_mask)
    uv_island_mask = uv_island_mask.to(texture21)
    with torch.no_grad():
        z = vq.encode(texture21)
        latent_mask = F.interpolate(known_mask.to(z), size=z.shape[-2:], mode="nearest")
        cond = torch.cat([z, latent_mask], dim=1)
        keep = erode3x3(latent_mask)
        sample = inpaint_latent(
            unet, z, cond, keep, steps=steps, eta=eta, generator=generator, progress=progress
        )
        decoded = vq.decode(sample)
    blend = copy_back_mask(known_mask.to(texture21), uv_island_mask)
    texture = (1.0 - blend) * decoded + blend * texture21
    return InpaintResult(texture=texture, decoded=decoded, blend_mask=blend)
