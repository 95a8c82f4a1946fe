"""DINAR encoder, texture generator and neural renderer against the shared upstream vectors.

Each vector is a small upstream instance with seeded random weights plus its inputs and outputs.
Loading its ``state_dict/*`` through our converter and reproducing the outputs checks key names,
shapes and numerics at once; the official sizes are checked against the checkpoint key list.
The max abs error per output is printed (``pytest -s``) for the issue's compatibility table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from vectors import load_vector  # shared test helper

from avatarcli.errors import InputFileError
from avatarcli.nets import load_network, save_network
from avatarcli.nets.dinar_encoder import DinarEncoder, DinarEncoderConfig
from avatarcli.nets.dinar_generator import DinarGeneratorConfig, DinarTextureGenerator
from avatarcli.nets.dinar_renderer import DinarRenderer, DinarRendererConfig
from avatarcli.nets.stylegan2 import (
    Blur,
    PixelNorm,
    Upsample,
    fused_leaky_relu,
    make_blur_kernel,
    stylegan_channels,
    upfirdn2d,
)

REFERENCE = Path(__file__).parents[2] / "shared" / "reference"
VECTORS = REFERENCE / "vectors"
ISSUE_TARGET_ATOL = 1e-4


def official_keys(prefix: str) -> dict[str, list[int]]:
    path = REFERENCE / "dinar-checkpoint-keys.json"
    if not path.exists():
        pytest.skip("shared checkpoint key list is not available")
    return json.loads(path.read_text())[prefix]


def check_outputs(name: str, got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], meta: dict) -> None:
    """Compare each output within the sidecar's float32 tolerance and print the max abs error."""
    tolerances = meta["tolerance"]["suggested_tolerance_for_float32_reimplementation"]
    for key, value in got.items():
        err = (value.double() - ref[key].double()).abs().max().item()
        atol = tolerances[key]["atol"]
        print(f"[vector {name}] {key}: max abs error {err:.3g} (sidecar atol {atol:g})")
        assert value.shape == ref[key].shape, key
        assert err <= atol, f"{name}/{key}: max abs error {err:.3g} > {atol:g}"


# --- upstream vectors -----------------------------------------------------------------------


def test_encoder_matches_upstream_vector():
    sd, inp, out, meta = load_vector("dinar_encoder")
    net = DinarEncoder.from_dinar_state_dict(sd).eval()
    assert net.config == DinarEncoderConfig.from_upstream_args(meta["constructor_args"])
    activations: dict[str, torch.Tensor] = {}
    for i, block in enumerate(net.convs):
        block.register_forward_hook(lambda _m, _i, y, i=i: activations.__setitem__(f"act_convs_{i}", y))
    net.final_conv.register_forward_hook(lambda _m, _i, y: activations.__setitem__("act_final_conv", y))
    with torch.no_grad():
        style = net(inp["input_rgb"], inp["real_segm"], inp["noise"])
    got = {"style": style, **{k: activations[k] for k in out if k.startswith("act_")}}
    check_outputs("dinar_encoder", got, out, meta)
    assert (style - out["style"]).abs().max().item() <= ISSUE_TARGET_ATOL


def test_generator_matches_upstream_vector():
    sd, inp, out, meta = load_vector("dinar_generator")
    net = DinarTextureGenerator.from_dinar_state_dict(sd).eval()
    assert net.config == DinarGeneratorConfig.from_upstream_args(meta["constructor_args"])
    assert net.config.n_latent == meta["n_latent"]
    noise = [inp[f"noise_{i:02d}"] for i in range(net.config.num_noise_layers)]
    with torch.no_grad():
        ntexture = net(inp["style"], noise)
        from_buffers = net(inp["style"][:1], noise_mode="buffers")
    got = {"ntexture": ntexture, "ntexture_buffer_noise_sample0": from_buffers}
    check_outputs("dinar_generator", got, out, meta)
    assert (ntexture - out["ntexture"]).abs().max().item() <= ISSUE_TARGET_ATOL


def test_renderer_matches_upstream_vector_both_thresholds():
    sd, inp, out, meta = load_vector("dinar_renderer")
    net = DinarRenderer.from_dinar_state_dict(sd).eval()
    assert net.config == DinarRendererConfig.from_upstream_args(meta["constructor_args"])
    with torch.no_grad():
        default = net(inp["ntexture"], inp["uv"], inp["uv_mask"], background=inp["background"])
        video = net(inp["ntexture"], inp["uv"], inp["uv_mask"], inp["background"], segm_threshold=0.5)
    got = {
        "fake_rgb": default.rgb,
        "fake_segm": default.segm,
        "unet_out": default.features,
        "fake_rgb_thr05": video.rgb,
        "fake_segm_thr05": video.segm,
    }
    check_outputs("dinar_renderer", got, out, meta)
    for key in ("fake_rgb", "fake_segm", "fake_rgb_thr05", "fake_segm_thr05"):
        assert (got[key] - out[key]).abs().max().item() <= ISSUE_TARGET_ATOL, key


