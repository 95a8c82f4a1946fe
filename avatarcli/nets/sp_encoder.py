"""StylePeople's image → W+ encoder (``EfficientNetLevelEncoder``, fact sheet §5.4).

It gives the photo fit its starting latent: an EfficientNet backbone yields five feature maps
(strides 2…32, :meth:`EfficientNet.extract_endpoints`); each gets a 3×3 conv to
``feature_channels`` + ReLU; a top-down pyramid adds every level to the ×2 bilinearly upsampled
(corner-aligned) sum of the coarser ones; each pyramid level is average-pooled and a linear layer
turns it into latents: the coarsest level all but ``2·(levels−1)`` of them, every finer level 2.
The latents are concatenated coarse to fine → (B, n_latent, style_dim).

Our module names are those of upstream's ``EfficientNetLevelEncoder`` (``backbone.*``,
``feature2feature_layers.<level>.0``, ``feature2latent_layers.<level>.2``, ``imagenet_mean`` /
``imagenet_std``; level 0 is the finest), so the released checkpoint should load by name (none
was available to check); :func:`match_encoder_state_dict` also maps one whose non-backbone part
is named otherwise, by shape and order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from avatarcli.nets import SerializableNetwork, load_exact_state_dict
from avatarcli.nets.efficientnet import SCALING, EfficientNet, EfficientNetConfig

#: Latents each level finer than the coarsest contributes (fixed upstream).
FINE_LEVEL_LATENTS = 2
#: Renormalisation the upstream encoder applies when built with ``pretrained=True`` (its buffers).
RENORMALISE_MEAN = (0.4914, 0.4822, 0.4465)
RENORMALISE_STD = (0.2023, 0.1994, 0.2010)
#: Top-level module names of an EfficientNet state dict.
BACKBONE_PARTS = ("_conv_stem.", "_bn0.", "_blocks.", "_conv_head.", "_bn1.", "_fc.")
#: Our (and upstream's) names for the non-backbone tensors.
OUR_HEAD_KEY = re.compile(
    r"^(feature2feature_layers\.\d+\.0|feature2latent_layers\.\d+\.2)\.(weight|bias)$|^imagenet_(mean|std)$"
)


@dataclass(frozen=True)
class SPEncoderConfig:
    """Sizes of the encoder; ``official()`` is the released one (b7, 512² input, 83.6 M parameters).

    ``image_size`` is the side the fit resizes its crops to before encoding. The backbone's static
    padding is computed for ``backbone_padding_size`` (``None``: the variant's native resolution,
    600 for b7, which is what upstream's ``EfficientNet.from_name`` builds). With
    ``imagenet_renormalise`` (upstream ``pretrained=True``) the [-1, 1] input is mapped to [0, 1]
    and standardised by the stored mean/std first.
    """

    backbone: str = "b7"
    image_size: int = 512
    backbone_padding_size: int | None = None
    style_dim: int = 512
    n_latent: int = 14
    feature_channels: int = 512
    imagenet_renormalise: bool = False
    num_classes: int = 1000  # the backbone's classifier: unused, kept so checkpoints load exactly

    def __post_init__(self) -> None:
        if self.backbone not in SCALING:
            raise ValueError(f"unknown EfficientNet variant {self.backbone!r}; known: {', '.join(SCALING)}")
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"the encoder's image size must be a multiple of 32, got {self.image_size}")
        if self.coarse_latents < 1:
            raise ValueError(
                f"n_latent={self.n_latent} leaves no latent for the coarsest level "
                f"({FINE_LEVEL_LATENTS} per finer level)"
            )

    @classmethod
    def official(cls) -> SPEncoderConfig:
        return cls()

    @classmethod
    def tiny(cls, style_dim: int = 32, n_latent: int = 10) -> SPEncoderConfig:
        """b0 on 64² crops, a narrow pyramid and a 10-class head: fast tests (fits the tiny generator)."""
        return cls(
            "b0", image_size=64, style_dim=style_dim, n_latent=n_latent, feature_channels=32, num_classes=10
        )

    @property
    def backbone_config(self) -> EfficientNetConfig:
        return EfficientNetConfig(self.backbone, self.backbone_padding_size, self.num_classes)

    @property
    def levels(self) -> int:
        return len(self.backbone_config.endpoint_channels())

    @property
    def coarse_latents(self) -> int:
        return self.n_latent - FINE_LEVEL_LATENTS * (self.levels - 1)

    def latents_per_level(self) -> list[int]:
        """Latents per level, finest first (official: 2, 2, 2, 2, 6)."""
        return [FINE_LEVEL_LATENTS] * (self.levels - 1) + [self.coarse_latents]


class SPEncoder(SerializableNetwork, nn.Module):
    """(B, 3, S, S) crops in [-1, 1] (the person on black) → (B, n_latent, style_dim) W+, coarse to fine."""

    kind: ClassVar[str] = "sp_encoder"
    config_class: ClassVar[type] = SPEncoderConfig

    def __init__(self, config: SPEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SPEncoderConfig()
        self.backbone = EfficientNet(config.backbone_config)
        width = config.feature_channels
        self.feature2feature_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU())
            for channels in config.backbone_config.endpoint_channels()
        )
        self.feature2latent_layers = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, count * config.style_dim))
            for count in config.latents_per_level()
        )
        self.register_buffer("imagenet_mean", torch.tensor(RENORMALISE_MEAN).view(3, 1, 1))
        self.register_buffer("imagenet_std", torch.tensor(RENORMALISE_STD).view(3, 1, 1))

    @property
    def input_size(self) -> int:
        """The side :func:`avatarcli.pipelines.stylepeople_fit.initial_latent` resizes crops to."""
        return self.config.image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"the encoder takes (B, 3, H, W) images, got {tuple(images.shape)}")
        if self.config.imagenet_renormalise:
            images = ((images + 1) / 2 - self.imagenet_mean) / self.imagenet_std
        features = list(self.backbone.extract_endpoints(images).values())  # finest first
        if len(features) != len(self.feature2feature_layers):
            raise ValueError(
                f"a {tuple(images.shape[-2:])} image gives {len(features)} feature levels, the encoder "
                f"needs {len(self.feature2feature_layers)}: use at least {self.config.image_size}² inputs"
            )
        pyramid: torch.Tensor | None = None
        latents = []
        for level in reversed(range(len(features))):  # coarse to fine
            lateral = self.feature2feature_layers[level](features[level])
            if pyramid is not None:
                upsampled = F.interpolate(pyramid, scale_factor=2.0, mode="bilinear", align_corners=True)
                if upsampled.shape[-2:] != lateral.shape[-2:]:
                    raise ValueError(
                        f"image side {tuple(images.shape[-2:])} is not a multiple of 32: feature maps "
                        f"{tuple(upsampled.shape[-2:])} and {tuple(lateral.shape[-2:])} do not line up"
                    )
                lateral = lateral + upsampled
            pyramid = lateral
            latents.append(self.feature2latent_layers[level](pyramid))
        return torch.cat(latents, dim=1).view(-1, self.config.n_latent, self.config.style_dim)

    @classmethod
    def from_stylepeople_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], args: Mapping[str, Any] | None = None
    ) -> SPEncoder:
        """Build from an official ``ckpt['inferer']['encoder']`` state dict (sizes read from the
        shapes; ``args`` are the constructor kwargs of ``encoder_config.yaml``, which must agree).

        Raises ``ValueError`` listing what does not fit.
        """
        ours = match_encoder_state_dict(state_dict)
        config = infer_encoder_config(ours, args)
        net = cls(config)
        for name in ("imagenet_mean", "imagenet_std"):  # constants: older files may lack them
            ours.setdefault(name, getattr(net, name).clone())
        load_exact_state_dict(net, ours, "the encoder checkpoint")
        return net.eval()


# ------------------------------------------------------------------- reading official checkpoints
def _backbone_prefix(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The prefix in front of ``_conv_stem.weight`` (``backbone.`` upstream)."""
    prefixes = [k[: -len("_conv_stem.weight")] for k in state_dict if k.endswith("_conv_stem.weight")]
    if len(prefixes) != 1:
        raise ValueError(
            "no EfficientNet backbone (no '…_conv_stem.weight' key)"
            if not prefixes
            else f"several EfficientNet backbones: {sorted(prefixes)}"
        )
    return prefixes[0]


def backbone_config_of(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "backbone."
) -> EfficientNetConfig:
    """The EfficientNet variant whose block count and head width match the state dict."""
    blocks = {int(k[len(prefix) + len("_blocks.") :].split(".")[0]) for k in state_dict
              if k.startswith(prefix + "_blocks.")}  # fmt: skip
    head_key, fc_key = prefix + "_conv_head.weight", prefix + "_fc.weight"
    if head_key not in state_dict or fc_key not in state_dict:
        raise ValueError(f"the backbone has no {head_key!r} or {fc_key!r}")
    head = int(state_dict[head_key].shape[0])
    for variant in SCALING:
        config = EfficientNetConfig(variant, num_classes=int(state_dict[fc_key].shape[0]))
        if sum(s.repeats for s in config.stages()) == len(blocks) and config.head_channels == head:
            return config
    raise ValueError(f"no EfficientNet-b0…b7 has {len(blocks)} blocks and a {head}-channel head")


def match_encoder_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official encoder state dict to our module names.

    Backbone tensors keep their ``efficientnet_pytorch`` names under ``backbone.``. The rest keep
    their names when they already are ours; otherwise they are matched by structure: each 3×3
    conv to its level by its input channels (the backbone's endpoint widths all differ), the
    linear layers to levels in the same order as their convs appear, biases to the weight with
    the same module prefix, two (3, 1, 1) tensors to the renormalisation mean and std. Anything
    left over, or a level without its conv or linear layer, raises ``ValueError`` naming it.
    """
    prefix = _backbone_prefix(state_dict)
    backbone_keys = [
        k for k in state_dict if k.startswith(prefix) and k[len(prefix) :].startswith(BACKBONE_PARTS)
    ]
    ours = {"backbone." + k[len(prefix) :]: state_dict[k] for k in backbone_keys}
    taken = set(backbone_keys)
    rest = {k: v for k, v in state_dict.items() if k not in taken}
    endpoint_channels = backbone_config_of(ours).endpoint_channels()
    if rest and all(OUR_HEAD_KEY.match(k) for k in rest):  # already our (= upstream's) names
        return {**ours, **rest}
    return {**ours, **_match_head_by_structure(rest, endpoint_channels)}


def _match_head_by_structure(
    rest: Mapping[str, torch.Tensor], endpoint_channels: list[int]
) -> dict[str, torch.Tensor]:
    """The non-backbone tensors under our names, found by shape and order (see the caller)."""
    out: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    modules: dict[str, dict[str, str]] = {}  # module prefix → {"weight": key, "bias": key}, in order
    renormalisers = []
    for key, value in rest.items():
        module, _, leaf = key.rpartition(".")
        if tuple(value.shape) == (3, 1, 1):
            renormalisers.append(key)
        elif leaf in ("weight", "bias") and module:
            modules.setdefault(module, {})[leaf] = key
        else:
            unmatched.append(key)
    if len(renormalisers) == 2:
        out["imagenet_mean"], out["imagenet_std"] = (rest[k] for k in renormalisers)
    else:
        unmatched += renormalisers

    conv_levels: list[int] = []  # levels in the order their convs appear
    linears: list[dict[str, str]] = []  # linear layers in the order they appear
    for parts in modules.values():
        weight = rest.get(parts.get("weight", ""))
        if weight is None or "bias" not in parts:
            unmatched += sorted(parts.values())
        elif weight.ndim == 2:
            linears.append(parts)
        elif (
            weight.ndim == 4
            and tuple(weight.shape[2:]) == (3, 3)
            and int(weight.shape[1]) in endpoint_channels
            and endpoint_channels.index(int(weight.shape[1])) not in conv_levels
        ):
            level = endpoint_channels.index(int(weight.shape[1]))
            conv_levels.append(level)
            out[f"feature2feature_layers.{level}.0.weight"] = weight
            out[f"feature2feature_layers.{level}.0.bias"] = rest[parts["bias"]]
        else:
            unmatched += sorted(parts.values())
    linear_levels = conv_levels[: len(linears)]
    for level, parts in zip(linear_levels, linears, strict=False):
        out[f"feature2latent_layers.{level}.2.weight"] = rest[parts["weight"]]
        out[f"feature2latent_layers.{level}.2.bias"] = rest[parts["bias"]]
    for parts in linears[len(linear_levels) :]:
        unmatched += sorted(parts.values())
    missing = []
    for level, channels in enumerate(endpoint_channels):
        lacks = [name for name, found in (("3×3 conv", conv_levels), ("linear layer", linear_levels))
                 if level not in found]  # fmt: skip
        if lacks:
            missing.append(f"level {level} ({channels}-channel features) has no {' or '.join(lacks)}")
    if unmatched or missing:
        shown = ", ".join(unmatched[:8]) + (f", … ({len(unmatched) - 8} more)" if len(unmatched) > 8 else "")
        raise ValueError(
            "the encoder's non-backbone tensors do not fit StylePeople's level encoder"
            + (f"; unmatched tensors: {shown}" if unmatched else "")
            + (f"; {'; '.join(missing)}" if missing else "")
        )
    return out


class EncoderArgsError(ValueError):
    """``encoder_config.yaml``'s arguments are unknown or disagree with the weights."""


#: ``encoder_config.yaml`` ``model.encoder.args`` → our config field.
CONSTRUCTOR_ARGS = {
    "output_n_latents": "n_latent",
    "output_style_dim": "style_dim",
    "feature2latent_input_size": "feature_channels",
    "model_name": "backbone",
    "pretrained": "imagenet_renormalise",
}


def config_overrides(args: Mapping[str, Any]) -> dict[str, Any]:
    """Our config fields from upstream constructor kwargs; unknown kwargs raise
    :class:`EncoderArgsError` (we cannot tell whether they change the network)."""
    unknown = sorted(set(args) - set(CONSTRUCTOR_ARGS))
    if unknown:
        raise EncoderArgsError(
            f"unknown encoder arguments {', '.join(unknown)} (known: {', '.join(CONSTRUCTOR_ARGS)})"
        )
    fields: dict[str, Any] = {}
    for arg, value in args.items():
        if arg == "model_name":
            name = str(value)
            if not name.startswith("efficientnet-") or name.removeprefix("efficientnet-") not in SCALING:
                raise EncoderArgsError(f"model_name {name!r} is not efficientnet-b0…b7")
            value = name.removeprefix("efficientnet-")
        elif arg == "pretrained":
            value = bool(value)
        else:
            value = int(value)
        fields[CONSTRUCTOR_ARGS[arg]] = value
    return fields


def infer_encoder_config(
    state_dict: Mapping[str, torch.Tensor], args: Mapping[str, Any] | None = None
) -> SPEncoderConfig:
    """Our config from a state dict in our names (sizes from shapes) checked against ``args``."""
    backbone = backbone_config_of(state_dict)
    levels = len(backbone.endpoint_channels())
    try:
        conv = state_dict["feature2feature_layers.0.0.weight"]
        fine = state_dict["feature2latent_layers.0.2.weight"]
        coarse = state_dict[f"feature2latent_layers.{levels - 1}.2.weight"]
    except KeyError as exc:
        raise ValueError(f"the encoder has no {exc.args[0]!r}") from None
    style_dim = int(fine.shape[0]) // FINE_LEVEL_LATENTS
    if style_dim < 1 or int(coarse.shape[0]) % style_dim:
        raise ValueError(
            f"latent layer sizes {int(fine.shape[0])} and {int(coarse.shape[0])} do not share a style size"
        )
    config = SPEncoderConfig(
        backbone.variant,
        style_dim=style_dim,
        n_latent=int(coarse.shape[0]) // style_dim + FINE_LEVEL_LATENTS * (levels - 1),
        feature_channels=int(conv.shape[0]),
        num_classes=backbone.num_classes,
    )
    if args:
        wanted = config_overrides(args)
        disagree = [
            f"{arg}={args[arg]!r} but the weights have {getattr(config, field)!r}"
            for arg, field in CONSTRUCTOR_ARGS.items()
            if arg in args and field != "imagenet_renormalise" and wanted[field] != getattr(config, field)
        ]
        if disagree:
            raise EncoderArgsError(
                "encoder_config.yaml does not describe these weights: " + "; ".join(disagree)
            )
        config = replace(config, imagenet_renormalise=wanted.get("imagenet_renormalise", False))
    return config
