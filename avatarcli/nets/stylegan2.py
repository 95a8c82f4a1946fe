"""StyleGAN2 building blocks in plain PyTorch, shaped so official checkpoints load key-for-key.

DINAR's encoder and texture generator and StylePeople's generator are built from the same
StyleGAN2 parts. The upstream code needs two CUDA extensions (``upfirdn2d`` and the fused
bias + leaky ReLU); both are written here with ordinary torch ops so everything runs on CPU and
CUDA alike.

Equalised learning rate: weights are stored *raw*, exactly as in the checkpoints, and scaled at
run time by ``lr_mul / sqrt(fan_in)`` (biases by ``lr_mul``). Keeping them raw means an official
state dict loads 1:1 and training behaves like upstream. The bias of a separate
:class:`FusedLeakyReLU` is never scaled.

Sub-module names and ``nn.Sequential`` positions mirror the official key names
(``conv.modulation.weight``, ``activate.bias``, ``convs.1.conv2.0.kernel`` …), so a module's
``state_dict()`` is the checkpoint's sub-dict with its prefix removed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_BLUR_KERNEL: tuple[int, ...] = (1, 3, 3, 1)


def make_blur_kernel(taps: Sequence[int]) -> torch.Tensor:
    """Separable FIR kernel ``outer(k, k)`` normalised to sum 1 (the ``[1,3,3,1]`` binomial blur)."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    if k.ndim != 1:
        raise ValueError("blur kernel taps must be a flat list")
    kernel = k[None, :] * k[:, None]
    return kernel / kernel.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` (true convolution), then decimate.

    ``pad = (before, after)`` applies to both spatial axes; negative values crop. The output side
    is ``(n*up + before + after - kernel_size) // down + 1``.
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    before, after = pad
    if before or after:
        x = F.pad(x, [before, after, before, after])
    weight = torch.flip(kernel, [0, 1]).to(dtype=x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=channels)


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = math.sqrt(2),
) -> torch.Tensor:
    """``leaky_relu(x + bias) * sqrt(2)``: StyleGAN2's activation, gain-corrected to keep unit variance."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU × √2 owning its (unscaled) ``bias``; the conv before it has none."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = math.sqrt(2)) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class Blur(nn.Module):
    """FIR low-pass used around strided and transposed convs to avoid aliasing.

    ``upsample_factor`` multiplies the kernel by factor² so zero-inserted signals keep their gain;
    the stored ``kernel`` buffer already includes it, as in official checkpoints.
    """

    def __init__(self, taps: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """×factor upsampling with the blur kernel (used on the RGB skip path of the generator)."""

    def __init__(self, taps: Sequence[int] = DEFAULT_BLUR_KERNEL, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: raw ``weight`` × ``lr_mul/sqrt(in·k²)`` at run time."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        lr_mul: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = lr_mul / math.sqrt(in_channels * kernel_size**2)
        self.lr_mul = lr_mul
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.conv2d(x, self.weight * self.scale, bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return (
            f"{in_c}, {out_c}, kernel_size={k}, stride={self.stride}, "
            f"padding={self.padding}, lr_mul={self.lr_mul}"
        )


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; optionally followed by the fused leaky ReLU.

    Unlike :class:`FusedLeakyReLU`, the bias here *is* scaled by ``lr_mul`` (also when activated).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activate: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class PixelNorm(nn.Module):
    """Normalise each latent to unit RMS over features (eps 1e-8): the first step of a mapping MLP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv: per-sample weights ``w·s`` (s from an affine of the style), optionally
    demodulated to unit output variance (eps 1e-8); ``upsample`` uses a stride-2 transposed conv
    followed by the blur.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_c, height, width = x.shape
        s = self.modulation(style).reshape(batch, 1, in_c, 1, 1)
        weight = self.scale * self.weight * s  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.reshape(batch, self.out_channels, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, batch * in_c, height, width)
        if self.upsample:
            # Grouped transposed conv wants (in, out/groups, k, k) per group.
            weight = weight.transpose(1, 2).reshape(batch * in_c, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            out = out.reshape(batch, self.out_channels, *out.shape[-2:])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_channels, in_c, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.reshape(batch, self.out_channels, *out.shape[-2:])

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"demodulate={self.demodulate}, upsample={self.upsample}"
        )


class NoiseInjection(nn.Module):
    """Adds ``weight × noise`` (one learned scalar); the caller supplies the noise so runs are seedable."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned constant that starts the synthesis network (``input.input`` in checkpoints)."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv → noise → bias + leaky ReLU: one synthesis layer of the generator."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, demodulate, upsample, blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1×1 modulated conv (no demodulation) to the output channels, plus the upsampled skip image.

    "RGB" is historical: DINAR's texture generator emits 16 neural channels here.
    """

    def __init__(
        self,
        in_channels: int,
        style_dim: int,
        out_channels: int = 3,
        upsample: bool = True,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """[blur →] equalised conv [→ bias + leaky ReLU]; ``downsample`` = blur then stride-2 conv.

    A Sequential so positions match checkpoint keys: with downsampling ``0.kernel``, ``1.weight``,
    ``2.bias``; without, ``0.weight``, ``1.bias``. With an activation the bias lives in the
    activation (unscaled by ``lr_mul``); without one the conv owns it (scaled).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        bias: bool = True,
        activate: bool = True,
        lr_mul: float = 1.0,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                bias=bias and not activate,
                lr_mul=lr_mul,
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Discriminator-style residual block halving resolution: (conv3 → blurred stride-2 conv3) plus
    a blurred stride-2 1×1 skip without bias, summed and divided by √2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        lr_mul: float = 1.0,
    ) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel, lr_mul=lr_mul)
        self.conv2 = ConvLayer(
            in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel, lr_mul=lr_mul
        )
        self.skip = ConvLayer(
            in_channels,
            out_channels,
            1,
            downsample=True,
            blur_kernel=blur_kernel,
            bias=False,
            activate=False,
            lr_mul=lr_mul,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def stylegan_channels(resolution: int, channel_multiplier: float, base: int = 128) -> int:
    """DINAR's width per resolution: ``base·m`` up to 64², then halving with each doubling.

    ``channel_multiplier`` may be fractional (test configs); the width is ``int(K·m)`` with
    K = 128, 64, 32, … as upstream. Real DINAR (m=2): 256 up to 64², 128 at 128², 64 at 256².
    """
    k = base if resolution <= 64 else base * 64 // resolution
    width = int(k * channel_multiplier)
    if width < 1:
        raise ValueError(f"channel_multiplier {channel_multiplier} gives no channels at {resolution}²")
    return width


class SynthesisLayout:
    """Layer bookkeeping of a StyleGAN2 synthesis network, shared by the DINAR and StylePeople
    generator configs (a mixin: the config provides ``synthesis_size`` and ``channel_multiplier``).
    """

    synthesis_size: int
    channel_multiplier: float

    @property
    def log_size(self) -> int:
        return int(math.log2(self.synthesis_size))

    @property
    def num_noise_layers(self) -> int:
        """One noise map per StyledConv: conv1 plus two per doubling (13 for 256²)."""
        return (self.log_size - 2) * 2 + 1

    @property
    def n_latent(self) -> int:
        """Style inputs consumed (14 for 256²); a W+ latent has this many rows."""
        return self.log_size * 2 - 2

    def noise_resolution(self, layer: int) -> int:
        """Side of noise map ``layer``: 4 for conv1, then 8, 8, 16, 16, …"""
        return 2 ** ((layer + 5) // 2)

    def width(self, resolution: int) -> int:
        return stylegan_channels(resolution, self.channel_multiplier)


class NoiseBuffers(nn.Module):
    """Fixed noise maps ``noise_0 …`` kept in checkpoints (used with ``noise_mode="buffers"``)."""

    def __init__(self, layout: SynthesisLayout) -> None:
        super().__init__()
        for layer in range(layout.num_noise_layers):
            side = layout.noise_resolution(layer)
            self.register_buffer(f"noise_{layer}", torch.randn(1, 1, side, side))

    def get(self, layer: int) -> torch.Tensor:
        return getattr(self, f"noise_{layer}")
