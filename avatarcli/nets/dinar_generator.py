"""DINAR's texture generator: w → a 16-channel neural texture over the whole UV layout.

A StyleGAN2 synthesis network without a mapping network (w comes straight from the encoder and
is used for every layer), a learned 4² constant input, and 16 "RGB" output channels. Upstream
draws fresh per-layer noise on every call, so textures are stochastic; here the noise is an
explicit argument, or drawn from a caller's ``torch.Generator`` so runs repeat with a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from avatarcli.nets import SerializableNetwork, load_exact_state_dict, require_keys, strip_prefix
from avatarcli.nets.stylegan2 import (
    DEFAULT_BLUR_KERNEL,
    ConstantInput,
    NoiseBuffers,
    StyledConv,
    SynthesisLayout,
    ToRGB,
)

NoiseMode = Literal["random", "buffers"]


@dataclass(frozen=True)
class DinarGeneratorConfig(SynthesisLayout):
    """Sizes of the generator. ``official()`` is released DINAR (256² texture, 8.12 M parameters)."""

    texture_size: int = 256
    style_dim: int = 512
    channel_multiplier: float = 2.0
    output_channels: int = 16
    blur_kernel: tuple[int, ...] = DEFAULT_BLUR_KERNEL

    @property
    def synthesis_size(self) -> int:
        return self.texture_size

    def __post_init__(self) -> None:
        log2 = math.log2(self.texture_size)
        if self.texture_size < 8 or log2 != int(log2):
            raise ValueError(f"texture_size must be a power of two ≥ 8, got {self.texture_size}")

    @classmethod
    def official(cls) -> DinarGeneratorConfig:
        return cls()

    @classmethod
    def tiny(cls) -> DinarGeneratorConfig:
        """32² texture, 16 channels, 64-d style: for fast tests with random weights."""
        return cls(texture_size=32, style_dim=64, channel_multiplier=0.125)

    @classmethod
    def from_upstream_args(cls, args: Mapping[str, Any]) -> DinarGeneratorConfig:
        """Config from upstream ``Generator`` constructor arguments (a sidecar's ``constructor_args``)."""
        if args.get("ainp_path"):
            raise ValueError("ainp_path (extra spectral inputs) is not used by DINAR and not supported here")
        return cls(
            texture_size=int(args["texture_size"]),
            style_dim=int(args.get("style_dim", 512)),
            channel_multiplier=float(args.get("channel_multiplier", 2)),
            output_channels=int(args.get("output_channels", 16)),
            blur_kernel=tuple(args.get("blur_kernel", DEFAULT_BLUR_KERNEL)),
        )


class DinarTextureGenerator(SerializableNetwork, nn.Module):
    """Constant 4² → ``conv1`` → (upsampling StyledConv, StyledConv) per doubling; the 16-channel
    output is the running sum of the ``to_rgb`` layers, upsampled at each level.
    """

    kind = "dinar_generator"
    config_class = DinarGeneratorConfig

    def __init__(self, config: DinarGeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DinarGeneratorConfig.official()
        style_dim, blur, out_c = config.style_dim, config.blur_kernel, config.output_channels
        width = config.width(4)
        self.input = ConstantInput(width)
        self.conv1 = StyledConv(width, width, 3, style_dim, blur_kernel=blur)
        self.to_rgb1 = ToRGB(width, style_dim, out_c, upsample=False, blur_kernel=blur)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for log_res in range(3, config.log_size + 1):
            out_width = config.width(2**log_res)
            self.convs.append(StyledConv(width, out_width, 3, style_dim, upsample=True, blur_kernel=blur))
            self.convs.append(StyledConv(out_width, out_width, 3, style_dim, blur_kernel=blur))
            self.to_rgbs.append(ToRGB(out_width, style_dim, out_c, blur_kernel=blur))
            width = out_width
        self.noises = NoiseBuffers(config)

    def make_noise(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> list[torch.Tensor]:
        """Fresh N(0,1) noise maps (B,1,r,r), one per layer, drawn from ``generator`` when given."""
        return [
            self._draw_noise(i, batch, generator, device, dtype) for i in range(self.config.num_noise_layers)
        ]

    def _draw_noise(
        self,
        layer: int,
        batch: int,
        generator: torch.Generator | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> torch.Tensor:
        side = self.config.noise_resolution(layer)
        device = device if device is not None else self.input.input.device
        return torch.randn(batch, 1, side, side, generator=generator, device=device, dtype=dtype)

    def forward(
        self,
        w: torch.Tensor,
        noise: Sequence[torch.Tensor | None] | None = None,
        *,
        generator: torch.Generator | None = None,
        noise_mode: NoiseMode = "random",
    ) -> torch.Tensor:
        """Neural texture (B, output_channels, T, T) from w (B, style_dim) or W+ (B, n_latent, style_dim).

        ``noise``: one map per layer (``config.num_noise_layers``); a ``None`` entry, or no list,
        means "draw it": N(0,1) from ``generator`` for ``noise_mode="random"`` (upstream's
        inference behaviour), or the stored ``noises.noise_i`` buffers for ``"buffers"``.
        """
        cfg = self.config
        batch = w.shape[0]
        styles = self._per_layer_styles(w)
        noise_list = list(noise) if noise is not None else [None] * cfg.num_noise_layers
        if len(noise_list) != cfg.num_noise_layers:
            raise ValueError(f"expected {cfg.num_noise_layers} noise maps, got {len(noise_list)}")
        for i, n in enumerate(noise_list):
            if n is not None:
                continue
            if noise_mode == "buffers":
                noise_list[i] = self.noises.get(i)
            elif noise_mode == "random":
                noise_list[i] = self._draw_noise(i, batch, generator, w.device, w.dtype)
            else:
                raise ValueError(f"noise_mode must be 'random' or 'buffers', got {noise_mode!r}")

        x = self.conv1(self.input(batch), styles[0], noise_list[0])
        image = self.to_rgb1(x, styles[1])
        for level, to_rgb in enumerate(self.to_rgbs):
            up_conv, conv = self.convs[2 * level], self.convs[2 * level + 1]
            x = up_conv(x, styles[2 * level + 1], noise_list[2 * level + 1])
            x = conv(x, styles[2 * level + 2], noise_list[2 * level + 2])
            image = to_rgb(x, styles[2 * level + 3], image)
        return image

    def _per_layer_styles(self, w: torch.Tensor) -> list[torch.Tensor]:
        n_latent = self.config.n_latent
        if w.ndim == 2:
            return [w] * n_latent
        if w.ndim == 3 and w.shape[1] == n_latent:
            return list(w.unbind(1))
        raise ValueError(f"w must be (B, style_dim) or (B, {n_latent}, style_dim), got {tuple(w.shape)}")

    @classmethod
    def from_dinar_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], prefix: str = "first_stage.generator."
    ) -> DinarTextureGenerator:
        """Build and load from an official checkpoint's ``state_dict``; sizes come from the shapes.

        Raises ``ValueError`` naming missing/unexpected keys or shape mismatches.
        """
        sd = strip_prefix(state_dict, prefix)
        require_keys(sd, ["input.input", "to_rgb1.conv.weight", "conv1.conv.modulation.weight"], cls, prefix)
        n_levels = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
        config = DinarGeneratorConfig(
            texture_size=4 * 2**n_levels,
            style_dim=sd["conv1.conv.modulation.weight"].shape[1],
            channel_multiplier=sd["input.input"].shape[1] / 128,
            output_channels=sd["to_rgb1.conv.weight"].shape[1],
        )
        net = cls(config)
        load_exact_state_dict(net, sd, f"DINAR generator state dict (prefix {prefix!r})")
        return net
