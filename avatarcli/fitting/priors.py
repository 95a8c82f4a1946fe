"""Priors that keep a fitted body human: hinge joints bend one way, poses stay moderate.

Hinge axes are derived from the body's own rest skeleton, so the same code works for a
T-pose (SMPL-X) and an A-pose (anny) rest: a knee bends its shin backwards (−Z), an elbow
brings its forearm forwards (+Z). For a rotation vector ``r`` of such a joint, the part
along the hinge axis ``a`` may be positive (flexion) but not negative (hyper-extension), and
the part off the axis (twisting or bending sideways) is penalised more than the rest of the
pose. This replaces SMPLify's hand-picked "elbow/knee exp" prior with the same idea.
"""

from __future__ import annotations

import torch

from avatarcli.body.joints import JOINT_INDEX

#: hinge joint → (child joint used for the bone direction, direction the child moves when flexing)
HINGES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "left_knee": ("left_ankle", (0.0, 0.0, -1.0)),
    "right_knee": ("right_ankle", (0.0, 0.0, -1.0)),
    "left_elbow": ("left_wrist", (0.0, 0.0, 1.0)),
    "right_elbow": ("right_wrist", (0.0, 0.0, 1.0)),
}

#: joint → (child joint, direction the child moves when flexing, free extension in radians):
#: a hip extends (thigh backwards) only ~10–20° in people, but a photo cannot tell a thigh
#: swung forward with a bent knee from one swung back with a straight knee (the depth
#: ambiguity); the plain magnitude prior prefers the latter, so extension past the margin is
#: penalised like a hinge's hyper-extension.
EXTENSION_LIMITS: dict[str, tuple[str, tuple[float, float, float], float]] = {
    "left_hip": ("left_knee", (0.0, 0.0, 1.0), 0.1),
    "right_hip": ("right_knee", (0.0, 0.0, 1.0), 0.1),
}

#: per-joint scale of the plain magnitude prior (bigger = stiffer); unlisted body joints get 1
STIFFNESS: dict[str, float] = {
    "spine1": 3.0, "spine2": 3.0, "spine3": 3.0, "neck": 2.0, "head": 1.0,
    "left_collar": 4.0, "right_collar": 4.0, "left_foot": 3.0, "right_foot": 3.0,
    "left_ankle": 1.5, "right_ankle": 1.5, "left_wrist": 1.0, "right_wrist": 1.0,
    "left_shoulder": 0.3, "right_shoulder": 0.3, "left_hip": 0.4, "right_hip": 0.4,
}  # fmt: skip


def _flexion_axes(rest_joints: torch.Tensor, joints: dict[str, tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, axes = [], []
    for joint, (child, flex, *_) in joints.items():
        bone = rest_joints[JOINT_INDEX[child]] - rest_joints[JOINT_INDEX[joint]]
        flex_dir = torch.tensor(flex, dtype=rest_joints.dtype, device=rest_joints.device)
        # rotating by +θ about a moves the bone towards a × bone; a = bone × flex gives flex_dir
        axes.append(torch.nn.functional.normalize(torch.linalg.cross(bone, flex_dir), dim=0))
        ids.append(JOINT_INDEX[joint])
    return torch.tensor(ids, device=rest_joints.device), torch.stack(axes)


def hinge_axes(rest_joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint ids (H,) and unit hinge axes (H, 3) from a (55, 3) rest skeleton."""
    return _flexion_axes(rest_joints, HINGES)


def extension_axes(rest_joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Joint ids (L,), unit flexion axes (L, 3) and free extension margins (L,) of
    :data:`EXTENSION_LIMITS` for a (55, 3) rest skeleton."""
    ids, axes = _flexion_axes(rest_joints, EXTENSION_LIMITS)
    margins = torch.tensor([m for *_, m in EXTENSION_LIMITS.values()], device=rest_joints.device)
    return ids, axes, margins.to(rest_joints.dtype)


def extension_prior(
    pose: torch.Tensor, ids: torch.Tensor, axes: torch.Tensor, margins: torch.Tensor
) -> torch.Tensor:
    """(B, L) penalty per limited joint on extension beyond its margin (flexion and sideways
    are free)."""
    along = (pose[:, ids] * axes).sum(-1)  # (B, L), positive = flexion
    return 10.0 * torch.relu(-along - margins) ** 2


def hinge_prior(pose: torch.Tensor, ids: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """(B, H) penalty per hinge joint: hyper-extension strongly, off-axis rotation moderately."""
    r = pose[:, ids]  # (B, H, 3)
    along = (r * axes).sum(-1)  # (B, H)
    off = r - along[..., None] * axes
    return 10.0 * torch.relu(-along) ** 2 + 2.0 * (off**2).sum(-1)


def stiffness_weights(device=None) -> torch.Tensor:
    """(22,) per-joint weights for the body joints 0..21 (index 0, global, unused: 0)."""
    from avatarcli.body.joints import BODY_JOINTS

    w = torch.tensor([STIFFNESS.get(n, 1.0) for n in BODY_JOINTS], device=device)
    w[0] = 0.0
    return w


def relaxed_pose(rest_joints: torch.Tensor, knee: float, elbow: float, hip: float) -> torch.Tensor:
    """(21, 3) body pose with knees, elbows and hips flexed by these angles (radians) about
    their flexion axes: where :func:`pose_prior` is centred."""
    relaxed = torch.zeros(21, 3, dtype=rest_joints.dtype, device=rest_joints.device)
    knees = (JOINT_INDEX["left_knee"], JOINT_INDEX["right_knee"])
    hinge_ids, hinge_ax = hinge_axes(rest_joints)
    for joint, axis in zip(hinge_ids.tolist(), hinge_ax, strict=True):
        relaxed[joint - 1] = axis * (knee if joint in knees else elbow)
    ext_ids, ext_ax, _ = extension_axes(rest_joints)
    for joint, axis in zip(ext_ids.tolist(), ext_ax, strict=True):
        relaxed[joint - 1] = axis * hip
    return relaxed


def pose_prior(
    pose: torch.Tensor, stiffness: torch.Tensor, relaxed: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, 21) weighted squared rotation of body joints 1..21 away from ``relaxed`` (21, 3)."""
    body = pose[:, 1:22] if relaxed is None else pose[:, 1:22] - relaxed
    return stiffness[1:22] * (body**2).sum(-1)


def hand_prior(pose: torch.Tensor) -> torch.Tensor:
    """(B,) squared magnitude of the 30 finger rotations (25..54)."""
    return (pose[:, 25:55] ** 2).sum((-1, -2))


def shape_prior(shape: torch.Tensor) -> torch.Tensor:
    """Squared shape coefficients (unit-variance PCA betas for anny and SMPL-X)."""
    return (shape**2).sum(-1)
