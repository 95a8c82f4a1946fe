"""Photometric pose refinement: neighbours in time, borrowed corrections, and a frame put back
where its photo agrees with its neighbours'."""

from __future__ import annotations

import pytest
import torch
from true_fits import true_fits  # shared test helper

from avatarcli.errors import UserError
from avatarcli.fitting.photometric import (
    PhotometricSettings,
    borrow_corrections,
    refine_poses,
    time_neighbours,
)
from avatarcli.pipelines.synthetic import synthetic_person
from avatarcli.pipelines.video_avatar import FittedFrames, VideoAvatarOptions, refine_frames

YAWS = (-8.0, 0.0, 8.0)  # three frames of a slow turn


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frames(anny_body) -> FittedFrames:
    """Ground-truth 'fits' of three synthetic frames (exact poses, cameras and masks)."""
    people = [synthetic_person(anny_body, size=(128, 192), texture_size=128, yaw_deg=y) for y in YAWS]
    return true_fits(people, [f"f{k}.png" for k in range(len(people))])


def test_time_neighbours_are_the_nearest_before_and_after():
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    among = [0, 2, 4]
    assert time_neighbours(times, among, among) == {0: [2], 2: [0, 4], 4: [2]}
    assert time_neighbours(times, among, [1, 3]) == {1: [0, 2], 3: [2, 4]}
    assert time_neighbours([5.0, 1.0, 3.0], [0, 1, 2], [2]) == {2: [1, 0]}  # by time, not index


def test_borrowed_corrections_interpolate_the_lenders_in_time():
    d_pose, d_transl = torch.zeros(5, 55, 3), torch.zeros(5, 3)
    d_pose[0], d_pose[2] = 1.0, 3.0
    d_transl[0], d_transl[2] = -1.0, 1.0
    times = [0.0, 1.0, 2.0, 3.0, 0.5]
    pose, transl = borrow_corrections(d_pose, d_transl, times, {1: [0, 2], 3: [], 4: [0, 2]})
    assert torch.equal(pose[1], torch.full((55, 3), 2.0)) and torch.equal(transl[1], torch.zeros(3))
    assert torch.allclose(pose[4], torch.full((55, 3), 1.5))  # a quarter of the way: 3/4 of frame 0's
    assert torch.allclose(transl[4], torch.full((3,), -0.5))
    assert torch.equal(pose[3], d_pose[3]) and float(d_pose[1].abs().sum()) == 0  # inputs untouched
    pose, _ = borrow_corrections(d_pose, d_transl, [0.0, 9.0, 2.0], {1: [0, 2]})  # after both: mean
    assert torch.equal(pose[1], torch.full((55, 3), 2.0))


def test_nothing_to_refine_gives_zero_corrections(anny_body, frames):
    args = (anny_body, frames.shape, frames.poses, frames.transl, frames.cameras, frames.photos, frames.masks)
    for neighbours, steps in (({}, 5), ({1: [0, 2]}, 0), ({1: []}, 5)):
        d_pose, d_transl, report = refine_poses(*args, neighbours, PhotometricSettings(steps=steps))
        assert float(d_pose.abs().sum()) == float(d_transl.abs().sum()) == 0.0
        assert report["loss_first"] is None
    with pytest.raises(ValueError, match="one pose"):
        refine_poses(*args[:5], frames.photos[:2], frames.masks, {1: [0]})


def _body_error(body, frames: FittedFrames, pose: torch.Tensor, transl: torch.Tensor) -> float:
    """Mean distance (m) of the middle frame's posed vertices from the true ones."""
    with torch.no_grad():
        got = body(shape=frames.shape, pose=pose[1:2], transl=transl[1:2]).vertices
        true = body(shape=frames.shape, pose=frames.poses[1:2], transl=frames.transl[1:2]).vertices
    return float((got - true).norm(dim=-1).mean())


def test_a_rolled_frame_is_turned_back_by_its_neighbours_photos(anny_body, frames):
    """The middle frame's body is rolled 0.06 rad (its head a few pixels off the person); with no
    silhouette term, only the colour its neighbours' photos show can put it back."""
    wrong = frames.poses.clone()
    wrong[1, 0, 2] += 0.06
    settings = PhotometricSettings(steps=30, lr=5e-3, silhouette_weight=0.0, prior=0.0, side=192)
    d_pose, d_transl, report = refine_poses(
        anny_body, frames.shape, wrong, frames.transl, frames.cameras, frames.photos, frames.masks,
        {1: [0, 2]}, settings,
    )  # fmt: skip
    assert float(d_pose[[0, 2]].abs().sum()) == 0.0  # only the refined frame moves
    before = _body_error(anny_body, frames, wrong, frames.transl)  # 33 mm
    after = _body_error(anny_body, frames, wrong + d_pose, frames.transl + d_transl)  # 8 mm
    assert after < 0.4 * before, (before, after)
    assert report["loss_last"] < report["loss_first"]
    assert report["frames"] == 1 and report["mean_rotation_deg"] > 0