# --- official sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net_class", "config", "prefix", "n_params", "fact_sheet_millions"),
    [
        (DinarEncoder, DinarEncoderConfig.official(), "first_stage.encoder", 7_377_760, 7.38),
        (DinarTextureGenerator, DinarGeneratorConfig.official(), "first_stage.generator", 8_124_413, 8.12),
        (DinarRenderer, DinarRendererConfig.official(), "first_stage.renderer", 18_994_818, 19.0),
    ],
)
def test_official_config_has_the_checkpoint_keys_and_parameter_count(
    net_class, config, prefix, n_params, fact_sheet_millions
):
    with torch.device("meta"):  # shapes only: no memory, no random init
        net = net_class(config)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == official_keys(prefix)  # every key and shape of the released checkpoint, no more
    # Trainable parameters only: the checkpoint also holds blur kernels, BatchNorm statistics and
    # (generator) 0.17 M elements of fixed noise maps, which the fact sheet's figures leave out.
    assert sum(p.numel() for p in net.parameters()) == n_params
    assert abs(n_params / 1e6 - fact_sheet_millions) < 0.01


def test_official_converters_read_sizes_from_shapes():
    """A (meta-device) official-size state dict converts to the official configs."""
    for net_class, config, prefix in [
        (DinarEncoder, DinarEncoderConfig.official(), "first_stage.encoder."),
        (DinarTextureGenerator, DinarGeneratorConfig.official(), "first_stage.generator."),
        (DinarRenderer, DinarRendererConfig.official(), "first_stage.renderer."),
    ]:
        with torch.device("meta"):
            reference = net_class(config)
            sd = {prefix + k: v for k, v in reference.state_dict().items()}
            converted = net_class.from_dinar_state_dict(sd, prefix=prefix)
        assert converted.config == config


# --- tiny configs on random weights ---------------------------------------------------------


def test_tiny_encoder_forward_and_noise_seeding():
    torch.manual_seed(0)
    cfg = DinarEncoderConfig.tiny()
    net = DinarEncoder(cfg).eval()
    rgb = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 2 - 1
    segm = (torch.rand(2, 1, cfg.image_size, cfg.image_size) > 0.5).float()
    with torch.no_grad():
        w1 = net(rgb, segm, generator=torch.Generator().manual_seed(5))
        w2 = net(rgb, segm, generator=torch.Generator().manual_seed(5))
        w3 = net(rgb, segm, generator=torch.Generator().manual_seed(6))
    assert w1.shape == (2, cfg.style_dim)
    assert torch.isfinite(w1).all()
    assert torch.equal(w1, w2)
    assert not torch.equal(w1, w3)


def test_tiny_generator_forward_noise_modes_and_w_plus():
    torch.manual_seed(0)
    cfg = DinarGeneratorConfig.tiny()
    net = DinarTextureGenerator(cfg).eval()
    for conv in net.convs:  # non-zero noise gains so the noise actually matters
        conv.noise.weight.data.fill_(0.5)
    w = torch.randn(2, cfg.style_dim)
    with torch.no_grad():
        a = net(w, generator=torch.Generator().manual_seed(1))
        b = net(w, generator=torch.Generator().manual_seed(1))
        c = net(w, generator=torch.Generator().manual_seed(2))
        fixed = net(w, noise_mode="buffers")
        explicit = net(w, [net.noises.get(i).expand(2, -1, -1, -1) for i in range(cfg.num_noise_layers)])
        w_plus = net(w[:, None].expand(-1, cfg.n_latent, -1), noise_mode="buffers")
    assert a.shape == (2, cfg.output_channels, cfg.texture_size, cfg.texture_size)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with torch.no_grad():
        assert torch.equal(a, net(w, net.make_noise(2, torch.Generator().manual_seed(1))))
    torch.testing.assert_close(fixed, explicit)
    torch.testing.assert_close(fixed, w_plus)
    with pytest.raises(ValueError, match="noise maps"):
        net(w, noise=[None])


