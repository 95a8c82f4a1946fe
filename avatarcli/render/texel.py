"""Texel-space geometry: the 3D point, normal and camera angle behind every texture texel.

The mesh is rasterised in UV space (each face drawn at its per-corner UVs) onto a T×T grid
whose texel (r, c) sits at ``u = c/(T-1), v = r/(T-1)`` — the ``grid_sample(align_corners=True)``
centres used for rendering. The posed positions and normals of the face's vertices are then
interpolated with the UV-space (affine) barycentrics. The texture stage uses this to know, per
texel, how squarely a camera sees it and whether it is visible at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatarcli.render.camera import Camera
from avatarcli.render.maps import vertex_normals
from avatarcli.render.rasterizer import Fragments, check_mesh, rasterize_screen


@dataclass
class TexelGeometry:
    """Per-texel surface samples. ``mask``/``face_index`` are shared by the whole batch."""

    position: torch.Tensor  # (B, T, T, 3) world position, 0 outside the UV layout
    normal: torch.Tensor  # (B, T, T, 3) unit normal, 0 outside
    mask: torch.Tensor  # (T, T) bool: texel centre inside some UV triangle
    face_index: torch.Tensor  # (T, T) long, -1 outside


def rasterize_uv(uv: torch.Tensor, uv_faces: torch.Tensor, texture_size: int) -> Fragments:
    """Rasterise the UV layout itself: fragments of batch 1 over a T×T texel grid.

    Where UV islands overlap (mirrored layouts), a texel belongs to one face (the higher id).
    """
    size = int(texture_size)
    xy = (uv.float() * (size - 1) + 0.5)[None]
    ones = torch.ones(1, uv.shape[0], dtype=xy.dtype, device=xy.device)
    return rasterize_screen(xy, ones, uv_faces, size, size)


def texel_geometry(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uv: torch.Tensor,
    uv_faces: torch.Tensor,
    texture_size: int,
    *,
    uv_fragments: Fragments | None = None,
) -> TexelGeometry:
    """Posed position and normal per texel for meshes (B, V, 3); pass ``uv_fragments`` to reuse."""
    vertices, faces = check_mesh(vertices, faces)
    if uv_fragments is None:
        uv_fragments = rasterize_uv(uv.to(vertices.device), uv_faces.to(vertices.device), texture_size)
    batch, num_vertices = vertices.shape[:2]
    size = uv_fragments.face_index.shape[-1]
    idx, _, face = uv_fragments.foreground()
    bary = uv_fragments.bary.reshape(-1, 3).index_select(0, idx).to(vertices.dtype)  # (N, 3)
    vid = faces.index_select(0, face)  # (N, 3)
    normals = vertex_normals(vertices, faces)

    def per_texel(values: torch.Tensor) -> torch.Tensor:
        corners = values[:, vid]  # (B, N, 3, 3)
        inside = (bary[None, :, :, None] * corners).sum(2)
        out = torch.zeros(batch, size * size, 3, dtype=values.dtype, device=values.device)
        return out.index_put((torch.arange(batch, device=idx.device)[:, None], idx[None]), inside).view(
            batch, size, size, 3
        )

    normal = torch.nn.functional.normalize(per_texel(normals), dim=-1, eps=1e-12)
    return TexelGeometry(per_texel(vertices), normal, uv_fragments.mask[0], uv_fragments.face_index[0])


def texel_view_cosine(geometry: TexelGeometry, camera: Camera) -> torch.Tensor:
    """cos(normal, direction to the camera centre) per texel (B, T, T); 0 outside the layout."""
    batch = geometry.position.shape[0]
    camera = camera.expand(batch).to(geometry.position.device)
    to_camera = camera.center.to(geometry.position)[:, None, None] - geometry.position
    cos = (torch.nn.functional.normalize(to_camera, dim=-1) * geometry.normal).sum(-1)
    return cos * geometry.mask


def texel_visibility(
    geometry: TexelGeometry, camera: Camera, fragments: Fragments, *, tolerance: float = 0.01
) -> torch.Tensor:
    """Which texels a camera actually sees (B, T, T) bool: in frame, facing it, not occluded.

    A texel is occluded when the rendered depth at the pixel its point projects to is nearer
    than the point by more than ``tolerance`` (relative). A texel landing on a background pixel
    lies on the outline and is not occluded (the facing test removes grazing back texels).
    """
    batch, size = geometry.position.shape[:2]
    camera = camera.expand(batch).to(geometry.position.device)
    pix, depth = camera.project(geometry.position.reshape(batch, -1, 3))
    col = torch.floor(pix[..., 0]).long()
    row = torch.floor(pix[..., 1]).long()
    inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height) & (depth > 0)
    flat = row.clamp(0, camera.height - 1) * camera.width + col.clamp(0, camera.width - 1)
    rendered = fragments.depth.reshape(batch, -1).gather(1, flat).to(depth)
    covered = fragments.mask.reshape(batch, -1).gather(1, flat)
    occluded = covered & (rendered < depth * (1.0 - tolerance))
    facing = texel_view_cosine(geometry, camera).reshape(batch, -1) > 0
    visible = inside & ~occluded & facing & geometry.mask.reshape(1, -1)
    return visible.view(batch, size, size)
