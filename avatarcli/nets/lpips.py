"""LPIPS (VGG variant, v0.1): a learned perceptual distance, for losses that should see structure.

Zhang et al. (2018) compare two images through a frozen ImageNet VGG16: both are shifted and
scaled like ImageNet inputs, the activations after relu1_2, relu2_2, relu3_3, relu4_3 and
relu5_3 are unit-normalised along channels, their squared difference is weighted per channel by
a learned 1×1 convolution, averaged over space and summed over the five layers.

Our own implementation of that definition. Key names follow the two files users already have,
so the import is a rename-free check: torchvision's ``vgg16-397923af.pth`` gives
``features.<i>.weight|bias`` (the index of the layer in VGG16's ``features`` stack, pools and
ReLUs included) and the ``lpips`` package's ``weights/v0.1/vgg.pth`` gives
``lin<k>.model.1.weight`` of shape (1, C_k, 1, 1). Slot 0 of each ``model`` is the package's
dropout, which only acts while LPIPS itself is trained, so it is an identity here.

The network is frozen (no parameter wants a gradient) but differentiable with respect to its
inputs. Inputs are RGB in [-1, 1]; the output is (B, 1, 1, 1), like the package's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.nets import SerializableNetwork, load_exact_state_dict

#: ImageNet statistics expressed for [-1, 1] inputs (the package's scaling layer).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
#: Added to the channel norm before dividing, as the package does.
NORM_EPS = 1e-10


@dataclass(frozen=True)
class LPIPSConfig:
    """VGG-style blocks: ``convs_per_block[k]`` 3×3 convs of ``block_widths[k]`` channels, each with
    a ReLU; blocks after the first start with a 2×2 max-pool. Each block's last ReLU is compared."""

    block_widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    convs_per_block: tuple[int, ...] = (2, 2, 3, 3, 3)

    def __post_init__(self) -> None:
        if not self.block_widths or len(self.block_widths) != len(self.convs_per_block):
            raise ValueError("block_widths and convs_per_block must be non-empty and the same length")
        if min(self.block_widths) < 1 or min(self.convs_per_block) < 1:
            raise ValueError("every block needs at least one conv of at least one channel")

    @classmethod
    def official(cls) -> LPIPSConfig:
        """VGG16's ``features`` (13 convs, 14.7 M parameters) with the five v0.1 linear heads."""
        return cls()

    @classmethod
    def tiny(cls) -> LPIPSConfig:
        """Three narrow blocks, for tests."""
        return cls(block_widths=(4, 8, 8), convs_per_block=(1, 2, 1))


class _LinearHead(nn.Module):
    """Per-channel weights of one layer's squared differences (``lin<k>.model.1.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(SerializableNetwork, nn.Module):
    """``lpips(x, y, mask=None)`` → (B, 1, 1, 1) perceptual distances of RGB images in [-1, 1]."""

    kind = "lpips_vgg"
    config_class: ClassVar[type] = LPIPSConfig

    def __init__(self, config: LPIPSConfig | None = None) -> None:
        super().__init__()
        self.config = config or LPIPSConfig.official()
        layers: list[nn.Module] = []
        self.tap_indices: list[int] = []  # index in ``features`` of each compared ReLU
        channels = 3
        for block, (width, convs) in enumerate(
            zip(self.config.block_widths, self.config.convs_per_block, strict=True)
        ):
            if block > 0:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            for _ in range(convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False)]
                channels = width
            self.tap_indices.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        for k, width in enumerate(self.config.block_widths):
            self.add_module(f"lin{k}", _LinearHead(width))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def heads(self) -> list[_LinearHead]:
        return [getattr(self, f"lin{k}") for k in range(len(self.config.block_widths))]

    def layer_features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The compared activations of (B, 3, H, W) ``image`` in [-1, 1], one per block."""
        x = (image - self.shift) / self.scale
        taps, wanted = [], set(self.tap_indices)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                taps.append(x)
            if len(taps) == len(self.tap_indices):
                break
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """LPIPS between ``x`` and ``y`` (B, 3, H, W) in [-1, 1].

        ``mask`` (B, 1, H, W) in [0, 1], optional: each layer's map is averaged over the mask
        (area-resized to that layer's size) instead of over all pixels, so only the masked region
        counts; an image whose mask is empty scores 0.
        """
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"LPIPS compares two (B, 3, H, W) images, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        smallest = 2 ** (len(self.config.block_widths) - 1)
        if min(x.shape[-2:]) < smallest:
            raise ValueError(
                f"LPIPS needs images of at least {smallest}×{smallest}, got {tuple(x.shape[-2:])}"
            )
        batch = x.shape[0]
        total = x.new_zeros(batch, 1, 1, 1)
        for head, both in zip(self.heads, self.layer_features(torch.cat([x, y])), strict=True):
            fx, fy = _unit_channels(both).split(batch)
            diff = head((fx - fy).pow(2))  # (B, 1, h, w)
            if mask is None:
                total = total + diff.mean(dim=(2, 3), keepdim=True)
            else:
                full = mask.to(diff.dtype).reshape(batch, 1, *x.shape[-2:])
                weight = F.adaptive_avg_pool2d(full, diff.shape[-2:])
                covered = weight.sum(dim=(2, 3), keepdim=True)
                total = total + (diff * weight).sum(dim=(2, 3), keepdim=True) / covered.clamp_min(1e-8)
        return total

    # ---------------------------------------------------------------------------- conversion
    @classmethod
    def from_official_state_dicts(
        cls, vgg: Mapping[str, torch.Tensor], lin: Mapping[str, torch.Tensor]
    ) -> LPIPS:
        """The official LPIPS-VGG from torchvision's VGG16 state dict (its ``classifier.*`` is not
        used) and the package's v0.1 ``vgg.pth``; a ``ValueError`` lists any key or shape problem."""
        net = cls(LPIPSConfig.official())
        features = {k: v for k, v in vgg.items() if k.startswith("features.")}
        load_exact_state_dict(net, {**features, **dict(lin)}, "LPIPS weights")
        return net

    @classmethod
    def from_lpips_package_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> LPIPS:
        """From ``lpips.LPIPS(net='vgg').state_dict()``: ``net.slice<n>.<i>.*`` are VGG16's
        ``features.<i>.*`` (the package keeps the stack's indices); its scaling constants are ours."""
        renamed: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if key.startswith("net.slice"):
                renamed["features." + key.split(".", 2)[2]] = value
            elif key.startswith("lin") and not key.startswith("lins."):  # lins.<k> aliases lin<k>
                renamed[key] = value
        net = cls(LPIPSConfig.official())
        load_exact_state_dict(net, renamed, "lpips package state dict")
        return net


def _unit_channels(x: torch.Tensor) -> torch.Tensor:
    """Divide each pixel's feature vector by its length (plus :data:`NORM_EPS`).

    The squared length is floored at 1e-20 before the square root so an all-zero vector (dead
    ReLUs) has a finite gradient; the value is unchanged for any vector longer than 1e-10."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-20).sqrt() + NORM_EPS)
