"""SMPL-X as a body backend, from the user's own model files (``SMPLX_NEUTRAL.npz`` etc.).

The SMPL-X licence forbids redistribution, so the files are never bundled; the user points
``--smplx-dir`` / ``AVATAR_SMPLX_DIR`` at them. We use the ``smplx`` package for the model
maths (pose correctives, shape and expression blend shapes) with full (non-PCA) hand pose, so
the protocol's 55 axis-angle rotations map one-to-one onto SMPL-X's ``full_pose``.
UVs come from the file's ``vt``/``ft`` (flipped to v = 0 at the top row) when present.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from avatarcli.body.joints import NUM_JOINTS
from avatarcli.body.parts import face_parts_from_weights
from avatarcli.body.protocol import BodyModel, BodyOutput
from avatarcli.errors import UserError

GENDERS = ("neutral", "male", "female")


def find_model_file(folder: Path, gender: str) -> Path:
    """Locate ``SMPLX_<GENDER>.npz`` in ``folder`` or ``folder/smplx`` (smplx.create's layout)."""
    if gender not in GENDERS:
        raise UserError(f"unknown SMPL-X gender {gender!r}; choose neutral, male or female")
    name = f"SMPLX_{gender.upper()}.npz"
    for cand in (folder / name, folder / "smplx" / name):
        if cand.is_file():
            return cand
    if folder.is_file() and folder.suffix == ".npz":
        return folder
    raise UserError(
        f"no {name} in {folder} (or {folder / 'smplx'}); download the SMPL-X model files "
        "(.npz) from smpl-x.is.tue.mpg.de and point --smplx-dir at their folder"
    )


class SmplxBody(BodyModel):
    """SMPL-X through the ``smplx`` package, 10 betas by default, full hand pose."""

    name = "smplx"
    has_pose_correctives = True

    def __init__(self, path: Path, gender: str = "neutral", num_betas: int = 10) -> None:
        super().__init__()
        import smplx

        try:
            with np.load(path, allow_pickle=False) as npz:
                extras = {k: npz[k] for k in ("vt", "ft") if k in npz.files}
            with contextlib.redirect_stdout(io.StringIO()):  # smplx prints coefficient warnings
                self.model = smplx.SMPLX(
                    str(path), gender=gender, num_betas=num_betas, use_pca=False,
                    flat_hand_mean=True, num_expression_coeffs=10, ext="npz",
                )  # fmt: skip
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"cannot read SMPL-X model file {path}: {exc}") from exc
        self.num_shape = num_betas
        self.model_path = Path(path)
        self.model_id = f"smplx-{gender}-{Path(path).stat().st_size}"
        faces = torch.as_tensor(np.asarray(self.model.faces, dtype=np.int64))
        weights = self.model.lbs_weights.detach().float()
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("skin_weights", weights, persistent=False)
        rest_j = torch.einsum("jv,vc->jc", self.model.J_regressor, self.model.v_template)
        self.register_buffer("rest_joints", rest_j.float(), persistent=False)
        self.register_buffer("joint_valid", torch.ones(NUM_JOINTS, dtype=torch.bool), persistent=False)
        self.register_buffer("part_ids", face_parts_from_weights(weights, faces), persistent=False)
        if "vt" in extras and "ft" in extras:
            uv = torch.as_tensor(extras["vt"], dtype=torch.float32).clone()
            uv[:, 1] = 1.0 - uv[:, 1]
            uv_faces = torch.as_tensor(extras["ft"].astype(np.int64))
        else:  # no UV layout in the file: a degenerate one that renders, flagged for texture use
            uv = torch.full((1, 2), 0.5)
            uv_faces = torch.zeros_like(faces)
        self.has_uv = "vt" in extras
        self.register_buffer("uv", uv, persistent=False)
        self.register_buffer("uv_faces", uv_faces, persistent=False)

    @classmethod
    def load(cls, folder: Path, gender: str = "neutral") -> SmplxBody:
        return cls(find_model_file(Path(folder), gender), gender=gender)

    def forward(
        self,
        shape: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        batch, shape, pose = self.complete_inputs(shape, pose, transl)
        dtype, device = self.skin_weights.dtype, self.skin_weights.device
        zeros3 = torch.zeros(batch, 3, dtype=dtype, device=device)
        out = self.model(
            betas=shape.to(dtype),
            global_orient=pose[:, 0],
            body_pose=pose[:, 1:22].reshape(batch, -1),
            jaw_pose=pose[:, 22],
            leye_pose=pose[:, 23],
            reye_pose=pose[:, 24],
            left_hand_pose=pose[:, 25:40].reshape(batch, -1),
            right_hand_pose=pose[:, 40:55].reshape(batch, -1),
            expression=torch.zeros(batch, 10, dtype=dtype, device=device),
            transl=zeros3 if transl is None else transl.to(dtype),
            return_full_pose=False,
        )
        joints = out.joints[:, :NUM_JOINTS]
        from avatarcli.body.kinematics import axis_angle_to_matrix, forward_kinematics

        rest = self.rest_joints_for(shape)
        world = forward_kinematics(axis_angle_to_matrix(pose), rest, self.parents)
        world = world.clone()
        world[..., :3, 3] = joints
        return BodyOutput(vertices=out.vertices, joints=joints, joint_transforms=world)

    def rest_joints_for(self, shape: torch.Tensor) -> torch.Tensor:
        """Rest-pose joints (B, 55, 3) for ``shape`` (betas), as SMPL-X regresses them."""
        m = self.model
        v = m.v_template + torch.einsum("vck,bk->bvc", m.shapedirs[..., : self.num_shape], shape)
        return torch.einsum("jv,bvc->bjc", m.J_regressor, v)
