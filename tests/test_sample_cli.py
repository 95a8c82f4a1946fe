"""avatar weights import stylepeople → avatar sample → avatar animate, with tiny random networks."""

from __future__ import annotations

import json

import pytest
import torch

from avatarcli.avatar_file import load_avatar
from avatarcli.cli.main import main
from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator
from avatarcli.nets.sp_renderer import SPRenderer, SPRendererConfig


@pytest.fixture
def sp_weights(tmp_path, monkeypatch):
    """A tiny generative_model.pth with the official layout, imported into a temp weights folder."""
    torch.manual_seed(0)
    g = SPTextureGenerator(SPGeneratorConfig.tiny())
    r = SPRenderer(SPRendererConfig.tiny())
    ckpt = tmp_path / "generative_model.pth"
    torch.save({"g": g.to_safetensors_state_dict(), "r": r.to_safetensors_state_dict()}, ckpt)
    folder = tmp_path / "weights"
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    return ckpt


def test_sample_needs_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVATAR_WEIGHTS", str(tmp_path / "none"))
    assert main(["sample", "-n", "1", "-o", str(tmp_path / "s")]) == 2
    assert "avatar weights import stylepeople" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_import_sample_animate(sp_weights, tmp_path, capsys):
    assert main(["weights", "import", "stylepeople", str(sp_weights), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)["imported"]
    assert {"stylepeople_generator", "stylepeople_renderer"} <= set(imported)
    assert main(["weights", "verify"]) == 0

    out = tmp_path / "samples"
    assert main(["--seed", "4", "sample", "-n", "2", "-o", str(out), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in results] == [4, 5]
    a = load_avatar(out / "sample_00005.pt")
    assert a.textures["neural"].dtype == torch.float16 and "stylepeople_renderer" in a.weights
    assert (out / "sample_00005_preview.png").exists()
    # seeds are reproducible: sample 5 alone equals sample 5 of the pair
    again = tmp_path / "again"
    assert main(["--seed", "5", "sample", "-n", "1", "-o", str(again)]) == 0
    b = load_avatar(again / "sample_00005.pt")
    assert torch.equal(a.textures["neural"], b.textures["neural"])
    # the sampled avatar animates through the StylePeople renderer
    video = tmp_path / "spin.gif"
    assert (
        main(
            [
                "animate",
                str(out / "sample_00004.pt"),
                "--turntable",
                "--size",
                "64",
                "--fps",
                "2",
                "-o",
                str(video),
            ]
        )
        == 0
    )
    assert video.exists()


def test_create_method_stylepeople(sp_weights, anny_body, tmp_path, capsys):
    """create --method stylepeople on a synthetic photo, tiny networks, a few iterations."""
    from PIL import Image

    from avatarcli.pipelines.synthetic import synthetic_person

    assert main(["weights", "import", "stylepeople", str(sp_weights)]) == 0
    person = synthetic_person(anny_body, size=(96, 128), texture_size=64)
    photo, mask = tmp_path / "p.png", tmp_path / "m.png"
    Image.fromarray(person.image).save(photo)
    Image.fromarray(person.mask).save(mask)
    out = tmp_path / "sp.pt"
    args = ["create", str(photo), "--mask", str(mask), "-o", str(out), "--method", "stylepeople",
            "--sp-size", "64", "--max-seconds", "3", "--fit-iters", "30", "--json"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert any("mean latent" in w for w in summary["warnings"])  # no encoder: said, not silent
    avatar = load_avatar(out)
    assert avatar.has_neural_texture and "stylepeople_renderer" in avatar.weights
    assert (tmp_path / "sp_preview.png").exists()
