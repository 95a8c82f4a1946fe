"""The fitting camera convention and the first guess of where the body stands.

Convention (documented once, used everywhere in fitting):

* each photo has a fixed OpenCV pinhole camera (x right, y down, z forward) at the world
  origin with rotation :data:`FRONT_VIEW_R` = diag(1, −1, −1): a 180° turn about X, so a
  Y-up body facing +Z placed at negative world z stands upright and *faces the camera* with
  a zero global orientation;
* the body's global orientation (``pose[0]``) and translation carry all the per-photo
  motion; the camera itself is never optimised (like SMPLify), which keeps multi-view
  fitting simple: one camera per photo, one pose per photo, one shared shape;
* the focal length is a guess (EXIF-free photos do not tell it). :func:`default_focal` uses
  ``focal_ratio × max(H, W)`` with 1.5 by default. DINAR's fixed 5000 px on a 512² image is a
  ratio of ≈ 9.8 (a body 20 m away, nearly orthographic); ``FitSettings(focal_px=5000)``
  reproduces it. Measured on ryota / sith_002 / sith_007 (IoU, keypoint error % of height):
  ratio 1.0 → 0.84/0.88/0.88, 0.81/0.77/0.68 %; 1.5 → 0.85/0.88/0.88, 0.82/0.81/0.70 %;
  9.77 → 0.84/0.88/0.87, 0.97/0.93/0.93 %. The moderate lens fits keypoints slightly better.
"""

from __future__ import annotations

import math

import numpy as np
import torch

FRONT_VIEW_R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
#: focal length in units of the image's longer side (≈ a 50 mm lens on a full-frame camera)
DEFAULT_FOCAL_RATIO = 1.5
#: DINAR's default camera: 5000 px for a 512-pixel crop
DINAR_FOCAL_RATIO = 5000.0 / 512.0


def default_focal(width: int, height: int, focal_ratio: float = DEFAULT_FOCAL_RATIO) -> float:
    return float(focal_ratio * max(width, height))


def intrinsics_matrix(focal: float, width: int, height: int) -> torch.Tensor:
    """K with the principal point at the image centre (pixel centres at +0.5)."""
    return torch.tensor([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def make_camera(K: torch.Tensor, width: int, height: int):
    """A :class:`avatarcli.render.camera.Camera` in the fitting convention."""
    from avatarcli.render.camera import Camera

    return Camera(K=K.float(), R=FRONT_VIEW_R.clone(), t=torch.zeros(3), width=width, height=height)


def yaw_axis_angle(yaw_deg: float) -> torch.Tensor:
    """Axis-angle of a turn about the body's vertical (Y) axis."""
    return torch.tensor([0.0, math.radians(yaw_deg), 0.0])


def initial_translation(
    keypoints: np.ndarray,
    K: torch.Tensor,
    torso_length_m: float,
    pelvis_rest: torch.Tensor,
    min_conf: float = 0.2,
) -> torch.Tensor:
    """World translation that puts the pelvis under the 2D hips at the depth the torso implies.

    Depth = focal × (3D shoulder-to-hip length) / (2D length in pixels), the body assumed
    upright and parallel to the image plane. Falls back to the keypoints' vertical extent
    (≈ 0.8 of body height) when the torso is not seen.
    """
    from avatarcli.perception.keypoints import BODY_INDEX

    kp = np.asarray(keypoints, np.float64)

    def mid(a: str, b: str) -> np.ndarray | None:
        pa, pb = kp[BODY_INDEX[a]], kp[BODY_INDEX[b]]
        if pa[2] >= min_conf and pb[2] >= min_conf:
            return (pa[:2] + pb[:2]) / 2
        good = [p[:2] for p in (pa, pb) if p[2] >= min_conf]
        return good[0] if good else None

    f, cx, cy = float(K[0, 0]), float(K[0, 2]), float(K[1, 2])
    shoulders, hips = mid("left_shoulder", "right_shoulder"), mid("left_hip", "right_hip")
    if shoulders is not None and hips is not None and np.linalg.norm(shoulders - hips) > 2:
        depth = f * torso_length_m / float(np.linalg.norm(shoulders - hips))
        anchor = hips
    else:
        ok = kp[:, 2] >= min_conf
        if ok.sum() < 2:
            raise ValueError("too few keypoints to place the body")
        span = float(np.ptp(kp[ok, 1]))
        depth = f * 1.4 / max(span, 2.0)
        anchor = kp[ok, :2].mean(0)
    x_cam = (anchor[0] - cx) * depth / f
    y_cam = (anchor[1] - cy) * depth / f
    pelvis_world = FRONT_VIEW_R.T.double() @ torch.tensor([x_cam, y_cam, depth], dtype=torch.float64)
    return (pelvis_world - pelvis_rest.double()).float()
