"""The neural-weights registry: a folder of safetensors files plus a manifest; nothing is downloaded.

Public API (the CLI's ``avatar weights list|verify|import`` wrap these):
``weights_dir``, ``list_weights``, ``verify_weights``, ``require_weights``, ``load_safetensors``
(from :mod:`.registry`) and ``import_dinar`` (from :mod:`.dinar_import`, imported lazily because
it pulls in torch).
"""

from __future__ import annotations

from typing import Any

from avatarcli.weights_registry.registry import (
    KNOWN_WEIGHTS,
    WeightEntry,
    WeightStatus,
    list_weights,
    load_safetensors,
    read_manifest,
    require_weights,
    verify_weights,
    weights_dir,
)

__all__ = [
    "KNOWN_WEIGHTS",
    "WeightEntry",
    "WeightStatus",
    "import_dinar",
    "list_weights",
    "load_safetensors",
    "read_manifest",
    "require_weights",
    "verify_weights",
    "weights_dir",
]


def import_dinar(*args: Any, **kwargs: Any):
    """See :func:`avatarcli.weights_registry.dinar_import.import_dinar`."""
    from avatarcli.weights_registry.dinar_import import import_dinar as _import_dinar

    return _import_dinar(*args, **kwargs)
