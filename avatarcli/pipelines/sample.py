"""The core of ``avatar sample``: new random people as StylePeople neural textures.

Each texture comes from its own seed, ``seed + i``, which fixes both its latent z and its
per-layer noise maps. So ``-n 8 --seed s`` yields exactly the textures of eight runs of
``-n 1 --seed s+i``, and adding samples never changes the earlier ones. All random numbers are
drawn on the CPU, so a seed gives the same person on CPU and CUDA (up to float rounding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avatarcli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from avatarcli.nets.sp_generator import SPTextureGenerator


def draw_sample_inputs(generator: SPTextureGenerator, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The latent z (1, style_dim) and noise maps (1,1,r,r) that sample ``seed`` uses, on the CPU.

    z is drawn first, then the noise maps from coarse to fine, all from one CPU generator.
    """
    import torch

    cpu = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, generator.config.style_dim, generator=cpu)
    noise = generator.make_noise(1, generator=cpu, device="cpu", dtype=torch.float32)
    return z, noise


def sample_textures(
    generator: SPTextureGenerator,
    n: int,
    seed: int,
    truncation: float = 0.7,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """``n`` neural textures (16, S, S) on the CPU, sample ``i`` drawn from seed ``seed + i``.

    ``truncation`` pulls each w toward the generator's mean latent (1 = no truncation, 0 = the
    mean person, whose texture then differs between samples only through the noise maps).
    """
    import torch

    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    if truncation < 0:
        raise UserError(f"--truncation must be ≥ 0 (1 = none, 0 = the average person), got {truncation}")
    device = torch.device(device)
    generator = generator.to(device).eval()
    textures = []
    with torch.no_grad():
        for i in range(n):
            z, noise = draw_sample_inputs(generator, seed + i)
            texture = generator(
                z.to(device), [m.to(device) for m in noise], truncation=truncation, noise_mode="random"
            )
            textures.append(texture[0].float().cpu())
    return textures
