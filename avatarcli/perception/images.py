"""Robust photo loading: whatever a user points us at becomes an RGB uint8 array or one clear error.

Handled: EXIF orientation, palette/grayscale/CMYK/16-bit/float modes, RGBA (the alpha is
returned separately because matted photos use it as the person mask), truncated files, empty
files, non-images, and decompression bombs (the pixel count is checked from the header
*before* the pixels are decoded). HEIC/HEIF (phones' default photo format) is read through the
optional ``pillow-heif`` package; without it such a photo, recognised by its name or its header,
fails with the command that installs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatarcli.errors import InputFileError

#: Largest image we decode (pixels). 100 MP covers any camera; bigger is almost surely a mistake
#: or a decompression bomb, and would need gigabytes of memory.
MAX_PIXELS = 100_000_000
#: Smallest side we accept: below this there is no person to detect.
MIN_SIDE = 32
#: An alpha channel counts as a person mask when at least this share of pixels is transparent.
MIN_TRANSPARENT_FRACTION = 0.05
HEIF_SUFFIXES = (".heic", ".heif")
#: ISO base-media brands of HEIF stills (bytes 8-12 of the file, after "ftyp" at 4-8)
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) float32 in [0, 1], only when it looks like a person mask


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read ``path`` as an upright RGB uint8 image; raise :class:`InputFileError` if it is not one."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty (0 bytes)")
    if is_heif(path):
        _enable_heif(path)
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise InputFileError(
            f"{path}: not an image file PIL can read (PNG, JPEG, WebP, TIFF, BMP...)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InputFileError(f"{path}: image is too large to decode safely ({exc})") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open image: {exc}") from None
    with img:
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise InputFileError(
                f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} MP), above the {MAX_PIXELS // 1_000_000} MP "
                "limit; downscale it first"
            )
        if min(w, h) < MIN_SIDE:
            raise InputFileError(f"{path}: image is only {w}x{h} pixels; need at least {MIN_SIDE} per side")
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputFileError(f"{path}: image data is damaged or truncated ({exc})") from None
        return _to_rgb(img)


def is_heif(path: Path) -> bool:
    """A HEIC/HEIF photo, by its name or (a phone photo renamed .jpg) by its header."""
    if path.suffix.lower() in HEIF_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _enable_heif(path: Path) -> None:
    """Let PIL open HEIF through pillow-heif, or say how to get it."""
    try:
        import pillow_heif
    except ImportError:
        raise InputFileError(
            f"{path}: a HEIC/HEIF photo (phones' default format) needs the optional pillow-heif "
            "package: pip install pillow-heif (or save the photo as JPEG)"
        ) from None
    pillow_heif.register_heif_opener()


def _to_rgb(img) -> LoadedImage:
    """Convert any PIL mode to 8-bit RGB plus an optional alpha mask."""
    mode = img.mode
    alpha: np.ndarray | None = None
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
        img = img.convert("RGB") if mode != "LA" else img.convert("L")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    elif mode == "CMYK":
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if alpha is not None and (alpha < 0.5).mean() < MIN_TRANSPARENT_FRACTION:
        alpha = None  # an opaque (or almost opaque) alpha channel says nothing about the person
    return LoadedImage(rgb=np.ascontiguousarray(rgb), alpha=alpha)


def load_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Read a person-mask image as float32 in [0, 1], resized to ``size`` = (W, H) if needed.

    Any non-black pixel is foreground for colour masks (part segmentations), alpha is used
    when present, and 8/16-bit grayscale is scaled to [0, 1].
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputFileError(f"{path}: mask file is missing or empty")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputFileError(f"{path}: mask is {w}x{h}, too large")
            img.load()
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            if img.mode in ("RGBA", "LA") and (np.asarray(img.getchannel("A")) < 128).mean() > 0.01:
                mask = np.asarray(img.getchannel("A"), np.float32) / 255.0
            elif img.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
                rgb = np.asarray(img.convert("RGB"), np.float32)
                mask = (rgb.max(axis=2) > 10).astype(np.float32)
            else:
                arr = np.asarray(img.convert("I") if img.mode.startswith("I;16") else img, np.float32)
                if arr.ndim == 3:
                    arr = arr[..., 0]
                top = 65535.0 if arr.max() > 255 else (1.0 if arr.max() <= 1 else 255.0)
                mask = np.clip(arr / top, 0, 1)
            if mask.shape != (size[1], size[0]):
                pil = Image.fromarray((mask * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
                mask = np.asarray(pil, np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot read mask image ({exc})") from None
    return mask.astype(np.float32)


def downscale_for_detection(rgb: np.ndarray, max_side: int = 1280) -> tuple[np.ndarray, float]:
    """Shrink big photos before running detectors; returns the image and the scale applied.

    Detectors work at a few hundred pixels internally, so feeding them 40 MP only costs memory.
    Multiply detected coordinates by ``1 / scale`` to get back to the original image.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    import cv2

    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return small, scale
