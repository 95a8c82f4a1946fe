"""Splitting a DINAR Lightning checkpoint into our safetensors files, and refusing bad files.

The fast tests build a synthetic checkpoint from the shared vectors' small networks, whose
tensor names are the official ones; a slow test builds a full-size one from the official key
list and converts it.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from avatarcli.errors import UserError
from avatarcli.nets.dinar_checkpoint import (
    load_checkpoint_state_dict,
    official_checkpoint_keys,
    read_dinar_checkpoint,
    split_dinar_state_dict,
)
from avatarcli.weights_registry import list_weights, load_safetensors, read_manifest, require_weights
from avatarcli.weights_registry.dinar_import import import_dinar

VECTORS = Path(__file__).parents[2] / "shared" / "reference" / "vectors"
VECTOR_NAMES = (
    "dinar_encoder",
    "dinar_generator",
    "dinar_renderer",
    "dinar_vq",
    "dinar_unet",
    "dinar_ddim_schedule",
)


def small_dinar_state_dict() -> dict[str, torch.Tensor]:
    """A DINAR Lightning state dict made of the vectors' small networks (official names)."""
    from safetensors.torch import load_file

    if not all((VECTORS / f"{n}.safetensors").exists() for n in VECTOR_NAMES):
        pytest.skip("shared test vectors are not available")
    sd: dict[str, torch.Tensor] = {}
    for name in VECTOR_NAMES:
        tensors = load_file(str(VECTORS / f"{name}.safetensors"))
        sd.update({k[len("state_dict/") :]: v for k, v in tensors.items() if k.startswith("state_dict/")})
    gen = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 40, (60, 3), generator=gen, dtype=torch.int32)
    sd["first_stage.rasterizer.faces"] = faces
    sd["first_stage.rasterizer.vertice_values"] = torch.rand(40, 2, generator=gen)
    sd["first_stage.normal_rasterizer.faces"] = faces.clone()
    return sd


def install_fake_lightning(monkeypatch) -> type:
    """A stand-in ``pytorch_lightning.utilities.parsing.AttributeDict`` so pickles reference it."""
    names = ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    attribute_dict = type("AttributeDict", (dict,), {"__module__": names[-1]})
    sys.modules[names[-1]].AttributeDict = attribute_dict
    return attribute_dict


@pytest.fixture
def lightning_ckpt(tmp_path, monkeypatch) -> Path:
    sd = small_dinar_state_dict()
    attribute_dict = install_fake_lightning(monkeypatch)
    hparams = attribute_dict(first_stage_config={"target": "x"}, timesteps=1000)
    path = tmp_path / "last-epoch=24.ckpt"
    torch.save(
        {
            "epoch": 24,
            "global_step": 46824,
            "pytorch-lightning_version": "1.5.10",
            "state_dict": sd,
            "hyper_parameters": hparams,
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.5)}},
        },
        path,
    )
    for name in ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"):
        monkeypatch.delitem(sys.modules, name)  # loading must not need Lightning
    return path


def test_lightning_checkpoint_needs_and_gets_the_restricted_loader(lightning_ckpt):
    with pytest.raises(Exception):  # noqa: B017 - torch's own safe loader refuses Lightning objects
        torch.load(lightning_ckpt, weights_only=True)
    sd = load_checkpoint_state_dict(lightning_ckpt)
    assert "model_ema.input_blocks00weight" in sd and "hyper_parameters" not in sd


def test_split_selects_ema_unet_keeps_batchnorm_and_uv_layout():
    sd = small_dinar_state_dict()
    sd["scale_factor"] = torch.tensor(1.0)
    parts = split_dinar_state_dict(sd, require_official_shapes=False)
    nets = parts.networks
    assert set(nets) == {
        "dinar_encoder",
        "dinar_generator",
        "dinar_renderer",
        "dinar_vq",
        "dinar_unet",
        "dinar_uv_layout",
    }
    assert torch.equal(
        nets["dinar_unet"]["input_blocks.4.1.qkv.weight"], sd["model_ema.input_blocks41qkvweight"]
    )
    assert "decay" not in nets["dinar_unet"] and len(nets["dinar_unet"]) == 420
    assert "decoder.rgb_proc.0.running_var" in nets["dinar_vq"]
    assert nets["dinar_renderer"]["ntex_preproc.1.num_batches_tracked"].dtype == torch.int64
    assert nets["dinar_uv_layout"]["uv_faces"].dtype == torch.int64
    assert any("scale_factor" in note for note in parts.notes)


def test_split_accepts_vq_branch_alias_and_falls_back_to_raw_unet():
    sd = small_dinar_state_dict()
    sd = {k.replace("first_stage.compress_branch.", "first_stage.vq_branch."): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("model_ema.")}
    parts = split_dinar_state_dict(sd, require_official_shapes=False)
    assert torch.equal(parts.networks["dinar_unet"]["out.2.weight"], sd["model.out.2.weight"])
    assert "encoder.conv_in.weight" in parts.networks["dinar_vq"]
    assert any("vq_branch" in n for n in parts.notes) and any("raw" in n for n in parts.notes)


