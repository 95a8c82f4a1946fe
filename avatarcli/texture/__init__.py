"""Texture stage: photo → RGB UV texture (DINAR Algorithm 1), occlusion-boundary detector,
multi-view merge, classical fill of unseen texels on the body surface, refinement through the
differentiable render, and image metrics.

Typical single-view flow (tensors from ``avatarcli.render``)::

    occluded = detect_occlusions(colormap, uv, uv_mask)          # optional, on by default
    sampled = sample_rgb_texture(photo, person_mask, uv, uv_mask, 256,
                                 view_cos=cos, occlusion_mask=occluded)
    graph = build_texel_graph(texel_positions, texel_mask, texel_normals, texel_parts)
    full = fill_unseen_texels(sampled.rgb[0], sampled.filled[0], graph, "mirror+back+harmonic")
    tuned = refine_texture(full, sampled.filled[0], render_fn, photo, person_mask, sampled.view_cos[0])
"""

from avatarcli.texture.fill import FILL_METHODS, fill_unseen_texels, parse_fill_method
from avatarcli.texture.merge import MergedTexture, merge_views
from avatarcli.texture.metrics import psnr, ssim, ssim_map
from avatarcli.texture.occlusion import (
    detect_occlusions,
    lookup_texture,
    occlusion_boundary_mask,
    pad_texture_islands,
    part_colormap_texture,
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
    "MergedTexture",
    "RefineResult",
    "SampledTexture",
    "TexelGraph",
    "build_texel_graph",
    "detect_occlusions",
    "fill_unseen_texels",
    "lookup_texture",
    "merge_views",
    "occlusion_boundary_mask",
    "pad_texture_islands",
    "parse_fill_method",
    "part_colormap_texture",
    "photometric_loss",
    "psnr",
    "refine_texture",
    "sample_rgb_texture",
    "splat_to_texture",
    "ssim",
    "ssim_map",
    "uv_to_texel",
    "view_angle_weight",
]
