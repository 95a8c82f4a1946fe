"""How good is a fit: silhouette IoU against the mask and keypoint error in % of person height.

The silhouette comes from the render core's z-buffer pass (exact pixel-centre coverage, tens
of milliseconds at 1080²).
"""

from __future__ import annotations

import numpy as np

#: below these a fit is flagged as poor
MIN_GOOD_IOU = 0.7
MAX_GOOD_KEYPOINT_ERROR_PCT = 3.0
#: keypoints at least this confident count in the error
SCORED_CONFIDENCE = 0.5


def silhouette(pixels: np.ndarray, faces: np.ndarray, width: int, height: int, depth=None) -> np.ndarray:
    """Binary (H, W) uint8 silhouette of a mesh projected to ``pixels`` (V, 2), depths (V,).

    Uses the render core's z-buffer pass, which samples pixel centres exactly (a polygon
    filler also paints every pixel an edge touches, which inflates thin limbs).
    """
    import torch

    from avatarcli.render.rasterizer import visible_faces

    xy = torch.as_tensor(np.asarray(pixels, np.float32))[None]
    z = torch.ones(xy.shape[:2]) if depth is None else torch.as_tensor(np.asarray(depth, np.float32))[None]
    ids = visible_faces(xy, z, torch.as_tensor(np.asarray(faces, np.int64)), height, width)
    return (ids[0] >= 0).numpy().astype(np.uint8)


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