def test_tiny_renderer_forward_and_compositing():
    torch.manual_seed(0)
    cfg = DinarRendererConfig.tiny()
    net = DinarRenderer(cfg).eval()
    tex = torch.randn(1, cfg.ntex_channels, 16, 16)
    uv_mask = torch.zeros(1, 1, 16, 16)
    uv_mask[..., 4:12, 4:12] = 1
    uv = torch.where(uv_mask.bool(), torch.rand(1, 2, 16, 16) * 2 - 1, torch.full((1, 2, 16, 16), -10.0))
    with torch.no_grad():
        out = net(tex, uv, uv_mask)
        video = net(tex, uv, uv_mask, segm_threshold=0.5)
    assert out.rgb.shape == (1, 3, 16, 16) and out.segm.shape == (1, 1, 16, 16)
    assert out.features.shape == (1, cfg.unet_out_channels, 16, 16)
    assert out.rgb.abs().max() <= 1 and 0 <= out.segm.min() and out.segm.max() <= 1
    # Hard segmentation: the body's own pixels are fully opaque in both modes.
    assert torch.all(out.segm[uv_mask.bool()] == 1) and torch.all(video.segm[uv_mask.bool()] >= 0.999)
    with pytest.raises(ValueError, match="divisible"):
        net(tex, uv[..., :14, :14], uv_mask[..., :14, :14])


def test_exponential_transparency_curve():
    net = DinarRenderer(DinarRendererConfig.tiny())
    s = torch.tensor([0.0, 0.4, 0.5, 0.6, 0.7, 1.0]).reshape(1, 1, 1, 6)
    alpha = net.composite_alpha(s, torch.zeros_like(s), threshold=0.5)[0, 0, 0]
    expected = [(1 - math.exp((0.5 - v) * 20)) * (1 + math.exp((v - 0.7) * 70)) for v in s.flatten().tolist()]
    torch.testing.assert_close(alpha, torch.tensor(expected).clamp(0, 1))
    assert alpha[0] == 0 and alpha[2] == 0 and alpha[-1] == 1
    torch.testing.assert_close(net.composite_alpha(s, torch.zeros_like(s), threshold=0.0), s)


# --- building blocks ------------------------------------------------------------------------


def test_upfirdn2d_blur_keeps_constants_and_upsample_doubles():
    kernel = make_blur_kernel([1, 3, 3, 1])
    assert kernel.sum().item() == pytest.approx(1.0)
    x = torch.full((1, 2, 8, 8), 3.0)
    blurred = Blur([1, 3, 3, 1], pad=(2, 1))(x)
    assert blurred.shape == (1, 2, 8, 8)
    torch.testing.assert_close(blurred[..., 2:-2, 2:-2], torch.full((1, 2, 4, 4), 3.0))
    up = Upsample([1, 3, 3, 1])(x)
    assert up.shape == (1, 2, 16, 16)
    torch.testing.assert_close(up[..., 3:-3, 3:-3], torch.full((1, 2, 10, 10), 3.0))
    down = upfirdn2d(x, kernel, down=2, pad=(1, 1))
    assert down.shape == (1, 2, 4, 4)


