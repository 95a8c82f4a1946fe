"""``avatar fit``: perception + body fitting alone → fit files, overlay previews, quality.

Writes, per photo, ``<stem>.fit.json`` (format in :mod:`avatarcli.fitting.result`) and
``<stem>_fit.png`` (mesh and keypoints over the photo). For the ``smplx`` body it also writes a
DINAR-compatible ``<stem>.smplx.pkl``: camera-space SMPL-X parameters with a 63-d axis-angle
body pose, 6 PCA components per hand, ``camera_translation``, and our intrinsics. DINAR assumes
f = 5000 px on a 512² crop: fit with ``dinar_camera=True`` (focal ratio 5000/512) when the
export should drop straight into DINAR's data folder; otherwise use ``camera_intrinsics``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avatarcli.errors import UserError


@dataclass
class FitOutputs:
    fit_files: list[Path]
    previews: list[Path]
    dinar_exports: list[Path] = field(default_factory=list)
    quality: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "fit_files": [str(p) for p in self.fit_files],
            "previews": [str(p) for p in self.previews],
            "dinar_exports": [str(p) for p in self.dinar_exports],
            "quality": self.quality,
            "warnings": self.warnings,
        }


def dinar_params(fit, body) -> dict[str, np.ndarray]:
    """SMPL-X parameters in DINAR's camera-space convention (identity camera rotation).

    Our fits put the body in a world frame seen by a camera ``x_cam = R x + t``; DINAR expects
    the body already in camera space. The global rotation absorbs R, and because SMPL-X rotates
    about the pelvis joint J0, the translation becomes ``R J0 + R transl + t − J0``.
    """
    from avatarcli.body.kinematics import axis_angle_to_matrix, matrix_to_axis_angle

    if body.name != "smplx":
        raise UserError("the DINAR export needs the SMPL-X body (--body smplx --smplx-dir DIR)")
    pose = torch.as_tensor(np.asarray(fit.pose, np.float32))
    shape = torch.as_tensor(np.asarray(fit.shape, np.float32))[None]
    R = torch.as_tensor(np.asarray(fit.R, np.float32))
    t = torch.as_tensor(np.asarray(fit.t, np.float32))
    j0 = body.rest_joints_for(shape)[0, 0].detach()
    orient = matrix_to_axis_angle(R @ axis_angle_to_matrix(pose[0]))
    transl = R @ j0 + R @ torch.as_tensor(np.asarray(fit.transl, np.float32)) + t - j0
    with np.load(body.model_path, allow_pickle=False) as npz:
        comps = {s: npz[f"hands_components{s}"][:6] for s in ("l", "r")}
        means = {s: npz[f"hands_mean{s}"] for s in ("l", "r")}
    hands = {}
    for side, sl in (("l", slice(25, 40)), ("r", slice(40, 55))):
        full = pose[sl].reshape(-1).numpy() - means[side]
        hands[side] = full @ np.linalg.pinv(comps[side])  # least-squares PCA coefficients
    return {
        "betas": shape.numpy().astype(np.float32),
        "global_orient": orient.numpy()[None].astype(np.float32),
        "body_pose": pose[1:22].reshape(1, 63).numpy().astype(np.float32),
        "left_hand_pose": hands["l"][None].astype(np.float32),
        "right_hand_pose": hands["r"][None].astype(np.float32),
        "jaw_pose": pose[22].numpy()[None].astype(np.float32),
        "expression": np.zeros((1, 10), np.float32),
        "camera_translation": transl.numpy()[None].astype(np.float32),
        "camera_intrinsics": np.asarray(fit.K, np.float32),
        "gender": "neutral",
    }


def fit_photos(
    photos: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    body_name: str = "anny",
    smplx_dir: str | None = None,
    iters: int = 300,
    mask: str | None = None,
    keypoints: str | None = None,
    dinar_camera: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    progress=None,
) -> FitOutputs:
    """Perceive and fit 1..N photos of one person (shared shape) and write the results."""
    from avatarcli.body import load_body
    from avatarcli.fitting import FitSettings, fit_perceptions, save_fit
    from avatarcli.fitting.camera import DINAR_FOCAL_RATIO
    from avatarcli.fitting.preview import save_overlay
    from avatarcli.io_utils import atomic_write
    from avatarcli.perception import perceive

    if len(photos) > 1 and (mask or keypoints):
        raise UserError("--mask/--keypoints apply to a single photo")
    out = Path(out_dir)
    targets = [out / f"{Path(p).stem}.fit.json" for p in photos]
    for t in targets:
        if t.exists() and not overwrite:
            raise UserError(f"{t} already exists; pass --overwrite to replace it")
    perceptions = [perceive(p, mask=mask, keypoints=keypoints) for p in photos]
    body = load_body(body_name, model_dir=smplx_dir).to(device)
    settings = FitSettings(iters=iters, seed=seed)
    if dinar_camera:
        settings.focal_ratio = DINAR_FOCAL_RATIO
    fits = fit_perceptions(perceptions, body, settings=settings, progress=progress)
    result = FitOutputs([], [])
    for photo, perception, fit, target in zip(photos, perceptions, fits, targets, strict=True):
        result.fit_files.append(save_fit(fit, target))
        preview = out / f"{Path(photo).stem}_fit.png"
        result.previews.append(save_overlay(preview, perception.image, fit, body))
        result.quality.append(fit.quality)
        result.warnings.extend(list(perception.warnings) + list(fit.warnings))
        if body.name == "smplx":
            export = out / f"{Path(photo).stem}.smplx.pkl"
            with atomic_write(export) as tmp, open(tmp, "wb") as f:
                pickle.dump(dinar_params(fit, body), f, protocol=4)
            result.dinar_exports.append(export)
    return result
