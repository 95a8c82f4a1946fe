"""Converting StylePeople's official checkpoints into our safetensors files.

Supported inputs (from the StylePeople Google Drive archive, ``data/checkpoint/``):
- ``generative_model.pth``: ``{"g": generator state dict, "r": renderer state dict}``. Both are
  validated by loading them into :class:`SPTextureGenerator` / :class:`SPRenderer` (sizes read
  from the shapes, every key and shape checked) and written as ``stylepeople_generator`` and
  ``stylepeople_renderer`` network files.
- ``encoder.pth``: ``ckpt["inferer"]["encoder"]``, the EfficientNet-b7 W+ encoder. It is
  checked by key pattern (an efficientnet-pytorch backbone), loaded into :class:`SPEncoder`
  (sizes from the shapes; the non-backbone layers by name, else by shape and order) and
  written as ``stylepeople_encoder`` (kind ``sp_encoder``). ``encoder_config.yaml``, when
  given, supplies the constructor arguments (``model.encoder.args``), which must agree with the
  weights; its ``pretrained`` flag turns on the input renormalisation. Files written by older
  avatarcli versions (the raw tensors, kind ``sp_encoder_efficientnet_raw``) are converted when
  loaded (:func:`load_encoder`).

Files are read with ``torch.load(weights_only=True)`` only: a pickle that needs anything other
than tensors and plain containers (for instance code) is refused, never executed.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatarcli.errors import InputFileError, UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from avatarcli.nets.sp_encoder import SPEncoder
    from avatarcli.nets.sp_generator import SPTextureGenerator
    from avatarcli.nets.sp_renderer import SPRenderer
    from avatarcli.weights_registry.registry import WeightEntry

STYLEPEOPLE_LICENCE = "MIT (StylePeople, Samsung Electronics); check the data archive's own terms"
GENERATOR_NAME = "stylepeople_generator"
RENDERER_NAME = "stylepeople_renderer"
ENCODER_NAME = "stylepeople_encoder"
ENCODER_KIND = "sp_encoder"
#: What avatarcli ≤ 0.x stored: the official tensors verbatim (converted on load).
RAW_ENCODER_KIND = "sp_encoder_efficientnet_raw"
#: Blocks in an EfficientNet-b7 backbone (the released encoder's).
EFFICIENTNET_B7_BLOCKS = 55

_BLOCK_KEY = re.compile(r"^(?P<prefix>.*?)_blocks\.(?P<index>\d+)\.")


def load_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load`` restricted to tensors and plain containers, with one-line errors.

    A missing file, a truncated or non-PyTorch file and a pickle that asks for code each give a
    :class:`~avatarcli.errors.UserError` naming the file.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notice; errors still raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # the pickle names a function or class to call
            raise UserError(
                f"refusing to load {path}: it holds Python objects other than tensors, which could "
                "run code; re-save it as a plain state dict (torch.save(state_dict)) or use the original "
                "StylePeople file"
            ) from None
        detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln), "")
        raise InputFileError(
            f"cannot read checkpoint {path}: the file is truncated, not a PyTorch checkpoint, or uses "
            f"pickle features a safe load does not support ({detail or type(exc).__name__})"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint ({detail})"
        ) from None


def _tensor_dict(obj: Any, what: str, source: str) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(obj, Mapping) or not obj:
        raise InputFileError(f"{source}: {what} is not a state dict (found {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InputFileError(f"{source}: {what} holds non-tensor entries (e.g. {bad[0]!r})")
    return dict(obj)


@dataclass
class StylePeopleNetworks:
    """The two networks of ``generative_model.pth``, loaded and in eval mode."""

    generator: SPTextureGenerator
    renderer: SPRenderer


def networks_from_generative_model(
    checkpoint: Mapping[str, Any], source: str = "generative_model.pth"
) -> StylePeopleNetworks:
    """Build and load our networks from a ``{"g": …, "r": …}`` dict (already read from disk).

    Wrong or missing keys and wrong shapes raise :class:`InputFileError` with the details.
    """
    from avatarcli.nets.sp_generator import SPTextureGenerator
    from avatarcli.nets.sp_renderer import SPRenderer

    if not isinstance(checkpoint, Mapping) or not {"g", "r"} <= set(checkpoint):
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise InputFileError(
            f"{source} is not StylePeople's generative_model.pth: expected a dict with 'g' (generator) "
            f"and 'r' (renderer) state dicts, found {found}"
        )
    g = _tensor_dict(checkpoint["g"], "'g'", source)
    r = _tensor_dict(checkpoint["r"], "'r'", source)
    try:
        generator = SPTextureGenerator.from_stylepeople_state_dict(g)
        renderer = SPRenderer.from_stylepeople_state_dict(r)
    except ValueError as exc:
        raise InputFileError(f"{source}: {exc}") from None
    return StylePeopleNetworks(generator=generator.eval(), renderer=renderer.eval())


def read_generative_model(path: str | os.PathLike) -> StylePeopleNetworks:
    """Safely read ``generative_model.pth`` and return the loaded generator and renderer."""
    return networks_from_generative_model(load_torch_file(path), source=str(path))


@dataclass(frozen=True)
class EncoderCheck:
    """What the key-pattern check of ``encoder.pth`` found."""

    backbone_prefix: str
    num_blocks: int
    num_tensors: int
    num_parameters: int

    @property
    def is_b7(self) -> bool:
        return self.num_blocks == EFFICIENTNET_B7_BLOCKS


def encoder_state_dict(checkpoint: Any, source: str = "encoder.pth") -> dict[str, torch.Tensor]:
    """The encoder's state dict: ``ckpt["inferer"]["encoder"]``, or the object itself when it
    already is a flat state dict."""
    obj = checkpoint
    if isinstance(obj, Mapping) and "inferer" in obj:
        obj = obj["inferer"]
        if not isinstance(obj, Mapping) or "encoder" not in obj:
            raise InputFileError(f"{source}: ckpt['inferer'] has no 'encoder' entry")
        obj = obj["encoder"]
    return _tensor_dict(obj, "the encoder", source)


def check_encoder_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "encoder.pth"
) -> EncoderCheck:
    """Check that ``state_dict`` holds an efficientnet-pytorch backbone, by key names only.

    The backbone's blocks must be numbered 0…N-1 without gaps and each must carry a depthwise
    conv and a projection conv; the stem and head convs must be under the same prefix.
    """
    prefixes = {m["prefix"] for k in state_dict if (m := _BLOCK_KEY.match(k))}
    if len(prefixes) != 1:
        raise InputFileError(
            f"{source} does not look like StylePeople's EfficientNet encoder: "
            + ("no '_blocks.<i>.' keys" if not prefixes else f"several backbones {sorted(prefixes)}")
        )
    prefix = prefixes.pop()
    for key in ("_conv_stem.weight", "_conv_head.weight"):
        if prefix + key not in state_dict:
            raise InputFileError(f"{source}: EfficientNet key {prefix + key!r} is missing")
    indices = sorted({int(m["index"]) for k in state_dict if (m := _BLOCK_KEY.match(k))})
    if indices != list(range(len(indices))):
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))
        raise InputFileError(f"{source}: EfficientNet blocks are not numbered 0…N-1 (missing {missing[:5]})")
    for i in indices:
        for part in ("_depthwise_conv.weight", "_project_conv.weight"):
            if f"{prefix}_blocks.{i}.{part}" not in state_dict:
                raise InputFileError(f"{source}: EfficientNet block {i} has no {part}")
    return EncoderCheck(
        backbone_prefix=prefix,
        num_blocks=len(indices),
        num_tensors=len(state_dict),
        num_parameters=sum(int(v.numel()) for v in state_dict.values()),
    )


def read_encoder_config(path: str | os.PathLike) -> dict[str, Any]:
    """``model.encoder.args`` of StylePeople's ``encoder_config.yaml`` (an OmegaConf dump).

    A missing file, bad YAML or a file without that section is an :class:`InputFileError`.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"encoder config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read encoder config {path}: {str(exc).splitlines()[0]}") from None
    node = data
    for key in ("model", "encoder"):
        node = node.get(key) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping):
        raise InputFileError(
            f"{path} has no model.encoder section (is it StylePeople's encoder_config.yaml?)"
        )
    args = node.get("args") or {}  # an empty ``args:`` means the constructor defaults
    if not isinstance(args, Mapping):
        raise InputFileError(f"{path}: model.encoder.args is not a mapping")
    return dict(args)


