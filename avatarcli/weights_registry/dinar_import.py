"""``avatar weights import dinar``: official Lightning checkpoint → our per-network safetensors.

Each network is checked twice before anything is written: its tensor names (and, by default,
shapes) against the official key list, then by loading it into our own network class, which
also yields the config stored in the file's metadata. Files and the manifest are written
atomically, so an interrupted import leaves the previous state intact.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatarcli.errors import UserError
from avatarcli.io_utils import sha256_file
from avatarcli.weights_registry.registry import WeightEntry, update_manifest, weights_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch

DINAR_LICENCE = "CC BY-NC 4.0 (DINAR, Samsung Labs): non-commercial use only"

#: Our network class per exported part (module, class); parts without one store shape facts only.
NETWORK_CLASSES: dict[str, tuple[str, str]] = {
    "dinar_encoder": ("avatarcli.nets.dinar_encoder", "DinarEncoder"),
    "dinar_generator": ("avatarcli.nets.dinar_generator", "DinarTextureGenerator"),
    "dinar_renderer": ("avatarcli.nets.dinar_renderer", "DinarRenderer"),
    "dinar_vq": ("avatarcli.nets.dinar_vq", "DinarVQ"),
    "dinar_unet": ("avatarcli.nets.dinar_unet", "DinarUNet"),
}


@dataclass
class ImportReport:
    entries: list[WeightEntry]
    notes: list[str] = field(default_factory=list)
    manifest: Path | None = None


def network_config(name: str, state_dict: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """(kind, config) for a part, validated by loading it into our network class.

    The network is built on the meta device, so even the 387 M-parameter UNet costs no memory.
    """
    import torch

    if name == "dinar_uv_layout":
        return name, {
            "num_uv_vertices": int(state_dict["uv"].shape[0]),
            "num_faces": int(state_dict["uv_faces"].shape[0]),
            "v_zero_is_top_row": True,
        }
    if name not in NETWORK_CLASSES:
        return name, {"tensors": len(state_dict)}
    module_name, class_name = NETWORK_CLASSES[name]
    net_class = getattr(importlib.import_module(module_name), class_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "copying into a meta parameter is a no-op"
            with torch.device("meta"):
                net = net_class.from_dinar_state_dict(state_dict, prefix="")
    except (ValueError, KeyError, UserError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"the checkpoint's {name} weights do not load into our network: {first_line}"
        ) from None
    return net_class.kind, net.config_dict()


def import_dinar(
    ckpt_path: str | os.PathLike,
    folder: Path | None = None,
    *,
    require_official_shapes: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Convert an official DINAR checkpoint into ``<name>.safetensors`` files plus manifest entries."""

    from avatarcli._version import __version__
    from avatarcli.nets import write_network_file
    from avatarcli.nets.dinar_checkpoint import read_dinar_checkpoint

    folder = folder or weights_dir()
    ckpt_path = Path(ckpt_path)
    say = progress or (lambda _msg: None)
    say(f"reading {ckpt_path}")
    parts = read_dinar_checkpoint(ckpt_path, require_official_shapes=require_official_shapes)
    configs = {}
    for name, tensors in parts.networks.items():
        configs[name] = network_config(name, tensors)
    say("hashing the source checkpoint")
    source_sha = sha256_file(ckpt_path)
    origin = f"converted from {ckpt_path.name} (sha256 {source_sha}) by avatarcli {__version__}"

    entries = []
    for name, tensors in parts.networks.items():
        kind, config = configs[name]
        target = folder / f"{name}.safetensors"
        say(f"writing {target}")
        write_network_file(target, tensors, kind, config)
        entries.append(WeightEntry.for_file(name, target, DINAR_LICENCE, origin, kind, config))
    manifest = update_manifest(entries, folder)
    return ImportReport(entries=entries, notes=parts.notes, manifest=manifest)
