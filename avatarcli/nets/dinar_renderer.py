"""DINAR's neural renderer: 21-channel texture + uv render → RGB image and foreground mask.

The texture is pre-convolved in UV space, sampled at each pixel's UV coordinate, stacked with
small convolutional encodings of the uv render and its mask (21 + 8 + 4 = 33 channels), and
translated by a pix2pix-style U-Net into 16 feature channels, from which two small heads predict
RGB (tanh) and a soft mask (sigmoid). The mask is "hardened" by adding the body's rasterised
silhouette, then RGB is composited over a background.

All convs use equalised learning rate with ``lr_mul = 1``; BatchNorm always runs on its
running statistics at inference (call ``.eval()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.nets import SerializableNetwork, load_exact_state_dict, require_keys, strip_prefix
from avatarcli.nets.stylegan2 import EqualConv2d, FusedLeakyReLU

#: Slope and knee of DINAR's "exponential transparency" alpha used for animation videos.
_TRANSPARENCY_RISE = 20.0
_TRANSPARENCY_KNEE = 0.7
_TRANSPARENCY_SATURATION = 70.0


@dataclass(frozen=True)
class DinarRendererConfig:
    """Sizes and compositing options. ``official()`` is released DINAR (ngf 64, 19.0 M parameters).

    ``segm_threshold`` 0 is the training/evaluation compositing (alpha = hardened mask); 0.5 with
    ``exponential_transparency`` is what DINAR's video maker uses.
    """

    ntex_channels: int = 21
    uv_channels: int = 8
    uv_mask_channels: int = 4
    ngf: int = 64
    n_downsampling: int = 3
    n_blocks: int = 3
    unet_out_channels: int = 16
    rgb_head_depth: int = 2
    segm_head_depth: int = 4
    head_out_channels: int = 3
    segm_channels: int = 1
    hard_segm: bool = True
    segm_threshold: float = 0.0
    exponential_transparency: bool = True

    @classmethod
    def official(cls) -> DinarRendererConfig:
        return cls()

    @classmethod
    def tiny(cls) -> DinarRendererConfig:
        """ngf 4, two downsamplings, one residual block: for fast tests with random weights."""
        return cls(ngf=4, n_downsampling=2, n_blocks=1)

    @classmethod
    def from_upstream_args(cls, args: Mapping[str, Any]) -> DinarRendererConfig:
        """Config from upstream ``Renderer`` constructor arguments (a sidecar's ``constructor_args``)."""
        if args.get("normalization", "batch") != "batch":
            raise ValueError("only normalization='batch' (DINAR's) is supported")
        if args.get("replicate_pad", False):
            raise ValueError("replicate_pad=True is not used by DINAR and not supported")
        return cls(
            ntex_channels=int(args.get("in_channels_ntex", 21)),
            segm_channels=int(args.get("segm_channels", 1)),
            ngf=int(args.get("ngf", 64)),
            n_downsampling=int(args.get("n_downsampling", 3)),
            n_blocks=int(args.get("n_blocks", 3)),
            hard_segm=bool(args.get("hardsegm", True)),
            segm_threshold=float(args.get("segm_threshold", 0.0)),
            exponential_transparency=bool(args.get("exponential_transparency", True)),
        )


class DinarRenderOutput(NamedTuple):
    rgb: torch.Tensor
    """(B,3,H,W) composited image in [-1,1]."""
    segm: torch.Tensor
    """(B,segm_channels,H,W) foreground alpha in [0,1] used for compositing."""
    features: torch.Tensor
    """(B,16,H,W) U-Net output, before the heads."""


def _conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 1,
    bias: bool = False,
) -> list[nn.Module]:
    """The renderer's basic unit: equalised conv → BatchNorm → bias + leaky ReLU (×√2)."""
    return [
        EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias),
        nn.BatchNorm2d(out_channels),
        FusedLeakyReLU(out_channels),
    ]


