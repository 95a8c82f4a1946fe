"""One call from fitted views to a complete RGB texture: sample → merge → fill → refine → pad.

This is the orchestration the ``avatar create`` pipeline needs; every step is one of the
texture functions and can be called on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from avatarcli.texture.body_maps import (
    BodyTexelMaps,
    UVCoordinates,
    body_texel_maps,
    sample_view,
    textured_render_fn,
)
from avatarcli.texture.fill import fill_unseen_texels, parse_fill_method
from avatarcli.texture.merge import merge_sampled
from avatarcli.texture.occlusion import pad_texture_islands
from avatarcli.texture.refine import refine_texture

#: texels the finished texture is grown past its UV islands, so bilinear lookups at seams are clean
ISLAND_PADDING = 4


@dataclass
class TextureView:
    """One photo with its fit: posed mesh (1, V, 3), camera, image (1, 3, H, W) in [0, 1], mask (1, H, W)."""

    vertices: torch.Tensor
    camera: object
    image: torch.Tensor
    mask: torch.Tensor


@dataclass
class RGBTexture:
    texture: torch.Tensor  # (3, T, T) complete RGB in [0, 1], islands padded
    seen: torch.Tensor  # (T, T) bool: sampled from some photo (B_fill of the merge)
    exact: torch.Tensor  # (T, T) bool: hit exactly by a pixel in some view (B_smp)
    view_cos: torch.Tensor  # (T, T) best view cosine per texel
    stats: dict = field(default_factory=dict)


def build_rgb_texture(
    body,
    views: Sequence[TextureView],
    *,
    texture_size: int = 256,
    fill_method: str = "mirror+back+harmonic",
    tau: float = 0.1,
    detect_occlusion: bool = True,
    min_cos: float = 0.2,
    refine_steps: int = 64,
    refine_lr: float = 2e-3,
    maps: BodyTexelMaps | None = None,
    layout: UVCoordinates | None = None,
    progress: Callable[[str], None] | None = None,
    lpips=None,
) -> RGBTexture:
    """Build the avatar's RGB texture from one or more fitted photos.

    The texture is in the UV layout of ``maps``; without ``maps`` they are built in ``layout``
    (default: the body's own layout). Refinement (``refine_steps`` > 0) fits the texture to all
    views at once when their images share one size, otherwise to the first view only (as
    DINAR, which is single-view). ``lpips`` (an :class:`avatarcli.nets.lpips.LPIPS`) makes the
    refinement's perceptual term LPIPS instead of SSIM; ``stats["refine_perceptual"]`` says which.
    """
    if not views:
        raise ValueError("at least one view is needed to build a texture")
    parse_fill_method(fill_method)  # fail before the expensive steps
    say = progress or (lambda _message: None)
    if maps is None:
        say("texel maps")
        maps = body_texel_maps(body, texture_size, layout=layout)
    sampled, occluded = [], []
    for i, view in enumerate(views):
        say(f"sampling view {i + 1}/{len(views)}")
        result, occ = sample_view(
            body, view.vertices, view.camera, view.image, view.mask, maps,
            detect_occlusion=detect_occlusion, min_cos=min_cos,
        )  # fmt: skip
        sampled.append(result)
        occluded.append(int(occ.sum()))
    merged = merge_sampled(sampled, tau=tau)
    seen = merged.known[0].cpu()
    exact = torch.stack([s.sampled[0, 0] for s in sampled]).any(dim=0).cpu()
    say(f"filling unseen texels ({fill_method})")
    texture = fill_unseen_texels(merged.rgb.cpu(), seen, maps.graph, fill_method)
    stats = {
        "texture_size": maps.texture_size,
        "views": len(views),
        "texels_in_layout": int(maps.mask.sum()),
        "texels_seen": int((seen & maps.mask).sum()),
        "texels_exact": int((exact & maps.mask).sum()),
        "occlusion_pixels_skipped": occluded,
        "fill_method": fill_method,
        "refine_steps": refine_steps,
    }
    if refine_steps > 0:
        say(f"refining ({refine_steps} steps)")
        texture = pad_texture_islands(texture * maps.mask, maps.mask, ISLAND_PADDING)  # clean seams
        texture, refined_views, perceptual = _refine(
            body, views, texture, seen, merged.view_cos[0].cpu(), refine_steps, refine_lr, maps, lpips
        )
        stats["refine_views"] = refined_views
        stats["refine_perceptual"] = perceptual
    padded = pad_texture_islands(texture * maps.mask, maps.mask, ISLAND_PADDING)
    return RGBTexture(padded, seen & maps.mask, exact & maps.mask, merged.view_cos[0].cpu(), stats)


def _refine(
    body, views, texture, seen, view_cos, steps, lr, maps: BodyTexelMaps, lpips=None
) -> tuple[torch.Tensor, int, str]:
    sizes = {tuple(v.image.shape[-2:]) for v in views}
    chosen = list(views) if len(sizes) == 1 else [views[0]]
    device = chosen[0].image.device
    layout = maps if maps.uv is not None else None
    renders = [textured_render_fn(body, v.vertices, v.camera, layout=layout) for v in chosen]

    def render_all(tex: torch.Tensor) -> torch.Tensor:
        return torch.cat([render(tex) for render, _ in renders])

    coverage = torch.cat([mask for _, mask in renders])
    target = torch.cat([v.image.float() for v in chosen])
    person = torch.cat([v.mask.reshape(1, 1, *v.mask.shape[-2:]).bool() for v in chosen])
    result = refine_texture(
        texture.to(device), seen, render_all, target, person, view_cos, steps, lr,
        render_mask=coverage, lpips=lpips,
    )  # fmt: skip
    return result.texture.cpu(), len(chosen), result.perceptual
