"""avatarcli: photos of people → rigged, animatable full-body avatars.

The public Python API mirrors the CLI (``from avatarcli import create``). Heavy modules
(torch, mediapipe, diffusers) are imported lazily so ``import avatarcli`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from avatarcli._version import __version__

# public name → module that defines it; resolved on first attribute access
_LAZY = {
    "load_body": "avatarcli.body",
    "save_avatar": "avatarcli.avatar_file",
    "load_avatar": "avatarcli.avatar_file",
    "Avatar": "avatarcli.avatar_file",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avatarcli' has no attribute {name!r}")
