"""The result of fitting one photo, and its file format.

File format (``*.fit.json``, UTF-8 JSON, one photo per file)::

    {
      "format": "avatarcli-fit", "version": 1,
      "body": "anny", "model_id": "...",              # backend that the numbers belong to
      "shape": [K floats],                            # backend shape vector (shared across views)
      "pose": [[x, y, z] * 55],                       # axis-angle, canonical SMPL-X joint order
      "transl": [x, y, z],                            # metres, world (Y-up, body facing +Z)
      "camera": {"K": 3x3, "R": 3x3, "t": [3], "width": W, "height": H},
                                                      # OpenCV: x_cam = R @ x_world + t
      "image": {"path": "...", "sha256": "..."},
      "view_index": i, "num_views": N,
      "keypoints": [[x, y, conf] * 25],               # the 2D keypoints that were fitted
      "quality": {"silhouette_iou": float | null, "keypoint_error_pct": float,
                  "keypoint_error_px": float, "person_height_px": float, "scored_keypoints": int},
      "warnings": ["..."], "settings": {...}
    }

Posing the body with ``shape``, ``pose``, ``transl`` and projecting with ``camera`` reproduces
the fit. ``R`` is diag(1, −1, −1) for every fit we make (see :mod:`avatarcli.fitting.camera`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avatarcli.errors import InputFileError

FIT_FORMAT = "avatarcli-fit"
FIT_VERSION = 1


@dataclass
class Fit:
    body: str
    model_id: str
    shape: np.ndarray  # (K,)
    pose: np.ndarray  # (55, 3)
    transl: np.ndarray  # (3,)
    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)
    width: int
    height: int
    image_path: str = ""
    image_sha256: str = ""
    view_index: int = 0
    num_views: int = 1
    keypoints: np.ndarray | None = None  # (25, 3)
    quality: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def camera(self):
        """This fit's :class:`avatarcli.render.camera.Camera`."""
        import torch

        from avatarcli.render.camera import Camera

        f32 = torch.float32
        return Camera(
            K=torch.as_tensor(self.K, dtype=f32),
            R=torch.as_tensor(self.R, dtype=f32),
            t=torch.as_tensor(self.t, dtype=f32),
            width=self.width,
            height=self.height,
        )

    def body_params(self, device=None):
        """``(shape (1,K), pose (1,55,3), transl (1,3))`` tensors ready for ``body(...)``."""
        import torch

        def t(a):
            return torch.as_tensor(np.asarray(a, np.float32), device=device)[None]

        return t(self.shape), t(self.pose), t(self.transl)


def _clean(value):
    """JSON-safe: arrays to lists, NaN to null."""
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def fit_to_dict(fit: Fit) -> dict:
    d = asdict(fit)
    return {
        "format": FIT_FORMAT,
        "version": FIT_VERSION,
        "body": fit.body,
        "model_id": fit.model_id,
        "shape": _clean(fit.shape),
        "pose": _clean(fit.pose),
        "transl": _clean(fit.transl),
        "camera": {
            "K": _clean(fit.K),
            "R": _clean(fit.R),
            "t": _clean(fit.t),
            "width": fit.width,
            "height": fit.height,
        },
        "image": {"path": fit.image_path, "sha256": fit.image_sha256},
        "view_index": fit.view_index,
        "num_views": fit.num_views,
        "keypoints": _clean(fit.keypoints) if fit.keypoints is not None else None,
        "quality": _clean(d["quality"]),
        "warnings": list(fit.warnings),
        "settings": _clean(d["settings"]),
    }


def save_fit(fit: Fit, path: str | os.PathLike) -> Path:
    """Write ``fit`` as JSON (atomically)."""
    from avatarcli.io_utils import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(fit_to_dict(fit), indent=1))
    return path


def load_fit(path: str | os.PathLike) -> Fit:
    """Read a fit file; a wrong or damaged file raises :class:`InputFileError`."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such fit file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable fit file ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != FIT_FORMAT:
        raise InputFileError(f"{path}: not an avatarcli fit file (no 'format': '{FIT_FORMAT}')")
    if int(d.get("version", 0)) > FIT_VERSION:
        raise InputFileError(
            f"{path}: fit file version {d['version']} is newer than this tool ({FIT_VERSION})"
        )
    try:
        cam = d["camera"]
        pose = np.asarray(d["pose"], np.float32)
        if pose.shape != (55, 3):
            raise ValueError(f"pose has shape {pose.shape}, expected (55, 3)")
        kp = d.get("keypoints")
        return Fit(
            body=str(d["body"]),
            model_id=str(d["model_id"]),
            shape=np.asarray(d["shape"], np.float32),
            pose=pose,
            transl=np.asarray(d["transl"], np.float32).reshape(3),
            K=np.asarray(cam["K"], np.float32).reshape(3, 3),
            R=np.asarray(cam["R"], np.float32).reshape(3, 3),
            t=np.asarray(cam["t"], np.float32).reshape(3),
            width=int(cam["width"]),
            height=int(cam["height"]),
            image_path=str(d.get("image", {}).get("path", "")),
            image_sha256=str(d.get("image", {}).get("sha256", "")),
            view_index=int(d.get("view_index", 0)),
            num_views=int(d.get("num_views", 1)),
            keypoints=None if kp is None else np.asarray(kp, np.float32),
            quality={k: (float("nan") if v is None else v) for k, v in d.get("quality", {}).items()},
            warnings=list(d.get("warnings", [])),
            settings=dict(d.get("settings", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: fit file is incomplete or damaged ({exc})") from None
