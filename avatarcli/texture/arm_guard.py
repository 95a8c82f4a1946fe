"""Keypoint-guided arm guard for texture sampling.

An arm that hangs in front of the torso's flank in the photo is often fitted a little behind or
beside it: the fitted torso is then what the mesh shows at the photo's arm pixels, and the
sampler paints a wedge of skin (or sleeve) onto the shirt — and, through the front→back fill,
onto the back too. The colormap detector only drops a thin band along the fitted arm's outline.
The photo's own shoulder, elbow and wrist keypoints say where its arms really are, so inside a
band around each detected arm segment another part samples only the pixels whose colour is not
the arm's.

The band is the arm's width: a share of the photo's torso length (neck → mid-hip, which a
standing or sitting person rarely foreshortens). An arm whose keypoints are not confidently
detected is not guarded. An arm the body hides (a three-quarter view, hands behind the back)
is still placed by the detector, often confidently: there the torso's own colour shows, and the
colour test keeps it.
"""

from __future__ import annotations

import numpy as np
import torch

from avatarcli.body.parts import PART_NAMES
from avatarcli.perception.keypoints import BODY_INDEX
from avatarcli.texture.sampling import dilate_mask

#: keypoints below this confidence are not trusted to place an arm
ARM_MIN_CONFIDENCE = 0.5
#: arm radius as a share of the torso length (neck → mid-hip): upper arm ≈ 4.5 cm, forearm ≈ 3.5
#: cm on a ≈ 50 cm torso
UPPER_ARM_RADIUS = 0.09
LOWER_ARM_RADIUS = 0.07
#: fewest pixels a colour is read from
MIN_COLOUR_PIXELS = 30
#: arm and part colours closer than this (RGB in [0, 1]) are not told apart
MIN_COLOUR_CONTRAST = 0.15
#: the arm's pixels found by colour are grown by this share of the photo's longer side
GROW_SHARE = 0.005
_ARM_PARTS = {
    side: tuple(PART_NAMES.index(f"{side}_{p}") for p in ("upper_arm", "lower_arm", "hand"))
    for side in ("left", "right")
}


def arm_regions(keypoints: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(2, H, W) bool: where the person's left and right arm are in the photo.

    ``keypoints`` (25, 3) canonical body keypoints (x, y, confidence) in pixels. A segment
    (shoulder → elbow, elbow → wrist) is drawn when both its ends are confident; without a
    confident neck and mid-hip there is no scale and no guard.
    """
    import cv2

    regions = np.zeros((2, height, width), dtype=bool)
    kp = np.asarray(keypoints, np.float64)
    neck, hip = kp[BODY_INDEX["neck"]], kp[BODY_INDEX["mid_hip"]]
    if min(neck[2], hip[2]) < ARM_MIN_CONFIDENCE:
        return torch.from_numpy(regions)
    torso = float(np.linalg.norm(neck[:2] - hip[:2]))
    for channel, side in enumerate(("left", "right")):
        canvas = np.zeros((height, width), np.uint8)
        for a, b, share in (("shoulder", "elbow", UPPER_ARM_RADIUS), ("elbow", "wrist", LOWER_ARM_RADIUS)):
            pa, pb = kp[BODY_INDEX[f"{side}_{a}"]], kp[BODY_INDEX[f"{side}_{b}"]]
            if min(pa[2], pb[2]) < ARM_MIN_CONFIDENCE:
                continue
            radius = max(1, int(round(share * torso)))
            ends = [tuple(int(round(v)) for v in p[:2]) for p in (pa, pb)]
            cv2.line(canvas, ends[0], ends[1], 1, thickness=2 * radius + 1, lineType=cv2.LINE_8)
        regions[channel] = canvas > 0
    return torch.from_numpy(regions)


def _median_colour(image: torch.Tensor, where: torch.Tensor) -> torch.Tensor | None:
    """Median RGB (3,) of ``image`` (3, H, W) over ``where`` (H, W), None for too few pixels."""
    if int(where.sum()) < MIN_COLOUR_PIXELS:
        return None
    return image[:, where].median(dim=1).values


def arm_guard_mask(part_render: torch.Tensor, regions: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Pixels (B, H, W) bool the sampler must skip: inside a detected arm, the pixels of every
    other fitted part whose colour is nearer the arm's than that part's own.

    The colour test tells an arm in front (the case to guard: skin or sleeve over the shirt)
    from an arm the body hides (keypoint detectors place hidden joints with confidence too; the
    shirt seen there is the shirt's colour), which no depth order can: the fit has the arm
    behind the torso in both. The arm's colour is read where the fitted arm agrees with the
    detected one, a part's own colour outside the arms; a side whose fitted arm shows too little
    inside its band is not guarded, nor is a part with too little outside or of the arm's colour.
    The pixels found are grown a little (:data:`GROW_SHARE`) to take the arm's shadowed edge.

    ``part_render`` (B, H, W) long: body part per pixel of the fitted mesh (-1 on background,
    :func:`avatarcli.render.render_part_ids`); ``regions`` (2, H, W) from :func:`arm_regions`;
    ``image`` (B, 3, H, W) the photo.
    """
    skip = torch.zeros_like(part_render, dtype=torch.bool)
    regions = regions.to(part_render.device)
    anywhere = regions.any(dim=0)
    for b in range(part_render.shape[0]):
        parts, photo = part_render[b], image[b].float()
        for region, side in zip(regions, ("left", "right"), strict=True):
            if not bool(region.any()):
                continue
            own = torch.zeros_like(region)
            for part in _ARM_PARTS[side]:
                own |= parts == part
            arm = _median_colour(photo, region & own)
            if arm is None:
                continue
            others = region & (parts >= 0) & ~own
            hits = torch.zeros_like(others)
            for part in torch.unique(parts[others]).tolist():
                colour = _median_colour(photo, (parts == part) & ~anywhere)
                if colour is None or float((colour - arm).norm()) < MIN_COLOUR_CONTRAST:
                    continue  # the arm looks like the part: painting one with the other is harmless
                here = others & (parts == part)
                pixels = photo[:, here]
                hits[here] = (pixels - arm[:, None]).norm(dim=0) < (pixels - colour[:, None]).norm(dim=0)
            # the arm's shadowed or mixed edge pixels lie next to the clear ones
            grow = 2 * max(1, round(GROW_SHARE * max(parts.shape))) + 1
            skip[b] |= others & dilate_mask(hits[None], grow, 1)[0]
    return skip
