"""avatarcli: photos of people → rigged, animatable full-body avatars.

The public Python API mirrors the CLI (``from avatarcli import create``). Heavy modules
(torch, mediapipe, diffusers) are imported lazily so ``import avatarcli`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from avatarcli._version import __version__

# public name → (module, attribute); resolved on first attribute access
_LAZY = {
    "create": ("avatarcli.pipelines.create", "create_avatar"),
    "create_batch": ("avatarcli.pipelines.create", "create_batch"),
    "CreateOptions": ("avatarcli.pipelines.create", "CreateOptions"),
    "animate": ("avatarcli.pipelines.animate", "animate"),
    "AnimateOptions": ("avatarcli.pipelines.animate", "AnimateOptions"),
    "render_still": ("avatarcli.pipelines.render_still", "render_still"),
    "export_glb": ("avatarcli.pipelines.export", "export_glb"),
    "ExportOptions": ("avatarcli.pipelines.export", "ExportOptions"),
    "fit": ("avatarcli.pipelines.fit", "fit_photos"),
    "load_body": ("avatarcli.body", "load_body"),
    "save_avatar": ("avatarcli.avatar_file", "save_avatar"),
    "load_avatar": ("avatarcli.avatar_file", "load_avatar"),
    "Avatar": ("avatarcli.avatar_file", "Avatar"),
    "load_motion": ("avatarcli.motion", "load_motion"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'avatarcli' has no attribute {name!r}")
