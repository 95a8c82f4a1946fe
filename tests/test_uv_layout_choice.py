"""``--uv-layout body|dinar|PATH`` on the RGB path: texture, fill, avatar file, render, errors.

The synthetic SMPL-X fixture has DINAR's face count (20,908) but random triangles, so it cannot
stand for a person; the end-to-end avatars use anny with a layout *re-cut* for anny's faces (the
left and right halves of its UV image swapped, which cuts every island crossing u = 0.5 — the
head, the torso — along a new seam). The fixture checks that a 20,908-face layout is accepted
for SMPL-X and refused, with the counts, for anny.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from avatarcli.avatar_file import load_avatar
from avatarcli.cli.main import main
from avatarcli.errors import MissingWeightsError, UserError
from avatarcli.pipelines.neural_render import (
    avatar_uv_layout,
    load_uv_layout_file,
    resolve_uv_layout,
)
from avatarcli.pipelines.synthetic import synthetic_person
from avatarcli.texture import psnr

torch.set_num_threads(1)

FAST = ["--fit-iters", "40", "--refine-steps", "4"]
SMPLX_FACES = 20908


def recut_layout(body) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner UVs of ``body`` with the two halves of the UV image swapped (new seams at the
    old u = 0.5 line); corners pushed past the border are clamped (a thin sliver of faces)."""
    corners = body.uv[body.uv_faces].clone()  # (F, 3, 2)
    shift = torch.where(corners[..., 0].mean(1) < 0.5, 0.5, -0.5)
    corners[..., 0] = (corners[..., 0] + shift[:, None]).clamp(0, 1)
    uv = corners.reshape(-1, 2).double().numpy()
    return uv, np.arange(uv.shape[0], dtype=np.int64).reshape(-1, 3)


@pytest.fixture(scope="module")
def inputs(anny_body, tmp_path_factory):
    folder = tmp_path_factory.mktemp("layout_inputs")
    for name, yaw in (("front", 0.0), ("left", 60.0)):
        person = synthetic_person(anny_body, size=(192, 288), texture_size=128, yaw_deg=yaw)
        Image.fromarray(person.image).save(folder / f"{name}.png")
        Image.fromarray(person.mask).save(folder / f"{name}_mask.png")
    uv, uv_faces = recut_layout(anny_body)
    np.savez(folder / "recut.npz", uv=uv, uv_faces=uv_faces)
    return folder


def create(inputs, out, *extra) -> int:
    photo, mask = inputs / "front.png", inputs / "front_mask.png"
    return main(["--seed", "1", "create", str(photo), "--mask", str(mask), "-o", str(out), *FAST, *extra])


