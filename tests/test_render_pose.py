"""avatar render --pose FILE: the avatar takes the pose (and, with --view input, the camera) of a
fit file or of a photo of anyone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from outfit_avatar import outfit_avatar  # shared test helper
from PIL import Image

from avatarcli.avatar_file import save_avatar
from avatarcli.body.joints import JOINT_INDEX, NUM_JOINTS
from avatarcli.cli.main import main
from avatarcli.fitting import Fit, save_fit
from avatarcli.pipelines.render_still import pose_from_file, render_still
from avatarcli.pipelines.synthetic import synthetic_person
from avatarcli.render import framing_camera


@pytest.fixture(scope="module")
def avatar(anny_body, tmp_path_factory):
    made = outfit_avatar(anny_body, 64)
    return save_avatar(made, tmp_path_factory.mktemp("pose") / "a.pt"), made


def _fit(anny_body, shape: torch.Tensor, body: str = "anny") -> Fit:
    pose = torch.zeros(NUM_JOINTS, 3)
    pose[JOINT_INDEX["left_shoulder"], 2] = -1.0  # the left arm raised
    pose[JOINT_INDEX["right_knee"], 0] = 0.8
    transl = torch.tensor([0.05, 0.1, 0.0])
    with torch.no_grad():
        verts = anny_body(shape=shape[None], pose=pose[None], transl=transl[None]).vertices
    camera = framing_camera(verts, yaw_deg=20.0, size=96, fill=0.8)
    return Fit(
        body=body, model_id=anny_body.model_id, shape=shape.numpy(), pose=pose.numpy(),
        transl=transl.numpy(), K=camera.K[0].numpy(), R=camera.R[0].numpy(), t=camera.t[0].numpy(),
        width=96, height=96,
    )  # fmt: skip


def test_fit_file_pose_keeps_the_fitted_pelvis_for_another_shape(avatar, anny_body, tmp_path):
    _, made = avatar
    other_shape = torch.zeros(anny_body.num_shape)
    other_shape[0] = 2.0  # another person's shape
    path = save_fit(_fit(anny_body, other_shape), tmp_path / "other.fit.json")
    pose, transl, camera = pose_from_file(path, made, anny_body)
    assert camera.width == 96 and torch.allclose(pose[0, JOINT_INDEX["right_knee"], 0], torch.tensor(0.8))
    with torch.no_grad():
        theirs = anny_body(shape=other_shape[None], pose=pose, transl=torch.tensor([[0.05, 0.1, 0.0]]))
        ours = anny_body(shape=made.shape[None], pose=pose, transl=transl)
    assert torch.allclose(ours.joints[0, 0], theirs.joints[0, 0], atol=1e-5)
    assert not torch.allclose(ours.joints[0, 15], theirs.joints[0, 15], atol=1e-3)  # a different height


def test_render_in_a_fit_files_pose_and_camera(avatar, anny_body, tmp_path):
    path, made = avatar
    fit = save_fit(_fit(anny_body, made.shape), tmp_path / "same.fit.json")
    posed = tmp_path / "posed.png"
    assert main(["render", str(path), "--pose", str(fit), "--view", "input", "-o", str(posed), "-q"]) == 0
    image = np.asarray(Image.open(posed).convert("RGB")).astype(int)
    assert image.shape == (96, 96, 3)
    # the same body drawn directly in that pose and camera covers the same pixels
    from avatarcli.render import rasterize

    with torch.no_grad():
        verts = anny_body(
            shape=made.shape[None], pose=torch.as_tensor(_fit(anny_body, made.shape).pose)[None],
            transl=torch.tensor([[0.05, 0.1, 0.0]]),
        ).vertices  # fmt: skip
        cover = rasterize(verts, anny_body.faces, _fit(anny_body, made.shape).camera()).face_index[0] >= 0
    drawn = (image.sum(-1) < 3 * 250).astype(bool)
    iou = (drawn & cover.numpy()).sum() / (drawn | cover.numpy()).sum()
    assert iou > 0.9
    rest = tmp_path / "rest.png"
    render_still(path, rest, view="front", size=96)
    assert np.abs(np.asarray(Image.open(rest).convert("RGB")).astype(int) - image).mean() > 2


def test_render_pose_mistakes_are_one_line(avatar, anny_body, tmp_path, capsys):
    path, made = avatar
    out = tmp_path / "x.png"
    assert main(["render", str(path), "--pose", str(tmp_path / "none.jpg"), "-o", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    smplx_fit = save_fit(_fit(anny_body, made.shape, body="smplx"), tmp_path / "s.fit.json")
    assert main(["render", str(path), "--pose", str(smplx_fit), "-o", str(out)]) == 2
    assert "smplx body" in capsys.readouterr().err
    assert not out.exists()


def test_render_in_the_pose_of_a_photo(avatar, anny_body, tmp_path):
    """A photo is perceived and fitted on the spot (mediapipe + the fitter, a few seconds)."""
    path, _ = avatar
    person = synthetic_person(anny_body, size=(192, 288), texture_size=64, yaw_deg=0.0)
    photo = tmp_path / "person.png"
    Image.fromarray(person.image).save(photo)
    out = tmp_path / "posed.png"
    render_still(path, out, pose=str(photo), view="input")
    drawn = np.asarray(Image.open(out).convert("RGB")).astype(int).sum(-1) < 3 * 250
    truth = person.mask > 127
    assert (drawn & truth).sum() / (drawn | truth).sum() > 0.7
