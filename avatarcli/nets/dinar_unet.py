"""DINAR's diffusion UNet: predicts the noise in a 6-channel VQ latent, conditioned by concatenation.

Input is 13 channels: the noisy latent x_t (6), the latent of the partial texture (6) and the
texture mask (1). The structure is the latent-diffusion "openai" UNet with DINAR's settings
(GroupNorm with 8 groups computed in float32, ResBlocks that resample, legacy multi-head
attention) and one quirk that the trained weights depend on: two small convolutions overwrite
input channels 8–10 and 11–12 before the first layer. Parameter names follow the checkpoint's
``model.*`` keys; the EMA copy (``model_ema.*``, dots removed) is what inference uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.errors import UserError
from avatarcli.nets import SerializableNetwork
from avatarcli.nets.dinar_checkpoint import load_strict, select_prefixed

UNET_PREFIX = "model."
UNET_EMA_PREFIX = "model_ema."
EMA_EXTRA_KEYS = ("decay", "num_updates")


@dataclass(frozen=True)
class DinarUNetConfig:
    """Sizes of the UNet; ``official()`` matches the released checkpoint (387 M parameters)."""

    in_channels: int = 13
    out_channels: int = 6
    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8, 4, 2)  # as downsample factors
    num_heads: int = 8
    norm_groups: int = 8

    @classmethod
    def official(cls) -> DinarUNetConfig:
        return cls()

    @classmethod
    def tiny(cls) -> DinarUNetConfig:
        """The size of the shared test vector (model_channels 8)."""
        return cls(model_channels=8)

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the activation dtype (stable under fp16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding laid out [cos(t·f_i) | sin(t·f_i)], f_i = max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class ResBlock(nn.Module):
    """Time-conditioned residual block; with ``up``/``down`` it also resamples (nearest / avg-pool)."""

    def __init__(
        self,
        channels: int,
        emb_dim: int,
        out_channels: int,
        groups: int,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.resample = "up" if up else "down" if down else None
        self.in_layers = nn.Sequential(
            GroupNorm32(groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        norm, act, conv = self.in_layers
        h = conv(self._resample(act(norm(x))))
        x = self._resample(x)
        h = h + self.emb_layers(emb).type(h.dtype)[..., None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, with the "legacy" per-head q|k|v layout."""

    def __init__(self, channels: int, num_heads: int, groups: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        length = qkv.shape[-1]
        head_dim = c // self.num_heads
        q, k, v = qkv.reshape(b * self.num_heads, 3 * head_dim, length).split(head_dim, dim=1)
        scale = 1.0 / math.sqrt(math.sqrt(head_dim))  # split between q and k for fp16 headroom
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        out = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, length)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)


class TimestepSequential(nn.Sequential):
    """A Sequential whose ResBlocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock | AttentionBlock) else layer(x)
        return x


class DinarUNet(SerializableNetwork, nn.Module):
    """eps = UNet(x_t, t, cond) with cond = concat(VQ latent of the partial texture, mask)."""

    kind = "dinar_unet"
    config_class = DinarUNetConfig

    def __init__(self, cfg: DinarUNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = cfg or DinarUNetConfig.official()
        mc, g, emb_dim = cfg.model_channels, cfg.norm_groups, cfg.time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # The quirk: these act on input channels [-5:-2] and [-2:] (see module docstring).
        self.preproc_rgb = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1))
        self.preproc_segm = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1))

        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, g)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg.num_heads, g))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(ResBlock(ch, emb_dim, ch, g, down=True)))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = TimestepSequential(
            ResBlock(ch, emb_dim, ch, g), AttentionBlock(ch, cfg.num_heads, g), ResBlock(ch, emb_dim, ch, g)
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mc * mult, g)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg.num_heads, g))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, ch, g, up=True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(g, ch), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1))

    def forward(self, x_t: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_t (B,6,L,L), timesteps (B,) int, cond (B,7,L,L) → eps (B,6,L,L)."""
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x_t.shape[0])
        compute_dtype = self.input_blocks[0][0].weight.dtype  # float32, or half after .half()
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(compute_dtype))
        h = torch.cat([x_t, cond], dim=1).to(compute_dtype)
        c = h.shape[1]
        h = torch.cat(
            [h[:, : c - 5], self.preproc_rgb(h[:, c - 5 : c - 2]), self.preproc_segm(h[:, c - 2 :])], dim=1
        )
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).to(x_t.dtype)

    @classmethod
    def from_dinar_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], use_ema: bool = True, prefix: str | None = None
    ) -> DinarUNet:
        """Build from a DINAR state dict: the EMA weights (``model_ema.*``) by default, else ``model.*``.

        With an explicit ``prefix`` (``""`` for our own files) the tensors under it are taken as
        parameter-named weights. Sizes are read from the shapes, so the tiny test configuration
        loads the same way.
        """
        if prefix is not None:
            sub = select_prefixed(state_dict, prefix)
        elif use_ema:
            ema = select_prefixed(state_dict, UNET_EMA_PREFIX)
            if not ema:
                raise UserError("no EMA UNet weights (keys starting with 'model_ema.') in this state dict")
            sub = ema_to_module_names(ema, template=select_prefixed(state_dict, UNET_PREFIX) or None)
        else:
            sub = select_prefixed(state_dict, UNET_PREFIX)
        if not sub:
            raise UserError("no diffusion UNet weights (keys starting with 'model.') in this state dict")
        net = cls(_config_from_shapes(sub))
        load_strict(net, sub, what="DINAR diffusion UNet")
        return net.eval()


def ema_to_module_names(
    ema: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Map LitEma's dot-less buffer names back to parameter names.

    With a ``template`` (the raw ``model.*`` names) the mapping is exact. Without one, the names
    of a freshly built official-layout network of matching width are used.
    """
    ema = {k: v for k, v in ema.items() if k not in EMA_EXTRA_KEYS}
    if template is None:
        model_channels = ema["time_embed0weight"].shape[1] if "time_embed0weight" in ema else 256
        with torch.device("meta"):
            template = DinarUNet(DinarUNetConfig(model_channels=model_channels)).state_dict()
    by_dotless = {name.replace(".", ""): name for name in template}
    if len(by_dotless) != len(template):
        raise UserError("UNet parameter names collide once dots are removed; cannot map EMA weights")
    out: dict[str, torch.Tensor] = {}
    for key, value in ema.items():
        if key not in by_dotless:
            raise UserError(f"EMA UNet weight {key!r} does not correspond to any UNet parameter")
        out[by_dotless[key]] = value
    return out


def _config_from_shapes(sub: Mapping[str, torch.Tensor]) -> DinarUNetConfig:
    try:
        mc = sub["input_blocks.0.0.weight"].shape[0]
        in_ch = sub["input_blocks.0.0.weight"].shape[1]
        out_ch = sub["out.2.weight"].shape[0]
    except KeyError as exc:
        raise UserError(f"DINAR UNet weights lack {exc.args[0]}") from None
    base = DinarUNetConfig()
    return DinarUNetConfig(
        in_channels=in_ch,
        out_channels=out_ch,
        model_channels=mc,
        channel_mult=base.channel_mult,
        num_res_blocks=base.num_res_blocks,
        attention_resolutions=base.attention_resolutions,
        num_heads=base.num_heads,
        norm_groups=base.norm_groups,
    )
