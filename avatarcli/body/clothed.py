"""A body with per-vertex clothing offsets: the parametric body plus a displacement layer.

A naked parametric body is thinner than a person in a loose jacket or with hair, so the
photos' colours of everything outside the body's outline are lost and the textures of several
photos do not line up at the outline (Alldieck et al.'s "SMPL+D" video avatars have the same
cause and the same cure). The offsets ``D`` (V, 3) live in the body's rest frame and are skinned
like the vertices they belong to, so the clothed mesh animates with the body::

    posed_clothed = LBS(rest + D) = LBS(rest) + Σ_j w_vj R_j D_v

``R_j`` is joint ``j``'s world rotation (the rest pose is world-aligned, so that is its
skinning rotation). Anything that poses the avatar's body through the protocol gets the
clothed mesh: rendering, animation, texture sampling.
"""

from __future__ import annotations

import torch

from avatarcli.body.protocol import BodyModel, BodyOutput


class ClothedBody(BodyModel):
    """``base`` with rest-frame vertex ``offsets`` (V, 3) in metres; otherwise the same body."""

    def __init__(self, base: BodyModel, offsets: torch.Tensor) -> None:
        super().__init__()
        if tuple(offsets.shape) != (base.num_vertices, 3):
            raise ValueError(
                f"clothing offsets must be ({base.num_vertices}, 3) for the {base.name} body, "
                f"got {tuple(offsets.shape)}"
            )
        self.base = base
        self.register_buffer("offsets", offsets.to(base.skin_weights))
        self.name = base.name
        self.model_id = base.model_id
        self.num_shape = base.num_shape
        self.has_pose_correctives = base.has_pose_correctives

    # The mesh, layout and skeleton are the base body's (properties follow ``.to(device)``).
    @property
    def faces(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.faces

    @property
    def uv(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.uv

    @property
    def uv_faces(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.uv_faces

    @property
    def skin_weights(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.skin_weights

    @property
    def rest_joints(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.rest_joints

    @property
    def joint_valid(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.joint_valid

    @property
    def part_ids(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.part_ids

    def default_shape(self, batch: int = 1) -> torch.Tensor:
        return self.base.default_shape(batch)

    def forward(
        self,
        shape: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        out = self.base(shape=shape, pose=pose, transl=transl)
        return BodyOutput(
            vertices=out.vertices + posed_offsets(self.offsets, self.skin_weights, out.joint_transforms),
            joints=out.joints,
            joint_transforms=out.joint_transforms,
        )


def posed_offsets(
    offsets: torch.Tensor, skin_weights: torch.Tensor, joint_transforms: torch.Tensor
) -> torch.Tensor:
    """Rest-frame offsets (V, 3) rotated by each vertex's blended joint rotation: (B, V, 3) for
    the ``joint_transforms`` (B, 55, 4, 4) of a :class:`BodyOutput`."""
    rotations = joint_transforms[..., :3, :3]  # (B, J, 3, 3)
    blended = torch.einsum("vj,bjkl->bvkl", skin_weights.to(rotations), rotations)
    return torch.einsum("bvkl,vl->bvk", blended, offsets.to(rotations))
