"""Sidecar files: the person mask and OpenPose keypoints that datasets and tools keep beside a photo.

They follow a few fixed conventions — PIFu and ICON read ``<name>_mask.png``, OpenPose writes
``<name>_keypoints.json``, multi-view datasets keep one folder per kind next to the photos'
(``frames/0000.png`` with ``segmentations/0000.png`` and ``keypoints/0000_keypoints.json``).
Whoever has them wants them used without naming each one on the command line, and a folder of
photos must not treat them as photos: a mask has no person in it, and a DensePose IUV image or
one of our own previews makes a meaningless avatar.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")
#: ``<name><suffix>.<image>`` beside ``<name>.<image>`` is that photo's person mask
MASK_SUFFIXES = ("_mask", "_seg", "_segmentation", "_matte", "_alpha")
KEYPOINT_SUFFIX = "_keypoints"
#: other per-photo outputs (ours and common tools'): beside their photo they are never photos
OTHER_SUFFIXES = (
    "_densepose", "_densepose_iuv", "_iuv", "_normal", "_normals", "_depth",
    "_preview", "_fit", "_glb_preview", "_overlay",
)  # fmt: skip
#: folders beside the photos' folder that hold one mask / one keypoint file per photo
MASK_FOLDERS = ("masks", "mask", "segmentations", "segmentation", "mattes", "alpha")
KEYPOINT_FOLDERS = ("keypoints", "openpose")

_ALL_SUFFIXES = sorted((*MASK_SUFFIXES, KEYPOINT_SUFFIX, *OTHER_SUFFIXES), key=len, reverse=True)


@dataclass(frozen=True)
class Sidecars:
    """The sidecar files found for one photo (None: not there)."""

    mask: Path | None = None
    keypoints: Path | None = None


def _entries(folder: Path) -> dict[str, Path]:
    """Lower-case file name → path, for case-insensitive lookups (``IMG_1.JPG``, ``img_1_mask.png``)."""
    try:
        return {name.lower(): folder / name for name in os.listdir(folder)}
    except OSError:
        return {}


def _first(entries: dict[str, Path], names: Iterable[str], exclude: Path) -> Path | None:
    for name in names:
        hit = entries.get(name.lower())
        if hit is not None and hit.is_file() and hit.resolve() != exclude:
            return hit
    return None


def find_sidecars(photo: str | os.PathLike) -> Sidecars:
    """The mask and keypoints kept for ``photo``: beside it first, then in sibling kind-folders."""
    photo = Path(photo)
    stem, own = photo.stem, photo.resolve()
    beside = _entries(photo.parent)
    mask = _first(beside, (f"{stem}{s}{e}" for s in MASK_SUFFIXES for e in IMAGE_SUFFIXES), own)
    keypoints = _first(beside, [f"{stem}{KEYPOINT_SUFFIX}.json"], own)
    root = photo.parent.parent
    if photo.parent.name and root != photo.parent:
        names = [f"{stem}{s}{e}" for s in ("", *MASK_SUFFIXES) for e in IMAGE_SUFFIXES]
        for folder in MASK_FOLDERS:
            if mask is None and folder != photo.parent.name.lower():
                mask = _first(_entries(root / folder), names, own)
        names = [f"{stem}{KEYPOINT_SUFFIX}.json", f"{stem}.json"]
        for folder in KEYPOINT_FOLDERS:
            if keypoints is None:
                keypoints = _first(_entries(root / folder), names, own)
    return Sidecars(mask, keypoints)


def sidecar_base(path: Path, photo_stems: set[str]) -> str | None:
    """The stem of the photo ``path`` is a sidecar of (mask, IUV, preview, …), if that photo's stem
    is among ``photo_stems`` (lower case); else None."""
    stem = path.stem.lower()
    for suffix in _ALL_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix) and stem[: -len(suffix)] in photo_stems:
            return stem[: -len(suffix)]
    return None


def photos_in(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without the sidecars of photos listed with them or lying beside them (a folder's
    listing or a shell glob such as ``*.png`` → the photos)."""
    paths = list(paths)
    listed = {p.stem.lower() for p in paths}
    on_disk: dict[Path, set[str]] = {}
    kept = []
    for p in paths:
        if p.parent not in on_disk:
            names = _entries(p.parent)  # lower-case names
            on_disk[p.parent] = {Path(n).stem for n in names if Path(n).suffix in IMAGE_SUFFIXES}
        if sidecar_base(p, (listed | on_disk[p.parent]) - {p.stem.lower()}) is None:
            kept.append(p)
    return kept
