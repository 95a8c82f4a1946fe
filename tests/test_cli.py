"""CLI: instant help, version, doctor (text + JSON), exit codes for user errors and bugs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avatarcli.cli.main import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "avatarcli" in capsys.readouterr().out


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "doctor" in out


def test_doctor_json_parses(capsys):
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"]["selected"] in ("cpu", "cuda")
    assert any(b["name"] == "anny" and b["available"] for b in report["bodies"])
    assert "torch" in report["packages"]


def test_doctor_sees_smplx_dir(capsys, smplx_dir):
    assert main(["doctor", "--json", "--smplx-dir", str(smplx_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    smplx = next(b for b in report["bodies"] if b["name"] == "smplx")
    assert smplx["available"] and smplx["genders"] == ["neutral"]


def test_doctor_text(capsys):
    assert main(["doctor"]) == 0
    err = capsys.readouterr().err
    assert "anny" in err and "device" in err


def test_usage_errors_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    assert main(["--device", "tpu", "doctor"]) == 2
    assert "unknown device" in capsys.readouterr().err


def test_user_error_is_one_line_exit_2(capsys, monkeypatch):
    from avatarcli.errors import UserError
    from avatarcli.pipelines import doctor as doctor_mod

    def boom(**_):
        raise UserError("photo.jpg is not an image; pass a JPEG or PNG")

    monkeypatch.setattr(doctor_mod, "doctor_report", boom)
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "photo.jpg is not an image" in err and "Traceback" not in err


def test_unexpected_error_exit_1_with_hint(capsys, monkeypatch):
    from avatarcli.pipelines import doctor as doctor_mod

    def bug(**_):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(doctor_mod, "doctor_report", bug)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "unexpected ZeroDivisionError" in err and "-v" in err and "Traceback" not in err
    assert main(["-v", "doctor"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_does_not_import_heavy_packages(args):
    heavy = ("torch", "mediapipe", "diffusers", "cv2", "anny", "trimesh")
    code = (
        f"import sys; from avatarcli.cli.main import main; main({args!r}); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_weights_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVATAR_WEIGHTS", str(tmp_path))
    assert main(["weights", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = {w["name"] for w in listed["weights"]}
    assert {"dinar_generator", "dinar_unet", "dinar_renderer"} <= names
    assert all(w["status"] == "missing" for w in listed["weights"])
    assert main(["weights", "verify"]) == 0
    not_ckpt = tmp_path / "x.ckpt"
    not_ckpt.write_bytes(b"garbage")
    assert main(["weights", "import", "dinar", str(not_ckpt)]) == 2
    assert main(["weights", "import", "other", str(not_ckpt)]) == 2
    assert "unknown weights family" in capsys.readouterr().err


def test_python_api_is_lazy_and_mirrors_the_cli():
    code = (
        "import sys, avatarcli; assert 'torch' not in sys.modules; "
        "from avatarcli import create, animate, render_still, fit, load_body, export_glb; "
        "print(create.__name__, animate.__name__, render_still.__name__, fit.__name__, export_glb.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["create_avatar", "animate", "render_still", "fit_photos", "export_glb"]


def test_global_options_may_follow_the_command(tmp_path, monkeypatch):
    """``avatar create x --seed 7 -q`` works as ``avatar --seed 7 -q create x`` (users write both)."""
    from avatarcli.cli import cmd_create
    from avatarcli.cli.app import state
    from avatarcli.cli.main import hoist_global_options

    assert hoist_global_options(["create", "a.jpg", "--seed", "7", "-o", "x", "-q"]) == [
        "--seed", "7", "-q", "create", "a.jpg", "-o", "x",
    ]  # fmt: skip
    assert hoist_global_options(["--device", "cpu", "merge", "--seed=3", "b"]) == [
        "--device", "cpu", "--seed=3", "merge", "b",
    ]  # fmt: skip
    assert hoist_global_options(["render", "--", "--seed", "1"]) == ["render", "--", "--seed", "1"]
    seen = {}
    monkeypatch.setattr(cmd_create, "_run_video", lambda inputs, output, opts, *_: seen.update(opts=opts))
    video = str(tmp_path / "clip.mp4")
    try:
        assert main(["create", "--video", video, "-o", str(tmp_path / "a.pt"), "--seed", "7", "-q"]) == 0
        assert seen["opts"].seed == 7 and state.quiet
    finally:
        state.seed, state.quiet = 0, False


def test_create_result_lines_read_as_sentences():
    """The fit line joins its two parts with ", " (rich's print put a space before the comma)."""
    from rich.console import Console

    from avatarcli.cli.cmd_create import _print_result

    console = Console(record=True, width=200)
    fits = [{"silhouette_iou": 0.825, "keypoint_error_pct": 0.59}, {"keypoint_error_pct": 1.2}]
    _print_result(
        console,
        {"avatar": "a.pt", "preview": "a_preview.png", "seconds": 1.0, "psnr": [22.9], "ssim": [0.916],
         "inputs": ["a.jpg"], "fit_quality": fits, "warnings": []},
    )  # fmt: skip
    text = console.export_text()
    assert "fit: silhouette IoU 0.825, keypoint error 0.59 % of height" in text
    assert "fit: no mask to score the silhouette, keypoint error 1.20 % of height" in text


def test_training_defaults_are_the_video_avatar_options():
    """``create --video`` and ``merge --neural`` train as long as :class:`VideoAvatarOptions` says
    by default (the CLI cannot import it for its defaults without slowing ``--help``)."""
    import typer

    from avatarcli.cli.app import app
    from avatarcli.pipelines.video_avatar import VideoAvatarOptions

    group = typer.main.get_command(app)
    for name in ("create", "merge"):
        (steps,) = [p for p in group.commands[name].params if p.name == "train_steps"]
        assert steps.default == VideoAvatarOptions.steps, name
    (rounds,) = [p for p in group.commands["create"].params if p.name == "pose_rounds"]
    assert rounds.default == VideoAvatarOptions.pose_rounds
