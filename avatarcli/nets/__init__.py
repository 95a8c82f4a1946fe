"""Neural networks of the DINAR and StylePeople pipelines, in plain PyTorch.

Each network has a small config dataclass (``tiny()`` for tests, ``official()`` for the released
checkpoints), keeps its config on the module as ``net.config``, and converts official
checkpoints with ``from_dinar_state_dict`` / ``from_stylepeople_state_dict``. Our own safetensors
files use the official key names minus the checkpoint prefix.

Modules are imported explicitly (``from avatarcli.nets.dinar_encoder import DinarEncoder``) so
``import avatarcli.nets`` stays cheap for the CLI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed (``prefix=""`` keeps everything)."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_exact_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint"
) -> None:
    """Load with strict semantics, failing with one readable ``ValueError`` that lists every
    missing key, unexpected key and shape mismatch (torch's own error stops at the first kind and
    is hard to read when a whole wrong checkpoint is given).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or mismatched:

        def listing(title: str, items: list[str]) -> str:
            if not items:
                return ""
            shown = ", ".join(items[:8]) + (f", … ({len(items) - 8} more)" if len(items) > 8 else "")
            return f"\n  {title} ({len(items)}): {shown}"

        raise ValueError(
            f"{what} does not match {type(module).__name__}:"
            + listing("missing keys", missing)
            + listing("unexpected keys", unexpected)
            + listing("shape mismatches", mismatched)
        )
    module.load_state_dict(dict(state_dict), strict=True)


def require_keys(
    state_dict: Mapping[str, torch.Tensor], keys: list[str], net_class: type, prefix: str
) -> None:
    """Fail early, with the prefix in the message, when a state dict lacks the keys sizes are read from."""
    absent = [k for k in keys if k not in state_dict]
    if absent:
        raise ValueError(
            f"not a {net_class.__name__} state dict: no {', '.join(repr(prefix + k) for k in absent)} "
            f"({len(state_dict)} keys found under prefix {prefix!r})"
        )


#: ``format`` metadata written into our network safetensors files.
NETWORK_FILE_FORMAT = "avatarcli.nets/1"


class SerializableNetwork:
    """What :func:`save_network` / :func:`load_network` need from a network (a mixin).

    Our files keep the official key names (without the checkpoint prefix) and the config as
    JSON. JSON turns tuples into lists, so list values become tuples again on the way back.
    Subclasses set ``config_class`` and hold their config dataclass in ``self.config``.
    """

    config_class: ClassVar[type]

    def to_safetensors_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    @classmethod
    def from_config_dict(cls, data: Mapping[str, Any]):
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(cls.config_class(**fields))


def write_network_file(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], kind: str, config: Mapping[str, Any]
) -> Path:
    """Write tensors as safetensors with our ``format``/``kind``/``config`` metadata, atomically."""
    from safetensors.torch import save_file

    from avatarcli.io_utils import atomic_write

    metadata = {"format": NETWORK_FILE_FORMAT, "kind": kind, "config": json.dumps(dict(config))}
    with atomic_write(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(path)


def save_network(net: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``net``: official key names minus prefix, with its kind and JSON config as metadata.

    ``net`` must provide ``kind``, ``config_dict()`` and ``to_safetensors_state_dict()``.
    """
    return write_network_file(path, net.to_safetensors_state_dict(), net.kind, net.config_dict())


def load_network(net_class: type, path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Read a file written by :func:`save_network` into a new ``net_class`` in eval mode.

    A file of another kind, without our metadata, or whose tensors do not fit the stored config
    raises :class:`~avatarcli.errors.InputFileError` naming the file.
    """
    from safetensors import SafetensorError, safe_open

    from avatarcli.errors import InputFileError

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise InputFileError(f"cannot read network weights {path}: {exc}") from exc
    if metadata.get("format") != NETWORK_FILE_FORMAT or metadata.get("kind") != net_class.kind:
        raise InputFileError(
            f"{path} is not an avatarcli {net_class.kind} weights file "
            f"(format {metadata.get('format')!r}, kind {metadata.get('kind')!r})"
        )
    try:
        net = net_class.from_config_dict(json.loads(metadata["config"]))
        load_exact_state_dict(net, tensors, str(path))
    except (ValueError, TypeError, KeyError) as exc:
        raise InputFileError(f"{path}: {exc}") from exc
    return net.to(device).eval()