def test_fused_leaky_relu_gain():
    x = torch.tensor([[-1.0, 2.0]]).reshape(1, 2, 1, 1)
    y = fused_leaky_relu(x, torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(y.flatten(), torch.tensor([-0.5 * 0.2, 1.0]) * math.sqrt(2))


def test_tiny_networks_run_in_bfloat16():
    """bf16 (for GPUs) runs end to end and stays near float32 on the same weights."""
    torch.manual_seed(0)
    generator = DinarTextureGenerator(DinarGeneratorConfig.tiny()).eval()
    renderer = DinarRenderer(DinarRendererConfig.tiny()).eval()
    w = torch.randn(1, generator.config.style_dim)
    noise = generator.make_noise(1, torch.Generator().manual_seed(0))
    uv = torch.rand(1, 2, 16, 16) * 2 - 1
    uv_mask = torch.ones(1, 1, 16, 16)
    with torch.no_grad():
        tex = generator(w, noise)
        full = torch.cat([tex, torch.rand(1, 5, *tex.shape[-2:])], dim=1)
        rgb32 = renderer(full, uv, uv_mask).rgb
        tex16 = generator.bfloat16()(w.bfloat16(), [n.bfloat16() for n in noise])
        rgb16 = renderer.bfloat16()(full.bfloat16(), uv.bfloat16(), uv_mask.bfloat16()).rgb
    assert tex16.dtype == rgb16.dtype == torch.bfloat16
    assert (tex16.float() - tex).abs().max() <= 0.05 * tex.abs().max()
    assert (rgb16.float() - rgb32).abs().max() <= 0.1


def test_pixel_norm_and_channel_widths():
    z = torch.randn(3, 64) * 7
    torch.testing.assert_close(PixelNorm()(z).pow(2).mean(dim=1), torch.ones(3))
    # DINAR (m=2) and StylePeople (m=4) widths from the fact sheet and sidecars.
    assert [stylegan_channels(r, 2) for r in (4, 64, 128, 256, 512)] == [256, 256, 128, 64, 32]
    assert [stylegan_channels(r, 4) for r in (4, 64, 128, 256)] == [512, 512, 256, 128]
    assert [stylegan_channels(r, 0.25) for r in (64, 128)] == [32, 16]


# --- converter errors and our own files -----------------------------------------------------


def test_wrong_state_dicts_fail_clearly():
    sd, _, _, _ = load_vector("dinar_encoder")
    # Another network's keys under the expected prefix.
    with pytest.raises(ValueError, match="not a DinarTextureGenerator state dict"):
        DinarTextureGenerator.from_dinar_state_dict(sd)
    # Right network, wrong prefix.
    with pytest.raises(ValueError, match="first_stage.renderer"):
        DinarEncoder.from_dinar_state_dict(sd, prefix="first_stage.renderer.")
    # One missing and one unexpected key.
    broken = dict(sd)
    broken.pop("first_stage.encoder.convs.1.conv1.1.bias")
    broken["first_stage.encoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r"missing keys \(1\).*convs\.1\.conv1\.1\.bias(?s:.*)unexpected keys"
    ):
        DinarEncoder.from_dinar_state_dict(broken)
    # A shape mismatch.
    broken = dict(sd)
    broken["first_stage.encoder.convs.2.conv1.0.weight"] = torch.zeros(32, 32, 1, 1)
    with pytest.raises(ValueError, match=r"shape mismatches.*convs\.2\.conv1\.0\.weight"):
        DinarEncoder.from_dinar_state_dict(broken)


@pytest.mark.parametrize(
    ("net_class", "config"),
    [
        (DinarEncoder, DinarEncoderConfig.tiny()),
        (DinarTextureGenerator, DinarGeneratorConfig.tiny()),
        (DinarRenderer, DinarRendererConfig.tiny()),
    ],
)
def test_safetensors_round_trip(tmp_path, net_class, config):
    torch.manual_seed(0)
    net = net_class(config)
    path = tmp_path / f"{net_class.kind}.safetensors"
    save_network(net, path)
    loaded = load_network(net_class, path)
    assert loaded.config == config and not loaded.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # Same keys as the official checkpoint minus prefix: the converter reads our file too.
    assert net_class.from_dinar_state_dict(net.to_safetensors_state_dict(), prefix="").config == config


def test_loading_another_networks_file_fails_clearly(tmp_path):
    path = tmp_path / "encoder.safetensors"
    save_network(DinarEncoder(DinarEncoderConfig.tiny()), path)
    with pytest.raises(InputFileError, match="not an avatarcli dinar_renderer weights file"):
        load_network(DinarRenderer, path)
    with pytest.raises(InputFileError, match="cannot read"):
        load_network(DinarRenderer, tmp_path / "missing.safetensors")


# --- full size ------------------------------------------------------------------------------


@pytest.mark.slow
def test_official_networks_run_at_real_resolution_on_cpu():
    """Random-weight official nets chain at real sizes: 512² photo → w → 256² texture → render."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = DinarEncoder().eval()(
            torch.rand(1, 3, 512, 512) * 2 - 1, torch.ones(1, 1, 512, 512), generator=gen
        )
        ntex = DinarTextureGenerator().eval()(w, generator=gen)
        texture = torch.cat([ntex, torch.rand(1, 5, 256, 256)], dim=1)
        out = DinarRenderer().eval()(texture, torch.rand(1, 2, 128, 128) * 2 - 1, torch.ones(1, 1, 128, 128))
    assert w.shape == (1, 512) and ntex.shape == (1, 16, 256, 256)
    assert out.rgb.shape == (1, 3, 128, 128) and torch.isfinite(out.rgb).all()


# --- full size on CUDA ----------------------------------------------------------------------


@pytest.mark.gpu
def test_official_networks_run_at_real_resolution_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device("cuda")
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    encoder = DinarEncoder().to(device).eval()
    generator = DinarTextureGenerator().to(device).eval()
    renderer = DinarRenderer().to(device).eval()
    with torch.no_grad():
        rgb = torch.rand(2, 3, 512, 512, device=device) * 2 - 1
        segm = (torch.rand(2, 1, 512, 512, device=device) > 0.5).float()
        w = encoder(rgb, segm, generator=gen)
        ntex = generator(w, generator=gen)
        assert w.shape == (2, 512) and ntex.shape == (2, 16, 256, 256)
        texture = torch.cat([ntex, torch.rand(2, 5, 256, 256, device=device)], dim=1)
        uv = torch.rand(2, 2, 512, 512, device=device) * 2 - 1
        uv_mask = torch.ones(2, 1, 512, 512, device=device)
        out = renderer(texture, uv, uv_mask)
        assert out.rgb.shape == (2, 3, 512, 512) and torch.isfinite(out.rgb).all()
        # CUDA matches CPU on the same weights (loose: different kernels and summation order).
        cpu = renderer.cpu()(texture[:1].cpu(), uv[:1].cpu(), uv_mask[:1].cpu())
        assert (cpu.rgb - out.rgb[:1].cpu()).abs().max().item() < 1e-2
