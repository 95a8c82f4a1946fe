"""Multi-view merge: softmax over views of cos/tau, only over views that saw the texel."""

from __future__ import annotations

import math

import pytest
import torch

from avatarcli.texture.merge import merge_sampled, merge_views


def _views():
    rgb = torch.zeros(2, 3, 4, 4)
    rgb[0] = 0.2
    rgb[1] = 0.8
    known = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    cos = torch.zeros(2, 1, 4, 4)
    cos[0] = 0.9
    cos[1] = 0.5
    return rgb, known, cos


def test_weights_follow_the_softmax_of_cos_over_tau():
    rgb, known, cos = _views()
    merged = merge_views(rgb, known, cos, tau=0.1)
    w1 = 1 / (1 + math.exp((0.5 - 0.9) / 0.1))  # weight of the more frontal view
    assert float(merged.rgb[0, 0, 0]) == pytest.approx(0.2 * w1 + 0.8 * (1 - w1), abs=1e-6)
    assert float(merged.view_cos[0, 0, 0]) == pytest.approx(0.9)
    assert torch.all(merged.views_seen == 2)


def test_tau_moves_between_best_view_and_plain_average():
    rgb, known, cos = _views()
    assert float(merge_views(rgb, known, cos, tau=1e-3).rgb[0, 0, 0]) == pytest.approx(0.2, abs=1e-6)
    assert float(merge_views(rgb, known, cos, tau=1e3).rgb[0, 0, 0]) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError):
        merge_views(rgb, known, cos, tau=0)


def test_views_that_did_not_sample_a_texel_do_not_count():
    rgb, known, cos = _views()
    known[0, :, 0, 0] = False  # the frontal view missed texel (0, 0)
    known[:, :, 3, 3] = False  # nobody saw texel (3, 3)
    merged = merge_views(rgb, known, cos, tau=0.1)
    assert float(merged.rgb[0, 0, 0]) == pytest.approx(0.8)  # not darkened by view 0's zeros
    assert torch.all(merged.rgb[:, 3, 3] == 0) and torch.isfinite(merged.rgb).all()
    assert not merged.known[0, 3, 3] and merged.known[0, 0, 0]
    assert int(merged.views_seen[0, 0, 0]) == 1 and float(merged.view_cos[0, 0, 0]) == pytest.approx(0.5)


def test_merge_sampled_stacks_views_from_the_sampler():
    from avatarcli.texture.sampling import sample_rgb_texture

    h = w = 16
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) + 4
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) + 4
    uv = torch.stack([cols / 32, rows / 32], dim=-1)[None]
    cover = torch.ones(1, h, w, dtype=torch.bool)
    left = cover.clone()
    left[:, :, 8:] = False
    front = sample_rgb_texture(
        torch.full((1, 3, h, w), 0.2), cover, uv, cover, 32, view_cos=torch.full((1, h, w), 0.9)
    )
    side = sample_rgb_texture(
        torch.full((1, 3, h, w), 0.8), left, uv, cover, 32, view_cos=torch.full((1, h, w), 0.5)
    )
    merged = merge_sampled([front, side])
    both = front.filled[0] & side.filled[0]
    w1 = 1 / (1 + math.exp((0.5 - 0.9) / 0.1))
    assert torch.allclose(merged.rgb[:, both[0]], torch.tensor(0.2 * w1 + 0.8 * (1 - w1)), atol=1e-5)
    only_front = front.filled[0, 0] & ~side.filled[0, 0]
    assert torch.allclose(merged.rgb[:, only_front], torch.tensor(0.2))
    assert torch.equal(merge_sampled([front, side], use_ring=False).known, front.sampled[0] | side.sampled[0])
    with pytest.raises(ValueError):
        merge_sampled([])
