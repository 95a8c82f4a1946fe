"""The neural-weights registry: a folder of safetensors files plus a manifest; nothing is downloaded.

Public API (the CLI's ``avatar weights list|verify|import`` wrap these):
``weights_dir``, ``list_weights``, ``verify_weights``, ``require_weights``, ``load_safetensors``
(from :mod:`.registry`), ``import_dinar`` (from :mod:`.dinar_import`) and ``import_lpips`` (from
:mod:`.lpips_import`); the importers are imported lazily because they pull in torch.
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
    "import_lpips",
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


def import_lpips(*args: Any, **kwargs: Any):
    """See :func:`avatarcli.weights_registry.lpips_import.import_lpips`."""
    from avatarcli.weights_registry.lpips_import import import_lpips as _import_lpips

    return _import_lpips(*args, **kwargs)
