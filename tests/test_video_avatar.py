"""Neural video avatars: renderer, training, resume, frames, the end-to-end job and drawing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from true_fits import true_fits  # shared test helper

from avatarcli.avatar_file import load_avatar
from avatarcli.errors import InputFileError, UserError
from avatarcli.nets.video_renderer import (
    VideoRenderer,
    VideoRendererConfig,
    renderer_from_record,
    renderer_record,
)
from avatarcli.pipelines.synthetic import synthetic_person
from avatarcli.pipelines.video_avatar import (
    RENDERER_KIND,
    FittedFrames,
    VideoAvatarOptions,
    checkpoint_path,
    create_video_avatar,
    frame_renderer_for,
    frame_targets,
    initial_neural_texture,
    rgb_texture_for_frames,
    score_frames,
    unseen_regions,
)
from avatarcli.pipelines.video_frames import collect_frames, subsample
from avatarcli.pipelines.video_training import (
    NeuralAvatarModel,
    TrainSettings,
    full_frame_loss,
    person_window,
    train_steps,
)

YAWS = (0.0, 120.0, 240.0, 60.0)  # three to train on, the last held out
TINY = VideoRendererConfig(texture_channels=6, width=8, depth=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def people(anny_body):
    return [synthetic_person(anny_body, size=(96, 128), texture_size=128, yaw_deg=y) for y in YAWS]


@pytest.fixture(scope="module")
def frames(people) -> FittedFrames:
    """Ground-truth 'fits' of the synthetic turnaround (perfect poses, cameras and masks)."""
    return true_fits(people, [f"yaw{int(y)}.png" for y in YAWS])


@pytest.fixture(scope="module")
def rgb_init(anny_body, frames):
    opts = VideoAvatarOptions(texture_size=256, refine_steps=4)
    return rgb_texture_for_frames(anny_body, frames, range(3), opts).texture


def test_untrained_renderer_reproduces_the_rgb_path_and_round_trips():
    torch.manual_seed(0)
    renderer = VideoRenderer(TINY)
    features = torch.rand(1, 6, 30, 22)  # odd sizes: padded to the U-Net's multiple inside
    mask = (torch.rand(1, 1, 30, 22) > 0.5).float()
    rgb, logit = renderer(features, torch.rand(1, 2, 30, 22), mask)
    assert torch.equal(rgb, features[:, :3])  # zero-initialised head: colour passes through
    assert torch.equal(logit > 0, mask > 0.5)  # alpha starts at the body mask
    with torch.no_grad():
        renderer.head.weight.normal_()
    record = renderer_record(renderer, RENDERER_KIND)
    assert json.loads(json.dumps(record["config"])) == record["config"]
    again = renderer_from_record(record)
    uv = torch.rand(1, 2, 30, 22)
    assert torch.allclose(again(features, uv, mask)[0], renderer(features, uv, mask)[0])


def test_pose_conditioned_renderer_needs_normals():
    config = VideoRendererConfig(texture_channels=4, pose_channels="normals", width=4, depth=1)
    renderer = VideoRenderer(config)
    assert config.in_channels == 4 + 2 + 1 + 3
    x, uv, m = torch.rand(1, 4, 8, 8), torch.rand(1, 2, 8, 8), torch.ones(1, 1, 8, 8)
    assert renderer(x, uv, m, torch.rand(1, 3, 8, 8))[0].shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="normals"):
        renderer(x, uv, m)
    with pytest.raises(ValueError):
        VideoRendererConfig(pose_channels="joints")


def test_view_colour_renderer_starts_at_the_colour_it_is_given(anny_body, frames, rgb_init):
    from avatarcli.pipelines.video_avatar import frame_colour_for_frames
    from avatarcli.texture import psnr

    config = VideoRendererConfig(texture_channels=6, width=8, depth=2, view_colour=True)
    assert VideoRendererConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    model = NeuralAvatarModel(initial_neural_texture(rgb_init, 6, 128, base_colour=True), config)
    assert float(model.texture.detach().abs().sum()) == 0.0  # a correction: starts at nothing
    colour = frame_colour_for_frames(anny_body, frames, range(3), rgb_init[None])
    targets = frame_targets(anny_body, frames, range(3), normals=False, colour=colour)
    first = targets[0].inputs
    rgb, _ = model(first)
    assert torch.allclose(rgb * first.mask, first.colour * first.mask, atol=1e-6)
    with pytest.raises(ValueError, match="colour"):
        model.render(first.uv, first.mask)
    # a training frame gets the colour its neighbours predict, not only its own photo: with a grey
    # merged texture, the front frame's neighbours (120° and 240° away) cannot say its colours
    # (128² texels: the 128-px photos cover most of them)
    grey = frame_colour_for_frames(anny_body, frames, range(3), torch.full((1, 3, 128, 128), 0.5))
    verts, cam = frames.vertices(anny_body, 0), frames.cameras[0]
    own, predicted = grey(verts, cam, first), grey(verts, cam, first, exclude_frame=0)
    photo, body_px = targets[0].photo, first.mask.bool()
    assert float(psnr(own, photo, body_px)) > float(psnr(predicted, photo, body_px)) + 3.0
    # ... and again with its own photo's colour (new views fall in between), sharing the rest
    assert len(targets) == 6 and targets[3].photo is targets[0].photo and targets[3].inputs.uv is first.uv
    assert torch.allclose(targets[3].inputs.colour, colour(verts, cam, first))
    assert not torch.allclose(targets[3].inputs.colour, first.colour)
    # training moves it; scoring a held-out frame uses every training frame's colour
    train_steps(model, targets, TrainSettings(steps=4, batch=2, patch=48, checkpoint_every=0), seed=0)
    held_out = score_frames(model, anny_body, frames, [3], colour)[0]
    assert held_out["psnr"] > 15 and 0.9 < held_out["iou"] <= 1


def test_correction_weight_holds_the_renderer_to_the_view_colour(anny_body, frames, rgb_init):
    from avatarcli.pipelines.video_avatar import frame_colour_for_frames
    from avatarcli.pipelines.video_training import correction_size

    config = VideoRendererConfig(texture_channels=6, width=8, depth=2, view_colour=True)
    colour = frame_colour_for_frames(anny_body, frames, range(3), rgb_init[None])
    targets = frame_targets(anny_body, frames, range(3), normals=False, colour=colour)
    changes = []
    for weight in (0.0, 50.0):
        torch.manual_seed(0)
        model = NeuralAvatarModel(initial_neural_texture(rgb_init, 6, 128, base_colour=True), config)
        settings = TrainSettings(steps=30, batch=2, patch=48, correction_weight=weight, checkpoint_every=0)
        state = train_steps(model, targets, settings, seed=0)
        assert ("correction" in state.history[-1]) == (weight > 0)
        with torch.no_grad():
            first = targets[0].inputs
            rgb, _ = model(first)
            changes.append(float(correction_size(rgb, first.colour, first.mask)))
    assert changes[1] < 0.5 * changes[0]
    assert (
        VideoAvatarOptions().train_settings().correction_weight == VideoAvatarOptions().correction_weight > 0
    )
    with pytest.raises(UserError, match="correction weight"):
        VideoAvatarOptions(correction_weight=-1).check()


def test_merged_texture_is_the_base_colour_without_kept_photos(anny_body, frames, rgb_init):
    from types import SimpleNamespace

    from avatarcli.errors import AvatarFormatError
    from avatarcli.pipelines.video_avatar import FrameColour, avatar_frame_colour
    from avatarcli.render import sample_texture

    base = FrameColour(None, rgb_init[None])
    assert base.views is None
    targets = frame_targets(anny_body, frames, range(3), normals=False, colour=base)
    assert len(targets) == 3  # one target a frame: no photo of its own to leave out
    first = targets[0].inputs
    assert torch.allclose(first.colour, sample_texture(rgb_init[None], first.uv, first.mask[:, 0]))
    config = VideoRendererConfig(texture_channels=6, width=8, depth=2, view_colour=True)
    model = NeuralAvatarModel(initial_neural_texture(rgb_init, 6, 128, base_colour=True), config)
    rgb, _ = model(first)
    assert torch.allclose(rgb * first.mask, first.colour * first.mask, atol=1e-6)  # untrained: the texture
    # in the file: "merged" needs no kept photos; "photos" (or no key: older files) does
    rgb8 = (rgb_init.permute(1, 2, 0) * 255).round().to(torch.uint8)
    avatar = SimpleNamespace(renderer={"colour_base": "merged"}, textures={"rgb": rgb8})
    assert avatar_frame_colour(avatar, anny_body, torch.device("cpu")).views is None
    for renderer in ({"colour_base": "photos"}, {}, {"colour_base": "sepia"}):
        avatar.renderer = renderer
        with pytest.raises(AvatarFormatError, match="damaged"):
            avatar_frame_colour(avatar, anny_body, torch.device("cpu"))


def test_view_colour_from_two_frames_unless_told():
    auto, on, off = (VideoAvatarOptions(view_colour=v) for v in ("auto", "on", "off"))
    assert [auto.uses_view_colour(n) for n in (1, 2, 3, 60)] == [False, True, True, True]
    assert on.uses_view_colour(3) and not on.uses_view_colour(1) and not off.uses_view_colour(60)
    with pytest.raises(UserError, match="view colour"):
        VideoAvatarOptions(view_colour="maybe").check()


def test_lpips_replaces_the_ssim_term_when_given():
    from test_lpips import tiny_lpips

    from avatarcli.pipelines.video_training import frame_loss

    g = torch.Generator().manual_seed(0)
    photo = torch.rand(2, 3, 32, 32, generator=g)
    rgb = (photo + 0.2 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1).requires_grad_(True)
    alpha, person = torch.ones(2, 1, 32, 32), torch.ones(2, 1, 32, 32)
    plain, plain_parts = frame_loss(rgb, alpha, photo, person, 0.5, 0.5)
    perceptual, parts = frame_loss(rgb, alpha, photo, person, 0.5, 0.5, lpips=tiny_lpips(), lpips_weight=1.0)
    assert "ssim" in plain_parts and "lpips" in parts and "ssim" not in parts
    assert parts["lpips"] > 0 and abs(float(perceptual.detach()) - float(plain.detach())) > 1e-6
    perceptual.backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0
    same, same_parts = frame_loss(photo, alpha, photo, person, 0.5, 0.5, lpips=tiny_lpips())
    assert same_parts["lpips"] < 1e-6


def test_alpha_cross_entropy_joins_the_silhouette_terms():
    """The per-pixel cross-entropy is added to Dice (and only to it), and the options hand it on."""
    import torch.nn.functional as F

    from avatarcli.pipelines.video_training import frame_loss

    g = torch.Generator().manual_seed(1)
    photo = torch.rand(1, 3, 24, 24, generator=g)
    rgb = torch.rand(1, 3, 24, 24, generator=g)
    person = torch.zeros(1, 1, 24, 24)
    person[..., 6:18, 6:18] = 1.0
    person[..., 5, 6:18] = 0.2  # a soft edge, as segmentation masks have
    alpha = torch.rand(1, 1, 24, 24, generator=g).clamp(0.05, 0.95)
    plain, plain_parts = frame_loss(rgb, alpha, photo, person, 0.5, 0.5)
    both, parts = frame_loss(rgb, alpha, photo, person, 0.5, 0.5, bce_weight=2.0)
    expected = F.binary_cross_entropy(alpha, person)
    assert "bce" not in plain_parts and parts["bce"] == pytest.approx(float(expected), rel=1e-5)
    assert float(both - plain) == pytest.approx(2.0 * float(expected), rel=1e-5)
    assert parts["l1"] == plain_parts["l1"] and parts["dice"] == plain_parts["dice"]
    # a halo (alpha 1 on the soft edge) costs more than alpha equal to the mask there
    halo, calibrated = person.clamp(0.02, 0.98).clone(), person.clamp(0.02, 0.98).clone()
    halo[..., 5, 6:18] = 0.98
    assert (
        frame_loss(rgb, halo, photo, person, 0.5, 0.0, bce_weight=1.0)[0]
        > frame_loss(rgb, calibrated, photo, person, 0.5, 0.0, bce_weight=1.0)[0]
    )
    assert VideoAvatarOptions().train_settings().bce_weight == VideoAvatarOptions().bce_weight == 1.0
    with pytest.raises(UserError, match="cross-entropy"):
        VideoAvatarOptions(bce_weight=float("nan")).check()


def test_person_window_covers_masks_and_minimum_size():
    mask = torch.zeros(40, 30)
    mask[10:20, 5:9] = 1
    left, top, w, h = person_window([mask], 30, 40, margin=2, minimum=16)
    assert left <= 3 and top <= 8 and left + w >= 11 and top + h >= 22
    assert w >= 16 and h >= 16 and left >= 0 and left + w <= 30


def test_scores_inside_the_person_its_box_and_the_whole_frame():
    """An L-shaped person (250 px) drawn right except a wrong 5×10 band: the error is spread over
    the person, over its box (400 px) and over the whole frame, so the scores rise in that order;
    all three agree on a perfect render."""
    from avatarcli.pipelines.video_avatar import score_render

    torch.manual_seed(0)
    photo = torch.rand(1, 3, 64, 48)
    person = torch.zeros(1, 1, 64, 48)
    person[..., 20:40, 10:20] = 1
    person[..., 20:25, 20:30] = 1
    perfect = score_render(photo.clone(), person, person, photo, person)
    assert perfect["psnr"] > 60 and perfect["psnr_frame"] > 60 and perfect["iou"] == 1.0
    assert perfect["ssim_frame"] > 0.999 and perfect["ssim_person"] > 0.999
    wrong = photo.clone()
    wrong[..., 30:35, 10:20] = 1.0 - wrong[..., 30:35, 10:20]
    got = score_render(wrong, person, person, photo, person)
    assert got["psnr"] < got["psnr_person"] < got["psnr_frame"]
    # the frame's MSE is the person's times its share of the frame (the error lies inside the person)
    np.testing.assert_allclose(got["psnr_frame"] - got["psnr"], 10 * np.log10(64 * 48 / 250), atol=1e-3)
    assert got["ssim_frame"] > got["ssim"]


def test_frames_are_scored_as_animate_composites_them(anny_body, frames, rgb_init):
    """A renderer that leaves a faint grey haze off the body (alpha 0.12, as its mask prior does
    where no training patch reached): ``avatar animate`` mattes it away, so the scores must too —
    the same as scoring the matted alpha; the raw alpha's haze would ruin the whole frame's SSIM
    (black against a 0.06 grey)."""
    from avatarcli.pipelines.video_avatar import draw_frame, score_render
    from avatarcli.pipelines.video_training import matte

    model = _model(rgb_init)
    with torch.no_grad():
        model.renderer.head.bias[:3] = 0.5  # grey off the body, where the features are zero
    got = score_frames(model, anny_body, frames, [3])[0]
    rgb, alpha, inputs = draw_frame(model, anny_body, frames, 3)
    person = frames.masks[3][:, None]
    assert float(alpha[inputs.mask == 0].min()) > 0.1  # the haze is there
    matted = score_render(rgb, matte(alpha), inputs.mask, frames.photos[3], person)
    raw = score_render(rgb, alpha, inputs.mask, frames.photos[3], person)
    assert got == pytest.approx(matted)
    assert got["ssim_frame"] > raw["ssim_frame"] + 0.5  # a haze on black ruins SSIM
    assert got["iou"] == raw["iou"]  # matte keeps alpha 0.5 where it is


def _model(rgb_init, config=TINY) -> NeuralAvatarModel:
    torch.manual_seed(0)
    return NeuralAvatarModel(initial_neural_texture(rgb_init, config.texture_channels, 128), config)


def test_a_few_steps_improve_the_loss(anny_body, frames, rgb_init):
    model = _model(rgb_init)
    targets = frame_targets(anny_body, frames, range(3), normals=False)
    settings = TrainSettings(steps=40, batch=2, patch=48, checkpoint_every=0)
    before = full_frame_loss(model, targets, settings)
    state = train_steps(model, targets, settings, seed=1)
    after = full_frame_loss(model, targets, settings)
    assert state.step == 40 and len(state.history) == 40
    assert after < 0.85 * before, (before, after)
    held_out = score_frames(model, anny_body, frames, [3])[0]
    assert held_out["psnr"] > 15 and 0.9 < held_out["iou"] <= 1


def test_resume_continues_exactly_where_it_stopped(anny_body, frames, rgb_init):
    config = VideoRendererConfig(texture_channels=6, pose_channels="normals", width=8, depth=2)
    targets = frame_targets(anny_body, frames, range(3), normals=True)
    settings = TrainSettings(steps=6, batch=2, patch=40, checkpoint_every=2)

    straight = _model(rgb_init, config)
    train_steps(straight, targets, settings, seed=3)

    interrupted = _model(rgb_init, config)
    saved = []

    def stop_at_four(stage, done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_steps(interrupted, targets, settings, on_checkpoint=saved.append, progress=stop_at_four, seed=3)
    assert [s.step for s in saved] == [2, 4]  # every 2 steps; step 4 saved by the interrupt
    resumed = _model(rgb_init, config)
    resumed.load_state_dict(interrupted.state_dict())
    state = train_steps(resumed, targets, settings, state=saved[-1], seed=3)
    assert state.step == 6 and [h["step"] for h in state.history] == list(range(1, 7))
    for a, b in zip(resumed.parameters(), straight.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_unseen_regions_name_the_back_for_a_front_only_clip(anny_body, frames):
    assert unseen_regions(anny_body, frames, range(3)) == []
    front_only = unseen_regions(anny_body, frames, [0])
    assert "torso (back)" in front_only and "head (back)" in front_only
    assert not any("(front)" in r for r in front_only)


def test_subsample_and_frames_from_a_video(tmp_path, people):
    assert subsample(10, 3, 100) == [0, 3, 6, 9]
    assert subsample(100, 1, 5) == [0, 25, 50, 74, 99]
    import imageio.v2 as imageio

    gif = tmp_path / "clip.gif"
    imageio.mimsave(gif, [p.image for p in people] * 2, duration=40)
    got = collect_frames(gif, tmp_path / "frames", every=2, max_frames=3)
    assert got.total == 8 and got.source_index == [0, 4, 6] and len(got.paths) == 3
    assert np.asarray(Image.open(got.paths[0])).shape == (128, 96, 3)


def test_undecodable_video_is_a_clear_input_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(InputFileError, match="broken.mp4.*cannot decode"):
        collect_frames(bad, tmp_path / "f")
    with pytest.raises(InputFileError, match="no such video"):
        collect_frames(tmp_path / "missing.gif", tmp_path / "f")
    with pytest.raises(UserError, match="one video"):
        collect_frames([bad, tmp_path / "x.png"], tmp_path / "f")
    with pytest.raises(InputFileError, match="cannot decode"):
        create_video_avatar(bad, tmp_path / "out.pt", VideoAvatarOptions())
    assert not (tmp_path / "out.pt").exists() and not checkpoint_path(tmp_path / "out.pt").exists()


@pytest.fixture(scope="module")
def frame_files(anny_body, tmp_path_factory):
    """Three synthetic frames with masks, plus one frame without anybody in it."""
    folder = tmp_path_factory.mktemp("frames")
    images, masks = [], []
    for k, yaw in enumerate((0.0, 120.0, 240.0)):
        person = synthetic_person(anny_body, size=(192, 288), texture_size=128, yaw_deg=yaw)
        images.append(folder / f"{k}.png")
        masks.append(folder / f"{k}_mask.png")
        Image.fromarray(person.image).save(images[-1])
        Image.fromarray(person.mask).save(masks[-1])
    images.append(folder / "empty.png")
    masks.append(folder / "empty_mask.png")
    Image.fromarray(np.full((288, 192, 3), 200, np.uint8)).save(images[-1])
    Image.fromarray(np.zeros((288, 192), np.uint8)).save(masks[-1])
    return images, [str(m) for m in masks]


def test_create_resume_and_animate_end_to_end(anny_body, frame_files, tmp_path):
    images, masks = frame_files
    out = tmp_path / "video.pt"
    opts = VideoAvatarOptions(
        masks=masks, fit_iters=30, refine_steps=2, texture_size=128, texture_channels=6,
        renderer_width=8, renderer_depth=2, steps=6, patch=48, checkpoint_every=2, resolution=144,
        view_colour="on",  # three frames: off by default
    )  # fmt: skip

    def stop_in_training(stage, done, total):
        if stage == "train" and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_video_avatar(images, out, opts, progress=stop_in_training)
    assert checkpoint_path(out).exists() and not out.exists()

    stages = []
    result = create_video_avatar(images, out, opts, progress=lambda s, d, t: stages.append(s))
    assert result.resumed_from_step == 3 and result.steps == 6
    assert not any(s.startswith("fit") or s == "perception" for s in stages)  # fitting was not redone
    assert result.frames_used == ["0.png", "1.png", "2.png"]
    assert [s["frame"] for s in result.frames_skipped] == ["empty.png"]
    assert result.psnr > 15 and result.mask_iou > 0.6
    # each frame drawn from the other frames' colour (as a new angle would be) scores lower
    assert result.new_view_psnr is not None and 5 < result.new_view_psnr < result.psnr
    assert json.loads(json.dumps(result.as_dict()))["avatar"] == str(out)
    # the preview: first frame, its redraw, colour texture, front / side / back (3 × 2 tiles)
    assert result.preview == out.with_name("video_preview.png")
    sheet = np.asarray(Image.open(result.preview).convert("RGB"))
    assert sheet.shape[1] > 3 * 256 and sheet.shape[0] > 2 * 256 and sheet.std() > 10
    assert not checkpoint_path(out).exists()  # removed once the avatar is written

    avatar = load_avatar(out)
    assert avatar.renderer["kind"] == RENDERER_KIND and avatar.renderer["config"]["texture_channels"] == 6
    assert avatar.textures["neural"].dtype == torch.float16 and avatar.textures["neural"].shape == (
        6,
        128,
        128,
    )
    assert avatar.textures["rgb"].dtype == torch.uint8 and avatar.textures["rgb"].shape[-1] == 3
    assert len(avatar.views) == 3 and avatar.views[0]["width"] == 192
    # the renderer corrects view-dependent colour: every frame's photo is kept
    assert avatar.renderer["config"]["view_colour"] is True
    assert "view_blur" not in avatar.textures  # image files, not refined: the default blur
    assert avatar.textures["view_photos"].shape[0] == 3 and avatar.textures["view_photos"].shape[-1] == 4

    draw = frame_renderer_for(avatar, anny_body, "cpu", (0.0, 0.0, 1.0))
    rest = anny_body(shape=avatar.shape[None]).vertices
    from avatarcli.render import framing_camera

    camera = framing_camera(rest, yaw_deg=[0.0, 180.0], size=(64, 96))
    pictures = draw(rest.expand(2, -1, -1), camera)
    assert pictures.shape == (2, 96, 64, 3) and pictures.dtype == np.uint8
    assert (pictures[:, 0, 0] == [0, 0, 255]).all()  # background where there is no body
    centre = pictures[:, 48, 32].astype(int)
    assert (np.abs(centre - [0, 0, 255]).sum(-1) > 60).all()  # the person is drawn

    # animate/render pick this renderer for the avatar, also over a background image
    from avatarcli.pipelines.posing import make_frame_renderer

    backdrop = np.zeros((96, 64, 3), np.float32)
    backdrop[..., 1] = 1.0
    picked = make_frame_renderer(avatar, anny_body, torch.device("cpu"), backdrop)
    assert type(picked).__name__ == "VideoFrameRenderer"
    assert (picked(rest, framing_camera(rest, size=(64, 96)))[0, 0, 0] == [0, 255, 0]).all()

    with pytest.raises(UserError, match="already exists"):
        create_video_avatar(images, out, opts)
    from avatarcli.errors import AvatarFormatError

    for key in ("view_photos", "view_K", "view_R", "view_t", "view_vertices"):  # any part missing: damaged
        broken = load_avatar(out)
        del broken.textures[key]
        with pytest.raises(AvatarFormatError, match="damaged"):
            frame_renderer_for(broken, anny_body, "cpu", (0.0, 0.0, 0.0))


def test_pose_rounds_resume_in_the_round_they_stopped(people, anny_body, tmp_path):
    """A video's frames are posed again on each round's avatar; Ctrl-C in a later round (even
    twice) keeps the re-posed frames, and the rerun neither refits nor re-poses and ends as a
    straight run does."""
    import imageio.v2 as imageio

    video = tmp_path / "turn.gif"
    imageio.mimsave(video, [p.image for p in people[:3]], duration=100)
    opts = VideoAvatarOptions(
        fit_iters=10, refine_steps=0, texture_size=128, texture_channels=6, renderer_width=8,
        renderer_depth=2, steps=4, patch=48, checkpoint_every=2, resolution=128, photometric_steps=2,
        pose_rounds=1, view_colour="on",
    )  # fmt: skip
    straight = create_video_avatar(video, tmp_path / "straight.pt", opts)
    first = load_avatar(straight.avatar)
    (record,) = first.provenance["posed_on_avatar"]
    assert record["frames"] == 3 and record["settings"]["steps"] == 2
    assert straight.steps == 4
    # its frames were refined photometrically: the photos are kept sharper, and drawn so again
    from avatarcli.pipelines.posing import avatar_view_colour
    from avatarcli.texture.view_dependent import BLUR_KEY, REFINED_BLUR_SHARE

    assert float(first.textures[BLUR_KEY]) == pytest.approx(REFINED_BLUR_SHARE)
    assert avatar_view_colour(first, anny_body, torch.device("cpu")).views.blur_share == pytest.approx(
        REFINED_BLUR_SHARE
    )

    def stop_in_round_two(at: int):
        def progress(stage, done, total):
            if stage == "train (round 2 of 2)" and done == at:
                raise KeyboardInterrupt

        return progress

    out = tmp_path / "resumed.pt"
    for at in (2, 3):  # stopped twice: the resumed run's own checkpoints keep the round
        with pytest.raises(KeyboardInterrupt):
            create_video_avatar(video, out, opts, progress=stop_in_round_two(at))
    stages = []
    resumed = create_video_avatar(video, out, opts, progress=lambda s, d, t: stages.append(s))
    assert resumed.resumed_from_step == 3 and resumed.steps == 4
    assert "train (round 2 of 2)" in stages and "train (round 1 of 2)" not in stages
    assert not any(s.startswith("fit") or s in ("perception", "posing on the avatar") for s in stages)
    again = load_avatar(out)
    assert torch.allclose(again.textures["neural"].float(), first.textures["neural"].float(), atol=1e-3)
    assert again.provenance["posed_on_avatar"] == first.provenance["posed_on_avatar"]
    with pytest.raises(UserError, match="pose-rounds"):
        VideoAvatarOptions(pose_rounds=-1).check()


def test_no_person_anywhere_is_a_user_error(frame_files, tmp_path):
    images, masks = frame_files
    opts = VideoAvatarOptions(masks=[masks[-1]], fit_iters=5, steps=1)
    with pytest.raises(UserError, match="no frame .* shows a whole person"):
        create_video_avatar([images[-1]], tmp_path / "none.pt", opts)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_frame_renderer_on_cuda_matches_cpu(anny_body, frames, rgb_init):
    from avatarcli.avatar_file import Avatar
    from avatarcli.nets.video_renderer import renderer_record
    from avatarcli.render import framing_camera

    model = _model(rgb_init)
    with torch.no_grad():
        model.renderer.head.weight.normal_(std=0.01)
    avatar = Avatar(
        body_backend=anny_body.name,
        body_model_id=anny_body.model_id,
        shape=frames.shape[0],
        uv_layout=anny_body.name,
        textures={
            "neural": model.texture.detach()[0].half(),
            "rgb": torch.zeros(128, 128, 3, dtype=torch.uint8),
        },
        renderer=renderer_record(model.renderer, RENDERER_KIND),
    )
    rest = anny_body(shape=frames.shape).vertices
    camera = framing_camera(rest, size=(96, 128))
    on_cpu = frame_renderer_for(avatar, anny_body, "cpu", (1.0, 1.0, 1.0))(rest, camera)
    on_gpu = frame_renderer_for(avatar, anny_body, "cuda", (1.0, 1.0, 1.0))(rest.cuda(), camera.to("cuda"))
    anny_body.to("cpu")
    assert np.abs(on_cpu.astype(int) - on_gpu.astype(int)).mean() < 1.0


def test_divergence_guard_rolls_back_to_the_best_weights(anny_body, frames, rgb_init, monkeypatch):
    import avatarcli.pipelines.video_training as training

    monkeypatch.setattr(training, "GUARD_WINDOW", 4)
    model = _model(rgb_init)
    targets = frame_targets(anny_body, frames, range(3), normals=False)
    wild = TrainSettings(steps=24, batch=2, patch=48, lr_texture=0.5, lr_renderer=0.05, checkpoint_every=0)
    state = train_steps(model, targets, wild, seed=0)
    rollbacks = [h for h in state.history if "event" in h]
    assert rollbacks, "a learning rate this large should have triggered the guard"
    assert all(torch.isfinite(p).all() for p in model.parameters())
