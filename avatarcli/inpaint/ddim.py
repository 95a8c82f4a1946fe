"""Masked (RePaint-style) DDIM sampling in DINAR's VQ latent space.

DINAR inpaints by re-imposing what is known at every step: before each DDIM update, the known
region of the sample is replaced by the known latent noised to the current timestep (fresh
noise each step), so the network only has to invent the unknown part consistently with it.
There is no replacement after the last step; the decoder's codebook snapping and the final
"copy the known texels back" step take care of the known region.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from avatarcli.inpaint.schedule import DiffusionSchedule

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

#: progress(step_done, total_steps) after every DDIM step.
ProgressCallback = Callable[[int, int], None]


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0,1) noise shaped like ``x``, drawn on the generator's device so seeds repeat across devices."""
    import torch

    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def q_sample(x0: torch.Tensor, t: int, noise: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward diffusion: √ᾱ_t·x0 + √(1−ᾱ_t)·noise, with the schedule's float32 buffers."""
    return buffers["sqrt_alphas_cumprod"][t] * x0 + buffers["sqrt_one_minus_alphas_cumprod"][t] * noise


def repaint_replace(
    x: torch.Tensor,
    x0_known: torch.Tensor,
    known_mask: torch.Tensor,
    t: int,
    noise: torch.Tensor,
    buffers: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Put the noised known latent where ``known_mask`` is 1 and keep the sample elsewhere."""
    return q_sample(x0_known, t, noise, buffers) * known_mask + (1.0 - known_mask) * x


def inpaint_latent(
    unet: nn.Module,
    x0: torch.Tensor,
    cond: torch.Tensor,
    mask: torch.Tensor,
    steps: int = 200,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    progress: ProgressCallback | None = None,
    schedule: DiffusionSchedule | None = None,
) -> torch.Tensor:
    """Sample a latent whose known part (``mask`` = 1) follows ``x0``.

    ``x0`` (B,C,L,L) is the known latent, ``cond`` (B,C+1,L,L) what the UNet is conditioned on
    (latent + texture mask), ``mask`` (B,1,L,L) the region to keep (DINAR: the eroded texture
    mask). ``unet(x_t, t, cond)`` predicts the noise. Deterministic for a given ``generator``.
    """
    import torch

    schedule = schedule or DiffusionSchedule()
    buffers = {k: v.to(x0.device) for k, v in schedule.buffers().items()}
    scheduler = schedule.ddim_scheduler(steps)
    x = randn_like(x0, generator)
    timesteps = [int(t) for t in scheduler.timesteps]
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            x = repaint_replace(x, x0, mask, t, randn_like(x0, generator), buffers)
            t_batch = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
            eps = unet(x, t_batch, cond)
            step_noise = randn_like(x, generator) if eta > 0 else None
            x = scheduler.step(eps, t, x, eta=eta, variance_noise=step_noise).prev_sample
            if progress is not None:
                progress(i + 1, len(timesteps))
    return x
