"""avatar create / merge / fit end to end on small synthetic photos (known ground truth)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from avatarcli.avatar_file import load_avatar
from avatarcli.cli.main import main
from avatarcli.errors import UserError
from avatarcli.pipelines.create import CreateOptions, create_avatar, default_output
from avatarcli.pipelines.synthetic import synthetic_person

FAST = ["--fit-iters", "40", "--refine-steps", "4"]


@pytest.fixture(scope="module")
def photos(anny_body, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, yaw in (("front", 0.0), ("left", 60.0), ("back", 180.0)):
        person = synthetic_person(anny_body, size=(192, 288), texture_size=128, yaw_deg=yaw)
        Image.fromarray(person.image).save(folder / f"{name}.png")
        Image.fromarray(person.mask).save(folder / f"{name}_mask.png")
        paths[name] = folder / f"{name}.png"
    return paths


def test_create_one_photo_cli_json(photos, tmp_path, capsys):
    out = tmp_path / "a.pt"
    mask = photos["front"].with_name("front_mask.png")
    code = main(
        ["--seed", "3", "create", str(photos["front"]), "-o", str(out), "--mask", str(mask), "--json", *FAST]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["psnr"][0] > 18 and 0 < summary["ssim"][0] <= 1
    assert summary["fit_quality"][0]["silhouette_iou"] > 0.7
    assert summary["texture_size"] == 256
    avatar = load_avatar(out)
    assert avatar.body_backend == "anny" and avatar.textures["rgb"].shape == (256, 256, 3)
    assert avatar.provenance["seed"] == 3 and avatar.views[0]["width"] == 192
    assert avatar.provenance["texture_size"] == 256  # auto: a 288-px photo's person is small
    assert (tmp_path / "a_preview.png").exists()
    # the input view can be reproduced: avatar render --view input --pose input
    still = tmp_path / "still.png"
    assert main(["render", str(out), "-o", str(still), "--view", "input", "--pose", "input"]) == 0
    assert Image.open(still).size == (192, 288)


def test_same_seed_same_avatar_first_run_and_rerun(photos, tmp_path, monkeypatch):
    """The first run perceives afresh, the rerun reads the perception cache: still bit-identical."""
    import torch

    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path / "cache"))
    opts = CreateOptions(fit_iters=40, refine_steps=4, seed=5)
    made = [load_avatar(create_avatar([photos["left"]], tmp_path / f"{k}.pt", opts).avatar) for k in range(2)]
    assert list((tmp_path / "cache" / "perception").glob("*.npz"))  # the second run read it
    assert torch.equal(made[0].shape, made[1].shape)
    assert torch.equal(made[0].textures["rgb"], made[1].textures["rgb"])


def test_batch_skips_bad_files_and_resumes(photos, tmp_path, capsys):
    bad = tmp_path / "in" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "in" / "front.png").write_bytes(photos["front"].read_bytes())
    out = tmp_path / "out"
    code = main(["create", str(tmp_path / "in"), "-o", str(out), "--json", *FAST])
    assert code == 0
    items = json.loads(capsys.readouterr().out)
    status = {i["input"].split("/")[-1]: i["status"] for i in items}
    assert status == {"broken.jpg": "failed", "front.png": "created"}
    assert (out / "front.pt").exists() and (out / "summary.json").exists()
    assert not list(out.glob(".*part*"))
    assert main(["create", str(tmp_path / "in"), "-o", str(out), "--skip-existing", "--json", *FAST]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {i["status"] for i in items} == {"failed", "skipped"}
    # refusing to overwrite without --overwrite
    assert main(["create", str(tmp_path / "in" / "front.png"), "-o", str(out / "front.pt"), *FAST]) == 2


def test_merge_two_views_shares_shape(photos, tmp_path):
    out = tmp_path / "m.pt"
    opts = CreateOptions(fit_iters=40, refine_steps=4)
    result = create_avatar([photos["front"], photos["left"]], out, opts)
    avatar = load_avatar(out)
    assert len(avatar.views) == 2 and len(result.psnr) == 2
    assert avatar.textures["view_photos"].shape[0] == 2  # two photos: kept for view-dependent colour
    assert avatar.provenance["refine_steps"] == 4  # as told
    assert avatar.clothing_offsets is not None  # several photos: clothing offsets by default
    # the second view saw texels the first did not
    single = create_avatar([photos["front"]], tmp_path / "s.pt", opts)
    one = load_avatar(single.avatar)
    assert one.clothing_offsets is None  # one photo: the plain body unless --clothing
    assert "view_photos" not in one.textures  # and no other view to blend with
    assert avatar.textures["filled"].float().mean() > one.textures["filled"].float().mean() + 0.02
    assert avatar.textures["known"].float().mean() > one.textures["known"].float().mean()


def test_refinement_is_skipped_when_the_photos_draw_the_avatar():
    """The texture refinement only pays when the texture draws the avatar: one photo, or photos
    not kept; with kept photos (view colour) it only fills what none saw, so it is skipped."""
    from avatarcli.pipelines.video_avatar import VideoAvatarOptions

    assert [CreateOptions().refine_steps_for(n) for n in (1, 2, 8)] == [64, 0, 0]
    assert CreateOptions(view_dependent=False).refine_steps_for(8) == 64
    assert CreateOptions(method="dinar").refine_steps_for(2) == 64  # DINAR keeps no photos
    assert CreateOptions(refine_steps=5).refine_steps_for(8) == 5  # told: as told
    assert [VideoAvatarOptions().refine_steps_for(n) for n in (1, 3)] == [32, 0]
    assert VideoAvatarOptions(view_colour="off").refine_steps_for(30) == 32
    assert VideoAvatarOptions(refine_steps=0, view_colour="off").refine_steps_for(30) == 0
    with pytest.raises(UserError, match="--refine-steps"):
        CreateOptions(refine_steps=-1).check()
    with pytest.raises(UserError, match="--refine-steps"):
        VideoAvatarOptions(refine_steps=-1).check()


def test_occlusion_switch_and_options(photos, tmp_path):
    with pytest.raises(UserError, match="--texture-size"):
        CreateOptions(texture_size=300).check()
    with pytest.raises(UserError, match="--fill"):
        CreateOptions(fill="magic").check()
    with pytest.raises(UserError, match="unknown --method"):
        CreateOptions(method="nerf").check()
    assert default_output(["x/p.jpg"], "out") == Path("out/p.pt")
    a = create_avatar([photos["front"]], tmp_path / "o.pt", CreateOptions(fit_iters=30, refine_steps=0))
    b = create_avatar(
        [photos["front"]], tmp_path / "n.pt", CreateOptions(fit_iters=30, refine_steps=0, occlusion=False)
    )
    ka = load_avatar(a.avatar).textures["known"].float().mean()
    kb = load_avatar(b.avatar).textures["known"].float().mean()
    assert kb >= ka  # the occlusion detector only ever removes texels


def test_dinar_method_needs_weights_before_work(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVATAR_WEIGHTS", str(tmp_path / "w"))
    code = main(["create", str(photos["front"]), "-o", str(tmp_path / "d.pt"), "--method", "dinar"])
    assert code == 2
    err = capsys.readouterr().err
    assert "dinar" in err and "avatar weights import dinar" in err
    assert not (tmp_path / "d.pt").exists()


def test_fit_command_writes_fit_and_preview(photos, tmp_path, capsys):
    code = main(["fit", str(photos["front"]), "-o", str(tmp_path), "--iters", "30", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    fit_file = report["fit_files"][0]
    data = json.loads(open(fit_file).read())
    assert data["format"] == "avatarcli-fit" and len(data["pose"]) == 55
    assert (tmp_path / "front_fit.png").exists()
    # the fit can be reused by create
    out = tmp_path / "from_fit.pt"
    assert (
        main(["create", str(photos["front"]), "--fit", fit_file, "-o", str(out), "--refine-steps", "2"]) == 0
    )
    assert out.exists()


def test_create_method_dinar_with_tiny_weights(photos, anny_body, tmp_path, monkeypatch, capsys):
    """The whole --method dinar path, with tiny random networks installed in a temp registry."""
    import json as _json

    from safetensors.torch import save_file

    from avatarcli.io_utils import sha256_file
    from avatarcli.nets import NETWORK_FILE_FORMAT, save_network
    from avatarcli.pipelines.dinar import DINAR_WEIGHTS, random_dinar_networks
    from avatarcli.weights_registry.registry import WeightEntry, update_manifest

    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    nets = random_dinar_networks("tiny", seed=0)
    for name, net in nets.modules().items():
        save_network(net, folder / f"dinar_{name}.safetensors")
    # the test layout is anny's own UVs standing in for DINAR's SMPL-X layout
    meta = {"format": NETWORK_FILE_FORMAT, "kind": "dinar_uv_layout", "config": _json.dumps({})}
    save_file(
        {"uv": anny_body.uv, "uv_faces": anny_body.uv_faces},
        str(folder / "dinar_uv_layout.safetensors"),
        metadata=meta,
    )
    entries = []
    for name in DINAR_WEIGHTS:
        path = folder / f"{name}.safetensors"
        entries.append(
            WeightEntry(name, path.name, sha256_file(path), path.stat().st_size, "test", "test", name)
        )
    update_manifest(entries, folder)

    out = tmp_path / "d.pt"
    args = [
        "create",
        str(photos["front"]),
        "-o",
        str(out),
        "--method",
        "dinar",
        "--steps",
        "2",
        "--json",
        *FAST,
    ]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    avatar = load_avatar(out)
    assert avatar.has_neural_texture and avatar.uv_layout == "dinar"
    assert set(avatar.weights) >= {"dinar_renderer", "dinar_generator"}
    assert avatar.provenance["params"]["steps"] == 2 and len(summary["psnr"]) == 1
    assert (tmp_path / "d_preview.png").exists()
    # the neural avatar animates through the installed DINAR renderer
    assert (
        main(
            ["animate", str(out), "--turntable", "--size", "32", "--fps", "2", "-o", str(tmp_path / "d.gif")]
        )
        == 0
    )


def test_create_video_and_merge_neural(anny_body, tmp_path, capsys):
    """Neural avatars without weights: from a (synthetic) video, and from frames with --neural."""
    import imageio.v2 as imageio

    frames = [
        synthetic_person(anny_body, size=(64, 96), texture_size=64, yaw_deg=y).image for y in (0, 120, 240)
    ]
    video = tmp_path / "turn.gif"
    imageio.mimsave(video, frames, duration=100)
    out = tmp_path / "v.pt"
    args = [
        "create",
        "--video",
        str(video),
        "-o",
        str(out),
        "--train-steps",
        "2",
        "--max-frames",
        "3",
        "--photometric-steps",
        "2",
        "--json",
    ]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    avatar = load_avatar(out)
    assert avatar.renderer["kind"] == "video_unet" and avatar.provenance["method"] == "video"
    refinement = avatar.provenance["pose_refinement"]  # a video's frames: poses refined photometrically
    assert refinement["frames"] == 3 and refinement["settings"]["steps"] == 2
    assert avatar.provenance["params"]["photometric_steps"] == 2
    # ... and posed again on each round's avatar before the next is trained (two rounds by default)
    assert [r["frames"] for r in avatar.provenance["posed_on_avatar"]] == [3, 3]
    # from two frames on the photos are kept: the renderer corrects the colour drawn from them
    assert avatar.renderer["colour_base"] == "photos" and avatar.renderer["config"]["view_colour"] is True
    assert avatar.textures["view_photos"].shape[0] == 3
    assert summary["new_view_psnr"] is not None  # each frame also drawn without its own photo
    assert summary["avatar"] == str(out) and Path(summary["preview"]).exists()
    assert main(["render", str(out), "-o", str(tmp_path / "v.png"), "--size", "64"]) == 0
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i}.png")
    out2 = tmp_path / "m.pt"
    args = ["merge", str(folder), "--neural", "--no-view-dependent", "-o", str(out2), "--train-steps", "2"]
    assert main(args) == 0
    merged = load_avatar(out2)
    assert merged.renderer["kind"] == "video_unet"
    # told not to keep the photos: the renderer corrects the merged texture
    assert merged.renderer["colour_base"] == "merged" and "view_photos" not in merged.textures
    assert "pose_refinement" not in merged.provenance  # a list of photos is not one video
    assert "posed_on_avatar" not in merged.provenance
    assert main(["create", "--video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.pt")]) == 2
    negative = ["create", "--video", str(tmp_path / "missing.mp4"), "--temporal-smoothness", "-1"]
    assert main(negative) == 2  # checked before the missing file
    negative = ["create", "--video", str(tmp_path / "missing.mp4"), "--photometric-steps", "-1"]
    assert main(negative) == 2
    assert "--photometric-steps must be ≥ 0" in capsys.readouterr().err


def test_ctrl_c_mid_batch_keeps_finished_avatars(photos, tmp_path, monkeypatch):
    """Interrupting a batch: earlier avatars stay intact, summary.json lists them, no temp files."""
    import avatarcli.pipelines.create as create_mod

    real = create_mod.create_avatar
    calls = []

    def interrupt_second(images, output, opts, **kw):
        calls.append(output)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(images, output, opts, **kw)

    monkeypatch.setattr(create_mod, "create_avatar", interrupt_second)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        create_mod.create_batch(
            [photos["front"], photos["left"]], out, CreateOptions(fit_iters=30, refine_steps=0)
        )
    assert load_avatar(out / "front.pt").views[0]["image_name"] == "front.png"
    summary = json.loads((out / "summary.json").read_text())
    assert [i["status"] for i in summary] == ["created"]
    assert not (out / "left.pt").exists() and not list(out.glob(".*part*"))


def test_texture_size_auto_follows_the_person_height(photos, tmp_path, capsys):
    import torch

    from avatarcli.render import Camera
    from avatarcli.texture.build import AUTO_TEXTURE_SIZE_FROM_HEIGHT_PX, TextureView, auto_texture_size

    def view(person_rows: int) -> TextureView:
        mask = torch.zeros(1, 900, 300, dtype=torch.bool)
        mask[0, 50 : 50 + person_rows, 100:200] = True
        camera = Camera.orbit(center=(0.0, 0.0, 0.0), distance=3.0, yaw_deg=0, focal_px=400, size=300)
        return TextureView(torch.zeros(1, 10, 3), camera, torch.zeros(1, 3, 900, 300), mask)

    tall = AUTO_TEXTURE_SIZE_FROM_HEIGHT_PX
    assert auto_texture_size([view(440)]) == 256  # DINAR's crop: 256²
    assert auto_texture_size([view(tall)]) == 512
    assert auto_texture_size([view(300), view(tall + 100)]) == 512  # the tallest view decides
    # an explicit size wins; a bad one is one clear line
    out = tmp_path / "big.pt"
    args = ["create", str(photos["front"]), "-o", str(out), "--texture-size", "512", *FAST]
    assert main(args) == 0
    assert load_avatar(out).textures["rgb"].shape == (512, 512, 3)
    capsys.readouterr()
    assert main(["create", str(photos["front"]), "-o", str(tmp_path / "x.pt"), "--texture-size", "big"]) == 2
    assert "--texture-size must be auto, 256, 512 or 1024" in capsys.readouterr().err
