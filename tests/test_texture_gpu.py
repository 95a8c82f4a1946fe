"""The texture stage on CUDA gives the CPU results (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from avatarcli.texture.merge import merge_sampled
from avatarcli.texture.occlusion import lookup_texture
from avatarcli.texture.refine import refine_texture
from avatarcli.texture.sampling import sample_rgb_texture

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sampling_merge_and_refine_match_on_cuda():
    gen = torch.Generator().manual_seed(0)
    h = w = 40
    ii, jj = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    uv = torch.stack([jj / (w - 1), ii / (h - 1)], dim=-1)[None]
    cover = torch.ones(1, h, w, dtype=torch.bool)
    image = torch.rand(1, 3, h, w, generator=gen)
    cos = torch.rand(1, h, w, generator=gen)

    def run(device: str):
        sampled = sample_rgb_texture(
            image.to(device), cover.to(device), uv.to(device), cover.to(device), 32, view_cos=cos.to(device)
        )
        merged = merge_sampled([sampled, sampled])
        render = lambda tex: lookup_texture(tex, uv.to(device), cover.to(device))  # noqa: E731
        tuned = refine_texture(
            merged.rgb,
            merged.known[0],
            render,
            image.to(device),
            cover.to(device)[:, None],
            merged.view_cos[0],
            steps=5,
        )
        return sampled.rgb.cpu(), merged.rgb.cpu(), tuned.texture.cpu()

    for cpu, gpu in zip(run("cpu"), run("cuda"), strict=True):
        torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)
