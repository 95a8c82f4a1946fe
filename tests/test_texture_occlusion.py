"""Occlusion-boundary detector: a hand in front of the torso must not paint the torso texture."""

from __future__ import annotations

import torch

from avatarcli.texture.occlusion import (
    detect_occlusions,
    lookup_texture,
    pad_texture_islands,
    part_colormap_texture,
)
from avatarcli.texture.sampling import sample_rgb_texture

SIZE = 64  # texture
H = W = 96  # image
TORSO_UV = (0.05, 0.45, 0.05, 0.95)  # u0, u1, v0, v1 of the torso island
HAND_UV = (0.60, 0.90, 0.10, 0.40)
TORSO_COLOUR = torch.tensor([0.10, 0.20, 0.80])
HAND_COLOUR = torch.tensor([0.90, 0.60, 0.50])


def _island(texels: torch.Tensor, box) -> torch.Tensor:
    u0, u1, v0, v1 = box
    v, u = texels
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def _texel_layout():
    """Two UV islands (torso part 1, hand part 4) with made-up rest positions."""
    centres = (torch.arange(SIZE, dtype=torch.float32)) / (SIZE - 1)
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    torso = _island((v, u), TORSO_UV)
    hand = _island((v, u), HAND_UV)
    parts = torch.where(hand, 4, 1)
    positions = torch.stack([u, 1.5 - v, torch.zeros_like(u)], dim=-1)
    positions[hand] += torch.tensor([0.5, -0.5, 0.0])
    return parts, positions, torso | hand, torso


def _scene(hand_centre, hand_radius):
    """UV render of a torso rectangle with a hand disc in front; or its photo colours."""
    ii, jj = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    torso = (ii >= 10) & (ii <= 85) & (jj >= 20) & (jj <= 75)
    hand = (ii - hand_centre[0]) ** 2 + (jj - hand_centre[1]) ** 2 <= hand_radius**2
    u0, u1, v0, v1 = TORSO_UV
    uv = torch.stack([u0 + (jj - 20) / 55 * (u1 - u0), v0 + (ii - 10) / 75 * (v1 - v0)], dim=-1)
    hu0, hu1, hv0, hv1 = HAND_UV
    rel_j = (jj - hand_centre[1] + hand_radius) / (2 * hand_radius)
    rel_i = (ii - hand_centre[0] + hand_radius) / (2 * hand_radius)
    hand_uv = torch.stack([hu0 + rel_j * (hu1 - hu0), hv0 + rel_i * (hv1 - hv0)], dim=-1)
    uv = torch.where(hand[..., None], hand_uv, uv)
    cover = torso | hand
    colour = torch.where(hand[..., None], HAND_COLOUR, TORSO_COLOUR).permute(2, 0, 1)
    return uv[None], cover[None], (colour * cover)[None]


def _hand_coloured_torso_texels(sampled, torso_texels) -> int:
    rgb = sampled.rgb[0].permute(1, 2, 0)
    looks_like_hand = (rgb - HAND_COLOUR).norm(dim=-1) < (rgb - TORSO_COLOUR).norm(dim=-1)
    return int((looks_like_hand & sampled.filled[0, 0] & torso_texels).sum())


def test_colormap_has_one_hue_per_part_and_a_gradient_along_it():
    parts, positions, mask, torso = _texel_layout()
    colormap = part_colormap_texture(parts, positions, mask, pad_texels=0)
    torso_rgb = colormap[:, torso]
    hand_rgb = colormap[:, parts == 4]
    assert (torso_rgb.mean(1) - hand_rgb.mean(1)).abs().max() > 0.3  # different hues
    brightness = colormap.max(dim=0).values[torso]
    assert 0.5 < float(brightness.min()) < 0.6 and float(brightness.max()) > 0.99  # the ramp
    assert torch.all(colormap[:, ~mask] == 0)
    padded = pad_texture_islands(colormap, mask, 2)
    grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 5, 1, 2)[0, 0] > 0
    assert torch.all(padded.amax(0)[grown] > 0) and torch.equal(padded[:, mask], colormap[:, mask])


