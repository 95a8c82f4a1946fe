"""OpenPose JSON (``*_keypoints.json``, BODY_25 + optional hands and face) as a keypoint override.

OpenPose writes one object per detected person with flat ``[x, y, c, x, y, c, ...]`` lists.
BODY_25 is our canonical body set, so body points are used as they are; COCO-18 files
(18 points) are mapped by name. When several people are listed we keep the one with the
largest confident bounding box times mean confidence and report how many there were.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatarcli.errors import InputFileError
from avatarcli.perception.keypoints import BODY_INDEX, NUM_BODY_KEYPOINTS, NUM_HAND_KEYPOINTS

_COCO18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip


@dataclass
class OpenPosePerson:
    body: np.ndarray  # (25, 3)
    left_hand: np.ndarray | None  # (21, 3)
    right_hand: np.ndarray | None
    face: np.ndarray | None  # (70, 3)
    num_people: int


def _points(flat, path: Path, what: str) -> np.ndarray | None:
    if not flat:
        return None
    arr = np.asarray(flat, dtype=np.float32)
    if arr.size % 3:
        raise InputFileError(f"{path}: {what} has {arr.size} numbers, not a multiple of 3 (x, y, c)")
    arr = arr.reshape(-1, 3)
    return None if not (arr[:, 2] > 0).any() else arr


def _body25(points: np.ndarray, path: Path) -> np.ndarray:
    if len(points) == NUM_BODY_KEYPOINTS:
        return points
    if len(points) == len(_COCO18_NAMES):
        out = np.zeros((NUM_BODY_KEYPOINTS, 3), np.float32)
        for i, name in enumerate(_COCO18_NAMES):
            out[BODY_INDEX[name]] = points[i]
        rh, lh = points[8], points[11]
        if rh[2] > 0 and lh[2] > 0:
            out[BODY_INDEX["mid_hip"]] = [(rh[0] + lh[0]) / 2, (rh[1] + lh[1]) / 2, min(rh[2], lh[2])]
        return out
    raise InputFileError(
        f"{path}: pose_keypoints_2d has {len(points)} points; expected BODY_25 (25) or COCO (18)"
    )


def _score(body: np.ndarray) -> float:
    ok = body[:, 2] > 0.1
    if ok.sum() < 2:
        return 0.0
    span = np.ptp(body[ok, :2], axis=0)
    return float(span[0] * span[1] + span[1] ** 2) * float(body[ok, 2].mean()) * ok.mean()


def read_openpose(path: str | os.PathLike) -> OpenPosePerson:
    """Parse an OpenPose JSON file and return the main person, in original-image pixels."""
    path = Path(path)
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such keypoint file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable OpenPose JSON file ({exc})") from None
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise InputFileError(f"{path}: no 'people' list; is this an OpenPose *_keypoints.json file?")
    candidates: list[OpenPosePerson] = []
    for person in people:
        body = _points(person.get("pose_keypoints_2d"), path, "pose_keypoints_2d")
        if body is None:
            continue
        hands = [
            _points(person.get(k), path, k) for k in ("hand_left_keypoints_2d", "hand_right_keypoints_2d")
        ]
        for h in hands:
            if h is not None and len(h) != NUM_HAND_KEYPOINTS:
                raise InputFileError(f"{path}: a hand has {len(h)} points, expected {NUM_HAND_KEYPOINTS}")
        face = _points(person.get("face_keypoints_2d"), path, "face_keypoints_2d")
        candidates.append(OpenPosePerson(_body25(body, path), hands[0], hands[1], face, 0))
    if not candidates:
        raise InputFileError(f"{path}: the keypoint file lists no person")
    best = max(candidates, key=lambda p: _score(p.body))
    best.num_people = len(candidates)
    return best
