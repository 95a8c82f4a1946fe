"""StylePeople's neural-texture generator: z → (mapping MLP) → w / W+ → 16-channel texture.

A StyleGAN2 synthesis network like DINAR's, with two differences that matter for compatibility:
- an 8-layer mapping MLP (PixelNorm, then equalised linear layers with lr_mul 0.01) turns a
  Gaussian z into w; fitting optimises a per-layer W+ latent instead;
- fixed *spectral coordinates* of the body surface (a (1,16,H,W) tensor resized to each scale)
  are concatenated to the input of the second conv at 64², 128² and 256². They are frozen
  parameters ``convs.<k>.add_input`` stored in the checkpoint, so converting only loads them.

Module names follow the official ``generative_model.pth`` ``["g"]`` state dict key-for-key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.nets import SerializableNetwork, load_exact_state_dict, strip_prefix
from avatarcli.nets.stylegan2 import (
    DEFAULT_BLUR_KERNEL,
    ConstantInput,
    EqualLinear,
    NoiseBuffers,
    PixelNorm,
    StyledConv,
    SynthesisLayout,
    ToRGB,
)

NoiseMode = Literal["random", "buffers"]
#: Resolutions whose second conv receives the spectral input (512 only exists in larger models).
DEFAULT_SPECTRAL_SCALES: tuple[int, ...] = (64, 128, 256, 512)


@dataclass(frozen=True)
class SPGeneratorConfig(SynthesisLayout):
    """Sizes of the generator; ``official()`` is the released StylePeople model (256², 31.6 M params)."""

    size: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: float = 4.0
    output_channels: int = 16
    blur_kernel: tuple[int, ...] = DEFAULT_BLUR_KERNEL
    lr_mlp: float = 0.01
    spectral_channels: int = 16
    spectral_scales: tuple[int, ...] = DEFAULT_SPECTRAL_SCALES

    @property
    def synthesis_size(self) -> int:
        return self.size

    def __post_init__(self) -> None:
        log2 = math.log2(self.size)
        if self.size < 8 or log2 != int(log2):
            raise ValueError(f"size must be a power of two ≥ 8, got {self.size}")
        # Scales above the texture size do nothing (upstream lists 512 for a 256² model): keep the
        # used ones only, so configs read from a checkpoint and from constructor args compare equal.
        used = tuple(sorted({int(s) for s in self.spectral_scales if 8 <= int(s) <= self.size}))
        object.__setattr__(self, "spectral_scales", used)

    @classmethod
    def official(cls) -> SPGeneratorConfig:
        return cls()

    @classmethod
    def tiny(cls) -> SPGeneratorConfig:
        """64² texture (one spectral input, at 64²), 32-d style, 2-layer mapping: fast tests."""
        return cls(size=64, style_dim=32, n_mlp=2, channel_multiplier=0.125, spectral_channels=4)

    @classmethod
    def from_constructor_args(cls, args: Mapping[str, Any]) -> SPGeneratorConfig:
        """Config from upstream ``Generator(...)`` arguments, as listed in a test-vector sidecar.

        ``ainp_tensor`` may be a tensor or the sidecar's ``{"tensor_shape": [...]}`` description;
        only its channel count matters here (the resized copies come from the checkpoint).
        """
        ainp = args.get("ainp_tensor")
        if isinstance(ainp, torch.Tensor):
            spectral = int(ainp.shape[1])
        elif isinstance(ainp, Mapping) and "tensor_shape" in ainp:
            spectral = int(ainp["tensor_shape"][1])
        else:
            spectral = 16
        return cls(
            size=int(args["size"]),
            style_dim=int(args.get("style_dim", 512)),
            n_mlp=int(args.get("n_mlp", 8)),
            channel_multiplier=float(args.get("channel_multiplier", 4)),
            output_channels=int(args.get("output_channels", 16)),
            blur_kernel=tuple(args.get("blur_kernel", DEFAULT_BLUR_KERNEL)),
            lr_mlp=float(args.get("lr_mlp", 0.01)),
            spectral_channels=spectral,
            spectral_scales=tuple(int(s) for s in args.get("ainp_scales", DEFAULT_SPECTRAL_SCALES)),
        )


class SpectralStyledConv(StyledConv):
    """A StyledConv whose input is concatenated with a frozen spectral-coordinate map first."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        spectral_channels: int,
        resolution: int,
        style_dim: int,
        blur_kernel: Sequence[int],
    ) -> None:
        super().__init__(channels + spectral_channels, out_channels, 3, style_dim, blur_kernel=blur_kernel)
        self.add_input = nn.Parameter(torch.zeros(1, spectral_channels, resolution, resolution))
        self.add_input.requires_grad_(False)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        spectral = self.add_input.to(x.dtype).expand(x.shape[0], -1, -1, -1)
        return super().forward(torch.cat([x, spectral], dim=1), style, noise)

    @torch.no_grad()
    def set_spectral_source(self, source: torch.Tensor) -> None:
        """Fill ``add_input`` from a full-size spectral texture (1,C,H,W), resized bilinearly."""
        size = self.add_input.shape[-2:]
        self.add_input.copy_(F.interpolate(source.to(self.add_input), size=size, mode="bilinear"))


