"""StylePeople neural renderer: sampled neural texture + uv render → RGB image and alpha at 2× size.

The network is a ResNet-18-style U-Net (equalised-lr convs, BatchNorm, fused leaky ReLU) whose
16-channel output is bilinearly upsampled ×2, refined by four conv blocks and split into an RGB
head (tanh) and a segmentation head (sigmoid). Module and parameter names follow the official
``generative_model.pth`` ``["r"]`` state dict, so a converted checkpoint loads 1:1.

Equalised learning rate: weights are stored raw and multiplied by ``1/sqrt(fan_in)`` at run time,
exactly like the official checkpoint expects; biases are added unscaled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.nets import SerializableNetwork, load_exact_state_dict, strip_prefix
from avatarcli.nets.stylegan2 import EqualConv2d, FusedLeakyReLU

# The decoder widths are fixed upstream, independent of ngf.
DECODER_CHANNELS = (256, 128, 64, 32, 16)
# Pixels whose uv is at or below this value are background in the uv render.
UV_BACKGROUND = -10.0


@dataclass(frozen=True)
class SPRendererConfig:
    """Sizes of the StylePeople renderer; ``official()`` is the released model."""

    in_channels: int = 18  # 16 sampled neural-texture channels + 2 uv channels
    segm_channels: int = 3  # the segmentation head's width; only channel 0 is used
    ngf: int = 64  # ResNet encoder base width: widths ngf, ngf, 2ngf, 4ngf, 8ngf
    decoder_channels: tuple[int, ...] = DECODER_CHANNELS

    @classmethod
    def official(cls) -> SPRendererConfig:
        return cls()

    @classmethod
    def tiny(cls) -> SPRendererConfig:
        return cls(ngf=8)

    @classmethod
    def from_constructor_args(cls, args: Mapping[str, Any]) -> SPRendererConfig:
        """Build from an upstream ``Renderer(...)`` argument dict (as in a test-vector sidecar)."""
        norm = args.get("normalization", "batch")
        if norm != "batch":
            raise ValueError(f"only normalization='batch' is supported, got {norm!r}")
        return cls(
            in_channels=int(args.get("in_channels", 18)),
            segm_channels=int(args.get("segm_channels", 3)),
            ngf=int(args.get("ngf", 64)),
        )


def conv_bn_act(in_ch: int, out_ch: int) -> nn.Sequential:
    """3×3 conv (no bias) → BatchNorm → biased leaky ReLU; indices 0/1/2 match the checkpoint."""
    return nn.Sequential(
        EqualConv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), FusedLeakyReLU(out_ch)
    )


def bn_act_conv(channels: int, out_ch: int, bias: bool) -> list[nn.Module]:
    """Pre-activation unit used by the output heads: BatchNorm → leaky ReLU → 3×3 conv."""
    return [
        nn.BatchNorm2d(channels),
        FusedLeakyReLU(channels),
        EqualConv2d(channels, out_ch, 3, padding=1, bias=bias),
    ]


class BasicBlock(nn.Module):
    """ResNet basic block; one activation module (one bias) is applied twice, as upstream does."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = FusedLeakyReLU(out_ch)
        self.conv2 = EqualConv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                EqualConv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18 layout; returns the features at /2 (stem), /4, /8, /16 and /32 for the U-Net skips."""

    def __init__(self, in_ch: int, ngf: int):
        super().__init__()
        self.conv1 = EqualConv2d(in_ch, ngf, 7, stride=2, padding=3, bias=False)
        self.norm1 = nn.BatchNorm2d(ngf)
        self.relu = FusedLeakyReLU(ngf)
        widths = (ngf, 2 * ngf, 4 * ngf, 8 * ngf)
        prev = ngf
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2, 2), strict=True), start=1):
            self.add_module(
                f"layer{i}", nn.Sequential(BasicBlock(prev, width, stride), BasicBlock(width, width, 1))
            )
            prev = width
        self.out_channels = (ngf, *widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.norm1(self.conv1(x)))
        features = [stem]
        # The max-pool's border is zero-padded, not -inf-padded as nn.MaxPool2d does: border
        # activations below zero become 0. (Found by matching the upstream test vector.)
        h = F.max_pool2d(F.pad(stem, [1, 1, 1, 1]), kernel_size=3, stride=2)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            h = layer(h)
            features.append(h)
        return features


class DecoderBlock(nn.Module):
    """Nearest ×2 upsampling, concatenation with the encoder skip (if any), two conv blocks."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = conv_bn_act(in_ch + skip_ch, out_ch)
        self.conv2 = conv_bn_act(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...]):
        super().__init__()
        # deepest feature first; the last block has no skip (it returns to input resolution)
        skips = list(reversed(encoder_channels[:-1])) + [0]
        ins = [encoder_channels[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels, strict=True)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        skips: list[torch.Tensor | None] = list(reversed(features[:-1]))
        skips.append(None)
        for block, skip in zip(self.blocks, skips, strict=True):
            x = block(x, skip)
        return x


class SPUnet(nn.Module):
    """Encoder + decoder + a 3×3 output conv; (B,in,H,W) → (B,16,H,W), H and W divisible by 32."""

    def __init__(self, config: SPRendererConfig):
        super().__init__()
        self.encoder = ResNetEncoder(config.in_channels, config.ngf)
        self.decoder = UnetDecoder(self.encoder.out_channels, config.decoder_channels)
        last = config.decoder_channels[-1]
        self.segmentation_head = nn.Sequential(EqualConv2d(last, last, 3, padding=1, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))


class SPRenderOutput(NamedTuple):
    rgb: torch.Tensor  # (B,3,2H,2W) in [-1,1], composited over the background
    segm: torch.Tensor  # (B,1,2H,2W) foreground alpha in [0,1]
    unet_out: torch.Tensor  # (B,16,H,W) U-Net features, for debugging


class SPRenderer(SerializableNetwork, nn.Module):
    """The StylePeople renderer. Call with the texture already sampled at the uv render.

    BatchNorm layers use their running statistics only in eval mode: call ``.eval()`` for inference.
    """

    kind = "sp_renderer"
    config_class = SPRendererConfig

    def __init__(self, config: SPRendererConfig | None = None):
        super().__init__()
        self.config = config or SPRendererConfig.official()
        width = self.config.decoder_channels[-1]
        self.model = SPUnet(self.config)
        self.upsample_convs = nn.Sequential(*(m for _ in range(4) for m in conv_bn_act(width, width)))
        self.rgb_head = nn.Sequential(
            *bn_act_conv(width, width, bias=False),
            *bn_act_conv(width, width, bias=False),
            *bn_act_conv(width, 3, bias=True),
        )
        self.segm_head = nn.Sequential(*bn_act_conv(width, self.config.segm_channels, bias=True))

    def forward(
        self, nrender: torch.Tensor, uv: torch.Tensor, background: torch.Tensor | None = None
    ) -> SPRenderOutput:
        """``nrender`` (B,16,H,W) sampled texture, ``uv`` (B,2,H,W) in [-1,1] with -10 off the body.

        ``background`` (optional, (B|1,3,2H,2W) in [-1,1]) is composited behind the person;
        without it the background is black (-1), as in the official demo scripts.
        """
        if nrender.shape[-2:] != uv.shape[-2:]:
            raise ValueError(f"nrender {tuple(nrender.shape)} and uv {tuple(uv.shape)} differ in size")
        h, w = uv.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"the uv render size must be divisible by 32, got {h}x{w}")
        uv_mask = (uv > UV_BACKGROUND).any(dim=1, keepdim=True).to(nrender.dtype)
        unet_out = self.model(torch.cat([nrender, uv], dim=1))
        up = F.interpolate(unet_out, scale_factor=2.0, mode="bilinear", align_corners=False)
        up = self.upsample_convs(up)
        rgb = torch.tanh(self.rgb_head(up))
        segm = torch.sigmoid(self.segm_head(up))[:, :1]
        uv_mask_up = F.interpolate(uv_mask, size=segm.shape[-2:], mode="nearest")
        alpha = torch.clamp(segm + uv_mask_up, 0.0, 1.0)
        colour = (rgb + 1.0) / 2.0 * alpha
        if background is not None:
            colour = colour + (background + 1.0) / 2.0 * (1.0 - alpha)
        return SPRenderOutput(rgb=colour * 2.0 - 1.0, segm=alpha, unet_out=unet_out)

    def render_texture(
        self, ntexture: torch.Tensor, uv: torch.Tensor, background: torch.Tensor | None = None
    ) -> SPRenderOutput:
        """Sample ``ntexture`` (B,16,T,T) at ``uv`` (bilinear, align_corners=True, zeros off-body), render."""
        nrender = F.grid_sample(ntexture, uv.permute(0, 2, 3, 1), mode="bilinear", align_corners=True)
        return self(nrender, uv, background)

    @classmethod
    def from_stylepeople_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], prefix: str = ""
    ) -> SPRenderer:
        """Build and load from an official ``ckpt["r"]`` state dict; sizes come from the shapes.

        Raises ``ValueError`` naming missing/unexpected keys or shape mismatches.
        """
        sd = strip_prefix(state_dict, prefix)
        net = cls(infer_renderer_config(sd))
        load_exact_state_dict(net, sd, f"StylePeople renderer state dict (prefix {prefix!r})")
        return net


def infer_renderer_config(state_dict: Mapping[str, torch.Tensor]) -> SPRendererConfig:
    """Read the renderer sizes from the shapes of an official ``ckpt["r"]`` state dict."""
    try:
        stem = state_dict["model.encoder.conv1.weight"]
        segm = state_dict["segm_head.2.weight"]
    except KeyError as exc:
        raise ValueError(f"not a StylePeople renderer state dict: missing {exc.args[0]!r}") from None
    decoder = []
    i = 0
    while f"model.decoder.blocks.{i}.conv2.0.weight" in state_dict:
        decoder.append(int(state_dict[f"model.decoder.blocks.{i}.conv2.0.weight"].shape[0]))
        i += 1
    return SPRendererConfig(
        in_channels=int(stem.shape[1]),
        segm_channels=int(segm.shape[0]),
        ngf=int(stem.shape[0]),
        decoder_channels=tuple(decoder) or DECODER_CHANNELS,
    )
