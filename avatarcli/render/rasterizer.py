"""A pure-PyTorch triangle rasteriser: per-pixel face id, barycentrics and depth.

How it works (same code on CPU and CUDA):

1. vertices are projected to continuous pixel coordinates (pixel centres at ``j + 0.5``, see
   :mod:`avatarcli.render.camera`);
2. every face lists the pixel centres inside its screen bounding box as (face, pixel) candidate
   pairs, grouped by bounding-box size class and cut into blocks of at most ``max_pairs`` so
   memory stays bounded at any resolution;
3. edge functions keep the pairs whose centre lies inside the triangle, and the z-buffer is one
   ``scatter_reduce(amax)`` over int64 keys ``(float32 bits of 1/z) << 32 | face id``. The bit
   pattern of a positive float32 orders like its value, so a single ``amax`` finds the nearest
   face exactly (ties go to the higher face id);
4. barycentrics and depth are then recomputed from the winning face ids with ordinary autograd
   operations, so gradients flow to anything interpolated with them and, like nvdiffrast's
   interpolate step, to the vertex positions (not through visibility changes).

Conventions:

* barycentrics are **perspective-correct** (``b_i ∝ l_i / z_i`` from screen-space weights
  ``l_i``); ``depth`` is the camera-space z of the surface point (metres), 0 on background;
* **front-facing**: body faces wind counter-clockwise seen from outside. The y-down image flips
  that, so a front-facing triangle has a *negative* signed pixel area
  ``(x1-x0)(y2-y0) - (x2-x0)(y1-y0)``; ``cull_backfaces=True`` drops positive-area ones;
* **near plane**: a face with any vertex at ``z <= near`` is dropped (not clipped). Bodies never
  straddle the camera, so this is the simple, defined choice;
* degenerate (zero-area) faces, empty meshes and off-screen faces simply produce background.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatarcli.render.camera import Camera

#: candidate (face, pixel) pairs tested per block; ~60 bytes of temporaries each, so 1M ≈ 60 MB
DEFAULT_MAX_PAIRS = 1 << 20
#: slack on the inside test so pixel centres exactly on a shared edge are never missed by both faces
INSIDE_EPS = 1e-6


@dataclass
class Fragments:
    """What the rasteriser saw at every pixel.

    ``face_index`` (B, H, W) long, -1 on background; ``bary`` (B, H, W, 3) perspective-correct
    barycentrics (0 on background); ``depth`` (B, H, W) camera z (0 on background);
    ``mask`` (B, H, W) bool foreground.
    """

    face_index: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        b, h, w = self.face_index.shape
        return b, h, w

    def foreground(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat pixel indices (into B*H*W), their batch index and face id for foreground pixels."""
        flat = self.face_index.reshape(-1)
        idx = (flat >= 0).nonzero().squeeze(1)
        h, w = self.face_index.shape[1:]
        return idx, torch.div(idx, h * w, rounding_mode="floor"), flat[idx]


