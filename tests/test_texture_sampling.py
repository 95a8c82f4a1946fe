"""Photo → UV sampling (DINAR Algorithm 1): texel convention, masks, averaging, thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avatarcli.texture.occlusion import lookup_texture
from avatarcli.texture.sampling import (
    TEXTURE_SIZES,
    sample_rgb_texture,
    splat_to_texture,
    uv_to_texel,
)

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vectors"


def _uv_convention():
    if not (VECTORS / "dinar_uv_convention.safetensors").exists():
        pytest.skip("shared reference vectors not present")
    from safetensors.torch import load_file

    tensors = load_file(str(VECTORS / "dinar_uv_convention.safetensors"))
    meta = json.loads((VECTORS / "dinar_uv_convention.json").read_text())
    return tensors, meta


def test_texel_mapping_matches_dinar_vector_exactly():
    tensors, meta = _uv_convention()
    uv = tensors["input/uv01"]
    size = meta["conventions"]["texture_size"]
    got = uv_to_texel(uv, size, border_rule="dinar")
    assert torch.equal(got, tensors["output/photo_sampling_after_border_rule_rc"].long())
    assert torch.equal(got, tensors["output/photo_sampling_centre_texel_rc"].long())
    # The default per-axis rule agrees wherever no coordinate touches the border.
    formula = tensors["output/photo_sampling_formula_rc"].long()
    interior = ((formula > 0) & (formula < size - 1)).all(dim=1)
    assert interior.sum() >= 6
    assert torch.equal(uv_to_texel(uv, size)[interior], formula[interior])
    # Near the corner (u≈0, v≈1) the per-axis rule keeps the texel in its own corner.
    corner = uv_to_texel(torch.tensor([[0.001, 0.999]]), size)
    assert corner.tolist() == [[size - 2, 1]]


def test_render_lookup_reads_texels_like_dinar_grid_sample():
    tensors, _ = _uv_convention()
    uv = tensors["input/uv01"]
    size = 256
    texture = torch.arange(size * size, dtype=torch.float64).reshape(1, 1, size, size)
    rendered = lookup_texture(texture, uv.double().reshape(1, 1, -1, 2), torch.ones(1, 1, uv.shape[0]))
    rc = tensors["output/gridsample_texels_rc"]
    weights = tensors["output/gridsample_weights"].double()
    expected = (texture[0, 0][rc[..., 0], rc[..., 1]] * weights).sum(dim=1)
    assert torch.allclose(rendered[0, 0, 0], expected, atol=1e-3)


def _plane_scene(h: int = 24, w: int = 24, size: int = 32):
    """A camera-filling plane whose pixel (i, j) shows texel (i+4, j+4) exactly."""
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) + 4
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) + 4
    uv = torch.stack([cols / size, rows / size], dim=-1)[None]
    return uv, torch.ones(1, h, w, dtype=torch.bool)


def test_white_stays_white_and_unknown_stays_zero():
    uv, cover = _plane_scene()
    image = torch.ones(1, 3, 24, 24)
    out = sample_rgb_texture(image, cover, uv, cover, texture_size=32)
    assert out.sampled.any()
    assert torch.all(out.rgb[:, :, out.sampled[0, 0]] == 1.0)  # upstream's uint8 wrap would give 0
    assert torch.all(out.rgb[:, :, ~out.filled[0, 0]] == 0.0)


def test_silhouette_is_eroded_five_by_five():
    uv, cover = _plane_scene()
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    person = torch.zeros(1, 24, 24, dtype=torch.bool)
    person[:, 5:19, 5:19] = True
    out = sample_rgb_texture(image, person, uv, cover, texture_size=32)
    # Pixels 7..16 survive the erosion → texels 11..20 are exact, with the pixel's own colour.
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[11:21, 11:21] = True
    assert torch.equal(out.sampled[0, 0], expected)
    assert torch.allclose(out.rgb[0][:, 11:21, 11:21], image[0][:, 7:17, 7:17])
    ring = torch.zeros(32, 32, dtype=torch.bool)
    ring[10:22, 10:22] = True
    assert torch.equal(out.filled[0, 0], ring)
    assert torch.equal(out.ring[0, 0], ring & ~expected)


def test_ring_texels_average_the_neighbouring_pixels_and_hits_are_averaged():
    # Two pixels on texel (10, 10) (colours 0 and 1) and one pixel on texel (10, 12).
    size = 24
    texels = torch.tensor([[10, 10], [10, 10], [10, 12]]).reshape(1, 1, 3, 2)
    values = torch.tensor([[0.0, 1.0, 0.4]]).reshape(1, 1, 1, 3)
    texture, sampled, filled = splat_to_texture(values, texels, torch.ones(1, 1, 3, dtype=torch.bool), size)
    assert texture[0, 0, 10, 10] == pytest.approx(0.5)  # duplicates averaged, not "last write"
    assert texture[0, 0, 9, 9] == pytest.approx(0.5)
    assert texture[0, 0, 10, 12] == pytest.approx(0.4)  # exact texel keeps its own pixel
    assert texture[0, 0, 10, 13] == pytest.approx(0.4)  # only the third pixel reaches column 13
    assert texture[0, 0, 10, 11] == pytest.approx((0.0 + 1.0 + 0.4) / 3)  # all three reach it
    assert int(sampled.sum()) == 2 and int(filled.sum()) == 3 * 5


def test_grazing_pixels_are_skipped_and_cosine_is_sampled():
    uv, cover = _plane_scene()
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    cos = torch.full((1, 24, 24), 0.9)
    cos[:, :, 12:] = 0.1  # right half seen edge-on
    out = sample_rgb_texture(image, cover, uv, cover, texture_size=32, view_cos=cos, min_cos=0.2)
    exact = out.sampled[0, 0]
    assert exact[:, 4:16].any() and not exact[:, 16:].any()
    assert torch.allclose(out.view_cos[0, 0][exact], torch.tensor(0.9))
    occluded = torch.zeros(1, 24, 24, dtype=torch.bool)
    occluded[:, :12, :] = True
    dropped = sample_rgb_texture(image, cover, uv, cover, 32, view_cos=cos, occlusion_mask=occluded)
    assert not dropped.sampled[0, 0, :16].any()


@pytest.mark.parametrize("size", TEXTURE_SIZES)
def test_texture_sizes_scale_the_texel_grid(size):
    uv, cover = _plane_scene(16, 16, 32)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    out = sample_rgb_texture(image, cover, uv, cover, texture_size=size, erode_kernel=1)
    assert out.rgb.shape == (1, 3, size, size)
    assert int(out.sampled.sum()) == 16 * 16  # a one-to-one map onto 256 distinct texels
    row, col = (torch.nonzero(out.sampled[0, 0]).min(dim=0).values).tolist()
    assert row == col == round(4 / 32 * size)


def test_batch_items_are_sampled_independently():
    uv, cover = _plane_scene()
    image = torch.stack([torch.zeros(3, 24, 24), torch.ones(3, 24, 24)])
    person = cover.expand(2, -1, -1).clone()
    person[1, :, 12:] = False
    out = sample_rgb_texture(image, person, uv.expand(2, -1, -1, -1), cover.expand(2, -1, -1), 32)
    assert out.rgb.shape == (2, 3, 32, 32)
    assert out.sampled[0].sum() > out.sampled[1].sum() > 0
    assert torch.all(out.rgb[0] == 0) and torch.all(out.rgb[1][:, out.sampled[1, 0]] == 1)


def test_eight_bit_photos_are_accepted():
    uv, cover = _plane_scene()
    image = torch.full((1, 3, 24, 24), 255, dtype=torch.uint8)
    out = sample_rgb_texture(image, cover, uv, cover, texture_size=32)
    assert torch.all(out.rgb[:, :, out.sampled[0, 0]] == 1.0)