def _bn_act_conv_head(channels: int, depth: int, out_channels: int) -> nn.Sequential:
    """``depth`` × [BN, act, conv 3×3 no bias], then BN, act, conv 3×3 to ``out_channels`` with bias."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [
            nn.BatchNorm2d(channels),
            FusedLeakyReLU(channels),
            EqualConv2d(channels, channels, 3, padding=1, bias=False),
        ]
    layers += [
        nn.BatchNorm2d(channels),
        FusedLeakyReLU(channels),
        EqualConv2d(channels, out_channels, 3, padding=1),
    ]
    return nn.Sequential(*layers)


class _ResidualBlock(nn.Module):
    """x + [reflect-pad, conv, BN, act, reflect-pad, conv, BN](x) at constant width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            *_conv_bn_act(channels, channels, padding=0, bias=True),
            nn.ReflectionPad2d(1),
            EqualConv2d(channels, channels, 3, bias=True),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class SkipUNet(nn.Module):
    """pix2pix-style U-Net: 7×7 stem, stride-2 downsamplings (each kept as a skip), residual
    blocks, then per level concat(x, skip) → bilinear ×2 → conv, and a 7×7 output conv.
    """

    def __init__(
        self, in_channels: int, out_channels: int, ngf: int, n_downsampling: int, n_blocks: int
    ) -> None:
        super().__init__()
        self.start = nn.Sequential(
            nn.ReflectionPad2d(3), *_conv_bn_act(in_channels, ngf, 7, padding=0, bias=True)
        )
        self.downsamples = nn.ModuleList(
            nn.Sequential(*_conv_bn_act(ngf * 2**i, ngf * 2 ** (i + 1), stride=2, bias=True))
            for i in range(n_downsampling)
        )
        deepest = ngf * 2**n_downsampling
        self.resblocks = nn.ModuleList(_ResidualBlock(deepest) for _ in range(n_blocks))
        self.upsamples = nn.ModuleList()
        for level in range(n_downsampling, 0, -1):
            width = ngf * 2**level
            self.upsamples.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    *_conv_bn_act(2 * width, width // 2, bias=True),
                )
            )
        self.final = nn.Sequential(nn.ReflectionPad2d(3), EqualConv2d(ngf, out_channels, 7, bias=True))
        self.n_downsampling = n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.n_downsampling
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"render size {tuple(x.shape[-2:])} must be divisible by {factor}")
        x = self.start(x)
        skips = []
        for down in self.downsamples:
            x = down(x)
            skips.append(x)
        for block in self.resblocks:
            x = block(x)
        for up in self.upsamples:
            x = up(torch.cat([x, skips.pop()], dim=1))
        return self.final(x)


