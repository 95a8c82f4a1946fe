"""Body models behind one protocol: ``load_body("anny")`` or ``load_body("smplx", model_dir=...)``."""

from __future__ import annotations

import os
from pathlib import Path

from avatarcli.body.protocol import BodyModel, BodyOutput
from avatarcli.errors import UserError

BACKENDS = ("anny", "smplx")

_CACHE: dict[tuple, BodyModel] = {}


def smplx_dir_from_env(explicit: str | os.PathLike | None = None) -> Path | None:
    """The SMPL-X model folder: ``--smplx-dir`` if given, else ``$AVATAR_SMPLX_DIR``."""
    value = explicit or os.environ.get("AVATAR_SMPLX_DIR")
    return Path(value).expanduser() if value else None


def load_body(
    name: str = "anny",
    *,
    model_dir: str | os.PathLike | None = None,
    gender: str = "neutral",
    device: str | None = None,
) -> BodyModel:
    """Build (or fetch from the in-process cache) a body model by backend name."""
    folder = smplx_dir_from_env(model_dir) if name == "smplx" else None  # the env var may change
    key = (name, str(folder), gender, str(device))
    if key in _CACHE:
        return _CACHE[key]
    if name == "anny":
        from avatarcli.body.anny_backend import AnnyBody

        body: BodyModel = AnnyBody.load()
    elif name == "smplx":
        from avatarcli.body.smplx_backend import SmplxBody

        if folder is None:
            raise UserError(
                "the smplx body needs the SMPL-X model files: pass --smplx-dir DIR or set "
                "AVATAR_SMPLX_DIR (register at smpl-x.is.tue.mpg.de to get SMPLX_NEUTRAL.npz)"
            )
        body = SmplxBody.load(folder, gender=gender)
    else:
        raise UserError(f"unknown body model {name!r}; choose one of: {', '.join(BACKENDS)}")
    if device is not None:
        body = body.to(device)
    _CACHE[key] = body
    return body


__all__ = ["BACKENDS", "BodyModel", "BodyOutput", "load_body", "smplx_dir_from_env"]
