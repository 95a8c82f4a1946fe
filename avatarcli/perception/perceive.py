"""Photo → :class:`Perception` (image, soft person mask, canonical keypoints), with overrides and a cache.

Sources, strongest first: an explicit mask file / OpenPose JSON given by the user, one kept
beside the photo under a conventional name (:mod:`avatarcli.perception.sidecars`), the photo's
own alpha matte (matted photos), then mediapipe Holistic. A result is cached under
``cache_dir()/perception/<key>.npz`` where the key hashes the photo's bytes, the override
files' bytes and :data:`PERCEPTION_VERSION`, so a re-run on the same inputs skips detection.

Checks on the person (decided here so every caller behaves the same):

* nobody found → :class:`UserError`;
* shoulders, hips or knees not seen (a fragment, e.g. a face or a torso crop) → :class:`UserError`;
* ankles not seen (cut off below the knees) → a warning; fitting guesses the lower legs;
* several people → a warning naming how many; the largest, most complete one is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatarcli.errors import UserError
from avatarcli.perception.images import load_image, load_mask
from avatarcli.perception.keypoints import BODY_INDEX, BODY_KEYPOINT_NAMES, zero_outside_image

#: Bump when detection or its post-processing changes, to invalidate cached results.
PERCEPTION_VERSION = 1
#: Keypoints below this confidence count as "not seen" for the completeness checks.
SEEN_CONFIDENCE = 0.3
#: a person shorter than this (pixels) covers fewer pixels than two thirds of the texels the
#: smallest (256²) texture gives the body's front (anny: 40.7k texels in all; coco_…431, 252 px
#: tall, covers 13.4k pixels): the avatar is drawn from upsampled colour, so it looks soft
MIN_SHARP_HEIGHT_PX = 256

_REQUIRED = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee")


@dataclass
class Perception:
    """What the fitting stage needs from one photo, all in original-image pixels."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, EXIF-upright
    mask: np.ndarray  # (H, W) float32 in [0, 1], soft person mask
    keypoints: np.ndarray  # (25, 3) canonical body keypoints (x, y, confidence)
    left_hand: np.ndarray | None = None  # (21, 3)
    right_hand: np.ndarray | None = None  # (21, 3)
    face: np.ndarray | None = None  # (N, 3) in ``face_format``
    face_format: str = ""  # "openpose70", "mediapipe468", "mediapipe478" or ""
    source: str = "mediapipe"  # keypoint source: "mediapipe" or "openpose"
    mask_source: str = "mediapipe"  # "mediapipe", "alpha" or "file"
    mask_file: str = ""  # the mask file read ("" for none), given or found beside the photo
    keypoints_file: str = ""  # the OpenPose JSON read ("" for none)
    image_path: str = ""
    image_sha256: str = ""
    num_people: int = 1
    warnings: list[str] = field(default_factory=list)
    keypoint_names: tuple[str, ...] = BODY_KEYPOINT_NAMES

    def sources(self) -> dict[str, str]:
        """Where the keypoints and the mask came from (a detector, the alpha matte, or which file),
        for results to say — a sidecar found beside the photo is used without being named."""
        return {
            "keypoints": self.keypoints_file or self.source,
            "mask": self.mask_file or self.mask_source,
        }

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _face_format(face: np.ndarray | None, source: str) -> str:
    if face is None:
        return ""
    return "openpose70" if source == "openpose" else f"mediapipe{len(face)}"


def _check_person(kp: np.ndarray, path: str, warnings: list[str]) -> None:
    """Refuse fragments; warn when only the feet are missing."""
    missing = [n.replace("_", " ") for n in _REQUIRED if kp[BODY_INDEX[n], 2] < SEEN_CONFIDENCE]
    if missing:
        raise UserError(
            f"{path}: only part of a person is visible (not seen: {', '.join(missing)}); "
            "use a photo showing the whole body"
        )
    feet = [
        n.replace("_", " ") for n in ("left_ankle", "right_ankle") if kp[BODY_INDEX[n], 2] < SEEN_CONFIDENCE
    ]
    if feet:
        warnings.append(f"{path}: {' and '.join(feet)} not visible; the lower legs are guessed")


