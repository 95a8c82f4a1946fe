"""``avatar merge --method dinar``: several views' 21-channel inputs merged (DINAR Eq. 5), then one
inpainting + refinement against all views; tiny random networks throughout."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from avatarcli.avatar_file import load_avatar
from avatarcli.cli.main import main
from avatarcli.pipelines.dinar import (
    DINAR_WEIGHTS,
    DinarInputs,
    DinarOptions,
    _per_view_gradients,
    dinar_texture,
    merge_dinar_inputs,
    merge_dinar_views,
    random_dinar_networks,
)
from avatarcli.pipelines.synthetic import synthetic_person

torch.set_num_threads(1)
T = 32


@pytest.fixture(scope="module")
def nets():
    return random_dinar_networks("tiny", seed=0)


def two_views():
    """View 0 saw the left block of texels, view 1 the right one; they overlap in columns 12–19."""
    g = torch.Generator().manual_seed(0)
    filled = torch.zeros(2, 1, T, T)
    filled[0, :, 4:20, 2:20] = 1
    filled[1, :, 4:20, 12:30] = 1
    sampled = filled.clone()
    sampled[:, :, 4] = 0  # the top row of each block is ring only
    generated = torch.randn(2, 16, T, T, generator=g)
    rgb = torch.rand(2, 3, T, T, generator=g) * filled
    cos = torch.rand(2, 1, T, T, generator=g) * filled
    return generated, rgb, sampled, filled, cos


def test_merged_masks_are_the_union_and_values_the_softmax_blend():
    generated, rgb, sampled, filled, cos = two_views()
    merged = merge_dinar_inputs(generated, rgb, sampled, filled, cos, tau=0.1)
    tex = merged.texture21[0]
    assert tex.shape == (21, T, T)
    union = filled.amax(0)
    assert torch.equal(merged.filled[0], union) and torch.equal(tex[19:20], union)
    assert torch.equal(tex[20:21], (union - sampled.amax(0)).clamp_min(0))
    assert torch.equal(merged.sampled[0], sampled.amax(0))
    features = torch.cat([generated, rgb], dim=1)  # (2,19,T,T)
    both = (filled[0, 0] > 0) & (filled[1, 0] > 0)
    w = torch.softmax(cos[:, 0] / 0.1, dim=0)  # (2,T,T)
    expected = (w[:, None] * features).sum(0)
    torch.testing.assert_close(tex[:19][:, both], expected[:, both])
    only0 = (filled[0, 0] > 0) & (filled[1, 0] == 0)
    only1 = (filled[1, 0] > 0) & (filled[0, 0] == 0)
    assert torch.equal(tex[:19][:, only0], features[0][:, only0])
    assert torch.equal(tex[:19][:, only1], features[1][:, only1])
    nobody = union[0] == 0
    assert bool(nobody.any()) and torch.equal(tex[16:21][:, nobody], torch.zeros(5, int(nobody.sum())))
    torch.testing.assert_close(tex[:16][:, nobody], generated.mean(0)[:, nobody])
    torch.testing.assert_close(merged.weights[:, 0][:, both], w[:, both])
    assert torch.equal(merged.normal_angles[0], cos.amax(0))


def test_small_tau_picks_the_most_frontal_view():
    generated, rgb, sampled, filled, cos = two_views()
    merged = merge_dinar_inputs(generated, rgb, sampled, filled, cos, tau=1e-4)
    both = (filled[0, 0] > 0) & (filled[1, 0] > 0)
    best = cos[:, 0].argmax(0)  # (T,T)
    features = torch.cat([generated, rgb], dim=1)
    pick = torch.where(best[None] == 0, features[0], features[1])
    clear = both & ((cos[0, 0] - cos[1, 0]).abs() > 0.01)  # ties are blends even at τ → 0
    torch.testing.assert_close(merged.texture21[0, :19][:, clear], pick[:, clear])
    wide = merge_dinar_inputs(generated, rgb, sampled, filled, cos, tau=1e4)  # τ → ∞: the mean
    torch.testing.assert_close(wide.texture21[0, :19][:, both], features.mean(0)[:, both], atol=1e-3, rtol=0)


def view_inputs(seed: int, size: int = 32) -> DinarInputs:
    """One synthetic 'photo' (a rectangle) whose uv render maps onto a patch of the texture."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, 1, size, size)
    mask[..., 4:28, 8 + seed : 24 + seed] = 1
    image = (torch.rand(1, 3, size, size, generator=g) * 2 - 1) * mask - (1 - mask)
    sampled = torch.zeros(1, 1, T, T)
    sampled[..., 6:16, 4 + 6 * seed : 18 + 6 * seed] = 1
    filled = torch.nn.functional.max_pool2d(sampled, 3, 1, 1)
    rgb = torch.rand(1, 3, T, T, generator=g) * filled
    lo, hi = -0.8 + 0.3 * seed, 0.2 + 0.3 * seed
    yy, xx = torch.meshgrid(torch.linspace(-0.6, 0.4, size), torch.linspace(lo, hi, size), indexing="ij")
    on = mask[:, 0] > 0
    uv = torch.stack([torch.where(on, xx, -10.0), torch.where(on, yy, -10.0)], dim=1)
    cos = filled * (0.9 - 0.3 * seed)
    return DinarInputs(image, mask, rgb, sampled, filled, cos, uv, mask.clone())


