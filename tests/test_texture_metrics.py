"""PSNR / SSIM metrics used for texture evaluation and as the refinement loss."""

from __future__ import annotations

import math

import pytest
import torch

from avatarcli.texture.metrics import psnr, ssim


def test_psnr_of_a_known_error_and_of_identical_images():
    a = torch.zeros(2, 3, 16, 16)
    b = torch.full((2, 3, 16, 16), 0.1)
    assert psnr(a, b) == pytest.approx(torch.tensor([20.0, 20.0]), abs=1e-4)
    assert math.isinf(float(psnr(a, a)[0]))


def test_psnr_ignores_pixels_outside_the_mask():
    a = torch.zeros(1, 3, 8, 8)
    b = torch.zeros(1, 3, 8, 8)
    b[..., :, 4:] = 1.0  # large error on the right half only
    b[..., :, :4] = 0.01
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4] = True
    assert float(psnr(a, b, mask)[0]) == pytest.approx(40.0, abs=1e-3)
    assert float(psnr(a, b)[0]) < 10.0


def test_ssim_of_constant_images_is_the_luminance_term():
    a = torch.full((1, 3, 24, 24), 0.5)
    b = torch.full((1, 3, 24, 24), 0.4)
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.4 + c1) / (0.5**2 + 0.4**2 + c1)
    assert float(ssim(a.double(), b.double())[0]) == pytest.approx(expected, abs=1e-6)
    assert float(ssim(a, b)[0]) == pytest.approx(expected, abs=1e-4)  # float32 variance rounding


def test_ssim_is_one_for_identical_images_lower_for_noise_and_masked():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 32, 32, generator=gen)
    noisy = (a + 0.2 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(a, noisy)[0]) < 0.9
    assert float(ssim(a, noisy)[0]) == pytest.approx(float(ssim(noisy, a)[0]), abs=1e-6)
    # Corrupt only the right half; SSIM over the left half stays high.
    half = a.clone()
    half[..., 16:] = noisy[..., 16:]
    left = torch.zeros(1, 1, 32, 32)
    left[..., :8] = 1
    assert float(ssim(a, half, left)[0]) > 0.99 > float(ssim(a, half)[0])


def test_ssim_is_differentiable():
    a = torch.rand(1, 3, 16, 16, requires_grad=True)
    b = torch.rand(1, 3, 16, 16)
    (1 - ssim(a, b).mean()).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
