"""View-dependent colour: torso-relative camera directions, unstructured-lumigraph blending and
drawing a body from its kept photos."""

from __future__ import annotations

import json
import math

import pytest
import torch

from avatarcli.render import Camera
from avatarcli.texture import view_dependent as vd


def _yaw(degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    return torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def _unit(degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    return torch.tensor([math.sin(a), 0.0, math.cos(a)])


def test_torso_rotation_recovers_a_known_rotation():
    g = torch.Generator().manual_seed(0)
    rest = torch.randn(50, 3, generator=g)
    turn = _yaw(70.0) @ torch.linalg.matrix_exp(torch.tensor([[0, -0.3, 0], [0.3, 0, 0], [0, 0, 0.0]]))
    posed = (rest @ turn.T + torch.tensor([0.5, 1.0, -2.0]))[None]
    got = vd.torso_rotation(posed, rest)[0]
    assert torch.allclose(got, turn, atol=1e-5)
    assert torch.det(got) == pytest.approx(1.0, abs=1e-5)  # a rotation, never a reflection


def test_camera_direction_follows_the_body_not_the_world(anny_body):
    """A body turned 90° in front of a fixed camera is seen from its side, as a camera moved there."""
    rest = anny_body.rest().vertices[0]
    torso = vd.torso_vertex_ids(anny_body)
    centre = tuple(float(c) for c in rest[torso].mean(0))
    front = Camera.orbit(center=centre, distance=3.0, yaw_deg=0.0, size=64)
    seen_front = vd.camera_directions(rest[None], front, rest, torso)[0]
    assert torch.allclose(seen_front, _unit(0.0), atol=0.05)
    side = Camera.orbit(center=centre, distance=3.0, yaw_deg=90.0, size=64)
    by_camera = vd.camera_directions(rest[None], side, rest, torso)[0]
    pose = torch.zeros(1, 55, 3)
    pose[0, 0, 1] = -math.pi / 2  # the body turns the other way round instead
    turned = anny_body(pose=pose).vertices
    by_body = vd.camera_directions(turned, front, rest, torso)[0]
    assert torch.allclose(by_camera, _unit(90.0), atol=0.05)
    assert torch.allclose(by_body, by_camera, atol=0.05)


def test_blend_weights_interpolate_and_fade():
    stored = torch.stack([_unit(a) for a in (0.0, 20.0, 40.0, 180.0)])

    def weights(angle: float) -> torch.Tensor:
        return vd.blend_weights(_unit(angle)[None], stored, neighbours=2)[0]

    assert weights(20.0)[1] > 0.99  # a stored direction shows (almost) only its own frame
    halfway = weights(10.0)
    assert halfway[0] == pytest.approx(0.5, abs=1e-4) and halfway[1] == pytest.approx(0.5, abs=1e-4)
    assert float(halfway[2:].abs().sum()) == 0.0  # only the two nearest
    # passing the stored 20°, the frame at 0° hands over to the one at 40° with both weights ~0
    before, after = weights(19.9), weights(20.1)
    assert float(before[0]) < 1e-3 and float(after[2]) < 1e-3
    rows = vd.blend_weights(torch.stack([_unit(a) for a in (-60.0, 75.0, 170.0)]), stored, neighbours=2)
    assert torch.allclose(rows.sum(1), torch.ones(3))


def test_default_blend_uses_the_nearest_neighbours_only():
    """A turn-around every 30°: the default blend draws a view from its nearest frames, nearer ones
    weighing more, symmetric about the view, and none from the far side."""
    stored = torch.stack([_unit(a) for a in range(0, 360, 30)])
    w = vd.blend_weights(_unit(15.0)[None], stored)[0]
    near = w.topk(vd.NEIGHBOURS).indices.tolist()
    assert set(near) == {0, 1, 2, 11} and float(w[[3, 4, 5, 6, 7, 8, 9, 10]].sum()) == 0.0
    assert w[0] == pytest.approx(float(w[1]), abs=1e-5) and w[11] == pytest.approx(float(w[2]), abs=1e-5)
    assert w[0] > 3 * w[2] > 0
    assert vd.blend_weights(_unit(60.0)[None], stored)[0][2] > 0.99


def test_blend_weights_with_fewer_frames_than_neighbours():
    stored = torch.stack([_unit(0.0), _unit(90.0)])
    w = vd.blend_weights(_unit(30.0)[None], stored, neighbours=2)[0]
    assert w[0] > w[1] > 0 and float(w.sum()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def painted(anny_body):
    """The rest-pose body painted with its own UV coordinates (a colour that changes everywhere),
    photographed from the front, the right side and behind."""
    from avatarcli.render import framing_camera, render_textured
    from avatarcli.texture.build import TextureView

    vertices = anny_body().vertices
    ramp = torch.linspace(0, 1, 64)
    texture = torch.stack(
        [ramp[None].expand(64, 64), ramp[:, None].expand(64, 64), torch.full((64, 64), 0.5)]
    )[None]
    cameras = [framing_camera(vertices, yaw_deg=yaw, size=(96, 144)) for yaw in (0.0, 90.0, 180.0)]
    views = []
    for camera in cameras:
        with torch.no_grad():
            photo, cover = render_textured(
                vertices, anny_body.faces, anny_body.uv, anny_body.uv_faces, texture, camera, background=0.0
            )
        views.append(TextureView(vertices, camera, photo, cover[0] > 0.5))
    return vertices, cameras, views, texture


def _colour_of(anny_body, colour, vertices, camera, without=None):
    from avatarcli.render import rasterize

    fragments = rasterize(vertices, anny_body.faces, camera, cull_backfaces=True)
    rgb, weight = colour.colour(vertices, camera, fragments, without=without)
    return rgb, weight[:, 0], fragments.mask


def _view_colour(anny_body, views):
    rest = anny_body().vertices[0]
    kept = vd.build_view_photos(anny_body, views)
    return vd.ViewColour(kept, anny_body.faces, rest, vd.torso_vertex_ids(anny_body))


def test_a_kept_photo_redraws_its_own_view_and_nothing_it_did_not_see(anny_body, painted):
    vertices, cameras, views, _ = painted
    colour = _view_colour(anny_body, views[:1])  # the front photo only
    rgb, weight, body = _colour_of(anny_body, colour, vertices, cameras[0])
    inner = -torch.nn.functional.max_pool2d(-body[:, None].float(), 5, 1, 2)[:, 0] > 0.5
    assert float((weight[inner] > 0).float().mean()) > 0.97
    error = (rgb - views[0].image).abs().amax(1)[inner & (weight > 0)]
    assert float(error.mean()) < 0.02, float(error.mean())
    # from behind, the front photo saw none of what is drawn: the depth test refuses it
    _, weight, body = _colour_of(anny_body, colour, vertices, cameras[2])
    assert float((weight[body] > 0).float().mean()) < 0.03


def test_a_view_between_photos_reads_both_and_leaving_one_out_uses_the_others(anny_body, painted):
    from avatarcli.render import framing_camera, render_textured

    vertices, cameras, views, texture = painted
    colour = _view_colour(anny_body, views)
    between = framing_camera(vertices, yaw_deg=45.0, size=(96, 144))
    rgb, weight, body = _colour_of(anny_body, colour, vertices, between)
    seen = body & (weight > 0)
    assert float(seen.float().sum()) > 0.7 * float(body.float().sum())
    with torch.no_grad():  # the painted body as the 45° camera would photograph it
        truth, _ = render_textured(
            vertices, anny_body.faces, anny_body.uv, anny_body.uv_faces, texture, between
        )
    assert float((rgb - truth).abs().amax(1)[seen].mean()) < 0.03
    # the front photo drawn without itself: only the side and back are left, which see little of it
    _, alone, body = _colour_of(anny_body, colour, vertices, cameras[0], without=0)
    _, own, _ = _colour_of(anny_body, colour, vertices, cameras[0])
    assert float((alone[body] > 0).float().mean()) < 0.6 < float((own[body] > 0).float().mean())


def test_kept_photos_are_cropped_and_shrunk_without_moving_the_body(anny_body, painted, monkeypatch):
    vertices, cameras, views, _ = painted
    full = _colour_of(anny_body, _view_colour(anny_body, views[:1]), vertices, cameras[0])
    monkeypatch.setattr(vd, "MAX_PHOTO_SIDE", 72)  # the person is ~130 px tall: halved
    kept = vd.build_view_photos(anny_body, views[:1])
    assert max(kept.photos.shape[-2:]) == 72 and kept.photos.shape[-1] < 72  # cropped to the person
    small = _colour_of(anny_body, _view_colour(anny_body, views[:1]), vertices, cameras[0])
    both = (full[1] > 0) & (small[1] > 0)  # (thin limbs lose more to the mask's edge at half size)
    assert float(both.float().sum()) > 0.6 * float((full[1] > 0).float().sum())
    assert float((full[0] - small[0]).abs().amax(1)[both].mean()) < 0.03  # the same colours, softer


def test_the_blur_of_kept_photos_keeps_the_background_out(anny_body, painted, monkeypatch):
    """The photos are blurred to forgive the fits' disagreement, but only the person is: the
    painted body's blue is 0.5 everywhere, so any white background bled in would show."""
    from avatarcli.render import render_textured
    from avatarcli.texture.build import TextureView

    vertices, cameras, _, texture = painted
    with torch.no_grad():
        photo, cover = render_textured(
            vertices, anny_body.faces, anny_body.uv, anny_body.uv_faces, texture, cameras[0], background=1.0
        )
    monkeypatch.setattr(vd, "BLUR_SHARE", 0.04)  # σ ≈ 5 px on the 130-px person
    colour = _view_colour(anny_body, [TextureView(vertices, cameras[0], photo, cover[0] > 0.5)])
    rgb, weight, _ = _colour_of(anny_body, colour, vertices, cameras[0])
    blue = rgb[:, 2][weight > 0]
    assert float((blue - 0.5).abs().max()) < 0.01
    red = rgb[:, 0][weight > 0]  # ... and it is a blur: the red ramp is smoothed, not copied
    assert float((red - photo[:, 0][weight > 0]).abs().max()) > 0.005


def test_kept_photos_round_trip_through_the_avatar_file_form(anny_body, painted):
    _, _, views, _ = painted
    kept = vd.build_view_photos(anny_body, views)
    stored = vd.to_avatar_textures(kept)
    assert stored["view_photos"].dtype == torch.uint8 and stored["view_photos"].shape[-1] == 4
    back = vd.from_avatar_textures(stored, anny_body.num_vertices)
    assert torch.allclose(back.photos, kept.photos, atol=1 / 255) and torch.equal(
        back.vertices, kept.vertices
    )
    assert vd.from_avatar_textures({"rgb": torch.zeros(4, 4, 3)}, anny_body.num_vertices) is None
    with pytest.raises(ValueError, match="damaged"):
        vd.from_avatar_textures(
            {**stored, "view_vertices": stored["view_vertices"][:, :10]}, anny_body.num_vertices
        )
    with pytest.raises(ValueError, match="older avatarcli"):
        vd.from_avatar_textures({"view_rgb": torch.zeros(1, 4, 4, 3)}, anny_body.num_vertices)


def test_a_kept_blur_travels_with_the_photos_and_sets_how_they_are_drawn(anny_body, painted):
    """Refined frames keep sharper photos; the avatar file must say so, or animate would draw
    them with the default blur the renderer was not trained on."""
    _, _, views, _ = painted
    plain = vd.build_view_photos(anny_body, views)
    sharp = vd.build_view_photos(anny_body, views, blur_share=vd.REFINED_BLUR_SHARE)
    assert vd.BLUR_KEY not in vd.to_avatar_textures(plain)  # files as before when the default
    assert vd.from_avatar_textures(vd.to_avatar_textures(plain), anny_body.num_vertices).blur_share is None
    stored = vd.to_avatar_textures(sharp)
    back = vd.from_avatar_textures(stored, anny_body.num_vertices)
    assert back.blur_share == pytest.approx(vd.REFINED_BLUR_SHARE)
    assert back.to("cpu").blur_share == back.blur_share
    rest = anny_body.rest().vertices[0]
    torso = vd.torso_vertex_ids(anny_body)
    drawn_plain = vd.ViewColour(plain, anny_body.faces, rest, torso)
    drawn_sharp = vd.ViewColour(back, anny_body.faces, rest, torso)
    ratio = drawn_sharp.blur_share / drawn_plain.blur_share  # the same spacing growth for both
    assert ratio == pytest.approx(vd.REFINED_BLUR_SHARE / vd.BLUR_SHARE)
    assert not torch.allclose(drawn_sharp._source(0).photo, drawn_plain._source(0).photo)
    for bad in (torch.tensor(float("nan")), torch.tensor(0.5), torch.zeros(2), "0.001"):
        with pytest.raises(ValueError, match="damaged"):
            vd.from_avatar_textures({**stored, vd.BLUR_KEY: bad}, anny_body.num_vertices)
    with pytest.raises(ValueError, match="blur share"):
        fields = ("photos", "masks", "K", "R", "t", "vertices")
        vd.ViewPhotos(*(getattr(plain, k) for k in fields), blur_share=-1.0)


def test_kept_views_spread_evenly_and_keep_both_ends():
    assert vd.kept_views(5) == [0, 1, 2, 3, 4]
    kept = vd.kept_views(100, limit=36)
    assert len(kept) == 36 and kept[0] == 0 and kept[-1] == 99
    assert max(b - a for a, b in zip(kept[:-1], kept[1:], strict=True)) <= 3


def test_view_photos_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same frames"):
        vd.ViewPhotos(
            torch.zeros(2, 3, 4, 4), torch.zeros(3, 1, 4, 4), torch.zeros(2, 3, 3), torch.zeros(2, 3, 3),
            torch.zeros(2, 3), torch.zeros(2, 5, 3),
        )  # fmt: skip


@pytest.fixture(scope="module")
def lit_photos(anny_body, tmp_path_factory):
    """Three photos of one synthetic person; the one from the side is lit half as brightly, the
    way a turning person's colours change with the light."""
    import numpy as np
    from PIL import Image

    from avatarcli.pipelines.synthetic import synthetic_person

    folder = tmp_path_factory.mktemp("lit")
    paths = []
    for name, yaw, light in (("front", 0.0, 1.0), ("side", 70.0, 0.5), ("back", 180.0, 1.0)):
        person = synthetic_person(anny_body, size=(192, 288), texture_size=128, yaw_deg=yaw)
        image = person.image.astype(np.float32)
        image[person.mask > 0] *= light
        Image.fromarray(image.round().astype(np.uint8)).save(folder / f"{name}.png")
        Image.fromarray(person.mask).save(folder / f"{name}_mask.png")
        paths.append(folder / f"{name}.png")
    return paths


def test_merged_avatar_shows_each_view_in_its_own_light(lit_photos, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from avatarcli.avatar_file import load_avatar, save_avatar
    from avatarcli.cli.main import main
    from avatarcli.errors import AvatarFormatError
    from avatarcli.pipelines.create import CreateOptions, create_avatar
    from avatarcli.pipelines.render_still import render_still

    fast = dict(fit_iters=40, refine_steps=4, texture_size=256)
    plain = create_avatar(lit_photos, tmp_path / "plain.pt", CreateOptions(**fast, view_dependent=False))
    assert not any(k.startswith("view_") for k in load_avatar(plain.avatar).textures)  # told not to
    out = tmp_path / "vd.pt"
    args = ["merge", *map(str, lit_photos), "-o", str(out), "--json"]  # 3 photos: kept by default
    assert main([*args, "--fit-iters", "40", "--refine-steps", "4", "--texture-size", "256"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept_views"] == 3
    # the input views are scored as the avatar draws them: the dim side from the side photo
    assert summary["psnr"][1] > plain.psnr[1] + 1.0, (summary["psnr"], plain.psnr)
    # ... and each photo drawn from the others (leave-one-out) says what a new angle gets: the dim
    # side from the bright front and back is no better than the merged texture
    assert len(summary["new_view_psnr"]) == len(summary["new_view_ssim"]) == 3 and not plain.new_view_psnr
    assert summary["new_view_psnr"][1] < summary["psnr"][1] - 1.0, (summary["new_view_psnr"], summary["psnr"])
    assert summary["new_view_psnr"][1] < plain.psnr[1] + 0.5
    avatar = load_avatar(out)
    assert avatar.textures["view_photos"].shape[0] == 3 and avatar.provenance["kept_views"] == 3

    side = np.asarray(Image.open(lit_photos[1]), np.float32)
    person = np.asarray(Image.open(lit_photos[1].with_name("side_mask.png"))) > 0
    errors = {}
    for name, path in (("plain", plain.avatar), ("view", out)):
        still = render_still(path, tmp_path / f"{name}.png", view="input", pose="input", input_index=1)
        errors[name] = float(np.abs(np.asarray(Image.open(still), np.float32) - side)[person].mean())
    # the merged texture averages the dim side into the bright front and back; the view-dependent
    # avatar draws the side view from the side photo
    assert errors["view"] < 0.85 * errors["plain"], errors

    gif = tmp_path / "turn.gif"  # animation blends views per frame, in a batch of cameras
    assert main(["animate", str(out), "--turntable", "--size", "48", "--fps", "4", "-o", str(gif)]) == 0
    assert gif.stat().st_size > 0

    broken = load_avatar(out)
    broken.textures["view_vertices"] = broken.textures["view_vertices"][:, :100]
    save_avatar(broken, tmp_path / "broken.pt")
    with pytest.raises(AvatarFormatError, match="damaged"):
        render_still(tmp_path / "broken.pt", tmp_path / "b.png")


def test_one_photo_has_no_views_to_blend(lit_photos, tmp_path, capsys):
    from avatarcli.cli.main import main

    assert main(["create", str(lit_photos[0]), "-o", str(tmp_path), "--view-dependent"]) == 2
    assert "several views" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _smooth_pattern(size: int = 96) -> torch.Tensor:
    """A grey-level texture with detail at several scales (what the flow has to lock on to)."""
    generator = torch.Generator().manual_seed(3)
    noise = torch.rand(1, 1, size // 4, size // 4, generator=generator)
    fine = torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
    return fine.clamp(0, 1)[0].expand(3, -1, -1).contiguous()


def test_floating_moves_two_shifted_photos_to_their_consensus():
    from avatarcli.texture.floating import align_sources

    pattern = _smooth_pattern()
    left, right = torch.roll(pattern, -2, dims=2), torch.roll(pattern, 2, dims=2)
    moved = align_sources(torch.stack([left, right]), torch.ones(2, *pattern.shape[1:]))
    assert torch.equal(moved, align_sources(torch.stack([left, right]), torch.ones(2, *pattern.shape[1:])))
    inner = (..., slice(12, -12), slice(12, -12))
    before = (left - right)[inner].abs().mean()
    after = (moved[0] - moved[1])[inner].abs().mean()
    assert after < 0.3 * before  # the two now agree ...
    assert (moved[0] - pattern)[inner].abs().mean() < 0.3 * (left - pattern)[inner].abs().mean()  # ... midway


def test_floating_leaves_a_single_photo_and_a_zero_share_alone():
    from avatarcli.texture.floating import align_sources

    pattern = _smooth_pattern()
    assert torch.equal(align_sources(pattern[None], torch.ones(1, *pattern.shape[1:])), pattern[None])
    shifted = torch.roll(pattern, 3, dims=2)
    weights = torch.stack([torch.ones(pattern.shape[1:]), torch.zeros(pattern.shape[1:])])
    moved = align_sources(torch.stack([pattern, shifted]), weights)
    # the other photo has no share anywhere: the first stays where it is
    assert (moved[0] - pattern).abs().max() < 1e-5


def test_views_far_apart_get_more_blur():
    """The blur grows with the kept views' spacing (median angle to the nearest other view)."""
    from avatarcli.texture.view_dependent import MAX_BLUR_GROWTH, blur_growth, view_spacing_deg

    def ring(count: int) -> torch.Tensor:
        angles = torch.arange(count, dtype=torch.float32) * (2 * math.pi / count)
        return torch.stack([torch.sin(angles), torch.zeros_like(angles), torch.cos(angles)], 1)

    assert abs(view_spacing_deg(ring(4)) - 90.0) < 1e-3
    assert abs(view_spacing_deg(ring(36)) - 10.0) < 1e-3
    assert view_spacing_deg(ring(1)) == 0.0
    assert blur_growth(10.0) == 1.0 and blur_growth(0.0) == 1.0  # dense views, or one: the base blur
    assert blur_growth(39.0) == 1.5 and blur_growth(180.0) == MAX_BLUR_GROWTH