def person_height_px(p: Perception) -> float:
    """The person's height in pixels: the mask's extent, else the confident keypoints'."""
    rows = np.nonzero((p.mask > 0.5).any(axis=1))[0]
    if len(rows):
        return float(rows[-1] - rows[0] + 1)
    seen = p.keypoints[p.keypoints[:, 2] >= SEEN_CONFIDENCE, 1]
    return float(seen.max() - seen.min()) if len(seen) else 0.0


def small_person_warning(p: Perception) -> str | None:
    """A warning when the person is too small in the photo for a sharp texture, else None (for
    the texture-making pipelines to give; fitting does not mind)."""
    height = person_height_px(p)
    if 0 < height < MIN_SHARP_HEIGHT_PX:
        return (
            f"{p.image_path}: the person is only {height:.0f} px tall; the avatar's texture will be "
            f"soft (a photo where they are ≥ {MIN_SHARP_HEIGHT_PX} px tall gives a sharper one)"
        )
    return None


def gate_by_mask(points: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    """Drop detector keypoints that fall clearly outside the person mask.

    mediapipe extrapolates limbs that are out of the picture (e.g. feet below a crop edge)
    with high visibility; the mask knows better.
    """
    import cv2

    if points is None or mask.max() < 0.5:
        return points
    k = max(3, int(0.03 * max(mask.shape)))
    near = cv2.dilate((mask > 0.5).astype(np.uint8), np.ones((k, k), np.uint8))
    xy = np.round(points[:, :2]).astype(int)
    h, w = mask.shape
    inside = (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] < w) & (xy[:, 1] < h)
    keep = np.zeros(len(points), bool)
    keep[inside] = near[xy[inside, 1], xy[inside, 0]] > 0
    out = points.copy()
    out[~keep, 2] = 0.0
    return out


@contextlib.contextmanager
def _sidecar_blame(file: Path, found: list[Path], photo: Path):
    """A sidecar nobody named that cannot be read: say it was found beside the photo, and the way out."""
    try:
        yield
    except UserError as exc:
        if file not in found:
            raise
        raise type(exc)(f"{exc} (found beside {photo.name}; pass --no-sidecars to ignore it)") from exc


def _cache_key(image_bytes: bytes, extra_files: list[Path | None]) -> str:
    h = hashlib.sha256()
    h.update(f"perception-v{PERCEPTION_VERSION}".encode())
    h.update(hashlib.sha256(image_bytes).digest())
    for f in extra_files:
        h.update(b"|" + (hashlib.sha256(f.read_bytes()).digest() if f is not None else b"-"))
    return h.hexdigest()


def as_cached(mask: np.ndarray) -> np.ndarray:
    """The mask in the 1/255 steps the cache stores it in, so that a first run and every rerun
    (which reads the cache) see the very same mask: same seed, same result."""
    return np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8).astype(np.float32) / np.float32(255.0)


def _save_cache(path: Path, p: Perception) -> None:
    from avatarcli.io_utils import atomic_write

    arrays = {"keypoints": p.keypoints, "mask": np.round(p.mask * 255).astype(np.uint8)}
    for name in ("left_hand", "right_hand", "face"):
        if getattr(p, name) is not None:
            arrays[name] = getattr(p, name)
    meta = {k: getattr(p, k) for k in ("face_format", "source", "mask_source", "num_people", "warnings")}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _load_cache(path: Path, image: np.ndarray, image_path: str, digest: str) -> Perception | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            mask = z["mask"].astype(np.float32) / np.float32(255.0)
            if mask.shape != image.shape[:2]:
                return None
            return Perception(
                image=image,
                mask=mask,
                keypoints=z["keypoints"].astype(np.float32),
                left_hand=z["left_hand"] if "left_hand" in z else None,
                right_hand=z["right_hand"] if "right_hand" in z else None,
                face=z["face"] if "face" in z else None,
                image_path=image_path,
                image_sha256=digest,
                **meta,
            )
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # a damaged cache entry is simply recomputed


