"""How good is a fit: silhouette IoU against the mask and keypoint error in % of person height.

The silhouette is drawn with OpenCV's convex-polygon filler (every triangle, no depth test
needed for a binary silhouette), which is exact enough for a score and takes milliseconds.
"""

from __future__ import annotations

import numpy as np

#: below these a fit is flagged as poor
MIN_GOOD_IOU = 0.7
MAX_GOOD_KEYPOINT_ERROR_PCT = 3.0
#: keypoints at least this confident count in the error
SCORED_CONFIDENCE = 0.5


def silhouette(pixels: np.ndarray, faces: np.ndarray, width: int, height: int, depth=None) -> np.ndarray:
    """Binary (H, W) uint8 silhouette of a mesh projected to ``pixels`` (V, 2)."""
    import cv2

    out = np.zeros((height, width), np.uint8)
    tris = pixels[faces]  # (F, 3, 2)
    if depth is not None:
        tris = tris[(depth[faces] > 0).all(1)]
    tris = tris[np.isfinite(tris).all((1, 2))]
    # pixel centres at +0.5: shift by -0.5 so a vertex at (j + 0.5) lands on column j; 4 bits subpixel
    pts = np.round((tris - 0.5) * 16).astype(np.int32)
    # one call per triangle: a single fillPoly over all of them would use even-odd filling,
    # punching holes wherever triangles overlap
    for tri in pts:
        cv2.fillConvexPoly(out, tri, 1, lineType=cv2.LINE_8, shift=4)
    return out


def mask_iou(pred: np.ndarray, mask: np.ndarray) -> float:
    a, b = pred > 0, mask > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def person_height_px(mask: np.ndarray | None, fallback: float) -> float:
    """Height of the mask's bounding box, or ``fallback`` when there is no usable mask."""
    if mask is not None:
        rows = np.flatnonzero((mask > 0.5).any(1))
        if len(rows) >= 2:
            return float(rows[-1] - rows[0] + 1)
    return float(fallback)


def keypoint_error_pct(projected: np.ndarray, keypoints: np.ndarray, height_px: float) -> tuple[float, int]:
    """Mean distance of confident keypoints to their fitted positions, in % of person height."""
    ok = keypoints[:, 2] >= SCORED_CONFIDENCE
    if not ok.any():
        return float("nan"), 0
    err = np.linalg.norm(projected[ok] - keypoints[ok, :2], axis=1)
    return float(err.mean() / height_px * 100.0), int(ok.sum())


def quality_warnings(iou: float | None, kp_error: float) -> list[str]:
    out = []
    if iou is not None and iou < MIN_GOOD_IOU:
        out.append(f"the fitted body covers the person mask poorly (IoU {iou:.2f} < {MIN_GOOD_IOU})")
    if np.isfinite(kp_error) and kp_error > MAX_GOOD_KEYPOINT_ERROR_PCT:
        out.append(
            f"keypoints are fitted loosely ({kp_error:.1f} % of height > {MAX_GOOD_KEYPOINT_ERROR_PCT} %); "
            "check the preview"
        )
    return out
