"""The body-model protocol every backend implements.

Conventions (see docs/ARCHITECTURE.md):

* coordinates are **Y-up, metres, the character facing +Z**, its left hand at +X (SMPL-X's);
* ``pose`` is ``(B, 55, 3)`` axis-angle, one rotation per canonical joint
  (:data:`avatarcli.body.joints.SMPLX_JOINT_NAMES`), each *local to its parent* and expressed
  in the world-aligned rest frame, exactly like SMPL-X's ``full_pose``. Index 0 is the global
  orientation. A zero pose is the backend's own rest pose (T-pose for SMPL-X, A-pose for anny);
* ``shape`` is a backend-specific ``(B, num_shape)`` vector (SMPL-X betas, anny phenotypes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class BodyOutput:
    """Result of posing a body. Joints follow the canonical 55-joint order."""

    vertices: torch.Tensor  # (B, V, 3)
    joints: torch.Tensor  # (B, 55, 3); rows with joint_valid False are best guesses
    joint_transforms: torch.Tensor  # (B, 55, 4, 4) world transform of each canonical joint


class BodyModel(ABC, torch.nn.Module):
    """A parametric body: shape + pose + translation → posed mesh and joints."""

    #: backend name used in avatar files and on the command line (``anny``, ``smplx``)
    name: str
    #: backend identity stored in avatar files; loading with another id fails clearly
    model_id: str
    num_shape: int
    #: True where posing adds pose-dependent shape offsets to linear blend skinning (SMPL-X's
    #: pose correctives), which a plain skinned export leaves out
    has_pose_correctives: bool = False

    # Buffers set by subclasses:
    faces: torch.Tensor  # (F, 3) long, counter-clockwise seen from outside
    uv: torch.Tensor  # (T, 2) float in [0, 1], v = 0 at the texture's top row
    uv_faces: torch.Tensor  # (F, 3) long into ``uv`` (per-corner UVs)
    skin_weights: torch.Tensor  # (V, 55) float, rows sum to 1, over canonical joints
    rest_joints: torch.Tensor  # (55, 3) joint positions at zero shape and pose
    joint_valid: torch.Tensor  # (55,) bool: False where the backend has no such joint
    part_ids: torch.Tensor  # (F,) long: body part per face (see avatarcli.body.parts)

    @property
    def joint_names(self) -> tuple[str, ...]:
        from avatarcli.body.joints import SMPLX_JOINT_NAMES

        return SMPLX_JOINT_NAMES

    @property
    def parents(self) -> tuple[int, ...]:
        from avatarcli.body.joints import SMPLX_PARENTS

        return SMPLX_PARENTS

    @property
    def num_vertices(self) -> int:
        return int(self.skin_weights.shape[0])

    def default_shape(self, batch: int = 1) -> torch.Tensor:
        """The neutral shape vector: zeros (SMPL-X betas; anny's PCA betas centred on its default)."""
        return torch.zeros(
            batch, self.num_shape, dtype=self.skin_weights.dtype, device=self.skin_weights.device
        )

    def complete_inputs(
        self, shape: torch.Tensor | None, pose: torch.Tensor | None, transl: torch.Tensor | None
    ) -> tuple[int, torch.Tensor, torch.Tensor]:
        """``(batch, shape, pose)`` with defaults filled in, in the model's dtype, pose as (B, 55, 3)."""
        from avatarcli.body.joints import NUM_JOINTS

        batch = next((t.shape[0] for t in (shape, pose, transl) if t is not None), 1)
        dtype, device = self.skin_weights.dtype, self.skin_weights.device
        shape = self.default_shape(batch) if shape is None else shape.to(dtype)
        if pose is None:
            pose = torch.zeros(batch, NUM_JOINTS, 3, dtype=dtype, device=device)
        return batch, shape, pose.to(dtype).reshape(batch, NUM_JOINTS, 3)

    @abstractmethod
    def forward(
        self,
        shape: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Pose the body. Missing arguments default to neutral shape, rest pose, origin."""

    def rest(self, shape: torch.Tensor | None = None) -> BodyOutput:
        """The body in its rest pose (no rotation, no translation)."""
        return self.forward(shape=shape)
