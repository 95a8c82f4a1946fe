"""Clothing offsets: the clothed body skins its offsets, the fit recovers a known inflation from
silhouettes, and the avatar file carries the offsets to every command that poses the avatar."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatarcli.avatar_file import Avatar, load_avatar, save_avatar
from avatarcli.body.clothed import ClothedBody
from avatarcli.errors import AvatarFormatError, UserError
from avatarcli.fitting.clothing import ClothingSettings, fit_clothing_offsets, silhouette_iou
from avatarcli.pipelines.posing import load_avatar_with_body
from avatarcli.render import Camera
from avatarcli.render.maps import vertex_normals
from avatarcli.render.rasterizer import rasterize


def _random_offsets(body, scale: float = 0.02, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(body.num_vertices, 3, generator=g) * scale


def test_zero_offsets_are_the_plain_body(anny_body):
    clothed = ClothedBody(anny_body, torch.zeros(anny_body.num_vertices, 3))
    pose = torch.randn(2, 55, 3, generator=torch.Generator().manual_seed(1)) * 0.2
    a, b = anny_body(pose=pose), clothed(pose=pose)
    assert torch.allclose(a.vertices, b.vertices) and torch.equal(a.joints, b.joints)
    assert clothed.name == anny_body.name and clothed.model_id == anny_body.model_id
    assert torch.equal(clothed.faces, anny_body.faces) and torch.equal(clothed.uv, anny_body.uv)


def test_offsets_ride_with_the_bones(anny_body):
    offsets = _random_offsets(anny_body)
    clothed = ClothedBody(anny_body, offsets)
    rest_gap = clothed.rest().vertices - anny_body.rest().vertices
    assert torch.allclose(rest_gap[0], offsets, atol=1e-6)
    # a whole-body turn of 90° about Y turns every offset with it
    pose = torch.zeros(1, 55, 3)
    pose[0, 0, 1] = math.pi / 2
    gap = clothed(pose=pose).vertices - anny_body(pose=pose).vertices
    turn = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    assert torch.allclose(gap[0], offsets @ turn.T, atol=1e-5)


def test_wrong_offsets_are_refused(anny_body):
    with pytest.raises(ValueError, match="clothing offsets must be"):
        ClothedBody(anny_body, torch.zeros(10, 3))


def _views(body, clothed, count: int, size: int = 96):
    """Cameras around a body in its rest pose and the clothed body's masks from them."""
    cameras, masks = [], []
    centre = tuple(body.rest().vertices[0].mean(0).tolist())
    for yaw in torch.linspace(0, 360, count + 1)[:-1].tolist():
        cam = Camera.orbit(centre, distance=3.0, yaw_deg=yaw, focal_px=size * 1.5, size=size)
        cameras.append(cam)
        masks.append(rasterize(clothed.rest().vertices, clothed.faces, cam).mask[0].float())
    return cameras, masks


def test_fit_recovers_an_inflation_from_silhouettes(anny_body):
    rest = anny_body.rest().vertices
    normals = vertex_normals(rest, anny_body.faces)[0]
    truth = ClothedBody(anny_body, 0.03 * normals)  # a 3 cm thick "coat" everywhere
    cameras, masks = _views(anny_body, truth, 4)
    shape = anny_body.default_shape()
    poses, transl = torch.zeros(4, 55, 3), torch.zeros(4, 3)
    before = silhouette_iou(anny_body, shape, poses, transl, cameras, masks, side=96)
    offsets = fit_clothing_offsets(
        anny_body, shape, poses, transl, cameras, masks, ClothingSettings(steps=40, lr=3e-3, mask_side=96)
    )
    fitted = ClothedBody(anny_body, offsets)
    after = silhouette_iou(fitted, shape, poses, transl, cameras, masks, side=96)
    assert min(after) > max(before) + 0.03, (before, after)
    # the coat pushes outwards: the vertices that moved moved along their normals
    along = (offsets * normals).sum(-1)
    moved = offsets.norm(dim=-1) > 0.005
    assert float(moved.float().mean()) > 0.2
    assert float((along[moved] > 0).float().mean()) > 0.95
    assert float(offsets.norm(dim=-1).max()) <= ClothingSettings().max_offset + 1e-6


def test_fit_needs_matching_inputs(anny_body):
    with pytest.raises(ValueError, match="one pose"):
        fit_clothing_offsets(
            anny_body, anny_body.default_shape(), torch.zeros(2, 55, 3), torch.zeros(2, 3), [], []
        )


def _avatar(offsets=None) -> Avatar:
    return Avatar(
        body_backend="anny",
        body_model_id="",
        shape=torch.zeros(10),
        uv_layout="anny",
        textures={"rgb": torch.zeros(16, 16, 3, dtype=torch.uint8)},
        clothing_offsets=offsets,
    )


