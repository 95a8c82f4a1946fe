"""Surface texel graph and classical fill of unseen texels (harmonic, mirror, front→back, hair)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from avatarcli.texture.fill import FILL_METHODS, fill_unseen_texels, parse_fill_method
from avatarcli.texture.texel_graph import build_texel_graph

SIZE = 64


def _cylinder(size=SIZE, rows=(4, 60), cols=(4, 60), radius=None, top=1.3, spacing=0.01):
    """A torso-like cylinder (axis y, facing +Z) unwrapped into one UV island, seam at the back.

    Returns positions (T,T,3), normals (T,T,3), mask (T,T), angle (T,T).
    """
    positions = torch.zeros(size, size, 3)
    normals = torch.zeros(size, size, 3)
    angle = torch.zeros(size, size)
    mask = torch.zeros(size, size, dtype=torch.bool)
    r0, r1 = rows
    c0, c1 = cols
    width = c1 - c0
    radius = radius or width * spacing / (2 * math.pi)
    for c in range(c0, c1):
        theta = -math.pi + 2 * math.pi * (c - c0 + 0.5) / width  # ±π at the back, 0 at the front
        for r in range(r0, r1):
            n = torch.tensor([math.sin(theta), 0.0, math.cos(theta)])
            positions[r, c] = n * radius + torch.tensor([0.0, top - (r - r0) * spacing, 0.0])
            normals[r, c] = n
            angle[r, c] = theta
            mask[r, c] = True
    return positions, normals, mask, angle


def test_graph_joins_the_uv_seam_on_the_surface():
    positions, normals, mask, _ = _cylinder()
    graph = build_texel_graph(positions, mask, normals)
    index = graph.node_index()
    adjacency = graph.adjacency.tocsr()
    left, right = index[30, 4], index[30, 59]  # first and last column: neighbours on the body
    assert adjacency[left, right] == 1
    assert graph.num_seam_edges >= 56
    # The seam closes the cylinder: every inner texel has exactly four neighbours.
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    assert np.all(degree[index[10:50, 4:60].ravel()] >= 4)
    # No edge joins texels far apart on the surface.
    coo = adjacency.tocoo()
    lengths = np.linalg.norm(graph.positions[coo.row] - graph.positions[coo.col], axis=1)
    assert lengths.max() < 0.03


def test_islands_packed_side_by_side_in_uv_are_not_joined():
    positions, normals, mask, _ = _cylinder(cols=(4, 30))
    far, _, far_mask, _ = _cylinder(cols=(30, 60))
    positions = torch.where(far_mask[..., None], far + torch.tensor([1.0, 0.0, 0.0]), positions)
    graph = build_texel_graph(positions, mask | far_mask)
    index = graph.node_index()
    assert graph.adjacency.tocsr()[index[20, 29], index[20, 30]] == 0


def _seam_scene():
    positions, normals, mask, angle = _cylinder()
    truth = torch.stack(
        [0.5 + 0.4 * torch.cos(angle), 0.5 + 0.4 * torch.sin(angle), torch.full_like(angle, 0.3)]
    )
    truth = truth * mask
    known = mask.clone()
    known[:, 4:12] = False  # a band on both sides of the back seam is unseen
    known[:, 52:60] = False
    return positions, normals, mask, truth, known


def test_harmonic_fill_is_continuous_across_the_seam_and_beats_uv_space():
    positions, normals, mask, truth, known = _seam_scene()
    graph = build_texel_graph(positions, mask, normals)
    filled = fill_unseen_texels(truth * known, known, graph, "harmonic")
    unseen = mask & ~known
    surface_error = (filled - truth)[:, unseen].abs().mean()
    # The same fill on the flat UV sheet (no seam edges) has to extrapolate each side on its own.
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    flat = torch.stack([cols * 0.01, -rows * 0.01, torch.zeros(SIZE, SIZE)], dim=-1).float()
    uv_graph = build_texel_graph(flat, mask)
    assert uv_graph.num_seam_edges == 0
    uv_filled = fill_unseen_texels(truth * known, known, uv_graph, "harmonic")
    uv_error = (uv_filled - truth)[:, unseen].abs().mean()
    assert surface_error < 0.06 and surface_error < 0.7 * uv_error
    # Across the seam (first vs last column, neighbours on the body) the surface fill has no step.
    surface_step = (filled[:, 10:50, 4] - filled[:, 10:50, 59]).abs().max()
    uv_step = (uv_filled[:, 10:50, 4] - uv_filled[:, 10:50, 59]).abs().max()
    assert surface_step < 0.05 < 0.3 < uv_step
    assert torch.equal(filled[:, known], truth[:, known])  # seen texels untouched
    assert torch.all(filled[:, ~mask] == 0)  # outside the islands untouched


def test_mirror_fill_copies_the_other_side_and_blends_its_border():
    positions, normals, mask, angle = _cylinder()
    stripes = (torch.sin(positions[..., 1] * 60) > 0).float()
    truth = torch.stack([stripes, 0.5 * stripes + 0.2, torch.full_like(stripes, 0.4)]) * mask
    known = mask & (positions[..., 0] < 0.005)  # one side of the body was seen
    seen = truth * known
    seen[:, known] += 0.1  # the seen side is a little brighter: the copy must not show a step
    graph = build_texel_graph(positions, mask, normals)
    unseen = mask & ~known
    mirrored = fill_unseen_texels(seen, known, graph, "mirror+harmonic")
    harmonic = fill_unseen_texels(seen, known, graph, "harmonic")
    err_mirror = (mirrored - truth)[:, unseen].abs().mean()
    err_harmonic = (harmonic - truth)[:, unseen].abs().mean()
    assert err_mirror < 0.5 * err_harmonic
    # Along the middle of the back the stripes are kept: the copy carries detail across.
    assert err_mirror < 0.2


def _head_sphere(size=SIZE, rows=(4, 36), cols=(4, 60), centre=(0.0, 1.6, 0.0), radius=0.1):
    positions = torch.zeros(size, size, 3)
    normals = torch.zeros(size, size, 3)
    mask = torch.zeros(size, size, dtype=torch.bool)
    for r in range(*rows):
        phi = math.pi * (r - rows[0] + 0.5) / (rows[1] - rows[0])
        for c in range(*cols):
            theta = -math.pi + 2 * math.pi * (c - cols[0] + 0.5) / (cols[1] - cols[0])
            n = torch.tensor(
                [math.sin(phi) * math.sin(theta), math.cos(phi), math.sin(phi) * math.cos(theta)]
            )
            positions[r, c] = torch.tensor(centre) + radius * n
            normals[r, c] = n
            mask[r, c] = True
    return positions, normals, mask


def test_back_fill_gives_the_back_of_the_head_the_hair_colour_and_the_back_the_shirt():
    head_pos, head_n, head_mask = _head_sphere()
    body_pos, body_n, body_mask, _ = _cylinder(rows=(38, 62), top=1.45)
    positions = torch.where(head_mask[..., None], head_pos, body_pos)
    normals = torch.where(head_mask[..., None], head_n, body_n)
    mask = head_mask | body_mask
    parts = torch.where(head_mask, 0, 1)
    hair = torch.tensor([0.1, 0.05, 0.02])
    skin = torch.tensor([0.8, 0.6, 0.5])
    shirt = torch.tensor([0.2, 0.6, 0.3])
    is_hair = head_mask & ((normals[..., 1] > 0.3) | (normals[..., 2] < 0))
    truth = torch.where(is_hair[..., None], hair, torch.where(head_mask[..., None], skin, shirt))
    truth = truth.permute(2, 0, 1) * mask
    known = mask & (normals[..., 2] > 0.2)  # a front photo
    graph = build_texel_graph(positions, mask, normals, parts)
    back_of_head = head_mask & (normals[..., 2] < -0.3) & (normals[..., 1].abs() < 0.5)
    back_of_body = body_mask & (normals[..., 2] < -0.3)
    with_back = fill_unseen_texels(truth * known, known, graph, "back+harmonic")
    plain = fill_unseen_texels(truth * known, known, graph, "harmonic")
    err_back = (with_back - truth)[:, back_of_head].abs().mean()
    err_plain = (plain - truth)[:, back_of_head].abs().mean()
    assert err_back < 0.05 and err_back < 0.3 * err_plain
    assert (with_back - truth)[:, back_of_body].abs().max() < 0.02  # the shirt goes round
    explicit = fill_unseen_texels(truth * known, known, graph, "back+harmonic", head_parts=[0])
    assert torch.allclose(explicit, with_back)


def test_back_of_the_head_shows_a_hat_on_top_and_the_hair_under_its_brim():
    """A straw hat over long dark hair: the back of the head shows the hat on top and the hair
    under its brim, down the neck (as photos from behind show a nape under hair or a collar) —
    not the hat's colour all the way down (the top's colour alone), which the sides seen at each
    height rule out."""
    head_pos, head_n, head_mask = _head_sphere()
    neck_pos, neck_n, neck_mask, _ = _cylinder(rows=(40, 47), top=1.5, radius=0.045)
    positions = torch.where(head_mask[..., None], head_pos, neck_pos)
    normals = torch.where(head_mask[..., None], head_n, neck_n)
    mask = head_mask | neck_mask
    parts = torch.zeros(SIZE, SIZE, dtype=torch.long)  # the head part holds the neck, as on the body
    hat, hair = torch.tensor([0.8, 0.65, 0.4]), torch.tensor([0.15, 0.1, 0.08])
    skin = torch.tensor([0.85, 0.65, 0.55])
    height, forward = positions[..., 1], normals[..., 2]
    hidden_hair = neck_mask & (forward < 0)  # the nape under the hair
    truth = torch.where(
        (height >= 1.65)[..., None],
        hat,
        torch.where((head_mask & (forward < 0.6) | hidden_hair)[..., None], hair, skin),
    )
    truth = truth.permute(2, 0, 1) * mask
    known = mask & (forward > 0.2)  # a front photo
    graph = build_texel_graph(positions, mask, normals, parts)
    filled = fill_unseen_texels(truth * known, known, graph, "back+harmonic", head_parts=[0])
    back = mask & (forward < -0.3)
    for region, colour in (
        (back & (height > 1.67), hat),
        (back & head_mask & (height > 1.52) & (height < 1.63), hair),
        (back & neck_mask & (height < 1.48), hair),
    ):
        assert region.sum() > 20
        assert (filled[:, region] - colour[:, None]).abs().mean() < 0.08


@pytest.mark.parametrize("bare", [False, True])
def test_a_necklines_skin_is_not_copied_onto_the_back_but_a_bare_torsos_is(bare):
    """A V-neck shows skin on the front only: the back between the shoulders stays the shirt's
    colour. A bare torso (skin all over its front) keeps skin on the back too."""
    head_pos, head_n, head_mask = _head_sphere()
    body_pos, body_n, body_mask, _ = _cylinder(rows=(38, 62), top=1.45)
    positions = torch.where(head_mask[..., None], head_pos, body_pos)
    normals = torch.where(head_mask[..., None], head_n, body_n)
    mask = head_mask | body_mask
    parts = torch.where(head_mask, 0, 1)  # "head", "torso" in PART_NAMES
    skin, shirt = torch.tensor([0.85, 0.65, 0.55]), torch.tensor([0.1, 0.1, 0.12])
    height, across, forward = positions[..., 1], positions[..., 0], normals[..., 2]
    v_neck = body_mask & (forward > 0.3) & (height > 1.36) & (across.abs() < 0.04)
    garment = body_mask & ~v_neck & torch.tensor(not bare)
    truth = torch.where(garment[..., None], shirt, skin).permute(2, 0, 1) * mask
    known = mask & (forward > 0.2)  # a front photo
    graph = build_texel_graph(positions, mask, normals, parts)
    filled = fill_unseen_texels(truth * known, known, graph, "back+harmonic", head_parts=[0])
    between_shoulders = body_mask & (forward < -0.5) & (height > 1.37) & (across.abs() < 0.03)
    assert between_shoulders.sum() > 10
    expected = skin if bare else shirt
    # the old copy left a pale patch there: 0.08 off the shirt on average
    assert (filled[:, between_shoulders] - expected[:, None]).abs().mean() < 0.02


def test_a_torso_seen_only_from_behind_is_filled_without_warnings():
    """No seen torso front to copy from (the face seen, the torso only from behind): the
    neckline rule has nothing to drop."""
    head_pos, head_n, head_mask = _head_sphere()
    body_pos, body_n, body_mask, _ = _cylinder(rows=(38, 62), top=1.45)
    positions = torch.where(head_mask[..., None], head_pos, body_pos)
    normals = torch.where(head_mask[..., None], head_n, body_n)
    mask = head_mask | body_mask
    truth = torch.full((3, SIZE, SIZE), 0.4) * mask
    facing = normals[..., 2]
    known = (head_mask & (facing > 0.2)) | (body_mask & (facing < -0.2))  # the face, the torso's back
    graph = build_texel_graph(positions, mask, normals, torch.where(head_mask, 0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filled = fill_unseen_texels(truth * known, known, graph, "mirror+back+harmonic", head_parts=[0])
    assert torch.allclose(filled[:, mask], torch.tensor(0.4), atol=0.02)


def test_regions_nobody_saw_get_the_mean_seen_colour():
    positions, normals, mask, _ = _cylinder(cols=(4, 30))
    far, _, far_mask, _ = _cylinder(cols=(34, 60))
    positions = torch.where(far_mask[..., None], far + torch.tensor([1.0, 0.0, 0.0]), positions)
    known = mask.clone()
    texture = torch.zeros(3, SIZE, SIZE)
    texture[:, mask] = torch.tensor([0.2, 0.4, 0.6])[:, None]
    graph = build_texel_graph(positions, mask | far_mask)
    filled = fill_unseen_texels(texture, known, graph, "mirror+back+harmonic")
    assert torch.allclose(filled[:, far_mask], torch.tensor([0.2, 0.4, 0.6])[:, None])


def test_method_names():
    assert parse_fill_method("harmonic") == ()
    assert parse_fill_method("mirror+back+harmonic") == ("mirror", "back")
    assert all(parse_fill_method(m) is not None for m in FILL_METHODS)
    for bad in ("mirror", "harmonic+mirror", "blur+harmonic", "mirror+mirror+harmonic"):
        with pytest.raises(ValueError):
            parse_fill_method(bad)


def test_back_fill_low_pass_covers_the_same_body_area_at_any_texture_size(monkeypatch):
    """The front→back copy averages a fixed patch of body, not a fixed number of texels: the
    same cylinder at twice the texture size gets the same back colours."""
    import avatarcli.texture.fill as fill

    monkeypatch.setattr(fill, "_BACK_NEIGHBOURS", 48)
    monkeypatch.setattr(fill, "_BACK_NEIGHBOURS_TEXTURE", 64)

    def back_colours(size: int) -> torch.Tensor:
        scale = size // 64
        positions, normals, mask, _ = _cylinder(
            size, rows=(4 * scale, 60 * scale), cols=(4 * scale, 60 * scale), spacing=0.01 / scale
        )
        red = (torch.sin(positions[..., 0] * (2 * math.pi / 0.06)) > 0).float()  # 6 cm stripes
        truth = torch.stack([red, torch.zeros_like(red), 1 - red]) * mask
        known = mask & (normals[..., 2] > 0.2)
        graph = build_texel_graph(positions, mask, normals, torch.ones_like(mask, dtype=torch.long))
        filled = fill_unseen_texels(truth * known, known, graph, "back+harmonic", head_parts=[])
        if scale > 1:  # back onto the 64² grid: the mean of each scale × scale block
            filled = torch.nn.functional.avg_pool2d(filled[None], scale)[0]
        return filled

    _, normals, mask, _ = _cylinder()
    back = mask & (normals[..., 2] < -0.5)
    coarse, fine = back_colours(64), back_colours(128)
    same_area = (coarse - fine)[:, back].abs().mean()
    monkeypatch.setattr(fill, "_back_stride", lambda graph: 1)  # a fixed number of texels
    fixed_count = (coarse - back_colours(128))[:, back].abs().mean()
    assert same_area < 0.5 * fixed_count


def test_back_fill_blends_across_a_part_border_instead_of_showing_a_step(monkeypatch):
    """Thigh and shin are copied to the back part by part; a front that darkens smoothly from
    top to bottom must not come out on the back as two flat halves with a step at the border."""
    import avatarcli.texture.fill as fill

    monkeypatch.setattr(fill, "_BACK_NEIGHBOURS", 400)
    monkeypatch.setattr(fill, "_BACK_PART_SHARE", 1.0)  # a wide average: the copy is stepped
    positions, normals, mask, _ = _cylinder()
    height = positions[..., 1]
    top, bottom = float(height[mask].max()), float(height[mask].min())
    shade = (height - bottom) / (top - bottom)  # 1 at the top, 0 at the bottom
    truth = torch.stack([0.2 + 0.6 * shade, 0.3 + 0.4 * shade, torch.full_like(shade, 0.7)]) * mask
    parts = torch.where(torch.arange(SIZE)[:, None] < 32, 1, 2).expand(SIZE, SIZE)
    known = mask & (normals[..., 2] > 0.2)
    back = mask & (normals[..., 2] < -0.5)
    graph = build_texel_graph(positions, mask, normals, parts)

    def step_at_border(texture: torch.Tensor) -> float:
        brightness = texture.mean(0)
        return float((brightness[31][back[31]].mean() - brightness[32][back[32]].mean()).abs())

    known_nodes = graph.gather(known[None].float())[:, 0] > 0
    copied, _ = fill._back_copy(graph, graph.gather(truth * known), known_nodes, [])
    guide = graph.scatter(copied, torch.zeros_like(truth))
    filled = fill_unseen_texels(truth * known, known, graph, "back+harmonic", head_parts=[])
    true_step, copy_step = step_at_border(truth), step_at_border(guide)
    assert copy_step > 10 * true_step  # the per-part copy alone has the step
    assert step_at_border(filled) < 0.25 * copy_step  # the solve blends it over a few texels
    assert (filled - truth)[:, back].abs().mean() < 0.1  # and the back keeps the front's colours


def test_back_copy_keeps_a_hem_on_a_limb():
    """A limb-sized part, denim above and skin below a hem (a skirt, shorts): its back keeps the
    hem closer to where the front has it. Averaging 512 of its ~1300 front texels (much of the
    limb's height around the hem) made it a long gradient: skin under the hem came out half denim."""
    import avatarcli.texture.fill as fill

    positions, normals, mask, _ = _cylinder()
    rows = torch.arange(SIZE)[:, None].expand(SIZE, SIZE)
    skin, denim = torch.tensor([0.85, 0.7, 0.65]), torch.tensor([0.3, 0.35, 0.45])
    truth = torch.where((rows < 32)[None], denim[:, None, None], skin[:, None, None]) * mask
    known = mask & (normals[..., 2] > 0.2)
    back = mask & (normals[..., 2] < -0.5)
    graph = build_texel_graph(positions, mask, normals, torch.ones(SIZE, SIZE, dtype=torch.long))
    known_nodes = graph.gather(known[None].float())[:, 0] > 0
    copied, found = fill._back_copy(graph, graph.gather(truth * known), known_nodes, [])
    guide = graph.scatter(copied, torch.zeros_like(truth))
    assert found[graph.gather(back[None].float())[:, 0] > 0].all()

    def off(band: slice, colour: torch.Tensor) -> float:
        region = back.clone()
        region[: band.start] = False
        region[band.stop :] = False
        return float((guide[:, region] - colour[:, None]).abs().max())

    assert off(slice(43, 47), skin) < 0.01  # 11–14 rows under the hem: skin (the old copy: 0.04 off)
    assert off(slice(17, 21), denim) < 0.01  # 11–14 rows above it: denim (the old copy: 0.04 off)


def test_photo_from_behind_gives_the_front_the_back_colours_and_the_face_the_hand_skin(monkeypatch):
    """A person seen from behind: the copy runs back → front per part (a jacket red on the left,
    blue on the right stays so on the front), and the face, which no photo showed, takes the
    skin tone of the seen hands instead of the hair's."""
    import avatarcli.texture.fill as fill
    from avatarcli.body.parts import PART_NAMES

    monkeypatch.setattr(fill, "_BACK_NEIGHBOURS", 32)  # this small body's back is ~400 texels

    head_pos, head_n, head_mask = _head_sphere()
    body_pos, body_n, body_mask, _ = _cylinder(rows=(38, 56), top=1.45)
    hand_pos, hand_n, hand_mask, _ = _cylinder(rows=(57, 63), cols=(4, 20), top=0.9)
    hand_pos = hand_pos + torch.tensor([0.4, 0.0, 0.0])  # beside the body, not touching it
    positions = torch.where(
        head_mask[..., None], head_pos, torch.where(hand_mask[..., None], hand_pos, body_pos)
    )
    normals = torch.where(head_mask[..., None], head_n, torch.where(hand_mask[..., None], hand_n, body_n))
    mask = head_mask | body_mask | hand_mask
    parts = torch.where(head_mask, 0, torch.where(hand_mask, PART_NAMES.index("left_hand"), 1))
    hair, skin = torch.tensor([0.1, 0.05, 0.02]), torch.tensor([0.8, 0.6, 0.5])
    jacket = torch.where(positions[..., :1] < 0, torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.1, 0.2, 0.8]))
    is_hair = head_mask & ((normals[..., 1] > 0.3) | (normals[..., 2] < 0))
    truth = torch.where(
        is_hair[..., None], hair, torch.where((head_mask | hand_mask)[..., None], skin, jacket)
    )
    truth = truth.permute(2, 0, 1) * mask
    known = (mask & (normals[..., 2] < -0.2)) | hand_mask  # a photo from behind; the hands seen
    graph = build_texel_graph(positions, mask, normals, parts)
    face = head_mask & (normals[..., 2] > 0.7) & (normals[..., 1].abs() < 0.3)
    front_of_body = body_mask & (normals[..., 2] > 0.3) & (normals[..., 0].abs() > 0.3)
    filled = fill_unseen_texels(truth * known, known, graph, "back+harmonic")
    plain = fill_unseen_texels(truth * known, known, graph, "harmonic")
    for region, tolerance in ((front_of_body, 0.1), (face, 0.1)):
        err, err_plain = ((f - truth)[:, region].abs().mean() for f in (filled, plain))
        assert err < tolerance and err < 0.5 * err_plain
