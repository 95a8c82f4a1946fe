"""A graph over the texels of a UV layout that follows the body *surface*, not the UV image.

Filling unseen texels by diffusing colour in the UV image makes every UV seam visible: the two
sides of a seam sit in different islands, far apart in the image. Here the texels are nodes,
joined to their 4 UV neighbours inside an island (when those are also close in 3D) and, across
seams, to the texels of other islands that lie next to them on the rest-pose surface. Colour
spread over this graph is continuous over the body.

Inputs are per-texel geometry rasterised in UV space (see ``avatarcli.render.texel_geometry``):
rest-pose positions ``(T, T, 3)`` in metres, a coverage mask, optionally normals and part ids.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

# A UV-grid edge is kept when its 3D length is at most this many times the local texel spacing:
# islands packed side by side in UV share image edges but not surface.
_GRID_EDGE_FACTOR = 3.0
# Seam edges join border texels closer than this many local spacings on the surface.
_SEAM_RADIUS_FACTOR = 2.5
_SEAM_NEIGHBOURS = 6


@dataclass
class TexelGraph:
    """Texels inside the UV islands as graph nodes (numpy/scipy, CPU)."""

    texture_size: int
    rows: np.ndarray  # (N,) texel row of each node
    cols: np.ndarray  # (N,) texel column of each node
    positions: np.ndarray  # (N, 3) rest-pose surface point, metres
    normals: np.ndarray | None  # (N, 3) unit normals, or None
    parts: np.ndarray | None  # (N,) body-part id, or None
    spacing: np.ndarray  # (N,) typical 3D distance to a neighbouring texel
    adjacency: object  # scipy.sparse.csr_matrix (N, N), symmetric, 0/1
    num_seam_edges: int

    @property
    def num_nodes(self) -> int:
        return int(self.rows.shape[0])

    def node_index(self) -> np.ndarray:
        """(T, T) map from texel to node index, -1 outside the islands."""
        index = np.full((self.texture_size, self.texture_size), -1, dtype=np.int64)
        index[self.rows, self.cols] = np.arange(self.num_nodes)
        return index

    def gather(self, image: torch.Tensor) -> np.ndarray:
        """Per-node values (N, C) from a (C, T, T) tensor."""
        array = image.detach().cpu().numpy()
        return array[:, self.rows, self.cols].T.astype(np.float64)

    def scatter(self, values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """A (C, T, T) tensor holding ``values`` (N, C) at the nodes and ``like`` elsewhere."""
        out = like.detach().cpu().clone()
        out[:, self.rows, self.cols] = torch.as_tensor(values.T, dtype=out.dtype)
        return out.to(like.device)

    def laplacian(self):
        """Combinatorial graph Laplacian ``D - A`` (scipy sparse CSR)."""
        import scipy.sparse as sp

        degree = np.asarray(self.adjacency.sum(axis=1)).ravel()
        return (sp.diags(degree) - self.adjacency).tocsr()


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def build_texel_graph(
    positions: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray,
    normals: torch.Tensor | np.ndarray | None = None,
    parts: torch.Tensor | np.ndarray | None = None,
) -> TexelGraph:
    """Build the surface graph from per-texel rest-pose ``positions`` (T, T, 3) and ``mask`` (T, T).

    ``normals`` (T, T, 3) and ``parts`` (T, T) are optional and only carried along for the fill
    strategies that use them. Channel-first inputs (3, T, T) are accepted too.
    """
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    positions = _to_numpy(positions).astype(np.float64)
    if positions.shape[0] == 3 and positions.shape[-1] != 3:
        positions = positions.transpose(1, 2, 0)
    mask = _to_numpy(mask).astype(bool).reshape(positions.shape[:2])
    size = mask.shape[0]
    rows, cols = np.nonzero(mask)
    n = rows.shape[0]
    if n == 0:
        raise ValueError("the texel mask is empty: no UV island was rasterised")
    index = np.full(mask.shape, -1, dtype=np.int64)
    index[rows, cols] = np.arange(n)
    points = positions[rows, cols]

    # Candidate UV-grid edges (right and down neighbours inside the islands); each texel has
    # at most four, one per slot (right, down, left, up), which gives its local spacing.
    incident = np.full((n, 4), np.nan)
    a_list, b_list = [], []
    for slot, (dr, dc) in enumerate(((0, 1), (1, 0))):
        ok = (rows + dr < size) & (cols + dc < size)
        other = np.full(n, -1)
        other[ok] = index[rows[ok] + dr, cols[ok] + dc]
        src = np.nonzero(other >= 0)[0]
        dst = other[src]
        edge_length = np.linalg.norm(points[src] - points[dst], axis=1)
        incident[src, slot] = edge_length
        incident[dst, slot + 2] = edge_length
        a_list.append(src)
        b_list.append(dst)
    a = np.concatenate(a_list)
    b = np.concatenate(b_list)
    length = np.linalg.norm(points[a] - points[b], axis=1)

    # Local spacing: median incident grid-edge length (robust to the odd cross-island edge).
    with warnings.catch_warnings():  # all-NaN rows (isolated texels) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        spacing = np.nanmedian(incident, axis=1)
    fallback = np.nanmedian(spacing) if np.isfinite(spacing).any() else 1e-3
    spacing = np.where(np.isfinite(spacing) & (spacing > 0), spacing, fallback)

    keep = length <= _GRID_EDGE_FACTOR * np.minimum(spacing[a], spacing[b])
    a, b = a[keep], b[keep]

    # Border texels: fewer than four kept grid neighbours → candidates for seam edges.
    degree = np.bincount(np.concatenate([a, b]), minlength=n)
    border = np.nonzero(degree < 4)[0]
    seam_a, seam_b = [], []
    if border.size > 1:
        tree = cKDTree(points[border])
        k = min(_SEAM_NEIGHBOURS + 1, border.size)
        dist, nearest = tree.query(points[border], k=k)
        dist, nearest = dist.reshape(border.size, k), nearest.reshape(border.size, k)
        src = np.repeat(border, k)
        dst = border[nearest.ravel()]
        limit = _SEAM_RADIUS_FACTOR * np.repeat(spacing[border], k)
        # Only texels far apart in the UV image: close ones are already joined by the grid.
        uv_apart = np.maximum(np.abs(rows[src] - rows[dst]), np.abs(cols[src] - cols[dst])) > 2
        ok = (dist.ravel() <= limit) & uv_apart
        seam_a, seam_b = src[ok], dst[ok]
    existing = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))
    seam_pairs = {
        (min(i, j), max(i, j))
        for i, j in zip(np.asarray(seam_a).tolist(), np.asarray(seam_b).tolist(), strict=True)
    } - existing
    if seam_pairs:
        extra = np.array(sorted(seam_pairs), dtype=np.int64)
        a = np.concatenate([a, extra[:, 0]])
        b = np.concatenate([b, extra[:, 1]])
    ones = np.ones(a.size * 2)
    adjacency = sp.csr_matrix((ones, (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
    adjacency.data[:] = 1.0  # duplicates summed above; the graph is unweighted

    normals_np = None
    if normals is not None:
        normals_np = _to_numpy(normals).astype(np.float64)
        if normals_np.shape[0] == 3 and normals_np.shape[-1] != 3:
            normals_np = normals_np.transpose(1, 2, 0)
        normals_np = normals_np[rows, cols]
        normals_np /= np.linalg.norm(normals_np, axis=1, keepdims=True).clip(1e-12)
    parts_np = None if parts is None else _to_numpy(parts).reshape(mask.shape)[rows, cols].astype(np.int64)
    return TexelGraph(
        texture_size=size,
        rows=rows,
        cols=cols,
        positions=points,
        normals=normals_np,
        parts=parts_np,
        spacing=spacing,
        adjacency=adjacency,
        num_seam_edges=len(seam_pairs),
    )
