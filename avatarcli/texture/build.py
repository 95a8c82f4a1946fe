"""One call from fitted views to a complete RGB texture: sample → merge → fill → refine → pad.

This is the orchestration the ``avatar create`` pipeline needs; every step is one of the
texture functions and can be called on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

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

#: Automatic texture size: DINAR's 256² texture serves a person about 440 px tall (its 512² crops);
#: a taller person in the photo gets 512² so the texture keeps up with the photo's detail
#: (sith_007, 832 px: input view 24.0 dB / SSIM 0.853 at 256², 25.1 / 0.931 at 512²;
#: held-out views lose a little: octopus leave-one-out 26.50 → 26.34 dB, sharper detail misregisters).
AUTO_TEXTURE_SIZE_FROM_HEIGHT_PX = 512
#: 1024² stays an explicit choice: four times 512²'s texels for little gain at phone-photo sizes.
AUTO_TEXTURE_SIZES = (256, 512)


@dataclass
class TextureView:
    """One photo with its fit: posed mesh (1, V, 3), camera, image (1, 3, H, W) in [0, 1], mask
    (1, H, W), and optionally the detected hands and arms (2, H, W each) for the sampler's hand
    and arm guards."""

    vertices: torch.Tensor
    camera: object
    image: torch.Tensor
    mask: torch.Tensor
    hands: torch.Tensor | None = None
    arms: torch.Tensor | None = None


@dataclass
class RGBTexture:
    texture: torch.Tensor  # (3, T, T) complete RGB in [0, 1], islands padded
    seen: torch.Tensor  # (T, T) bool: sampled from some photo (B_fill of the merge)
    exact: torch.Tensor  # (T, T) bool: hit exactly by a pixel in some view (B_smp)
    view_cos: torch.Tensor  # (T, T) best view cosine per texel
    stats: dict = field(default_factory=dict)


def mask_height_px(view: TextureView) -> int:
    """Rows between the top and the bottom of the view's person mask (0 when it is empty)."""
    rows = torch.nonzero(view.mask.reshape(view.mask.shape[-2:]).amax(dim=1) > 0)
    return int(rows[-1]) - int(rows[0]) + 1 if rows.numel() else 0


def auto_texture_size(views: Sequence[TextureView]) -> int:
    """The texture size for ``views`` when the user did not choose one: 256², or 512² when the
    tallest person mask is at least :data:`AUTO_TEXTURE_SIZE_FROM_HEIGHT_PX` pixels tall."""
    tallest = max((mask_height_px(v) for v in views), default=0)
    small, large = AUTO_TEXTURE_SIZES
    return large if tallest >= AUTO_TEXTURE_SIZE_FROM_HEIGHT_PX else small


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
    views at once, each photo cropped to a window around its person (:func:`refinement_views`).
    ``lpips`` (an :class:`avatarcli.nets.lpips.LPIPS`) makes the refinement's perceptual term
    LPIPS instead of SSIM; ``stats["refine_perceptual"]`` says which.
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
            detect_occlusion=detect_occlusion, min_cos=min_cos, hands=view.hands, arms=view.arms,
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


#: pixels kept around the person when the refinement crops the photos (≥ the SSIM window)
REFINE_CROP_MARGIN = 16
#: the refinement sees a person at most this many times the texture size tall: finer pixels
#: only cost time (a 1500-px person in a phone photo against a 512² texture), they add no texel
REFINE_MAX_PERSON_PER_TEXTURE = 2


def person_window(view: TextureView, margin: int = REFINE_CROP_MARGIN) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) around the person mask and the projected body, plus ``margin``,
    clamped to the image: the only pixels the refinement's masked losses can see."""
    height, width = view.image.shape[-2:]
    pixels, _ = view.camera.project(view.vertices.reshape(1, -1, 3).to(view.camera.K))
    xs, ys = [pixels[0, :, 0].detach()], [pixels[0, :, 1].detach()]
    rows, cols = torch.nonzero(view.mask.reshape(height, width) > 0.5, as_tuple=True)
    if rows.numel():
        xs.append(cols.to(xs[0]))
        ys.append(rows.to(ys[0]))
    x, y = torch.cat(xs), torch.cat(ys)
    left = max(0, int(x.min().floor()) - margin)
    top = max(0, int(y.min().floor()) - margin)
    right = min(width, int(x.max().ceil()) + 1 + margin)
    bottom = min(height, int(y.max().ceil()) + 1 + margin)
    if right <= left or bottom <= top:  # the body projects outside the photo: keep it whole
        return 0, 0, width, height
    return left, top, right, bottom


def crop_view(view: TextureView, left: int, top: int, width: int, height: int) -> TextureView:
    """``view`` seen through the window (left, top, width, height); outside the photo the window
    is zero-padded (image black, mask empty), so windows of one size fit photos of any size."""
    img_h, img_w = view.image.shape[-2:]
    pad = (max(0, -left), max(0, left + width - img_w), max(0, -top), max(0, top + height - img_h))
    x0, y0 = left + pad[0], top + pad[2]

    def window(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, pad)[..., y0 : y0 + height, x0 : x0 + width]

    mask = window(view.mask.reshape(1, 1, img_h, img_w).float()).reshape(1, height, width).to(view.mask.dtype)
    return TextureView(view.vertices, view.camera.crop(left, top, width, height), window(view.image), mask)


def refinement_views(views: Sequence[TextureView], max_person_px: int | None = None) -> list[TextureView]:
    """The views cropped to windows of one common size around each person, scaled down so the
    tallest person is at most ``max_person_px`` tall.

    One common size lets the refinement batch photos of different sizes (a portrait and a
    landscape phone photo are refined together instead of only the first), and pixels away from
    the person, which carry no loss, are no longer rasterised and textured every step.
    """
    boxes = [person_window(v) for v in views]
    width = max(r - l for l, _, r, _ in boxes)
    height = max(b - t for _, t, _, b in boxes)
    crops = [crop_view(v, l, t, width, height) for v, (l, t, _, _) in zip(views, boxes, strict=True)]
    tallest = max(mask_height_px(v) for v in views)
    if max_person_px is None or tallest <= max_person_px:
        return crops
    factor = round(height * max_person_px / tallest) / height  # a whole number of rows
    return [scale_view(v, factor) for v in crops]


def scale_view(view: TextureView, factor: float) -> TextureView:
    """``view`` at ``factor`` × its resolution (area-averaged photo, mask kept where ≥ half)."""
    camera = view.camera.scale(factor)
    size = (camera.height, camera.width)
    image = F.interpolate(view.image.float(), size=size, mode="area")
    mask = F.interpolate(view.mask.reshape(1, 1, *view.mask.shape[-2:]).float(), size=size, mode="area")
    return TextureView(view.vertices, camera, image, (mask[:, 0] >= 0.5).to(view.mask.dtype))


def _refine(
    body, views, texture, seen, view_cos, steps, lr, maps: BodyTexelMaps, lpips=None
) -> tuple[torch.Tensor, int, str]:
    chosen = refinement_views(views, REFINE_MAX_PERSON_PER_TEXTURE * maps.texture_size)
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
