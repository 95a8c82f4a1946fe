"""Motion import and retargeting: any motion file → a :class:`Clip` → poses for a body.

``load_motion(path)`` reads FBX, BVH, AMASS/AIST++/SMPL-X and avatarcli clip files;
``retarget(clip, body)`` turns a clip into per-frame canonical-joint poses for a body model.
Names resolve lazily so the FBX child process (``python -m avatarcli.motion._fbx_worker``)
and ``avatar --help`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Clip": "avatarcli.motion.clip",
    "load_motion": "avatarcli.motion.readers",
    "save_clip": "avatarcli.motion.npz_format",
    "retarget": "avatarcli.motion.retargeting",
    "RetargetedMotion": "avatarcli.motion.retargeting",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avatarcli.motion' has no attribute {name!r}")