def stack(*items: DinarInputs) -> DinarInputs:
    names = ("image", "mask", "rgb_texture", "sampled", "filled", "normal_angles", "uv_render", "uv_mask")
    return DinarInputs(**{n: torch.cat([getattr(i, n) for i in items]) for n in names})


def test_one_view_reproduces_the_single_view_pipeline_exactly(nets):
    options = DinarOptions(steps=3, refine_steps=2, colour_adjust=True, colour_steps=2)
    single = dinar_texture(view_inputs(0), nets, options, torch.Generator().manual_seed(5))
    merged = merge_dinar_views(view_inputs(0), nets, options, torch.Generator().manual_seed(5), tau=0.1)
    assert torch.equal(single.texture, merged.texture) and torch.equal(single.pasted, merged.pasted)
    assert torch.equal(single.colour_scale, merged.colour_scale)
    assert single.refine_losses == merged.refine_losses


def test_two_views_merge_then_refine_against_both(nets):
    options = DinarOptions(steps=2, refine_steps=6)
    views = stack(view_inputs(0), view_inputs(1))
    result = merge_dinar_views(views, nets, options, torch.Generator().manual_seed(0), tau=0.1)
    assert result.texture.shape == (1, 21, T, T) and result.merged.weights.shape == (2, 1, T, T)
    assert torch.equal(result.merged.filled[0], views.filled.amax(0))
    assert len(result.refine_losses) == 1 and len(result.refine_losses[0]) == 6
    assert result.refine_losses[0][-1] < result.refine_losses[0][0]
    # known texels keep the merged colours through the paste (before refinement)
    inside = result.blend_mask[0, 0] > 0.999
    torch.testing.assert_close(
        result.pasted[0, 16:19][:, inside], result.merged.texture21[0, 16:19][:, inside]
    )
    # both views' T_gen count: the merge differs from either view alone
    alone = merge_dinar_views(view_inputs(0), nets, options, torch.Generator().manual_seed(0), tau=0.1)
    assert not torch.allclose(alone.merged.texture21, result.merged.texture21)
    with pytest.raises(Exception, match="tau"):
        merge_dinar_views(views, nets, options, tau=0.0)


def test_per_view_gradient_split_keeps_values_and_scales_gradients():
    texture = torch.rand(1, 3, 4, 4, requires_grad=True)
    share = torch.rand(2, 1, 4, 4)
    copies = _per_view_gradients(texture, share)
    assert (
        copies.shape == (2, 3, 4, 4)
        and torch.equal(copies[0], texture[0])
        and torch.equal(copies[1], texture[0])
    )
    weights = torch.randn(2, 3, 4, 4)
    (copies * weights).sum().backward()
    torch.testing.assert_close(texture.grad[0], (weights * share).sum(0))


