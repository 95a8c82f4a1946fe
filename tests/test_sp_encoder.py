"""StylePeople's EfficientNet W+ encoder: backbone, level encoder, converter and fit wiring.

Sizes of the real b7 networks are checked on the meta device (no memory, no compute); numbers
use the b0 tiny config on 64² crops. The parity test against ``efficientnet_pytorch`` 0.7.0 runs
only where that package is importable (it is not a dependency).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from avatarcli.errors import InputFileError, UserError
from avatarcli.nets import load_network, save_network, write_network_file
from avatarcli.nets.efficientnet import (
    BATCH_NORM_EPS,
    BATCH_NORM_MOMENTUM,
    EfficientNet,
    EfficientNetConfig,
    round_filters,
    round_repeats,
    same_padding,
)
from avatarcli.nets.sp_checkpoint import (
    ENCODER_KIND,
    ENCODER_NAME,
    RAW_ENCODER_KIND,
    import_stylepeople,
    load_encoder,
    read_encoder_config,
)
from avatarcli.nets.sp_encoder import SPEncoder, SPEncoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and biases, so that wrong wiring shows in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    return net.eval()


@pytest.fixture(scope="module")
def tiny_encoder() -> SPEncoder:
    torch.manual_seed(0)
    return _randomise(SPEncoder(SPEncoderConfig.tiny()), 1)


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1


# --- the backbone ---------------------------------------------------------------------------


def test_compound_scaling_rules():
    assert [round_filters(c, 2.0) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
        64, 32, 48, 80, 160, 224, 384, 640, 2560,
    ]  # fmt: skip
    # b2 (width 1.1): 17.6 → 16, 44 → 48, 123.2 → 120; nothing rounds below 90 %
    assert [round_filters(c, 1.1) for c in (16, 40, 112, 1280)] == [16, 48, 120, 1408]
    assert [round_repeats(r, 3.1) for r in (1, 2, 3, 4)] == [4, 7, 10, 13]
    blocks = {v: sum(s.repeats for s in EfficientNetConfig(v).stages()) for v in ("b0", "b1", "b7")}
    assert blocks == {"b0": 16, "b1": 23, "b7": 55}
    assert EfficientNetConfig("b0").endpoint_channels() == [16, 24, 40, 112, 1280]
    with pytest.raises(ValueError, match="unknown EfficientNet variant"):
        EfficientNetConfig("b9")


def test_same_padding_is_the_reference_packages():
    assert same_padding(512, 3, 2) == (1, 1)  # TF would pad (0, 1); the package pads 1 both sides
    assert same_padding(150, 5, 2) == (2, 2)  # total 3 → 2 + 2
    assert same_padding(64, 5, 1) == (2, 2) and same_padding(64, 1, 1) == (0, 0)
    assert same_padding(75, 3, 2) == (1, 1) and same_padding(64, 3, 2) == (1, 1)
    # padding is fixed for the configured side: b7's native 600, whatever the input
    net = EfficientNet(EfficientNetConfig("b0", image_size=100, num_classes=10))
    assert net._conv_stem.static_padding == (1, 1, 1, 1)  # 100 → 50: total 1
    assert net._blocks[1]._depthwise_conv.static_padding == (1, 1, 1, 1)


def test_b7_endpoints_and_parameter_counts():
    """Fact sheet §5.4: features 32, 48, 80, 224, 2560; 83.6 M parameters for the whole encoder."""
    with torch.device("meta"):
        encoder = SPEncoder(SPEncoderConfig.official())
        endpoints = encoder.backbone.extract_endpoints(torch.zeros(1, 3, 512, 512))
        wplus = encoder(torch.zeros(2, 3, 512, 512))
    shapes = {k: tuple(v.shape[1:]) for k, v in endpoints.items()}
    assert shapes == {
        "reduction_1": (32, 256, 256),
        "reduction_2": (48, 128, 128),
        "reduction_3": (80, 64, 64),
        "reduction_4": (224, 32, 32),
        "reduction_5": (2560, 16, 16),
    }
    assert tuple(wplus.shape) == (2, 14, 512)
    assert len(encoder.backbone._blocks) == 55
    backbone = sum(p.numel() for p in encoder.backbone.parameters())
    total = sum(p.numel() for p in encoder.parameters())
    print(f"b7 backbone {backbone / 1e6:.2f} M, encoder {total / 1e6:.2f} M parameters")
    assert round(backbone / 1e6, 1) == 66.3  # the paper's b7 size
    assert round(total / 1e6, 1) == 83.6
    assert encoder.config.latents_per_level() == [2, 2, 2, 2, 6]


def test_block_structure_and_batch_norm_settings():
    net = EfficientNet(EfficientNetConfig("b0", num_classes=10))
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == BATCH_NORM_MOMENTUM == 0.01 for m in norms)
    assert all(m.eps == BATCH_NORM_EPS == 1e-3 for m in norms)
    first, second = net._blocks[0], net._blocks[1]
    assert first._expand_conv is None and "_blocks.0._expand_conv.weight" not in net.state_dict()
    assert tuple(second._expand_conv.weight.shape) == (96, 16, 1, 1)  # expansion 6
    assert second._depthwise_conv.groups == 96 and second._depthwise_conv.stride == (2, 2)
    assert tuple(second._se_reduce.weight.shape) == (4, 96, 1, 1)  # a quarter of the 16 inputs
    assert first.has_residual is False and net._blocks[2].has_residual is True


def test_b0_forward_and_endpoints_on_a_small_image():
    torch.manual_seed(0)
    net = _randomise(EfficientNet(EfficientNetConfig("b0", image_size=64, num_classes=10)), 3)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = net(x)
        endpoints = net.extract_endpoints(x)
        features = net.extract_features(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert [tuple(v.shape[1:]) for v in endpoints.values()] == [
        (16, 32, 32), (24, 16, 16), (40, 8, 8), (112, 4, 4), (1280, 2, 2),
    ]  # fmt: skip
    torch.testing.assert_close(endpoints["reduction_5"], features)


def test_parity_with_efficientnet_pytorch_070():
    reference = pytest.importorskip("efficientnet_pytorch")
    for variant in ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"):
        with torch.device("meta"):
            theirs = reference.EfficientNet.from_name(f"efficientnet-{variant}").state_dict()
            ours = EfficientNet(EfficientNetConfig(variant)).state_dict()
        assert list(ours) == list(theirs), variant
        assert all(ours[k].shape == theirs[k].shape for k in ours), variant
    torch.manual_seed(0)
    theirs = _randomise(reference.EfficientNet.from_name("efficientnet-b0", image_size=96), 4)
    ours = EfficientNet(EfficientNetConfig("b0", image_size=96)).eval()
    ours.load_state_dict(theirs.state_dict())
    for side in (96, 80):  # the configured side, and another one (same static padding)
        x = torch.randn(2, 3, side, side)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
            got, want = ours.extract_endpoints(x), theirs.extract_endpoints(x)
        assert list(got) == list(want)
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4)


# --- the level encoder ----------------------------------------------------------------------


def test_tiny_encoder_shapes_and_config_checks(tiny_encoder, crops):
    with torch.no_grad():
        wplus = tiny_encoder(crops)
    assert wplus.shape == (2, 10, 32) and torch.isfinite(wplus).all()
    assert tiny_encoder.input_size == 64 and tiny_encoder.config.latents_per_level() == [2, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="no latent for the coarsest"):
        SPEncoderConfig(n_latent=8)
    with pytest.raises(ValueError, match="multiple of 32"):
        SPEncoderConfig(image_size=500)
    with pytest.raises(ValueError, match="not a multiple of 32"):
        tiny_encoder(torch.zeros(1, 3, 80, 80))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny_encoder(torch.zeros(1, 1, 64, 64))


def test_pyramid_is_top_down_and_latents_are_coarse_to_fine(tiny_encoder, crops):
    """Recomputed by hand from the endpoints: corner-aligned ×2 upsampling, coarse level first."""
    enc = tiny_encoder
    with torch.no_grad():
        got = enc(crops)
        features = list(enc.backbone.extract_endpoints(crops).values())

        def by_hand(align_corners: bool) -> torch.Tensor:
            pyramid, latents = None, []
            for level in (4, 3, 2, 1, 0):
                conv = enc.feature2feature_layers[level][0]
                lateral = F.relu(F.conv2d(features[level], conv.weight, conv.bias, padding=1))
                if pyramid is not None:
                    lateral = lateral + F.interpolate(
                        pyramid, scale_factor=2.0, mode="bilinear", align_corners=align_corners
                    )
                pyramid = lateral
                linear = enc.feature2latent_layers[level][2]
                latents.append(F.linear(pyramid.mean(dim=(2, 3)), linear.weight, linear.bias))
            return torch.cat(latents, dim=1).view(2, 10, 32)

        torch.testing.assert_close(got, by_hand(align_corners=True))
        assert not torch.allclose(got, by_hand(align_corners=False), atol=1e-6)

        # the finest lateral conv feeds only the finest two latents; the coarsest feeds all
        changed = SPEncoder(enc.config).eval()
        changed.load_state_dict(enc.state_dict())
        changed.feature2feature_layers[0][0].bias.add_(1.0)
        moved = (changed(crops) - got).abs().amax(dim=(0, 2))
        assert torch.all(moved[:-2] == 0) and torch.all(moved[-2:] > 0)
        changed.load_state_dict(enc.state_dict())
        changed.feature2feature_layers[4][0].bias.add_(1.0)
        assert torch.all((changed(crops) - got).abs().amax(dim=(0, 2)) > 0)


def test_renormalisation_when_built_as_pretrained(tiny_encoder, crops):
    renorm = SPEncoder(SPEncoderConfig(**{**tiny_encoder.config_dict(), "imagenet_renormalise": True}))
    renorm.load_state_dict(tiny_encoder.state_dict())
    renorm.eval()
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(renorm(crops), tiny_encoder(((crops + 1) / 2 - mean) / std))


def test_network_file_round_trip(tmp_path, tiny_encoder, crops):
    path = save_network(tiny_encoder, tmp_path / "enc.safetensors")
    loaded = load_network(SPEncoder, path)
    assert loaded.config == tiny_encoder.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(crops), tiny_encoder(crops))


# --- converting the official checkpoint -----------------------------------------------------


def _official_checkpoint(encoder: SPEncoder, rename: bool = False) -> dict:
    """``{'inferer': {'encoder': state_dict}}`` as upstream saves it (optionally with other names for
    the non-backbone layers, listed heads-first to make the order differ from ours)."""
    sd = {k: v.clone() for k, v in encoder.state_dict().items()}
    if rename:
        backbone = {k: v for k, v in sd.items() if k.startswith("backbone.")}
        heads = {}
        for level in range(5):
            heads[f"to_latent.{level}.fc.weight"] = sd[f"feature2latent_layers.{level}.2.weight"]
            heads[f"to_latent.{level}.fc.bias"] = sd[f"feature2latent_layers.{level}.2.bias"]
        laterals = {}
        for level in (3, 0, 4, 1, 2):  # convs are matched by their input channels, in any order
            laterals[f"lateral{level}.weight"] = sd[f"feature2feature_layers.{level}.0.weight"]
            laterals[f"lateral{level}.bias"] = sd[f"feature2feature_layers.{level}.0.bias"]
        # linear layers are assigned in the order the convs appear: list them the same way
        heads = {k: heads[k] for level in (3, 0, 4, 1, 2) for k in heads if k.split(".")[1] == str(level)}
        sd = {"mean": sd["imagenet_mean"], "std": sd["imagenet_std"], **heads, **backbone, **laterals}
    return {"inferer": {"encoder": sd}}


@pytest.mark.parametrize("rename", [False, True], ids=["official-names", "matched-by-structure"])
def test_import_converts_the_encoder(tmp_path, tiny_encoder, crops, rename):
    path = tmp_path / "encoder.pth"
    torch.save(_official_checkpoint(tiny_encoder, rename), path)
    report = import_stylepeople(None, tmp_path / "w", encoder=path)
    assert set(report.files) == {ENCODER_NAME} and any("no --encoder-config" in n for n in report.notes)
    assert any("EfficientNet-b0" in n for n in report.notes)  # not the released b7
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert [(e["name"], e["kind"]) for e in manifest["weights"]] == [(ENCODER_NAME, ENCODER_KIND)]
    converted = load_encoder(report.files[ENCODER_NAME])
    assert converted.config == SPEncoderConfig(**{**tiny_encoder.config_dict(), "image_size": 512})
    with torch.no_grad():
        torch.testing.assert_close(converted(crops), tiny_encoder(crops), rtol=0, atol=0)


def test_import_names_what_does_not_fit(tmp_path, tiny_encoder):
    sd = _official_checkpoint(tiny_encoder, rename=True)["inferer"]["encoder"]
    del sd["to_latent.2.fc.bias"]
    sd["extra.weight"] = torch.zeros(7, 7)
    path = tmp_path / "encoder.pth"
    torch.save({"inferer": {"encoder": sd}}, path)
    with pytest.raises(InputFileError, match="unmatched tensors: .*to_latent.2.fc.weight.*extra.weight"):
        import_stylepeople(None, tmp_path / "w", encoder=path)
    sd = dict(_official_checkpoint(tiny_encoder)["inferer"]["encoder"])
    sd["feature2latent_layers.4.2.weight"] = torch.zeros(64, 31)
    torch.save({"inferer": {"encoder": sd}}, path)
    with pytest.raises(InputFileError, match="shape mismatches"):
        import_stylepeople(None, tmp_path / "w", encoder=path)
    assert not (tmp_path / "w").exists()  # nothing written


def _write_config(path, args: dict | None) -> str:
    import yaml

    path.write_text(
        yaml.safe_dump({"model": {"encoder": {"class": "EfficientNetLevelEncoder", "args": args}}})
    )
    return str(path)


def test_encoder_config_yaml(tmp_path, tiny_encoder, crops):
    ckpt = tmp_path / "encoder.pth"
    torch.save(_official_checkpoint(tiny_encoder), ckpt)
    args = {"output_n_latents": 10, "output_style_dim": 32, "feature2latent_input_size": 32,
            "model_name": "efficientnet-b0", "pretrained": True}  # fmt: skip
    config = _write_config(tmp_path / "encoder_config.yaml", args)
    assert read_encoder_config(config) == args
    report = import_stylepeople(None, tmp_path / "w", encoder=ckpt, encoder_config=config)
    assert not any("no --encoder-config" in n for n in report.notes)
    converted = load_encoder(report.files[ENCODER_NAME])
    assert converted.config.imagenet_renormalise
    with torch.no_grad():
        assert not torch.allclose(converted(crops), tiny_encoder(crops))

    for bad, message in (
        ({**args, "use_fpn": True}, "unknown encoder arguments use_fpn"),
        ({**args, "output_style_dim": 64}, "output_style_dim=64 but the weights have 32"),
        ({**args, "model_name": "efficientnet-b7"}, "model_name='efficientnet-b7' but the weights have 'b0'"),
        ({**args, "model_name": "resnet50"}, "not efficientnet-b0"),
    ):
        with pytest.raises(UserError, match=message):
            import_stylepeople(
                None, tmp_path / "w2", encoder=ckpt, encoder_config=_write_config(tmp_path / "c.yaml", bad)
            )
    assert read_encoder_config(_write_config(tmp_path / "empty.yaml", None)) == {}
    (tmp_path / "other.yaml").write_text("model:\n  generator: {}\n")
    with pytest.raises(InputFileError, match="no model.encoder section"):
        read_encoder_config(tmp_path / "other.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(InputFileError, match="cannot read encoder config"):
        read_encoder_config(tmp_path / "broken.yaml")
    with pytest.raises(InputFileError, match="does not exist"):
        read_encoder_config(tmp_path / "absent.yaml")
    with pytest.raises(UserError, match="give --encoder too"):
        import_stylepeople(tmp_path / "generative_model.pth", tmp_path / "w", encoder_config=config)


def test_raw_files_from_older_versions_are_converted_on_load(tmp_path, tiny_encoder, crops):
    official = _official_checkpoint(tiny_encoder, rename=True)["inferer"]["encoder"]
    raw = write_network_file(tmp_path / "raw.safetensors", official, RAW_ENCODER_KIND, {"num_blocks": 16})
    converted = load_encoder(raw)
    with torch.no_grad():
        torch.testing.assert_close(converted(crops), tiny_encoder(crops), rtol=0, atol=0)
    broken = {k: v for k, v in official.items() if not k.startswith("lateral2")}
    write_network_file(tmp_path / "broken.safetensors", broken, RAW_ENCODER_KIND, {})
    with pytest.raises(InputFileError, match="has no 3×3 conv.*re-import"):
        load_encoder(tmp_path / "broken.safetensors")


def test_cli_import_and_list(tmp_path, monkeypatch, tiny_encoder, capsys):
    from avatarcli.cli.main import main
    from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator
    from avatarcli.nets.sp_renderer import SPRenderer, SPRendererConfig

    monkeypatch.setenv("AVATAR_WEIGHTS", str(tmp_path / "weights"))
    torch.manual_seed(0)
    model = tmp_path / "generative_model.pth"
    g, r = SPTextureGenerator(SPGeneratorConfig.tiny()), SPRenderer(SPRendererConfig.tiny())
    torch.save({"g": g.state_dict(), "r": r.state_dict()}, model)
    encoder = tmp_path / "encoder.pth"
    torch.save(_official_checkpoint(tiny_encoder), encoder)
    config = _write_config(tmp_path / "encoder_config.yaml", {"output_style_dim": 32})

    assert main(["weights", "list", "--json"]) == 0
    listed = {w["name"]: w for w in json.loads(capsys.readouterr().out)["weights"]}
    assert (
        listed[ENCODER_NAME]["status"] == "missing" and "--encoder-config" in listed[ENCODER_NAME]["detail"]
    )

    bad = _write_config(tmp_path / "bad.yaml", {"output_style_dim": 64})
    args = ["weights", "import", "stylepeople", str(model), "--encoder", str(encoder)]
    assert main([*args, "--encoder-config", bad]) == 2
    assert "output_style_dim=64" in capsys.readouterr().err
    assert main([*args, "--encoder-config", config, "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)["imported"]
    assert set(imported) == {"stylepeople_generator", "stylepeople_renderer", ENCODER_NAME}
    assert main(["weights", "list", "--json"]) == 0
    listed = {w["name"]: w for w in json.loads(capsys.readouterr().out)["weights"]}
    assert listed[ENCODER_NAME]["status"] == "present"
    assert listed[ENCODER_NAME]["entry"]["kind"] == "sp_encoder"
    assert listed[ENCODER_NAME]["entry"]["config"]["backbone"] == "b0"


# --- the photo fit starts from the encoder --------------------------------------------------


def test_create_stylepeople_avatar_starts_from_the_encoder(tmp_path, monkeypatch, anny_body):
    from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator
    from avatarcli.nets.sp_renderer import SPRenderer, SPRendererConfig
    from avatarcli.pipelines.stylepeople_fit import (
        MEAN_LATENT_NOTE,
        SPFitOptions,
        create_stylepeople_avatar,
        prepare_targets,
    )
    from avatarcli.pipelines.synthetic import synthetic_person
    from avatarcli.texture.build import TextureView
    from avatarcli.weights_registry.registry import WeightEntry, read_manifest, update_manifest

    body = anny_body
    views = []
    for yaw in (0.0, 60.0):
        person = synthetic_person(body, size=(64, 96), yaw_deg=yaw)
        with torch.no_grad():
            vertices = body(shape=person.shape[None], pose=person.pose[None]).vertices
        image = torch.from_numpy(person.image).permute(2, 0, 1)[None].float() / 255
        views.append(TextureView(vertices, person.camera, image, torch.from_numpy(person.mask > 127)[None]))

    folder = tmp_path / "weights"
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    torch.manual_seed(0)
    g, r = SPTextureGenerator(SPGeneratorConfig.tiny()), SPRenderer(SPRendererConfig.tiny())
    model = tmp_path / "generative_model.pth"
    torch.save({"g": g.state_dict(), "r": r.state_dict()}, model)
    import_stylepeople(model, folder)
    options = SPFitOptions(image_size=64, mean_latent_samples=64).with_iters(
        latent=0, generator=0, noise=0, texture=0
    )
    shape = torch.zeros(1, body.num_shape)
    _, _, without = create_stylepeople_avatar(views, body, shape, [], {}, options=options)
    assert without.init == "mean_latent" and MEAN_LATENT_NOTE in without.notes

    torch.manual_seed(5)
    encoder = _randomise(
        SPEncoder(SPEncoderConfig.tiny(style_dim=g.config.style_dim, n_latent=g.config.n_latent)), 6
    )
    path = save_network(encoder, folder / f"{ENCODER_NAME}.safetensors")
    update_manifest([WeightEntry.for_file(ENCODER_NAME, path, "test", "random", ENCODER_KIND)], folder)
    avatar, _, fit = create_stylepeople_avatar(views, body, shape, [], {}, options=options)
    assert fit.init == "encoder" and MEAN_LATENT_NOTE not in fit.notes
    targets = prepare_targets(views, body, 64).target
    with torch.no_grad():
        expected = encoder(targets).mean(dim=0, keepdim=True)  # 64² crops are already its input size
    torch.testing.assert_close(fit.latent, expected)
    assert not torch.allclose(fit.latent, without.latent)
    sha = {e.name: e.sha256 for e in read_manifest(folder)}[ENCODER_NAME]
    assert avatar.provenance["stylepeople"]["encoder_sha256"] == sha
    assert avatar.provenance["stylepeople"]["init"] == "encoder"
