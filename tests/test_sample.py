"""``sample_textures``: seeded, per-sample reproducible neural textures from a tiny generator."""

from __future__ import annotations

import pytest
import torch

from avatarcli.errors import UserError
from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator
from avatarcli.pipelines.sample import draw_sample_inputs, sample_textures


@pytest.fixture(scope="module")
def generator() -> SPTextureGenerator:
    torch.manual_seed(0)
    net = SPTextureGenerator(SPGeneratorConfig.tiny())
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # make the noise inputs matter (their gains start at zero)
        for name, p in net.named_parameters():
            if name.endswith("noise.weight") or name.endswith("bias"):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return net.eval()


def test_same_seed_gives_identical_textures(generator):
    first = sample_textures(generator, 2, seed=5)
    again = sample_textures(generator, 2, seed=5)
    size = generator.config.size
    assert len(first) == 2 and first[0].shape == (16, size, size) and first[0].device.type == "cpu"
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)


def test_sample_i_equals_a_single_run_with_seed_plus_i(generator):
    batch = sample_textures(generator, 3, seed=10)
    for i in range(3):
        (single,) = sample_textures(generator, 1, seed=10 + i)
        assert torch.equal(batch[i], single)


def test_different_seeds_differ(generator):
    a, b = sample_textures(generator, 2, seed=0)
    assert (a - b).abs().max() > 1e-2


def test_truncation_zero_gives_the_mean_latent_texture(generator):
    (texture,) = sample_textures(generator, 1, seed=3, truncation=0.0)
    _, noise = draw_sample_inputs(generator, 3)
    with torch.no_grad():
        expected = generator.synthesize(generator.mean_latent(), noise)[0]
    torch.testing.assert_close(texture, expected)
    # with truncation 0 two people differ only through their noise maps: much less than at 1
    other_zero = sample_textures(generator, 1, seed=4, truncation=0.0)[0]
    a_full, b_full = (
        sample_textures(generator, 1, seed=3, truncation=1.0)[0],
        sample_textures(generator, 1, seed=4, truncation=1.0)[0],
    )
    assert (texture - other_zero).abs().mean() < (a_full - b_full).abs().mean()


def test_truncation_changes_the_texture(generator):
    (t07,) = sample_textures(generator, 1, seed=2, truncation=0.7)
    (t10,) = sample_textures(generator, 1, seed=2, truncation=1.0)
    assert (t07 - t10).abs().max() > 1e-3


def test_bad_arguments_are_user_errors(generator):
    with pytest.raises(UserError, match="at least 1"):
        sample_textures(generator, 0, seed=0)
    with pytest.raises(UserError, match="truncation"):
        sample_textures(generator, 1, seed=0, truncation=-0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_samples_match_cpu(generator):
    cpu = sample_textures(generator, 2, seed=7)
    cuda = sample_textures(generator, 2, seed=7, device="cuda")
    generator.to("cpu")
    for a, b in zip(cpu, cuda, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
