"""Coarse body parts derived from skinning weights, identical for every backend.

Used for the occlusion colormap (DINAR §3.5), previews and per-part statistics. Deriving the
parts from the dominant canonical joint keeps them consistent across anny and SMPL-X.
"""

from __future__ import annotations

import torch

from avatarcli.body.joints import SMPLX_JOINT_NAMES

PART_NAMES: tuple[str, ...] = (
    "head", "torso", "left_upper_arm", "left_lower_arm", "left_hand", "right_upper_arm",
    "right_lower_arm", "right_hand", "left_upper_leg", "left_lower_leg", "left_foot",
    "right_upper_leg", "right_lower_leg", "right_foot",
)  # fmt: skip


def _joint_to_part(joint: str) -> str:
    side = "left" if joint.startswith("left_") else "right" if joint.startswith("right_") else ""
    base = joint.split("_", 1)[1] if side else joint
    if base in ("head", "jaw", "neck") or base.startswith("eye"):
        return "head"
    if base in ("pelvis", "spine1", "spine2", "spine3", "collar"):
        return "torso"
    if base == "shoulder":
        return f"{side}_upper_arm"
    if base == "elbow":
        return f"{side}_lower_arm"
    if base == "wrist" or base[:-1] in ("index", "middle", "pinky", "ring", "thumb"):
        return f"{side}_hand"
    if base == "hip":
        return f"{side}_upper_leg"
    if base == "knee":
        return f"{side}_lower_leg"
    if base in ("ankle", "foot"):
        return f"{side}_foot"
    raise ValueError(f"no body part for joint {joint}")


#: part index of each canonical joint
JOINT_PART: tuple[int, ...] = tuple(PART_NAMES.index(_joint_to_part(j)) for j in SMPLX_JOINT_NAMES)


def face_parts_from_weights(skin_weights: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Part id per face: the part holding most skinning weight over the face's corners."""
    joint_part = torch.as_tensor(JOINT_PART, device=skin_weights.device)
    part_w = torch.zeros(skin_weights.shape[0], len(PART_NAMES), dtype=skin_weights.dtype)
    part_w.index_add_(1, joint_part, skin_weights)
    return part_w[faces].sum(1).argmax(-1)
