"""DINAR's VQ autoencoder: compresses a 21-channel UV texture to a 6-channel latent and back.

The diffusion inpainting runs in this latent space. The network is a taming-style VQGAN with
DINAR's changes (GroupNorm with 16 groups, LeakyReLU(0.01) instead of swish, a single-head
attention in both mid blocks, and small BatchNorm heads that re-process the RGB and mask
channels of the decoder output). Module and parameter names follow the official checkpoint
(``first_stage.compress_branch.*``) so its state dict loads without renaming.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.errors import UserError
from avatarcli.nets import SerializableNetwork
from avatarcli.nets.dinar_checkpoint import load_strict, select_prefixed

VQ_PREFIX = "first_stage.compress_branch."
VQ_PREFIX_ALIAS = "first_stage.vq_branch."

# Channel layout of the 21-channel DINAR texture (fact sheet §1.9).
RGB_CHANNELS = slice(16, 19)
MASK_CHANNELS = slice(19, 21)


@dataclass(frozen=True)
class DinarVQConfig:
    """Sizes of the VQ autoencoder; ``official()`` matches the released checkpoint."""

    in_channels: int = 21
    out_channels: int = 21
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 6
    embed_dim: int = 6
    n_embed: int = 8192
    norm_groups: int = 16

    @classmethod
    def official(cls) -> DinarVQConfig:
        return cls()

    @classmethod
    def tiny(cls) -> DinarVQConfig:
        """The size of the shared test vector: same structure, 4x narrower."""
        return cls(base_channels=16)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.01)


class ResnetBlock(nn.Module):
    """norm → act → conv, twice, plus a 1×1 shortcut when the width changes."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = _norm(out_ch, groups)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_act(self.norm1(x)))
        h = self.conv2(_act(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1 projections (the mid block's global mixer)."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(ch, groups)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)  # (b, n, c)
        k = self.k(h).reshape(b, c, hh * ww)  # (b, c, n)
        v = self.v(h).reshape(b, c, hh * ww)  # (b, c, n)
        weights = torch.softmax(torch.bmm(q, k) * (c**-0.5), dim=2)  # (b, n_query, n_key)
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3×3 conv (halves the size exactly)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 conv."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(ch, ch, groups)
        self.attn_1 = AttnBlock(ch, groups)
        self.block_2 = ResnetBlock(ch, ch, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution level: a list of ResNet blocks and an optional resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()


class VQEncoder(nn.Module):
    def __init__(self, cfg: DinarVQConfig) -> None:
        super().__init__()
        g, ch = cfg.norm_groups, cfg.base_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(cfg.channel_mult):
            stage = _Level()
            block_out = ch * mult
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, g))
                block_in = block_out
            if level != len(cfg.channel_mult) - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = _Mid(block_in, g)
        self.norm_out = _norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(_act(self.norm_out(h)))


class VQDecoder(nn.Module):
    def __init__(self, cfg: DinarVQConfig) -> None:
        super().__init__()
        g, ch = cfg.norm_groups, cfg.base_channels
        block_in = ch * cfg.channel_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, g)
        levels: list[_Level] = []
        for level in reversed(range(len(cfg.channel_mult))):
            stage = _Level()
            block_out = ch * cfg.channel_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, g))
                block_in = block_out
            if level != 0:
                stage.upsample = Upsample(block_in)
            levels.insert(0, stage)  # stored low-to-high index like the checkpoint
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, cfg.out_channels, 3, padding=1)
        # Heads that re-process the RGB (16-18) and mask (19-20) channels of the output.
        self.rgb_proc = nn.Sequential(nn.BatchNorm2d(3), nn.LeakyReLU(0.01), nn.Conv2d(3, 3, 3, padding=1))
        self.segm_proc = nn.Sequential(nn.BatchNorm2d(2), nn.LeakyReLU(0.01), nn.Conv2d(2, 2, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        h = self.conv_out(_act(self.norm_out(h)))
        rgb = self.rgb_proc(h[:, RGB_CHANNELS])
        masks = self.segm_proc(h[:, MASK_CHANNELS])
        return torch.cat([h[:, : RGB_CHANNELS.start], rgb, masks, h[:, MASK_CHANNELS.stop :]], dim=1)


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry lookup (squared L2), as used only at decode time in DINAR."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1)[None, :] - 2.0 * flat @ codes.t()
        indices = dist.argmin(dim=1)
        zq = self.embedding(indices).reshape(b, h, w, c).permute(0, 3, 1, 2)
        # Straight-through form (z + (zq - z)) so values match upstream to the last bit and
        # gradients reach the encoder when fine-tuning.
        zq = z + (zq - z).detach()
        return zq.contiguous(), indices


class DinarVQ(SerializableNetwork, nn.Module):
    """encode → (continuous latent) → quantize → decode, with DINAR's checkpoint names."""

    kind = "dinar_vq"
    config_class = DinarVQConfig

    def __init__(self, cfg: DinarVQConfig | None = None) -> None:
        super().__init__()
        self.config = cfg or DinarVQConfig.official()
        self.encoder = VQEncoder(self.config)
        self.decoder = VQDecoder(self.config)
        self.quantize = VectorQuantizer(self.config.n_embed, self.config.embed_dim)
        self.quant_conv = nn.Conv2d(self.config.z_channels, self.config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(self.config.embed_dim, self.config.z_channels, 1)

    def encode(self, texture: torch.Tensor) -> torch.Tensor:
        """(B,21,T,T) texture → (B,6,T/4,T/4) pre-quantisation latent (what DINAR diffuses)."""
        return self.quant_conv(self.encoder(texture))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode an *unquantised* latent; it is snapped to the codebook first, as upstream."""
        zq, _ = self.quantize(z)
        return self.decoder(self.post_quant_conv(zq))

    def forward(self, texture: torch.Tensor) -> torch.Tensor:
        """Round trip; ``self.quantize(z)`` alone gives (zq, indices), indices in (b, h, w) order."""
        return self.decode(self.encode(texture))

    @classmethod
    def from_dinar_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], prefix: str = VQ_PREFIX
    ) -> DinarVQ:
        """Build from DINAR checkpoint tensors; sizes are read from the shapes.

        ``state_dict`` may hold the whole Lightning state dict (other prefixes are ignored);
        the older ``first_stage.vq_branch.`` naming is accepted for the default prefix.
        """
        sub = select_prefixed(state_dict, prefix)
        if not sub and prefix == VQ_PREFIX:
            sub = select_prefixed(state_dict, VQ_PREFIX_ALIAS)
        if not sub:
            raise UserError(f"no VQ autoencoder weights (keys starting with {prefix!r}) in this state dict")
        cfg = _config_from_shapes(sub)
        net = cls(cfg)
        load_strict(net, sub, what="DINAR VQ autoencoder")
        return net.eval()


def _config_from_shapes(sub: Mapping[str, torch.Tensor]) -> DinarVQConfig:
    try:
        base = sub["encoder.conv_in.weight"].shape[0]
        in_ch = sub["encoder.conv_in.weight"].shape[1]
        out_ch = sub["decoder.conv_out.weight"].shape[0]
        z_ch = sub["encoder.conv_out.weight"].shape[0]
        n_embed, embed_dim = sub["quantize.embedding.weight"].shape
    except KeyError as exc:
        raise UserError(f"DINAR VQ autoencoder weights lack {exc.args[0]}") from None
    levels = sorted({int(k.split(".")[2]) for k in sub if k.startswith("encoder.down.")})
    mult = tuple(sub[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // base for i in levels)
    n_blocks = len({k.split(".")[4] for k in sub if k.startswith("encoder.down.0.block.")})
    groups = DinarVQConfig().norm_groups
    return DinarVQConfig(
        in_channels=in_ch,
        out_channels=out_ch,
        base_channels=base,
        channel_mult=mult,
        num_res_blocks=n_blocks,
        z_channels=z_ch,
        embed_dim=embed_dim,
        n_embed=n_embed,
        norm_groups=groups,
    )
