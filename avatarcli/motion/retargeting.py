"""Retarget a :class:`Clip` onto a body's canonical SMPL-X skeleton.

The body protocol wants, per frame, one rotation per canonical joint, local to its parent in
world-aligned rest frames, where zero is the *body's* rest pose (anny: A-pose). A source rig
has its own rest pose (Mixamo/SMPL: T-pose, CMU: arms down, legs apart) and its own bone
frames, so rotations cannot be copied. Per mapped target joint ``j`` (source joint ``s``):

* ``D(t) = R_s(t) · R_s(rest)⁻¹`` — the source bone's world rotation *relative to its rest*;
* ``A_j`` — a fixed rotation taking the target's rest bone direction(s) onto the source's
  (minimal rotation for one child bone, a least-squares fit for several), so a T-pose
  source drives an A-pose target without twisting limbs;
* target world rotation ``W_j(t) = D(t) · A_j``; local ``L_j = W_parent⁻¹ · W_j``.

Joints with several child bones (pelvis: hips + spine; a wrist with fingers) are fitted per
frame to the children's directions (see :func:`_fit_several`). ``D`` is taken from
the source joint that actually swings the child bone (the child's source parent), so chains
with extra zero-length source joints (CMU's ``lowerneck``) stay exact. Unmapped target
joints keep their rest pose; a leaf (no mapped child) keeps its parent's alignment.

The root translation is scaled by the leg-length ratio (target hip height over source hip
height); heights are measured from each skeleton's lowest joint (the source's over the whole
clip), horizontal motion starts at the origin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avatarcli.body.joints import SMPLX_JOINT_NAMES, mirror_name
from avatarcli.body.kinematics import matrix_to_axis_angle
from avatarcli.errors import InputFileError
from avatarcli.motion.clip import Clip
from avatarcli.motion.mappings import match_joints
from avatarcli.motion.rotations import best_fit_rotation, rotation_between

#: source or target bones shorter than this (metres) carry no direction
MIN_BONE_M = 1e-3


@dataclass
class RetargetedMotion:
    """Per-frame body parameters in the body protocol's convention."""

    pose: torch.Tensor  # (T, 55, 3) axis-angle, local, world-aligned rest frames
    transl: torch.Tensor  # (T, 3) metres, added to every vertex
    fps: float
    joint_map: dict[int, int] = field(default_factory=dict)  # canonical index → source index
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])


@dataclass
class _Bone:
    """A target bone joint→child with its source counterpart."""

    joint: int
    child: int
    src_joint: int
    src_child: int
    driver: int  # source joint whose rotation swings this bone


