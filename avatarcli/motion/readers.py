"""``load_motion(path)``: one entry point for every motion format, chosen by content.

The extension is only a hint; the first bytes decide (an ``.fbx`` that is really text fails
as "not an FBX file" rather than crashing a parser). Supported:

* FBX (binary 7.x / ASCII) — :mod:`avatarcli.motion.fbx`, parsed in a child process;
* BVH — :mod:`avatarcli.motion.bvh`;
* ``.npz``: avatarcli clips (:mod:`avatarcli.motion.npz_format`), AMASS, AIST++-style or
  SMPL(-X) parameter arrays (:mod:`avatarcli.motion.smpl`); read with ``allow_pickle=False``;
* ``.pkl``: AIST++ or SMPL(-X) parameter dicts, through the allow-list unpickler.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from avatarcli.errors import InputFileError
from avatarcli.motion import smpl
from avatarcli.motion.clip import Clip

SUPPORTED = ".fbx, .bvh, .npz (avatarcli / AMASS / SMPL-X params), .pkl (AIST++ / SMPL params)"


def sniff_format(path: Path, head: bytes) -> str:
    """'fbx', 'bvh', 'npz' or 'pkl' from the file's first bytes (extension as a tie-breaker)."""
    from avatarcli.motion.fbx import looks_like_fbx

    if looks_like_fbx(head):
        return "fbx"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"HIERARCHY"):
        return "bvh"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head[:1] == b"\x80" or (path.suffix.lower() == ".pkl" and head[:1] in (b"(", b"}", b"]")):
        return "pkl"
    ext = path.suffix.lower().lstrip(".")
    if ext in ("fbx", "bvh", "npz", "pkl"):
        raise InputFileError(f"{path} does not look like a {ext.upper()} file (its first bytes do not match)")
    raise InputFileError(f"{path}: unrecognised motion format; supported: {SUPPORTED}")


def load_motion(path: str | os.PathLike) -> Clip:
    """Read any supported motion file into a :class:`Clip` (Y-up, metres, facing +Z)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"motion file {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    if not head:
        raise InputFileError(f"motion file {path} is empty")
    kind = sniff_format(path, head)
    if kind == "fbx":
        from avatarcli.motion.fbx import read_fbx

        return read_fbx(path)
    if kind == "bvh":
        from avatarcli.motion.bvh import read_bvh

        return read_bvh(path)
    if kind == "npz":
        return _from_arrays(_read_npz(path), str(path))
    from avatarcli.motion.safe_pickle import safe_load_pickle

    data = safe_load_pickle(path)
    if not isinstance(data, Mapping):
        raise InputFileError(f"{path}: expected a dict of arrays in the pickle, found {type(data).__name__}")
    return _from_arrays(data, str(path))


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:  # object arrays need pickle: refused on purpose
        raise InputFileError(
            f"{path}: contains pickled objects, which are not loaded for safety ({exc})"
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFileError(f"{path} is not a readable .npz archive ({exc})") from exc


def _from_arrays(data: Mapping[str, Any], source: str) -> Clip:
    from avatarcli.motion.npz_format import clip_from_npz, is_clip_npz

    if is_clip_npz(data):
        return clip_from_npz(data, source)
    if smpl.is_aist(data):
        return smpl.clip_from_aist(data, source)
    if smpl.is_amass(data):
        return smpl.clip_from_amass(data, source)
    if smpl.is_smpl_params(data):
        return smpl.clip_from_smpl_params(data, source)
    keys = ", ".join(sorted(map(str, data.keys()))[:12])
    raise InputFileError(
        f"{source}: not a known motion layout (keys: {keys}); expected an avatarcli clip, AMASS "
        "'poses'/'trans', AIST++ 'smpl_poses' or SMPL(-X) 'global_orient'/'body_pose'"
    )
