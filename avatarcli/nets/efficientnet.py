"""EfficientNet-b0…b7 (Tan & Le, 2019), written from the paper, keyed like ``efficientnet_pytorch``.

StylePeople's W+ encoder sits on an ``efficientnet_pytorch`` 0.7.0 backbone, so this network keeps
that package's state-dict names (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` …,
``_conv_head``, ``_bn1``, ``_fc``) and its numerical conventions: "same" padding computed once for
a fixed image side (with the package's symmetric rounding, :func:`same_padding`), BatchNorm with
TF's momentum 0.99 (torch momentum 0.01) and eps 1e-3, swish everywhere.

Architecture (paper, Table 1 and §3.3): the b0 stage table below is scaled by a width coefficient
(channels, rounded to multiples of 8) and a depth coefficient (repeats, rounded up); every stage is
a stack of MBConv blocks: optional 1×1 expansion, depthwise k×k conv, squeeze-and-excitation on
a quarter of the block's input channels, 1×1 projection, and a residual when shapes allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: TensorFlow BatchNorm settings of the reference implementation (torch momentum = 1 − 0.99).
BATCH_NORM_MOMENTUM = 0.01
BATCH_NORM_EPS = 1e-3
SE_RATIO = 0.25
CHANNEL_DIVISOR = 8
DROP_CONNECT_RATE = 0.2


class StageSpec(NamedTuple):
    """One row of the paper's b0 table: ``repeats`` MBConv-``expand`` blocks, k×k, first with ``stride``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


#: EfficientNet-b0 (paper Table 1): stem conv 3×3/2 to 32, these seven stages, head 1×1 to 1280.
B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)
B0_STEM_CHANNELS = 32
B0_HEAD_CHANNELS = 1280


class Scaling(NamedTuple):
    """Compound-scaling coefficients of one variant: width, depth, native resolution, dropout."""

    width: float
    depth: float
    resolution: int
    dropout: float


SCALING: dict[str, Scaling] = {
    "b0": Scaling(1.0, 1.0, 224, 0.2),
    "b1": Scaling(1.0, 1.1, 240, 0.2),
    "b2": Scaling(1.1, 1.2, 260, 0.3),
    "b3": Scaling(1.2, 1.4, 300, 0.3),
    "b4": Scaling(1.4, 1.8, 380, 0.4),
    "b5": Scaling(1.6, 2.2, 456, 0.4),
    "b6": Scaling(1.8, 2.6, 528, 0.5),
    "b7": Scaling(2.0, 3.1, 600, 0.5),
}


def round_filters(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Scale a channel count by ``width`` and round to the nearest multiple of ``divisor``,
    never dropping more than 10 % below the scaled value."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count by ``depth``, rounding up."""
    return int(math.ceil(depth * repeats))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding (before, after) of one axis of side ``size``, as ``efficientnet_pytorch`` computes it.

    TF "same" needs ``total`` pixels so that the output is ``ceil(size/stride)``; TF puts the odd
    one after. The reference package instead pads ``ceil(total/2)`` on *both* sides (one pixel
    more when ``total`` is odd). The output size is unchanged, the sampling grid shifts by one
    pixel; the released weights were trained this way, so we do the same.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    side = total - total // 2
    return side, side


def conv_output_size(size: int, stride: int) -> int:
    return math.ceil(size / stride)


class StaticSameConv2d(nn.Conv2d):
    """A Conv2d whose "same" zero padding (:func:`same_padding`) is fixed for an input side ``image_size``.

    As in the reference, inputs of another side get the same padding (only alignment changes).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, image_size: int,
                 stride: int = 1, groups: int = 1, bias: bool = False) -> None:  # fmt: skip
        super().__init__(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=bias)
        before, after = same_padding(image_size, kernel, stride)
        self.static_padding = (before, after, before, after)  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.static_padding):
            x = F.pad(x, self.static_padding)
        return super().forward(x)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BATCH_NORM_MOMENTUM, eps=BATCH_NORM_EPS)


class MBConvBlock(nn.Module):
    """Inverted-residual block: expand 1×1 → depthwise k×k → squeeze-excite → project 1×1 (+ skip)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int,
                 image_size: int) -> None:  # fmt: skip
        super().__init__()
        hidden = in_channels * expand
        self.stride = stride
        self.has_residual = stride == 1 and in_channels == out_channels
        if expand != 1:
            self._expand_conv = StaticSameConv2d(in_channels, hidden, 1, image_size=image_size)
            self._bn0 = batch_norm(hidden)
        else:
            self._expand_conv = None
        self._depthwise_conv = StaticSameConv2d(
            hidden, hidden, kernel, image_size=image_size, stride=stride, groups=hidden
        )
        self._bn1 = batch_norm(hidden)
        squeezed = max(1, int(in_channels * SE_RATIO))  # a quarter of the *input* channels
        self._se_reduce = nn.Conv2d(hidden, squeezed, 1)
        self._se_expand = nn.Conv2d(squeezed, hidden, 1)
        self._project_conv = StaticSameConv2d(hidden, out_channels, 1, image_size=image_size)
        self._bn2 = batch_norm(out_channels)

    def forward(self, x: torch.Tensor, drop_connect: float = 0.0) -> torch.Tensor:
        h = x
        if self._expand_conv is not None:
            h = F.silu(self._bn0(self._expand_conv(h)))
        h = F.silu(self._bn1(self._depthwise_conv(h)))
        gate = self._se_expand(F.silu(self._se_reduce(h.mean(dim=(2, 3), keepdim=True))))
        h = torch.sigmoid(gate) * h
        h = self._bn2(self._project_conv(h))
        if self.has_residual:
            if self.training and drop_connect > 0:  # stochastic depth: drop the whole branch per sample
                keep = 1.0 - drop_connect
                mask = torch.floor(keep + torch.rand(h.shape[0], 1, 1, 1, device=h.device, dtype=h.dtype))
                h = h / keep * mask
            h = h + x
        return h


