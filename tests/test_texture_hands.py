"""The keypoint-guided hand guard: photo hand pixels never paint another body part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarcli.body.joints import SMPLX_JOINT_NAMES
from avatarcli.body.parts import PART_NAMES
from avatarcli.texture.hands import hand_guard_mask, hand_regions

LEFT_HAND, RIGHT_HAND = PART_NAMES.index("left_hand"), PART_NAMES.index("right_hand")
RIGHT_LOWER_ARM, RIGHT_THIGH = PART_NAMES.index("right_lower_arm"), PART_NAMES.index("right_upper_leg")


def _square_hand(x0: float, y0: float, side: float, confidence: float = 1.0) -> np.ndarray:
    """21 landmarks spanning the square (x0, y0)–(x0+side, y0+side): fingertips (4, 8, 16, 20) at
    its corners, the wrist (0) at the top middle, the middle knuckle (9) at the centre."""
    points = np.full((21, 2), (x0 + side / 2, y0 + side / 2))
    points[0] = (x0 + side / 2, y0)
    for index, corner in zip((4, 8, 16, 20), ((0, 0), (1, 0), (0, 1), (1, 1)), strict=True):
        points[index] = (x0 + corner[0] * side, y0 + corner[1] * side)
    return np.concatenate([points, np.full((21, 1), confidence)], 1).astype(np.float32)


def test_hand_regions_cover_the_landmarks_plus_a_margin():
    regions = hand_regions((None, _square_hand(40, 40, 20)), 100, 120)
    assert regions.shape == (2, 100, 120) and regions.dtype == torch.bool
    assert not regions[0].any()  # no left hand detected: nothing guarded
    right = regions[1]
    assert right[40:61, 40:61].all()  # the landmarks' hull
    assert right[50, 37] and not right[50, 30]  # grown by 0.3 × palm (10 px) = 3 px
    assert int(right.sum()) < 30 * 30
    weak = _square_hand(40, 40, 20, confidence=0.1)  # unreliable landmarks are ignored
    assert not hand_regions((weak, None), 100, 120).any()


def test_guard_skips_the_photo_hand_on_other_parts_and_the_fitted_hand_elsewhere():
    parts = torch.full((1, 10, 10), RIGHT_THIGH)
    parts[0, :, :2] = -1  # background
    parts[0, 0:3, 6:10] = RIGHT_LOWER_ARM
    parts[0, 7:10, 7:10] = RIGHT_HAND  # the fitted hand, below the detected one
    regions = torch.zeros(2, 10, 10, dtype=torch.bool)
    regions[1, 2:6, 5:9] = True  # the detected right hand
    skip = hand_guard_mask(parts, regions)[0]
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[3:6, 5:9] = True  # the photo's hand over the thigh
    expected[2, 5] = True  # (row 2, column 5 is thigh; columns 6-8 are the lower arm: allowed)
    expected[7:10, 7:10] = True  # the fitted hand outside the detected one
    assert torch.equal(skip, expected)
    # the left side was not detected: its fitted hand is not guarded
    parts[0, 0, 2] = LEFT_HAND
    assert not hand_guard_mask(parts, regions)[0, 0, 2]


@pytest.mark.parametrize("fitted_shoulder", [0.85, 1.0])
def test_misfitted_hand_in_front_of_the_thigh_leaves_no_skin_on_it(anny_body, fitted_shoulder):
    from avatarcli.render import Camera, render_textured
    from avatarcli.texture.body_maps import body_texel_maps, sample_view
    from avatarcli.texture.occlusion import pad_texture_islands

    body, size = anny_body, 128
    maps = body_texel_maps(body, size)
    camera = Camera.orbit(center=(0.0, 0.0, 0.0), distance=3.0, yaw_deg=0, focal_px=400, size=256)

    def posed(shoulder: float) -> torch.Tensor:  # the right arm lowered, the hand beside the thigh
        pose = torch.zeros(1, 55, 3)
        pose[0, SMPLX_JOINT_NAMES.index("right_shoulder")] = torch.tensor([0.0, 0.0, shoulder])
        return body(pose=pose).vertices

    texture = torch.tensor((0.1, 0.3, 0.9))[:, None, None].expand(3, size, size).clone()
    texture[:, maps.parts == RIGHT_HAND] = torch.tensor((0.9, 0.2, 0.1))[:, None]  # a red hand
    truth = posed(0.9)
    photo, mask = render_textured(
        truth,
        body.faces,
        body.uv,
        body.uv_faces,
        pad_texture_islands(texture * maps.mask, maps.mask, 3),
        camera,
    )
    # "landmarks": 21 vertices of the photo's hand, projected
    vertex_part = torch.full((truth.shape[1],), -1, dtype=torch.long)
    vertex_part[body.faces[:, 0]] = body.part_ids
    hand_vertices = torch.nonzero(vertex_part == RIGHT_HAND)[:, 0]
    pick = hand_vertices[torch.linspace(0, len(hand_vertices) - 1, 21).long()]
    pixels, _ = camera.project(truth[:, pick])
    landmarks = torch.cat([pixels[0], torch.ones(21, 1)], 1).numpy()
    hands = hand_regions((None, landmarks), 256, 256)

    fitted = posed(fitted_shoulder)  # the fit's arm is a little off
    body_parts = (maps.parts == RIGHT_THIGH) | (maps.parts == PART_NAMES.index("torso"))
    red_on_body, sampled = [], []
    for guard in (None, hands):
        result, _ = sample_view(body, fitted, camera, photo, mask[:, 0] > 0.5, maps, hands=guard)
        rgb, seen = result.rgb[0], result.filled[0, 0]
        red_on_body.append(int(((rgb[0] > rgb[2]) & seen & body_parts).sum()))
        sampled.append(int(seen.sum()))
    assert red_on_body[0] >= 10  # without the guard the hand paints the thigh / hip
    assert red_on_body[1] == 0
    assert sampled[1] > 0.97 * sampled[0]  # the guard is local
