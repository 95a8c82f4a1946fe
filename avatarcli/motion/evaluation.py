"""How faithfully a retargeted motion reproduces its source: per-frame bone-direction angles.

For every target bone whose two ends are mapped (see :func:`retargeting.target_bones`), the
direction of the source bone (after the source's own FK) is compared with the direction of
the body's bone after posing the body's skeleton with the retargeted ``pose``. Both live in
the same world frame (retargeting keeps the source's facing), so the angle between them is
the error.

Some bones cannot point the same way in both skeletons even in the rest pose: a bone that is a
fixed offset inside its parent's frame (pelvis→hips, spine3→collars, wrist→thumb) has a rest
direction set by the skeleton's proportions (a wider or lower pelvis), and no joint rotation
changes it. For those *proportion-limited* bones the raw angle is their rest mismatch at every
frame, whatever the motion. :meth:`BoneErrors.rest_aligned` therefore scores them by whether
they **move** like the source: the source parent joint's world rotation since its rest pose,
applied to the target bone's direction in that same (retargeted) rest pose, must give the
target bone's direction at every frame. Bones whose rest directions agree keep the raw angle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from avatarcli.body.joints import SMPLX_JOINT_NAMES
from avatarcli.body.kinematics import axis_angle_to_matrix, forward_kinematics
from avatarcli.motion.clip import Clip
from avatarcli.motion.retargeting import RetargetedMotion, retarget, target_bones

#: bones whose rest directions differ by more than this cannot match with any rotation
PROPORTION_LIMIT_DEG = 2.0


@dataclass
class BoneErrors:
    bones: list[str]  # "joint→child" canonical names
    degrees: np.ndarray  # (T, B)
    rest_degrees: np.ndarray  # (B,) error with the source in its rest pose
    #: (T, B) error after rest alignment (module docstring); NaN-free, same shape as ``degrees``
    aligned_degrees: np.ndarray | None = None

    @property
    def proportion_limited(self) -> list[str]:
        """Bones sharing a parent joint whose rest directions no single rotation can match
        (e.g. pelvis→hips when the two pelvises differ in width/height ratio)."""
        return [b for b, r in zip(self.bones, self.rest_degrees, strict=True) if r > PROPORTION_LIMIT_DEG]

    def drift_from_rest(self) -> np.ndarray:
        """(B,) largest change of each bone's error away from its rest-pose error: for the
        proportion-limited bones this shows whether motion adds error on top of proportions."""
        if not self.degrees.size:
            return np.zeros(0)
        return np.abs(self.degrees - self.rest_degrees[None]).max(0)

    def transferable(self) -> BoneErrors:
        """The subset of bones that a perfect retarget reproduces exactly."""
        keep = self.rest_degrees <= PROPORTION_LIMIT_DEG
        names = [b for b, k in zip(self.bones, keep, strict=True) if k]
        aligned = None if self.aligned_degrees is None else self.aligned_degrees[:, keep]
        return BoneErrors(names, self.degrees[:, keep], self.rest_degrees[keep], aligned)

    def rest_aligned(self) -> BoneErrors:
        """Every bone: the raw angle where the rest directions agree, the rest-aligned angle
        (module docstring) for the proportion-limited ones."""
        if self.aligned_degrees is None:
            raise ValueError("no rest-aligned angles were computed")
        limited = self.rest_degrees > PROPORTION_LIMIT_DEG
        degrees = np.where(limited[None], self.aligned_degrees, self.degrees)
        return BoneErrors(list(self.bones), degrees, np.where(limited, 0.0, self.rest_degrees), degrees)

    @property
    def mean(self) -> float:
        return float(self.degrees.mean()) if self.degrees.size else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.degrees, 95)) if self.degrees.size else float("nan")

    @property
    def max(self) -> float:
        return float(self.degrees.max()) if self.degrees.size else float("nan")


def bone_direction_errors(clip: Clip, motion: RetargetedMotion, body: Any) -> BoneErrors:
    """Angles (degrees) between source and retargeted bone directions, per frame and bone, raw
    and rest-aligned (module docstring)."""
    moving = _directions(clip, motion, body)
    rest_clip = replace(
        clip,
        rotations=clip.rest_rotations[None],
        root_translation=clip.rest_offsets[:1],
    )
    rest = _directions(rest_clip, retarget(rest_clip, body, mapping=_names(clip, motion)), body)
    degrees = _angle(moving.source, moving.target)
    if not moving.names:
        return BoneErrors([], degrees, np.zeros(0), degrees)
    # the source parent's rotation since its rest pose, carried onto the target's rest bone
    since_rest = moving.source_parent_rotation @ rest.source_parent_rotation.transpose(-1, -2)
    predicted = (since_rest @ rest.target[..., None])[..., 0]
    aligned = _angle(predicted, moving.target)
    return BoneErrors(moving.names, degrees, _angle(rest.source, rest.target)[0], aligned)


def _names(clip: Clip, motion: RetargetedMotion) -> dict[str, str]:
    """The joint map actually used, as an explicit {source: target} mapping."""
    return {clip.joint_names[s]: SMPLX_JOINT_NAMES[j] for j, s in motion.joint_map.items()}


@dataclass
class _Directions:
    names: list[str]
    source: torch.Tensor  # (T, B, 3) source bone vectors
    target: torch.Tensor  # (T, B, 3) retargeted body bone vectors
    source_parent_rotation: torch.Tensor  # (T, B, 3, 3) world rotation moving each source bone


def _angle(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos)).numpy()


def _directions(clip: Clip, motion: RetargetedMotion, body: Any) -> _Directions:
    rest = torch.as_tensor(body.rest_joints).detach().to("cpu", torch.float64)
    parents = [int(p) for p in body.parents]
    src_rot, src_pos = clip.global_transforms()
    _, src_rest = clip.rest_transforms()
    src_rot, src_pos, src_rest = (
        torch.from_numpy(src_rot),
        torch.from_numpy(src_pos),
        torch.from_numpy(src_rest),
    )
    bones = target_bones(motion.joint_map, parents, clip.parents, rest, src_rest)
    frames = motion.num_frames
    rot = axis_angle_to_matrix(motion.pose.double())
    world = forward_kinematics(rot, rest.expand(frames, -1, -1), parents)
    tgt_pos = world[..., :3, 3]
    if not bones:
        empty = torch.zeros(frames, 0, 3, dtype=torch.float64)
        return _Directions([], empty, empty, torch.zeros(frames, 0, 3, 3, dtype=torch.float64))
    src_dir = torch.stack([src_pos[:, b.src_child] - src_pos[:, b.src_joint] for b in bones], 1)
    tgt_dir = torch.stack([tgt_pos[:, b.child] - tgt_pos[:, b.joint] for b in bones], 1)
    # a source bone's vector is its child's fixed offset turned by the child's parent joint
    moved_by = torch.stack([src_rot[:, int(clip.parents[b.src_child])] for b in bones], 1)
    names = [f"{SMPLX_JOINT_NAMES[b.joint]}→{SMPLX_JOINT_NAMES[b.child]}" for b in bones]
    return _Directions(names, src_dir, tgt_dir, moved_by)