@dataclass(frozen=True)
class EfficientNetConfig:
    """Which variant, and the image side its static "same" padding is computed for.

    ``image_size=None`` means the variant's native resolution (600 for b7), which is what
    ``EfficientNet.from_name`` builds and therefore what StylePeople's encoder used.
    """

    variant: str = "b7"
    image_size: int | None = None
    num_classes: int = 1000

    def __post_init__(self) -> None:
        if self.variant not in SCALING:
            raise ValueError(f"unknown EfficientNet variant {self.variant!r}; known: {', '.join(SCALING)}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")

    @property
    def scaling(self) -> Scaling:
        return SCALING[self.variant]

    @property
    def padding_size(self) -> int:
        return self.image_size or self.scaling.resolution

    def stages(self) -> list[StageSpec]:
        """The b0 table scaled by this variant's width and depth."""
        width, depth = self.scaling.width, self.scaling.depth
        return [
            StageSpec(
                round_repeats(s.repeats, depth),
                s.kernel,
                s.stride,
                s.expand,
                round_filters(s.in_channels, width),
                round_filters(s.out_channels, width),
            )
            for s in B0_STAGES
        ]

    @property
    def head_channels(self) -> int:
        return round_filters(B0_HEAD_CHANNELS, self.scaling.width)

    def endpoint_channels(self) -> list[int]:
        """Channels of :meth:`EfficientNet.extract_endpoints`' outputs, in order (reduction_1…)."""
        stages = self.stages()
        reducing = [i for i, s in enumerate(stages) if s.stride > 1]
        return [stages[i - 1].out_channels for i in reducing] + [self.head_channels]


class EfficientNet(nn.Module):
    """EfficientNet classifier / feature extractor with ``efficientnet_pytorch`` 0.7.0 key names."""

    def __init__(self, config: EfficientNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EfficientNetConfig()
        width = config.scaling.width
        side = config.padding_size
        stem = round_filters(B0_STEM_CHANNELS, width)
        self._conv_stem = StaticSameConv2d(3, stem, 3, image_size=side, stride=2)
        self._bn0 = batch_norm(stem)
        side = conv_output_size(side, 2)
        blocks = []
        for stage in config.stages():
            for i in range(stage.repeats):
                first = i == 0
                blocks.append(
                    MBConvBlock(
                        stage.in_channels if first else stage.out_channels,
                        stage.out_channels,
                        stage.kernel,
                        stage.stride if first else 1,
                        stage.expand,
                        side,
                    )
                )
                if first:
                    side = conv_output_size(side, stage.stride)
        self._blocks = nn.ModuleList(blocks)
        head = config.head_channels
        self._conv_head = StaticSameConv2d(config.stages()[-1].out_channels, head, 1, image_size=side)
        self._bn1 = batch_norm(head)
        self._dropout = nn.Dropout(config.scaling.dropout)
        self._fc = nn.Linear(head, config.num_classes)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self._bn0(self._conv_stem(x)))

    def _drop_connect(self, index: int) -> float:
        """Stochastic-depth rate of block ``index``: grows linearly from 0 (training only)."""
        return DROP_CONNECT_RATE * index / len(self._blocks)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self._bn1(self._conv_head(x)))

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's (B, head_channels, H/32, W/32) features, before pooling."""
        x = self._stem(x)
        for i, block in enumerate(self._blocks):
            x = block(x, self._drop_connect(i))
        return self._head(x)

    def extract_endpoints(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-scale features as ``efficientnet_pytorch`` 0.7.0 returns them.

        ``reduction_k`` is the last feature map before each block that lowers the resolution
        (strides 2, 4, 8, 16 of the input), and the final one is the head's output (stride 32):
        five endpoints in all. (Version 0.7.1 also records the last block's output, which shifts
        the head to ``reduction_6``; StylePeople's encoder expects five.)
        """
        endpoints: dict[str, torch.Tensor] = {}
        x = self._stem(x)
        previous = x
        for i, block in enumerate(self._blocks):
            x = block(x, self._drop_connect(i))
            if x.shape[-2] < previous.shape[-2]:
                endpoints[f"reduction_{len(endpoints) + 1}"] = previous
            previous = x
        endpoints[f"reduction_{len(endpoints) + 1}"] = self._head(x)
        return endpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        features = self.extract_features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(features))
