"""Inspect the installation without doing any heavy work (no model builds, no weight loads)."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from avatarcli._version import __version__

KEY_PACKAGES = (
    "torch", "numpy", "smplx", "anny", "diffusers", "mediapipe", "opencv-contrib-python",
    "trimesh", "embreex", "imageio", "imageio-ffmpeg", "ufbx", "safetensors", "typer", "rich",
)  # fmt: skip
#: packages that add a feature when installed: name → what it adds
OPTIONAL_PACKAGES = {"pillow-heif": "HEIC/HEIF photos (pip install pillow-heif)"}


def _version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def device_report(requested: str = "auto") -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"requested": requested, "cuda_available": torch.cuda.is_available()}
    info["selected"] = "cuda" if (requested != "cpu" and info["cuda_available"]) else "cpu"
    info["cpu_threads"] = torch.get_num_threads()
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu_name"] = props.name
        info["gpu_memory_gb"] = props.total_memory / 2**30
    return info


def body_report(smplx_dir: Path | None) -> list[dict[str, Any]]:
    from avatarcli.body import smplx_dir_from_env
    from avatarcli.body.anny_backend import cache_file

    anny_cache = cache_file()
    bodies = [
        {
            "name": "anny",
            "available": True,
            "built": anny_cache.exists(),
            "detail": f"cached at {anny_cache}" if anny_cache.exists() else "builds on first use (~1 min)",
        }
    ]
    folder = smplx_dir_from_env(smplx_dir)
    found = []
    if folder is not None:
        for gender in ("neutral", "male", "female"):
            name = f"SMPLX_{gender.upper()}.npz"
            if (folder / name).is_file() or (folder / "smplx" / name).is_file():
                found.append(gender)
    detail = (
        "set --smplx-dir or AVATAR_SMPLX_DIR to a folder with SMPLX_*.npz"
        if folder is None
        else (f"{folder}: {', '.join(found)}" if found else f"no SMPLX_*.npz in {folder}")
    )
    bodies.append({"name": "smplx", "available": bool(found), "genders": found, "detail": detail})
    return bodies


def weights_report() -> list[dict[str, Any]]:
    try:
        from avatarcli.weights_registry import verify_weights
    except ImportError:  # registry not installed in this build
        return []
    return [{**s.to_json(), "file": str(s.path) if s.path else ""} for s in verify_weights()]


def doctor_report(smplx_dir: Path | None = None, device: str = "auto") -> dict[str, Any]:
    """Everything ``avatar doctor`` shows, as one JSON-serialisable dict."""
    return {
        "version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_report(device),
        "packages": {name: _version_of(name) for name in KEY_PACKAGES},
        "optional_packages": {name: _version_of(name) for name in OPTIONAL_PACKAGES},
        "bodies": body_report(smplx_dir),
        "weights": weights_report(),
    }
