"""DINAR VQ autoencoder and diffusion UNet against the shared upstream vectors.

The vectors hold small upstream instances with random weights, their inputs and outputs; loading
their ``state_dict/*`` through our converters and matching the outputs checks names, shapes and
numerics at once. The official sizes are checked against the checkpoint key list.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vectors import load_vector  # shared test helper

from avatarcli.errors import UserError
from avatarcli.nets.dinar_unet import DinarUNet, DinarUNetConfig, ema_to_module_names
from avatarcli.nets.dinar_vq import DinarVQ, DinarVQConfig

REFERENCE = Path(__file__).parents[2] / "shared" / "reference"
VECTORS = REFERENCE / "vectors"


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def official_keys() -> dict:
    path = REFERENCE / "dinar-checkpoint-keys.json"
    if not path.exists():
        pytest.skip("shared checkpoint key list is not available")
    return json.loads(path.read_text())


# --- VQ autoencoder -------------------------------------------------------------------------


def test_vq_matches_upstream_vector():
    sd, inp, out, meta = load_vector("dinar_vq")
    net = DinarVQ.from_dinar_state_dict(sd)
    assert net.config == DinarVQConfig.tiny()
    tol = meta["tolerance"]["suggested_tolerance_for_float32_reimplementation"]
    with torch.no_grad():
        z = net.encode(inp["texture"])
        zq, indices = net.quantize(out["z"])
        decoded = net.decode(out["z"])
    assert max_abs(z, out["z"]) <= tol["z"]["atol"]
    assert max_abs(zq, out["z_q"]) <= tol["z_q"]["atol"]
    assert torch.equal(indices, out["codebook_indices"])
    assert max_abs(decoded, out["decoded"]) <= tol["decoded"]["atol"]


def test_vq_accepts_old_vq_branch_prefix():
    sd, inp, out, _ = load_vector("dinar_vq")
    renamed = {k.replace("first_stage.compress_branch.", "first_stage.vq_branch."): v for k, v in sd.items()}
    net = DinarVQ.from_dinar_state_dict(renamed)
    with torch.no_grad():
        assert max_abs(net.encode(inp["texture"]), out["z"]) <= 3e-5


def test_vq_rejects_wrong_keys_and_shapes():
    sd, *_ = load_vector("dinar_vq")
    missing = {k: v for k, v in sd.items() if not k.endswith("quant_conv.bias")}
    with pytest.raises(UserError, match="missing"):
        DinarVQ.from_dinar_state_dict(missing)
    bad = dict(sd)
    bad["first_stage.compress_branch.decoder.rgb_proc.2.weight"] = torch.zeros(3, 3, 5, 5)
    with pytest.raises(UserError, match=r"rgb_proc\.2\.weight has shape"):
        DinarVQ.from_dinar_state_dict(bad)
    with pytest.raises(UserError, match="no VQ autoencoder weights"):
        DinarVQ.from_dinar_state_dict({"model.x": torch.zeros(1)})


def test_vq_official_layout_equals_checkpoint_key_list():
    keys = official_keys()["first_stage.compress_branch"]
    with torch.device("meta"):
        net = DinarVQ(DinarVQConfig.official())
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == keys


def test_vq_tiny_round_trip_shapes():
    torch.manual_seed(0)
    net = DinarVQ(DinarVQConfig(base_channels=16, n_embed=32)).eval()
    with torch.no_grad():
        z = net.encode(torch.randn(1, 21, 32, 32))
        out = net.decode(z)
    assert z.shape == (1, 6, 8, 8) and out.shape == (1, 21, 32, 32)


# --- diffusion UNet -------------------------------------------------------------------------


@pytest.mark.parametrize(("use_ema", "output"), [(True, "eps"), (False, "eps_raw_model_weights")])
def test_unet_matches_upstream_vector(use_ema, output):
    sd, inp, out, meta = load_vector("dinar_unet")
    net = DinarUNet.from_dinar_state_dict(sd, use_ema=use_ema)
    assert net.config == DinarUNetConfig.tiny()
    with torch.no_grad():
        eps = net(inp["x_t"], inp["timesteps"], inp["c_concat"])
    atol = meta["tolerance"]["suggested_tolerance_for_float32_reimplementation"][output]["atol"]
    assert max_abs(eps, out[output]) <= atol
    # The EMA and raw weights are independent draws: picking the wrong set must show.
    other = "eps_raw_model_weights" if use_ema else "eps"
    assert max_abs(eps, out[other]) > 100 * atol


def test_unet_ema_names_map_without_raw_weights():
    sd, *_ = load_vector("dinar_unet")
    ema = {k[len("model_ema.") :]: v for k, v in sd.items() if k.startswith("model_ema.")}
    raw = {k[len("model.") :] for k in sd if k.startswith("model.")}
    assert set(ema_to_module_names(ema)) == raw
    only_ema = {k: v for k, v in sd.items() if k.startswith("model_ema.")}
    DinarUNet.from_dinar_state_dict(only_ema, use_ema=True)
    with pytest.raises(UserError, match="no diffusion UNet weights"):
        DinarUNet.from_dinar_state_dict(only_ema, use_ema=False)


def test_unet_rejects_wrong_shapes():
    sd, *_ = load_vector("dinar_unet")
    bad = dict(sd)
    bad["model_ema.preproc_rgb0weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(UserError, match=r"preproc_rgb\.0\.weight has shape"):
        DinarUNet.from_dinar_state_dict(bad)


def test_unet_official_layout_equals_checkpoint_key_list():
    keys = official_keys()
    with torch.device("meta"):
        net = DinarUNet(DinarUNetConfig.official())
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert shapes == keys["model"]
    assert sum(p.numel() for p in net.parameters()) == 387_266_688
    ema_names = {k.replace(".", "") for k in shapes}
    assert ema_names | {"decay", "num_updates"} == set(keys["model_ema"])


def test_unet_accepts_scalar_timestep():
    torch.manual_seed(0)
    net = DinarUNet(DinarUNetConfig.tiny()).eval()
    x, cond = torch.randn(2, 6, 8, 8), torch.randn(2, 7, 8, 8)
    with torch.no_grad():
        a = net(x, torch.tensor(10), cond)
        b = net(x, torch.tensor([10, 10]), cond)
    assert torch.equal(a, b)


@pytest.mark.gpu
def test_vq_and_unet_vectors_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    sd, inp, out, _ = load_vector("dinar_vq")
    vq = DinarVQ.from_dinar_state_dict(sd).cuda()
    with torch.no_grad():
        z = vq.encode(inp["texture"].cuda())
        assert max_abs(z.cpu(), out["z"]) <= 1e-4
        assert torch.equal(vq.quantize(out["z"].cuda())[1].cpu(), out["codebook_indices"])
        assert max_abs(vq.decode(out["z"].cuda()).cpu(), out["decoded"]) <= 1e-3
    sd, inp, out, _ = load_vector("dinar_unet")
    unet = DinarUNet.from_dinar_state_dict(sd).cuda()
    with torch.no_grad():
        eps = unet(inp["x_t"].cuda(), inp["timesteps"].cuda(), inp["c_concat"].cuda())
    assert max_abs(eps.cpu(), out["eps"]) <= 1e-3


def test_unet_runs_in_bfloat16_close_to_float32():
    sd, inp, out, _ = load_vector("dinar_unet")
    net = DinarUNet.from_dinar_state_dict(sd).to(torch.bfloat16)
    with torch.no_grad():
        eps = net(inp["x_t"], inp["timesteps"], inp["c_concat"])
    assert eps.dtype == torch.float32  # follows the input, not the weights
    assert max_abs(eps, out["eps"]) < 0.1 * out["eps"].abs().max().item()
