"""FBX reader: parses in a child process (:mod:`avatarcli.motion._fbx_worker`) and builds a clip.

The child hands back world matrices in metres, Y-up; here they become the clip's rest offsets,
rest rotations and per-frame local rotations. Scale baked into FBX bone matrices (Mixamo's
0.01 on the hips) is stripped by orthonormalising each rotation; offsets come from positions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from avatarcli.errors import InputFileError
from avatarcli.motion.clip import Clip
from avatarcli.motion.rotations import matrix_to_quaternion, orthonormalize

FBX_BINARY_MAGIC = b"Kaydara FBX Binary  \x00"
#: a child parse taking longer than this is killed (a pathological file, not a real clip)
PARSE_TIMEOUT_S = 300.0
#: the module run in the child (a test swaps in one that crashes on purpose)
WORKER_MODULE = "avatarcli.motion._fbx_worker"


def looks_like_fbx(head: bytes) -> bool:
    """Binary FBX magic, or the comment/header line an ASCII FBX starts with."""
    if head.startswith(FBX_BINARY_MAGIC):
        return True
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"; FBX") or text.startswith(b"FBXHeaderExtension")


def read_fbx(path: str | os.PathLike) -> Clip:
    """Read the longest take of an FBX file's skeleton into a :class:`Clip`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    if not looks_like_fbx(head):
        raise InputFileError(f"{path} is not an FBX file (no 'Kaydara FBX Binary' or ASCII FBX header)")
    arrays = _parse_in_child(path)
    return _to_clip(arrays, path)


def _parse_in_child(path: Path) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="avatarcli-fbx-") as tmp:
        out = Path(tmp) / "arrays.npz"
        cmd = [sys.executable, "-m", WORKER_MODULE, str(path), str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PARSE_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise InputFileError(f"{path}: the FBX parser gave up after {PARSE_TIMEOUT_S:.0f} s") from exc
        message = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode < 0:
            raise InputFileError(
                f"{path}: the FBX parser crashed (signal {-done.returncode}); the file is probably "
                "corrupt or uses features we cannot read"
            )
        if done.returncode != 0 or not out.exists():
            raise InputFileError(f"{path}: {message or f'the FBX parser failed (exit {done.returncode})'}")
        with np.load(out, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def _to_clip(arrays: dict[str, np.ndarray], path: Path) -> Clip:
    names = [str(n) for n in arrays["names"]]
    parents = arrays["parents"].astype(np.int64)
    keep = _main_skeleton(parents)
    remap = {old: new for new, old in enumerate(keep)}
    names = [names[i] for i in keep]
    parents = np.array([remap.get(int(parents[i]), -1) for i in keep])
    rest = torch.from_numpy(arrays["rest_world"][keep])
    world = torch.from_numpy(arrays["world"][:, keep])

    rest_rot, rest_pos = orthonormalize(rest[:, :3, :3]), rest[:, :3, 3]
    rot, pos = orthonormalize(world[..., :3, :3]), world[..., :3, 3]
    par = torch.as_tensor(np.maximum(parents, 0))
    rest_local = rest_rot[par].transpose(-1, -2) @ rest_rot
    rest_offsets = (rest_rot[par].transpose(-1, -2) @ (rest_pos - rest_pos[par])[..., None])[..., 0]
    local = rot[:, par].transpose(-1, -2) @ rot
    # the root keeps its world rotation and position
    rest_local[0], rest_offsets[0] = rest_rot[0], rest_pos[0]
    local[:, 0] = rot[:, 0]
    return Clip(
        joint_names=tuple(names),
        parents=parents,
        rest_offsets=rest_offsets.numpy(),
        rest_rotations=matrix_to_quaternion(rest_local).numpy(),
        rotations=matrix_to_quaternion(local).numpy(),
        root_translation=pos[:, 0].numpy(),
        fps=float(arrays["fps"]),
        source=str(path),
        metadata={"format": "fbx", "take": str(arrays["take"])},
    )


def _main_skeleton(parents: np.ndarray) -> list[int]:
    """Indices of the largest bone tree, parents first (files may hold props or extra rigs)."""
    roots = [i for i, p in enumerate(parents) if p < 0]
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        children.setdefault(int(p), []).append(i)

    def subtree(i: int) -> list[int]:
        out, todo = [], [i]
        while todo:
            j = todo.pop(0)
            out.append(j)
            todo.extend(children.get(j, []))
        return out

    return max((subtree(r) for r in roots), key=len)
