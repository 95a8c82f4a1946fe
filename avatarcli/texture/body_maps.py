"""Glue between a body model, the renderer and the texture functions: one call per job.

The texture functions take plain tensors so they can be tested on synthetic scenes; this module
builds those tensors for a real body:

* :func:`body_texel_maps` — per texture size, the rest-pose texel geometry, the part id of every
  texel, the surface :class:`~avatarcli.texture.texel_graph.TexelGraph` for filling and the
  colour-coded part texture for the occlusion detector (build once per avatar, reuse per view);
* :func:`sample_view` — one photo + fitted mesh + camera → :class:`SampledTexture` (with the
  occlusion detector on by default);
* :func:`textured_render_fn` — the differentiable ``texture → image`` callable that
  :func:`~avatarcli.texture.refine.refine_texture` needs, rasterising the mesh once.

The UV layout is the body's own (``body.uv``/``body.uv_faces``) unless a ``layout`` is given:
anything with per-corner ``uv`` (N, 2) in [0, 1] (v = 0 at the top row) and ``uv_faces`` (F, 3),
one row per body face in ``body.faces`` order — e.g. DINAR's SMPL-X "front cut" layout. The
maps remember their layout, so :func:`sample_view` samples into the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from avatarcli.texture.arm_guard import arm_guard_mask
from avatarcli.texture.hands import hand_guard_mask
from avatarcli.texture.occlusion import occlusion_boundary_mask, pad_texture_islands, part_colormap_texture
from avatarcli.texture.sampling import SampledTexture, sample_rgb_texture
from avatarcli.texture.texel_graph import TexelGraph, build_texel_graph

# Surface smoothing of the part colormap: softens junctions of connected parts (neck, shoulders)
# so Canny fires on occlusions, not on every part border.
COLORMAP_SMOOTH_STEPS = 24


class UVCoordinates(Protocol):
    """A UV layout of a body's faces: a body model itself or a ``UVLayout``."""

    uv: torch.Tensor  # (N, 2) in [0, 1], v = 0 at the top row
    uv_faces: torch.Tensor  # (F, 3) into ``uv``, one row per body face


