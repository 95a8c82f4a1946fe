"""DINAR's diffusion noise schedule and its 200-step DDIM discretisation.

The buffers are computed the way the released model was trained (LDM "linear" betas in
float64, stored as float32), so they equal the checkpoint's root tensors bit for bit. The DDIM
update itself is diffusers' ``DDIMScheduler`` configured to reproduce the upstream sampler
(``steps_offset=1`` for t = 1, 6, …, 996 and ``set_alpha_to_one=False`` so the last step uses
ᾱ₀, not 1), with its ᾱ table replaced by ours to remove float32 drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import DDIMScheduler


@dataclass(frozen=True)
class DiffusionSchedule:
    """The released DINAR settings (fact sheet §2.5)."""

    num_train_timesteps: int = 1000
    linear_start: float = 3e-4
    linear_end: float = 0.02
    v_posterior: float = 0.0
    logvar_init: float = 0.0

    def buffers(self) -> dict[str, torch.Tensor]:
        """The 13 schedule tensors, named as the checkpoint's root keys (float32, shape (T,))."""
        import numpy as np
        import torch

        n = self.num_train_timesteps
        betas = (
            torch.linspace(self.linear_start**0.5, self.linear_end**0.5, n, dtype=torch.float64) ** 2
        ).numpy()
        alphas = 1.0 - betas
        ac = np.cumprod(alphas, axis=0)
        ac_prev = np.append(1.0, ac[:-1])
        posterior_variance = (1 - self.v_posterior) * betas * (1.0 - ac_prev) / (
            1.0 - ac
        ) + self.v_posterior * betas
        values = {
            "betas": betas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
            "logvar": np.full(n, self.logvar_init),
        }
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}

    def ddim_timesteps(self, steps: int) -> torch.Tensor:
        """Uniform DDIM timesteps, ascending: c = T // steps, t = 0, c, 2c, … plus 1."""
        import torch

        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be in 1..{self.num_train_timesteps}, got {steps}")
        stride = self.num_train_timesteps // steps
        return torch.arange(steps, dtype=torch.int64) * stride + 1

    def ddim_scheduler(self, steps: int) -> DDIMScheduler:
        """A diffusers DDIM scheduler that steps exactly like DINAR's sampler."""
        import torch
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.linear_start,
            beta_end=self.linear_end,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            timestep_spacing="leading",
            prediction_type="epsilon",
        )
        alphas_cumprod = self.buffers()["alphas_cumprod"]
        scheduler.alphas_cumprod = alphas_cumprod.clone()
        scheduler.final_alpha_cumprod = alphas_cumprod[0].clone()
        scheduler.set_timesteps(steps)
        expected = torch.flip(self.ddim_timesteps(steps), dims=[0])
        if not torch.equal(
            scheduler.timesteps.to(torch.int64), expected
        ):  # pragma: no cover - diffusers change
            raise RuntimeError("diffusers' DDIM timesteps no longer match DINAR's discretisation")
        return scheduler

    def ddim_coefficients(self, steps: int, eta: float = 1.0) -> dict[str, torch.Tensor]:
        """Per-DDIM-index a_t, a_prev (ᾱ₀ at index 0, not 1), σ_t and √(1−a_t), ascending in t.

        The sampler lets diffusers compute these; the table documents and checks them.
        """
        import torch

        ac = self.buffers()["alphas_cumprod"].double()
        ts = self.ddim_timesteps(steps)
        a_t = ac[ts]
        a_prev = torch.cat([ac[:1], ac[ts[:-1]]])
        sigmas = eta * torch.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        return {
            "timesteps": ts,
            "alphas": a_t.float(),
            "alphas_prev": a_prev,
            "sigmas": sigmas,
            "sqrt_one_minus_alphas": torch.sqrt(1.0 - a_t).float(),
        }
