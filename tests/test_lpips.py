"""LPIPS-VGG: our network, the import of user-supplied weights, and its use as a loss.

Tiny random networks everywhere except the importer, which needs VGG16's real shapes (14.7 M
random parameters, built in well under a second). The parity check against the ``lpips`` package
runs only where that package (and torchvision) can be imported.
"""

from __future__ import annotations

import json

import pytest
import torch

from avatarcli.cli.main import main
from avatarcli.nets import load_network, save_network
from avatarcli.nets.lpips import LPIPS, LPIPSConfig

#: Conv layers of VGG16's ``features`` stack (the others are ReLUs and max-pools).
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_lpips(seed: int = 0) -> LPIPS:
    """A tiny LPIPS with random convs and positive heads (trained heads are non-negative)."""
    torch.manual_seed(seed)
    net = LPIPS(LPIPSConfig.tiny())
    with torch.no_grad():
        for head in net.heads:
            head.model[1].weight.uniform_(0.1, 1.0)
    return net


def images(seed: int = 1, size: tuple[int, int] = (32, 40)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 10, generator=g), size=size, mode="bilinear")
    return smooth * 2 - 1


# ------------------------------------------------------------------------------------ the network
def test_identical_images_score_zero_and_distance_grows_with_distortion():
    net, x = tiny_lpips(), images()
    assert net(x, x).shape == (2, 1, 1, 1)
    assert net(x, x).abs().max() < 1e-6
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    scores = [float(net(x, (x + s * noise).clamp(-1, 1)).mean()) for s in (0.05, 0.2, 0.6)]
    assert 0 < scores[0] < scores[1] < scores[2], scores