def still(avatar, out) -> torch.Tensor:
    assert main(["render", str(avatar), "-o", str(out), "--view", "input", "--pose", "input"]) == 0
    return torch.from_numpy(np.array(Image.open(out).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def test_path_layout_avatar_renders_like_the_body_layout_one(inputs, anny_body, tmp_path, capsys):
    body_out, cut_out = tmp_path / "body.pt", tmp_path / "cut.pt"
    assert create(inputs, body_out, "--json") == 0, capsys.readouterr().err
    body_summary = json.loads(capsys.readouterr().out)
    assert create(inputs, cut_out, "--json", "--uv-layout", str(inputs / "recut.npz")) == 0
    cut_summary = json.loads(capsys.readouterr().out)
    assert body_summary["psnr"][0] > 20
    assert abs(cut_summary["psnr"][0] - body_summary["psnr"][0]) < 1.5

    avatar = load_avatar(cut_out)
    assert avatar.uv_layout == "dinar" and avatar.provenance["params"]["uv_layout"].endswith("recut.npz")
    layout = avatar_uv_layout(avatar, anny_body)  # embedded: no file and no installed weights needed
    uv, uv_faces = recut_layout(anny_body)
    assert torch.allclose(layout.uv, torch.from_numpy(uv).float()) and layout.uv_faces.shape == (27420, 3)
    # the textures really are in another layout: read through the body's own UVs they differ
    assert load_avatar(body_out).uv_layout == "anny"
    assert (avatar.textures["rgb"].float() - load_avatar(body_out).textures["rgb"].float()).abs().mean() > 20

    # rendering picks the embedded layout: the input view re-rendered matches the body-layout one
    a, b = still(body_out, tmp_path / "a.png"), still(cut_out, tmp_path / "b.png")
    person = (a < 0.98).any(dim=1)
    assert float(psnr(a, b, person)) > 22
    gif = tmp_path / "turn.gif"
    assert main(["animate", str(cut_out), "--turntable", "--size", "48", "--fps", "2", "-o", str(gif)]) == 0
    assert gif.exists()


def test_npy_folder_layout_loads_unflipped(anny_body, tmp_path):
    uv, uv_faces = recut_layout(anny_body)
    folder = tmp_path / "smplx_data"
    folder.mkdir()
    np.save(folder / "uv.npy", uv)
    np.save(folder / "uv_faces.npy", uv_faces)
    layout = load_uv_layout_file(folder)
    assert layout.name == "dinar" and layout.uv.dtype == torch.float32 and layout.uv_faces.dtype == torch.long
    torch.testing.assert_close(layout.uv, torch.from_numpy(uv).float())  # v = 0 stays the top row
    assert torch.equal(layout.uv_faces, torch.from_numpy(uv_faces))
    assert resolve_uv_layout(str(folder), anny_body).uv_faces.shape[0] == anny_body.faces.shape[0]
    assert resolve_uv_layout("body", anny_body).name == "anny"


def test_fill_crosses_the_new_seams(anny_body):
    """Harmonic fill of a height field known on the body's right half only: the left half
    (with the head and torso halves the re-cut moved across the UV image) gets it back as
    well as in the body's own layout — colour flows over the new seams on the surface."""
    from avatarcli.pipelines.neural_render import UVLayout
    from avatarcli.texture import body_texel_maps, fill_unseen_texels

    uv, uv_faces = recut_layout(anny_body)
    layout = UVLayout("dinar", torch.from_numpy(uv).float(), torch.from_numpy(uv_faces))
    errors = []
    for lay in (None, layout):
        maps = body_texel_maps(anny_body, 64, layout=lay)
        height = maps.positions[..., 1]
        low, high = float(height[maps.mask].min()), float(height[maps.mask].max())
        field = ((height - low) / (high - low)).clamp(0, 1)
        texture = field[None].expand(3, -1, -1) * maps.mask
        known = maps.mask & (maps.positions[..., 0] < -0.02)
        filled = fill_unseen_texels(texture * known, known, maps.graph, "harmonic")
        unknown = maps.mask & ~known
        errors.append(float((filled[0] - field)[unknown].abs().mean()))
        # the head's unseen half sits far from its seen half in the re-cut UV image
        head = unknown & (maps.positions[..., 1] > high - 0.15)
        errors.append(float((filled[0] - field)[head].abs().mean()))
    body_error, body_head, cut_error, cut_head = errors
    assert cut_error < 0.1 and cut_error < body_error + 0.01, errors
    assert cut_head < 0.05 and cut_head < body_head + 0.01, errors


def test_smplx_sized_layout_fits_smplx_and_not_anny(smplx_dir, anny_body, tmp_path):
    from avatarcli.body import load_body
    from avatarcli.texture import body_texel_maps

    g = np.random.default_rng(0)
    path = tmp_path / "dinar_like.npz"
    np.savez(path, uv=g.random((11438, 2)), uv_faces=g.integers(0, 11438, (SMPLX_FACES, 3)))
    smplx = load_body("smplx", model_dir=str(smplx_dir))
    layout = resolve_uv_layout(str(path), smplx)
    assert layout.uv_faces.shape == (SMPLX_FACES, 3)
    assert bool(body_texel_maps(smplx, 32, layout=layout).mask.any())
    with pytest.raises(UserError, match="--body smplx") as err:
        resolve_uv_layout(str(path), anny_body)
    assert "20908" in str(err.value) and "27420" in str(err.value) and "dinar_like.npz" in str(err.value)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    return " ".join(err.split())  # rich may wrap a long line on narrow terminals


@pytest.mark.parametrize(
    "case, expected",
    [
        ("faces", "20908 faces"),
        ("pickle", "pickled"),
        ("range", "[0, 1]"),
        ("index", "uv has"),
        ("missing", "no such file"),
        ("folder", "uv_faces.npy"),
    ],
)
def test_bad_layout_files_are_one_line_errors(inputs, tmp_path, capsys, case, expected):
    g = np.random.default_rng(0)
    path = tmp_path / "layout.npz"
    if case == "faces":
        np.savez(path, uv=g.random((11438, 2)), uv_faces=g.integers(0, 11438, (SMPLX_FACES, 3)))
    elif case == "pickle":
        path = tmp_path / "pickled"
        path.mkdir()
        np.save(path / "uv.npy", np.array([{"uv": 1}], dtype=object), allow_pickle=True)
        np.save(path / "uv_faces.npy", np.zeros((3, 3), np.int64))
    elif case == "range":
        np.savez(path, uv=g.random((30, 2)) * 1.5, uv_faces=g.integers(0, 30, (27420, 3)))
    elif case == "index":
        np.savez(path, uv=g.random((30, 2)), uv_faces=g.integers(0, 31, (27420, 3)) + 1)
    elif case == "missing":
        path = tmp_path / "nowhere.npz"
    elif case == "folder":
        path = tmp_path / "half"
        path.mkdir()
        np.save(path / "uv.npy", g.random((30, 2)))
    out = tmp_path / "x.pt"
    assert create(inputs, out, "--uv-layout", str(path)) == 2
    message = one_line_error(capsys)
    assert expected in message and path.name in message
    assert not out.exists()
    if case == "faces":
        assert "27420" in message and "--body smplx" in message


def install_layout(folder, uv, uv_faces) -> None:
    from safetensors.torch import save_file

    from avatarcli.io_utils import sha256_file
    from avatarcli.nets import NETWORK_FILE_FORMAT
    from avatarcli.weights_registry.registry import WeightEntry, update_manifest

    path = folder / "dinar_uv_layout.safetensors"
    meta = {"format": NETWORK_FILE_FORMAT, "kind": "dinar_uv_layout", "config": json.dumps({})}
    save_file({"uv": uv, "uv_faces": uv_faces}, str(path), metadata=meta)
    entry = WeightEntry(
        "dinar_uv_layout", path.name, sha256_file(path), path.stat().st_size, "test", "test", "test"
    )
    update_manifest([entry], folder)


def test_installed_dinar_layout(inputs, anny_body, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    out = tmp_path / "d.pt"
    assert create(inputs, out, "--uv-layout", "dinar") == 2  # not installed: stops before any work
    assert "dinar_uv_layout" in one_line_error(capsys) and not out.exists()
    with pytest.raises(MissingWeightsError):
        resolve_uv_layout("dinar", anny_body)

    uv, uv_faces = recut_layout(anny_body)  # standing in for DINAR's SMPL-X layout
    install_layout(folder, torch.from_numpy(uv).float(), torch.from_numpy(uv_faces))
    assert create(inputs, out, "--uv-layout", "dinar") == 0, capsys.readouterr().err
    avatar = load_avatar(out)
    assert avatar.uv_layout == "dinar" and "layout_uv" not in avatar.textures
    assert "dinar_uv_layout" in avatar.weights
    assert main(["render", str(out), "-o", str(tmp_path / "d.png"), "--size", "48"]) == 0
    # another layout installed later is refused instead of drawing a scrambled texture
    install_layout(folder, torch.from_numpy(uv).float().flip(1), torch.from_numpy(uv_faces))
    capsys.readouterr()
    assert main(["render", str(out), "-o", str(tmp_path / "e.png"), "--size", "48"]) == 2
    assert "other dinar_uv_layout weights" in one_line_error(capsys)


def test_merge_in_a_path_layout(inputs, anny_body, tmp_path, capsys):
    out = tmp_path / "m.pt"
    photos = [str(inputs / "front.png"), str(inputs / "left.png")]
    layout = str(inputs / "recut.npz")
    assert main(["merge", *photos, "-o", str(out), "--uv-layout", layout, "--json", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["psnr"]) == 2 and min(summary["psnr"]) > 18
    avatar = load_avatar(out)
    assert avatar.uv_layout == "dinar" and len(avatar.views) == 2 and "layout_uv" in avatar.textures


def test_uv_layout_is_for_the_rgb_method(inputs, tmp_path, capsys):
    from avatarcli.pipelines.create import CreateOptions

    with pytest.raises(UserError, match="--method rgb"):
        CreateOptions(method="dinar", uv_layout="dinar").check()
    layout = str(inputs / "recut.npz")
    assert main(["merge", str(inputs / "front.png"), "--neural", "--uv-layout", layout]) == 2
    assert "--neural" in one_line_error(capsys)
    assert main(["create", "--video", str(tmp_path / "v.mp4"), "--uv-layout", layout]) == 2
    assert "--video" in one_line_error(capsys)
