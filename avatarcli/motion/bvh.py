"""BVH (Biovision hierarchy) reader: any per-joint channel order, any joint names, any units.

BVH rest frames are world-aligned (rest rotations are identity) and ``OFFSET`` s are in the
parent's frame. Units are not stored, so they are guessed from the skeleton's height: the
candidate unit (m, cm, mm, inch, or CMU's mocap unit of 1/0.45 inch, see
:data:`UNIT_CANDIDATES`) that makes the rest skeleton closest to an adult's joint span wins.
A Z-up file (head above the hips along +Z) is turned Y-up, and a skeleton whose left side
does not point along +X (found through the joint maps) is turned to face +Z.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from avatarcli.body.kinematics import euler_to_matrix
from avatarcli.errors import InputFileError, UserError
from avatarcli.motion.clip import Clip
from avatarcli.motion.rotations import matrix_to_quaternion, quaternion_to_matrix

#: metres per file unit. CMU's ASF/AMC unit is 1/0.45 inch; cgspeed's BVH keep it.
UNIT_CANDIDATES: dict[str, float] = {
    "m": 1.0,
    "dm": 0.1,
    "cm": 0.01,
    "mm": 0.001,
    "inch": 0.0254,
    "cmu": 0.0254 / 0.45,
    "foot": 0.3048,
}
#: a standing adult's rest-skeleton span including end sites (toe tip to head top), metres
TYPICAL_SPAN_M = 1.6
COMMON_UNITS = ("m", "cm", "mm")

_AXES = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}
_POSITIONS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}


class _Joint:
    def __init__(self, name: str, parent: int) -> None:
        self.name = name
        self.parent = parent
        self.offset = np.zeros(3)
        self.channels: list[str] = []


def read_bvh(path: str | os.PathLike, *, unit: str | None = None) -> Clip:
    """Read a BVH file into a :class:`Clip` (metres, Y-up). ``unit`` overrides the guess."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return _parse(text, path, unit)
    except (ValueError, IndexError) as exc:
        raise InputFileError(f"{path} is not a valid BVH file: {exc}") from exc


def _parse(text: str, path: Path, unit: str | None) -> Clip:
    tokens = text.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise ValueError("it does not start with HIERARCHY")
    joints: list[_Joint] = []
    stack: list[int] = []
    pos = 1
    pending: _Joint | None = None
    in_end_site = 0
    end_sites: list[tuple[int, np.ndarray]] = []
    while pos < len(tokens) and tokens[pos] != "MOTION":
        tok = tokens[pos]
        if tok in ("ROOT", "JOINT"):
            if tok == "ROOT" and joints:
                raise ValueError("more than one ROOT; only single-skeleton files are supported")
            pending = _Joint(tokens[pos + 1], stack[-1] if stack else -1)
            pos += 2
        elif tok == "End":  # "End Site": a leaf marker with an offset but no channels
            in_end_site += 1
            pos += 2
            if tokens[pos - 1] != "Site":
                raise ValueError("expected 'End Site'")
            pending = None
        elif tok == "{":
            if pending is not None:
                joints.append(pending)
                stack.append(len(joints) - 1)
                pending = None
            elif in_end_site:
                stack.append(-2)  # marks an End Site block
            else:
                raise ValueError("unexpected '{'")
            pos += 1
        elif tok == "}":
            if not stack:
                raise ValueError("unbalanced '}'")
            if stack.pop() == -2:
                in_end_site -= 1
            pos += 1
        elif tok == "OFFSET":
            values = np.array([float(v) for v in tokens[pos + 1 : pos + 4]])
            if stack and stack[-1] >= 0:
                joints[stack[-1]].offset = values
            elif stack:  # End Site: only used to measure the skeleton for the unit guess
                owner = next(i for i in reversed(stack) if i >= 0)
                end_sites.append((owner, values))
            pos += 4
        elif tok == "CHANNELS":
            count = int(tokens[pos + 1])
            names = tokens[pos + 2 : pos + 2 + count]
            if not stack or stack[-1] < 0:
                raise ValueError("CHANNELS outside a joint")
            unknown = [c for c in names if c not in _AXES and c not in _POSITIONS]
            if unknown or len(names) != count:
                raise ValueError(f"joint {joints[stack[-1]].name}: bad channel list {names}")
            joints[stack[-1]].channels = names
            pos += 2 + count
        else:
            raise ValueError(f"unexpected token {tok!r} in the hierarchy")
    if not joints:
        raise ValueError("no joints in the hierarchy")
    if stack:
        raise ValueError("the hierarchy is not closed (missing '}')")
    if pos + 5 > len(tokens) or tokens[pos : pos + 2] != ["MOTION", "Frames:"]:
        raise ValueError("missing the MOTION section")
    num_frames = int(tokens[pos + 2])
    if tokens[pos + 3 : pos + 5] != ["Frame", "Time:"]:
        raise ValueError("missing 'Frame Time:'")
    frame_time = float(tokens[pos + 5])
    if not frame_time > 0:
        raise ValueError(f"frame time must be positive, got {frame_time}")
    width = sum(len(j.channels) for j in joints)
    lines = [ln.split() for ln in text[text.index("Frame Time:") :].splitlines()[1:] if ln.strip()]
    bad = [i for i, ln in enumerate(lines[:num_frames]) if len(ln) != width]
    if bad:
        raise ValueError(
            f"frame {bad[0]} has {len(lines[bad[0]])} values but the hierarchy declares {width} channels"
        )
    if len(lines) < num_frames or num_frames < 1:
        raise ValueError(f"header says {num_frames} frames but the file has {len(lines)}")
    data = np.asarray(lines[:num_frames], dtype=np.float64)
    return _to_clip(joints, end_sites, data, 1.0 / frame_time, path, unit)