def test_avatar_file_carries_offsets(tmp_path, anny_body):
    offsets = _random_offsets(anny_body, 0.01)
    avatar = _avatar(offsets)
    avatar.body_model_id, avatar.shape = anny_body.model_id, anny_body.default_shape()[0]
    path = save_avatar(avatar, tmp_path / "clothed.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 2  # older releases refuse it instead of drawing it unclothed
    loaded, body = load_avatar_with_body(path, torch.device("cpu"))
    assert torch.equal(loaded.clothing_offsets, offsets)
    assert isinstance(body, ClothedBody)
    assert torch.allclose(body.rest().vertices - anny_body.rest().vertices, offsets[None], atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [(torch.zeros(5, 2), "malformed"), (torch.full((4, 3), float("nan")), "non-finite")],
)
def test_damaged_offsets_are_a_clear_error(tmp_path, bad, message):
    path = tmp_path / "bad.pt"
    data = _avatar().to_dict()
    data["body"]["clothing_offsets"] = bad
    data["format_version"] = 2
    torch.save(data, path)
    with pytest.raises(AvatarFormatError, match=message):
        load_avatar(path)


def test_offsets_for_another_mesh_are_refused(tmp_path, anny_body):
    avatar = _avatar(torch.zeros(100, 3))
    avatar.body_model_id = anny_body.model_id
    path = save_avatar(avatar, tmp_path / "other.pt")
    with pytest.raises(AvatarFormatError, match="clothing offsets for 100 vertices"):
        load_avatar_with_body(path, torch.device("cpu"))


@pytest.fixture(scope="module")
def coat_photos(anny_body, tmp_path_factory):
    """Synthetic people in a 'coat': the body's mask grown by 6 px and painted, one per yaw."""
    import cv2
    from PIL import Image

    from avatarcli.pipelines.synthetic import synthetic_person

    folder = tmp_path_factory.mktemp("coat")
    images, masks = [], []
    for k, yaw in enumerate((0.0, 90.0, 200.0)):
        person = synthetic_person(anny_body, size=(160, 240), texture_size=128, yaw_deg=yaw)
        body_mask = person.mask > 127
        coat = cv2.dilate(body_mask.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
        image = person.image.copy()
        image[coat & ~body_mask] = (150, 30, 40)
        images.append(folder / f"{k}.png")
        masks.append(folder / f"{k}_mask.png")
        Image.fromarray(image).save(images[-1])
        Image.fromarray((coat * 255).astype(np.uint8)).save(masks[-1])
    return images, masks


def test_create_with_clothing_follows_the_coat(coat_photos, tmp_path):
    from avatarcli.cli.main import main
    from avatarcli.pipelines.create import CreateOptions, create_avatar

    images, masks = coat_photos
    out = tmp_path / "coat.pt"
    opts = CreateOptions(fit_iters=40, refine_steps=2, mask=str(masks[0]), clothing=True)
    result = create_avatar([images[0]], out, opts)
    avatar = load_avatar(out)
    report = avatar.provenance["clothing"]
    assert report["silhouette_iou_after"][0] > report["silhouette_iou_before"][0] + 0.03, report
    assert avatar.clothing_offsets is not None and "clothing" in result.timings
    assert result.clothing == report
    # the input view is drawn with the clothed body
    still = tmp_path / "still.png"
    assert main(["render", str(out), "-o", str(still), "--view", "input", "--pose", "input"]) == 0
    # clothing is an RGB-path option
    with pytest.raises(UserError, match="--clothing applies to --method rgb"):
        CreateOptions(method="dinar", clothing=True).check()


def test_video_avatar_with_clothing(coat_photos, tmp_path):
    from avatarcli.pipelines.video_avatar import VideoAvatarOptions, create_video_avatar

    images, masks = coat_photos
    opts = VideoAvatarOptions(
        masks=[str(m) for m in masks], fit_iters=30, refine_steps=0, texture_size=128, texture_channels=4,
        renderer_width=8, renderer_depth=2, steps=2, patch=48, resolution=120, clothing=True,
    )  # fmt: skip
    create_video_avatar(images, tmp_path / "v.pt", opts)
    avatar = load_avatar(tmp_path / "v.pt")
    report = avatar.provenance["clothing"]
    assert np.mean(report["silhouette_iou_after"]) > np.mean(report["silhouette_iou_before"]) + 0.03, report
    _, body = load_avatar_with_body(tmp_path / "v.pt", torch.device("cpu"))
    assert isinstance(body, ClothedBody)


def test_clothing_defaults_per_path():
    from avatarcli.pipelines.create import CreateOptions
    from avatarcli.pipelines.video_avatar import VideoAvatarOptions

    auto = CreateOptions()
    assert not auto.wants_clothing(1) and auto.wants_clothing(2)  # merges wear clothes, one photo not
    assert not CreateOptions(method="dinar").wants_clothing(4)  # neural paths keep the plain body
    assert CreateOptions(clothing=True).wants_clothing(1) and not CreateOptions(
        clothing=False
    ).wants_clothing(3)
    assert VideoAvatarOptions().clothing
