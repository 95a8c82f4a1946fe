"""Keypoint-guided hand guard for texture sampling.

In most photos the hands hang beside the thighs or rest on the belly, and a fitted hand is rarely
exactly where the photo's hand is: photo hand pixels that land on the fitted thigh paint skin
onto the trousers (and, through the front→back fill, onto the back of the legs), while the fitted
hand samples trousers. The colormap detector only drops a thin band along the fitted hand's own
outline. The detector's 21 hand landmarks say where the photo's hand really is, so

* inside a detected hand's region only that side's hand and lower arm may sample, and
* the fitted hand samples only inside its detected region.

A hand the detector did not find is not guarded; its texels are sampled as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avatarcli.body.parts import PART_NAMES

#: the landmarks' convex hull is grown by this share of the palm length (wrist → middle knuckle):
#: landmarks sit on the joints' centres, the hand's outline is half a finger's width further out
HAND_REGION_GROW = 0.3
#: landmarks below this confidence are ignored (mediapipe's hands carry 1.0, OpenPose's vary)
HAND_MIN_CONFIDENCE = 0.2
_WRIST, _MIDDLE_KNUCKLE = 0, 9
#: (hand part, lower-arm part) per side, in the order of :func:`hand_regions`' channels
_SIDES = (
    (PART_NAMES.index("left_hand"), PART_NAMES.index("left_lower_arm")),
    (PART_NAMES.index("right_hand"), PART_NAMES.index("right_lower_arm")),
)


def hand_regions(
    hands: Sequence[np.ndarray | None], height: int, width: int, grow: float = HAND_REGION_GROW
) -> torch.Tensor:
    """(2, H, W) bool: where the person's left and right hand are in the photo.

    ``hands`` = (left, right), each (21, 3) landmarks (x, y, confidence) in pixels or None; a
    missing or unreliable hand (fewer than 5 confident landmarks) leaves its channel empty.
    """
    import cv2

    regions = np.zeros((2, height, width), dtype=bool)
    for channel, landmarks in enumerate(hands):
        if landmarks is None:
            continue
        points = np.asarray(landmarks, np.float32).reshape(-1, 3)
        confident = points[:, 2] >= HAND_MIN_CONFIDENCE
        if confident.sum() < 5:
            continue
        xy = points[confident, :2]
        if confident[_WRIST] and confident[_MIDDLE_KNUCKLE]:
            palm = float(np.linalg.norm(points[_MIDDLE_KNUCKLE, :2] - points[_WRIST, :2]))
        else:  # the knuckle-to-wrist length is about 0.4 of the hand's extent
            palm = 0.4 * float(np.linalg.norm(xy.max(0) - xy.min(0)))
        canvas = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(canvas, cv2.convexHull(np.round(xy).astype(np.int32)), 1)
        radius = max(2, int(round(grow * palm)))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        regions[channel] = cv2.dilate(canvas, disk) > 0
    return torch.from_numpy(regions)


def hand_guard_mask(part_render: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Pixels (B, H, W) bool the sampler must skip.

    ``part_render`` (B, H, W) long: body part per pixel of the fitted mesh (-1 on background,
    :func:`avatarcli.render.render_part_ids`); ``regions`` (2, H, W) from :func:`hand_regions`.
    """
    skip = torch.zeros_like(part_render, dtype=torch.bool)
    regions = regions.to(part_render.device)
    on_body = part_render >= 0
    for region, (hand, lower_arm) in zip(regions, _SIDES, strict=True):
        if not bool(region.any()):
            continue
        own_side = (part_render == hand) | (part_render == lower_arm)
        skip |= region & on_body & ~own_side  # the photo's hand over another part
        skip |= (part_render == hand) & ~region  # the fitted hand over something else
    return skip