def _to_clip(
    joints: list[_Joint],
    end_sites: list[tuple[int, np.ndarray]],
    data: np.ndarray,
    fps: float,
    path: Path,
    unit: str | None,
) -> Clip:
    t = data.shape[0]
    rot = torch.eye(3, dtype=torch.float64).repeat(t, len(joints), 1, 1)
    offsets = np.stack([jt.offset for jt in joints])
    # root position channels are absolute (they replace the OFFSET), as in most tools
    root_pos = np.tile(offsets[0], (t, 1))
    col = 0
    for j, joint in enumerate(joints):
        axes = [_AXES[c] for c in joint.channels if c in _AXES]
        rot_cols = [col + i for i, c in enumerate(joint.channels) if c in _AXES]
        if j == 0:
            for i, c in enumerate(joint.channels):
                if c in _POSITIONS:
                    root_pos[:, _POSITIONS[c]] = data[:, col + i]
        if axes:
            rot[:, j] = euler_to_matrix(torch.from_numpy(data[:, rot_cols]), "".join(axes))
        col += len(joint.channels)
    scale = UNIT_CANDIDATES[unit] if unit else _guess_scale(offsets, [jt.parent for jt in joints], end_sites)
    offsets, root_pos = offsets * scale, root_pos * scale
    quats = matrix_to_quaternion(rot).numpy()
    clip = Clip(
        joint_names=tuple(jt.name for jt in joints),
        parents=np.array([jt.parent for jt in joints]),
        rest_offsets=offsets,
        rest_rotations=np.tile([1.0, 0, 0, 0], (len(joints), 1)),
        rotations=quats,
        root_translation=root_pos,
        fps=fps,
        source=str(path),
        metadata={"format": "bvh", "unit_scale": f"{scale:.6g}"},
    )
    return _face_forward(_z_up_to_y_up(clip))


def _rest_positions(offsets: np.ndarray, parents: list[int]) -> np.ndarray:
    out = np.zeros_like(offsets)
    for j, p in enumerate(parents):
        out[j] = offsets[j] + (out[p] if p >= 0 else 0.0)
    return out


def _guess_scale(offsets: np.ndarray, parents: list[int], end_sites: list[tuple[int, np.ndarray]]) -> float:
    """Metres per unit: the candidate that makes the rest skeleton's span most adult-like.

    Exotic units pay a small penalty so a short skeleton in centimetres is not read as inches.
    """
    rest = _rest_positions(offsets, parents)
    points = np.concatenate([rest, [rest[j] + off for j, off in end_sites]]) if end_sites else rest
    span = float((points.max(0) - points.min(0)).max())
    if span <= 0:
        return 1.0

    def cost(unit: str) -> float:
        return abs(np.log(span * UNIT_CANDIDATES[unit] / TYPICAL_SPAN_M)) + (
            0.0 if unit in COMMON_UNITS else 0.15
        )

    return UNIT_CANDIDATES[min(UNIT_CANDIDATES, key=cost)]


def _z_up_to_y_up(clip: Clip) -> Clip:
    """Turn a Z-up skeleton Y-up, (x, y, z) → (x, z, −y), when its rest pose is tallest along Z."""
    _, rest = clip.rest_transforms()
    span = rest.max(0) - rest.min(0)
    if not span[2] > 1.5 * max(span[0], span[1]):
        return clip
    clip = _change_basis(clip, np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]))
    clip.metadata["up_axis"] = "Z (converted to Y)"
    return clip


def _face_forward(clip: Clip) -> Clip:
    """Turn the skeleton about Y so its left side is +X (facing +Z), if it is off by > 45°.

    Left and right are found through the joint maps (hips, else shoulders); a rig whose
    names match no map is left as it is.
    """
    from avatarcli.body.joints import JOINT_INDEX
    from avatarcli.motion.mappings import match_joints

    try:
        found = match_joints(clip.joint_names, source=clip.source)
    except UserError:
        return clip
    _, rest = clip.rest_transforms()
    for left, right in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        if JOINT_INDEX[left] in found and JOINT_INDEX[right] in found:
            side = rest[found[JOINT_INDEX[left]]] - rest[found[JOINT_INDEX[right]]]
            break
    else:
        return clip
    yaw = np.arctan2(-side[2], side[0])  # angle of the left direction from +X, about +Y
    if np.hypot(side[0], side[2]) < 1e-6 or abs(yaw) <= np.pi / 4:
        return clip
    c, s = np.cos(-yaw), np.sin(-yaw)
    clip = _change_basis(clip, np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]]))
    clip.metadata["turned_deg"] = f"{np.rad2deg(-yaw):.0f}"
    return clip


def _change_basis(clip: Clip, fix_np: np.ndarray) -> Clip:
    """Rotate the whole clip by ``fix``; rest frames are world-aligned, so every local
    rotation is conjugated and offsets/translations are rotated."""
    fix = torch.from_numpy(fix_np)
    rot = fix @ quaternion_to_matrix(torch.from_numpy(clip.rotations)) @ fix.T
    clip.rotations = matrix_to_quaternion(rot).numpy()
    clip.rest_offsets = clip.rest_offsets @ fix_np.T
    clip.root_translation = clip.root_translation @ fix_np.T
    return clip
