"""RGB refinement through a differentiable render: lowers the photometric error, respects angles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avatarcli.texture.metrics import psnr
from avatarcli.texture.occlusion import lookup_texture
from avatarcli.texture.refine import refine_texture, view_angle_weight

T = 32
H = W = 48


def _flat_render():
    """A plane filling the image; pixel (i, j) looks up the texture at uv (j/(W-1), i/(H-1))."""
    ii, jj = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    uv = torch.stack([jj / (W - 1), ii / (H - 1)], dim=-1)[None]
    cover = torch.ones(1, H, W, dtype=torch.bool)
    return (lambda texture: lookup_texture(texture, uv, cover)), cover


def _textures():
    gen = torch.Generator().manual_seed(0)
    truth = F.interpolate(
        torch.rand(1, 3, 8, 8, generator=gen), size=(T, T), mode="bilinear", align_corners=True
    )
    start = (truth + 0.15 * torch.randn(truth.shape, generator=gen)).clamp(0, 1)
    return truth[0], start[0]


def test_view_angle_weight_is_dinars_soft_threshold():
    cos = torch.tensor([[0.3, 0.6, 0.7, 0.9, 1.0]])
    weight = view_angle_weight(cos, blur=1)[0, 0, 0]
    assert weight[0] == 0 and weight[1] == 0
    assert float(weight[2]) == pytest.approx(0.7 * (1 - math.exp(-2.0)), abs=1e-6)
    assert torch.all(weight[1:].diff() > 0) and weight[-1] == pytest.approx(1.0, abs=1e-3)


def test_refinement_lowers_the_photometric_error():
    render, cover = _flat_render()
    truth, start = _textures()
    target = render(truth.unsqueeze(0))
    mask = cover.unsqueeze(1)
    cos = torch.ones(T, T)
    before = float(psnr(render(start.unsqueeze(0)), target, mask)[0])
    result = refine_texture(start, None, render, target, mask, cos, steps=40, lr=0.02)
    after = float(psnr(render(result.texture.unsqueeze(0)), target, mask)[0])
    assert after > before + 5.0
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert (
        result.texture.shape == (3, T, T)
        and 0 <= float(result.texture.min()) <= float(result.texture.max()) <= 1
    )


def test_grazing_and_unknown_texels_are_left_alone():
    render, cover = _flat_render()
    truth, start = _textures()
    target = render(truth.unsqueeze(0))
    cos = torch.ones(T, T)
    cos[:, :12] = 0.3  # left part seen edge-on
    known = torch.ones(T, T, dtype=torch.bool)
    known[20:, 20:] = False  # bottom-right never sampled
    result = refine_texture(start, known, render, target, cover.unsqueeze(1), cos, steps=10, lr=0.02)
    changed = (result.texture - start).abs().amax(dim=0) > 1e-6
    assert not changed[:, :9].any()  # beyond the 5x5 blur of the angle weight
    assert not changed[22:, 22:].any()  # beyond the one-texel dilation of the known mask
    assert changed[:, 16:20].all()


def test_loss_only_counts_pixels_the_mesh_covers():
    render, cover = _flat_render()
    truth, start = _textures()
    target = render(truth.unsqueeze(0))
    nothing = torch.zeros(1, 1, H, W, dtype=torch.bool)
    result = refine_texture(
        start, None, render, target, cover.unsqueeze(1), torch.ones(T, T), steps=3, render_mask=nothing
    )
    assert torch.equal(result.texture, start)


def test_loss_is_computed_on_the_mask_crop_without_changing_it():
    from avatarcli.texture.metrics import ssim
    from avatarcli.texture.refine import photometric_loss

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 64, 80, generator=gen), torch.rand(2, 3, 64, 80, generator=gen)
    mask = torch.zeros(2, 1, 64, 80)
    mask[0, :, 20:40, 30:50] = 1
    mask[1, :, 25:45, 20:35] = 1
    pixels = mask.sum() * 3
    expected = ((a - b) ** 2 * mask).sum() / pixels + 0.5 * ((a - b).abs() * mask).sum() / pixels
    expected = expected + 0.2 * (1 - ssim(a, b, mask).mean())
    got = photometric_loss(a, b, mask, l2_weight=1.0, l1_weight=0.5, ssim_weight=0.2)
    assert float(got) == pytest.approx(float(expected), abs=1e-6)