def perceive(
    path: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    keypoints: str | os.PathLike | None = None,
    cache: bool = True,
    sidecars: bool = True,
) -> Perception:
    """Load a photo and find the person: keypoints (canonical 25 + hands + face) and a soft mask.

    ``mask``: a person-mask image (non-black / alpha / grayscale = person) replacing the
    segmentation. ``keypoints``: an OpenPose JSON replacing the keypoint detector. With both
    given, mediapipe is not run at all. ``sidecars``: where one is not given, use the one kept
    beside the photo (``<name>_mask.png``, ``<name>_keypoints.json``, …), if any.
    """
    from avatarcli.runtime import cache_dir

    path = Path(path)
    loaded = load_image(path)
    image = loaded.rgb
    height, width = image.shape[:2]
    image_bytes = path.read_bytes()
    digest = hashlib.sha256(image_bytes).hexdigest()
    mask_path = Path(mask) if mask is not None else None
    kp_path = Path(keypoints) if keypoints is not None else None
    if sidecars and (mask_path is None or kp_path is None):
        from avatarcli.perception.sidecars import find_sidecars

        found = find_sidecars(path)
        auto = [f for f, given in ((found.mask, mask_path), (found.keypoints, kp_path)) if f and not given]
        mask_path = mask_path or found.mask
        kp_path = kp_path or found.keypoints
    else:
        auto = []
    for extra in (mask_path, kp_path):
        if extra is not None and not extra.is_file():
            from avatarcli.errors import InputFileError

            raise InputFileError(f"{extra}: no such file")
    cache_file = cache_dir() / "perception" / f"{_cache_key(image_bytes, [mask_path, kp_path])}.npz"
    files = {"mask_file": str(mask_path or ""), "keypoints_file": str(kp_path or "")}
    if cache and cache_file.is_file():
        cached = _load_cache(cache_file, image, str(path), digest)
        if cached is not None:
            cached.mask_file, cached.keypoints_file = files["mask_file"], files["keypoints_file"]
            return cached

    warnings: list[str] = []
    person_mask = None
    mask_source = ""
    if mask_path is not None:
        with _sidecar_blame(mask_path, auto, path):
            person_mask, mask_source = load_mask(mask_path, (width, height)), "file"
    elif loaded.alpha is not None:
        person_mask, mask_source = loaded.alpha, "alpha"

    left_hand = right_hand = face = None
    num_people = 1
    if kp_path is not None:
        from avatarcli.perception.openpose import read_openpose

        with _sidecar_blame(kp_path, auto, path):
            person = read_openpose(kp_path)
        body = zero_outside_image(person.body, width, height)
        left_hand, right_hand, face = person.left_hand, person.right_hand, person.face
        num_people, source = person.num_people, "openpose"
        if num_people > 1:
            warnings.append(f"{kp_path}: {num_people} people listed; using the largest, most complete one")
    if kp_path is None or person_mask is None:
        from avatarcli.perception.detector import detect_person

        det = detect_person(image)
        if det is None:
            if kp_path is None:
                raise UserError(f"{path}: no person found in the photo")
            warnings.append(f"{path}: the segmentation found no person; using a mask around the keypoints")
        else:
            if kp_path is None:
                body, left_hand, right_hand, face = det.body, det.left_hand, det.right_hand, det.face
                num_people, source = det.num_people, "mediapipe"
                warnings.extend(f"{path}: {w}" for w in det.warnings)
            if person_mask is None and det.mask is not None:
                person_mask, mask_source = det.mask, "mediapipe"
    if person_mask is None:
        person_mask, mask_source = np.zeros((height, width), np.float32), "none"
    if source == "mediapipe":
        body, left_hand, right_hand = (gate_by_mask(p, person_mask) for p in (body, left_hand, right_hand))
    _check_person(body, str(path), warnings)
    result = Perception(
        image=image,
        mask=as_cached(person_mask),
        keypoints=body.astype(np.float32),
        left_hand=left_hand,
        right_hand=right_hand,
        face=face,
        face_format=_face_format(face, source),
        source=source,
        mask_source=mask_source,
        image_path=str(path),
        image_sha256=digest,
        num_people=num_people,
        warnings=warnings,
        **files,
    )
    if cache:
        try:
            _save_cache(cache_file, result)
        except (OSError, UserError):
            pass  # caching is an optimisation; a read-only cache folder must not fail the run
    return result
