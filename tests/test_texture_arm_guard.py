"""The keypoint-guided arm guard: a photo's arm over the fitted torso does not paint the shirt."""

from __future__ import annotations

import numpy as np
import torch

from avatarcli.body.joints import SMPLX_JOINT_NAMES
from avatarcli.body.parts import PART_NAMES
from avatarcli.perception.keypoints import BODY_INDEX
from avatarcli.texture.arm_guard import LOWER_ARM_RADIUS, UPPER_ARM_RADIUS, arm_guard_mask, arm_regions

TORSO = PART_NAMES.index("torso")
LEFT_UPPER_ARM, LEFT_HAND = PART_NAMES.index("left_upper_arm"), PART_NAMES.index("left_hand")
RIGHT_LOWER_ARM = PART_NAMES.index("right_lower_arm")


def _keypoints(points: dict[str, tuple[float, float]], confidence: float = 0.9) -> np.ndarray:
    kp = np.zeros((25, 3), np.float32)
    for name, (x, y) in points.items():
        kp[BODY_INDEX[name]] = (x, y, confidence)
    return kp


STANDING = {"neck": (50, 20), "mid_hip": (50, 70), "left_shoulder": (70, 22), "left_elbow": (72, 47),
            "left_wrist": (74, 70)}  # fmt: skip


def test_arm_regions_follow_the_arm_with_its_width():
    regions = arm_regions(_keypoints(STANDING), 100, 120)
    assert regions.shape == (2, 100, 120) and regions.dtype == torch.bool
    assert not regions[1].any()  # no right arm detected: nothing guarded
    left = regions[0]
    upper, lower = round(UPPER_ARM_RADIUS * 50), round(LOWER_ARM_RADIUS * 50)  # torso 50 px
    assert left[35, 71] and left[35, 71 - upper + 1] and not left[35, 71 - upper - 2]
    assert left[60, 73 + lower - 1] and not left[60, 73 + lower + 2]
    assert not left[5, 50] and not left[90, 70]  # nothing beyond the shoulder / the wrist
    # unsure keypoints, or no torso to scale the width by: no guard
    assert not arm_regions(_keypoints(STANDING, confidence=0.3), 100, 120).any()
    no_neck = {k: v for k, v in STANDING.items() if k != "neck"}
    assert not arm_regions(_keypoints(no_neck), 100, 120).any()


def test_guard_skips_other_parts_where_the_photo_shows_the_arm():
    """Inside the detected left arm: torso pixels in the sleeve's colour are skipped (the arm in
    front), torso pixels in the shirt's colour are kept (the arm hidden behind the body)."""
    red, blue, green = (0.9, 0.2, 0.1), (0.1, 0.3, 0.9), (0.2, 0.8, 0.2)
    parts = torch.full((1, 20, 20), TORSO)
    parts[0, :, :2] = -1  # background
    image = torch.tensor(blue)[None, :, None, None].expand(1, 3, 20, 20).clone()
    regions = torch.zeros(2, 20, 20, dtype=torch.bool)
    regions[0, 0:12, 8:18] = True  # the detected left arm
    parts[0, 0:6, 10:18] = LEFT_UPPER_ARM  # the fitted arm agrees here (48 px): the sleeve's colour
    image[0, :, 0:6, 10:18] = torch.tensor(red)[:, None, None]
    image[0, :, 6:9, 8:18] = torch.tensor(red)[:, None, None]  # the photo's sleeve over the fitted torso
    parts[0, 15, 15] = LEFT_HAND  # the fitted hand outside the band samples as it likes
    skip = arm_guard_mask(parts, regions, image)[0]
    expected = torch.zeros(20, 20, dtype=torch.bool)
    expected[5:10, 8:18] = True  # the sleeve's pixels grown by a pixel (the arm's shaded edge) …
    expected[5, 10:18] = False  # … over other parts only
    assert torch.equal(skip, expected)  # torso in the shirt's colour (rows 0-4, 10-11) is kept
    # a pixel of another colour goes to whichever it is nearer: green is nearer blue than red
    image[0, :, 10, 12] = torch.tensor(green)
    assert not arm_guard_mask(parts, regions, image)[0, 10, 12]
    # a sleeve of the shirt's colour: nothing to tell apart, nothing skipped
    same = image.clone()
    same[0, :, 0:9, 8:18] = torch.tensor((0.15, 0.3, 0.85))[:, None, None]
    assert not arm_guard_mask(parts, regions, same).any()
    # too little of the fitted arm inside the band: no colour to tell the arm by, no guard
    few = parts.clone()
    few[0, 0:6, 10:18] = TORSO
    few[0, 0:2, 10:14] = LEFT_UPPER_ARM
    assert not arm_guard_mask(few, regions, image).any()


def test_misfitted_arm_over_the_torso_leaves_no_sleeve_on_the_shirt(anny_body):
    """The photo's left arm swings over the torso's flank; the fit leaves it hanging beside it."""
    from avatarcli.render import Camera, render_textured
    from avatarcli.texture.body_maps import body_texel_maps, sample_view
    from avatarcli.texture.occlusion import pad_texture_islands

    body, size = anny_body, 128
    maps = body_texel_maps(body, size)
    camera = Camera.orbit(center=(0.0, 0.0, 0.0), distance=3.0, yaw_deg=0, focal_px=400, size=256)

    def posed(flexion: float):
        pose = torch.zeros(1, 55, 3)
        pose[0, SMPLX_JOINT_NAMES.index("left_shoulder")] = torch.tensor([flexion, 0.0, -1.1])
        return body(pose=pose)

    arm = [PART_NAMES.index(f"left_{p}") for p in ("upper_arm", "lower_arm", "hand")]
    texture = torch.tensor((0.1, 0.3, 0.9))[:, None, None].expand(3, size, size).clone()
    for part in arm:
        texture[:, maps.parts == part] = torch.tensor((0.9, 0.2, 0.1))[:, None]  # a red sleeve
    truth = posed(-0.6)
    painted = pad_texture_islands(texture * maps.mask, maps.mask, 3)
    photo, mask = render_textured(truth.vertices, body.faces, body.uv, body.uv_faces, painted, camera)
    # "keypoints": the photo's own joints, projected
    pixels, _ = camera.project(truth.joints)
    named = {"neck": "neck", "mid_hip": "pelvis"}
    named |= {f"left_{j}": f"left_{j}" for j in ("shoulder", "elbow", "wrist")}
    kp = _keypoints({k: tuple(pixels[0, SMPLX_JOINT_NAMES.index(j)].tolist()) for k, j in named.items()})
    arms = arm_regions(kp, 256, 256)

    fitted = posed(0.0).vertices  # the fit's arm hangs beside the torso
    torso = maps.parts == TORSO
    red_on_torso, sampled = [], []
    for guard in (None, arms):
        result, _ = sample_view(body, fitted, camera, photo, mask[:, 0] > 0.5, maps, arms=guard)
        rgb, seen = result.rgb[0], result.filled[0, 0]
        red_on_torso.append(int(((rgb[0] > rgb[2]) & seen & torso).sum()))
        sampled.append(int(seen.sum()))
    assert red_on_torso[0] >= 50  # without the guard the sleeve paints the shirt
    assert red_on_torso[1] <= 0.15 * red_on_torso[0]
    assert sampled[1] > 0.9 * sampled[0]  # the guard is local
