"""The DINAR texture pipeline with tiny random networks: stages, paste, seeds, options, weights."""

from __future__ import annotations

import json

import pytest
import torch

from avatarcli.errors import MissingWeightsError, UserError
from avatarcli.pipelines.dinar import (
    DINAR_WEIGHTS,
    DinarInputs,
    DinarOptions,
    create_dinar_avatar,
    dinar_texture,
    load_dinar_networks,
    random_dinar_networks,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def nets():
    return random_dinar_networks("tiny", seed=0)


def make_inputs(seed: int = 0, size: int = 32, tex: int = 32) -> DinarInputs:
    """A synthetic photo of a 'person' (a rectangle) whose uv render maps it onto a texture patch."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, 1, size, size)
    mask[..., 4:28, 8:24] = 1
    image = (torch.rand(1, 3, size, size, generator=g) * 2 - 1) * mask - (1 - mask)
    sampled = torch.zeros(1, 1, tex, tex)
    sampled[..., 6:16, 6:22] = 1
    filled = torch.nn.functional.max_pool2d(sampled, 3, 1, 1)
    rgb = torch.rand(1, 3, tex, tex, generator=g) * filled
    yy, xx = torch.meshgrid(torch.linspace(-0.6, 0.4, size), torch.linspace(-0.6, 0.4, size), indexing="ij")
    on = mask[:, 0] > 0
    uv = torch.stack([torch.where(on, xx, -10.0), torch.where(on, yy, -10.0)], dim=1)
    return DinarInputs(
        image=image,
        mask=mask,
        rgb_texture=rgb,
        sampled=sampled,
        filled=filled,
        normal_angles=filled * 0.95,
        uv_render=uv,
        uv_mask=mask.clone(),
    )


def run(nets, seed=1, **opts) -> object:
    options = DinarOptions(**{"steps": 3, "refine_steps": 0, **opts})
    return dinar_texture(make_inputs(), nets, options, torch.Generator().manual_seed(seed))


def test_every_stage_runs_and_shapes_are_right(nets):
    result = run(nets, refine_steps=2, colour_adjust=True, colour_steps=2)
    for name in ("texture", "pasted", "decoded"):
        tensor = getattr(result, name)
        assert tensor.shape == (1, 21, 32, 32) and bool(torch.isfinite(tensor).all()), name
    assert result.generated.shape == (1, 16, 32, 32)
    assert result.blend_mask.shape == (1, 1, 32, 32)
    assert result.colour_scale.shape == (1, 3, 1, 1)
    assert len(result.refine_losses) == 1 and len(result.refine_losses[0]) == 2
    stages = {"encode", "generate", "vq_encode", "ddim", "decode", "paste", "colour_adjust", "refine"}
    assert stages <= set(result.timings) and all(v >= 0 for v in result.timings.values())
    assert result.timings["ddim_per_step"] == pytest.approx(result.timings["ddim"] / 3)
    assert not torch.equal(result.colour_scale, torch.ones(1, 3, 1, 1))  # α was fitted


def test_known_texels_are_pasted_back_over_all_channels(nets):
    inputs = make_inputs()
    result = run(nets)
    blend = result.blend_mask
    keep, fresh = blend[0, 0] == 1, blend[0, 0] == 0
    assert keep.sum() > 50 and fresh.sum() > 500
    ring = (inputs.filled - inputs.sampled).clamp_min(0)
    source = torch.cat([result.generated, inputs.rgb_texture, inputs.filled, ring], dim=1)
    torch.testing.assert_close(result.pasted[0][:, keep], source[0][:, keep], rtol=0, atol=1e-6)
    torch.testing.assert_close(result.pasted[0][:, fresh], result.decoded[0][:, fresh], rtol=0, atol=1e-6)
    assert bool((blend[0, 0][inputs.filled[0, 0] == 0] == 0).all())  # unknown texels are all decoded
    assert torch.equal(result.texture, result.pasted)  # no refinement asked for


def test_composition_matches_the_inpaint_stage(nets):
    """The staged pipeline does exactly what ``inpaint_texture`` does after encode + generate."""
    from avatarcli.inpaint.texture import inpaint_texture

    inputs, steps = make_inputs(), 3
    result = dinar_texture(
        inputs, nets, DinarOptions(steps=steps, refine_steps=0), torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        w = nets.encoder(inputs.image, inputs.mask, generator=g)
        generated = nets.generator(w, generator=g)
    ring = (inputs.filled - inputs.sampled).clamp_min(0)
    texture21 = torch.cat([generated, inputs.rgb_texture, inputs.filled, ring], dim=1)
    expected = inpaint_texture(nets.vq, nets.unet, texture21, inputs.filled, steps=steps, generator=g)
    torch.testing.assert_close(result.pasted, expected.texture, rtol=0, atol=1e-6)
    torch.testing.assert_close(result.decoded, expected.decoded, rtol=0, atol=1e-6)


def test_seeded_runs_repeat_and_seeds_matter(nets):
    a, b, c = (
        run(nets, seed=3, refine_steps=2),
        run(nets, seed=3, refine_steps=2),
        run(nets, seed=4, refine_steps=2),
    )
    assert torch.equal(a.texture, b.texture) and torch.equal(a.generated, b.generated)
    assert not torch.equal(a.generated, c.generated)
    assert not torch.equal(a.decoded, c.decoded)


def test_steps_option_is_honoured(nets):
    seen: list[tuple[str, int, int]] = []
    dinar_texture(
        make_inputs(), nets, DinarOptions(steps=4, refine_steps=0), torch.Generator().manual_seed(0),
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )  # fmt: skip
    assert [s for s in seen if s[0] == "ddim"] == [("ddim", i, 4) for i in range(1, 5)]
    assert not torch.equal(run(nets, steps=2).decoded, run(nets, steps=5).decoded)
    with pytest.raises(UserError, match="steps"):
        DinarOptions(steps=0)


def test_refinement_lowers_the_photometric_loss_and_keeps_decoded_features(nets):
    result = run(nets, refine_steps=12, refine_lr=0.05)
    losses = result.refine_losses[0]
    assert len(losses) == 12 and losses[-1] < losses[0]
    # DINAR's stage B: every channel except RGB comes from the VQ decoding afterwards
    torch.testing.assert_close(result.texture[:, :16], result.decoded[:, :16])
    torch.testing.assert_close(result.texture[:, 19:], result.decoded[:, 19:])
    kept = run(nets, refine_steps=1, neural_from_decoded=False)
    torch.testing.assert_close(kept.texture[:, :16], kept.pasted[:, :16])
    # unknown texels keep the hallucinated colour (α = 1, β = 0 here)
    fresh = result.blend_mask[0, 0] == 0
    torch.testing.assert_close(result.texture[0, 16:19][:, fresh], result.decoded[0, 16:19][:, fresh])


def test_bad_inputs_fail_clearly(nets):
    inputs = make_inputs()
    inputs.uv_render = None
    with pytest.raises(ValueError, match="uv_render"):
        dinar_texture(inputs, nets, DinarOptions(steps=1, refine_steps=1))
    with pytest.raises(ValueError, match="encoder takes"):
        dinar_texture(make_inputs(size=64), nets, DinarOptions(steps=1, refine_steps=0))


# ---------------------------------------------------------------------------------- weights
def test_missing_weights_stop_before_any_work(tmp_path, monkeypatch):
    import avatarcli.nets

    def must_not_load(*_args, **_kwargs):
        raise AssertionError("a network was loaded before the weights check")

    monkeypatch.setattr(avatarcli.nets, "load_network", must_not_load)
    with pytest.raises(MissingWeightsError) as err:
        load_dinar_networks("cpu", weights_dir=tmp_path)
    message = str(err.value)
    assert "dinar_encoder.safetensors" in message and "CC BY-NC" in message
    assert "avatar weights import dinar path/to/file.ckpt" in message and "\n" not in message


def install_tiny_weights(folder, nets, uv, uv_faces) -> dict[str, str]:
    """Write tiny networks + a UV layout as an installed registry (files + manifest)."""
    from safetensors.torch import save_file

    from avatarcli.io_utils import sha256_file
    from avatarcli.nets import NETWORK_FILE_FORMAT, save_network
    from avatarcli.weights_registry.registry import WeightEntry, update_manifest

    files = {
        "dinar_encoder": nets.encoder,
        "dinar_generator": nets.generator,
        "dinar_vq": nets.vq,
        "dinar_unet": nets.unet,
        "dinar_renderer": nets.renderer,
    }
    for name, net in files.items():
        save_network(net, folder / f"{name}.safetensors")
    metadata = {"format": NETWORK_FILE_FORMAT, "kind": "dinar_uv_layout", "config": json.dumps({})}
    save_file(
        {"uv": uv, "uv_faces": uv_faces}, str(folder / "dinar_uv_layout.safetensors"), metadata=metadata
    )
    entries = []
    for name in DINAR_WEIGHTS:
        path = folder / f"{name}.safetensors"
        entries.append(
            WeightEntry(name, path.name, sha256_file(path), path.stat().st_size, "test", "test", name)
        )
    update_manifest(entries, folder)
    return {e.name: e.sha256 for e in entries}


def test_load_installed_networks(tmp_path, nets):
    uv = torch.rand(40, 2)
    uv_faces = torch.randint(0, 40, (30, 3))
    shas = install_tiny_weights(tmp_path, nets, uv, uv_faces)
    loaded = load_dinar_networks("cpu", weights_dir=tmp_path)
    assert loaded.weights == shas
    assert loaded.layout.name == "dinar" and torch.equal(loaded.layout.uv_faces, uv_faces)
    a = dinar_texture(
        make_inputs(), nets, DinarOptions(steps=2, refine_steps=0), torch.Generator().manual_seed(0)
    )
    b = dinar_texture(
        make_inputs(), loaded, DinarOptions(steps=2, refine_steps=0), torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(a.pasted, b.pasted, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------ avatar create
@pytest.fixture(scope="module")
def posed_anny():
    from avatarcli.body import load_body
    from avatarcli.render import framing_camera, rasterize

    body = load_body("anny")
    shape = body.default_shape()
    vertices = body(shape=shape).vertices.detach()
    camera = framing_camera(vertices, size=64)
    fragments = rasterize(vertices, body.faces, camera, cull_backfaces=True)
    g = torch.Generator().manual_seed(0)
    mask = fragments.mask[:, None].float()
    photo = torch.rand(1, 3, 64, 64, generator=g) * mask + (1 - mask)
    return body, shape, vertices, camera, photo, mask


@pytest.fixture(scope="module")
def nets64(nets):
    """The tiny networks with a 64² encoder: a 32² photo of a whole body is all silhouette edge."""
    from avatarcli.nets.dinar_encoder import DinarEncoder, DinarEncoderConfig

    torch.manual_seed(1)
    encoder = DinarEncoder(DinarEncoderConfig(image_size=64, style_dim=64, channel_multiplier=0.125))
    return type(nets)(**{**nets.modules(), "encoder": encoder.eval()})


def test_create_dinar_avatar_on_anny(nets64, posed_anny, tmp_path):
    from avatarcli.avatar_file import load_avatar, save_avatar

    nets = nets64
    body, shape, vertices, camera, photo, mask = posed_anny
    options = DinarOptions(steps=2, refine_steps=2)
    avatar, result = create_dinar_avatar(photo, mask, vertices, camera, body, shape, nets, options, seed=7)
    assert avatar.uv_layout == "anny" and avatar.body_backend == "anny"
    tex = avatar.textures
    assert tex["neural"].shape == (16, 32, 32) and tex["neural"].dtype == torch.float16
    assert tex["rgb"].shape == (32, 32, 3) and tex["rgb"].dtype == torch.uint8
    assert tex["neural_masks"].shape == (2, 32, 32)
    assert int(tex["known"].sum()) > 0 and bool((tex["filled"] >= tex["known"]).all())
    assert avatar.provenance["method"] == "dinar" and avatar.provenance["seed"] == 7
    assert avatar.provenance["params"]["steps"] == 2
    again, _ = create_dinar_avatar(photo, mask, vertices, camera, body, shape, nets, options, seed=7)
    assert torch.equal(again.textures["neural"], tex["neural"])
    path = save_avatar(avatar, tmp_path / "a.pt")
    assert torch.equal(load_avatar(path).textures["neural"], tex["neural"])
    assert result.texture.shape == (1, 21, 32, 32)
    # the new avatar animates through the neural frame renderer (own renderer weights here)
    from avatarcli.pipelines.neural_render import NeuralFrameRenderer

    avatar.renderer = nets.renderer.state_dict()
    frames = NeuralFrameRenderer.for_avatar(avatar, body, "cpu")(vertices, camera)
    assert frames.shape == (1, 64, 64, 3) and frames.dtype.name == "uint8"


def test_dinar_crop_keeps_body_and_camera_consistent(posed_anny):
    from avatarcli.pipelines.dinar import dinar_crop
    from avatarcli.render import framing_camera, rasterize

    body, _, vertices, _, _, _ = posed_anny
    wide = framing_camera(vertices, size=(240, 180), fill=0.5).crop(-40, 0, 240, 180)  # off-centre
    mask = rasterize(vertices, body.faces, wide, cull_backfaces=True).mask[:, None].float()
    photo = torch.zeros(1, 3, 180, 240)
    photo[..., 100:103, 150:153] = 1.0  # a 3×3 dot centred on pixel (row 101, col 151)
    crop = dinar_crop(photo, mask, vertices, wide, size=64)
    left, top, side = crop.box
    assert crop.photo.shape == (1, 3, 64, 64) and crop.mask.shape == (1, 1, 64, 64)
    assert crop.camera.width == crop.camera.height == 64
    # the crop camera is the source camera shifted and scaled: K' = S·T·K
    scale = 64 / side
    source_px, _ = wide.project(vertices)
    crop_px, _ = crop.camera.project(vertices)
    expected = (source_px - torch.tensor([left, top])) * scale
    torch.testing.assert_close(crop_px, expected, atol=1e-3, rtol=1e-5)
    assert bool((crop_px > 0).all() and (crop_px < 64).all())  # the whole body is inside the crop
    # the pixels moved the same way (pixel centres at +0.5)
    weights = crop.photo[0, 0]
    rows, cols = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    centre = torch.stack([(weights * cols).sum(), (weights * rows).sum()]) / weights.sum()
    torch.testing.assert_close(
        centre, (torch.tensor([151.5, 101.5]) - torch.tensor([left, top])) * scale, atol=0.3, rtol=0
    )
    redrawn = rasterize(vertices, body.faces, crop.camera, cull_backfaces=True).mask[0]
    got = crop.mask[0, 0] > 0.5
    assert (redrawn & got).sum() / (redrawn | got).sum() > 0.75  # thin limbs at 64² + DINAR's 0.2 threshold


def test_dinar_layout_needs_the_smplx_mesh(posed_anny):
    from avatarcli.pipelines.neural_render import UVLayout

    body, shape, vertices, camera, photo, mask = posed_anny
    foreign = random_dinar_networks("tiny", seed=0)
    foreign.layout = UVLayout("dinar", torch.rand(11438, 2), torch.zeros(20908, 3, dtype=torch.long))
    with pytest.raises(UserError, match="smplx"):
        create_dinar_avatar(photo, mask, vertices, camera, body, shape, foreign, DinarOptions(steps=1))


# ---------------------------------------------------------------------------- real sizes
@pytest.mark.slow
def test_full_size_networks_fit_together_on_cpu():
    """Official sizes end to end (one DDIM and one refinement step): the configs agree."""
    nets = random_dinar_networks("official", seed=0)
    result = dinar_texture(
        make_inputs(size=512, tex=256),
        nets,
        DinarOptions(steps=1, refine_steps=1),
        torch.Generator().manual_seed(0),
    )
    assert result.texture.shape == (1, 21, 256, 256) and bool(torch.isfinite(result.texture).all())


# ------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_full_size_networks_at_real_resolution_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    device = torch.device("cuda")
    nets = random_dinar_networks("official", seed=0, device=device)
    base = make_inputs(size=512, tex=256)
    g = torch.Generator(device=device).manual_seed(0)
    inputs = DinarInputs(**{k: (v.to(device) if v is not None else None) for k, v in vars(base).items()})
    result = dinar_texture(inputs, nets, DinarOptions(steps=4, refine_steps=2), g)
    assert result.texture.shape == (1, 21, 256, 256) and bool(torch.isfinite(result.texture).all())
    g2 = torch.Generator(device=device).manual_seed(0)
    again = dinar_texture(inputs, nets, DinarOptions(steps=4, refine_steps=2), g2)
    torch.testing.assert_close(result.pasted, again.pasted)
