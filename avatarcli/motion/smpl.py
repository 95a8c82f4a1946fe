"""SMPL-family motion: AMASS ``.npz``, AIST++ ``.pkl``, SMPL / SMPL-X parameter files.

These store axis-angle rotations per SMPL joint but no joint positions. The joints *are* the
canonical SMPL-X joints, so clips are built on the T-pose template of
:mod:`avatarcli.motion.skeletons` with world-aligned rest frames; retargeting then maps them
joint for joint. Layouts are recognised by width: 22 joints (body), 24 (SMPL: the two hand
joints are dropped, SMPL-X has fingers instead), 52 (SMPL+H), 55 (SMPL-X).

AMASS stores Z-up worlds; a clip whose body "up" points along world +Z on average is turned
Y-up. AIST++'s ``smpl_trans`` is divided by ``smpl_scaling`` when the file has it (the
shared sample has none and is already in metres: the pelvis moves ~0.7 m, at ~1.85 m above
AIST++'s arbitrary floor).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from avatarcli.body.joints import NUM_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from avatarcli.body.kinematics import axis_angle_to_matrix
from avatarcli.errors import InputFileError
from avatarcli.motion.clip import Clip
from avatarcli.motion.rotations import matrix_to_quaternion
from avatarcli.motion.skeletons import smplx_template_joints

AIST_FPS = 60.0
DEFAULT_FPS = 30.0

#: joints per layout → canonical index of each source joint (None: dropped)
_LAYOUTS: dict[int, list[int | None]] = {
    22: list(range(22)),
    24: [*range(22), None, None],
    52: [*range(22), *range(25, 55)],
    55: list(range(55)),
}
_LAYOUT_NAMES = {22: "SMPL body", 24: "SMPL", 52: "SMPL+H", 55: "SMPL-X"}


def is_amass(data: Mapping[str, Any]) -> bool:
    return "poses" in data and ("trans" in data or "mocap_framerate" in data or "mocap_frame_rate" in data)


def is_aist(data: Mapping[str, Any]) -> bool:
    return "smpl_poses" in data


def is_smpl_params(data: Mapping[str, Any]) -> bool:
    return "body_pose" in data or "global_orient" in data


def clip_from_amass(data: Mapping[str, Any], source: str) -> Clip:
    poses = _array(data, "poses", source)
    fps = float(_scalar(data.get("mocap_framerate", data.get("mocap_frame_rate", DEFAULT_FPS))))
    trans = _array(data, "trans", source) if "trans" in data else np.zeros((len(poses), 3))
    return smpl_clip(poses, trans, fps, source, fmt="amass")


def clip_from_aist(data: Mapping[str, Any], source: str) -> Clip:
    poses = _array(data, "smpl_poses", source)
    trans = _array(data, "smpl_trans", source) if "smpl_trans" in data else np.zeros((len(poses), 3))
    if "smpl_scaling" in data:
        scale = float(np.asarray(data["smpl_scaling"], dtype=np.float64).reshape(-1)[0])
        if not scale > 0:
            raise InputFileError(f"{source}: smpl_scaling must be positive, got {scale}")
        trans = trans / scale
    fps = float(_scalar(data.get("fps", AIST_FPS)))
    return smpl_clip(poses, trans, fps, source, fmt="aist++")


def clip_from_smpl_params(data: Mapping[str, Any], source: str) -> Clip:
    """SMPL / SMPL-X parameter dicts: global_orient, body_pose, transl (+ jaw/eyes/hands)."""
    orient = _array(data, "global_orient", source) if "global_orient" in data else None
    body = _array(data, "body_pose", source) if "body_pose" in data else None
    frames = _frames(orient if orient is not None else body, 1 if orient is not None else None)
    if body is not None:
        body = body.reshape(frames, -1)
        if body.shape[1] not in (63, 69):
            raise InputFileError(
                f"{source}: body_pose has {body.shape[1]} values per frame; expected 63 (SMPL-X) or 69 (SMPL)"
            )
    parts = {
        0: orient.reshape(frames, 3) if orient is not None else None,
        1: body[:, :63] if body is not None else None,  # joints 1..21
        22: _optional(data, "jaw_pose", frames, 3, source),
        23: _optional(data, "leye_pose", frames, 3, source),
        24: _optional(data, "reye_pose", frames, 3, source),
        25: _optional(data, "left_hand_pose", frames, 45, source),
        40: _optional(data, "right_hand_pose", frames, 45, source),
    }
    full = np.zeros((frames, NUM_JOINTS * 3))
    for start, values in parts.items():
        if values is not None:
            full[:, start * 3 : start * 3 + values.shape[1]] = values
    trans = data.get("transl", data.get("trans"))
    trans = np.zeros((frames, 3)) if trans is None else np.asarray(trans, np.float64).reshape(frames, 3)
    fps = float(_scalar(data.get("fps", data.get("mocap_framerate", DEFAULT_FPS))))
    return smpl_clip(full, trans, fps, source, fmt="smpl-params")


def smpl_clip(poses: np.ndarray, trans: np.ndarray, fps: float, source: str, *, fmt: str) -> Clip:
    """Build a canonical-joint clip from (T, K*3) axis-angle poses and (T, 3) translations."""
    poses = np.asarray(poses, dtype=np.float64)
    frames = poses.shape[0]
    poses = poses.reshape(frames, -1)
    width = poses.shape[1] // 3
    if poses.shape[1] % 3 or width not in _LAYOUTS:
        raise InputFileError(
            f"{source}: pose vectors have {poses.shape[1]} values; expected 66, 72 (SMPL), 156 (SMPL+H) "
            "or 165 (SMPL-X)"
        )
    trans = np.asarray(trans, dtype=np.float64).reshape(-1, 3)
    if trans.shape[0] != frames:
        raise InputFileError(f"{source}: {frames} poses but {trans.shape[0]} translations")
    if frames == 0:
        raise InputFileError(f"{source}: the motion has no frames")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise InputFileError(f"{source}: poses or translations contain NaN/infinite values")
    rot = torch.eye(3, dtype=torch.float64).repeat(frames, NUM_JOINTS, 1, 1)
    src = axis_angle_to_matrix(torch.from_numpy(poses.reshape(frames, width, 3)))
    for k, target in enumerate(_LAYOUTS[width]):
        if target is not None:
            rot[:, target] = src[:, k]
    template = smplx_template_joints()
    parents = np.array(SMPLX_PARENTS)
    offsets = template - template[np.maximum(parents, 0)]
    offsets[0] = template[0]
    root = template[0] + trans  # SMPL rotates about the pelvis, then adds transl
    metadata = {"format": fmt, "layout": _LAYOUT_NAMES[width]}
    if _is_z_up(rot[:, 0]):
        fix = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]], dtype=torch.float64)
        rot[:, 0] = fix @ rot[:, 0]
        root = root @ fix.numpy().T
        metadata["up_axis"] = "Z (converted to Y)"
    return Clip(
        joint_names=SMPLX_JOINT_NAMES,
        parents=parents,
        rest_offsets=offsets,
        rest_rotations=np.tile([1.0, 0, 0, 0], (NUM_JOINTS, 1)),
        rotations=matrix_to_quaternion(rot).numpy(),
        root_translation=root,
        fps=fps,
        source=source,
        metadata=metadata,
    )


def _is_z_up(root_rot: torch.Tensor) -> bool:
    """True when the body's own up axis points mostly along world +Z (AMASS convention)."""
    up = root_rot[:, :, 1].mean(0)
    return bool(up[2] > 0.5 and up[2] > abs(up[1]))


def _array(data: Mapping[str, Any], key: str, source: str) -> np.ndarray:
    try:
        return np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{source}: '{key}' is not a numeric array") from exc


def _scalar(value: Any) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _frames(values: np.ndarray | None, per_frame_joints: int | None) -> int:
    if values is None:
        return 1
    if per_frame_joints == 1:
        return max(values.size // 3, 1)
    return values.shape[0] if values.ndim > 1 else 1


def _optional(data: Mapping[str, Any], key: str, frames: int, width: int, source: str) -> np.ndarray | None:
    if key not in data or data[key] is None:
        return None
    values = np.asarray(data[key], dtype=np.float64).reshape(frames, -1)
    if values.shape[1] != width:
        return None  # e.g. PCA hand poses (6/12 components) without the basis: keep rest
    return values