class SPTextureGenerator(SerializableNetwork, nn.Module):
    """Mapping MLP + StyleGAN2 synthesis with spectral inputs → (B, 16, size, size) neural texture."""

    kind = "sp_generator"
    config_class = SPGeneratorConfig

    def __init__(self, config: SPGeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SPGeneratorConfig.official()
        style_dim, blur, out_c = config.style_dim, config.blur_kernel, config.output_channels
        self.style = nn.Sequential(
            PixelNorm(),
            *(
                EqualLinear(style_dim, style_dim, lr_mul=config.lr_mlp, activate=True)
                for _ in range(config.n_mlp)
            ),
        )
        width = config.width(4)
        self.input = ConstantInput(width)
        self.conv1 = StyledConv(width, width, 3, style_dim, blur_kernel=blur)
        self.to_rgb1 = ToRGB(width, style_dim, out_c, upsample=False, blur_kernel=blur)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        spectral_at = set(config.spectral_scales)
        for log_res in range(3, config.log_size + 1):
            res = 2**log_res
            out_width = config.width(res)
            self.convs.append(StyledConv(width, out_width, 3, style_dim, upsample=True, blur_kernel=blur))
            if res in spectral_at:
                second = SpectralStyledConv(
                    out_width, out_width, config.spectral_channels, res, style_dim, blur
                )
            else:
                second = StyledConv(out_width, out_width, 3, style_dim, blur_kernel=blur)
            self.convs.append(second)
            self.to_rgbs.append(ToRGB(out_width, style_dim, out_c, blur_kernel=blur))
            width = out_width
        self.noises = NoiseBuffers(config)
        self._mean_latent: torch.Tensor | None = None
        self._mean_latent_key: tuple[Any, ...] = ()

    # -- latents ---------------------------------------------------------------------------------

    def map_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The mapping network: z (B, style_dim) ~ N(0, I) → w (B, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n_samples: int = 4096, seed: int = 0) -> torch.Tensor:
        """Average w over ``n_samples`` mapped z's (the truncation centre), (1, style_dim).

        Drawn from a fixed CPU seed so it is the same on every device and run. Cached (dropped
        when weights are loaded; recomputed for other arguments, device or dtype).
        """
        param = self.input.input
        key = (n_samples, seed, param.device, param.dtype)
        if self._mean_latent is None or self._mean_latent_key != key:
            self._mean_latent_key = key
            cpu = torch.Generator().manual_seed(seed)
            z = torch.randn(n_samples, self.config.style_dim, generator=cpu)
            w = self.map_latent(z.to(device=param.device, dtype=param.dtype))
            self._mean_latent = w.mean(dim=0, keepdim=True)
        return self._mean_latent

    def truncate(self, w: torch.Tensor, truncation: float, mean: torch.Tensor | None = None) -> torch.Tensor:
        """Pull w (or W+) toward the mean latent: ``mean + truncation·(w − mean)``."""
        if truncation == 1.0:
            return w
        mean = self.mean_latent() if mean is None else mean
        if w.ndim == 3:
            mean = mean.reshape(mean.shape[0], 1, -1)
        return mean + truncation * (w - mean)

    # -- noise -----------------------------------------------------------------------------------

    def make_noise(
        self,
        batch: int = 1,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> list[torch.Tensor]:
        """Fresh N(0,1) noise maps (B,1,r,r), one per layer, drawn from ``generator`` when given."""
        device = device if device is not None else self.input.input.device
        return [
            torch.randn(batch, 1, r, r, generator=generator, device=device, dtype=dtype)
            for r in map(self.config.noise_resolution, range(self.config.num_noise_layers))
        ]

    def _resolve_noise(
        self,
        noise: Sequence[torch.Tensor | None] | None,
        batch: int,
        generator: torch.Generator | None,
        noise_mode: NoiseMode,
        like: torch.Tensor,
    ) -> list[torch.Tensor]:
        n_layers = self.config.num_noise_layers
        maps = list(noise) if noise is not None else [None] * n_layers
        if len(maps) != n_layers:
            raise ValueError(f"expected {n_layers} noise maps, got {len(maps)}")
        if noise_mode not in ("random", "buffers"):
            raise ValueError(f"noise_mode must be 'random' or 'buffers', got {noise_mode!r}")
        for i, m in enumerate(maps):
            if m is not None:
                continue
            if noise_mode == "buffers":
                maps[i] = self.noises.get(i)
            else:
                r = self.config.noise_resolution(i)
                maps[i] = torch.randn(
                    batch, 1, r, r, generator=generator, device=like.device, dtype=like.dtype
                )
        return maps  # type: ignore[return-value]

    # -- synthesis -------------------------------------------------------------------------------

    def synthesize(
        self,
        w: torch.Tensor,
        noise: Sequence[torch.Tensor | None] | None = None,
        *,
        generator: torch.Generator | None = None,
        noise_mode: NoiseMode = "random",
    ) -> torch.Tensor:
        """Texture from w (B, style_dim), used for every layer, or W+ (B, n_latent, style_dim).

        W+ rows are consumed as: conv1 ← 0, to_rgb1 ← 1, then per level k: the upsampling conv
        ← 2k+1, the second conv ← 2k+2, to_rgbs[k] ← 2k+3. ``noise`` has one map per layer; a
        missing map is drawn from ``generator`` (``"random"``, upstream's sampling) or taken from
        the stored ``noises`` buffers (``"buffers"``).
        """
        styles = self._per_layer_styles(w)
        batch = w.shape[0]
        maps = self._resolve_noise(noise, batch, generator, noise_mode, w)
        x = self.conv1(self.input(batch), styles[0], maps[0])
        image = self.to_rgb1(x, styles[1])
        for level, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * level](x, styles[2 * level + 1], maps[2 * level + 1])
            x = self.convs[2 * level + 1](x, styles[2 * level + 2], maps[2 * level + 2])
            image = to_rgb(x, styles[2 * level + 3], image)
        return image

    def forward(
        self,
        latent: torch.Tensor,
        noise: Sequence[torch.Tensor | None] | None = None,
        *,
        input_is_latent: bool = False,
        truncation: float = 1.0,
        generator: torch.Generator | None = None,
        noise_mode: NoiseMode = "random",
    ) -> torch.Tensor:
        """Texture from z (mapped first) or, with ``input_is_latent``, from w / W+ directly."""
        w = latent if input_is_latent else self.map_latent(latent)
        w = self.truncate(w, truncation)
        return self.synthesize(w, noise, generator=generator, noise_mode=noise_mode)

    def _per_layer_styles(self, w: torch.Tensor) -> list[torch.Tensor]:
        n_latent = self.config.n_latent
        if w.ndim == 2:
            return [w] * n_latent
        if w.ndim == 3 and w.shape[1] == n_latent:
            return list(w.unbind(1))
        raise ValueError(f"w must be (B, style_dim) or (B, {n_latent}, style_dim), got {tuple(w.shape)}")

    @torch.no_grad()
    def set_spectral_source(self, source: torch.Tensor) -> None:
        """Fill every ``add_input`` from a full-size spectral texture, e.g. ``spectral_texture16.pth``."""
        channels = self.config.spectral_channels
        if source.ndim != 4 or tuple(source.shape[:2]) != (1, channels):
            raise ValueError(f"spectral texture must be (1, {channels}, H, W), got {tuple(source.shape)}")
        for conv in self.convs:
            if isinstance(conv, SpectralStyledConv):
                conv.set_spectral_source(source)

    # -- files -----------------------------------------------------------------------------------

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._mean_latent = None  # new mapping weights → new truncation centre
        super()._load_from_state_dict(*args, **kwargs)

    @classmethod
    def from_stylepeople_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], prefix: str = ""
    ) -> SPTextureGenerator:
        """Build and load from an official ``ckpt["g"]`` state dict; sizes come from the shapes.

        ``lr_mlp`` cannot be read from shapes and is taken as upstream's 0.01. Raises
        ``ValueError`` naming missing/unexpected keys or shape mismatches.
        """
        sd = strip_prefix(state_dict, prefix)
        net = cls(infer_generator_config(sd))
        load_exact_state_dict(net, sd, f"StylePeople generator state dict (prefix {prefix!r})")
        return net


