"""Loading the inpainting networks from the registry, and DINAR's UV-island mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatarcli.errors import MissingWeightsError
from avatarcli.inpaint.networks import load_inpainting_networks
from avatarcli.io_utils import sha256_file
from avatarcli.nets import save_network
from avatarcli.nets.dinar_unet import DinarUNet, DinarUNetConfig
from avatarcli.nets.dinar_uv import uv_island_mask
from avatarcli.nets.dinar_vq import DinarVQ, DinarVQConfig
from avatarcli.weights_registry import WeightEntry
from avatarcli.weights_registry.registry import update_manifest

UV_DATA = Path(__file__).parents[2] / "shared" / "reference" / "vectors" / "dinar_uv"


def test_load_inpainting_networks_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="dinar_vq.safetensors"):
        load_inpainting_networks()
    torch.manual_seed(0)
    nets = {
        "dinar_vq": DinarVQ(DinarVQConfig(base_channels=16, n_embed=32)),
        "dinar_unet": DinarUNet(DinarUNetConfig.tiny()),
    }
    entries = []
    for name, net in nets.items():
        path = tmp_path / f"{name}.safetensors"
        save_network(net, path)
        entries.append(
            WeightEntry(
                name,
                path.name,
                sha256_file(path),
                path.stat().st_size,
                "test",
                "test",
                net.kind,
                net.config_dict(),
            )
        )
    update_manifest(entries)
    vq, unet = load_inpainting_networks()
    assert not vq.training and not unet.training
    assert vq.config == nets["dinar_vq"].config and unet.config == nets["dinar_unet"].config
    x = torch.randn(1, 21, 16, 16)
    with torch.no_grad():
        assert torch.equal(vq.encode(x), nets["dinar_vq"].eval().encode(x))


def test_uv_island_mask_of_one_triangle():
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mask = uv_island_mask(uv, torch.tensor([[0, 1, 2]]), texture_size=64)
    assert mask.shape == (64, 64)
    assert mask[5, 5] == 1 and mask[60, 60] == 0  # v = 0 is the top row
    assert abs(mask.mean().item() - 0.5) < 0.02


def test_uv_island_mask_of_dinar_layout():
    if not (UV_DATA / "uv.npy").exists():
        pytest.skip("DINAR UV data not available")
    uv = torch.from_numpy(np.load(UV_DATA / "uv.npy")).float()
    faces = torch.from_numpy(np.load(UV_DATA / "uv_faces.npy"))
    mask = uv_island_mask(uv, faces)
    covered = (mask > 0.5).float().mean().item()
    assert 0.7 < covered < 0.85
    assert ((mask > 0) & (mask < 1)).any()  # soft borders, as in DINAR's resized PNG
    centroid_rc = (uv[faces].mean(1) * 255).round().long().flip(-1)
    assert (mask[centroid_rc[:, 0], centroid_rc[:, 1]] > 0.5).float().mean() > 0.97