def test_refine_frames_lends_corrections_to_frames_it_may_not_read(anny_body, frames):
    """The pipeline's step: frames 0 and 2 refined against each other; frame 1 (held out) takes
    their mean correction and its photo is never read."""
    blind = FittedFrames(**{**frames.__dict__, "photos": [p.clone() for p in frames.photos]})
    blind.photos[1] = torch.full_like(blind.photos[1], float("nan"))  # would poison any read
    wrong = blind.poses.clone()
    wrong[0, 0, 2] += 0.03
    blind.poses = wrong
    refined, report = refine_frames(anny_body, blind, [0.0, 1.0, 2.0], 3, indices=[0, 2], borrowers=[1])
    moved = refined.poses - wrong
    assert torch.isfinite(moved).all() and float(moved[0].abs().sum()) > 0
    assert torch.allclose(moved[1], (moved[0] + moved[2]) / 2)
    assert report["frames"] == 2 and report["settings"]["steps"] == 3
    with pytest.raises(UserError, match="photometric"):
        VideoAvatarOptions(photometric_steps=-1).check()


def test_refine_frames_against_other_frames_moves_only_the_refined(anny_body, frames):
    """Test-time pose refinement (the eval's --test-time-poses): the middle frame is refined
    against frames 0 and 2, which are not refined and do not move."""
    wrong = frames.poses.clone()
    wrong[1, 0, 2] += 0.03
    rolled = FittedFrames(**{**frames.__dict__, "poses": wrong})
    refined, report = refine_frames(anny_body, rolled, [0.0, 1.0, 2.0], 3, indices=[1], against=[0, 2])
    moved = refined.poses - wrong
    assert float(moved[[0, 2]].abs().sum()) == 0.0 and float(moved[1].abs().sum()) > 0
    assert report["frames"] == 1 and report["settings"]["side"] == PhotometricSettings().side
    # compared at another resolution when asked (the eval's test-time poses: the frames' own)
    _, report = refine_frames(anny_body, rolled, [0.0, 1.0, 2.0], 1, indices=[1], against=[0, 2], side=96)
    assert report["settings"]["side"] == 96


def test_a_rolled_frame_is_turned_back_by_the_avatars_drawing(anny_body, frames):
    """Posing on the avatar (``create --video``'s rounds, the eval's test-time poses): the middle
    frame's body is rolled; besides its own photo and mask it reads only the avatar's drawing of
    it in the rolled pose (here the true outfit drawn there), and is turned back."""
    from avatarcli.pipelines.synthetic import outfit_texture
    from avatarcli.pipelines.video_avatar import refine_frames_by_drawing
    from avatarcli.render import render_textured

    texture = outfit_texture(anny_body, 128)
    wrong = frames.poses.clone()
    wrong[1, 0, 2] += 0.06
    rolled = FittedFrames(**{**frames.__dict__, "poses": wrong})
    asked = []

    def draw(i: int):
        asked.append(i)
        vertices = rolled.vertices(anny_body, i)
        return render_textured(
            vertices, anny_body.faces, anny_body.uv, anny_body.uv_faces, texture[None], rolled.cameras[i],
            shade=True, ambient=0.55,
        )  # fmt: skip

    refined, report = refine_frames_by_drawing(anny_body, rolled, [1], draw, 30)
    assert asked == [1] and report["frames"] == 1
    assert torch.equal(refined.poses[[0, 2]], wrong[[0, 2]])  # only the chosen frame moves
    before = _body_error(anny_body, frames, wrong, frames.transl)
    after = _body_error(anny_body, frames, refined.poses, refined.transl)
    assert after < 0.5 * before, (before, after)

    # frames whose photos may not be read borrow the chosen frames' corrections
    refined, report = refine_frames_by_drawing(
        anny_body, rolled, [0, 2], draw, 3, times=[0.0, 1.0, 2.0], borrowers=[1], side=96
    )
    moved = refined.poses - wrong
    assert torch.allclose(moved[1], (moved[0] + moved[2]) / 2)
    assert report["settings"]["side"] == 96
    with pytest.raises(ValueError, match="times"):
        refine_frames_by_drawing(anny_body, rolled, [0, 2], draw, 3, borrowers=[1])
