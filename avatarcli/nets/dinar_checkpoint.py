"""Reading DINAR's official Lightning checkpoint and splitting it into one state dict per network.

The checkpoint is a pickle, so it is never loaded with plain ``pickle``: ``torch.load`` with
``weights_only=True`` first, then a restricted unpickler that can only rebuild tensors and plain
containers and refuses everything else (a pickle that carries code fails with a clear error).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from avatarcli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


def select_prefixed(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_strict(net: nn.Module, sub: Mapping[str, torch.Tensor], what: str) -> None:
    """Load with every key and shape checked, failing with one line that names the first problem."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(sub))
    unexpected = sorted(set(sub) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise UserError(f"{what} weights do not match the network: " + ", ".join(parts))
    for key, ref in expected.items():
        if tuple(sub[key].shape) != tuple(ref.shape):
            raise UserError(
                f"{what} weight {key} has shape {tuple(sub[key].shape)}, expected {tuple(ref.shape)}"
            )
    net.load_state_dict({k: sub[k].to(ref.dtype) for k, ref in expected.items()})


# --- what the official checkpoint holds ------------------------------------------------------

#: Older checkpoints name the VQ autoencoder ``vq_branch``; one upstream loader aliases it.
VQ_ALIASES = ("first_stage.compress_branch.", "first_stage.vq_branch.")
EMA_EXTRA_KEYS = ("decay", "num_updates")


@dataclass(frozen=True)
class NetworkPart:
    """One network we export from the checkpoint: its file name stem and checkpoint key prefix."""

    name: str
    prefix: str
    required: bool


#: Exported networks, in file order. The UNet is listed with the EMA prefix (what inference uses).
NETWORK_PARTS: tuple[NetworkPart, ...] = (
    NetworkPart("dinar_encoder", "first_stage.encoder.", True),
    NetworkPart("dinar_generator", "first_stage.generator.", True),
    NetworkPart("dinar_renderer", "first_stage.renderer.", True),
    NetworkPart("dinar_vq", "first_stage.compress_branch.", True),
    NetworkPart("dinar_unet", "model_ema.", True),
    NetworkPart("dinar_discriminator", "first_stage.discriminator.", False),
    NetworkPart("dinar_uv_layout", "first_stage.rasterizer.", True),
)

#: Keys a training run may add that released inference ignores (fact sheet §3).
TOLERATED_EXTRA_KEYS = ("scale_factor", "offset_factor")


@functools.cache
def official_checkpoint_keys() -> dict[str, dict[str, tuple[int, ...]]]:
    """{group prefix without dot: {name: shape}} for every tensor of the official checkpoint."""
    data = json.loads(
        resources.files("avatarcli.nets").joinpath("data/dinar_checkpoint_keys.json").read_text()
    )
    groups = {g: {k: tuple(s) for k, s in keys.items()} for g, keys in data["groups"].items()}
    ema = {k.replace(".", ""): s for k, s in groups["model"].items()}
    ema.update({k: () for k in EMA_EXTRA_KEYS})
    groups["model_ema"] = ema
    return groups


def _group_key(group: str, name: str) -> str:
    return f"{group}.{name}" if group else name


@dataclass
class DinarCheckpointParts:
    """The checkpoint split per network: {file stem: state dict without the checkpoint prefix}."""

    networks: dict[str, dict[str, torch.Tensor]]
    notes: list[str] = field(default_factory=list)


def split_dinar_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, require_official_shapes: bool = True
) -> DinarCheckpointParts:
    """Validate a DINAR Lightning ``state_dict`` and cut it into one state dict per network.

    Every known group that is present must hold exactly the official tensor names; with
    ``require_official_shapes`` (the default) their shapes must match the released model too.
    Tests pass small networks with ``require_official_shapes=False``; the networks' own loaders
    then check the shapes against each other. Keys outside the known groups are ignored and
    listed in ``notes``. The UNet is exported from its EMA copy, renamed to parameter names.
    Groups checked but not exported: the DDPM buffers (recomputed from the schedule), the raw
    UNet weights and the normal rasteriser's copy of the faces.
    """
    import torch

    expected = official_checkpoint_keys()
    sd = dict(state_dict)
    notes: list[str] = []

    if not any(k.startswith(VQ_ALIASES[0]) for k in sd) and any(k.startswith(VQ_ALIASES[1]) for k in sd):
        sd = {
            (VQ_ALIASES[0] + k[len(VQ_ALIASES[1]) :] if k.startswith(VQ_ALIASES[1]) else k): v
            for k, v in sd.items()
        }
        notes.append("VQ weights were stored under the older name first_stage.vq_branch")

    present: dict[str, dict[str, torch.Tensor]] = {}
    claimed: set[str] = set()
    for group, names in expected.items():
        if group:
            prefix = group + "."
            sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        else:
            sub = {k: sd[k] for k in names if k in sd}
        if not sub:
            continue
        _check_group(group, sub, names, require_official_shapes)
        present[group] = sub
        claimed.update(_group_key(group, k) for k in sub)

    if not present:
        raise UserError(
            "this is not a DINAR checkpoint: none of its tensors has a DINAR name "
            "(expected e.g. model_ema.*, first_stage.compress_branch.*, first_stage.renderer.*)"
        )
    extra = sorted(k for k in sd if k not in claimed)
    if extra:
        tolerated = [k for k in extra if k in TOLERATED_EXTRA_KEYS]
        if tolerated:
            notes.append(
                f"ignored training-only tensors {', '.join(tolerated)} (inference does not use them)"
            )
        others = [k for k in extra if k not in TOLERATED_EXTRA_KEYS]
        if others:
            notes.append(f"ignored {len(others)} tensors outside DINAR's networks (e.g. {others[0]})")

    if "model_ema" not in present and "model" in present:
        present["model_ema"] = {k.replace(".", ""): v for k, v in present["model"].items()}
        notes.append("no EMA UNet weights in the checkpoint; exported the raw training weights instead")

    networks: dict[str, dict[str, torch.Tensor]] = {}
    missing_required = []
    for part in NETWORK_PARTS:
        group = part.prefix[:-1]
        sub = present.get(group)
        if sub is None:
            if part.required:
                missing_required.append(part.prefix + "*")
            continue
        if part.name == "dinar_unet":
            networks[part.name] = _ema_to_parameter_names(sub, expected["model"])
        elif part.name == "dinar_uv_layout":
            networks[part.name] = {
                "uv": sub["vertice_values"].to(torch.float32).contiguous(),
                "uv_faces": sub["faces"].to(torch.int64).contiguous(),
            }
        else:
            networks[part.name] = {k: v.contiguous() for k, v in sub.items()}
    if missing_required:
        raise UserError(
            f"this DINAR checkpoint is incomplete: it has no {', '.join(missing_required)} tensors "
            "(a full DINAR Lightning checkpoint is needed)"
        )
    return DinarCheckpointParts(networks=networks, notes=notes)


