"""Reading DINAR's official Lightning checkpoint and splitting it into one state dict per network.

The checkpoint is a pickle, so it is never loaded with plain ``pickle``: ``torch.load`` with
``weights_only=True`` first, then a restricted unpickler that can only rebuild tensors and plain
containers and refuses everything else (a pickle that carries code fails with a clear error).
"""

from __future__ import annotations

from collections.abc import Mapping
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