def infer_generator_config(state_dict: Mapping[str, torch.Tensor]) -> SPGeneratorConfig:
    """Read the generator sizes from the shapes of an official ``ckpt["g"]`` state dict."""
    needed = ("input.input", "to_rgb1.conv.weight", "conv1.conv.modulation.weight")
    absent = [k for k in needed if k not in state_dict]
    if absent:
        raise ValueError(f"not a StylePeople generator state dict: no {', '.join(map(repr, absent))}")
    n_levels = len({k.split(".")[1] for k in state_dict if k.startswith("to_rgbs.")})
    size = 4 * 2**n_levels
    n_mlp = len({k.split(".")[1] for k in state_dict if k.startswith("style.") and k.endswith(".weight")})
    spectral = [v for k, v in state_dict.items() if k.startswith("convs.") and k.endswith(".add_input")]
    spectral_scales = sorted(int(v.shape[-1]) for v in spectral)
    return SPGeneratorConfig(
        size=size,
        style_dim=int(state_dict["conv1.conv.modulation.weight"].shape[1]),
        n_mlp=n_mlp,
        channel_multiplier=int(state_dict["input.input"].shape[1]) / 128,
        output_channels=int(state_dict["to_rgb1.conv.weight"].shape[1]),
        spectral_channels=int(spectral[0].shape[1]) if spectral else 16,
        spectral_scales=tuple(spectral_scales) if spectral else (),
    )