def test_frozen_but_differentiable_in_its_inputs():
    net, x = tiny_lpips(), images()
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    y = (x + 0.3).clamp(-1, 1).requires_grad_(True)
    net(x, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_dead_features_keep_gradients_finite():
    net, x = tiny_lpips(), torch.full((1, 3, 16, 16), -1.0)  # black: many ReLUs are zero
    y = x.clone().requires_grad_(True)
    net(x, y).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_mask_restricts_the_comparison_to_its_region():
    net, x = tiny_lpips(), images(size=(32, 64))
    mask = torch.zeros(2, 1, 32, 64)
    mask[..., :32] = 1  # left half
    changed_right = x.clone()
    changed_right[..., 48:] = -x[..., 48:]  # far from the mask: outside every receptive field
    assert float(net(x, changed_right).min()) > 1e-3
    assert float(net(x, changed_right, mask).abs().max()) < 1e-6
    changed_left = x.clone()
    changed_left[..., :16] = -x[..., :16]
    assert float(net(x, changed_left, mask).min()) > float(net(x, changed_left).min())  # not diluted
    assert float(net(x, changed_left, torch.zeros_like(mask)).abs().max()) == 0  # empty mask: 0


def test_too_small_or_mismatched_inputs_are_refused():
    net = tiny_lpips()
    with pytest.raises(ValueError, match="at least 4"):
        net(torch.zeros(1, 3, 3, 8), torch.zeros(1, 3, 3, 8))
    with pytest.raises(ValueError, match="compares two"):
        net(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="same length"):
        LPIPSConfig(block_widths=(4, 8), convs_per_block=(1,))


def test_save_load_round_trip(tmp_path):
    net, x = tiny_lpips(), images()
    path = save_network(net, tmp_path / "lpips.safetensors")
    loaded = load_network(LPIPS, path)
    assert loaded.config == net.config and not any(p.requires_grad for p in loaded.parameters())
    y = (x * 0.7).clamp(-1, 1)
    assert torch.equal(loaded(x, y), net(x, y))


def test_official_layout_has_vgg16_and_lpips_key_names():
    net = LPIPS(LPIPSConfig.official())
    state = net.state_dict()
    convs = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.")})
    assert tuple(convs) == VGG16_CONVS and net.tap_indices == [3, 8, 15, 22, 29]
    assert sum(v.numel() for k, v in state.items() if k.startswith("features.")) == 14_714_688
    heads = {k: tuple(v.shape) for k, v in state.items() if k.startswith("lin")}
    assert heads == {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}


def test_matches_the_lpips_package():
    """Parity oracle: the package's LPIPS (random VGG, its own shipped v0.1 heads) vs ours."""
    lpips = pytest.importorskip("lpips")
    torch.manual_seed(0)
    reference = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    ours = LPIPS.from_lpips_package_state_dict(reference.state_dict())
    shift, scale = (
        reference.state_dict()["scaling_layer.shift"],
        reference.state_dict()["scaling_layer.scale"],
    )
    assert torch.allclose(ours.shift, shift) and torch.allclose(ours.scale, scale)
    x = images(size=(48, 64))
    y = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)
    with torch.no_grad():
        assert torch.allclose(ours(x, y), reference(x, y), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ the import
@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """torchvision-like VGG16 and lpips-like vgg.pth files with random values and the real shapes."""
    folder = tmp_path_factory.mktemp("lpips_sources")
    torch.manual_seed(0)
    state = LPIPS(LPIPSConfig.official()).state_dict()
    vgg = {k: v for k, v in state.items() if k.startswith("features.")}
    vgg["classifier.6.bias"] = torch.zeros(1000)  # torchvision's file also holds the classifier
    lin = {k: torch.rand(v.shape) for k, v in state.items() if k.startswith("lin")}
    torch.save(vgg, folder / "vgg16-397923af.pth")
    torch.save(lin, folder / "vgg.pth")
    return folder / "vgg16-397923af.pth", folder / "vgg.pth", vgg, lin


@pytest.fixture
def weights_folder(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    return folder


def test_import_writes_network_and_manifest_then_loads(official_files, weights_folder, capsys):
    from avatarcli.pipelines.perceptual import load_lpips_if_installed
    from avatarcli.weights_registry import list_weights, read_manifest

    vgg_path, lin_path, vgg, lin = official_files
    assert load_lpips_if_installed(folder=weights_folder) is None
    assert main(["weights", "import", "lpips", str(vgg_path), str(lin_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["imported"] == ["lpips_vgg"] and "classifier" in report["notes"][0]
    (entry,) = read_manifest(weights_folder)
    assert entry.kind == "lpips_vgg" and "BSD-2" in entry.licence and "vgg.pth" in entry.origin
    status = {s.name: s for s in list_weights(weights_folder)}["lpips_vgg"]
    assert status.status == "present"
    net = load_lpips_if_installed(folder=weights_folder)
    assert net.config == LPIPSConfig.official() and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.features[28].weight, vgg["features.28.weight"])
    assert torch.equal(net.lin4.model[1].weight, lin["lin4.model.1.weight"])


def test_weights_list_explains_how_to_get_lpips(weights_folder, capsys):
    assert main(["weights", "list", "--json"]) == 0
    rows = {w["name"]: w for w in json.loads(capsys.readouterr().out)["weights"]}
    assert rows["lpips_vgg"]["status"] == "missing"
    assert "avatar weights import lpips" in rows["lpips_vgg"]["detail"]


@pytest.mark.parametrize("problem", ["wrong_shape", "swapped", "not_torch", "no_second", "missing_key"])
def test_wrong_files_exit_2_with_one_line_and_write_nothing(
    problem, official_files, weights_folder, tmp_path, capsys
):
    vgg_path, lin_path, _, lin = official_files
    args = [str(vgg_path), str(lin_path)]
    if problem == "wrong_shape":
        torch.save({**lin, "lin2.model.1.weight": torch.rand(1, 128, 1, 1)}, tmp_path / "bad.pth")
        args[1] = str(tmp_path / "bad.pth")
    elif problem == "swapped":
        args.reverse()
    elif problem == "not_torch":
        (tmp_path / "notes.txt").write_text("not weights")
        args[0] = str(tmp_path / "notes.txt")
    elif problem == "no_second":
        args = args[:1]
    elif problem == "missing_key":
        torch.save({k: v for k, v in lin.items() if k != "lin0.model.1.weight"}, tmp_path / "bad.pth")
        args[1] = str(tmp_path / "bad.pth")
    assert main(["weights", "import", "lpips", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1, err
    expected = {
        "wrong_shape": "'lin2.model.1.weight' is (1, 128, 1, 1), expected (1, 256, 1, 1)",
        "swapped": "swapped",
        "not_torch": "notes.txt",
        "no_second": "two files",
        "missing_key": "no 'lin0.model.1.weight'",
    }[problem]
    assert expected in err
    assert not weights_folder.exists() or not any(weights_folder.iterdir())


def test_other_families_refuse_a_second_file(official_files, weights_folder, capsys):
    vgg_path, lin_path, _, _ = official_files
    assert main(["weights", "import", "dinar", str(vgg_path), str(lin_path)]) == 2
    assert "for lpips" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ as a loss
def _refine_problem():
    """A 16² texture shown 1:1 on a 24×32 image: the target is a blurred random texture."""
    g = torch.Generator().manual_seed(5)
    goal = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 16, 16, generator=g), 3, 1, 1)

    def render(tex: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(tex, (8, 8, 4, 4), value=1.0)

    mask = torch.zeros(1, 1, 24, 32, dtype=torch.bool)
    mask[..., 4:20, 8:24] = True
    return goal, render, render(goal), mask


def test_refine_texture_with_lpips_lowers_its_loss_and_says_so():
    from avatarcli.texture.refine import photometric_loss, refine_texture

    goal, render, target, mask = _refine_problem()
    start = torch.full((3, 16, 16), 0.5)
    net = tiny_lpips()
    cos = torch.ones(16, 16)
    result = refine_texture(start, None, render, target, mask, cos, steps=25, lr=0.02, lpips=net)
    assert result.perceptual == "lpips_vgg"
    assert result.losses[-1] < 0.5 * result.losses[0], result.losses
    assert (result.texture - goal[0]).abs().mean() < (start - goal[0]).abs().mean()
    plain = refine_texture(start, None, render, target, mask, cos, steps=1, lr=0.02)
    assert plain.perceptual == "ssim"
    # the LPIPS term replaces the SSIM one (weights 1 and 0.2): the loss values differ
    with_lpips = photometric_loss(render(start[None]), target, mask, lpips=net)
    l2_only = photometric_loss(render(start[None]), target, mask, ssim_weight=0.0)
    assert float(with_lpips) > float(l2_only) and float(with_lpips) != pytest.approx(plain.losses[0])
    assert float(photometric_loss(render(start[None]), target, mask, lpips=net, lpips_weight=0.0)) == (
        pytest.approx(float(l2_only))
    )


def test_lpips_window_is_inside_the_image_and_on_the_mask():
    from avatarcli.texture.refine import _random_window

    mask = torch.zeros(1, 1, 40, 60)
    mask[..., 30:34, 50:54] = 1
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        _, rows, cols = _random_window(mask, 16, g)
        assert 0 <= rows.start and rows.stop <= 40 and rows.stop - rows.start == 16
        assert 0 <= cols.start and cols.stop <= 60 and cols.stop - cols.start == 16
        assert mask[..., rows, cols].sum() > 0
    assert _random_window(mask, 64, g) == (...,)  # the whole image fits


def test_stylepeople_fit_uses_lpips_when_given(anny_body):
    from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator
    from avatarcli.nets.sp_renderer import SPRenderer, SPRendererConfig
    from avatarcli.pipelines.stylepeople_fit import LPIPS_NOTE, SPFitOptions, fit_stylepeople
    from avatarcli.pipelines.synthetic import synthetic_person
    from avatarcli.texture.build import TextureView

    person = synthetic_person(anny_body, size=(64, 96), yaw_deg=0.0)
    with torch.no_grad():
        vertices = anny_body(shape=person.shape[None], pose=person.pose[None]).vertices
    image = torch.from_numpy(person.image).permute(2, 0, 1)[None].float() / 255
    view = TextureView(vertices, person.camera, image, torch.from_numpy(person.mask > 127)[None])
    torch.manual_seed(0)
    generator, renderer = SPTextureGenerator(SPGeneratorConfig.tiny()), SPRenderer(SPRendererConfig.tiny())
    options = SPFitOptions(image_size=64, mean_latent_samples=64).with_iters(
        latent=4, generator=1, noise=1, texture=4
    )
    net = tiny_lpips()
    with_lpips = fit_stylepeople([view], anny_body, generator, renderer, options=options, lpips=net)
    plain = fit_stylepeople([view], anny_body, generator, renderer, options=options)
    assert with_lpips.perceptual == "lpips_vgg" and with_lpips.summary()["perceptual"] == "lpips_vgg"
    assert LPIPS_NOTE not in with_lpips.notes and LPIPS_NOTE in plain.notes and plain.perceptual == "ssim"
    assert with_lpips.losses["latent"][0] != pytest.approx(plain.losses["latent"][0])
    for stage in ("latent", "texture"):
        assert with_lpips.losses[stage][-1] < with_lpips.losses[stage][0], (stage, with_lpips.losses)


# ------------------------------------------------------------------------------- in the pipelines
def install_tiny_lpips(folder) -> LPIPS:
    from avatarcli.weights_registry.registry import WeightEntry, update_manifest

    net = tiny_lpips()
    path = save_network(net, folder / "lpips_vgg.safetensors")
    entry = WeightEntry.for_file("lpips_vgg", path, "test", "random tiny LPIPS", net.kind, net.config_dict())
    update_manifest([entry], folder)
    return net


def test_create_rgb_records_the_perceptual_term(anny_body, weights_folder, tmp_path):
    from PIL import Image

    from avatarcli.avatar_file import load_avatar
    from avatarcli.pipelines.create import CreateOptions, create_avatar
    from avatarcli.pipelines.synthetic import synthetic_person

    person = synthetic_person(anny_body, size=(96, 144), texture_size=64, yaw_deg=0.0)
    Image.fromarray(person.image).save(tmp_path / "p.png")
    Image.fromarray(person.mask).save(tmp_path / "p_mask.png")
    photo = [tmp_path / "p.png"]
    opts = CreateOptions(fit_iters=5, refine_steps=2)
    plain = create_avatar(photo, tmp_path / "plain.pt", opts)
    assert load_avatar(plain.avatar).provenance["refine_perceptual"] == "ssim"
    install_tiny_lpips(weights_folder)
    tuned = create_avatar(photo, tmp_path / "lpips.pt", opts)
    assert load_avatar(tuned.avatar).provenance["refine_perceptual"] == "lpips_vgg"


def test_create_stylepeople_avatar_uses_installed_lpips(anny_body, weights_folder, tmp_path):
    from avatarcli.nets.sp_checkpoint import import_stylepeople
    from avatarcli.nets.sp_generator import SPGeneratorConfig, SPTextureGenerator
    from avatarcli.nets.sp_renderer import SPRenderer, SPRendererConfig
    from avatarcli.pipelines.stylepeople_fit import LPIPS_NOTE, SPFitOptions, create_stylepeople_avatar
    from avatarcli.pipelines.synthetic import synthetic_person
    from avatarcli.texture.build import TextureView

    torch.manual_seed(0)
    generator, renderer = SPTextureGenerator(SPGeneratorConfig.tiny()), SPRenderer(SPRendererConfig.tiny())
    ckpt = tmp_path / "generative_model.pth"
    torch.save({"g": generator.to_safetensors_state_dict(), "r": renderer.to_safetensors_state_dict()}, ckpt)
    import_stylepeople(ckpt, weights_folder)
    install_tiny_lpips(weights_folder)
    person = synthetic_person(anny_body, size=(64, 96), yaw_deg=0.0)
    with torch.no_grad():
        vertices = anny_body(shape=person.shape[None], pose=person.pose[None]).vertices
    image = torch.from_numpy(person.image).permute(2, 0, 1)[None].float() / 255
    view = TextureView(vertices, person.camera, image, torch.from_numpy(person.mask > 127)[None])
    options = SPFitOptions(image_size=64, mean_latent_samples=64).with_iters(
        latent=1, generator=1, noise=1, texture=1
    )
    avatar, _, fit = create_stylepeople_avatar(
        [view], anny_body, torch.zeros(1, anny_body.num_shape), [], {}, options=options
    )
    assert avatar.provenance["stylepeople"]["perceptual"] == "lpips_vgg" and LPIPS_NOTE not in fit.notes
