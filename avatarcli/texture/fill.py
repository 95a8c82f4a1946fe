"""Classical fill of the texels no photo saw, solved on the body surface (no neural weights).

All strategies work on :class:`avatarcli.texture.texel_graph.TexelGraph`, so colour flows across
UV seams as it does across the skin. A method name is a ``+``-joined list of steps ending in
``harmonic``:

* ``mirror``: copy the colour of the left/right mirror texel (x → −x on the rest mesh) where
  that one was seen — a person's left sleeve usually looks like the right one;
* ``back``: for texels on the back (rest normal pointing to −Z), take a low-pass (neighbourhood
  mean) of the seen front colour of the same body part at the same height and side — clothing
  colour continues round the body, its print does not; the back of the head takes, band by band
  in height, the hair (or hat) the photos saw on the head's sides instead of the face. Where
  the photos saw under half of a part's front and more of its back (a photo from behind),
  unseen front texels get the seen back's colour the same way, and an unseen face the skin
  tone of the seen hands;
* ``harmonic``: every remaining texel gets the harmonic (Laplace) interpolation of the colours
  around it, a sparse linear solve.

Copied colours are not pasted as they are: the final solve is gradient-domain (screened
Poisson) — it keeps the copied *variations* but lets the copied patch drift near its border so
that it meets the seen colours without a step (a lighting or white-balance offset between the
two sides fades out), while a large colour jump at the border (hairline, collar) is kept as a
real edge. That is the colour harmonisation between filled and seen regions. The copy is made
part by part, so its variations are kept only within a part: where two copied parts meet (thigh
and shin, torso and upper leg) the colours blend instead of showing the part border as a step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avatarcli.texture.texel_graph import TexelGraph

FILL_METHODS = ("harmonic", "mirror+harmonic", "back+harmonic", "mirror+back+harmonic")
_STEPS = ("mirror", "back")
# A mirror/back partner must be within this many texel spacings of the query point.
_MATCH_FACTOR = 3.0
# Low-pass size of the front→back copy: mean over this many nearest front texels. One-shot back
# view (front photo → back photo, PSNR): 32 → octopus 24.5 / iPER 17.1 dB, 128 → 25.2 / 17.2,
# 512 → 26.2 / 17.0: a print on the front says little about the back, its colour does.
# The count is in texels of a 256² texture; a larger texture averages every (T/256)²-th front
# texel instead, so the low-pass covers the same patch of body (octopus 0000 → 0004 at 512²:
# 25.1 dB with 512 of its own, finer texels).
_BACK_NEIGHBOURS = 512
_BACK_NEIGHBOURS_TEXTURE = 256
# ... but at most this share of the part's seen front: on a limb 512 texels are half its front, so
# a skirt's or shorts' hem (denim above, skin below) came out on the back as a gradient from hip to
# knee (lhm_000057: the thigh's back under the hem 0.67 bright, skin and denim averaged, where the
# front's skin is 0.85; now 0.85). The torso (~6600 front texels) still averages 512. One-shot
# back view / from behind (eval_create.py): octopus 26.99 → 26.94 / 23.05 → 22.96 dB, iPER
# 17.11 → 17.21 / 17.15 → 17.36 (an eighth: 26.93 / 22.82, 17.19 / 17.22).
_BACK_PART_SHARE = 0.25
# The back → front copy runs for a part whose front the photos saw less than this share of (and
# its back more): a photo from behind or a three-quarter back view; front photos see 0.5–1.0.
_FRONT_MOSTLY_UNSEEN = 0.5
# The face gets the hands' skin tone only when hardly any of it was seen (a front photo sees
# 0.65–0.8 of the head's front, a photo from behind 0–0.05; mouth and eyes are never all seen).
_FACE_UNSEEN = 0.2
# Of an unseen head front, the face is what faces forward (the sides show hair and ears).
_FACE_NORMAL_Z = 0.6
# Target texels per low-pass block: bounds the (block, neighbours, C) gather to ~50 MB (a 1024²
# texture's back is ~180 000 texels: 1.3 GB at once).
_LOW_PASS_CHUNK = 4096
# Top fraction of the head's height whose seen colour stands for the hair.
_HAIR_TOP_FRACTION = 0.2
# The back of the head is coloured band by band from the seen sides of the head (not the face)
# at about its own height: windows this fraction of the head's height either side, each needing
# at least ``_BAND_MIN_TEXELS`` seen side texels. A side texel is hair when it is darker than
# ``_HAIR_DARKER`` × the skin of the lower face (forward-facing texels in the ``_LOWER_FACE``
# fractions of the head part's height; shading darkens a cheek's side by ~0.75) or of another
# hue (chromaticity distance over ``_HAIR_HUE``: grey, blond, a dyed colour); a window whose
# hair is under ``_HAIR_SHARE`` of it (ears, cheeks, the neck) keeps the hair of the one above.
# One-shot back view (eval_create.py): octopus 26.21 → 26.41 dB, iPER 17.11 → 17.11.
_BAND_HALF_WIDTH = 0.1
_BAND_MIN_TEXELS = 12
_HAIR_DARKER = 0.6
_HAIR_HUE = 0.12
_HAIR_SHARE = 0.25
_LOWER_FACE = (0.35, 0.6)
# A neckline (V-neck, open collar) shows skin on the front only. In the torso's top
# ``_NECKLINE_HEIGHT`` of its height and middle ``_NECKLINE_WIDTH`` of its width, front texels of
# the face's skin tone are left out of the front → back copy, unless skin is at least
# ``_NECKLINE_SKIN_SHARE`` of the torso's seen front (a bare torso, a bikini: the back is skin too).
# One-shot back view (eval_create.py): octopus 26.41 → 26.99 dB (a collar open at the throat),
# iPER 17.11 → 17.11 (a closed jacket).
_NECKLINE_HEIGHT = 0.4
_NECKLINE_WIDTH = 0.5
_NECKLINE_SKIN_SHARE = 0.3
# A copied patch may drift from its guide over about this surface distance (metres) to meet the
# seen colours; border colour differences much above this tolerance count as real edges.
_BLEND_LENGTH = 0.03
_EDGE_TOLERANCE = 0.2


def parse_fill_method(method: str) -> tuple[str, ...]:
    """The copy steps of a method name (``"mirror+back+harmonic"`` → ``("mirror", "back")``)."""
    steps = tuple(s.strip() for s in method.split("+"))
    if not steps or steps[-1] != "harmonic" or any(s not in _STEPS for s in steps[:-1]):
        raise ValueError(f"unknown fill method {method!r}; choose one of: {', '.join(FILL_METHODS)}")
    if len(set(steps)) != len(steps):
        raise ValueError(f"fill method {method!r} repeats a step")
    return steps[:-1]


def _mirror_copy(graph: TexelGraph, colours: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colours of the seen left/right mirror partners of unseen texels (and where found)."""
    from scipy.spatial import cKDTree

    points = graph.positions
    centre_x = 0.5 * (points[:, 0].min() + points[:, 0].max())
    target = np.flatnonzero(~known)
    mirrored = points[target].copy()
    mirrored[:, 0] = 2 * centre_x - mirrored[:, 0]
    dist, partner = cKDTree(points).query(mirrored, k=1)
    ok = known[partner] & (dist <= _MATCH_FACTOR * np.maximum(graph.spacing[partner], graph.spacing[target]))
    if graph.normals is not None:
        flipped = graph.normals[target] * np.array([-1.0, 1.0, 1.0])
        ok &= np.einsum("ij,ij->i", flipped, graph.normals[partner]) > 0.5
    found = np.zeros(graph.num_nodes, dtype=bool)
    values = np.zeros_like(colours)
    found[target[ok]] = True
    values[target[ok]] = colours[partner[ok]]
    return values, found


