"""Soft silhouettes, differentiable with respect to the vertices, for fitting losses.

``method="distance"`` (default) is ``sigmoid(SDF / sigma)`` of the pixel centre's signed
distance (pixels) to the silhouette outline. The sign comes from an ordinary hard
rasterisation; the distance is the exact distance to the outline's edges, which makes it
differentiable in the vertices and continuous when the outline sweeps over a pixel centre
(there the distance is 0 on both sides, value 0.5). Outline edges are the *contour* edges
(between a front- and a back-facing face) that actually border background: a point one pixel
outside the edge is background in the hard mask. Only pixels within ``5 sigma`` of such an edge
are soft; all others are exactly 0 or 1, so the cost is a hard rasterisation plus
``O(outline length × sigma²)``.

``method="softras"``: each face covers a pixel with probability ``sigmoid(d / sigma)``, where
``d`` is the pixel centre's signed distance in pixels to the projected triangle: outside, minus
the distance to the triangle; inside, the distance to the triangle's *contour* edges only —
edges whose neighbour faces the other way (or is missing). Edges between two faces facing the
same way lie inside the silhouette, so ignoring them keeps the interior at 1 instead of SoftRas's
dips along every internal edge. The silhouette is the probability that *any* face covers the pixel,
``1 - prod(1 - p)`` (SoftRas's aggregation), summed in log space with ``logsigmoid``.
Several faces near a pixel all add up, so this version is dilated by about ``sigma`` and costs
``(bbox + 8 sigma)^2`` pairs per face: fit at 128²–256² with ``sigma`` ≈ 1 px.

There, faces only influence pixels within ``radius = 4 sigma`` of their screen bounding box
(beyond, ``p < 0.02``). Back faces are culled by default: for a closed body they never change
the silhouette and would double the work.
"""

from __future__ import annotations

import torch

from avatarcli.render.camera import Camera
from avatarcli.render.rasterizer import broadcast_to_cameras, check_mesh, visible_faces

DEFAULT_MAX_PAIRS = 1 << 21