def _check_group(
    group: str, sub: Mapping[str, torch.Tensor], names: Mapping[str, tuple[int, ...]], official_shapes: bool
) -> None:
    """Names must be the official ones; sizes too unless ``official_shapes`` is off.

    Without official shapes (small test networks) a group may hold a subset of the names (fewer
    layers); our network loaders then check that the subset is self-consistent.
    """
    where = f"{group}.*" if group else "the DDPM schedule buffers"
    unexpected = sorted(set(sub) - set(names))
    missing = sorted(set(names) - set(sub)) if official_shapes else []
    if missing or unexpected:
        first = _group_key(group, (unexpected or missing)[0])
        what = f"{len(unexpected)} unexpected" if unexpected else f"{len(missing)} missing"
        raise UserError(f"this is not the DINAR checkpoint layout: {where} has {what} tensors (e.g. {first})")
    if official_shapes:
        for key, shape in names.items():
            if tuple(sub[key].shape) != shape:
                raise UserError(
                    f"this is not the released DINAR model: {_group_key(group, key)} has shape "
                    f"{tuple(sub[key].shape)}, expected {shape}"
                )


def _ema_to_parameter_names(
    ema: Mapping[str, torch.Tensor], parameter_names: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """LitEma stores ``model.a.b.c`` as ``model_ema.abc``; map back via the official name list."""
    by_dotless = {name.replace(".", ""): name for name in parameter_names}
    return {by_dotless[k]: v.contiguous() for k, v in ema.items() if k not in EMA_EXTRA_KEYS}


# --- safe loading of the Lightning pickle ----------------------------------------------------

#: Globals a PyTorch checkpoint legitimately needs: tensor/parameter rebuilders and containers.
_SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict"}),
    "torch._utils": frozenset(
        {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"}
    ),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "torch": frozenset({"Size", "Tensor", "device"}),
    "torch.nn.parameter": frozenset({"Parameter"}),
    "builtins": frozenset(
        {
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "int",
            "float",
            "str",
            "bytes",
            "bool",
            "complex",
            "slice",
        }
    ),
    "numpy.core.multiarray": frozenset({"scalar", "_reconstruct"}),
    "numpy._core.multiarray": frozenset({"scalar", "_reconstruct"}),
    "numpy": frozenset({"dtype", "ndarray"}),
}

#: Modules whose objects (Lightning hyper-parameter containers, configs) are pure metadata that we
#: do not need: they are replaced by inert placeholders instead of being imported or run.
_INERT_MODULE_PREFIXES = (
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "omegaconf",
    "argparse",
    "typing",
    "pathlib",
    "datetime",
)


class InertObject(dict):
    """Stands in for a metadata object we never use; it accepts any state and runs nothing."""

    qualified_name = "?"

    def __new__(cls, *args: object, **kwargs: object) -> InertObject:
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()

    def __setstate__(self, state: object) -> None:
        self["__state__"] = state

    def append(self, item: object) -> None:
        self.setdefault("__items__", []).append(item)

    def extend(self, items: object) -> None:
        self.setdefault("__items__", []).extend(items)


class UnsafeCheckpointError(Exception):
    """Raised by the restricted unpickler for a global that a weights file never needs."""


def _restricted_pickle_module():
    """A ``pickle``-like module for ``torch.load`` whose Unpickler only rebuilds allowed globals."""
    import pickle
    import types

    import torch

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            if name in _SAFE_GLOBALS.get(module, ()):
                return super().find_class(module, name)
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype | torch.layout):
                return getattr(torch, name)
            if module.split(".")[0] in _INERT_MODULE_PREFIXES:
                return type(name, (InertObject,), {"qualified_name": f"{module}.{name}"})
            raise UnsafeCheckpointError(f"{module}.{name}")

    def load(file, **kwargs):  # noqa: ANN001 - pickle.load's signature
        return RestrictedUnpickler(file, **kwargs).load()

    module = types.ModuleType("avatarcli_restricted_pickle")
    module.Unpickler = RestrictedUnpickler
    module.load = load
    module.__name__ = "avatarcli_restricted_pickle"
    return module


