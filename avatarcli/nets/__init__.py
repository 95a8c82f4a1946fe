"""Neural networks of the DINAR and StylePeople pipelines, in plain PyTorch.

Each network has a small config dataclass (``tiny()`` for tests, ``official()`` for the released
checkpoints), keeps its config on the module as ``net.config``, and converts official
checkpoints with ``from_dinar_state_dict`` / ``from_stylepeople_state_dict``. Our own safetensors
files use the official key names minus the checkpoint prefix.

Modules are imported explicitly (``from avatarcli.nets.dinar_encoder import DinarEncoder``) so
``import avatarcli.nets`` stays cheap for the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

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
