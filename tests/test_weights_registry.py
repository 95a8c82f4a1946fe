"""The weights registry with tiny fake files: listing, verifying, requiring and loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avatarcli.errors import MissingWeightsError, UserError
from avatarcli.io_utils import sha256_file
from avatarcli.weights_registry import (
    WeightEntry,
    list_weights,
    load_safetensors,
    read_manifest,
    require_weights,
    verify_weights,
    weights_dir,
)
from avatarcli.weights_registry.registry import update_manifest, write_manifest


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "weights"
    monkeypatch.setenv("AVATAR_WEIGHTS", str(path))
    return path


def install_fake(folder: Path, name: str = "dinar_vq") -> WeightEntry:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({"w": torch.arange(6, dtype=torch.float32)}, str(path))
    entry = WeightEntry(
        name=name,
        file=path.name,
        sha256=sha256_file(path),
        size=path.stat().st_size,
        licence="test",
        origin="unit test",
        kind=name,
        config={"a": 1},
    )
    update_manifest([entry])
    return entry


def by_name(statuses):
    return {s.name: s for s in statuses}


def test_env_var_selects_folder(folder):
    assert weights_dir() == folder


def test_empty_folder_lists_known_weights_as_missing_with_instructions(folder):
    statuses = by_name(list_weights())
    assert statuses["dinar_unet"].status == "missing"
    assert "avatar weights import dinar" in statuses["dinar_unet"].detail
    assert read_manifest() == []


def test_present_then_mismatch_then_missing(folder):
    entry = install_fake(folder)
    assert by_name(verify_weights())["dinar_vq"].status == "present"
    assert torch.equal(load_safetensors("dinar_vq")["w"], torch.arange(6, dtype=torch.float32))
    assert require_weights(["dinar_vq"]) == {"dinar_vq": folder / entry.file}

    # Same size, different bytes: only the hash check notices.
    path = folder / entry.file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert by_name(list_weights())["dinar_vq"].status == "present"
    assert by_name(verify_weights())["dinar_vq"].status == "mismatch"

    path.write_bytes(b"short")
    assert by_name(list_weights())["dinar_vq"].status == "mismatch"
    with pytest.raises(MissingWeightsError, match=r"dinar_vq\.safetensors are mismatch"):
        require_weights(["dinar_vq"])

    path.unlink()
    assert by_name(verify_weights())["dinar_vq"].status == "missing"


def test_require_missing_names_the_file_and_how_to_get_it(folder):
    with pytest.raises(MissingWeightsError) as info:
        require_weights(["dinar_unet"])
    message = str(info.value)
    assert "\n" not in message
    assert str(folder / "dinar_unet.safetensors") in message
    assert "CC BY-NC" in message and "avatar weights import dinar path/to/file.ckpt" in message


def test_manifest_update_replaces_by_name(folder):
    install_fake(folder, "dinar_vq")
    install_fake(folder, "dinar_unet")
    install_fake(folder, "dinar_vq")
    names = [e.name for e in read_manifest()]
    assert names == ["dinar_unet", "dinar_vq"]
    data = json.loads((folder / "manifest.json").read_text())
    assert data["version"] == 1 and set(data["weights"][0]) >= {
        "name",
        "file",
        "sha256",
        "size",
        "licence",
        "origin",
    }


def test_damaged_manifest_is_a_user_error(folder):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest .* is damaged"):
        list_weights()
    (folder / "manifest.json").write_text(json.dumps({"version": 99, "weights": []}))
    with pytest.raises(UserError, match="unsupported manifest version"):
        read_manifest()


def test_unreadable_safetensors_is_reported(folder):
    entry = install_fake(folder)
    path = folder / entry.file
    path.write_bytes(b"x" * entry.size)
    with pytest.raises(MissingWeightsError, match="cannot be read"):
        load_safetensors("dinar_vq")


def test_shipped_manifest_starts_empty():
    shipped = Path(__file__).parents[1] / "weights" / "manifest.json"
    data = json.loads(shipped.read_text())
    assert data["version"] == 1 and isinstance(data["weights"], list)


def test_write_manifest_is_sorted(folder):
    entries = [WeightEntry(n, f"{n}.safetensors", "0" * 64, 1, "l", "o") for n in ("b", "a")]
    write_manifest(entries)
    assert [e.name for e in read_manifest()] == ["a", "b"]