def load_checkpoint_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a (Lightning) checkpoint's tensors without ever executing code from the file.

    Tries ``torch.load(weights_only=True)`` first; Lightning checkpoints that also pickle
    hyper-parameter objects are then read with a restricted unpickler that replaces such metadata
    by inert placeholders and refuses any other global (e.g. ``os.system``).
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")

    def attempt(**kwargs: object) -> object:
        try:
            return torch.load(path, map_location="cpu", mmap=True, **kwargs)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", **kwargs)  # old non-zip format

    try:
        try:
            obj = attempt(weights_only=True)
        except pickle.UnpicklingError:
            obj = attempt(weights_only=False, pickle_module=_restricted_pickle_module())
    except UnsafeCheckpointError as exc:
        raise UserError(
            f"refusing to load {path}: it references {exc}, which a weights file never needs "
            "(the file may carry code); use the original DINAR checkpoint"
        ) from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError, KeyError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint ({detail})"
        ) from None

    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        raise UserError(
            f"{path} holds no state dict (found {type(obj).__name__}); it is not a DINAR checkpoint"
        )
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path} holds no tensors; it is not a DINAR checkpoint")
    return tensors


def read_dinar_checkpoint(
    path: str | os.PathLike, *, require_official_shapes: bool = True
) -> DinarCheckpointParts:
    """Load ``path`` safely and split it per network (see :func:`split_dinar_state_dict`)."""
    return split_dinar_state_dict(
        load_checkpoint_state_dict(path), require_official_shapes=require_official_shapes
    )