def encoder_from_checkpoint(
    checkpoint: Any, args: Mapping[str, Any] | None = None, source: str = "encoder.pth"
) -> SPEncoder:
    """Our :class:`SPEncoder` from ``encoder.pth``'s contents (already read), eval mode.

    ``args`` are ``encoder_config.yaml``'s constructor arguments. Anything that does not fit
    raises :class:`InputFileError` (a config that disagrees: :class:`UserError`).
    """
    from avatarcli.nets.sp_encoder import EncoderArgsError, SPEncoder

    state_dict = encoder_state_dict(checkpoint, source)
    check_encoder_state_dict(state_dict, source)
    try:
        return SPEncoder.from_stylepeople_state_dict(state_dict, args)
    except EncoderArgsError as exc:
        raise UserError(f"encoder config: {exc}") from None
    except ValueError as exc:
        raise InputFileError(f"{source}: {exc}") from None


@dataclass
class StylePeopleImport:
    """What :func:`import_stylepeople` wrote."""

    files: dict[str, Path]
    entries: list[WeightEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: Path | None = None


def import_stylepeople(
    generative_model: str | os.PathLike | None,
    folder: str | os.PathLike,
    *,
    encoder: str | os.PathLike | None = None,
    encoder_config: str | os.PathLike | None = None,
    update_manifest: bool = True,
) -> StylePeopleImport:
    """Convert ``generative_model.pth`` (and optionally ``encoder.pth``) into ``folder``.

    Writes ``stylepeople_generator.safetensors`` and ``stylepeople_renderer.safetensors`` (our
    network files: official key names + kind/config metadata, loadable with
    :func:`avatarcli.nets.load_network`) and, when given, ``stylepeople_encoder.safetensors``
    (an :class:`SPEncoder`, configured by ``encoder_config`` when given, see
    :func:`encoder_from_checkpoint`). Every input is validated before anything is
    written; each file is written atomically. With ``update_manifest`` the weights manifest in
    ``folder`` gains one entry per file.
    """
    from avatarcli._version import __version__
    from avatarcli.io_utils import sha256_file

    if generative_model is None and encoder is None:
        raise UserError("nothing to import: give generative_model.pth and/or encoder.pth")
    if encoder_config is not None and encoder is None:
        raise UserError("--encoder-config describes encoder.pth: give --encoder too")
    folder = Path(folder)
    to_write: list[tuple[str, dict[str, torch.Tensor], str, dict[str, Any], Path]] = []
    notes: list[str] = []
    if generative_model is not None:
        nets = read_generative_model(generative_model)
        for name, net in ((GENERATOR_NAME, nets.generator), (RENDERER_NAME, nets.renderer)):
            to_write.append(
                (name, net.to_safetensors_state_dict(), net.kind, net.config_dict(), Path(generative_model))
            )
    if encoder is not None:
        args = read_encoder_config(encoder_config) if encoder_config is not None else None
        net = encoder_from_checkpoint(load_torch_file(encoder), args, source=str(encoder))
        if net.config.backbone != "b7":
            notes.append(
                f"the encoder backbone is EfficientNet-{net.config.backbone}; the released one is b7"
            )
        if args is None:
            notes.append(
                "no --encoder-config given: the encoder's sizes come from its weights and its input is "
                "not renormalised (upstream's default pretrained=False)"
            )
        to_write.append(
            (ENCODER_NAME, net.to_safetensors_state_dict(), net.kind, net.config_dict(), Path(encoder))
        )

    files: dict[str, Path] = {}
    entries: list[WeightEntry] = []
    for name, tensors, kind, config, source in to_write:
        target = folder / f"{name}.safetensors"
        from avatarcli.nets import write_network_file

        write_network_file(target, tensors, kind, config)
        files[name] = target
        if update_manifest:
            from avatarcli.weights_registry.registry import WeightEntry

            origin = f"converted from {source.name} (sha256 {sha256_file(source)}) by avatarcli {__version__}"
            entries.append(WeightEntry.for_file(name, target, STYLEPEOPLE_LICENCE, origin, kind, config))
    manifest = None
    if update_manifest:
        from avatarcli.weights_registry.registry import update_manifest as write_entries

        manifest = write_entries(entries, folder)
    return StylePeopleImport(files=files, entries=entries, notes=notes, manifest=manifest)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> SPTextureGenerator:
    """Our ``stylepeople_generator.safetensors`` → an eval-mode :class:`SPTextureGenerator`."""
    from avatarcli.nets import load_network
    from avatarcli.nets.sp_generator import SPTextureGenerator

    return load_network(SPTextureGenerator, path, device)


def load_renderer(path: str | os.PathLike, device: str | torch.device = "cpu") -> SPRenderer:
    """Our ``stylepeople_renderer.safetensors`` → an eval-mode :class:`SPRenderer`."""
    from avatarcli.nets import load_network
    from avatarcli.nets.sp_renderer import SPRenderer

    return load_network(SPRenderer, path, device)


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> SPEncoder:
    """Our ``stylepeople_encoder.safetensors`` → an eval-mode :class:`SPEncoder`.

    Files of the older raw kind (the official tensors verbatim) are converted here.
    """
    from safetensors import SafetensorError, safe_open

    from avatarcli.nets import load_network
    from avatarcli.nets.sp_encoder import SPEncoder

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            kind = (f.metadata() or {}).get("kind")
            tensors = {k: f.get_tensor(k) for k in f.keys()} if kind == RAW_ENCODER_KIND else None
    except (OSError, SafetensorError) as exc:
        raise InputFileError(f"cannot read network weights {path}: {exc}") from exc
    if tensors is None:
        return load_network(SPEncoder, path, device)
    try:
        net = SPEncoder.from_stylepeople_state_dict(tensors)
    except ValueError as exc:
        raise InputFileError(f"{path}: {exc}; re-import encoder.pth") from None
    return net.to(device).eval()