def soft_silhouette(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    *,
    sigma: float = 1.0,
    method: str = "distance",
    cull_backfaces: bool = True,
    near: float = 1e-3,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    face_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft coverage (B, H, W) in [0, 1] of meshes (B, V, 3) seen by ``camera``.

    ``method`` is ``"distance"`` (sigmoid of the signed distance to the outline) or
    ``"softras"`` (probabilistic union over faces); see the module docstring. ``face_index``
    (B, H, W): the back-face-culled z-buffer pass of these very meshes (``rasterize(...,
    cull_backfaces=True).face_index``) when the caller has it already; ``"distance"`` then skips
    its own.
    """
    if sigma <= 0:
        raise ValueError(f"soft_silhouette: sigma must be positive, got {sigma}")
    if method == "distance":
        return _distance_silhouette(vertices, faces, camera, sigma, near, max_pairs, face_index)
    if method != "softras":
        raise ValueError(f"soft_silhouette: unknown method {method!r}; use 'distance' or 'softras'")
    vertices, faces = check_mesh(vertices, faces)
    vertices = broadcast_to_cameras(vertices, camera)
    batch = vertices.shape[0]
    camera = camera.expand(batch).to(vertices.device)
    height, width = camera.height, camera.width
    xy, z = camera.project(vertices)
    log_empty = torch.zeros(batch * height * width, dtype=xy.dtype, device=xy.device)
    if faces.shape[0] == 0 or vertices.shape[1] == 0:
        return log_empty.view(batch, height, width)

    num_faces, num_vertices = faces.shape[0], vertices.shape[1]
    radius = 4.0 * sigma
    with torch.no_grad():
        tri = xy.detach()[:, faces]  # (B, F, 3, 2)
        e1 = tri[:, :, 1] - tri[:, :, 0]
        e2 = tri[:, :, 2] - tri[:, :, 0]
        area = e1[..., 0] * e2[..., 1] - e2[..., 0] * e1[..., 1]
        valid = (z.detach()[:, faces] > near).all(-1) & (area.abs() > 1e-12) & torch.isfinite(area)
        if cull_backfaces:
            valid &= area < 0
        limit = float(max(width, height)) + radius + 2.0
        lo = tri.amin(2).clamp(-limit, limit) - radius
        hi = tri.amax(2).clamp(-limit, limit) + radius
        x_lo = torch.ceil(lo[..., 0] - 0.5).clamp_min(0).long()
        y_lo = torch.ceil(lo[..., 1] - 0.5).clamp_min(0).long()
        nx = (torch.floor(hi[..., 0] - 0.5).clamp_max(width - 1).long() - x_lo + 1).clamp_min(0)
        ny = (torch.floor(hi[..., 1] - 0.5).clamp_max(height - 1).long() - y_lo + 1).clamp_min(0)
        counts = torch.where(valid, nx * ny, torch.zeros_like(nx)).reshape(-1)
        contour = _contour_edges(faces, valid, area < 0, num_vertices).reshape(-1, 3)  # (B*F, 3)
        active = counts.nonzero().squeeze(1)
        counts = counts[active]
        ends = torch.cumsum(counts, 0)

    log_free = log_empty
    start_face = 0
    while start_face < active.numel():
        # as many faces as fit in max_pairs (at least one)
        base = int(ends[start_face - 1]) if start_face else 0
        stop = int(torch.searchsorted(ends, torch.tensor(base + max_pairs, device=ends.device), right=True))
        stop = max(stop, start_face + 1)
        sel = active[start_face:stop]
        with torch.no_grad():
            which = torch.repeat_interleave(counts[start_face:stop])
            first = (ends[start_face:stop] - counts[start_face:stop]).index_select(0, which)
            local = torch.arange(which.numel(), device=which.device) + base - first
            w = nx.reshape(-1)[sel].index_select(0, which)
            dy = torch.div(local, w, rounding_mode="floor")
            dx = local - dy * w
            px = x_lo.reshape(-1)[sel].index_select(0, which) + dx
            py = y_lo.reshape(-1)[sel].index_select(0, which) + dy
            b = torch.div(sel, num_faces, rounding_mode="floor").index_select(0, which)
            f = (sel - torch.div(sel, num_faces, rounding_mode="floor") * num_faces).index_select(0, which)
            pixel = b * (height * width) + py * width + px
            vid = (faces.index_select(0, f) + (b * num_vertices)[:, None]).reshape(-1)
            is_contour = contour.index_select(0, sel).index_select(0, which)
        corners = xy.reshape(-1, 2).index_select(0, vid).view(-1, 3, 2)
        centre = torch.stack([px, py], dim=-1).to(xy.dtype) + 0.5
        signed = _signed_distance(centre, corners, is_contour)
        log_free = log_free.index_add(0, pixel, torch.nn.functional.logsigmoid(-signed / sigma))
        start_face = stop
    return (1.0 - torch.exp(log_free)).view(batch, height, width)


def _distance_silhouette(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    sigma: float,
    near: float,
    max_pairs: int,
    face_index: torch.Tensor | None = None,
) -> torch.Tensor:
    vertices, faces = check_mesh(vertices, faces)
    vertices = broadcast_to_cameras(vertices, camera)
    batch, num_vertices = vertices.shape[:2]
    camera = camera.expand(batch).to(vertices.device)
    height, width = camera.height, camera.width
    xy, z = camera.project(vertices)
    if face_index is None:
        face_index = visible_faces(xy, z, faces, height, width, cull_backfaces=True, near=near)
    elif tuple(face_index.shape) != (batch, height, width):
        raise ValueError(f"face_index must be ({batch}, {height}, {width}), got {tuple(face_index.shape)}")
    hard = face_index.to(xy.device) >= 0
    far = torch.full((batch * height * width,), 1e4, dtype=xy.dtype, device=xy.device)
    sign = hard.reshape(-1).to(xy.dtype) * 2.0 - 1.0
    if faces.shape[0] == 0 or num_vertices == 0:
        return torch.sigmoid(sign * far / sigma).view(batch, height, width)

    radius = 5.0 * sigma
    with torch.no_grad():
        flat = xy.detach().reshape(-1, 2)
        tri = xy.detach()[:, faces]  # (B, F, 3, 2)
        e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
        area = e1[..., 0] * e2[..., 1] - e2[..., 0] * e1[..., 1]
        valid = (z.detach()[:, faces] > near).all(-1) & (area.abs() > 1e-12) & torch.isfinite(area)
        contour = _contour_edges(faces, valid, area < 0, num_vertices) & (valid & (area < 0))[..., None]
        b, f, k = contour.nonzero(as_tuple=True)
        offset = b * num_vertices
        ia = faces[f, k] + offset
        ib = faces[f, (k + 1) % 3] + offset
        ic = faces[f, (k + 2) % 3] + offset
        pa, pb, pc = flat[ia], flat[ib], flat[ic]
        # keep edges with background one pixel outside them (the third vertex is inside)
        edge = pb - pa
        normal = torch.nn.functional.normalize(torch.stack([edge[:, 1], -edge[:, 0]], -1), dim=-1)
        normal = torch.where(((pc - pa) * normal).sum(-1, keepdim=True) > 0, -normal, normal)
        border = torch.zeros_like(b, dtype=torch.bool)
        for t in (0.2, 0.5, 0.8):
            probe = pa + t * edge + normal
            col, row = torch.floor(probe[:, 0]).long(), torch.floor(probe[:, 1]).long()
            off_image = (col < 0) | (col >= width) | (row < 0) | (row >= height)
            pix = b * (height * width) + row.clamp(0, height - 1) * width + col.clamp(0, width - 1)
            border |= off_image | ~hard.reshape(-1)[pix]
        ia, ib, b = ia[border], ib[border], b[border]
        lo = torch.minimum(flat[ia], flat[ib]) - radius
        hi = torch.maximum(flat[ia], flat[ib]) + radius
        x_lo = torch.ceil(lo[:, 0] - 0.5).clamp_min(0).long()
        y_lo = torch.ceil(lo[:, 1] - 0.5).clamp_min(0).long()
        nx = (torch.floor(hi[:, 0] - 0.5).clamp_max(width - 1).long() - x_lo + 1).clamp_min(0)
        ny = (torch.floor(hi[:, 1] - 0.5).clamp_max(height - 1).long() - y_lo + 1).clamp_min(0)
        counts = nx * ny
        ends = torch.cumsum(counts, 0)

    dist = far
    start = 0
    while start < counts.numel():
        base = int(ends[start - 1]) if start else 0
        stop = int(torch.searchsorted(ends, torch.tensor(base + max_pairs, device=ends.device), right=True))
        stop = max(stop, start + 1)
        with torch.no_grad():
            which = torch.repeat_interleave(counts[start:stop]) + start
            local = torch.arange(which.numel(), device=which.device) + base - (ends - counts)[which]
            dy = torch.div(local, nx[which], rounding_mode="floor")
            dx = local - dy * nx[which]
            px, py = x_lo[which] + dx, y_lo[which] + dy
            pixel = b[which] * (height * width) + py * width + px
        centre = torch.stack([px, py], dim=-1).to(xy.dtype) + 0.5
        a = xy.reshape(-1, 2).index_select(0, ia[which])
        seg = xy.reshape(-1, 2).index_select(0, ib[which]) - a
        rel = centre - a
        t = ((rel * seg).sum(-1) / (seg * seg).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
        d = torch.sqrt(((rel - t[:, None] * seg) ** 2).sum(-1) + 1e-12)
        dist = dist.scatter_reduce(0, pixel, d, reduce="amin", include_self=True)
        start = stop
    # pixels farther than the radius from every outline edge stay hard
    dist = torch.where(dist > radius, far, dist)
    return torch.sigmoid(sign * dist / sigma).view(batch, height, width)


def _contour_edges(
    faces: torch.Tensor, valid: torch.Tensor, front: torch.Tensor, num_vertices: int
) -> torch.Tensor:
    """(B, F, 3) bool: edge k (corner k → k+1) of a face has no valid neighbour facing the same way."""
    a = faces
    b = faces.roll(-1, dims=1)
    edge_key = (torch.minimum(a, b) * num_vertices + torch.maximum(a, b)).reshape(-1)  # (F*3,)
    _, edge_id = torch.unique(edge_key, return_inverse=True)
    num_edges = int(edge_id.max()) + 1
    out = []
    for k in range(valid.shape[0]):
        same = []
        for facing in (front[k], ~front[k]):
            member = (valid[k] & facing).repeat_interleave(3).long()
            count = torch.zeros(num_edges, dtype=torch.long, device=faces.device).index_add_(
                0, edge_id, member
            )
            same.append(count.index_select(0, edge_id).view(-1, 3))
        count_same = torch.where(front[k][:, None], same[0], same[1])
        out.append(count_same <= 1)
    return torch.stack(out)


def _signed_distance(p: torch.Tensor, tri: torch.Tensor, contour: torch.Tensor) -> torch.Tensor:
    """Signed distance in pixels from points (N, 2) to triangles (N, 3, 2), positive inside.

    Inside, only the ``contour`` (N, 3) edges count; a face with none is deep inside (1e4 px).
    """
    a = tri
    b = tri.roll(-1, dims=1)
    edge = b - a
    rel = p[:, None] - a
    t = ((rel * edge).sum(-1) / (edge * edge).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    closest = rel - t[..., None] * edge
    dist2 = (closest * closest).sum(-1)  # (N, 3) squared distance to each edge segment
    cross = edge[..., 0] * rel[..., 1] - edge[..., 1] * rel[..., 0]  # (N, 3) edge functions
    inside = (cross >= 0).all(1) | (cross <= 0).all(1)
    outside_dist = torch.sqrt(dist2.amin(1) + 1e-12)
    inside_dist = torch.sqrt(torch.where(contour, dist2, torch.full_like(dist2, 1e8)).amin(1) + 1e-12)
    return torch.where(inside, inside_dist, -outside_dist)