def check_mesh(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and normalise shapes: vertices (B, V, 3) finite, faces (F, 3) long in range."""
    if vertices.dim() == 2:
        vertices = vertices[None]
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3) or (V, 3), got {tuple(vertices.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if not bool(torch.isfinite(vertices).all()):
        raise ValueError("cannot render: the mesh vertices contain NaN or infinite values")
    faces = faces.to(device=vertices.device, dtype=torch.long)
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
        raise ValueError(f"faces index vertices outside 0..{vertices.shape[1] - 1}")
    return vertices, faces


def broadcast_to_cameras(vertices: torch.Tensor, camera: Camera) -> torch.Tensor:
    """One mesh (1, V, 3) seen by a batch of cameras becomes a batch of the same mesh (no copy)."""
    if vertices.shape[0] == 1 and camera.batch_size > 1:
        return vertices.expand(camera.batch_size, -1, -1)
    return vertices


def rasterize(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    *,
    cull_backfaces: bool = False,
    near: float = 1e-3,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> Fragments:
    """Rasterise world-space meshes (B, V, 3) with shared faces (F, 3) through ``camera``.

    A camera batch of 1 is shared by all meshes; a mesh batch of 1 is seen by all cameras.

    Gradients reach ``vertices`` through ``bary`` and ``depth`` when it requires grad.
    """
    vertices, faces = check_mesh(vertices, faces)
    vertices = broadcast_to_cameras(vertices, camera)
    camera = camera.expand(vertices.shape[0]).to(vertices.device)
    xy, z = camera.project(vertices)
    return rasterize_screen(
        xy,
        z,
        faces,
        camera.height,
        camera.width,
        cull_backfaces=cull_backfaces,
        near=near,
        max_pairs=max_pairs,
    )


def rasterize_screen(
    xy: torch.Tensor,
    z: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
    near: float = 1e-3,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> Fragments:
    """Rasterise already projected vertices: pixel coordinates (B, V, 2), depth (B, V).

    Also used for UV-space rasterisation (``xy`` = texel coordinates, ``z`` = 1).
    """
    faces = faces.to(device=xy.device, dtype=torch.long)
    face_index = _visible_faces(
        xy.detach(), z.detach(), faces, height, width, cull_backfaces, near, max_pairs
    )
    bary, depth = _barycentrics(xy, z, faces, face_index)
    return Fragments(face_index=face_index, bary=bary, depth=depth, mask=face_index >= 0)


def fragments_for_faces(
    vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, face_index: torch.Tensor
) -> Fragments:
    """:func:`rasterize`'s result for a per-pixel ``face_index`` (B, H, W) found earlier (say,
    without gradients, for several uses): only the differentiable barycentrics and depth are
    computed, which is a small share of a rasterisation's cost."""
    vertices, faces = check_mesh(vertices, faces)
    vertices = broadcast_to_cameras(vertices, camera)
    camera = camera.expand(vertices.shape[0]).to(vertices.device)
    xy, z = camera.project(vertices)
    bary, depth = _barycentrics(xy, z, faces, face_index)
    return Fragments(face_index=face_index, bary=bary, depth=depth, mask=face_index >= 0)


