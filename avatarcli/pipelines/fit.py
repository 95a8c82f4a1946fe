"""``avatar fit``: perception + body fitting alone → fit files, overlay previews, quality.

Writes, per photo, ``<stem>.fit.json`` (format in :mod:`avatarcli.fitting.result`) and
``<stem>_fit.png`` (mesh and keypoints over the photo). For the ``smplx`` body it also writes a
DINAR-compatible ``<stem>.smplx.pkl`` (:mod:`avatarcli.fitting.export`): camera-space SMPL-X
parameters with a 63-d axis-angle body pose, 6 PCA components per hand, ``transl`` and our K. DINAR assumes
f = 5000 px on a 512² crop: fit with ``dinar_camera=True`` (focal ratio 5000/512) when the
export should drop straight into DINAR's data folder; otherwise use ``camera_intrinsics``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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


def fit_photos(
    photos: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    body_name: str = "anny",
    smplx_dir: str | None = None,
    iters: int = 400,
    mask: str | None = None,
    keypoints: str | None = None,
    sidecars: bool = True,
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
    from avatarcli.fitting.export import dinar_params, save_dinar_params
    from avatarcli.fitting.preview import save_overlay
    from avatarcli.perception import perceive

    if len(photos) > 1 and (mask or keypoints):
        raise UserError("--mask/--keypoints apply to a single photo")
    out = Path(out_dir)
    targets = [out / f"{Path(p).stem}.fit.json" for p in photos]
    for t in targets:
        if t.exists() and not overwrite:
            raise UserError(f"{t} already exists; pass --overwrite to replace it")
    perceptions = [perceive(p, mask=mask, keypoints=keypoints, sidecars=sidecars) for p in photos]
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
        if body.name == "smplx":  # DINAR's data folder layout: smplx/<pid>.pkl
            params = dinar_params(fit, body, smplx_model_file=body.model_path)
            result.dinar_exports.append(save_dinar_params(out / f"{Path(photo).stem}.smplx.pkl", params))
    return result
