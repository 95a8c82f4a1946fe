"""StylePeople photo fitting (``avatar create --method stylepeople``) with tiny random networks.

The synthetic person is rendered at 64×96 with its perfect mask; fits use a 64² crop (32² uv
render) and a few steps per stage, so the whole file runs in seconds on one thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarcli.errors import MissingWeightsError, UserError
from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator
from avatarcli.nets.sp_renderer import SPRenderer, SPRendererConfig
from avatarcli.pipelines.stylepeople_fit import (
    LPIPS_NOTE,
    MEAN_LATENT_NOTE,
    OFFICIAL_STAGES,
    FaceBox,
    SPFitOptions,
    create_stylepeople_avatar,
    face_box,
    fit_stylepeople,
    initial_latent,
    prepare_targets,
    stylepeople_preview_tiles,
)
from avatarcli.texture.build import TextureView

STEPS = 6


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def body(anny_body):
    return anny_body


def _view(body, yaw: float = 0.0) -> TextureView:
    from avatarcli.pipelines.synthetic import synthetic_person

    person = synthetic_person(body, size=(64, 96), yaw_deg=yaw)
    with torch.no_grad():
        vertices = body(shape=person.shape[None], pose=person.pose[None]).vertices
    image = torch.from_numpy(person.image).permute(2, 0, 1)[None].float() / 255
    mask = torch.from_numpy(person.mask > 127)[None]
    return TextureView(vertices, person.camera, image, mask)


@pytest.fixture(scope="module")
def front(body) -> TextureView:
    return _view(body, 0.0)


@pytest.fixture(scope="module")
def side(body) -> TextureView:
    return _view(body, 60.0)


def _tiny_networks() -> tuple[SPTextureGenerator, SPRenderer]:
    torch.manual_seed(0)
    generator = SPTextureGenerator(SPGeneratorConfig.tiny())
    renderer = SPRenderer(SPRendererConfig.tiny())
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # noise gains start at zero; trained ones are not, and stage 3 needs them
        for name, p in generator.named_parameters():
            if name.endswith("noise.weight"):
                p.add_(0.3 * torch.randn(p.shape, generator=gen).abs())
    return generator.eval(), renderer.eval()


@pytest.fixture(scope="module")
def networks() -> tuple[SPTextureGenerator, SPRenderer]:
    return _tiny_networks()


def _options(steps: int = STEPS, **kwargs) -> SPFitOptions:
    base = SPFitOptions(image_size=64, mean_latent_samples=256, **kwargs)
    return base.with_iters(latent=steps, generator=steps, noise=steps, texture=steps)


def test_official_defaults():
    options = SPFitOptions()
    assert options.image_size == 1024 and options.patience is None and options.max_seconds is None
    table = [(s.name, s.iters, s.lr, s.face) for s in OFFICIAL_STAGES]
    assert table == [
        ("latent", 100, 0.01, 0.5),
        ("generator", 70, 0.01, 1.0),
        ("noise", 30, 0.1, 0.0),
        ("texture", 200, 0.15, 2.0),
    ]
    assert [s.perceptual for s in OFFICIAL_STAGES] == [1.0] * 4 and [s.mse for s in OFFICIAL_STAGES] == [
        0.5
    ] * 4
    deviations = [(s.latent_deviation, s.generator_deviation, s.texture_deviation) for s in OFFICIAL_STAGES]
    assert deviations == [(0.1, 0, 0), (0, 1.0, 0), (0, 0, 0), (0, 0, 0.1)]
    with pytest.raises(UserError, match="multiple of 64"):
        SPFitOptions(image_size=96)


def test_each_stage_lowers_its_loss_and_networks_are_untouched(body, front, networks):
    generator, renderer = networks
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    seen = []
    result = fit_stylepeople(
        [front], body, generator, renderer, options=_options(), seed=0, progress=lambda *a: seen.append(a)
    )
    for stage in ("latent", "generator", "noise", "texture"):
        losses = result.losses[stage]
        assert len(losses) == STEPS
        assert losses[-1] < losses[0], (stage, losses)
    # progress: every step of every stage, with its loss
    assert [(s, d) for s, d, _, _ in seen][:2] == [("latent", 1), ("latent", 2)]
    assert len(seen) == 4 * STEPS and seen[-1][:3] == ("texture", STEPS, STEPS)
    assert seen[-1][3] == pytest.approx(result.losses["texture"][-1])
    size = generator.config.size
    assert result.texture.shape == (16, size, size) and torch.isfinite(result.texture).all()
    assert (result.texture - result.initial_texture).abs().mean() > 1e-4
    assert result.init == "mean_latent" and MEAN_LATENT_NOTE in result.notes and LPIPS_NOTE in result.notes
    # the caller's networks are not changed (the generator is tuned on a copy)
    for k, v in generator.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in renderer.parameters())


def test_seeded_runs_repeat_exactly(body, front, networks):
    generator, renderer = networks
    options = _options(steps=3)
    a = fit_stylepeople([front], body, generator, renderer, options=options, seed=3)
    b = fit_stylepeople([front], body, generator, renderer, options=options, seed=3)
    c = fit_stylepeople([front], body, generator, renderer, options=options, seed=4)
    assert torch.equal(a.texture, b.texture) and a.losses == b.losses
    assert (a.texture - c.texture).abs().max() > 1e-4  # the seed draws the noise maps


def test_early_stop_by_patience_and_by_time(body, front, networks):
    generator, renderer = networks
    patient = fit_stylepeople(
        [front], body, generator, renderer, options=_options(patience=1, min_delta=1e9), seed=0
    )
    # the first step sets the best loss, the second cannot beat it by 1e9: stop
    assert {k: len(v) for k, v in patient.losses.items()} == dict.fromkeys(patient.losses, 2)
    assert all(patient.stopped_early.values())

    hurried = fit_stylepeople([front], body, generator, renderer, options=_options(max_seconds=1e-6), seed=0)
    assert len(hurried.losses["latent"]) == 1
    assert all(not hurried.losses[s] for s in ("generator", "noise", "texture"))
    assert any("--max-seconds" in note for note in hurried.notes)
    # the result is the texture of that moment: G(latent after one step)
    assert torch.isfinite(hurried.texture).all()
    assert not torch.equal(hurried.texture, hurried.initial_texture)


def test_two_photos_average_losses_and_encoder_latents(body, front, side, networks):
    generator, renderer = networks
    options = _options(steps=1)
    first = {}
    for name, views in (("front", [front]), ("side", [side]), ("both", [front, side])):
        fit = fit_stylepeople(views, body, generator, renderer, options=options, seed=0)
        first[name] = fit.losses["latent"][0]
    # same start (mean latent, seeded noise), batch-independent renderer: the loss is the mean
    assert first["both"] == pytest.approx((first["front"] + first["side"]) / 2, rel=1e-5)

    n_latent, style_dim = generator.config.n_latent, generator.config.style_dim

    def encoder(images: torch.Tensor) -> torch.Tensor:  # a toy encoder: brightness → latent
        assert images.shape[-2:] == (512, 512)
        return images.mean(dim=(1, 2, 3)).view(-1, 1, 1).expand(-1, n_latent, style_dim)

    targets = prepare_targets([front, side], body, 64)
    both, how = initial_latent(generator, targets, encoder, 256)
    single = [
        initial_latent(generator, prepare_targets([v], body, 64), encoder, 256)[0] for v in (front, side)
    ]
    assert how == "encoder" and both.shape == (1, n_latent, style_dim)
    torch.testing.assert_close(both, (single[0] + single[1]) / 2)
    fit = fit_stylepeople([front], body, generator, renderer, options=options, encoder=encoder, seed=0)
    assert fit.init == "encoder" and MEAN_LATENT_NOTE not in fit.notes


def test_face_box_rule():
    face = np.zeros((70, 3))
    face[:68, 0] = np.linspace(40, 60, 68)
    face[:68, 2] = 1.0
    face[8, 1], face[27, 1] = 100.0, 50.0  # chin, nose bridge: h = 50
    box = face_box(face, "openpose70")
    # top = 50 − 0.47·50 = 26.5, bottom = 100 + 0.2·50 = 110
    assert box == pytest.approx(FaceBox(50.0, 68.25, 83.5))
    face[8, 2] = 0.0  # chin not seen
    assert face_box(face, "openpose70") is None
    mesh = np.zeros((478, 3))
    mesh[:, 0], mesh[:, 2] = 10.0, 1.0
    mesh[152, 1], mesh[168, 1] = 30.0, 20.0
    assert face_box(mesh, "mediapipe478") == pytest.approx(FaceBox(10.0, 20 - 4.7 + 16.7 / 2, 16.7))
    assert face_box(None, "") is None and face_box(mesh, "unknown") is None


def test_face_term_uses_face_crops(body, front, networks):
    generator, renderer = networks
    options = _options(steps=1)
    plain = fit_stylepeople([front], body, generator, renderer, options=options, seed=0)
    box = FaceBox(32.0, 12.0, 10.0)  # around the synthetic person's head, in photo pixels
    with_face = fit_stylepeople([front], body, generator, renderer, options=options, faces=[box], seed=0)
    assert with_face.losses["latent"][0] > plain.losses["latent"][0]
    noise_only = SPFitOptions(image_size=64, mean_latent_samples=256).with_iters(
        latent=0, generator=0, texture=0
    )
    noise_only = noise_only.with_iters(noise=1)
    a, b = (
        fit_stylepeople([front], body, generator, renderer, options=noise_only, faces=faces, seed=0)
        for faces in (None, [box])
    )
    assert a.losses["noise"] == b.losses["noise"]  # stage 3 has no face term
    assert any("no usable face landmarks" in n for n in plain.notes)
    off = SPFitOptions(image_size=64, mean_latent_samples=256, use_face=False).with_iters(
        latent=1, generator=1, noise=1, texture=1
    )
    ignored = fit_stylepeople([front], body, generator, renderer, options=off, faces=[box], seed=0)
    assert ignored.losses["latent"][0] == pytest.approx(plain.losses["latent"][0])


@pytest.fixture
def sp_registry(tmp_path, monkeypatch):
    """The tiny networks imported into a temporary weights folder (``$AVATAR_WEIGHTS``)."""
    from avatarcli.nets.sp_checkpoint import import_stylepeople

    generator, renderer = _tiny_networks()
    ckpt = tmp_path / "generative_model.pth"
    torch.save({"g": generator.to_safetensors_state_dict(), "r": renderer.to_safetensors_state_dict()}, ckpt)
    folder = tmp_path / "weights"
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    import_stylepeople(ckpt, folder)
    return folder


def test_create_avatar_from_fitted_photo(body, front, sp_registry, tmp_path):
    from avatarcli.avatar_file import load_avatar, save_avatar
    from avatarcli.pipelines.posing import make_frame_renderer
    from avatarcli.render.preview import save_contact_sheet
    from avatarcli.weights_registry import read_manifest

    shape = torch.zeros(1, body.num_shape)
    avatar, scores, fit = create_stylepeople_avatar(
        [front], body, shape, [{"image_name": "front.png"}], {"inputs": ["front.png"]},
        seed=0, options=_options(steps=2),
    )  # fmt: skip
    size = SPGeneratorConfig.tiny().size
    assert (
        avatar.textures["neural"].shape == (16, size, size)
        and avatar.textures["neural"].dtype == torch.float16
    )
    manifest = {e.name: e.sha256 for e in read_manifest(sp_registry)}
    assert avatar.weights == {k: manifest[k] for k in ("stylepeople_generator", "stylepeople_renderer")}
    assert avatar.provenance["method"] == "stylepeople" and avatar.provenance["inputs"] == ["front.png"]
    assert avatar.provenance["stylepeople"]["steps"] == dict.fromkeys(
        ("latent", "generator", "noise", "texture"), 2
    )
    assert avatar.views == [{"image_name": "front.png"}]
    assert len(scores) == 1 and all(np.isfinite(scores[0])) and -1 <= scores[0][1] <= 1
    assert MEAN_LATENT_NOTE in fit.notes
    # the file round-trips and is drawn by the StylePeople renderer from the registry
    path = tmp_path / "sp.pt"
    save_avatar(avatar, path)
    loaded = load_avatar(path)
    draw = make_frame_renderer(loaded, body, torch.device("cpu"), (1.0, 1.0, 1.0))
    frames = draw(front.vertices, front.camera)
    assert frames.shape == (1, 96, 64, 3) and frames.dtype == np.uint8
    # preview tiles for the contact sheet
    tiles = stylepeople_preview_tiles(loaded, body, front, _options(steps=2))
    assert [t for t, _ in tiles][:3] == [
        "StylePeople crop",
        "neural render, input view",
        "neural texture (ch 0-2)",
    ]
    assert len(tiles) == 6 and tiles[1][1].shape == (3, 64, 64) and tiles[3][1].shape == (3, 256, 256)
    save_contact_sheet(tmp_path / "preview.png", tiles, tile_size=64, columns=3)
    assert (tmp_path / "preview.png").stat().st_size > 0


def test_missing_weights_fail_before_any_work(body, front, tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_WEIGHTS", str(tmp_path / "empty"))
    calls = []
    with pytest.raises(MissingWeightsError, match="stylepeople"):
        create_stylepeople_avatar(
            [front], body, torch.zeros(1, body.num_shape), [], {}, options=_options(steps=1),
            progress=lambda *a: calls.append(a),
        )  # fmt: skip
    assert calls == []


@pytest.mark.slow
def test_official_size_networks_fit_one_step_per_stage(body, front):
    """The released sizes (256² texture, 14×512 W+, ngf-64 renderer) go through every stage."""
    torch.manual_seed(0)
    generator, renderer = SPTextureGenerator().eval(), SPRenderer().eval()
    options = SPFitOptions(image_size=128, mean_latent_samples=1024).with_iters(
        latent=1, generator=1, noise=1, texture=1
    )
    result = fit_stylepeople([front], body, generator, renderer, options=options, seed=0)
    assert result.texture.shape == (16, 256, 256) and result.latent.shape == (1, 14, 512)
    assert all(len(v) == 1 and np.isfinite(v[0]) for v in result.losses.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_matches_cpu(body, front):
    generator, renderer = _tiny_networks()
    options = _options(steps=2)
    cpu = fit_stylepeople([front], body, generator, renderer, options=options, seed=0)
    cuda = torch.device("cuda")
    view = TextureView(
        front.vertices.to(cuda), front.camera.to(cuda), front.image.to(cuda), front.mask.to(cuda)
    )
    try:
        gpu = fit_stylepeople(
            [view], body.to(cuda), generator.to(cuda), renderer.to(cuda), options=options, seed=0
        )
    finally:
        body.to("cpu")
    assert gpu.texture.device.type == "cuda"
    torch.testing.assert_close(gpu.texture.cpu(), cpu.texture, atol=5e-3, rtol=1e-2)
    for stage, losses in cpu.losses.items():
        assert gpu.losses[stage] == pytest.approx(losses, rel=1e-2)


def test_crop_aligns_photo_mask_uv_render_and_face_boxes(body, front):
    """The crop's camera matches the cropped pixels: the body's uv render covers the person mask."""
    size = 128
    point = front.vertices[0].mean(0, keepdim=True)  # any 3D point will do: the body's centroid
    (photo_xy,), _ = front.camera.project(point[None])
    box = FaceBox(float(photo_xy[0, 0]), float(photo_xy[0, 1]), 8.0)
    targets = prepare_targets([front], body, size, faces=[box])
    assert targets.target.shape == (1, 3, size, size) and targets.uv.shape == (1, 2, size // 2, size // 2)
    uv_mask = (targets.uv[:, :1] > -10).float()
    on_body = torch.nn.functional.interpolate(uv_mask, scale_factor=2.0, mode="bilinear") > 0.5
    person = targets.mask > 0.5

    def iou(dy: int, dx: int) -> float:
        moved = torch.roll(on_body, (dy, dx), (2, 3))
        return float((moved & person).sum() / (moved | person).sum())

    # thin limbs at this size cap the overlap (0.85 here, 0.94 at 256²); any shift makes it worse
    assert iou(0, 0) > 0.8
    assert all(iou(0, 0) > iou(dy, dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)))
    # outside the person the target is black (-1)
    assert torch.all(targets.target.masked_select(targets.mask.expand(-1, 3, -1, -1) == 0) == -1)
    # the face window follows the crop: same point through the crop's camera, zoomed side
    (crop_xy,), _ = targets.cameras[0].project(point[None])
    mapped = targets.faces[0]
    assert (mapped.cx, mapped.cy) == pytest.approx((float(crop_xy[0, 0]), float(crop_xy[0, 1])), abs=1e-3)
    zoom = float(targets.cameras[0].K[0, 0, 0] / front.camera.K[0, 0, 0])
    assert mapped.side == pytest.approx(8.0 * zoom)
    assert targets.face_grid.shape == (1, 256, 256, 2) and targets.face_valid.tolist() == [1.0]