def visible_faces(
    xy: torch.Tensor,
    z: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
    near: float = 1e-3,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> torch.Tensor:
    """Only the z-buffer pass: face id per pixel (B, H, W), -1 on background; no gradients.

    For callers that need coverage or ids but not barycentrics (hard masks, silhouettes).
    """
    faces = faces.to(device=xy.device, dtype=torch.long)
    return _visible_faces(xy.detach(), z.detach(), faces, height, width, cull_backfaces, near, max_pairs)


def _visible_faces(
    xy: torch.Tensor,
    z: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    cull_backfaces: bool,
    near: float,
    max_pairs: int,
) -> torch.Tensor:
    """The z-buffer pass: nearest face id per pixel, (B, H, W) long, -1 where none.

    Faces are grouped by the size class of their pixel bounding box (next power of two of its
    width and height), so each group tests an (n, ky, kx) block of candidates by broadcasting. The
    edge functions and 1/z are affine in the pixel position, hence separable in x and y: each
    full-size operation is one add of an (n, 1, kx) and an (n, ky, 1) tensor, with no gathers.
    """
    batch = xy.shape[0]
    device = xy.device
    num_faces = faces.shape[0]
    zbuf = torch.zeros(batch * height * width, dtype=torch.int64, device=device)
    if num_faces == 0 or xy.shape[1] == 0:
        return torch.full((batch, height, width), -1, dtype=torch.long, device=device)

    # per-face screen geometry; float32 is plenty for pixel-space edge functions
    flat_faces = faces.reshape(-1)
    tri = xy.float().index_select(1, flat_faces).view(batch, num_faces, 3, 2).reshape(-1, 3, 2)
    tri_z = z.float().index_select(1, flat_faces).view(-1, 3)
    p0 = tri[:, 0]
    e1 = tri[:, 1] - p0
    e2 = tri[:, 2] - p0
    area = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    valid = (tri_z > near).all(-1) & torch.isfinite(area) & (area.abs() > 1e-12)
    if cull_backfaces:
        valid &= area < 0

    # inclusive pixel ranges whose centres (j + 0.5) can lie inside the triangle
    limit = float(max(width, height)) + 2.0
    lo = tri.amin(1).clamp(-2.0, limit)
    hi = tri.amax(1).clamp(-2.0, limit)
    x_lo = torch.ceil(lo[:, 0] - 0.5).clamp_min(0)
    y_lo = torch.ceil(lo[:, 1] - 0.5).clamp_min(0)
    nx = (torch.floor(hi[:, 0] - 0.5).clamp_max(width - 1) - x_lo + 1).clamp_min(0)
    ny = (torch.floor(hi[:, 1] - 0.5).clamp_max(height - 1) - y_lo + 1).clamp_min(0)
    active = (valid & (nx > 0) & (ny > 0)).nonzero().squeeze(1)  # flat b * F + f
    if active.numel() == 0:
        return torch.full((batch, height, width), -1, dtype=torch.long, device=device)

    def gather(t: torch.Tensor) -> torch.Tensor:
        return t.index_select(0, active)

    p0, e1, e2, x_lo, y_lo, nx, ny = map(gather, (p0, e1, e2, x_lo, y_lo, nx, ny))
    inv_area = 1.0 / gather(area)
    inv_z = 1.0 / gather(tri_z)
    # screen barycentrics of the pixel centre (x_lo + dx + 0.5, y_lo + dy + 0.5) relative to p0:
    # l1 = (fx e2y - fy e2x) / area, l2 = (fy e1x - fx e1y) / area with f = centre - p0, and
    # 1/z = 1/z0 + l1 (1/z1 - 1/z0) + l2 (1/z2 - 1/z0), all affine in (dx, dy)
    a1, b1 = e2[:, 1] * inv_area, -e2[:, 0] * inv_area
    a2, b2 = -e1[:, 1] * inv_area, e1[:, 0] * inv_area
    fx0 = x_lo + 0.5 - p0[:, 0]
    fy0 = y_lo + 0.5 - p0[:, 1]
    dz1, dz2 = inv_z[:, 1] - inv_z[:, 0], inv_z[:, 2] - inv_z[:, 0]
    az, bz = a1 * dz1 + a2 * dz2, b1 * dz1 + b2 * dz2
    b_of = torch.div(active, num_faces, rounding_mode="floor")
    # l0 = 1 - l1 - l2 is affine too; all three must be >= 0 inside
    per_face = torch.stack(
        [
            fx0 * a1, fy0 * b1, a1, b1,  # l1 = (fx0 a1 + dx a1) + (fy0 b1 + dy b1)
            fx0 * a2, fy0 * b2, a2, b2,
            1.0 - fx0 * (a1 + a2), -fy0 * (b1 + b2), -(a1 + a2), -(b1 + b2),
            inv_z[:, 0] + fx0 * az, fy0 * bz, az, bz,
            nx, ny,
        ]
    )  # fmt: skip
    corner = b_of * (height * width) + y_lo.long() * width + x_lo.long()
    face_id = active - b_of * num_faces

    # size classes: the next power of two of the box's width and height
    kx = torch.exp2(torch.ceil(torch.log2(nx))).long()
    ky = torch.exp2(torch.ceil(torch.log2(ny))).long()
    class_key = kx * (1 << 20) + ky
    order = torch.argsort(class_key)
    per_face, corner, face_id = per_face[:, order], corner[order], face_id[order]
    keys, sizes = torch.unique_consecutive(class_key[order], return_counts=True)
    start = 0
    for key, size in zip(keys.tolist(), sizes.tolist(), strict=True):
        cx, cy = key >> 20, key & ((1 << 20) - 1)
        step = max(1, max_pairs // (cx * cy))
        for s in range(start, start + size, step):
            e = min(s + step, start + size)
            _scatter_block(zbuf, per_face[:, s:e], corner[s:e], face_id[s:e], cx, cy, width)
        start += size

    background = zbuf < (1 << 32)
    face_index = zbuf.bitwise_and_(0xFFFFFFFF).masked_fill_(background, -1)  # reuse the buffer
    return face_index.view(batch, height, width)


def _scatter_block(
    zbuf: torch.Tensor,
    per_face: torch.Tensor,
    corner: torch.Tensor,
    face_id: torch.Tensor,
    kx: int,
    ky: int,
    width: int,
) -> None:
    """Test an (n, ky, kx) block of candidate pixels and fold the covered ones into ``zbuf``.

    The key is ``(float32 bits of 1/z) << 32 | face id``: nearer is larger, so ``amax`` wins.
    Candidates outside the triangle get 1/z = 0, a key below 2**32 that reads as background.
    """
    device = zbuf.device
    dx = torch.arange(kx, device=device, dtype=torch.float32).view(1, 1, kx)
    dy = torch.arange(ky, device=device, dtype=torch.float32).view(1, ky, 1)
    c = per_face.reshape(per_face.shape[0], -1, 1, 1)
    l1 = (c[0] + dx * c[2]) + (c[1] + dy * c[3])
    l2 = (c[4] + dx * c[6]) + (c[5] + dy * c[7])
    l0 = (c[8] + dx * c[10]) + (c[9] + dy * c[11])
    inv_z = (c[12] + dx * c[14]) + (c[13] + dy * c[15])
    inside = (torch.minimum(torch.minimum(l0, l1), l2) >= -INSIDE_EPS) & ((dx < c[16]) & (dy < c[17]))
    inv_z_bits = torch.where(inside, inv_z, 0.0).view(torch.int32).to(torch.int64)
    key = (inv_z_bits << 32) | face_id.view(-1, 1, 1)
    # out-of-box candidates may wrap to the next row or past the end: clamp, their key is harmless
    pixel = (corner.view(-1, 1, 1) + (dy.long() * width + dx.long())).clamp_(max=zbuf.numel() - 1)
    zbuf.scatter_reduce_(0, pixel.reshape(-1), key.reshape(-1), reduce="amax", include_self=True)


def _barycentrics(
    xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable perspective-correct barycentrics and depth for the chosen faces."""
    batch, height, width = face_index.shape
    dtype = xy.dtype
    flat = face_index.reshape(-1)
    fg = (flat >= 0).nonzero().squeeze(1)
    bary = torch.zeros(batch * height * width, 3, dtype=dtype, device=xy.device)
    depth = torch.zeros(batch * height * width, dtype=dtype, device=xy.device)
    if fg.numel() == 0:
        return bary.view(batch, height, width, 3), depth.view(batch, height, width)
    b = torch.div(fg, height * width, rounding_mode="floor")
    pix = fg - b * (height * width)
    py = torch.div(pix, width, rounding_mode="floor")
    centre = torch.stack([pix - py * width, py], dim=-1).to(dtype) + 0.5
    num_vertices = xy.shape[1]
    vid = (faces.index_select(0, flat.index_select(0, fg)) + (b * num_vertices)[:, None]).reshape(-1)
    p = xy.reshape(-1, 2).index_select(0, vid).view(-1, 3, 2)
    zz = z.reshape(-1).index_select(0, vid).view(-1, 3)
    e1 = p[:, 1] - p[:, 0]
    e2 = p[:, 2] - p[:, 0]
    d = centre - p[:, 0]
    area = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    l1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / area
    l2 = (d[:, 1] * e1[:, 0] - d[:, 0] * e1[:, 1]) / area
    screen = torch.stack([1.0 - l1 - l2, l1, l2], dim=-1)
    weights = screen / zz
    inv_depth = weights.sum(-1)
    # in place on fresh zero buffers: no full-size copies, and autograd still tracks the values
    bary.index_put_((fg,), weights / inv_depth[:, None])
    depth.index_put_((fg,), 1.0 / inv_depth)
    return bary.view(batch, height, width, 3), depth.view(batch, height, width)
