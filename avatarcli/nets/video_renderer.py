"""A small U-Net neural renderer trained from scratch per person (no pretrained weights needed).

StylePeople §3.2 fits a neural texture and a renderer jointly to the frames of one person. Its
official renderer (14 M parameters) is far too slow to train on a CPU, so video avatars use this
compact renderer instead:

* input per pixel: the sampled neural texture (C channels, its first 3 initialised with the RGB
  texture), the uv coordinates (2), the body mask (1) and, with ``pose_channels="normals"``,
  the camera-space surface normal (3) — D²G-Net-style pose conditioning that lets the renderer
  model pose- and view-dependent shading;
* a U-Net (strided-conv encoder, bilinear-upsampling decoder with skips, LeakyReLU, no norm
  layers since batches are tiny);
* output: an RGB **residual** added to the first 3 texture channels and an alpha logit added
  to a body-mask prior. The head starts at zero, so an untrained renderer reproduces the RGB
  texture path exactly and training can only move away from it where the frames say so;
* with ``view_colour``, the first 3 channels are a learned correction on top of a per-pixel
  colour the caller supplies — the avatar's view-dependent colour for this view
  (:mod:`avatarcli.texture.view_dependent`) — instead of a colour of their own.

The config is plain data (:meth:`VideoRendererConfig.as_dict`) and is stored in the avatar file
together with the state dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

POSE_CHANNELS = {"none": 0, "normals": 3}
#: alpha logit of the body-mask prior: sigmoid(±2) ≈ 0.88 / 0.12 (weak enough to learn hair and clothes)
MASK_PRIOR_LOGIT = 2.0


@dataclass
class VideoRendererConfig:
    texture_channels: int = 8
    pose_channels: str = "none"  # "none" | "normals"
    width: int = 24  # channels of the first level; doubled per level
    depth: int = 3  # number of ×2 downsamplings
    view_colour: bool = False  # the colour channels add to a view-dependent colour given per frame

    def __post_init__(self) -> None:
        if self.pose_channels not in POSE_CHANNELS:
            raise ValueError(f"pose_channels must be one of {', '.join(POSE_CHANNELS)}")
        if self.texture_channels < 3:
            raise ValueError("texture_channels must be ≥ 3 (the first three hold colour)")
        if self.width < 1 or self.depth < 0:
            raise ValueError("width must be ≥ 1 and depth ≥ 0")

    @property
    def in_channels(self) -> int:
        return self.texture_channels + 2 + 1 + POSE_CHANNELS[self.pose_channels]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VideoRendererConfig:
        return cls(
            **{
                k: data[k]
                for k in ("texture_channels", "pose_channels", "width", "depth", "view_colour")
                if k in data
            }
        )


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class VideoRenderer(nn.Module):
    """Features (B, in_channels, H, W) → RGB (B, 3, H, W) and alpha logits (B, 1, H, W)."""

    def __init__(self, config: VideoRendererConfig | None = None) -> None:
        super().__init__()
        self.config = config or VideoRendererConfig()
        c = self.config
        widths = [c.width * 2**i for i in range(c.depth + 1)]
        self.stem = nn.Sequential(_conv(c.in_channels, widths[0]), _conv(widths[0], widths[0]))
        self.down = nn.ModuleList(
            nn.Sequential(_conv(widths[i], widths[i + 1], stride=2), _conv(widths[i + 1], widths[i + 1]))
            for i in range(c.depth)
        )
        self.up = nn.ModuleList(
            nn.Sequential(_conv(widths[i + 1] + widths[i], widths[i]), _conv(widths[i], widths[i]))
            for i in reversed(range(c.depth))
        )
        self.head = nn.Conv2d(widths[0], 4, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        features: torch.Tensor,
        uv: torch.Tensor,
        mask: torch.Tensor,
        pose: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` (B, C, H, W), ``uv`` (B, 2, H, W) in [0, 1], ``mask`` (B, 1, H, W) {0, 1},
        ``pose`` (B, 3, H, W) camera-space normals when the config asks for them."""
        parts = [features, uv * 2.0 - 1.0, mask]
        if POSE_CHANNELS[self.config.pose_channels]:
            if pose is None:
                raise ValueError(f"this renderer expects {self.config.pose_channels} as input")
            parts.append(pose)
        x = torch.cat(parts, 1)
        height, width = x.shape[-2:]
        multiple = 2**self.config.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        out = self.head(y)[..., :height, :width]
        rgb = features[:, :3] + out[:, :3]
        alpha_logit = out[:, 3:] + MASK_PRIOR_LOGIT * (2.0 * mask - 1.0)
        return rgb, alpha_logit


def renderer_record(renderer: VideoRenderer, kind: str) -> dict:
    """Plain-data form for the avatar file: ``{"kind", "config", "state_dict"}``."""
    state = {k: v.detach().cpu().clone() for k, v in renderer.state_dict().items()}
    return {"kind": kind, "config": renderer.config.as_dict(), "state_dict": state}


def renderer_from_record(record: dict) -> VideoRenderer:
    """Rebuild a renderer from :func:`renderer_record`'s output (strict: every tensor must match)."""
    renderer = VideoRenderer(VideoRendererConfig.from_dict(dict(record["config"])))
    renderer.load_state_dict({k: v.float() for k, v in record["state_dict"].items()})
    return renderer.eval()
