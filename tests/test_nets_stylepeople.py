"""StylePeople generator and renderer against the shared upstream vectors, plus the converter.

The vector tests print the max abs error per output (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vectors import load_vector  # shared test helper

from avatarcli.errors import InputFileError, UserError
from avatarcli.nets import load_network
from avatarcli.nets.sp_checkpoint import (
    ENCODER_NAME,
    GENERATOR_NAME,
    RENDERER_NAME,
    check_encoder_state_dict,
    encoder_state_dict,
    import_stylepeople,
    load_generator,
    load_renderer,
    networks_from_generative_model,
    read_generative_model,
)
from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator, infer_generator_config
from avatarcli.nets.sp_renderer import SPRenderer, SPRendererConfig

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vectors"


def assert_matches(name: str, got: torch.Tensor, want: torch.Tensor, meta: dict) -> float:
    atol = meta["tolerance"]["suggested_tolerance_for_float32_reimplementation"][name]["atol"]
    err = (got - want).abs().max().item()
    print(f"{meta['name']}/{name}: max abs error {err:.3g} (atol {atol})")
    assert got.shape == want.shape
    assert err <= atol, f"{name}: max abs error {err} > {atol}"
    return err


def perturb(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Make default-initialised weights non-trivial (noise gains, biases, BN statistics)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("noise.weight") or name.endswith("bias"):
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("add_input"):
                p.copy_(torch.randn(p.shape, generator=gen))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return net.eval()


# --- upstream vectors -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sp_generator_vector():
    sd, inp, out, meta = load_vector("sp_generator")
    net = SPTextureGenerator.from_stylepeople_state_dict(sd).eval()
    noise = [inp[f"noise_{i:02d}"] for i in range(net.config.num_noise_layers)]
    return net, inp, out, meta, noise


def test_sp_generator_mapping_and_z_path_match_upstream(sp_generator_vector):
    net, inp, out, meta, noise = sp_generator_vector
    with torch.no_grad():
        assert_matches("w", net.map_latent(inp["z"]), out["w"], meta)
        assert_matches("ntexture_from_z", net(inp["z"], noise), out["ntexture_from_z"], meta)


def test_sp_generator_wplus_path_matches_upstream(sp_generator_vector):
    net, inp, out, meta, noise = sp_generator_vector
    with torch.no_grad():
        got = net(inp["wplus"], noise, input_is_latent=True)
    assert_matches("ntexture_from_wplus", got, out["ntexture_from_wplus"], meta)


def test_sp_generator_config_from_sidecar_builds_the_same_network(sp_generator_vector):
    net, _, _, meta, _ = sp_generator_vector
    config = SPGeneratorConfig.from_constructor_args(meta["constructor_args"])
    assert config.n_latent == meta["n_latent"]
    assert config.num_noise_layers == meta["num_layers"]
    shapes = {k: tuple(v.shape) for k, v in SPTextureGenerator(config).state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert sorted(k for k in shapes if k.endswith("add_input")) == meta["spectral_input"]["keys"]


def test_sp_renderer_matches_upstream():
    sd, inp, out, meta = load_vector("sp_renderer")
    net = SPRenderer.from_stylepeople_state_dict(sd).eval()
    assert net.config == SPRendererConfig.from_constructor_args(meta["constructor_args"])
    with torch.no_grad():
        got = net(inp["nrender"], inp["uv"])
    assert_matches("unet_out", got.unet_out, out["unet_out"], meta)
    assert_matches("fake_rgb", got.rgb, out["fake_rgb"], meta)
    assert_matches("fake_segm", got.segm, out["fake_segm"], meta)


# --- official sizes -------------------------------------------------------------------------


def test_official_configs_have_the_released_sizes():
    with torch.device("meta"):
        generator = SPTextureGenerator(SPGeneratorConfig.official())
        renderer = SPRenderer(SPRendererConfig.official())
    # fact sheet §5.4: 31.6 M parameters / 138 tensors (16 spectral channels) and 14.4 M / 259
    assert round(sum(p.numel() for p in generator.parameters()) / 1e6, 1) == 31.6
    assert len(generator.state_dict()) == 138
    assert round(sum(p.numel() for p in renderer.parameters()) / 1e6, 1) == 14.4
    assert len(renderer.state_dict()) == 259
    assert generator.config.n_latent == 14
    assert [k for k in generator.state_dict() if k.endswith("add_input")] == [
        "convs.7.add_input",
        "convs.9.add_input",
        "convs.11.add_input",
    ]
    assert [generator.config.width(r) for r in (4, 64, 128, 256)] == [512, 512, 256, 128]


# --- tiny networks --------------------------------------------------------------------------


@pytest.fixture
def tiny_generator() -> SPTextureGenerator:
    torch.manual_seed(0)
    return perturb(SPTextureGenerator(SPGeneratorConfig.tiny()), seed=1)


@pytest.fixture
def tiny_renderer() -> SPRenderer:
    torch.manual_seed(0)
    return perturb(SPRenderer(SPRendererConfig.tiny()), seed=2)


def test_tiny_generator_z_and_wplus_paths(tiny_generator):
    cfg = tiny_generator.config
    z = torch.randn(2, cfg.style_dim, generator=torch.Generator().manual_seed(3))
    noise = tiny_generator.make_noise(2, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        from_z = tiny_generator(z, noise)
        w = tiny_generator.map_latent(z)
        wplus = w[:, None].expand(-1, cfg.n_latent, -1)
        from_wplus = tiny_generator(wplus, noise, input_is_latent=True)
        other_noise = tiny_generator(
            z, tiny_generator.make_noise(2, generator=torch.Generator().manual_seed(5))
        )
    assert from_z.shape == (2, cfg.output_channels, cfg.size, cfg.size)
    assert torch.isfinite(from_z).all()
    torch.testing.assert_close(from_wplus, from_z, atol=1e-5, rtol=0)  # W+ of equal rows == w
    assert not torch.allclose(from_z[0], from_z[1])
    assert (other_noise - from_z).abs().max() > 1e-3  # the noise inputs are used


def test_tiny_generator_rejects_wrong_inputs(tiny_generator):
    cfg = tiny_generator.config
    with pytest.raises(ValueError, match="noise maps"):
        tiny_generator(torch.randn(1, cfg.style_dim), [torch.randn(1, 1, 4, 4)])
    with pytest.raises(ValueError, match="w must be"):
        tiny_generator(torch.randn(1, 3, cfg.style_dim), input_is_latent=True)


def test_truncation_pulls_toward_the_mean_latent(tiny_generator):
    cfg = tiny_generator.config
    z = torch.randn(1, cfg.style_dim, generator=torch.Generator().manual_seed(6))
    noise = tiny_generator.make_noise(1, generator=torch.Generator().manual_seed(7))
    mean = tiny_generator.mean_latent()
    assert mean.shape == (1, cfg.style_dim)
    assert mean is tiny_generator.mean_latent()  # cached
    with torch.no_grad():
        at_zero = tiny_generator(z, noise, truncation=0.0)
        of_mean = tiny_generator.synthesize(mean, noise)
        half = tiny_generator.truncate(tiny_generator.map_latent(z), 0.5)
    torch.testing.assert_close(at_zero, of_mean)
    torch.testing.assert_close(half, 0.5 * (tiny_generator.map_latent(z) + mean))


def test_spectral_inputs_are_frozen_used_and_resizable(tiny_generator):
    cfg = tiny_generator.config
    spectral = [m for m in tiny_generator.convs if hasattr(m, "add_input")]
    assert len(spectral) == 1 and spectral[0].add_input.shape == (1, cfg.spectral_channels, 64, 64)
    assert not spectral[0].add_input.requires_grad
    z = torch.randn(1, cfg.style_dim)
    with torch.no_grad():
        before = tiny_generator(z, noise_mode="buffers")
        source = torch.linspace(-1, 1, 128).expand(1, cfg.spectral_channels, 128, 128).contiguous()
        tiny_generator.set_spectral_source(source)
        after = tiny_generator(z, noise_mode="buffers")
    assert (before - after).abs().max() > 1e-3
    torch.testing.assert_close(
        spectral[0].add_input, torch.nn.functional.interpolate(source, size=(64, 64), mode="bilinear")
    )
    with pytest.raises(ValueError, match="spectral texture"):
        tiny_generator.set_spectral_source(torch.zeros(1, cfg.spectral_channels + 1, 8, 8))


def _uv_render(batch: int, size: int, seed: int) -> torch.Tensor:
    """A disc of valid uvs in [-1, 1] on a -10 background."""
    gen = torch.Generator().manual_seed(seed)
    uv = torch.rand(batch, 2, size, size, generator=gen) * 2 - 1
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2
    return torch.where(inside, uv, torch.full_like(uv, -10.0))


def test_tiny_renderer_doubles_the_size_and_composites(tiny_renderer):
    uv = _uv_render(2, 32, seed=8)
    texture = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        out = tiny_renderer.render_texture(texture, uv)
        white = tiny_renderer.render_texture(texture, uv, background=torch.ones(1, 3, 64, 64))
    assert out.rgb.shape == (2, 3, 64, 64) and out.segm.shape == (2, 1, 64, 64)
    assert out.unet_out.shape == (2, 16, 32, 32)
    assert out.rgb.min() >= -1 and out.rgb.max() <= 1
    assert out.segm.min() >= 0 and out.segm.max() <= 1
    on_body = torch.nn.functional.interpolate((uv > -10).any(1, keepdim=True).float(), scale_factor=2.0)
    assert torch.all(out.segm[on_body > 0] == 1)  # the uv mask forces full alpha
    # off the body the background shows through in proportion to 1 - alpha
    expected = out.rgb + (1 - out.segm) * 2
    torch.testing.assert_close(white.rgb, expected, atol=1e-5, rtol=0)


def test_renderer_rejects_sizes_not_divisible_by_32(tiny_renderer):
    with pytest.raises(ValueError, match="divisible by 32"):
        tiny_renderer(torch.zeros(1, 16, 48, 48), torch.zeros(1, 2, 48, 48))


# --- converter ------------------------------------------------------------------------------


@pytest.fixture
def official_layout_checkpoint(tiny_generator, tiny_renderer) -> dict:
    return {"g": tiny_generator.state_dict(), "r": tiny_renderer.state_dict()}


def test_converter_round_trip_through_files(
    tmp_path, official_layout_checkpoint, tiny_generator, tiny_renderer
):
    ckpt = tmp_path / "generative_model.pth"
    torch.save(official_layout_checkpoint, ckpt)
    report = import_stylepeople(ckpt, tmp_path / "weights")
    assert set(report.files) == {GENERATOR_NAME, RENDERER_NAME}
    manifest = json.loads((tmp_path / "weights" / "manifest.json").read_text())
    assert {e["name"] for e in manifest["weights"]} == {GENERATOR_NAME, RENDERER_NAME}
    assert all(e["sha256"] and e["kind"] for e in manifest["weights"])

    generator = load_generator(report.files[GENERATOR_NAME])
    renderer = load_renderer(report.files[RENDERER_NAME])
    assert generator.config == tiny_generator.config
    z = torch.randn(1, generator.config.style_dim)
    uv = _uv_render(1, 32, seed=10)
    with torch.no_grad():
        torch.testing.assert_close(
            generator(z, noise_mode="buffers"), tiny_generator(z, noise_mode="buffers")
        )
        nrender = torch.randn(1, 16, 32, 32)
        torch.testing.assert_close(renderer(nrender, uv).rgb, tiny_renderer(nrender, uv).rgb)
    with pytest.raises(InputFileError, match="not an avatarcli sp_generator"):
        load_network(SPTextureGenerator, report.files[RENDERER_NAME])


def test_converter_reads_the_official_layout_in_memory(official_layout_checkpoint, tiny_generator):
    nets = networks_from_generative_model(official_layout_checkpoint)
    assert not nets.generator.training and not nets.renderer.training
    assert infer_generator_config(official_layout_checkpoint["g"]) == tiny_generator.config


def test_converter_names_missing_parts_keys_and_shapes(official_layout_checkpoint):
    with pytest.raises(InputFileError, match="'g' \\(generator\\) and 'r'"):
        networks_from_generative_model({"g": official_layout_checkpoint["g"]})
    renamed = dict(official_layout_checkpoint["r"])
    renamed["rgb_head.8.weights"] = renamed.pop("rgb_head.8.weight")
    with pytest.raises(InputFileError, match=r"missing keys \(1\): rgb_head.8.weight"):
        networks_from_generative_model({"g": official_layout_checkpoint["g"], "r": renamed})
    reshaped = dict(official_layout_checkpoint["g"])
    reshaped["to_rgb1.bias"] = torch.zeros(1, 16, 2, 2)
    with pytest.raises(InputFileError, match="shape mismatches"):
        networks_from_generative_model({"g": reshaped, "r": official_layout_checkpoint["r"]})
    with pytest.raises(InputFileError, match="not a StylePeople generator"):
        networks_from_generative_model({"g": {"x": torch.zeros(1)}, "r": official_layout_checkpoint["r"]})
    with pytest.raises(InputFileError, match="non-tensor"):
        networks_from_generative_model({"g": {"input.input": [1, 2]}, "r": official_layout_checkpoint["r"]})


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_converter_refuses_bad_files(tmp_path, official_layout_checkpoint, capsys):
    with pytest.raises(InputFileError, match="does not exist"):
        read_generative_model(tmp_path / "absent.pth")

    full = tmp_path / "full.pth"
    torch.save(official_layout_checkpoint, full)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputFileError, match="truncated,? (or )?not a PyTorch checkpoint"):
        read_generative_model(truncated)

    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(InputFileError, match="truncated,? (or )?not a PyTorch checkpoint"):
        read_generative_model(text)

    evil = tmp_path / "evil.pth"
    torch.save({"g": _RunsCode(), "r": {}}, evil)
    with pytest.raises(UserError, match="refusing to load"):
        read_generative_model(evil)
    protocol4 = tmp_path / "protocol4.pth"  # valid, but beyond what the safe unpickler reads
    torch.save({"g": _RunsCode(), "r": {}}, protocol4, pickle_protocol=4)
    with pytest.raises(InputFileError, match="safe load does not support"):
        read_generative_model(protocol4)
    assert "this must never run" not in capsys.readouterr().out


def _efficientnet_like(blocks: int, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    sd = {
        f"{prefix}_conv_stem.weight": torch.zeros(8, 3, 3, 3),
        f"{prefix}_conv_head.weight": torch.zeros(32, 8, 1, 1),
    }
    for i in range(blocks):
        sd[f"{prefix}_blocks.{i}._depthwise_conv.weight"] = torch.zeros(8, 1, 3, 3)
        sd[f"{prefix}_blocks.{i}._project_conv.weight"] = torch.zeros(8, 8, 1, 1)
        sd[f"{prefix}_blocks.{i}._bn2.running_mean"] = torch.zeros(8)
    sd["latent_heads.0.weight"] = torch.zeros(4, 4)
    return sd


def test_encoder_checkpoint_is_checked_by_pattern(tmp_path):
    """Key-pattern checks come first; conversion itself is tested in test_sp_encoder.py."""
    sd = _efficientnet_like(3)
    check = check_encoder_state_dict(encoder_state_dict({"inferer": {"encoder": sd}}))
    assert (check.backbone_prefix, check.num_blocks, check.is_b7) == ("backbone.", 3, False)

    gap = dict(sd)
    for key in [k for k in gap if "_blocks.1." in k]:
        del gap[key]
    with pytest.raises(InputFileError, match="not numbered"):
        check_encoder_state_dict(gap)
    with pytest.raises(InputFileError, match="does not look like"):
        check_encoder_state_dict({"conv.weight": torch.zeros(1)})
    with pytest.raises(InputFileError, match="no 'encoder' entry"):
        encoder_state_dict({"inferer": {"decoder": sd}})

    path = tmp_path / "encoder.pth"
    torch.save({"inferer": {"encoder": sd}}, path)  # the right key pattern, but no real network
    with pytest.raises(InputFileError, match="encoder.pth: the backbone has no"):
        import_stylepeople(None, tmp_path / "w", encoder=path)
    assert not (tmp_path / "w" / f"{ENCODER_NAME}.safetensors").exists()
    with pytest.raises(UserError, match="nothing to import"):
        import_stylepeople(None, tmp_path / "w")


# --- real sizes (slow on CPU) and CUDA ------------------------------------------------------


@pytest.mark.slow
def test_official_sizes_run_at_real_resolution_on_cpu():
    torch.manual_seed(0)
    generator = SPTextureGenerator(SPGeneratorConfig.official()).eval()
    renderer = SPRenderer(SPRendererConfig.official()).eval()
    with torch.no_grad():
        texture = generator(torch.randn(1, 512), noise_mode="buffers", truncation=0.7)
        out = renderer.render_texture(texture, _uv_render(1, 512, seed=11))
    assert texture.shape == (1, 16, 256, 256)
    assert out.rgb.shape == (1, 3, 1024, 1024) and torch.isfinite(out.rgb).all()


@pytest.fixture
def no_tf32():
    """Full float32 on CUDA (TF32 convs would blur the comparison with CPU references)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_vectors_match_on_cuda(no_tf32):
    sd, inp, out, meta = load_vector("sp_generator")
    generator = SPTextureGenerator.from_stylepeople_state_dict(sd).eval().cuda()
    noise = [inp[f"noise_{i:02d}"].cuda() for i in range(generator.config.num_noise_layers)]
    with torch.no_grad():
        from_z = generator(inp["z"].cuda(), noise).cpu()
        from_wplus = generator(inp["wplus"].cuda(), noise, input_is_latent=True).cpu()
    assert_matches("ntexture_from_z", from_z, out["ntexture_from_z"], meta)
    assert_matches("ntexture_from_wplus", from_wplus, out["ntexture_from_wplus"], meta)
    sd, inp, out, meta = load_vector("sp_renderer")
    renderer = SPRenderer.from_stylepeople_state_dict(sd).eval().cuda()
    with torch.no_grad():
        result = renderer(inp["nrender"].cuda(), inp["uv"].cuda())
    assert_matches("unet_out", result.unet_out.cpu(), out["unet_out"], meta)
    assert_matches("fake_rgb", result.rgb.cpu(), out["fake_rgb"], meta)
    assert_matches("fake_segm", result.segm.cpu(), out["fake_segm"], meta)
