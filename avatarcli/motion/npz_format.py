"""avatarcli's own motion clip file: a plain ``.npz`` (no pickles) holding one :class:`Clip`.

Keys (see docs/MOTION_FORMAT.md):

=====================  ===============  ==================================================
key                    shape / dtype    meaning
=====================  ===============  ==================================================
``format``             () str           always ``"avatarcli-motion"``
``version``            () int           :data:`FORMAT_VERSION`; newer files are refused
``joint_names``        (J,) str         joint names (canonical SMPL-X names for SMPL clips)
``parents``            (J,) int32       parent index, −1 for the root; parents come first
``rest_offsets``       (J, 3) float32   metres, in the parent's rest frame (root: world)
``rest_rotations``     (J, 4) float32   local rest rotation, quaternion (w, x, y, z)
``rotations``          (T, J, 4) f32    local rotation per frame, quaternion (w, x, y, z)
``root_translation``   (T, 3) float32   root joint's world position per frame, metres
``fps``                () float64       frames per second
=====================  ===============  ==================================================

Y-up, metres, the character facing +Z with its left hand at +X.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from avatarcli.errors import InputFileError
from avatarcli.io_utils import atomic_write
from avatarcli.motion.clip import Clip

FORMAT_NAME = "avatarcli-motion"
FORMAT_VERSION = 1
_KEYS = ("joint_names", "parents", "rest_offsets", "rest_rotations", "rotations", "root_translation", "fps")


def is_clip_npz(data: Mapping[str, Any]) -> bool:
    return "format" in data and str(np.asarray(data["format"])) == FORMAT_NAME


def save_clip(clip: Clip, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write ``clip`` atomically as a compressed ``.npz``; returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")  # np.savez would append it anyway
    with atomic_write(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            format=np.array(FORMAT_NAME),
            version=np.array(FORMAT_VERSION, dtype=np.int32),
            joint_names=np.array(clip.joint_names, dtype=str),
            parents=clip.parents.astype(np.int32),
            rest_offsets=clip.rest_offsets.astype(np.float32),
            rest_rotations=clip.rest_rotations.astype(np.float32),
            rotations=clip.rotations.astype(np.float32),
            root_translation=clip.root_translation.astype(np.float32),
            fps=np.array(clip.fps, dtype=np.float64),
        )
    return path


def clip_from_npz(data: Mapping[str, Any], source: str) -> Clip:
    """Build a clip from the arrays of an avatarcli motion file, validating them."""
    version = int(np.asarray(data.get("version", -1)))
    if version > FORMAT_VERSION or version < 1:
        raise InputFileError(
            f"{source} is an avatarcli motion file of version {version}; this avatarcli reads "
            f"version {FORMAT_VERSION} (upgrade avatarcli)"
        )
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise InputFileError(
            f"{source} lacks {', '.join(missing)}; it is not a complete avatarcli motion file"
        )
    try:
        return Clip(
            joint_names=tuple(str(n) for n in np.asarray(data["joint_names"])),
            parents=np.asarray(data["parents"]),
            rest_offsets=np.asarray(data["rest_offsets"]),
            rest_rotations=np.asarray(data["rest_rotations"]),
            rotations=np.asarray(data["rotations"]),
            root_translation=np.asarray(data["root_translation"]),
            fps=float(np.asarray(data["fps"])),
            source=source,
            metadata={"format": FORMAT_NAME},
        )
    except ValueError as exc:
        raise InputFileError(f"{source}: inconsistent motion file ({exc})") from exc
