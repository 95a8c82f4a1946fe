"""Rotation conversions, forward kinematics and linear blend skinning in plain PyTorch.

Shared by every body backend and by motion retargeting so that all of them pose bodies with
the same maths (SMPL-style: local rotations in world-aligned rest frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, (..., 3) → (..., 3, 3); smooth (Taylor-safe) at zero angle."""
    theta2 = (aa * aa).sum(-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    theta = torch.sqrt(theta2.clamp_min(1e-12))
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos t)/t^2 with series fall-backs near zero so gradients stay finite
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix` via quaternions (robust near 180°)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(m))


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices → (..., 4) unit quaternions (w, x, y, z), w ≥ 0."""
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # four candidate solutions; pick the numerically best-conditioned per element
    q_abs = torch.sqrt(
        torch.stack(
            [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
        ).clamp_min(1e-12)
    )
    cands = torch.stack(
        [
            torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], -1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], -1),
        ],
        -2,
    ) / (2 * q_abs[..., None].clamp_min(0.1))
    best = q_abs.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z) → (..., 3) axis-angle with angle in [0, π]."""
    q = torch.where(q[..., :1] < 0, -q, q)
    xyz = q[..., 1:]
    s = xyz.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    scale = torch.where(s < 1e-8, 2.0 / q[..., :1].clamp_min(1e-8), angle / s.clamp_min(1e-12))
    return xyz * scale


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z) → (..., 3, 3)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def euler_to_matrix(angles_deg: torch.Tensor, order: str) -> torch.Tensor:
    """Intrinsic Euler angles in degrees, applied in ``order`` (e.g. ``"ZXY"`` as in BVH)."""
    rad = torch.deg2rad(angles_deg)
    out = torch.eye(3, dtype=rad.dtype, device=rad.device).expand(*rad.shape[:-1], 3, 3)
    for i, axis in enumerate(order.upper()):
        vec = torch.zeros(*rad.shape[:-1], 3, dtype=rad.dtype, device=rad.device)
        vec[..., "XYZ".index(axis)] = rad[..., i]
        out = out @ axis_angle_to_matrix(vec)
    return out


def forward_kinematics(rot: torch.Tensor, rest_joints: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """World transforms (B, J, 4, 4) of joints with local rotations ``rot`` (B, J, 3, 3).

    ``rest_joints`` (B, J, 3) are the joint positions in the rest pose; joint frames are
    world-aligned at rest (SMPL convention), so bone offsets are plain position differences.
    ``parents`` must list every parent before its children.
    """
    b, j = rot.shape[:2]
    offsets = rest_joints.clone()
    par = torch.as_tensor([max(p, 0) for p in parents], device=rot.device)
    offsets[:, 1:] = rest_joints[:, 1:] - rest_joints[:, par[1:]]
    local = torch.zeros(b, j, 4, 4, dtype=rot.dtype, device=rot.device)
    local[..., :3, :3] = rot
    local[..., :3, 3] = offsets
    local[..., 3, 3] = 1
    world: list[torch.Tensor] = []
    for i, p in enumerate(parents):
        world.append(local[:, i] if p < 0 else world[p] @ local[:, i])
    return torch.stack(world, 1)


def skinning_transforms(world: torch.Tensor, rest_joints: torch.Tensor) -> torch.Tensor:
    """Turn joint world transforms into rest→posed vertex transforms (remove rest offset)."""
    rel = world.clone()
    rel[..., :3, 3] = world[..., :3, 3] - (world[..., :3, :3] @ rest_joints[..., None])[..., 0]
    return rel


def linear_blend_skinning(
    rest_vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Pose ``rest_vertices`` (B, V, 3) with per-joint ``transforms`` (B, J, 4, 4)."""
    blended = torch.einsum("vj,bjkl->bvkl", weights, transforms)  # (B, V, 4, 4)
    return (blended[..., :3, :3] @ rest_vertices[..., None])[..., 0] + blended[..., :3, 3]
