"""Per-pixel geometry renders derived from one rasterisation: UV, normals, view angle, part ids.

Each function takes the :class:`~avatarcli.render.rasterizer.Fragments` of a mesh, so a caller
rasterises once and derives as many maps as it needs. Images are channels-last
``(B, H, W, C)``; background pixels are 0 (part ids: -1).
"""

from __future__ import annotations

import torch

from avatarcli.render.camera import Camera
from avatarcli.render.interpolate import interpolate, interpolate_corners
from avatarcli.render.rasterizer import Fragments

#: DINAR's background value for uv renders fed to its neural renderer
DINAR_UV_BACKGROUND = -10.0


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (B, V, 3), pointing outwards for counter-clockwise faces."""
    if vertices.dim() == 2:
        vertices = vertices[None]
    faces = faces.to(device=vertices.device, dtype=torch.long)
    batch = vertices.shape[0]
    tri = vertices.index_select(1, faces.reshape(-1)).view(batch, -1, 3, 3)  # (B, F, 3, 3)
    face_n = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(1, faces[:, corner], face_n)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def render_uv(fragments: Fragments, uv: torch.Tensor, uv_faces: torch.Tensor) -> torch.Tensor:
    """Per-pixel texture coordinates (B, H, W, 2) in [0, 1] from per-corner UVs (T, 2) + (F, 3)."""
    corner_uv = uv.to(fragments.bary.device)[uv_faces.to(fragments.bary.device, torch.long)]
    return interpolate_corners(corner_uv, fragments)


def dinar_uv_image(uv_pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DINAR's uv render (B, 2, H, W): ``2 uv - 1`` on the body and -10 on background."""
    ndc = (uv_pixels * 2.0 - 1.0).permute(0, 3, 1, 2)
    m = mask.reshape(ndc.shape[0], 1, *ndc.shape[2:]).to(torch.bool)
    return torch.where(m, ndc, torch.full_like(ndc, DINAR_UV_BACKGROUND))


def render_normals(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    fragments: Fragments,
    camera: Camera | None = None,
) -> torch.Tensor:
    """Unit surface normals per pixel (B, H, W, 3): world space, or camera space with ``camera``."""
    normals = interpolate(vertex_normals(vertices, faces), fragments, faces)
    if camera is not None:
        R = camera.expand(normals.shape[0]).R.to(normals)
        normals = torch.einsum("bij,bhwj->bhwi", R, normals)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def view_cosine(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    fragments: Fragments,
    camera: Camera,
    *,
    per_pixel_rays: bool = True,
) -> torch.Tensor:
    """cos(angle between the surface normal and the direction to the camera), (B, H, W).

    1 where the surface faces the camera, 0 at grazing angles, negative for back faces; 0 on
    background. ``per_pixel_rays=False`` uses the optical axis instead of each pixel's ray,
    as DINAR's normal-angle map does.
    """
    if vertices.dim() == 2:
        vertices = vertices[None]
    camera = camera.expand(fragments.shape[0]).to(vertices.device)
    normals = render_normals(vertices, faces, fragments)
    if per_pixel_rays:
        # the surface point seen at a pixel lies on that pixel's ray: no need to interpolate it
        _, rays = camera.pixel_rays(normals.dtype)
        to_camera = -rays
    else:
        to_camera = -camera.R[:, 2].to(normals)[:, None, None].expand_as(normals)
    return (normals * to_camera).sum(-1) * fragments.mask


def render_part_ids(fragments: Fragments, part_ids: torch.Tensor) -> torch.Tensor:
    """Body-part id per pixel (B, H, W) long from a per-face id table (F,); -1 on background."""
    part_ids = part_ids.to(fragments.face_index.device, torch.long)
    ids = part_ids[fragments.face_index.clamp_min(0)]
    return torch.where(fragments.mask, ids, torch.full_like(ids, -1))