def layout_of(body, layout: UVCoordinates | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(uv, uv_faces)`` of ``layout``, or of the body's own layout when None, checked to fit."""
    source = body if layout is None else layout
    uv, uv_faces = source.uv, source.uv_faces
    if uv_faces.shape[0] != body.faces.shape[0]:
        raise ValueError(
            f"the UV layout has {uv_faces.shape[0]} faces, the body {body.faces.shape[0]}: "
            "it is for another mesh"
        )
    return uv, uv_faces


@dataclass
class BodyTexelMaps:
    texture_size: int
    positions: torch.Tensor  # (T, T, 3) rest-pose surface point per texel (metres)
    normals: torch.Tensor  # (T, T, 3) rest-pose unit normal per texel
    mask: torch.Tensor  # (T, T) bool: texel inside the UV layout
    parts: torch.Tensor  # (T, T) long body-part id (avatarcli.body.parts), -1 outside
    graph: TexelGraph
    colormap: torch.Tensor  # (3, T, T) part colormap, islands padded
    rest_texture: torch.Tensor  # (3, T, T) rest positions as a texture, islands padded
    uv: torch.Tensor | None = None  # the layout the maps are in (None: the body's own)
    uv_faces: torch.Tensor | None = None

    def layout(self, body) -> tuple[torch.Tensor, torch.Tensor]:
        """``(uv, uv_faces)`` these maps were built in (the body's own when they recorded none)."""
        if self.uv is None or self.uv_faces is None:
            return layout_of(body)
        return layout_of(body, self)


def body_texel_maps(
    body, texture_size: int = 256, shape: torch.Tensor | None = None, layout: UVCoordinates | None = None
) -> BodyTexelMaps:
    """Rest-pose texel maps of ``body`` (an :class:`avatarcli.body.BodyModel`) at ``texture_size``,
    in ``layout`` (default: the body's own UV layout)."""
    from avatarcli.render import texel_geometry

    uv, uv_faces = layout_of(body, layout)
    uv, uv_faces = uv.to(body.faces.device), uv_faces.to(body.faces.device)
    rest = body.rest(shape)
    geometry = texel_geometry(rest.vertices[:1], body.faces, uv, uv_faces, texture_size)
    mask = geometry.mask.cpu()
    face = geometry.face_index.cpu()
    parts = torch.where(mask, body.part_ids.cpu()[face.clamp_min(0)], torch.full_like(face, -1))
    positions = geometry.position[0].detach().cpu()
    normals = geometry.normal[0].detach().cpu()
    graph = build_texel_graph(positions, mask, normals, parts)
    colormap = part_colormap_texture(parts, positions, mask, graph=graph, smooth_steps=COLORMAP_SMOOTH_STEPS)
    rest_texture = pad_texture_islands(positions.permute(2, 0, 1), mask, 4)
    return BodyTexelMaps(
        texture_size, positions, normals, mask, parts, graph, colormap, rest_texture, uv, uv_faces
    )


def sample_view(
    body,
    vertices: torch.Tensor,
    camera,
    image: torch.Tensor,
    mask: torch.Tensor,
    maps: BodyTexelMaps,
    *,
    detect_occlusion: bool = True,
    surface_jump_filter: bool = True,
    min_cos: float = 0.2,
    border_rule: str = "per_axis",
    hands: torch.Tensor | None = None,
    arms: torch.Tensor | None = None,
) -> tuple[SampledTexture, torch.Tensor]:
    """Sample one photo into UV space (the layout of ``maps``) through the fitted mesh.

    ``vertices`` (1, V, 3) posed world-space mesh, ``camera`` an :class:`avatarcli.render.Camera`
    of the photo's size, ``image`` (1, 3, H, W) in [0, 1], ``mask`` the person (1, H, W).
    Returns the sampled texture and the occluded pixels that were skipped (all False when
    ``detect_occlusion`` is off). ``surface_jump_filter=False`` gives DINAR's plain colormap
    detector, which also drops the borders between connected parts. ``hands`` (2, H, W), the
    detected hands (:func:`avatarcli.texture.hands.hand_regions`), adds the hand guard
    (:func:`~avatarcli.texture.hands.hand_guard_mask`) to the detector; ``arms`` (2, H, W), the
    detected arms (:func:`avatarcli.texture.arm_guard.arm_regions`), the arm guard.
    """
    from avatarcli.render import rasterize, render_part_ids, render_uv, sample_texture, view_cosine

    if vertices.dim() == 2:
        vertices = vertices[None]
    fragments = rasterize(vertices, body.faces, camera, cull_backfaces=True)
    uv = render_uv(fragments, *(t.to(vertices.device) for t in maps.layout(body)))
    cos = view_cosine(vertices, body.faces, fragments, camera)
    if detect_occlusion:
        colours = sample_texture(maps.colormap.to(uv.device), uv, fragments.mask)
        rest = None
        if surface_jump_filter:
            rest = sample_texture(maps.rest_texture.to(uv.device), uv, fragments.mask)
        occluded = occlusion_boundary_mask(colours, fragments.mask, rest_positions=rest)
        if hands is not None or arms is not None:
            parts = render_part_ids(fragments, body.part_ids)
            if hands is not None:
                occluded = occluded | hand_guard_mask(parts, hands)
            if arms is not None:
                occluded = occluded | arm_guard_mask(parts, arms, image.to(parts.device))
    else:
        occluded = torch.zeros_like(fragments.mask)
    sampled = sample_rgb_texture(
        image.to(uv.device),
        mask.to(uv.device),
        uv,
        fragments.mask,
        maps.texture_size,
        view_cos=cos,
        min_cos=min_cos,
        occlusion_mask=occluded,
        border_rule=border_rule,
    )
    return sampled, occluded


def textured_render_fn(
    body, vertices: torch.Tensor, camera, background: float = 1.0, layout: UVCoordinates | None = None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """``(render, coverage)``: ``render(texture (1, 3, T, T)) → image (1, 3, H, W)`` for the fitted
    mesh (rasterised once, differentiable in the texture; texture in ``layout``, default the
    body's own) and its mask (1, 1, H, W), which
    :func:`~avatarcli.texture.refine.refine_texture` takes as ``render_mask``."""
    from avatarcli.render import rasterize, render_textured

    if vertices.dim() == 2:
        vertices = vertices[None]
    vertices = vertices.detach()
    uv, uv_faces = (t.to(vertices.device) for t in layout_of(body, layout))
    fragments = rasterize(vertices, body.faces, camera, cull_backfaces=True)

    def render(texture: torch.Tensor) -> torch.Tensor:
        image, _ = render_textured(
            vertices, body.faces, uv, uv_faces, texture, camera,
            background=background, fragments=fragments,
        )  # fmt: skip
        return image

    return render, fragments.mask.unsqueeze(1)
