"""Person detection with mediapipe 0.10.21's legacy Holistic solution, fully offline.

Only ``model_complexity=1`` is used: it is the one pose model bundled in the wheel (0 and 2
try to download at first use). Holistic gives the 33 pose landmarks with visibility, both
hands (21 points each, the *person's* left/right, assigned from the pose wrists), the
468/478-point face mesh and a soft person segmentation.

Several people: mediapipe's pose pipeline tracks one person, the highest-scoring detection.
To choose deliberately we split a segmentation of *all* people (mediapipe's selfie
segmenter; Holistic's own mask covers only the tracked person) into connected blobs; when
there are two or more person-sized blobs, each is cropped and detected on its own, and we keep the one with
the largest area times keypoint completeness. Touching people merge into one blob, so then
the detector's own choice stands; the warning still says how many blobs were seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avatarcli.perception.images import downscale_for_detection
from avatarcli.perception.keypoints import from_mediapipe_pose, zero_outside_image

#: A blob counts as a person when it has at least this share of the largest blob's area ...
PERSON_BLOB_RELATIVE_AREA = 0.15
#: ... and at least this share of the image.
PERSON_BLOB_MIN_FRACTION = 0.003


@dataclass
class Detection:
    body: np.ndarray  # (25, 3) canonical keypoints in original-image pixels
    left_hand: np.ndarray | None
    right_hand: np.ndarray | None
    face: np.ndarray | None
    mask: np.ndarray | None  # (H, W) float32, original resolution
    num_people: int = 1
    warnings: list[str] = field(default_factory=list)


def _landmarks(
    lms, width: float, height: float, offset=(0.0, 0.0), with_visibility: bool = True
) -> np.ndarray:
    pts = np.array(
        [[lm.x * width + offset[0], lm.y * height + offset[1], lm.visibility if with_visibility else 1.0]
         for lm in lms.landmark],
        np.float32,
    )  # fmt: skip
    return pts


def _run_holistic(rgb: np.ndarray):
    import mediapipe as mp

    with mp.solutions.holistic.Holistic(
        static_image_mode=True,
        model_complexity=1,
        enable_segmentation=True,
        refine_face_landmarks=True,
    ) as holistic:
        return holistic.process(np.ascontiguousarray(rgb))


def _parse(result, width: int, height: int, crop_box=None) -> Detection | None:
    """Turn a Holistic result on a (possibly cropped, possibly scaled) image into original pixels."""
    if result.pose_landmarks is None:
        return None
    x0, y0, cw, ch = crop_box if crop_box is not None else (0.0, 0.0, float(width), float(height))
    body33 = _landmarks(result.pose_landmarks, cw, ch, (x0, y0))
    body = zero_outside_image(from_mediapipe_pose(body33), width, height)
    hands = []
    for lms in (result.left_hand_landmarks, result.right_hand_landmarks):
        hands.append(
            None
            if lms is None
            else zero_outside_image(_landmarks(lms, cw, ch, (x0, y0), False), width, height)
        )
    face = None
    if result.face_landmarks is not None:
        face = zero_outside_image(_landmarks(result.face_landmarks, cw, ch, (x0, y0), False), width, height)
    return Detection(body=body, left_hand=hands[0], right_hand=hands[1], face=face, mask=None)


def _resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    if mask.shape == (height, width):
        return mask.astype(np.float32)
    return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def person_blobs(mask: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int, int], int]]:
    """Person-sized connected blobs of a soft mask: (blob mask, (x, y, w, h), area), largest first."""
    import cv2

    binary = (mask > 0.5).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = areas.max()
    blobs = []
    for i in np.argsort(-areas):
        area = int(areas[i])
        if area < PERSON_BLOB_RELATIVE_AREA * largest or area < PERSON_BLOB_MIN_FRACTION * mask.size:
            continue
        x, y, w, h = (int(v) for v in stats[i + 1, :4])
        blobs.append((labels == i + 1, (x, y, w, h), area))
    return blobs


def _completeness(body: np.ndarray) -> float:
    return float((body[:, 2] > 0.5).mean())


def _all_people_mask(rgb: np.ndarray) -> np.ndarray:
    """Soft mask of *every* person (Holistic's mask covers only the person it tracks)."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        return np.asarray(seg.process(np.ascontiguousarray(rgb)).segmentation_mask, np.float32)


def _detect_in_crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> Detection | None:
    """Run Holistic on ``rgb[box]`` and express the result (mask included) in full-image pixels."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    crop_small, _ = downscale_for_detection(rgb[y0:y1, x0:x1])
    result = _run_holistic(crop_small)
    found = _parse(result, width, height, (x0, y0, x1 - x0, y1 - y0))
    if found is not None and result.segmentation_mask is not None:
        full = np.zeros((height, width), np.float32)
        full[y0:y1, x0:x1] = _resize_mask(np.asarray(result.segmentation_mask), x1 - x0, y1 - y0)
        found.mask = full
    return found


def detect_person(rgb: np.ndarray) -> Detection | None:
    """Find the main person in an RGB uint8 image; None when nobody is found."""
    from avatarcli.perception.native_logs import quiet_native_logs

    with quiet_native_logs():  # mediapipe's C++ info/warning lines would flood the terminal
        return _detect_person(rgb)


def _detect_person(rgb: np.ndarray) -> Detection | None:
    height, width = rgb.shape[:2]
    small, _ = downscale_for_detection(rgb)
    result = _run_holistic(small)
    detection = _parse(result, width, height)
    if detection is not None and result.segmentation_mask is not None:
        detection.mask = _resize_mask(np.asarray(result.segmentation_mask), width, height)
    blobs = person_blobs(_resize_mask(_all_people_mask(small), width, height))
    if len(blobs) >= 2 or (detection is None and blobs):
        # Detect each blob on its own crop and keep the largest, most complete person.
        best: tuple[float, Detection] | None = None
        for _blob, (x, _y, w, h), area in blobs:
            # The selfie segmenter often misses legs, so crop full-height columns around each blob.
            m = int(0.3 * max(w, h))
            box = (max(0, x - m), 0, min(width, x + w + m), height)
            found = _detect_in_crop(rgb, box)
            if found is not None:
                score = area * _completeness(found.body)
                if best is None or score > best[0]:
                    best = (score, found)
        if best is not None:
            detection = best[1]
    if detection is None:
        return None
    detection.num_people = max(1, len(blobs))
    if len(blobs) >= 2:
        detection.warnings.append(
            f"{len(blobs)} people seen; using the largest, most complete one (pass --mask to choose another)"
        )
    return detection
