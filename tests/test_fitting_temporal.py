"""The temporal term of multi-frame fitting: frames of one video support their neighbours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_fitting import ToyBody  # the tiny procedural body of the fitting tests

from avatarcli.body.kinematics import axis_angle_to_matrix
from avatarcli.fitting import FitSettings, fit_views
from avatarcli.fitting.optimize import _normalised_times, temporal_roughness

torch.set_num_threads(1)


def test_roughness_is_the_classic_second_difference_for_even_frames():
    series = torch.tensor([0.0, 1.0, 4.0, 2.0])[None, :, None]  # (H=1, N=4, 1)
    # (0 - 2 + 4)² + (1 - 8 + 2)² = 4 + 25
    assert float(temporal_roughness(series, torch.arange(4.0))) == pytest.approx(29.0)


def test_steady_motion_at_uneven_times_costs_nothing_and_a_jolt_does():
    times = torch.tensor([0.0, 1.0, 4.0, 5.0, 8.0])  # every 4th frame and the next, as in the quick eval
    steady = (0.3 * times)[None, :, None].repeat(2, 1, 3)
    assert float(temporal_roughness(steady, times)) == pytest.approx(0.0, abs=1e-10)
    jolted = steady.clone()
    jolted[0, 2] += 0.5
    assert float(temporal_roughness(jolted, times)) > 0.01
    # hypothesis rows are separate sequences: a constant offset between them is not motion
    steady[1] += 5.0
    assert float(temporal_roughness(steady, times)) == pytest.approx(0.0, abs=1e-10)


def test_orientation_as_matrices_has_no_jump_where_a_turn_passes_180_degrees():
    def turn(degrees: list[float]) -> torch.Tensor:
        """Yaws as a fit holds them: axis-angle with angle ≤ π, so 190° is written as −170°."""
        yaws = torch.deg2rad(torch.tensor(degrees))
        wrapped = torch.atan2(yaws.sin(), yaws.cos())
        return torch.stack([torch.zeros(4), wrapped, torch.zeros(4)], -1)

    times = torch.arange(4.0)
    across = turn([150.0, 170.0, 190.0, 210.0])
    assert float(temporal_roughness(across[None], times)) > 10.0  # the axis-angle jump
    # as matrices the same steady turn costs the same wherever it happens
    as_matrices = axis_angle_to_matrix(across).reshape(1, 4, 9)
    at_front = axis_angle_to_matrix(turn([-30.0, -10.0, 10.0, 30.0])).reshape(1, 4, 9)
    assert float(temporal_roughness(as_matrices, times)) == pytest.approx(
        float(temporal_roughness(at_front, times)), abs=1e-5
    )
    assert float(temporal_roughness(as_matrices, times)) < 0.1


def test_frame_times_are_checked_and_normalised():
    times = _normalised_times((10.0, 12.0, 14.0, 20.0), 4, "cpu")
    assert times.tolist() == [5.0, 6.0, 7.0, 10.0]
    with pytest.raises(ValueError, match="increasing"):
        _normalised_times((0.0, 2.0, 1.0), 3, "cpu")
    with pytest.raises(ValueError, match="entries"):
        _normalised_times((0.0, 1.0), 3, "cpu")


def _turning_clip(body, frames: int = 5, size: int = 160):
    """A person with the left arm raised turning 8° per frame; keypoints only (no masks)."""
    from avatarcli.body.joints import JOINT_INDEX
    from avatarcli.fitting.camera import intrinsics_matrix, make_camera
    from avatarcli.fitting.landmarks import body_landmark_map
    from avatarcli.fitting.optimize import ViewInput

    K = intrinsics_matrix(2.0 * size, size, size)
    pose = torch.zeros(frames, 55, 3)
    pose[:, JOINT_INDEX["left_shoulder"], 2] = 0.6
    pose[:, JOINT_INDEX["right_shoulder"], 2] = -0.9
    pose[:, 0, 1] = torch.deg2rad(torch.arange(frames) * 8.0 - 16.0)
    with torch.no_grad():
        out = body(shape=None, pose=pose, transl=torch.tensor([[0.0, -0.9, -4.5]]).expand(frames, 3))
        pix, _ = make_camera(K, size, size).project(body_landmark_map(body).gather(out.vertices, out.joints))
    views = []
    for k in range(frames):
        kp = np.concatenate([pix[k].numpy(), np.ones((25, 1), np.float32)], 1)
        views.append(ViewInput(keypoints=kp, width=size, height=size, K=K.numpy()))
    return views, pose


def test_temporal_term_pulls_a_frame_with_a_bad_detection_back_to_its_neighbours():
    from avatarcli.body.joints import JOINT_INDEX
    from avatarcli.perception.keypoints import BODY_INDEX

    body = ToyBody()
    views, truth = _turning_clip(body)
    bad = 2
    height = float(np.ptp(views[bad].keypoints[:, 1]))
    for name in ("left_elbow", "left_wrist"):  # the detector put the left arm 15 % of the height down
        views[bad].keypoints[BODY_INDEX[name], 1] += 0.15 * height
    common = {"iters": 80, "use_silhouette": False, "pose_coupling": 0.0, "leg_hypotheses": False}

    shoulder = JOINT_INDEX["left_shoulder"]

    def arm_error(settings: FitSettings) -> float:
        """Degrees between the fitted and the true left shoulder rotation of the bad frame."""
        fit = fit_views(views, body, settings=settings)[bad]
        got = axis_angle_to_matrix(torch.as_tensor(fit.pose[shoulder]))
        want = axis_angle_to_matrix(truth[bad, shoulder])
        cos = ((got.T @ want).trace() - 1) / 2
        return math.degrees(math.acos(float(cos.clamp(-1.0, 1.0))))

    alone = arm_error(FitSettings(**common))
    smoothed = arm_error(FitSettings(**common, temporal_smoothness=10.0))
    assert smoothed < 0.7 * alone, (alone, smoothed)  # measured: 45° alone, 23° smoothed