def _head_parts(graph: TexelGraph, head_parts: Sequence[int] | None) -> set[int]:
    if graph.parts is None:
        return set()
    if head_parts is not None:
        return set(int(p) for p in head_parts)
    # The head is the part sitting highest on the rest body (mean height of its texels).
    ids = np.unique(graph.parts)
    heights = [graph.positions[graph.parts == p, 1].mean() for p in ids]
    return {int(ids[int(np.argmax(heights))])}


def _hand_parts() -> list[int]:
    from avatarcli.body.parts import PART_NAMES

    return [i for i, name in enumerate(PART_NAMES) if name.endswith("_hand")]


def _back_copy(
    graph: TexelGraph,
    colours: np.ndarray,
    known: np.ndarray,
    head_parts: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Low-pass colour of the other side for unseen texels, per body part.

    Unseen back texels take the seen front's colour (the back of the head: the hair's). Where
    the photos saw less than half of a part's front and more of its back (a photo from behind,
    a three-quarter back view), unseen front texels take the seen back's colour the same way;
    of a head hardly seen from the front, the face takes the skin tone of the seen hands (its
    sides, ears and top are left to the harmonic fill from the seen hair and ears).
    """
    values = np.zeros_like(colours)
    found = np.zeros(graph.num_nodes, dtype=bool)
    if graph.normals is None:
        return values, found
    facing_back = graph.normals[:, 2] < 0
    parts = graph.parts if graph.parts is not None else np.zeros(graph.num_nodes, dtype=np.int64)
    heads = _head_parts(graph, head_parts)
    skin = _face_skin(graph, colours, np.isin(parts, list(heads)), known) if heads else None
    for part in np.unique(parts):
        in_part = parts == part
        front, back = in_part & ~facing_back, in_part & facing_back
        front_share = (front & known).sum() / max(1, front.sum())
        back_share = (back & known).sum() / max(1, back.sum())
        directions = [(front, back)]  # (source side, target side)
        unseen = _FACE_UNSEEN if int(part) in heads else _FRONT_MOSTLY_UNSEEN
        if front_share < unseen and back_share > front_share:
            directions.append((back, front))
        for source_side, target_side in directions:
            target = np.flatnonzero(target_side & ~known)
            if target.size == 0:
                continue
            if int(part) not in heads:
                source = np.flatnonzero(source_side & known)
                if int(part) == _torso_part() and target_side is back and skin is not None:
                    source = _without_neckline(graph, colours, in_part, source, skin)
                colour = _low_pass(graph, colours, source, target)
            elif target_side is back:  # the back of the head: the hair (or hat) at each height
                colour = _back_of_head(graph, colours, in_part, known, target)
            else:  # an unseen face: the hands' skin tone (sides, ears, top: the harmonic fill's)
                forward = graph.normals[target, 2] > _FACE_NORMAL_Z
                target = target[forward & ~np.isin(target, _hair_texels(graph, in_part))]
                colour = _median(colours, np.flatnonzero(np.isin(parts, _hand_parts()) & known))
            if colour is not None:
                values[target] = colour
                found[target] = True
    return values, found


def _back_of_head(
    graph: TexelGraph, colours: np.ndarray, in_head: np.ndarray, known: np.ndarray, target: np.ndarray
) -> np.ndarray | None:
    """(len(target), C) colours for the unseen back of the head, band by band in height.

    One colour for the whole back (the top's) paints a hat's straw all the way down. Here the
    crown takes the top's colour (hair, or a hat); each band below takes the hair seen on the
    head's sides at its height (the hair under a hat's brim, a darker or greyer lower part), or
    keeps the band above's where the sides show skin (ears, cheeks, the neck: the back there is
    still hair; a bald head's top is skin, so it stays skin).
    """
    top = _median(colours, _hair_texels(graph, in_head, known))
    if top is None:
        return None
    out = np.broadcast_to(top, (target.size, colours.shape[1])).copy()
    seen = np.flatnonzero(in_head & known)
    sides = seen[graph.normals[seen, 2] <= _FACE_NORMAL_Z]
    skin = _face_skin(graph, colours, in_head, known)
    if skin is None or sides.size < _BAND_MIN_TEXELS:
        return out
    heights = graph.positions[np.flatnonzero(in_head), 1]
    low, span = heights.min(), heights.max() - heights.min()
    half = _BAND_HALF_WIDTH * span
    side_heights = graph.positions[sides, 1]
    hairlike = _unlike_skin(colours[sides], skin)
    # band colours every half window from the top down, blended linearly between the two bands
    # around each texel (a step between neighbouring bands would show as a stripe)
    centres = np.arange(heights.max(), low - half, -half / 2)
    band_colours = np.empty((centres.size, colours.shape[1]))
    colour = top
    crown = heights.max() - _HAIR_TOP_FRACTION * span  # the top shows what the back does there
    for b, centre in enumerate(centres):
        near = np.abs(side_heights - centre) <= half
        hair = near & hairlike
        if centre >= crown:
            colour = top
        elif hair.sum() >= max(_BAND_MIN_TEXELS, _HAIR_SHARE * near.sum()):
            colour = np.median(colours[sides[hair]], axis=0)
        band_colours[b] = colour
    target_heights = graph.positions[target, 1]
    for channel in range(colours.shape[1]):  # np.interp wants increasing sample points
        out[:, channel] = np.interp(target_heights, centres[::-1], band_colours[::-1, channel])
    return out


def _face_skin(
    graph: TexelGraph, colours: np.ndarray, in_head: np.ndarray, known: np.ndarray
) -> np.ndarray | None:
    """The skin tone of the seen lower face (cheeks, mouth, chin: no hair, no bangs, no hat)."""
    seen = np.flatnonzero(in_head & known)
    if seen.size == 0:
        return None
    facing = seen[graph.normals[seen, 2] > _FACE_NORMAL_Z]
    heights = graph.positions[np.flatnonzero(in_head), 1]
    fraction = (graph.positions[facing, 1] - heights.min()) / max(float(np.ptp(heights)), 1e-9)
    lower_face = facing[(fraction >= _LOWER_FACE[0]) & (fraction <= _LOWER_FACE[1])]
    return _median(colours, lower_face if lower_face.size >= _BAND_MIN_TEXELS else facing)


def _torso_part() -> int:
    from avatarcli.body.parts import PART_NAMES

    return PART_NAMES.index("torso")


def _without_neckline(
    graph: TexelGraph, colours: np.ndarray, in_torso: np.ndarray, source: np.ndarray, skin: np.ndarray
) -> np.ndarray:
    """``source`` (the torso's seen front) without the skin of a neckline, which the back does not
    show (a V-neck or an open collar copied round paints a pale patch between the shoulders)."""
    skin_like = ~_unlike_skin(colours[source], skin)
    if source.size == 0 or skin_like.mean() >= _NECKLINE_SKIN_SHARE:  # none seen (from behind), or bare
        return source
    torso = graph.positions[np.flatnonzero(in_torso)]
    low, high = torso[:, 1].min(), torso[:, 1].max()
    centre = 0.5 * (torso[:, 0].min() + torso[:, 0].max())
    half_width = 0.5 * _NECKLINE_WIDTH * (torso[:, 0].max() - torso[:, 0].min())
    where = graph.positions[source]
    neckline = (where[:, 1] >= high - _NECKLINE_HEIGHT * (high - low)) & (
        np.abs(where[:, 0] - centre) <= half_width
    )
    return source[~(skin_like & neckline)]


def _unlike_skin(colours: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(N,) bool: much darker than ``skin`` or of another hue — not the same skin in shade."""
    brightness = colours[:, :3].mean(axis=1)
    darker = brightness < _HAIR_DARKER * skin[:3].mean()
    hue = colours[:, :3] / np.maximum(colours[:, :3].sum(axis=1, keepdims=True), 1e-6)
    skin_hue = skin[:3] / max(float(skin[:3].sum()), 1e-6)
    return darker | (np.linalg.norm(hue - skin_hue, axis=1) > _HAIR_HUE)


def _hair_texels(graph: TexelGraph, in_head: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Texels of the top of the head (hair, or a hat): the top ``_HAIR_TOP_FRACTION`` of its
    height, only the seen ones when ``known`` is given."""
    head = np.flatnonzero(in_head if known is None else in_head & known)
    heights = graph.positions[np.flatnonzero(in_head), 1]
    top = heights.max() - _HAIR_TOP_FRACTION * (heights.max() - heights.min())
    return head[graph.positions[head, 1] >= top]


def _median(colours: np.ndarray, source: np.ndarray) -> np.ndarray | None:
    return np.median(colours[source], axis=0) if source.size else None


def _low_pass(
    graph: TexelGraph, colours: np.ndarray, source: np.ndarray, target: np.ndarray
) -> np.ndarray | None:
    """(len(target), C): the mean colour of the nearest ``source`` texels in (x, height)."""
    from scipy.spatial import cKDTree

    if source.size == 0:
        return None
    source = source[:: _back_stride(graph)]
    k = max(1, min(_BACK_NEIGHBOURS, int(source.size * _BACK_PART_SHARE)))
    tree = cKDTree(graph.positions[source][:, :2])
    out = np.empty((target.size, colours.shape[1]), colours.dtype)
    for start in range(0, target.size, _LOW_PASS_CHUNK):  # (chunk, k, C) at a time, not all of it
        chunk = target[start : start + _LOW_PASS_CHUNK]
        _, nearest = tree.query(graph.positions[chunk][:, :2], k=k)
        out[start : start + chunk.size] = colours[source[nearest.reshape(chunk.size, k)]].mean(axis=1)
    return out


def _back_stride(graph: TexelGraph) -> int:
    """Every how many front texels the back copy averages, so it spans the same body area at
    any texture size (1 at 256²; 4 at 512²)."""
    return max(1, round((graph.texture_size / _BACK_NEIGHBOURS_TEXTURE) ** 2))


def _poisson_solve(
    graph: TexelGraph,
    colours: np.ndarray,
    known: np.ndarray,
    guide: np.ndarray,
    guided: np.ndarray,
) -> np.ndarray:
    """Fill unknown nodes from the seen colours, following the copied ``guide`` where given.

    Unguided unknown texels get the harmonic interpolation (``L x = 0``). Guided ones solve a
    screened Poisson equation: keep the guide's differences to guided neighbours of the same
    body part, stay near the guide itself (weight ``(spacing / blend length)²``, so a colour
    offset at the border fades out over a few centimetres of skin) and meet the seen colours at
    the border. A border edge where seen and copied colours differ a lot is a real edge
    (hairline, collar), not a lighting offset, so its pull is weakened by
    ``exp(-(difference / tolerance)²)``.
    Graph components without any seen texel take the guide, or else the mean seen colour.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import spsolve

    result = colours.copy()
    unknown = ~known
    if not unknown.any():
        return result
    fallback = colours[known].mean(axis=0) if known.any() else np.full(colours.shape[1], 0.5)
    _, component = connected_components(graph.adjacency, directed=False)
    anchored = np.zeros(component.max() + 1, dtype=bool)
    anchored[component[known]] = True
    solvable = unknown & anchored[component]
    floating = unknown & ~anchored[component]
    result[floating] = np.where(guided[floating, None], guide[floating], fallback)
    if not solvable.any():
        return result

    edges = graph.adjacency.tocoo()
    i, j = edges.row, edges.col
    weight = np.ones(i.size)
    border = guided[i] & known[j]
    mismatch = np.linalg.norm(colours[j[border]] - guide[i[border]], axis=1)
    weight[border] = np.exp(-((mismatch / _EDGE_TOLERANCE) ** 2))
    mirror = guided[j] & known[i]
    mismatch = np.linalg.norm(colours[i[mirror]] - guide[j[mirror]], axis=1)
    weight[mirror] = np.exp(-((mismatch / _EDGE_TOLERANCE) ** 2))
    adjacency = sp.csr_matrix((weight, (i, j)), shape=edges.shape)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    screening = np.where(guided, (graph.spacing / _BLEND_LENGTH) ** 2, 0.0)
    system_full = (sp.diags(degree + screening) - adjacency).tocsr()

    # The copy is made part by part, so a step in the guide between two parts is the copy's, not
    # the garment's (thigh → shin, torso → upper leg): across a part border only the smoothness
    # and the screening act, and the colour blends over the blend length instead.
    both = guided[i] & guided[j]
    if graph.parts is not None:
        both &= graph.parts[i] == graph.parts[j]
    rhs_full = screening[:, None] * guide
    np.add.at(rhs_full, i[both], guide[i[both]] - guide[j[both]])

    u = np.flatnonzero(solvable)
    k = np.flatnonzero(~solvable)
    rhs = rhs_full[u] - system_full[u][:, k] @ result[k]
    solution = spsolve(system_full[u][:, u].tocsc(), rhs)
    result[u] = np.asarray(solution).reshape(u.size, colours.shape[1])
    return result


def fill_unseen_texels(
    texture: torch.Tensor,
    known: torch.Tensor,
    graph: TexelGraph,
    method: str = "mirror+back+harmonic",
    *,
    head_parts: Sequence[int] | None = None,
) -> torch.Tensor:
    """Complete an RGB texture (3, T, T) whose seen texels are ``known`` (T, T) / (1, T, T).

    ``graph`` comes from :func:`avatarcli.texture.texel_graph.build_texel_graph` on the rest
    mesh. Texels outside the UV islands are returned unchanged. ``head_parts`` names the part
    ids of the head (for the hair rule); by default the highest part on the rest body.
    """
    steps = parse_fill_method(method)
    if texture.dim() == 4:
        texture = texture[0]
    known_nodes = known.reshape(graph.texture_size, graph.texture_size).detach().cpu().numpy()
    known_nodes = known_nodes[graph.rows, graph.cols].astype(bool)
    colours = graph.gather(texture)
    guide = np.zeros_like(colours)
    guided = np.zeros(graph.num_nodes, dtype=bool)
    for step in steps:
        copied_known = known_nodes | guided
        current = np.where(guided[:, None], guide, colours)
        if step == "mirror":
            values, found = _mirror_copy(graph, current, copied_known)
        else:
            values, found = _back_copy(graph, current, copied_known, head_parts)
        fresh = found & ~copied_known
        guide[fresh] = values[fresh]
        guided |= fresh
    filled = _poisson_solve(graph, colours, known_nodes, guide, guided)
    return graph.scatter(np.clip(filled, 0.0, 1.0), texture)
