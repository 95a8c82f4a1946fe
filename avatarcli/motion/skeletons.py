"""Reference skeletons on the canonical SMPL-X joints: a T-pose template and an A-pose variant.

SMPL-family motion files (AMASS, AIST++, SMPL-X parameters) carry rotations but no joint
positions, so their clips are built on :func:`smplx_template_joints`, an average-adult
T-pose close to SMPL's neutral template (pelvis at SMPL's own rest height so that
``transl`` keeps its meaning). :class:`Skeleton` is also the stand-in target for
retargeting when no body model is loaded (tests, benchmarks without anny).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatarcli.body.joints import JOINT_INDEX, NUM_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS, mirror_name

# Left-side and central joints of an adult T-pose, metres, Y-up, facing +Z (left hand at +X).
_TEMPLATE_LEFT: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.000, -0.223, 0.028),
    "left_hip": (0.069, -0.315, 0.025),
    "spine1": (0.000, -0.110, 0.000),
    "left_knee": (0.105, -0.698, 0.016),
    "spine2": (0.000, 0.027, 0.005),
    "left_ankle": (0.089, -1.096, -0.027),
    "spine3": (0.000, 0.081, 0.026),
    "left_foot": (0.119, -1.154, 0.094),
    "neck": (0.000, 0.290, -0.014),
    "left_collar": (0.080, 0.197, -0.003),
    "head": (0.000, 0.353, 0.035),
    "left_shoulder": (0.174, 0.227, -0.017),
    "left_elbow": (0.435, 0.214, -0.036),
    "left_wrist": (0.687, 0.220, -0.040),
    "jaw": (0.000, 0.330, 0.055),
    "left_eye_smplhf": (0.031, 0.425, 0.085),
    "left_index1": (0.775, 0.215, -0.015),
    "left_index2": (0.810, 0.213, -0.012),
    "left_index3": (0.834, 0.212, -0.010),
    "left_middle1": (0.780, 0.216, -0.038),
    "left_middle2": (0.818, 0.214, -0.038),
    "left_middle3": (0.845, 0.212, -0.038),
    "left_pinky1": (0.757, 0.209, -0.085),
    "left_pinky2": (0.780, 0.207, -0.088),
    "left_pinky3": (0.797, 0.205, -0.090),
    "left_ring1": (0.770, 0.213, -0.062),
    "left_ring2": (0.803, 0.211, -0.064),
    "left_ring3": (0.828, 0.209, -0.066),
    "left_thumb1": (0.718, 0.205, 0.005),
    "left_thumb2": (0.745, 0.198, 0.030),
    "left_thumb3": (0.770, 0.192, 0.048),
}


def smplx_template_joints() -> np.ndarray:
    """(55, 3) T-pose joint positions in canonical order (right side mirrors the left)."""
    out = np.zeros((NUM_JOINTS, 3))
    for i, name in enumerate(SMPLX_JOINT_NAMES):
        if name in _TEMPLATE_LEFT:
            out[i] = _TEMPLATE_LEFT[name]
        else:
            x, y, z = _TEMPLATE_LEFT[mirror_name(name)]
            out[i] = (-x, y, z)
    return out


def a_pose_joints(arm_drop_deg: float = 45.0) -> np.ndarray:
    """The template with both arms lowered by ``arm_drop_deg`` at the shoulders (like anny)."""
    joints = smplx_template_joints()
    for side, sign in (("left", -1.0), ("right", 1.0)):
        pivot = joints[JOINT_INDEX[f"{side}_shoulder"]].copy()
        angle = np.deg2rad(sign * arm_drop_deg)
        rz = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        for i in _descendants(JOINT_INDEX[f"{side}_shoulder"]):
            joints[i] = pivot + rz @ (joints[i] - pivot)
    return joints


def _descendants(root: int) -> list[int]:
    out = [root]
    for i, p in enumerate(SMPLX_PARENTS):
        if p in out:
            out.append(i)
    return out[1:]


@dataclass
class Skeleton:
    """Just what retargeting needs from a body: rest joints on the canonical tree."""

    rest_joints: torch.Tensor  # (55, 3)
    parents: tuple[int, ...] = SMPLX_PARENTS
    joint_names: tuple[str, ...] = SMPLX_JOINT_NAMES
    joint_valid: torch.Tensor | None = None

    @classmethod
    def t_pose(cls) -> Skeleton:
        return cls(torch.from_numpy(smplx_template_joints()))

    @classmethod
    def a_pose(cls, arm_drop_deg: float = 45.0) -> Skeleton:
        return cls(torch.from_numpy(a_pose_joints(arm_drop_deg)))