def test_import_writes_loadable_files_and_manifest(lightning_ckpt, tmp_path, monkeypatch):
    from avatarcli.nets import load_network
    from avatarcli.nets.dinar_unet import DinarUNet
    from avatarcli.nets.dinar_vq import DinarVQ

    folder = tmp_path / "weights"
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    report = import_dinar(lightning_ckpt, require_official_shapes=False)
    names = {e.name for e in report.entries}
    assert "dinar_unet" in names and "dinar_uv_layout" in names
    assert {e.name for e in read_manifest()} == names
    assert all(s.status == "present" for s in list_weights() if s.name in names)
    entry = next(e for e in report.entries if e.name == "dinar_unet")
    assert entry.licence.startswith("CC BY-NC") and "last-epoch=24.ckpt" in entry.origin
    assert entry.config["model_channels"] == 8

    paths = require_weights(["dinar_vq", "dinar_unet"])
    sd = small_dinar_state_dict()
    vq = load_network(DinarVQ, paths["dinar_vq"])
    unet = load_network(DinarUNet, paths["dinar_unet"])
    ref_unet = DinarUNet.from_dinar_state_dict(sd)  # EMA weights
    x, cond = torch.randn(1, 6, 8, 8), torch.randn(1, 7, 8, 8)
    t = torch.tensor([500])
    with torch.no_grad():
        assert torch.equal(unet(x, t, cond), ref_unet(x, t, cond))
    assert torch.equal(
        vq.quantize.embedding.weight, sd["first_stage.compress_branch.quantize.embedding.weight"]
    )
    layout = load_safetensors("dinar_uv_layout")
    assert torch.equal(layout["uv"], sd["first_stage.rasterizer.vertice_values"])


def test_small_networks_are_refused_as_the_official_model(lightning_ckpt):
    with pytest.raises(UserError, match="not the (released DINAR model|DINAR checkpoint layout)"):
        read_dinar_checkpoint(lightning_ckpt)


def test_not_a_dinar_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"backbone.conv.weight": torch.zeros(4, 3, 3, 3)}}, path)
    with pytest.raises(UserError, match="not a DINAR checkpoint"):
        read_dinar_checkpoint(path)
    plain = tmp_path / "list.pt"
    torch.save([1, 2, 3], plain)
    with pytest.raises(UserError, match="holds no state dict"):
        read_dinar_checkpoint(plain)


def test_checkpoint_with_foreign_names_inside_a_dinar_group(tmp_path):
    sd = small_dinar_state_dict()
    sd["first_stage.renderer.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(UserError, match=r"first_stage\.renderer\.\* has 1 unexpected"):
        split_dinar_state_dict(sd, require_official_shapes=False)


def test_incomplete_checkpoint(tmp_path):
    sd = {k: v for k, v in small_dinar_state_dict().items() if not k.startswith("first_stage.renderer.")}
    with pytest.raises(UserError, match=r"incomplete: it has no first_stage\.renderer\.\*"):
        split_dinar_state_dict(sd, require_official_shapes=False)


def test_truncated_checkpoint(lightning_ckpt, tmp_path):
    data = lightning_ckpt.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or not a PyTorch checkpoint"):
        read_dinar_checkpoint(cut)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="truncated or not a PyTorch checkpoint"):
        read_dinar_checkpoint(junk)
    with pytest.raises(UserError, match="does not exist"):
        read_dinar_checkpoint(tmp_path / "absent.ckpt")


class _CarriesCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy_format", [False, True])
def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, legacy_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"model.x": torch.zeros(1)}, "hyper_parameters": _CarriesCode(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy_format)
    with pytest.raises(UserError, match=r"refusing to load .*system"):
        read_dinar_checkpoint(path)
    assert not marker.exists()


def test_lightning_metadata_never_imports_lightning(lightning_ckpt):
    load_checkpoint_state_dict(lightning_ckpt)
    assert "pytorch_lightning" not in sys.modules


def test_packaged_key_table_matches_reference():
    import json

    ref_path = Path(__file__).parents[2] / "shared" / "reference" / "dinar-checkpoint-keys.json"
    if not ref_path.exists():
        pytest.skip("reference key list is not available")
    ref = json.loads(ref_path.read_text())
    ours = official_checkpoint_keys()
    assert {g: {k: list(s) for k, s in keys.items()} for g, keys in ours.items()} == ref
    assert sum(len(v) for v in ours.values()) == 1513


@pytest.mark.slow
def test_full_size_synthetic_checkpoint_converts(tmp_path, monkeypatch):
    """Builds a 3.3 GB checkpoint with every official name and shape, then imports it."""
    gen = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = {}
    for group, keys in official_checkpoint_keys().items():
        for name, shape in keys.items():
            key = f"{group}.{name}" if group else name
            if name.endswith("num_batches_tracked"):
                sd[key] = torch.tensor(100, dtype=torch.int64)
            elif name == "num_updates":
                sd[key] = torch.tensor(1000, dtype=torch.int32)
            elif name == "faces":
                sd[key] = torch.randint(0, 11438, shape, generator=gen, dtype=torch.int32)
            elif name.endswith("running_var"):
                sd[key] = torch.ones(shape)
            else:
                sd[key] = torch.randn(shape, generator=gen) * 0.02
    path = tmp_path / "full.ckpt"
    started = time.perf_counter()
    torch.save({"state_dict": sd, "epoch": 24}, path)
    del sd
    built = time.perf_counter()
    report = import_dinar(path, tmp_path / "weights")
    done = time.perf_counter()
    print(
        f"\nfull-size checkpoint: {path.stat().st_size / 1e9:.2f} GB, write {built - started:.1f} s, "
        f"import {done - built:.1f} s"
    )
    names = {e.name for e in report.entries}
    assert names == {
        "dinar_encoder",
        "dinar_generator",
        "dinar_renderer",
        "dinar_vq",
        "dinar_unet",
        "dinar_discriminator",
        "dinar_uv_layout",
    }
    unet = next(e for e in report.entries if e.name == "dinar_unet")
    assert unet.config["model_channels"] == 256 and unet.size > 1.5e9
