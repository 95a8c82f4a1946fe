"""Small rotation helpers for motion data (float64 torch), beyond :mod:`avatarcli.body.kinematics`.

Motion files disagree on everything (Euler orders, scaled bone matrices, quaternion signs), so
these helpers normalise them: orthonormalise matrices, interpolate quaternions, and find the
rotations that align bone directions between two skeletons.
"""

from __future__ import annotations

import torch

from avatarcli.body.kinematics import matrix_to_quaternion, quaternion_to_matrix

__all__ = [
    "best_fit_rotation",
    "matrix_to_quaternion",
    "orthonormalize",
    "quaternion_to_matrix",
    "rotation_between",
    "slerp",
]


def orthonormalize(m: torch.Tensor) -> torch.Tensor:
    """The rotation closest to ``m`` (..., 3, 3): strips scale/shear from FBX world matrices."""
    u, _, vh = torch.linalg.svd(m)
    r = u @ vh
    flip = torch.linalg.det(r) < 0  # a mirrored bone: keep a proper rotation
    if flip.any():
        u = u.clone()
        u[..., :, 2] = torch.where(flip[..., None], -u[..., :, 2], u[..., :, 2])
        r = u @ vh
    return r


def slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of unit quaternions (..., 4) with weights ``t`` (...) in [0, 1]."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)  # take the short way round
    dot = dot.abs().clamp(max=1.0)
    t = t[..., None]
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    near = sin_theta < 1e-6  # nearly identical: linear interpolation is exact enough
    w0 = torch.where(near, 1 - t, torch.sin((1 - t) * theta) / sin_theta.clamp_min(1e-12))
    w1 = torch.where(near, t, torch.sin(t * theta) / sin_theta.clamp_min(1e-12))
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


def rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The minimal rotation (..., 3, 3) turning direction ``a`` onto direction ``b``."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    v = torch.linalg.cross(a, b)
    c = (a * b).sum(-1)
    # opposite directions: rotate 180° about any axis perpendicular to a
    helper = torch.where(
        (a[..., :1].abs() < 0.9),
        torch.tensor([1.0, 0, 0], dtype=a.dtype),
        torch.tensor([0, 1.0, 0], dtype=a.dtype),
    )
    perp = torch.linalg.cross(a, helper)
    perp = perp / perp.norm(dim=-1, keepdim=True)
    q_normal = torch.cat([(1 + c)[..., None], v], -1)
    q_opposite = torch.cat([torch.zeros_like(c)[..., None], perp], -1)
    q = torch.where((c < -1 + 1e-9)[..., None], q_opposite, q_normal)
    return quaternion_to_matrix(q / q.norm(dim=-1, keepdim=True))


def best_fit_rotation(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotation R minimising Σ w‖R·src_i − dst_i‖² (Wahba/Kabsch) for (..., N, 3) direction sets."""
    if weights is None:
        weights = torch.ones(src.shape[-2], dtype=src.dtype)
    h = (dst * weights[..., None]).transpose(-1, -2) @ src  # (..., 3, 3) = Σ w dst srcᵀ
    u, _, vh = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(u @ vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return u @ fix @ vh
