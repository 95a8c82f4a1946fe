"""Texture stage: photo → RGB UV texture (DINAR Algorithm 1), occlusion-boundary detector,
multi-view merge, classical fill of unseen texels on the body surface, refinement through the
differentiable render, and image metrics.

Typical flow for a fitted body (``body`` from ``avatarcli.body.load_body``; per view a posed
mesh ``vertices`` (1, V, 3), an ``avatarcli.render.Camera``, the photo (1, 3, H, W) in [0, 1]
and the person mask (1, H, W))::

    maps = body_texel_maps(body, 256)                       # once per avatar
    views = [sample_view(body, v, cam, photo, mask, maps)[0] for v, cam, photo, mask in inputs]
    merged = merge_sampled(views, tau=0.1)                  # a single view works the same way
    full = fill_unseen_texels(merged.rgb, merged.known[0], maps.graph, "mirror+back+harmonic")
    render, coverage = textured_render_fn(body, vertices0, camera0)  # refine on one photo
    tuned = refine_texture(full, merged.known[0], render, photo0, mask0, merged.view_cos[0],
                           render_mask=coverage).texture
    texture = pad_texture_islands(tuned, maps.mask, 4)      # before bilinear rendering

or all of it in one call: ``build_rgb_texture(body, [TextureView(vertices, camera, photo,
mask), ...], texture_size=256, fill_method=..., refine_steps=64)``.

Everything works in the body's own UV layout unless ``body_texel_maps(..., layout=...)`` (or
``build_rgb_texture(..., layout=...)``) names another one for the same faces, e.g. DINAR's
SMPL-X layout; the maps carry it to sampling, and ``textured_render_fn(..., layout=...)`` renders
in it.

The lower-level functions take plain tensors (uv render, masks, cosines, per-texel geometry).
"""

from avatarcli.texture.body_maps import BodyTexelMaps, body_texel_maps, sample_view, textured_render_fn
from avatarcli.texture.build import RGBTexture, TextureView, build_rgb_texture
from avatarcli.texture.fill import FILL_METHODS, fill_unseen_texels, parse_fill_method
from avatarcli.texture.merge import MergedTexture, merge_sampled, merge_views
from avatarcli.texture.metrics import psnr, ssim, ssim_map
from avatarcli.texture.occlusion import (
    detect_occlusions,
    lookup_texture,
    occlusion_boundary_mask,
    pad_texture_islands,
    part_colormap_texture,
    rest_position_jumps,
)
from avatarcli.texture.refine import RefineResult, photometric_loss, refine_texture, view_angle_weight
from avatarcli.texture.sampling import (
    BORDER_RULES,
    TEXTURE_SIZES,
    SampledTexture,
    sample_rgb_texture,
    splat_to_texture,
    uv_to_texel,
)
from avatarcli.texture.texel_graph import TexelGraph, build_texel_graph

__all__ = [
    "BORDER_RULES",
    "FILL_METHODS",
    "TEXTURE_SIZES",
    "BodyTexelMaps",
    "RGBTexture",
    "TextureView",
    "build_rgb_texture",
    "MergedTexture",
    "RefineResult",
    "SampledTexture",
    "TexelGraph",
    "body_texel_maps",
    "build_texel_graph",
    "detect_occlusions",
    "fill_unseen_texels",
    "lookup_texture",
    "merge_sampled",
    "merge_views",
    "occlusion_boundary_mask",
    "pad_texture_islands",
    "parse_fill_method",
    "part_colormap_texture",
    "photometric_loss",
    "psnr",
    "refine_texture",
    "rest_position_jumps",
    "sample_rgb_texture",
    "sample_view",
    "splat_to_texture",
    "ssim",
    "ssim_map",
    "textured_render_fn",
    "uv_to_texel",
    "view_angle_weight",
]
