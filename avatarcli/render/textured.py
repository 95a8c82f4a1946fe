"""Texture lookup and textured rendering (RGB images and raw neural-texture features).

Texture convention (DINAR's, see shared/reference/vectors/dinar_uv_convention.json):
``u`` indexes columns, ``v`` rows with ``v = 0`` at the **top** row; lookups are bilinear
``grid_sample(align_corners=True)``, so texel (r, c) of a T×T texture has its centre at
``u = c / (T-1), v = r / (T-1)``.

UV seams: a pixel's UV comes from its own face's corners (per-corner UVs), so the lookup never
interpolates *UVs* across a seam. Bilinear filtering still mixes up to one texel outside a UV
island at its border; textures should therefore be dilated (padded) past their islands, which
the texture stage does. Outside [0, 1] the lookup reads zeros (``padding_mode="zeros"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatarcli.render.camera import Camera
from avatarcli.render.maps import render_uv, view_cosine
from avatarcli.render.rasterizer import Fragments, rasterize


def sample_texture(texture: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear lookup of ``texture`` (B or 1, C, Ht, Wt) at ``uv`` (B, H, W, 2) in [0, 1] → (B, C, H, W).

    Differentiable in both the texture and the UVs; pixels outside ``mask`` (B, H, W) are 0.
    """
    batch = uv.shape[0]
    if texture.dim() == 3:
        texture = texture[None]
    if texture.shape[0] == 1 and batch > 1:
        texture = texture.expand(batch, -1, -1, -1)
    grid = (uv * 2.0 - 1.0).to(texture.dtype)
    out = torch.nn.functional.grid_sample(
        texture, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    if mask is not None:
        out = out * mask.reshape(batch, 1, *out.shape[2:]).to(out.dtype)
    return out


def _background_image(background, batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(background, torch.Tensor) and background.dim() >= 3:
        bg = background.to(like)
        if bg.dim() == 3:
            bg = bg[None]
        if bg.shape[-2:] != (height, width):
            raise ValueError(f"background image is {tuple(bg.shape[-2:])}, the render is {(height, width)}")
        return bg.expand(batch, -1, -1, -1)
    colour = torch.as_tensor(background, dtype=like.dtype, device=like.device).reshape(-1)
    if colour.numel() == 1:
        colour = colour.repeat(3)
    return colour.view(1, -1, 1, 1).expand(batch, -1, height, width)


def render_textured(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uv: torch.Tensor,
    uv_faces: torch.Tensor,
    texture: torch.Tensor,
    camera: Camera,
    *,
    background=1.0,
    shade: bool = False,
    ambient: float = 0.4,
    fragments: Fragments | None = None,
    surface_colour: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a textured body: image (B, 3, H, W) composited over ``background``, mask (B, 1, H, W).

    ``background`` is a grey level, an RGB triple or an image (B, 3, H, W). ``shade`` applies
    Lambertian light from the camera (``ambient + (1 - ambient) cos``). Back faces are culled
    (bodies are closed), unless ``fragments`` from another rasterisation are passed in.
    ``surface_colour``: (B, 3, H, W) colours and (B, 1, H, W) bool where they replace the texture's
    (view-dependent colour drawn from photos, :mod:`avatarcli.texture.view_dependent`).
    """
    if vertices.dim() == 2:
        vertices = vertices[None]
    if fragments is None:
        fragments = rasterize(vertices, faces, camera, cull_backfaces=True)
    batch, height, width = fragments.shape
    pixel_uv = render_uv(fragments, uv, uv_faces)
    colour = sample_texture(texture, pixel_uv, fragments.mask)
    if surface_colour is not None:
        colour = torch.where(surface_colour[1].to(colour.device), surface_colour[0].to(colour), colour)
    if shade:
        cos = view_cosine(vertices, faces, fragments, camera).clamp_min(0)
        colour = colour * (ambient + (1.0 - ambient) * cos).unsqueeze(1).to(colour)
    mask = fragments.mask.unsqueeze(1).to(colour.dtype)
    bg = _background_image(background, batch, height, width, colour)
    return colour * mask + bg * (1.0 - mask), mask


@dataclass
class FeatureRender:
    """Input of a neural renderer: sampled neural texture, the uv render and the body mask."""

    features: torch.Tensor  # (B, C, H, W), 0 off the body
    uv: torch.Tensor  # (B, H, W, 2) in [0, 1], 0 off the body
    mask: torch.Tensor  # (B, 1, H, W) float {0, 1}
    fragments: Fragments


def render_features(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uv: torch.Tensor,
    uv_faces: torch.Tensor,
    neural_texture: torch.Tensor,
    camera: Camera,
    *,
    fragments: Fragments | None = None,
) -> FeatureRender:
    """Rasterise the raw neural-texture features (no shading, no background) for a neural renderer."""
    if fragments is None:
        fragments = rasterize(vertices, faces, camera, cull_backfaces=True)
    pixel_uv = render_uv(fragments, uv, uv_faces)
    features = sample_texture(neural_texture, pixel_uv, fragments.mask)
    return FeatureRender(features, pixel_uv, fragments.mask.unsqueeze(1).to(features.dtype), fragments)
