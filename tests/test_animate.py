"""avatar animate / avatar render / frame sinks, on an avatar built from the synthetic outfit."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
from outfit_avatar import outfit_avatar  # shared test helper

from avatarcli.avatar_file import save_avatar
from avatarcli.cli.main import main
from avatarcli.errors import UserError
from avatarcli.media import open_frame_sink, parse_background
from avatarcli.pipelines.animate import AnimateOptions, animate

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def avatar_file(anny_body, tmp_path_factory):
    return save_avatar(outfit_avatar(anny_body, 128), tmp_path_factory.mktemp("av") / "gt.pt")


def test_turntable_gif_and_json(avatar_file, tmp_path, capsys):
    out = tmp_path / "spin.gif"
    code = main(
        ["animate", str(avatar_file), "--turntable", "-o", str(out), "--size", "64", "--fps", "8", "--json"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 32 and out.exists()
    frames = imageio.mimread(out)
    assert len(frames) == 32 and frames[0].shape[:2] == (64, 64)
    # front (frame 0) and back (frame 16) differ: the badge/face are only on the front
    assert np.abs(frames[0][..., :3].astype(int) - frames[16][..., :3].astype(int)).mean() > 1


def test_motion_mp4_streams_and_frames_the_body(avatar_file, tmp_path):
    out = tmp_path / "wave.mp4"
    opts = AnimateOptions(motion=str(EXAMPLES / "motions" / "wave.npz"), size=96, end=0.5)
    result = animate(avatar_file, out, opts)
    assert out.exists() and result.frames == 15
    assert out.stat().st_mode & 0o044  # readable by others, as any written file
    frames = [f for f in imageio.get_reader(out)]  # list() trusts a bogus len() hint
    assert len(frames) == 15
    body = np.stack(frames).astype(int).sum(-1) < 3 * 240  # non-white pixels
    # the whole body stays in frame: nothing touches the image border
    assert body.any(axis=(1, 2)).all()
    assert not body[:, 0, :].any() and not body[:, -1, :].any()
    assert not body[:, :, 0].any() and not body[:, :, -1].any()


def test_png_folder_and_orbit(avatar_file, tmp_path):
    out = tmp_path / "frames"
    opts = AnimateOptions(
        motion=str(EXAMPLES / "motions" / "walk.npz"), size=48, orbit=True, background="#203040"
    )
    result = animate(avatar_file, out, opts)
    pngs = sorted(out.glob("frame_*.png"))
    assert len(pngs) == result.frames > 1
    assert out.stat().st_mode & 0o055  # a folder others can list, as mkdir would make it
    assert not list(tmp_path.glob(".*part*")), "temporary output left behind"


def test_errors_leave_nothing_behind(avatar_file, tmp_path):
    with pytest.raises(UserError, match="nothing to animate"):
        animate(avatar_file, tmp_path / "x.mp4", AnimateOptions())
    bad = tmp_path / "bad.bvh"
    bad.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xrotation\n")
    assert main(["animate", str(avatar_file), "--motion", str(bad), "-o", str(tmp_path / "y.mp4")]) == 2
    assert not (tmp_path / "y.mp4").exists() and not list(tmp_path.glob(".*part*"))
    existing = tmp_path / "z.gif"
    existing.write_bytes(b"x")
    with pytest.raises(UserError, match="--overwrite"):
        animate(avatar_file, existing, AnimateOptions(turntable=True, size=32))


def test_a_single_pose_motion_writes_an_image_or_says_its_video_has_one_frame(avatar_file, tmp_path, capsys):
    wave = str(EXAMPLES / "motions" / "wave.npz")
    one_pose = AnimateOptions(motion=wave, size=48, end=1 / 30)  # the clip's first frame only
    still = animate(avatar_file, tmp_path / "pose.png", one_pose)
    assert still.frames == 1 and not still.notes
    assert (tmp_path / "pose.png").stat().st_mode & 0o044  # readable by others, as any written file
    image = imageio.imread(tmp_path / "pose.png")
    assert image.shape[:2] == (48, 48) and (image[..., :3].astype(int).sum(-1) < 3 * 240).any()
    video = animate(avatar_file, tmp_path / "pose.mp4", one_pose)
    assert video.frames == 1 and "single pose" in video.notes[0] and "pose.png" in video.notes[0]
    # a clip into one image: one clear line before anything is rendered, nothing left behind
    with pytest.raises(UserError, match="holds one image, but the motion wave.npz has 15 frames"):
        animate(avatar_file, tmp_path / "clip.png", AnimateOptions(motion=wave, size=48, end=0.5))
    assert not list(tmp_path.glob("*clip*"))
    code = main(
        ["animate", str(avatar_file), "--turntable", "-o", str(tmp_path / "spin.jpg"), "--size", "32"]
    )
    assert code != 0 and "a turntable has" in capsys.readouterr().err
    assert not list(tmp_path.glob("*spin*"))


def test_sink_discards_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with open_frame_sink(tmp_path / "a.mp4", fps=10) as sink:
            sink.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_parse_background(tmp_path):
    assert parse_background("white", (4, 4)) == (1.0, 1.0, 1.0)
    assert parse_background("#ff0000", (4, 4)) == (1.0, 0.0, 0.0)
    assert parse_background("0,128,255", (4, 4))[1] == pytest.approx(128 / 255)
    with pytest.raises(UserError, match="neither a colour"):
        parse_background("nope", (4, 4))


def test_render_still_views(avatar_file, tmp_path):
    front, back = tmp_path / "f.png", tmp_path / "b.png"
    assert main(["render", str(avatar_file), "-o", str(front), "--size", "64"]) == 0
    assert main(["render", str(avatar_file), "-o", str(back), "--size", "64", "--view", "back"]) == 0
    a = imageio.imread(front).astype(int)
    b = imageio.imread(back).astype(int)
    assert a.shape == (64, 64, 3) and np.abs(a - b).mean() > 1
    # no input view stored → clear user error
    assert main(["render", str(avatar_file), "-o", str(tmp_path / "i.png"), "--view", "input"]) == 2