def test_detector_flags_the_hand_outline_but_not_the_body_outline():
    parts, positions, mask, _ = _texel_layout()
    colormap = part_colormap_texture(parts, positions, mask)
    uv, cover, _ = _scene((48, 48), 12)
    occluded = detect_occlusions(colormap, uv, cover)[0]
    ii, jj = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    radius = ((ii - 48) ** 2 + (jj - 48) ** 2).float().sqrt()
    assert occluded[(radius - 12).abs() <= 1].float().mean() > 0.95
    assert not occluded[radius > 18].any()  # torso outline and interior untouched
    assert not occluded[radius < 8].any()


def test_detector_removes_hand_colour_from_the_torso_texture():
    parts, positions, mask, torso_texels = _texel_layout()
    colormap = part_colormap_texture(parts, positions, mask)
    uv, cover, _ = _scene((48, 48), 12)  # where the fitted mesh puts the hand
    _, photo_cover, photo = _scene((50, 49), 12)  # where the hand really is: fit off by ~2 px
    person = cover | photo_cover
    plain = sample_rgb_texture(photo, person, uv, cover, SIZE)
    occluded = detect_occlusions(colormap, uv, cover)
    cleaned = sample_rgb_texture(photo, person, uv, cover, SIZE, occlusion_mask=occluded)
    wrong_without = _hand_coloured_torso_texels(plain, torso_texels)
    wrong_with = _hand_coloured_torso_texels(cleaned, torso_texels)
    assert wrong_without >= 10
    assert wrong_with == 0
    # The detector costs only a band of texels: most of the torso is still sampled.
    assert cleaned.sampled[0, 0][torso_texels].sum() > 0.6 * plain.sampled[0, 0][torso_texels].sum()


def test_lookup_texture_is_black_off_the_body():
    uv, cover, _ = _scene((48, 48), 12)
    image = lookup_texture(torch.ones(3, 8, 8), uv, cover)
    assert torch.all(image[0][:, ~cover[0]] == 0)
    assert torch.allclose(image[0][:, cover[0]], torch.tensor(1.0))


def test_rest_position_filter_drops_part_junctions_but_keeps_occlusions():
    # Texture: a strip whose upper half is part 1 and lower half part 2, continuous on the body.
    centres = torch.arange(SIZE, dtype=torch.float32) / (SIZE - 1)
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    strip = (u >= 0.1) & (u <= 0.5)
    parts = torch.where(v < 0.5, 1, 2)
    positions = torch.stack([u, 1.5 - v, torch.zeros_like(u)], dim=-1)
    colormap = part_colormap_texture(parts, positions, strip)
    rest = pad_texture_islands(positions.permute(2, 0, 1) * strip, strip, 4)
    # Image: the strip seen head-on, filling a rectangle.
    ii, jj = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    cover = ((ii >= 8) & (ii <= 88) & (jj >= 30) & (jj <= 66))[None]
    uv = torch.stack([0.1 + (jj - 30) / 36 * 0.4, (ii - 8) / 80], dim=-1)[None]
    junction = detect_occlusions(colormap, uv, cover)
    assert junction[0, 46:52].any()  # plain Canny fires on the part border
    assert not detect_occlusions(colormap, uv, cover, rest_position_texture=rest).any()
    # The hand in front of the torso is a real jump on the body and stays flagged.
    parts, positions, mask, _ = _texel_layout()
    colormap = part_colormap_texture(parts, positions, mask)
    rest = pad_texture_islands(positions.permute(2, 0, 1) * mask, mask, 4)
    uv, cover, _ = _scene((48, 48), 12)
    plain = detect_occlusions(colormap, uv, cover)
    filtered = detect_occlusions(colormap, uv, cover, rest_position_texture=rest)
    assert filtered.sum() > 0.9 * plain.sum()
