"""Export a fit in the parameter layout DINAR's data loader reads (``smplx/<pid>.pkl``).

DINAR expects SMPL-X parameters for an **identity-rotation camera at the origin** (OpenCV
axes), each array with a batch dimension of 1:

* ``global_orient`` (1, 3), ``body_pose`` (1, 63) axis-angle for joints 1..21;
* ``left_hand_pose`` / ``right_hand_pose`` (1, 6) PCA coefficients (``use_pca=True``,
  ``flat_hand_mean=False``: full pose = hand mean + coefficients · components[:6]);
* ``betas`` (1, 10), ``jaw_pose`` (1, 3), ``expression`` (1, 10), ``transl`` (1, 3) = the
  body translation in camera space; ``camera_intrinsics`` (3, 3) = our K (DINAR's newer
  loader takes a per-frame K; its older default is f = 5000 px, see ``FitSettings.focal_px``).

Our fits use camera rotation diag(1, −1, −1) (see :mod:`avatarcli.fitting.camera`), so the
export folds that rotation into the body: ``R_g' = R_cam · R_g`` and
``transl' = R_cam · (j0 + transl) − j0`` with ``j0`` the rest pelvis at the fitted shape —
posing SMPL-X with the exported numbers gives exactly the same camera-space vertices.

Hands: the PCA coefficients are the least-squares projection of the fitted 45-d hand pose
onto the first 6 components of the SMPL-X file, which must be given (``smplx_model_file``)
since only it holds the components and mean. For the **anny** backend the same keys are
written with the same meaning in anny's canonical joint space, but ``betas`` are anny's
10 PCA shape coefficients and the hands are full 45-d axis-angle (anny has no hand PCA);
such a file drives our renderer, not DINAR's SMPL-X-based code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from avatarcli.body.kinematics import axis_angle_to_matrix, matrix_to_axis_angle


def _hand_pca(model_file: str | os.PathLike, side: str, count: int = 6) -> tuple[np.ndarray, np.ndarray]:
    key = "l" if side == "left" else "r"
    with np.load(model_file, allow_pickle=False) as npz:
        components = npz[f"hands_components{key}"][:count].astype(np.float64)
        return components, npz[f"hands_mean{key}"].astype(np.float64)


def dinar_params(
    fit, body, smplx_model_file: str | os.PathLike | None = None, hand_components: int = 6
) -> dict:
    """The DINAR parameter dict for ``fit`` (see the module docstring for each key)."""
    shape, pose, transl = fit.body_params(device=body.faces.device)
    with torch.no_grad():
        j0 = body.rest(shape).joints[0, 0].double().cpu()
    r_cam = torch.as_tensor(fit.R, dtype=torch.float64)
    pose64 = torch.as_tensor(fit.pose, dtype=torch.float64)
    global_orient = matrix_to_axis_angle(r_cam @ axis_angle_to_matrix(pose64[0]))
    cam_transl = r_cam @ (j0 + torch.as_tensor(fit.transl, dtype=torch.float64)) + torch.as_tensor(fit.t) - j0
    out = {
        "betas": fit.shape[None].astype(np.float32),
        "global_orient": global_orient.numpy()[None].astype(np.float32),
        "body_pose": fit.pose[1:22].reshape(1, 63).astype(np.float32),
        "jaw_pose": fit.pose[22][None].astype(np.float32),
        "expression": np.zeros((1, 10), np.float32),
        "transl": cam_transl.numpy()[None].astype(np.float32),
        "camera_intrinsics": fit.K.astype(np.float32),
    }
    for side, rows in (("left", slice(25, 40)), ("right", slice(40, 55))):
        full = fit.pose[rows].reshape(45).astype(np.float64)
        if fit.body == "smplx" and smplx_model_file is not None:
            comps, mean = _hand_pca(smplx_model_file, side, hand_components)
            coeffs, *_ = np.linalg.lstsq(comps.T, full - mean, rcond=None)
            out[f"{side}_hand_pose"] = coeffs[None].astype(np.float32)
        else:
            out[f"{side}_hand_pose"] = full[None].astype(np.float32)
    return out


def save_dinar_params(path: str | os.PathLike, params: dict) -> Path:
    """Write the dict as the pickle DINAR loads (plain dict of float32 arrays)."""
    from avatarcli.io_utils import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        pickle.dump({k: np.asarray(v) for k, v in params.items()}, f, protocol=4)
    return path
