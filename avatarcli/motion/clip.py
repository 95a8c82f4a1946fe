"""The in-memory motion clip every reader produces and the retargeter consumes.

Conventions (the same as the body protocol): **Y-up, metres, the character facing +Z, its
left hand at +X**. A clip is a joint tree with a fixed rest pose and per-frame *local*
rotations:

* ``rest_offsets[j]`` is joint ``j``'s position in its parent's frame at rest (for the root:
  its rest position in the world);
* ``rest_rotations[j]`` is joint ``j``'s local rotation at rest (identity for BVH and SMPL,
  whose rest frames are world-aligned; arbitrary for FBX bones);
* ``rotations[t, j]`` is the full local rotation at frame ``t`` (rest rotation included), so
  a frame whose rotations equal ``rest_rotations`` *is* the rest pose;
* ``root_translation[t]`` is the root joint's world position at frame ``t``.

Quaternions are (w, x, y, z). Arrays are float64 numpy; maths runs in torch float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from avatarcli.errors import UserError
from avatarcli.motion.rotations import quaternion_to_matrix, slerp


@dataclass
class Clip:
    """A skeletal animation normalised to Y-up metres, facing +Z."""

    joint_names: tuple[str, ...]
    parents: np.ndarray  # (J,) int, -1 for the root; every parent listed before its children
    rest_offsets: np.ndarray  # (J, 3)
    rest_rotations: np.ndarray  # (J, 4) wxyz
    rotations: np.ndarray  # (T, J, 4) wxyz
    root_translation: np.ndarray  # (T, 3)
    fps: float
    source: str = ""  # file the clip came from, for error messages
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parents = np.asarray(self.parents, dtype=np.int64)
        self.rest_offsets = np.asarray(self.rest_offsets, dtype=np.float64)
        self.rest_rotations = _unit(np.asarray(self.rest_rotations, dtype=np.float64))
        self.rotations = _unit(np.asarray(self.rotations, dtype=np.float64))
        self.root_translation = np.asarray(self.root_translation, dtype=np.float64)
        self.joint_names = tuple(str(n) for n in self.joint_names)
        j, t = len(self.joint_names), self.rotations.shape[0]
        if self.parents.shape != (j,) or self.rest_offsets.shape != (j, 3):
            raise ValueError("parents / rest_offsets do not match the joint count")
        if self.rest_rotations.shape != (j, 4) or self.rotations.shape != (t, j, 4):
            raise ValueError("rotation arrays do not match the joint/frame counts")
        if self.root_translation.shape != (t, 3):
            raise ValueError("root_translation must be (frames, 3)")
        if any(p >= i for i, p in enumerate(self.parents)) or (self.parents[:1] != -1).any():
            raise ValueError("parents must list every parent before its child, root first")
        if (self.parents[1:] < 0).any():
            raise ValueError("a clip has exactly one root joint")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be positive, got {self.fps}")

    # -- basic facts ---------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def duration(self) -> float:
        """Seconds from the first to one frame past the last (a 30-frame 30 fps clip lasts 1 s)."""
        return self.num_frames / self.fps

    def index(self, name: str) -> int:
        return self.joint_names.index(name)

    # -- forward kinematics --------------------------------------------------------------
    def global_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """World rotations (T, J, 3, 3) and positions (T, J, 3) of every joint, every frame."""
        rot = quaternion_to_matrix(torch.from_numpy(self.rotations))
        return _fk(
            rot, torch.from_numpy(self.rest_offsets), torch.from_numpy(self.root_translation), self.parents
        )

    def rest_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """World rotations (J, 3, 3) and positions (J, 3) in the rest pose."""
        rot = quaternion_to_matrix(torch.from_numpy(self.rest_rotations))[None]
        offsets = torch.from_numpy(self.rest_offsets)
        r, p = _fk(rot, offsets, offsets[:1], self.parents)
        return r[0], p[0]

    # -- editing (each returns a new clip) -------------------------------------------------
    def resample(self, fps: float) -> Clip:
        """The same motion sampled at ``fps``: slerp for rotations, linear for translation."""
        if not (fps > 0 and math.isfinite(fps)):
            raise UserError(f"frame rate must be positive, got {fps}")
        if self.num_frames < 2 or abs(fps - self.fps) < 1e-9:
            return replace(self, fps=float(fps))
        last = (self.num_frames - 1) / self.fps  # time of the last frame
        count = int(math.floor(last * fps + 1e-6)) + 1
        src = torch.arange(count, dtype=torch.float64) / fps * self.fps  # fractional source frame
        lo = src.floor().long().clamp(max=self.num_frames - 2)
        w = (src - lo).clamp(0, 1)
        rot = torch.from_numpy(self.rotations)
        q = slerp(rot[lo], rot[lo + 1], w[:, None].expand(-1, self.num_joints))
        tr = torch.from_numpy(self.root_translation)
        trans = tr[lo] * (1 - w[:, None]) + tr[lo + 1] * w[:, None]
        return replace(self, rotations=q.numpy(), root_translation=trans.numpy(), fps=float(fps))

    def trim(
        self,
        start: float | None = None,
        end: float | None = None,
        *,
        unit: str = "seconds",
    ) -> Clip:
        """Keep frames in [start, end) given in ``"seconds"`` or ``"frames"``; None = clip edge."""
        if unit not in ("seconds", "frames"):
            raise ValueError("unit must be 'seconds' or 'frames'")
        scale = self.fps if unit == "seconds" else 1.0
        first = 0 if start is None else int(round(start * scale))
        stop = self.num_frames if end is None else int(round(end * scale))
        first, stop = max(first, 0), min(stop, self.num_frames)
        if stop <= first:
            raise UserError(
                f"trimming {self.source or 'the clip'} to [{start}, {end}) {unit} leaves no frames "
                f"(it has {self.num_frames} frames, {self.duration:.2f} s)"
            )
        return replace(
            self, rotations=self.rotations[first:stop], root_translation=self.root_translation[first:stop]
        )

    def loop(self, times: int) -> Clip:
        """Play the clip ``times`` times; root travel continues from where each pass ended.

        Exported cycles often repeat their first pose as the last frame (Mixamo: 62 keys for
        a 1 s cycle at 60 fps); that frame is dropped between passes so the loop does not
        stutter.
        """
        if times < 1:
            raise UserError(f"loop count must be at least 1, got {times}")
        rot, trans = self.rotations, self.root_translation
        if self.num_frames > 2 and np.abs((rot[0] * rot[-1]).sum(-1)).min() > 1 - 1e-6:
            travel = trans[-1] - trans[0]  # the last frame closes the cycle
            rot, trans = rot[:-1], trans[:-1]
            tail_rot, tail_trans = self.rotations[-1:], self.root_translation[-1:]
        else:
            travel = trans[-1] - trans[0] + (trans[-1] - trans[0]) / max(self.num_frames - 1, 1)
            tail_rot, tail_trans = rot[:0], trans[:0]
        travel = travel * np.array([1.0, 0.0, 1.0])  # never drift vertically
        passes = [trans + k * travel for k in range(times)] + [tail_trans + (times - 1) * travel]
        rotations = np.concatenate([np.tile(rot, (times, 1, 1)), tail_rot])
        return replace(self, rotations=rotations, root_translation=np.concatenate(passes))

    def in_place(self) -> Clip:
        """Remove horizontal root motion (keep the height), e.g. for a treadmill walk."""
        trans = self.root_translation.copy()
        trans[:, [0, 2]] = trans[:1, [0, 2]]
        return replace(self, root_translation=trans)


def _unit(q: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(np.isfinite(q)) or np.any(norm < 1e-8):
        raise ValueError("rotations contain NaN, infinite or zero-length quaternions")
    return q / norm


def _fk(
    rot: torch.Tensor, offsets: torch.Tensor, root_pos: torch.Tensor, parents: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chain local rotations (T, J, 3, 3) and rest offsets (J, 3) down the tree."""
    world_r: list[torch.Tensor] = []
    world_p: list[torch.Tensor] = []
    for j, p in enumerate(parents):
        if p < 0:
            world_r.append(rot[:, j])
            world_p.append(root_pos.expand(rot.shape[0], 3))
        else:
            world_r.append(world_r[p] @ rot[:, j])
            world_p.append(world_p[p] + world_r[p] @ offsets[j])
    return torch.stack(world_r, 1).numpy(), torch.stack(world_p, 1).numpy()