def retarget(
    clip: Clip,
    body: Any,
    *,
    mapping: Mapping[str, str] | str | os.PathLike | None = None,
    in_place: bool = False,
    rest_joints: torch.Tensor | None = None,
) -> RetargetedMotion:
    """Turn ``clip`` into ``pose`` (T, 55, 3) and ``transl`` (T, 3) for ``body``.

    ``body`` needs ``rest_joints`` (55, 3) and ``parents`` (any :class:`BodyModel`, or a
    :class:`avatarcli.motion.skeletons.Skeleton`). ``mapping`` is a dict or a JSON/YAML file
    ``{source_name: smplx_joint_name}``; by default the best built-in map is used.
    ``rest_joints`` (55, 3) overrides ``body.rest_joints``, e.g. with a shaped avatar's
    ``body.rest(shape).joints[0]`` so bone directions and leg length are the avatar's own.
    """
    joint_map = match_joints(clip.joint_names, mapping, source=clip.source or "the motion")
    rest_src = body.rest_joints if rest_joints is None else rest_joints
    rest_t = torch.as_tensor(rest_src).detach().to("cpu", torch.float64).reshape(-1, 3)
    parents_t = [int(p) for p in body.parents]
    valid = getattr(body, "joint_valid", None)
    if valid is not None:
        valid_list = [bool(v) for v in torch.as_tensor(valid).tolist()]
        joint_map = {j: s for j, s in joint_map.items() if valid_list[j]}
    if 0 not in joint_map:
        raise InputFileError(f"{clip.source or 'the motion'}: the body has no pelvis joint to drive")

    src_rot, src_pos = (torch.from_numpy(a) for a in clip.global_transforms())
    src_rest_rot, src_rest_pos = (torch.from_numpy(a) for a in clip.rest_transforms())
    delta = src_rot @ src_rest_rot.transpose(-1, -2)[None]  # D(t) per source joint
    frames = clip.num_frames
    bones = target_bones(joint_map, parents_t, clip.parents, rest_t, src_rest_pos)
    by_joint: dict[int, list[_Bone]] = {}
    for bone in bones:
        by_joint.setdefault(bone.joint, []).append(bone)

    eye = torch.eye(3, dtype=torch.float64)
    world = [eye.expand(frames, 3, 3)] * len(parents_t)
    align = [eye] * len(parents_t)
    for j, p in enumerate(parents_t):
        inherited = align[p] if p >= 0 else eye
        if j not in joint_map:
            world[j] = world[p] if p >= 0 else eye.expand(frames, 3, 3)
            align[j] = inherited
            continue
        mine = by_joint.get(j, [])
        src_dirs = (
            torch.stack([src_rest_pos[b.src_child] - src_rest_pos[b.src_joint] for b in mine])
            if mine
            else None
        )
        if not mine:
            align[j] = inherited
            world[j] = delta[:, joint_map[j]] @ align[j]
        elif len(mine) == 1 or not _spans_plane(src_dirs):
            k = int(torch.argmax(src_dirs.norm(dim=-1)))
            align[j] = rotation_between(rest_t[mine[k].child] - rest_t[mine[k].joint], src_dirs[k])
            world[j] = delta[:, mine[k].driver] @ align[j]
        else:
            world[j], align[j] = _fit_several(mine, rest_t, src_rest_pos, src_pos)

    world_t = torch.stack(world, 1)  # (T, 55, 3, 3)
    par = torch.as_tensor([max(p, 0) for p in parents_t])
    local = world_t[:, par].transpose(-1, -2) @ world_t
    local[:, 0] = world_t[:, 0]
    pose = matrix_to_axis_angle(local)

    transl = _root_translation(clip, src_pos, src_rest_pos, joint_map[0], rest_t, in_place)
    return RetargetedMotion(
        pose=pose.float(),
        transl=transl.float(),
        fps=clip.fps,
        joint_map=dict(joint_map),
        source=clip.source,
    )


def target_bones(
    joint_map: Mapping[int, int],
    target_parents: list[int],
    source_parents: np.ndarray,
    target_rest: torch.Tensor,
    source_rest: torch.Tensor,
) -> list[_Bone]:
    """Target bones (mapped joint → nearest mapped descendant) with a usable source bone."""
    children: dict[int, list[int]] = {}
    for i, p in enumerate(target_parents):
        children.setdefault(p, []).append(i)
    out: list[_Bone] = []
    for j in sorted(joint_map):
        todo = list(children.get(j, []))
        while todo:
            c = todo.pop(0)
            if c not in joint_map:
                todo.extend(children.get(c, []))
                continue
            sj, sc = joint_map[j], joint_map[c]
            if not _is_ancestor(source_parents, sj, sc):
                continue
            if (source_rest[sc] - source_rest[sj]).norm() < MIN_BONE_M:
                continue
            if (target_rest[c] - target_rest[j]).norm() < MIN_BONE_M:
                continue
            out.append(_Bone(j, c, sj, sc, int(source_parents[sc])))
    return out


