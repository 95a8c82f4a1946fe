"""Which perceptual loss a pipeline gets: LPIPS-VGG when the user installed it, else SSIM.

LPIPS needs weights avatarcli never downloads (``avatar weights import lpips``), so every user of
it asks here and falls back to its SSIM term on ``None``. An installed but damaged file is an
error, not a silent fallback: the user asked for LPIPS by installing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from avatarcli.nets.lpips import LPIPS

LPIPS_WEIGHTS = "lpips_vgg"


def lpips_installed(folder: Path | None = None) -> bool:
    """Whether the weights manifest lists ``lpips_vgg`` (cheap: no file is read but the manifest)."""
    from avatarcli.weights_registry import read_manifest

    return any(e.name == LPIPS_WEIGHTS for e in read_manifest(folder))


def load_lpips_if_installed(device: torch.device | str = "cpu", folder: Path | None = None) -> LPIPS | None:
    """The installed LPIPS network (frozen, eval, on ``device``), or ``None`` when not installed.

    Raises :class:`~avatarcli.errors.MissingWeightsError` / ``InputFileError`` when the manifest
    lists it but the file is absent, resized or unreadable.
    """
    if not lpips_installed(folder):
        return None
    from avatarcli.nets import load_network
    from avatarcli.nets.lpips import LPIPS
    from avatarcli.weights_registry import require_weights

    path = require_weights([LPIPS_WEIGHTS], folder)[LPIPS_WEIGHTS]
    return load_network(LPIPS, path, device).requires_grad_(False)


def perceptual_name(lpips: LPIPS | None) -> str:
    """What provenance records as the perceptual term: ``"lpips_vgg"`` or ``"ssim"``."""
    return LPIPS_WEIGHTS if lpips is not None else "ssim"
