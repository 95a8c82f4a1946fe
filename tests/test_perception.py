"""Perception: robust image loading, keypoint mapping, OpenPose/mask overrides, cache, and the
mediapipe detector on the shared photos (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatarcli.errors import InputFileError, UserError
from avatarcli.perception.images import load_image, load_mask
from avatarcli.perception.keypoints import BODY_INDEX, NUM_BODY_KEYPOINTS, from_mediapipe_pose

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path / "cache"))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width × height but holds (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)))


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("hello, I am not a picture"), "not an image"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: Image.new("RGB", (1, 1)).save(p, format="PNG"), "only 1x1"),
        (lambda p: _png_header_only(p, 20000, 20000), "too large"),
    ],
    ids=["not-an-image", "zero-bytes", "1x1", "20000x20000"],
)
def test_bad_files_give_one_clear_error(tmp_path, make, message):
    path = tmp_path / "photo.png"
    make(path)
    with pytest.raises(InputFileError, match=message):
        load_image(path)


def test_truncated_file_is_reported(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(full, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(InputFileError, match="truncated|damaged"):
        load_image(cut)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        load_image(tmp_path / "nope.png")


# ------------------------------------------------------------------------------ image modes
def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (120, 60), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 60))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    rgb = load_image(path).rgb
    assert rgb.shape == (120, 60, 3)  # upright: portrait
    assert rgb[5, 30, 2] > 200 and rgb[-5, 30, 0] > 200  # the blue strip is now on top


def _heif_photo(path, size=(96, 64)):
    """A HEIC file written by pillow-heif: red left half, blue right half."""
    pillow_heif = pytest.importorskip("pillow_heif")
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:, : size[0] // 2, 0] = 230
    arr[:, size[0] // 2 :, 2] = 230
    pillow_heif.from_bytes(mode="RGB", size=size, data=arr.tobytes()).save(path, quality=95)
    return path


def test_heic_photos_are_read_and_a_renamed_one_is_recognised(tmp_path):
    rgb = load_image(_heif_photo(tmp_path / "phone.HEIC")).rgb
    assert rgb.shape == (64, 96, 3) and rgb[32, 10, 0] > 180 and rgb[32, 85, 2] > 180
    renamed = tmp_path / "phone.jpg"  # a phone photo renamed .jpg is still HEIF inside
    renamed.write_bytes((tmp_path / "phone.HEIC").read_bytes())
    assert load_image(renamed).rgb.shape == (64, 96, 3)


def test_heic_without_pillow_heif_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails, as where it is absent
    with pytest.raises(InputFileError, match="HEIC/HEIF photo .* pip install pillow-heif"):
        load_image(path)
    header_only = tmp_path / "renamed.jpg"  # recognised by its header, whatever its name
    header_only.write_bytes(path.read_bytes())
    with pytest.raises(InputFileError, match="pip install pillow-heif"):
        load_image(header_only)


@pytest.mark.parametrize("mode", ["L", "I;16", "CMYK", "P", "LA"])
def test_any_mode_becomes_rgb_uint8(tmp_path, mode):
    base = Image.new("RGB", (64, 48), (200, 100, 50))
    if mode == "I;16":
        arr = np.full((48, 64), 40000, np.uint16)
        img = Image.fromarray(arr)
        suffix = ".png"
    else:
        img = base.convert(mode)
        suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"img{suffix}"
    img.save(path)
    loaded = load_image(path)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (48, 64, 3)
    if mode == "I;16":
        assert abs(int(loaded.rgb[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1  # scaled, not clipped


def test_alpha_matte_is_kept_as_mask_but_opaque_alpha_is_not(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 128
    rgba[16:48, 24:40, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "matte.png")
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    matte = load_image(tmp_path / "matte.png").alpha
    assert matte is not None and matte[30, 30] == 1.0 and matte[0, 0] == 0.0
    assert load_image(tmp_path / "opaque.png").alpha is None


def test_colour_segmentation_mask_counts_non_black_as_person(tmp_path):
    seg = np.zeros((40, 30, 3), np.uint8)
    seg[5:20, 5:10] = (255, 0, 0)
    seg[20:35, 5:10] = (0, 0, 120)
    Image.fromarray(seg).save(tmp_path / "seg.png")
    mask = load_mask(tmp_path / "seg.png", (60, 80))  # also resized to the photo
    assert mask.shape == (80, 60)
    assert mask[20:60, 12:18].mean() > 0.95 and mask[:, 30:].max() == 0.0


# ---------------------------------------------------------------------------- keypoint sets
def test_mediapipe_landmarks_map_into_the_canonical_set():
    lm = np.zeros((33, 3), np.float32)
    lm[:, 0] = np.arange(33)
    lm[:, 2] = 0.9
    lm[11, :2], lm[12, :2] = (10, 4), (20, 8)
    lm[24, 2] = 0.2
    kp = from_mediapipe_pose(lm)
    assert kp.shape == (NUM_BODY_KEYPOINTS, 3)
    np.testing.assert_allclose(kp[BODY_INDEX["neck"]], (15, 6, 0.9))
    assert kp[BODY_INDEX["mid_hip"], 2] == pytest.approx(0.2)  # the weaker end
    assert kp[BODY_INDEX["left_small_toe"], 2] == 0.0  # mediapipe has no small toes
    assert kp[BODY_INDEX["left_big_toe"], 0] == 31


def _person(scale: float, dx: float = 0.0, ankles: bool = True) -> list[float]:
    """A BODY_25 list for a standing person about 400·scale pixels tall."""
    pts = {
        "nose": (0, 20), "neck": (0, 60), "right_shoulder": (-40, 60), "right_elbow": (-50, 130),
        "right_wrist": (-55, 190), "left_shoulder": (40, 60), "left_elbow": (50, 130),
        "left_wrist": (55, 190),
        "mid_hip": (0, 200), "right_hip": (-25, 200), "right_knee": (-25, 300), "right_ankle": (-25, 390),
        "left_hip": (25, 200), "left_knee": (25, 300), "left_ankle": (25, 390),
    }  # fmt: skip
    flat = [0.0] * 75
    for name, (x, y) in pts.items():
        if not ankles and "ankle" in name:
            continue
        i = BODY_INDEX[name]
        flat[3 * i : 3 * i + 3] = [200 + dx + x * scale, 20 + y * scale, 0.9]
    return flat


def _write_openpose(path: Path, *people: list[float]) -> Path:
    path.write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": p} for p in people]}))
    return path


def test_openpose_picks_the_largest_person_and_counts_everyone(tmp_path):
    from avatarcli.perception.openpose import read_openpose

    person = read_openpose(_write_openpose(tmp_path / "k.json", _person(0.4, dx=-120), _person(1.0)))
    assert person.num_people == 2
    assert person.body[BODY_INDEX["left_ankle"], 1] == pytest.approx(20 + 390)


def test_openpose_coco18_and_broken_files(tmp_path):
    from avatarcli.perception.openpose import read_openpose

    coco = [0.0] * 54
    coco[8 * 3 : 8 * 3 + 3] = [90, 200, 0.8]  # right hip
    coco[11 * 3 : 11 * 3 + 3] = [110, 200, 0.6]  # left hip
    body = read_openpose(_write_openpose(tmp_path / "c.json", coco)).body
    np.testing.assert_allclose(body[BODY_INDEX["mid_hip"]], (100, 200, 0.6))
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "nobody.json").write_text('{"people": []}')
    (tmp_path / "odd.json").write_text('{"people": [{"pose_keypoints_2d": [1, 2]}]}')
    for name in ("bad.json", "nobody.json", "odd.json", "absent.json"):
        with pytest.raises(InputFileError):
            read_openpose(tmp_path / name)


# ------------------------------------------------------------------------ perceive + cache
def _photo_with_overrides(tmp_path: Path, ankles: bool = True) -> tuple[Path, Path, Path]:
    img = tmp_path / "photo.png"
    Image.new("RGB", (400, 460), (90, 90, 90)).save(img)
    mask = tmp_path / "mask.png"
    m = np.zeros((460, 400), np.uint8)
    m[30:420, 150:250] = 255
    Image.fromarray(m).save(mask)
    kp = _write_openpose(tmp_path / "photo_keypoints.json", _person(1.0, ankles=ankles))
    return img, mask, kp


def test_overrides_skip_the_detector_and_results_are_cached(tmp_path, monkeypatch):
    import avatarcli.perception.detector as detector
    from avatarcli.perception import perceive

    def no_detector(*_a, **_k):
        raise AssertionError("mediapipe must not run when both overrides are given")

    monkeypatch.setattr(detector, "detect_person", no_detector)
    img, mask, kp = _photo_with_overrides(tmp_path)
    first = perceive(img, mask=mask, keypoints=kp)
    assert first.source == "openpose" and first.mask_source == "file"
    assert first.mask.shape == (460, 400) and first.keypoints.shape == (25, 3)
    assert first.image_sha256 and not first.warnings
    cached = list((tmp_path / "cache" / "perception").glob("*.npz"))
    assert len(cached) == 1
    again = perceive(img, mask=mask, keypoints=kp)
    np.testing.assert_array_equal(again.keypoints, first.keypoints)
    np.testing.assert_array_equal(again.mask, first.mask)
    # a different override is a different cache entry
    _write_openpose(kp, _person(0.9))
    perceive(img, mask=mask, keypoints=kp)
    assert len(list((tmp_path / "cache" / "perception").glob("*.npz"))) == 2


def test_a_rerun_from_the_cache_sees_the_first_runs_very_mask(tmp_path, monkeypatch):
    """The segmentation's soft mask is handed out in the cache's 1/255 steps on the first run too:
    a rerun, which reads the cache, must not differ by a rounding."""
    import avatarcli.perception.detector as detector
    from avatarcli.perception import perceive

    img, _, kp = _photo_with_overrides(tmp_path)
    soft = np.zeros((460, 400), np.float32)
    soft[30:420, 150:250] = np.random.default_rng(0).uniform(0.2, 1.0, (390, 100))
    found = detector.Detection(body=np.zeros((25, 3)), left_hand=None, right_hand=None, face=None, mask=soft)
    monkeypatch.setattr(detector, "detect_person", lambda _image: found)
    first = perceive(img, keypoints=kp)  # keypoints from the file, the mask from "mediapipe"
    assert first.mask_source == "mediapipe"
    again = perceive(img, keypoints=kp)
    np.testing.assert_array_equal(again.mask, first.mask)
    assert again.mask.dtype == first.mask.dtype == np.float32
    assert np.abs(first.mask - soft).max() <= 0.5 / 255 + 1e-7


def test_a_small_person_gets_a_soft_texture_warning(tmp_path):
    from avatarcli.perception import perceive
    from avatarcli.perception.perceive import small_person_warning

    img, mask, kp = _photo_with_overrides(tmp_path)  # 390 px tall: no warning
    assert small_person_warning(perceive(img, mask=mask, keypoints=kp)) is None
    small = tmp_path / "small.png"
    m = np.zeros((460, 400), np.uint8)
    m[100:300, 180:220] = 255  # 200 px tall
    Image.fromarray(m).save(small)
    assert small_person_warning(perceive(img, mask=small, keypoints=kp)) == (
        f"{img}: the person is only 200 px tall; the avatar's texture will be soft "
        "(a photo where they are ≥ 256 px tall gives a sharper one)"
    )
    # a video's frames: one warning for all of them
    from avatarcli.pipelines.video_avatar import small_person_note

    frames = [perceive(img, mask=small, keypoints=kp)] * 3 + [perceive(img, mask=mask, keypoints=kp)]
    assert small_person_note(frames) == (
        "the person is under 256 px tall in 3 of 4 frames (median 200 px); the avatar's texture will be soft"
    )
    assert small_person_note(frames[3:]) is None


def test_missing_feet_warn_but_missing_knees_refuse(tmp_path):
    from avatarcli.perception import perceive

    img, mask, _ = _photo_with_overrides(tmp_path)
    no_feet = _write_openpose(tmp_path / "nofeet.json", _person(1.0, ankles=False))
    result = perceive(img, mask=mask, keypoints=no_feet, cache=False)
    assert any("ankle" in w for w in result.warnings)
    knees_off = _person(1.0)
    for name in ("left_knee", "right_knee", "left_ankle", "right_ankle"):
        knees_off[3 * BODY_INDEX[name] + 2] = 0.0
    fragment = _write_openpose(tmp_path / "fragment.json", knees_off)
    with pytest.raises(UserError, match="only part of a person"):
        perceive(img, mask=mask, keypoints=fragment, cache=False)


# ------------------------------------------------------------------ mediapipe on real photos
def _need(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared photo {name} not present")
    return path


def test_mediapipe_finds_ryota_and_segments_him():
    from avatarcli.fitting.quality import mask_iou
    from avatarcli.perception import perceive

    photo, truth = _need("pifu_ryota.png"), _need("pifu_ryota_mask.png")
    p = perceive(photo, sidecars=False)  # not the true mask kept beside it
    assert p.source == "mediapipe" and p.mask_source == "mediapipe" and p.num_people == 1
    assert (p.keypoints[:, 2] > 0.5).sum() >= 20
    assert (
        p.keypoints[BODY_INDEX["nose"], 1]
        < p.keypoints[BODY_INDEX["mid_hip"], 1]
        < p.keypoints[BODY_INDEX["left_ankle"], 1]
    )
    assert (
        p.keypoints[BODY_INDEX["left_shoulder"], 0] > p.keypoints[BODY_INDEX["right_shoulder"], 0]
    )  # facing us
    assert mask_iou(p.mask > 0.5, load_mask(truth, (p.width, p.height))) > 0.85
    assert p.face is not None and p.face_format.startswith("mediapipe")


def test_no_person_two_people_and_cut_at_the_knees(tmp_path):
    from avatarcli.perception import perceive

    photo = Image.open(_need("pifu_ryota.png")).convert("RGB")
    Image.new("RGB", (256, 256), (128, 128, 128)).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="no person"):
        perceive(tmp_path / "empty.png")

    two = Image.new("RGB", (1024, 512))
    two.paste(photo.resize((358, 358)), (0, 154))
    two.paste(photo, (450, 0))
    two.save(tmp_path / "two.png")
    p = perceive(tmp_path / "two.png")
    assert p.num_people == 2 and any("2 people" in w for w in p.warnings)
    assert p.keypoints[BODY_INDEX["mid_hip"], 0] > 600  # the bigger person, on the right
    assert p.mask[:, :400].max() < 0.5  # the other person is not in the mask

    photo.crop((0, 0, 512, 330)).save(tmp_path / "knees.png")
    with pytest.raises(UserError, match="only part of a person"):
        perceive(tmp_path / "knees.png")


def test_shared_openpose_file_and_alpha_mask():
    from avatarcli.perception import perceive

    p = perceive(_need("sith_002.png"), keypoints=_need("sith_002_keypoints.json"))
    assert p.source == "openpose" and p.mask_source == "alpha"
    assert p.left_hand is not None and p.left_hand.shape == (21, 3)
    assert p.face is not None and p.face_format == "openpose70"
    assert 0.05 < float((p.mask > 0.5).mean()) < 0.5


def test_big_photo_is_detected_downscaled_and_mapped_back(tmp_path):
    from avatarcli.perception import perceive

    photo = Image.open(_need("pifu_ryota.png")).convert("RGB")
    photo.resize((2048, 2048), Image.BICUBIC).save(tmp_path / "big.png")
    small = perceive(_need("pifu_ryota.png"), sidecars=False)  # mediapipe's mask, as for big.png
    big = perceive(tmp_path / "big.png")
    assert big.image.shape == (2048, 2048, 3) and big.mask.shape == (2048, 2048)
    seen = (small.keypoints[:, 2] > 0.5) & (big.keypoints[:, 2] > 0.5)
    err = np.linalg.norm(big.keypoints[seen, :2] / 4 - small.keypoints[seen, :2], axis=1)
    assert np.median(err) < 3.0  # same points, in the big image's pixels


def test_native_log_lines_are_dropped_and_everything_else_kept():
    from avatarcli.perception.native_logs import filter_native_logs

    captured = (
        b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"W0000 00:00:1795237845.724146   12965 inference_feedback_manager.cc:114] Feedback manager...\n"
        b"I0000 00:00:1795237845.9   12 gl_context.cc:369] GL version: 3.2\n"
        b"\x1b[2K  perception \xe2\x94\x81\xe2\x94\x81 1/1\r\n"
        b"E0000 00:00:1795237845.9   12 graph.cc:12] a real native error\n"
        b"UserWarning: something Python said\n"
    )
    assert filter_native_logs(captured) == (
        b"\x1b[2K  perception \xe2\x94\x81\xe2\x94\x81 1/1\r\n"
        b"E0000 00:00:1795237845.9   12 graph.cc:12] a real native error\n"
        b"UserWarning: something Python said\n"
    )


def test_quiet_native_logs_filters_descriptor_2_itself():
    """Native code writes to fd 2 directly, bypassing sys.stderr: check at the descriptor level
    in a child process (pytest's own capture would otherwise be in the way)."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from avatarcli.perception.native_logs import quiet_native_logs\n"
        "with quiet_native_logs():\n"
        "    os.write(2, b'W0000 00:00:1.5   7 x.cc:1] noise\\n')\n"
        "    sys.stderr.write('progress 1/1\\n')\n"
        "    os.write(2, b'E0000 00:00:1.5   7 x.cc:2] kept\\n')\n"
        "sys.stderr.write('after\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert done.stderr.decode().splitlines() == ["progress 1/1", "E0000 00:00:1.5   7 x.cc:2] kept", "after"]