class DinarRenderer(SerializableNetwork, nn.Module):
    """Texture pre-conv → UV sampling (+ uv / uv-mask encodings) → U-Net → rgb/segm heads → compositing."""

    kind = "dinar_renderer"
    config_class = DinarRendererConfig

    def __init__(self, config: DinarRendererConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DinarRendererConfig.official()
        c_tex, c_uv, c_mask = config.ntex_channels, config.uv_channels, config.uv_mask_channels
        self.ntex_preproc = nn.Sequential(*_conv_bn_act(c_tex, c_tex), *_conv_bn_act(c_tex, c_tex))
        self.uv_preproc = nn.Sequential(*_conv_bn_act(2, c_uv), *_conv_bn_act(c_uv, c_uv))
        self.uv_mask_preproc = nn.Sequential(*_conv_bn_act(1, c_mask), *_conv_bn_act(c_mask, c_mask))
        self.model = SkipUNet(
            c_tex + c_uv + c_mask,
            config.unet_out_channels,
            config.ngf,
            config.n_downsampling,
            config.n_blocks,
        )
        feat = config.unet_out_channels
        self.rgb_head = _bn_act_conv_head(feat, config.rgb_head_depth, config.head_out_channels)
        self.segm_head = _bn_act_conv_head(feat, config.segm_head_depth, config.head_out_channels)

    def sample_texture(self, ntexture: torch.Tensor, uv: torch.Tensor, uv_mask: torch.Tensor) -> torch.Tensor:
        """Pre-convolved texture read at each pixel's UV (bilinear, align_corners=True: texel u·(T−1)).

        ``uv`` (B,2,H,W) holds 2·uv−1 (channel 0 = u → columns, 1 = v → rows, v=0 top); pixels off
        the body carry any value outside [-1,1] and are zeroed by ``uv_mask``.
        """
        grid = uv.permute(0, 2, 3, 1)
        sampled = F.grid_sample(
            self.ntex_preproc(ntexture), grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return sampled * uv_mask

    def forward(
        self,
        ntexture: torch.Tensor,
        uv: torch.Tensor,
        uv_mask: torch.Tensor,
        background: torch.Tensor | None = None,
        *,
        segm_threshold: float | None = None,
    ) -> DinarRenderOutput:
        """Render (B,21,T,T) texture at uv render (B,2,H,W) with mask (B,1,H,W).

        ``background`` in [0,1], (B,3,H,W) or broadcastable; default white, as upstream.
        ``segm_threshold`` overrides the config's (e.g. 0.5 for DINAR's video look).
        """
        cfg = self.config
        x = torch.cat(
            [self.sample_texture(ntexture, uv, uv_mask), self.uv_preproc(uv), self.uv_mask_preproc(uv_mask)],
            dim=1,
        )
        features = self.model(x)
        rgb = torch.tanh(self.rgb_head(features))
        segm = torch.sigmoid(self.segm_head(features))[:, : cfg.segm_channels]
        alpha = self.composite_alpha(
            segm, uv_mask, cfg.segm_threshold if segm_threshold is None else segm_threshold
        )
        if background is None:
            background = torch.ones_like(rgb)
        image = (rgb + 1) / 2 * alpha + background * (1 - alpha)
        return DinarRenderOutput(rgb=image * 2 - 1, segm=alpha, features=features)

    def composite_alpha(self, segm: torch.Tensor, uv_mask: torch.Tensor, threshold: float) -> torch.Tensor:
        """Foreground alpha from the predicted mask.

        Hard segmentation: s = clip(segm + uv_mask, 0, 1), so the body itself is always opaque.
        With threshold t > 0 and exponential transparency (DINAR's video maker):
        ``clip((1 − e^{20(t − s)}) · (1 + e^{70(s − 0.7)}), 0, 1)`` — transparent below t,
        opaque from ≈0.7 up. Without exponential transparency: the binary ``s > t``
        (vectors cover only the exponential form).
        """
        cfg = self.config
        s = (segm + uv_mask).clamp(0, 1) if cfg.hard_segm else segm
        if threshold <= 0:
            return s
        if cfg.exponential_transparency:
            rise = 1 - torch.exp((threshold - s) * _TRANSPARENCY_RISE)
            saturate = 1 + torch.exp((s - _TRANSPARENCY_KNEE) * _TRANSPARENCY_SATURATION)
            return (rise * saturate).clamp(0, 1)
        return (s > threshold).to(s.dtype)

    @classmethod
    def from_dinar_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        prefix: str = "first_stage.renderer.",
        **options: Any,
    ) -> DinarRenderer:
        """Build and load from an official checkpoint's ``state_dict``; sizes come from the shapes.

        ``options`` set what shapes cannot tell (``hard_segm``, ``segm_threshold``,
        ``exponential_transparency``, ``segm_channels``); defaults are DINAR's.
        Raises ``ValueError`` naming missing/unexpected keys or shape mismatches.
        """
        sd = strip_prefix(state_dict, prefix)
        required = [
            "ntex_preproc.0.weight",
            "uv_preproc.0.weight",
            "uv_mask_preproc.0.weight",
            "model.start.1.weight",
            "model.final.1.weight",
            "rgb_head.0.weight",
            "segm_head.0.weight",
        ]
        require_keys(sd, required, cls, prefix)

        def count(group: str) -> int:
            return len({k.split(".")[2] for k in sd if k.startswith(f"model.{group}.")})

        def head_depth(head: str) -> int:
            n_convs = sum(1 for k, v in sd.items() if k.startswith(f"{head}.") and v.ndim == 4)
            return n_convs - 1

        last_rgb_conv = f"rgb_head.{3 * head_depth('rgb_head') + 2}.weight"
        require_keys(sd, [last_rgb_conv], cls, prefix)
        config = DinarRendererConfig(
            ntex_channels=sd["ntex_preproc.0.weight"].shape[0],
            uv_channels=sd["uv_preproc.0.weight"].shape[0],
            uv_mask_channels=sd["uv_mask_preproc.0.weight"].shape[0],
            ngf=sd["model.start.1.weight"].shape[0],
            n_downsampling=count("downsamples"),
            n_blocks=count("resblocks"),
            unet_out_channels=sd["model.final.1.weight"].shape[0],
            rgb_head_depth=head_depth("rgb_head"),
            segm_head_depth=head_depth("segm_head"),
            head_out_channels=sd[last_rgb_conv].shape[0],
            **options,
        )
        net = cls(config)
        load_exact_state_dict(net, sd, f"DINAR renderer state dict (prefix {prefix!r})")
        return net
