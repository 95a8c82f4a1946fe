"""Sidecar files: masks and OpenPose keypoints kept beside photos are found and used, and a folder's
masks, DensePose images and previews are never taken for photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatarcli.errors import UserError
from avatarcli.perception.keypoints import BODY_INDEX
from avatarcli.perception.sidecars import find_sidecars, photos_in
from avatarcli.pipelines.create import split_inputs


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path / "cache"))


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path) if path.suffix != ".json" else path.write_text("{}")
    return path


def test_found_beside_the_photo_whatever_the_case_and_image_type(tmp_path):
    photo = _touch(tmp_path / "IMG_7.JPG")
    mask = _touch(tmp_path / "img_7_mask.png")
    keypoints = _touch(tmp_path / "IMG_7_keypoints.json")
    _touch(tmp_path / "IMG_70_mask.png")  # another photo's
    found = find_sidecars(photo)
    assert found.mask == mask and found.keypoints == keypoints
    assert find_sidecars(_touch(tmp_path / "other.png")).mask is None


def test_found_in_kind_folders_beside_the_photos_folder(tmp_path):
    """The octopus / multi-view layout: frames/0000.png, segmentations/0000.png,
    keypoints/0000_keypoints.json."""
    photo = _touch(tmp_path / "frames" / "0000.png")
    mask = _touch(tmp_path / "segmentations" / "0000.png")
    keypoints = _touch(tmp_path / "keypoints" / "0000_keypoints.json")
    _touch(tmp_path / "segmentations" / "0001.png")
    assert find_sidecars(photo) == type(find_sidecars(photo))(mask, keypoints)
    assert find_sidecars(tmp_path / "frames" / "0002.png").mask is None
    # a mask folder's own file given as a photo is not its own mask
    assert find_sidecars(mask).mask is None
    # beside the photo wins over a kind folder
    near = _touch(tmp_path / "frames" / "0000_mask.png")
    assert find_sidecars(photo).mask == near


def test_a_folder_lists_its_photos_without_their_sidecars(tmp_path):
    names = [
        "a.png", "a_mask.png", "b.jpg", "b_densepose_IUV.png", "c.png", "c_preview.png", "c_fit.png",
        "beach_mask.jpg", "d.png", "d_rgba.png", "notes.txt",
    ]  # fmt: skip
    for n in names:
        _touch(tmp_path / n) if not n.endswith(".txt") else (tmp_path / n).write_text("x")
    photos, extras = split_inputs([tmp_path])
    # beach_mask.jpg has no beach photo: it is a photo; d_rgba is another photo of d
    assert [p.name for p in photos] == ["a.png", "b.jpg", "beach_mask.jpg", "c.png", "d.png", "d_rgba.png"]
    assert sorted(p.name for p in extras) == [
        "a_mask.png", "b_densepose_IUV.png", "c_fit.png", "c_preview.png",
    ]  # fmt: skip
    # a shell glob lists the sidecars too: they are dropped all the same
    assert [p.name for p in photos_in(sorted(tmp_path.glob("a*.png")))] == ["a.png"]
    # a glob that matches the sidecars alone (photos .jpg, sidecars .png) drops them all the same
    assert photos_in([tmp_path / "b_densepose_IUV.png", tmp_path / "d_rgba.png"]) == [tmp_path / "d_rgba.png"]
    with pytest.raises(UserError, match="no input photos found.*a_mask.png is kept beside a photo"):
        split_inputs([tmp_path / "a_mask.png"])
    assert split_inputs([tmp_path / "beach_mask.jpg"])[0] == [tmp_path / "beach_mask.jpg"]


def test_a_datasets_root_folder_gets_a_hint_to_its_photos(tmp_path):
    _touch(tmp_path / "frames" / "0000.png")
    _touch(tmp_path / "segmentations" / "0000.png")
    _touch(tmp_path / "keypoints" / "0000_keypoints.json")
    with pytest.raises(UserError, match=r"sub-folders hold images \(frames, segmentations\): give the"):
        split_inputs([tmp_path])
    with pytest.raises(UserError, match="no input photos found$"):
        split_inputs([tmp_path / "keypoints"])


def _openpose(path: Path) -> Path:
    """A standing person (BODY_25) about 400 px tall in a 400 × 460 photo."""
    points = {
        "nose": (0, 20), "neck": (0, 60), "right_shoulder": (-40, 60), "right_elbow": (-50, 130),
        "right_wrist": (-55, 190), "left_shoulder": (40, 60), "left_elbow": (50, 130),
        "left_wrist": (55, 190), "mid_hip": (0, 200), "right_hip": (-25, 200), "right_knee": (-25, 300),
        "right_ankle": (-25, 390), "left_hip": (25, 200), "left_knee": (25, 300), "left_ankle": (25, 390),
    }  # fmt: skip
    flat = [0.0] * 75
    for name, (x, y) in points.items():
        flat[3 * BODY_INDEX[name] : 3 * BODY_INDEX[name] + 3] = [200 + x, 20 + y, 0.9]
    path.write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": flat}]}))
    return path


def _photo_with_sidecars(folder: Path) -> tuple[Path, Path, Path]:
    photo = folder / "person.png"
    Image.new("RGB", (400, 460), (90, 90, 90)).save(photo)
    m = np.zeros((460, 400), np.uint8)
    m[30:415, 140:260] = 255
    mask = folder / "person_mask.png"
    Image.fromarray(m).save(mask)
    return photo, mask, _openpose(folder / "person_keypoints.json")


def test_perceive_reads_the_sidecars_and_says_so(tmp_path, monkeypatch):
    import avatarcli.perception.detector as detector
    from avatarcli.perception import perceive

    calls = []
    monkeypatch.setattr(detector, "detect_person", lambda image: calls.append(1))  # finds nobody
    photo, mask, keypoints = _photo_with_sidecars(tmp_path)
    p = perceive(photo)
    assert not calls, "with both sidecars there is nothing to detect"
    assert p.source == "openpose" and p.mask_source == "file"
    assert p.sources() == {"keypoints": str(keypoints), "mask": str(mask)}
    assert p.mask[200, 200] == 1.0 and p.mask[200, 50] == 0.0
    cached = perceive(photo)  # the cache hands back where the inputs came from, too
    assert cached.sources() == p.sources()
    # given files win over sidecars; --no-sidecars ignores them
    other = tmp_path / "other_mask.png"
    Image.fromarray(np.full((460, 400), 255, np.uint8)).save(other)
    assert perceive(photo, mask=other).sources()["mask"] == str(other)
    with pytest.raises(UserError, match="no person found"):
        perceive(photo, sidecars=False)  # the detector (stubbed) finds nobody in the grey photo
    assert calls


def test_an_unreadable_sidecar_names_itself_and_the_way_out(tmp_path):
    from avatarcli.perception import perceive

    photo, _, keypoints = _photo_with_sidecars(tmp_path)
    keypoints.write_text("{not json")
    with pytest.raises(UserError, match=r"person_keypoints\.json.*found beside person\.png.*--no-sidecars"):
        perceive(photo)
    given = tmp_path / "given.json"
    given.write_text("{not json")
    with pytest.raises(UserError) as err:
        perceive(photo, keypoints=given)
    assert "--no-sidecars" not in str(err.value)  # a file the user named is just reported


def test_fit_uses_the_sidecars_of_a_folder(tmp_path, monkeypatch, capsys):
    """`avatar fit folder/` with a photo, its mask and keypoints: one photo fitted from the files."""
    import avatarcli.perception.detector as detector
    from avatarcli.cli.main import main

    def no_detector(*_a, **_k):
        raise AssertionError("the sidecars give keypoints and mask: mediapipe must not run")

    monkeypatch.setattr(detector, "detect_person", no_detector)
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo_with_sidecars(folder)
    out = tmp_path / "fit"
    assert main(["fit", str(folder), "-o", str(out), "--iters", "20", "--json"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.fit.json")) == ["person.fit.json"]
    assert "person_mask.png" in captured.err  # named as not taken for a photo
    assert json.loads(captured.out)["quality"][0]["silhouette_iou"] > 0.5  # scored on the sidecar mask


def test_a_video_checkpoint_knows_the_sidecars_its_frames_read(tmp_path):
    """Frames given as images read their sidecars; a mask added later must not resume a checkpoint
    made without it, so the files go into the checkpoint's key (a video's frames have none)."""
    from avatarcli.pipelines.video_avatar import _sidecar_files
    from avatarcli.pipelines.video_frames import FrameList

    frames = [_touch(tmp_path / f"{i}.png") for i in range(3)]
    mask = _touch(tmp_path / "0_mask.png")
    keypoints = _touch(tmp_path / "1_keypoints.json")
    listed = FrameList(frames, [0, 1, 2], "frames", 3)
    assert _sidecar_files(listed, [None] * 3, True) == [("mask", mask), ("keypoints", keypoints)]
    assert _sidecar_files(listed, ["given.png", None, None], True) == [("keypoints", keypoints)]
    assert _sidecar_files(listed, [None] * 3, False) == []
    assert _sidecar_files(FrameList(frames, [0, 1, 2], "clip.mp4", 3), [None] * 3, True) == []


def test_the_result_line_names_only_the_files_read():
    from avatarcli.cli.cmd_create import _sources_line

    sources = [
        {"keypoints": "/p/x_keypoints.json", "mask": "/p/masks/x.png"},
        {"keypoints": "mediapipe", "mask": "alpha"},
    ]
    line = _sources_line(["/p/x.jpg", "/p/y.png"], sources)
    assert line == "read from files: x.jpg: keypoints x_keypoints.json, mask x.png"
    assert _sources_line(["/p/y.png"], sources[1:]) is None