# ----------------------------------------------------------------------------------- end to end
def install_tiny_dinar(folder, nets, body) -> None:
    """The tiny networks + the anny layout (standing in for DINAR's) as an installed registry."""
    from safetensors.torch import save_file

    from avatarcli.io_utils import sha256_file
    from avatarcli.nets import NETWORK_FILE_FORMAT, save_network
    from avatarcli.weights_registry.registry import WeightEntry, update_manifest

    for name, net in nets.modules().items():
        save_network(net, folder / f"dinar_{name}.safetensors")
    meta = {"format": NETWORK_FILE_FORMAT, "kind": "dinar_uv_layout", "config": json.dumps({})}
    save_file(
        {"uv": body.uv, "uv_faces": body.uv_faces}, str(folder / "dinar_uv_layout.safetensors"), metadata=meta
    )
    entries = []
    for name in DINAR_WEIGHTS:
        path = folder / f"{name}.safetensors"
        entries.append(
            WeightEntry(name, path.name, sha256_file(path), path.stat().st_size, "test", "test", name)
        )
    update_manifest(entries, folder)


def test_cli_merge_method_dinar_on_two_views(nets, anny_body, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("AVATAR_WEIGHTS", str(folder))
    install_tiny_dinar(folder, nets, anny_body)
    photos = []
    for name, yaw in (("front", 0.0), ("left", 60.0)):
        person = synthetic_person(anny_body, size=(96, 144), texture_size=64, yaw_deg=yaw)
        Image.fromarray(person.image).save(tmp_path / f"{name}.png")
        photos.append(str(tmp_path / f"{name}.png"))
    fast = ["--fit-iters", "30", "--refine-steps", "2", "--steps", "2", "--json"]
    out = tmp_path / "merged.pt"
    code = main(["--seed", "2", "merge", *photos, "-o", str(out), "--method", "dinar", "--tau", "0.2", *fast])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["psnr"]) == 2 and len(summary["fit_quality"]) == 2
    avatar = load_avatar(out)
    assert avatar.has_neural_texture and avatar.uv_layout == "dinar" and len(avatar.views) == 2
    assert avatar.provenance["params"]["tau"] == 0.2 and avatar.provenance["params"]["steps"] == 2
    one = tmp_path / "one.pt"
    assert main(["--seed", "2", "create", photos[0], "-o", str(one), "--method", "dinar", *fast]) == 0
    capsys.readouterr()
    single = load_avatar(one)
    # the side view adds texels the front one did not see
    assert avatar.textures["filled"].sum() > single.textures["filled"].sum()
    assert (tmp_path / "merged_preview.png").exists()
    gif = tmp_path / "m.gif"
    assert main(["animate", str(out), "--turntable", "--size", "32", "--fps", "2", "-o", str(gif)]) == 0


def test_refinement_uses_lpips_when_the_networks_carry_it(nets):
    """An installed LPIPS replaces the SSIM stand-in in stage B (DINAR's perceptual term)."""
    from dataclasses import replace

    from test_lpips import tiny_lpips

    options = DinarOptions(steps=2, refine_steps=3)
    plain = merge_dinar_views(view_inputs(0), nets, options, torch.Generator().manual_seed(0))
    with_lpips = replace(nets, lpips=tiny_lpips())
    perceptual = merge_dinar_views(view_inputs(0), with_lpips, options, torch.Generator().manual_seed(0))
    assert torch.equal(plain.pasted, perceptual.pasted)  # everything before stage B is unchanged
    assert plain.refine_losses[0] != perceptual.refine_losses[0]  # a different loss is optimised
    assert with_lpips.to("cpu").lpips is not None
