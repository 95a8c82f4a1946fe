"""DINAR's image encoder: a masked photo (+ silhouette + a noise channel) → one style vector w.

The encoder is a StyleGAN2 discriminator body whose last linear layer emits ``style_dim``
numbers instead of a score. Every layer uses an equalised learning rate with ``lr_mul = 0.01``,
so the raw checkpoint weights are of order 100; they stay raw here (see ``stylegan2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from avatarcli.nets import SerializableNetwork, load_exact_state_dict, require_keys, strip_prefix
from avatarcli.nets.stylegan2 import DEFAULT_BLUR_KERNEL, ConvLayer, EqualLinear, ResBlock, stylegan_channels

#: Channels the encoder adds to the RGB input: the silhouette and one N(0,1) noise map.
EXTRA_INPUT_CHANNELS = 2


@dataclass(frozen=True)
class DinarEncoderConfig:
    """Sizes of the encoder. ``official()`` is the released DINAR model (512² input, 7.38 M params)."""

    image_size: int = 512
    rgb_channels: int = 3
    style_dim: int = 512
    channel_multiplier: float = 2.0
    first_kernel_size: int = 1
    lr_mul: float = 0.01
    blur_kernel: tuple[int, ...] = DEFAULT_BLUR_KERNEL

    def __post_init__(self) -> None:
        log2 = math.log2(self.image_size)
        if self.image_size < 8 or log2 != int(log2):
            raise ValueError(f"image_size must be a power of two ≥ 8, got {self.image_size}")

    @classmethod
    def official(cls) -> DinarEncoderConfig:
        return cls()

    @classmethod
    def tiny(cls) -> DinarEncoderConfig:
        """32² input, 16 channels, 64-d style: for fast tests with random weights."""
        return cls(image_size=32, style_dim=64, channel_multiplier=0.125)

    @classmethod
    def from_upstream_args(cls, args: Mapping[str, Any]) -> DinarEncoderConfig:
        """Config from upstream ``Encoder`` constructor arguments (a sidecar's ``constructor_args``)."""
        if args.get("late_input_channels", 0):
            raise ValueError("late_input_channels > 0 is not used by DINAR and not supported")
        if args.get("replicate_pad", False):
            raise ValueError("replicate_pad=True is not used by DINAR and not supported")
        return cls(
            image_size=int(args["image_size"]),
            rgb_channels=int(args.get("input_channels", 3)),
            style_dim=int(args.get("style_dim", 512)),
            channel_multiplier=float(args.get("channel_multiplier", 2)),
            first_kernel_size=int(args.get("k_first", 1)),
            lr_mul=float(args.get("lr_mul", 0.01)),
            blur_kernel=tuple(args.get("blur_kernel", DEFAULT_BLUR_KERNEL)),
        )

    def width(self, resolution: int) -> int:
        return stylegan_channels(resolution, self.channel_multiplier)


class DinarEncoder(SerializableNetwork, nn.Module):
    """``convs.0`` (k_first conv) → ResBlocks halving to 4² → ``final_conv`` → two equalised linears."""

    kind = "dinar_encoder"
    config_class = DinarEncoderConfig

    def __init__(self, config: DinarEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DinarEncoderConfig.official()
        lr_mul, blur = config.lr_mul, config.blur_kernel
        in_channels = config.rgb_channels + EXTRA_INPUT_CHANNELS
        width = config.width(config.image_size)
        layers: list[nn.Module] = [ConvLayer(in_channels, width, config.first_kernel_size, lr_mul=lr_mul)]
        resolution = config.image_size
        while resolution > 4:
            resolution //= 2
            layers.append(ResBlock(width, config.width(resolution), blur, lr_mul=lr_mul))
            width = config.width(resolution)
        self.convs = nn.Sequential(*layers)
        self.final_conv = ConvLayer(width, width, 3, lr_mul=lr_mul)
        self.final_linear = nn.Sequential(
            EqualLinear(width * 4 * 4, width, lr_mul=lr_mul, activate=True),
            EqualLinear(width, config.style_dim, lr_mul=lr_mul),
        )

    def forward(
        self,
        rgb: torch.Tensor,
        segm: torch.Tensor,
        noise: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """w (B, style_dim) from masked RGB in [-1,1] (B,3,H,W) and a {0,1} silhouette (B,1,H,W).

        Upstream draws the noise channel afresh on every call; pass ``noise`` (B,1,H,W) or a seeded
        ``generator`` to make the result repeatable.
        """
        if noise is None:
            noise = torch.randn(
                segm.shape[0], 1, *segm.shape[-2:], generator=generator, device=segm.device, dtype=segm.dtype
            )
        x = torch.cat([rgb, segm, noise], dim=1)
        x = self.final_conv(self.convs(x))
        return self.final_linear(x.flatten(1))

    @classmethod
    def from_dinar_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        prefix: str = "first_stage.encoder.",
        lr_mul: float = 0.01,
    ) -> DinarEncoder:
        """Build and load from an official checkpoint's ``state_dict`` (sizes read from the shapes).

        ``lr_mul`` cannot be read from shapes; DINAR uses 0.01 throughout. Raises ``ValueError``
        naming missing/unexpected keys or shape mismatches for anything that is not this encoder.
        """
        sd = strip_prefix(state_dict, prefix)
        require_keys(sd, ["convs.0.0.weight", "final_linear.1.weight", "final_conv.0.weight"], cls, prefix)
        first = sd["convs.0.0.weight"]
        n_resblocks = len({k.split(".")[1] for k in sd if k.startswith("convs.")}) - 1
        width4 = sd["final_conv.0.weight"].shape[0]
        config = DinarEncoderConfig(
            image_size=4 * 2**n_resblocks,
            rgb_channels=first.shape[1] - EXTRA_INPUT_CHANNELS,
            style_dim=sd["final_linear.1.weight"].shape[0],
            channel_multiplier=width4 / 128,
            first_kernel_size=first.shape[-1],
            lr_mul=lr_mul,
        )
        net = cls(config)
        load_exact_state_dict(net, sd, f"DINAR encoder state dict (prefix {prefix!r})")
        return net
