"""Video avatars fit the frames of one video with the temporal term, and image lists without it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from avatarcli.pipelines import video_avatar
from avatarcli.pipelines.video_avatar import VideoAvatarOptions, create_video_avatar, fit_frames


@pytest.fixture
def captured_fits(monkeypatch):
    """Replace the fitter: record the settings of each call and return one fake fit per frame."""
    calls = []

    def fake_fit(perceptions, body, *, settings, progress=None):
        calls.append((len(perceptions), settings.temporal_smoothness, settings.frame_times))
        return [SimpleNamespace(shape=np.full(3, len(calls), np.float32)) for _ in perceptions]

    monkeypatch.setattr("avatarcli.fitting.fit_perceptions", fake_fit)
    return calls


def test_frame_times_go_to_each_chunk_and_image_lists_get_no_temporal_term(captured_fits):
    opts = VideoAvatarOptions(temporal_smoothness=2.0, fit_chunk=2)
    fits = fit_frames([object()] * 5, None, opts, lambda *_: None, times=[0, 2, 4, 7, 9])
    assert captured_fits == [(2, 2.0, (0.0, 2.0)), (2, 2.0, (4.0, 7.0)), (1, 2.0, (9.0,))]
    assert all(np.allclose(f.shape, 1.8) for f in fits)  # per-frame mean of the chunk shapes 1, 1, 2, 2, 3
    captured_fits.clear()
    fit_frames([object()] * 3, None, opts, lambda *_: None)  # no times: frames need not be in order
    assert [c[1] for c in captured_fits] == [0.0, 0.0]


def test_a_video_is_fitted_at_its_source_frame_indices(tmp_path, monkeypatch):
    """Frames subsampled from a clip, one of them skipped by perception: times = source indices."""
    import imageio.v2 as imageio

    clip = tmp_path / "clip.gif"
    imageio.mimsave(clip, [np.full((32, 24, 3), 10 * k, np.uint8) for k in range(9)], duration=40)
    seen = {}

    def fake_perceive(paths, masks, say, sidecars=True):
        kept = [SimpleNamespace(image_path=str(p)) for p in paths if not p.name.endswith("00004.png")]
        return kept, [{"frame": "frame_00004.png", "reason": "no whole person"}]

    class Stop(Exception):
        pass

    def fake_fit_frames(perceptions, body, opts, say, times=None):
        seen["times"] = times
        raise Stop

    monkeypatch.setattr(video_avatar, "perceive_frames", fake_perceive)
    monkeypatch.setattr(video_avatar, "fit_frames", fake_fit_frames)
    with pytest.raises(Stop):
        create_video_avatar(clip, tmp_path / "a.pt", VideoAvatarOptions(every=2))
    assert seen["times"] == [0, 2, 6, 8]

    frames = []
    for k in range(3):
        frames.append(tmp_path / f"{k}.png")
        imageio.imwrite(frames[-1], np.zeros((32, 24, 3), np.uint8))
    with pytest.raises(Stop):
        create_video_avatar(frames, tmp_path / "b.pt", VideoAvatarOptions())
    assert seen["times"] is None  # image lists: no temporal term


def test_create_video_uses_the_library_default_temporal_weight(tmp_path, monkeypatch):
    """The CLI's --temporal-smoothness and --photometric-steps defaults are the measured ones in
    VideoAvatarOptions."""
    from avatarcli.cli import cmd_create
    from avatarcli.cli.main import main

    seen = {}
    monkeypatch.setattr(cmd_create, "_run_video", lambda inputs, output, opts, *_: seen.update(opts=opts))
    assert main(["create", "--video", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "a.pt")]) == 0
    assert seen["opts"].temporal_smoothness == VideoAvatarOptions().temporal_smoothness == 30.0
    assert seen["opts"].photometric_steps == VideoAvatarOptions().photometric_steps == 50
