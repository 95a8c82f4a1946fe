"""Our own pure-PyTorch renderer (pytorch3d and nvdiffrast are not installable): same code on CPU and CUDA.

Typical use::

    from avatarcli.render import Camera, rasterize, render_uv, sample_texture

    cam = Camera.orbit(center=(0, 0.9, 0), distance=3.0, yaw_deg=0, focal_px=1200, size=512)
    frags = rasterize(vertices, faces, cam, cull_backfaces=True)  # vertices (B, V, 3), world
    uv = render_uv(frags, body.uv, body.uv_faces)                   # (B, H, W, 2) in [0, 1]
    rgb = sample_texture(texture, uv, frags.mask)                   # (B, 3, H, W)

Pieces:

* :mod:`~avatarcli.render.camera` — :class:`Camera` (OpenCV pinhole, pixel centres at +0.5),
  :func:`framing_camera` (orbit camera that frames a body's bounding box);
* :mod:`~avatarcli.render.rasterizer` — :func:`rasterize` → :class:`Fragments` (face id, barycentrics,
  depth, mask), differentiable barycentrics;
* :mod:`~avatarcli.render.interpolate` — per-vertex / per-corner attribute interpolation;
* :mod:`~avatarcli.render.maps` — UV, normal, view-angle and body-part renders;
* :mod:`~avatarcli.render.textured` — texture lookup (``grid_sample``, ``align_corners=True``),
  textured RGB rendering, neural-texture feature rendering;
* :mod:`~avatarcli.render.texel` — per-texel 3D position / normal / view angle / visibility;
* :mod:`~avatarcli.render.silhouette` — soft silhouette for fitting losses;
* :mod:`~avatarcli.render.preview` — PNG contact sheets and turntable views (imports PIL lazily;
  not re-exported here).

Conventions in one place:

* world space is the body protocol's (Y-up, metres, facing +Z); cameras are OpenCV
  (x right, y down, z forward), ``x_cam = R x + t``, pixel (i, j) centred at (j + 0.5, i + 0.5);
* a face is front-facing when its corners wind counter-clockwise seen from outside, i.e. its
  projected signed area is negative in the y-down image;
* per-pixel maps are channels-last ``(B, H, W, C)``; images for networks are ``(B, C, H, W)``;
* UVs are in [0, 1] with v = 0 at the texture's top row; lookups use
  ``grid_sample(align_corners=True)`` (texel c at u = c / (T-1)), as DINAR does;
* batches broadcast: one camera for many meshes, or one mesh for many cameras.
"""

from __future__ import annotations

from avatarcli.render.camera import Camera, framing_camera, intrinsics
from avatarcli.render.interpolate import interpolate, interpolate_corners
from avatarcli.render.maps import (
    DINAR_UV_BACKGROUND,
    dinar_uv_image,
    render_normals,
    render_part_ids,
    render_uv,
    vertex_normals,
    view_cosine,
)
from avatarcli.render.rasterizer import Fragments, rasterize, rasterize_screen, visible_faces
from avatarcli.render.silhouette import soft_silhouette
from avatarcli.render.texel import (
    TexelGeometry,
    rasterize_uv,
    texel_geometry,
    texel_view_cosine,
    texel_visibility,
)
from avatarcli.render.textured import FeatureRender, render_features, render_textured, sample_texture

__all__ = [
    "DINAR_UV_BACKGROUND",
    "Camera",
    "FeatureRender",
    "Fragments",
    "TexelGeometry",
    "dinar_uv_image",
    "framing_camera",
    "interpolate",
    "interpolate_corners",
    "intrinsics",
    "rasterize",
    "rasterize_screen",
    "rasterize_uv",
    "render_features",
    "render_normals",
    "render_part_ids",
    "render_textured",
    "render_uv",
    "sample_texture",
    "soft_silhouette",
    "texel_geometry",
    "texel_view_cosine",
    "texel_visibility",
    "vertex_normals",
    "view_cosine",
    "visible_faces",
]
