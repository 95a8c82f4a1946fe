"""The default body: anny (NAVER, Apache-2.0; MakeHuman/MPFB2 data, CC0), built offline.

anny itself is a 104-bone rig with six nonlinear phenotype sliders and a slow first build
(~1 min, ~800 MB cache). The tool needs much less, so on first use we derive a compact
SMPL-like model from it and cache only that (a few MB):

* **shape**: a 10-d linear (PCA) basis over anny's phenotype space (gender, age, muscle,
  weight, height, proportions sampled uniformly), centred on the default phenotype, scaled so
  each coefficient has unit variance — betas, like SMPL's;
* **skeleton**: the 55 canonical SMPL-X joints, each placed at the head of the anny bone that
  pivots it (table :data:`JOINT_PIVOT`), with anny's skinning weights summed onto them
  (twist bones, metacarpals and toes merge into their SMPL-X counterpart, table
  :data:`BONE_TO_JOINT`);
* **mesh**: anny's 13,718-vertex watertight mesh, per-corner UVs (v flipped so v = 0 is the
  texture's top row), Y-up metres facing +Z (anny is Z-up, −Y forward).

The rest pose is anny's A-pose. Posing uses :mod:`avatarcli.body.kinematics` (plain LBS).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from avatarcli.body.joints import JOINT_INDEX, NUM_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from avatarcli.body.kinematics import (
    axis_angle_to_matrix,
    forward_kinematics,
    linear_blend_skinning,
    skinning_transforms,
)
from avatarcli.body.parts import face_parts_from_weights
from avatarcli.body.protocol import BodyModel, BodyOutput
from avatarcli.runtime import cache_dir

CACHE_FORMAT = 1
NUM_BETAS = 10
_NUM_SHAPE_SAMPLES = 96

# anny (Z-up, −Y forward) → ours (Y-up, +Z forward): x' = x, y' = z, z' = −y
_ANNY_TO_OURS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

_FINGERS = {"index": 2, "middle": 3, "ring": 4, "pinky": 5, "thumb": 1}


def _sided(table: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        if "{s}" in key:
            out[key.format(s="L")] = value.format(side="left")
            out[key.format(s="R")] = value.format(side="right")
        else:
            out[key] = value
    return out


#: canonical joint → anny bone whose head is the joint's pivot
JOINT_PIVOT: dict[str, str] = {
    "pelvis": "root", "spine1": "spine04", "spine2": "spine02", "spine3": "spine01",
    "neck": "neck01", "head": "head",
    **{f"{side}_{j}": f"{bone}.{s}" for side, s in (("left", "L"), ("right", "R")) for j, bone in (
        ("hip", "upperleg01"), ("knee", "lowerleg01"), ("ankle", "foot"), ("foot", "toe3-1"),
        ("collar", "clavicle"), ("shoulder", "upperarm01"), ("elbow", "lowerarm01"),
        ("wrist", "wrist"), ("eye_smplhf", "eye"))},
    **{f"{side}_{f}{k}": f"finger{n}-{k}.{s}" for side, s in (("left", "L"), ("right", "R"))
       for f, n in _FINGERS.items() for k in (1, 2, 3)},
}  # fmt: skip
# SMPL-X calls the eye joints left_eye_smplhf; the table above built "left_eye_smplhf" already.

#: anny bone → canonical joint whose rotation moves the vertices it skins
BONE_TO_JOINT: dict[str, str] = {
    "root": "pelvis", "spine05": "pelvis", "spine04": "spine1", "spine03": "spine1",
    "spine02": "spine2", "spine01": "spine3", "neck01": "neck", "neck02": "neck",
    "neck03": "neck", "head": "head",
    **_sided({
        "pelvis.{s}": "pelvis", "upperleg01.{s}": "{side}_hip", "upperleg02.{s}": "{side}_hip",
        "lowerleg01.{s}": "{side}_knee", "lowerleg02.{s}": "{side}_knee", "foot.{s}": "{side}_ankle",
        "clavicle.{s}": "{side}_collar", "shoulder01.{s}": "{side}_collar",
        "upperarm01.{s}": "{side}_shoulder", "upperarm02.{s}": "{side}_shoulder",
        "lowerarm01.{s}": "{side}_elbow", "lowerarm02.{s}": "{side}_elbow", "wrist.{s}": "{side}_wrist",
        "eye.{s}": "{side}_eye_smplhf",
        **{f"metacarpal{n}.{{s}}": "{side}_wrist" for n in range(1, 5)},
        **{f"toe{t}-{k}.{{s}}": "{side}_foot" for t in range(1, 6) for k in range(1, 4)},
        **{f"finger{n}-{k}.{{s}}": f"{{side}}_{f}{k}" for f, n in _FINGERS.items() for k in (1, 2, 3)},
    }),
}  # fmt: skip


def cache_file() -> Path:
    import anny

    return cache_dir() / "body" / f"anny-{anny.__version__}-f{CACHE_FORMAT}.npz"


def _to_ours(x: np.ndarray) -> np.ndarray:
    return x @ _ANNY_TO_OURS.T


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def build_anny_data(log: Callable[[str], None] = _to_stderr) -> dict[str, np.ndarray]:
    """Derive the compact model from anny (slow: builds anny offline in a scratch cache)."""
    scratch = Path(tempfile.mkdtemp(prefix="anny-build-", dir=cache_dir()))
    old_env = os.environ.get("ANNY_CACHE_DIR")
    os.environ["ANNY_CACHE_DIR"] = str(scratch)
    try:
        import anny

        log("building the anny body model (first run only, about a minute)…")
        t0 = time.perf_counter()
        model = anny.Anny()
        log(f"anny built in {time.perf_counter() - t0:.0f} s; deriving the compact model…")
        labels = list(model.bone_labels)
        bone_index = {n: i for i, n in enumerate(labels)}
        pivot = [bone_index[JOINT_PIVOT.get(j, "head")] for j in SMPLX_JOINT_NAMES]

        rng = np.random.default_rng(0)
        phen = rng.random((_NUM_SHAPE_SAMPLES, len(model.phenotype_labels)))
        phen = np.concatenate([np.full((1, phen.shape[1]), 0.5), phen])
        verts, joints = [], []
        with torch.no_grad():
            for row in phen:
                out = model(phenotype_kwargs=dict(zip(model.phenotype_labels, row.tolist(), strict=True)))
                verts.append(_to_ours(out["rest_vertices"][0].numpy()))
                joints.append(_to_ours(out["rest_bone_heads"][0].numpy())[pivot])
        verts_a, joints_a = np.stack(verts), np.stack(joints)
        # jaw has no anny bone: put it between head pivot and chin level, flagged invalid
        jaw = JOINT_INDEX["jaw"]
        joints_a[:, jaw] = joints_a[:, JOINT_INDEX["head"]] + np.array([0.0, -0.03, 0.03])

        stacked = np.concatenate([verts_a.reshape(len(phen), -1), joints_a.reshape(len(phen), -1)], 1)
        delta = stacked[1:] - stacked[0]
        _, sing, vt = np.linalg.svd(delta, full_matrices=False)
        std = sing[:NUM_BETAS] / np.sqrt(len(delta))
        basis = (vt[:NUM_BETAS] * std[:, None]).T  # (3V+3J, K): unit-variance betas
        nv = verts_a.shape[1] * 3
        explained = float((sing[:NUM_BETAS] ** 2).sum() / (sing**2).sum())

        bone_w = model.vertex_bone_weights.numpy()
        bone_i = model.vertex_bone_indices.numpy()
        weights = np.zeros((verts_a.shape[1], NUM_JOINTS))
        bone_joint = np.array([JOINT_INDEX[BONE_TO_JOINT[n]] for n in labels])
        np.add.at(
            weights, (np.arange(len(weights))[:, None].repeat(bone_w.shape[1], 1), bone_joint[bone_i]), bone_w
        )
        weights /= weights.sum(1, keepdims=True)

        uv = model.texture_coordinates.numpy().astype(np.float64).copy()
        uv[:, 1] = 1.0 - uv[:, 1]
        valid = np.ones(NUM_JOINTS, bool)
        valid[jaw] = False
        return dict(
            v_template=verts_a[0].astype(np.float32),
            j_template=joints_a[0].astype(np.float32),
            shapedirs=basis[:nv].reshape(-1, 3, NUM_BETAS).astype(np.float32),
            jointdirs=basis[nv:].reshape(-1, 3, NUM_BETAS).astype(np.float32),
            faces=model.faces.numpy().astype(np.int32),
            uv=uv.astype(np.float32),
            uv_faces=model.face_texture_coordinate_indices.numpy().astype(np.int32),
            skin_weights=weights.astype(np.float32),
            joint_valid=valid,
            explained_variance=np.float32(explained),
            anny_version=np.array(anny.__version__),
        )
    finally:
        if old_env is None:
            os.environ.pop("ANNY_CACHE_DIR", None)
        else:
            os.environ["ANNY_CACHE_DIR"] = old_env
        shutil.rmtree(scratch, ignore_errors=True)


def load_anny_data(log: Callable[[str], None] = _to_stderr) -> dict[str, np.ndarray]:
    """The cached compact model, building it on first use (atomic write)."""
    path = cache_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # anny's warp prints a banner on stdout, which belongs to ``--json`` alone
        with contextlib.redirect_stdout(sys.stderr):
            data = build_anny_data(log)
        from avatarcli.io_utils import atomic_write

        with atomic_write(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **data)
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


class AnnyBody(BodyModel):
    """anny as a 55-joint LBS body with a 10-d PCA shape space (see module docstring)."""

    name = "anny"
    num_shape = NUM_BETAS

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.model_id = f"anny-{data['anny_version']}-pca{NUM_BETAS}-f{CACHE_FORMAT}"

        def buf(name: str, value: np.ndarray, dtype: torch.dtype = torch.float32) -> None:
            self.register_buffer(name, torch.as_tensor(value).to(dtype), persistent=False)

        buf("v_template", data["v_template"])
        buf("j_template", data["j_template"])
        buf("shapedirs", data["shapedirs"])
        buf("jointdirs", data["jointdirs"])
        buf("faces", data["faces"], torch.long)
        buf("uv", data["uv"])
        buf("uv_faces", data["uv_faces"], torch.long)
        buf("skin_weights", data["skin_weights"])
        buf("joint_valid", data["joint_valid"], torch.bool)
        buf("rest_joints", data["j_template"])
        buf("part_ids", face_parts_from_weights(self.skin_weights, self.faces), torch.long)
        self.explained_variance = float(data["explained_variance"])

    @classmethod
    def load(cls, log: Callable[[str], None] | None = None) -> AnnyBody:
        return cls(load_anny_data(log or _to_stderr))

    def shaped(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest-pose vertices (B, V, 3) and joints (B, 55, 3) for shape coefficients."""
        verts = self.v_template + torch.einsum("vck,bk->bvc", self.shapedirs, shape)
        joints = self.j_template + torch.einsum("jck,bk->bjc", self.jointdirs, shape)
        return verts, joints

    def forward(
        self,
        shape: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        batch, shape, pose = self.complete_inputs(shape, pose, transl)
        dtype = self.v_template.dtype
        rest_v, rest_j = self.shaped(shape)
        rot = axis_angle_to_matrix(pose)
        world = forward_kinematics(rot, rest_j, SMPLX_PARENTS)
        verts = linear_blend_skinning(rest_v, self.skin_weights, skinning_transforms(world, rest_j))
        joints = world[..., :3, 3]
        if transl is not None:
            offset = transl.to(dtype).reshape(batch, 1, 3)
            verts, joints = verts + offset, joints + offset
            world = world.clone()
            world[..., :3, 3] = joints
        return BodyOutput(vertices=verts, joints=joints, joint_transforms=world)
