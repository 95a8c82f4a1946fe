"""The one canonical 2D keypoint set every detector and override is mapped into.

We use OpenPose BODY_25's 25 points (order and meaning) because both sources fit into it:
OpenPose JSON files are already in it, and mediapipe's 33 pose landmarks cover every point
except the small toes (``neck`` and ``mid_hip`` are the midpoints of the shoulders and hips).
Hands use the 21-point layout that OpenPose and mediapipe share (wrist, then four points per
finger from thumb to pinky). Faces stay in their source's own layout (OpenPose 70 points or
mediapipe's 468/478 mesh) because the two do not correspond point for point.

Keypoint arrays are ``(N, 3)`` float32: ``x, y`` in pixels of the original image (x right,
y down, pixel centres at integer + 0.5) and a confidence in [0, 1]; 0 means "not seen".
"""

from __future__ import annotations

import numpy as np

BODY_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
    "right_heel",
)  # fmt: skip

HAND_KEYPOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}{i}" for finger in ("thumb", "index", "middle", "ring", "pinky") for i in range(1, 5)
)

BODY_INDEX: dict[str, int] = {n: i for i, n in enumerate(BODY_KEYPOINT_NAMES)}
NUM_BODY_KEYPOINTS = len(BODY_KEYPOINT_NAMES)
NUM_HAND_KEYPOINTS = len(HAND_KEYPOINT_NAMES)

#: Pairs drawn in previews (and used to measure the person's extent).
BODY_LIMBS: tuple[tuple[str, str], ...] = (
    ("nose", "neck"), ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"), ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"), ("neck", "mid_hip"), ("mid_hip", "right_hip"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("mid_hip", "left_hip"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("nose", "right_eye"),
    ("right_eye", "right_ear"), ("nose", "left_eye"), ("left_eye", "left_ear"),
    ("left_ankle", "left_big_toe"), ("left_big_toe", "left_small_toe"),
    ("left_ankle", "left_heel"), ("right_ankle", "right_big_toe"),
    ("right_big_toe", "right_small_toe"), ("right_ankle", "right_heel"),
)  # fmt: skip

# mediapipe Pose landmark index for each canonical point that has a direct counterpart.
_MEDIAPIPE_DIRECT: dict[str, int] = {
    "nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8,
    "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14,
    "left_wrist": 15, "right_wrist": 16, "left_hip": 23, "right_hip": 24, "left_knee": 25,
    "right_knee": 26, "left_ankle": 27, "right_ankle": 28, "left_heel": 29, "right_heel": 30,
    "left_big_toe": 31, "right_big_toe": 32,
}  # fmt: skip
# Canonical points that are the midpoint of two mediapipe landmarks.
_MEDIAPIPE_MIDPOINTS: dict[str, tuple[int, int]] = {"neck": (11, 12), "mid_hip": (23, 24)}


def from_mediapipe_pose(landmarks: np.ndarray) -> np.ndarray:
    """Map mediapipe's (33, 3) ``x, y, visibility`` (pixels) to the canonical (25, 3) set.

    Midpoints take the lower confidence of their two ends; small toes have no mediapipe
    counterpart and stay at confidence 0.
    """
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape != (33, 3):
        raise ValueError(f"expected (33, 3) mediapipe landmarks, got {landmarks.shape}")
    out = np.zeros((NUM_BODY_KEYPOINTS, 3), np.float32)
    for name, idx in _MEDIAPIPE_DIRECT.items():
        out[BODY_INDEX[name]] = landmarks[idx]
    for name, (a, b) in _MEDIAPIPE_MIDPOINTS.items():
        out[BODY_INDEX[name], :2] = (landmarks[a, :2] + landmarks[b, :2]) / 2
        out[BODY_INDEX[name], 2] = min(landmarks[a, 2], landmarks[b, 2])
    return out


def zero_outside_image(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Confidence 0 for points outside the image: detectors extrapolate them, nobody saw them."""
    points = np.array(points, dtype=np.float32, copy=True)
    outside = (points[:, 0] < 0) | (points[:, 1] < 0) | (points[:, 0] >= width) | (points[:, 1] >= height)
    points[outside, 2] = 0.0
    return points


def person_extent(points: np.ndarray, min_conf: float = 0.2) -> float:
    """Height of the confident keypoints' bounding box in pixels (0 when fewer than two)."""
    ok = points[:, 2] >= min_conf
    if ok.sum() < 2:
        return 0.0
    return float(points[ok, 1].max() - points[ok, 1].min())