def _fit_several(
    bones: list[_Bone], rest_t: torch.Tensor, src_rest: torch.Tensor, src_pos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """World rotation per frame (and the rest alignment) of a joint with several child bones.

    Where a primary child and a sideways axis exist (:func:`_primary_and_axis`) the primary
    bone is matched exactly and the axis fixes the twist (TRIAD), so differing hip, collar or
    knuckle proportions cannot tilt the spine or the hand. Otherwise all child directions are
    fitted in the least-squares sense (Wahba's problem).
    """
    names = [SMPLX_JOINT_NAMES[b.child] for b in bones]
    triad = _primary_and_axis(names)

    def vec(pos: torch.Tensor, a: int, b: int) -> torch.Tensor:
        return pos[..., b, :] - pos[..., a, :]

    if triad is not None:
        c, left, right = (bones[i] for i in triad)
        tgt = _frame(vec(rest_t, c.joint, c.child), vec(rest_t, right.child, left.child))
        rest_src = _frame(
            vec(src_rest, c.src_joint, c.src_child), vec(src_rest, right.src_child, left.src_child)
        )
        now = _frame(vec(src_pos, c.src_joint, c.src_child), vec(src_pos, right.src_child, left.src_child))
        return now @ tgt.transpose(-1, -2), rest_src @ tgt.transpose(-1, -2)
    tgt_dirs = torch.stack([vec(rest_t, b.joint, b.child) for b in bones])
    src_dirs = torch.stack([vec(src_rest, b.src_joint, b.src_child) for b in bones])
    now = torch.stack([vec(src_pos, b.src_joint, b.src_child) for b in bones], 1)
    tgt_unit = tgt_dirs / tgt_dirs.norm(dim=-1, keepdim=True)
    align = best_fit_rotation(tgt_unit, src_dirs / src_dirs.norm(dim=-1, keepdim=True))
    frames = now.shape[0]
    return best_fit_rotation(tgt_unit.expand(frames, -1, -1), now / now.norm(dim=-1, keepdim=True)), align


def _primary_and_axis(names: list[str]) -> tuple[int, int, int] | None:
    """Indices (primary, axis end, axis start) among child names, or None.

    Pelvis / spine3: the central child (spine1 / neck) and the left→right pair (hips /
    collars). Wrist: the middle finger and the index→pinky (or ring) knuckle axis.
    """
    central = [i for i, n in enumerate(names) if mirror_name(n) == n]
    for i, n in enumerate(names):
        if central and n.startswith("left_") and mirror_name(n) in names:
            return central[0], i, names.index(mirror_name(n))
    for i, n in enumerate(names):
        if n.endswith("_middle1"):
            side = n[: -len("middle1")]
            for outer in ("pinky1", "ring1"):
                if side + "index1" in names and side + outer in names:
                    return i, names.index(side + "index1"), names.index(side + outer)
    return None


def _frame(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Orthonormal frame (..., 3, 3) whose first column is ``primary`` (TRIAD construction)."""
    a = primary / primary.norm(dim=-1, keepdim=True)
    b = secondary - (secondary * a).sum(-1, keepdim=True) * a
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([a, b, torch.linalg.cross(a, b)], -1)


def _is_ancestor(parents: np.ndarray, a: int, b: int) -> bool:
    b = int(parents[b])
    while b >= 0:
        if b == a:
            return True
        b = int(parents[b])
    return False


def _spans_plane(dirs: torch.Tensor) -> bool:
    """Whether several bone directions pin down a full rotation (not all parallel)."""
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    s = torch.linalg.svdvals(unit)
    return bool(s[1] > 0.1 * s[0])


def _root_translation(
    clip: Clip,
    src_pos: torch.Tensor,
    src_rest_pos: torch.Tensor,
    src_root: int,
    rest_t: torch.Tensor,
    in_place: bool,
) -> torch.Tensor:
    src_floor = float(src_pos[..., 1].min())
    src_leg = float(src_rest_pos[src_root, 1] - src_rest_pos[:, 1].min())
    tgt_floor = float(rest_t[:, 1].min())
    tgt_leg = float(rest_t[0, 1] - tgt_floor)
    scale = tgt_leg / src_leg if src_leg > MIN_BONE_M else 1.0
    root = src_pos[:, src_root]
    transl = torch.zeros_like(root)
    transl[:, 1] = tgt_floor + scale * (root[:, 1] - src_floor) - rest_t[0, 1]
    if not in_place:
        transl[:, [0, 2]] = scale * (root[:, [0, 2]] - root[:1, [0, 2]])
    return transl
