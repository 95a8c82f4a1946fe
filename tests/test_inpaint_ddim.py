"""DINAR's DDIM schedule, masked sampler, texture completion and UV texel conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from vectors import load_vector  # shared test helper

from avatarcli.inpaint.ddim import inpaint_latent, repaint_replace
from avatarcli.inpaint.schedule import DiffusionSchedule
from avatarcli.inpaint.texture import copy_back_mask, erode3x3, inpaint_texture
from avatarcli.nets.dinar_unet import DinarUNet, DinarUNetConfig
from avatarcli.nets.dinar_uv import render_texel_position, sample_texel_index, uv_to_ndc
from avatarcli.nets.dinar_vq import DinarVQ, DinarVQConfig

VECTORS = Path(__file__).parents[2] / "shared" / "reference" / "vectors"


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# --- schedule and single steps against upstream ----------------------------------------------


def test_schedule_buffers_equal_checkpoint_buffers():
    sd, *_ = load_vector("dinar_ddim_schedule")
    ours = DiffusionSchedule().buffers()
    assert set(ours) == set(sd)
    for name, ref in sd.items():
        assert torch.equal(ours[name], ref), name


def test_ddim_timesteps_and_coefficients():
    _, _, out, _ = load_vector("dinar_ddim_schedule")
    schedule = DiffusionSchedule()
    coeffs = schedule.ddim_coefficients(200, eta=1.0)
    assert torch.equal(coeffs["timesteps"], out["ddim_timesteps"])
    assert coeffs["timesteps"][:3].tolist() == [1, 6, 11] and coeffs["timesteps"][-1] == 996
    for name in ("alphas", "alphas_prev", "sigmas", "sqrt_one_minus_alphas"):
        assert max_abs(coeffs[name], out[f"ddim_{name}"]) <= 1e-6, name
    scheduler = schedule.ddim_scheduler(200)
    assert torch.equal(scheduler.timesteps.long(), out["ddim_timesteps"].flip(0))
    assert scheduler.final_alpha_cumprod == schedule.buffers()["alphas_cumprod"][0]


@pytest.mark.parametrize("t", ["996", "501", "001"])
def test_ddim_step_matches_upstream(t):
    _, inp, out, _ = load_vector("dinar_ddim_schedule")
    scheduler = DiffusionSchedule().ddim_scheduler(200)
    step = scheduler.step(
        inp[f"eps_t{t}"], int(t), inp[f"x_t_t{t}"], eta=1.0, variance_noise=inp[f"noise_t{t}"]
    )
    assert max_abs(step.prev_sample, out[f"x_prev_t{t}"]) <= 1e-5
    ref = out[f"pred_x0_t{t}"]
    assert max_abs(step.pred_original_sample, ref) <= 1e-5 * ref.abs().max().item()


def test_repaint_replacement_matches_upstream():
    _, inp, out, _ = load_vector("dinar_ddim_schedule")
    got = repaint_replace(
        inp["replace_x"],
        inp["replace_x0_known"],
        inp["replace_mask"],
        int(inp["replace_t"]),
        inp["replace_q_noise"],
        DiffusionSchedule().buffers(),
    )
    assert max_abs(got, out["replace_result"]) <= 1e-5


# --- the sampler's behaviour -------------------------------------------------------------------


class OracleUNet(torch.nn.Module):
    """Predicts exactly the noise that separates x_t from a fixed target latent."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target
        self.ac = DiffusionSchedule().buffers()["alphas_cumprod"]
        self.calls: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, t, cond):
        self.calls.append(t)
        self.inputs.append(x.clone())
        a = self.ac[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.target) / (1 - a).sqrt()


def test_sampler_with_perfect_denoiser_reaches_target():
    torch.manual_seed(0)
    target = torch.randn(1, 6, 8, 8)
    unet = OracleUNet(target)
    seen = []
    x = inpaint_latent(
        unet,
        torch.zeros_like(target),
        torch.zeros(1, 7, 8, 8),
        torch.zeros(1, 1, 8, 8),
        steps=20,
        generator=torch.Generator().manual_seed(1),
        progress=lambda i, n: seen.append((i, n)),
    )
    # The last step lands on t = 0 (a_prev = ᾱ₀ ≈ 0.9997, σ ≈ 0.04): close to the target, not exact.
    assert max_abs(x, target) < 0.2
    assert seen[-1] == (20, 20) and len(seen) == 20
    assert [int(t[0]) for t in unet.calls][:2] == [951, 901] and int(unet.calls[-1][0]) == 1
    assert unet.calls[0].dtype == torch.int64


def test_known_region_is_reimposed_before_every_unet_call():
    torch.manual_seed(0)
    known, other = torch.randn(1, 6, 8, 8), torch.randn(1, 6, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1.0
    unet = OracleUNet(other)  # pulls everything toward `other`
    x = inpaint_latent(
        unet, known, torch.zeros(1, 7, 8, 8), mask, steps=10, generator=torch.Generator().manual_seed(0)
    )
    # At the last call (t = 1) the known half was just replaced by √ᾱ₁·known + √(1−ᾱ₁)·noise.
    last_input = unet.inputs[-1]
    assert max_abs(last_input[..., :4], known[..., :4]) < 0.15
    assert max_abs(last_input[..., 4:], other[..., 4:]) < 0.3
    # Where nothing is known, the output follows the denoiser.
    assert max_abs(x[..., 4:], other[..., 4:]) < 0.2


def test_sampler_is_seeded():
    torch.manual_seed(0)
    net = DinarUNet(DinarUNetConfig.tiny()).eval()
    x0, cond, mask = torch.randn(1, 6, 8, 8), torch.randn(1, 7, 8, 8), torch.ones(1, 1, 8, 8)

    def run(seed: int) -> torch.Tensor:
        return inpaint_latent(net, x0, cond, mask, steps=2, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


# --- texture level -----------------------------------------------------------------------------


def test_erosion_keeps_border_and_shrinks_holes():
    m = torch.ones(1, 1, 6, 6)
    m[..., 2, 3] = 0
    e = erode3x3(m)
    assert e[..., 0, 0] == 1  # the image border does not erode
    assert e[..., 1:4, 2:5].sum() == 0 and e.sum() == 36 - 9


def test_copy_back_mask_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    known = (rng.random((32, 32)) > 0.4).astype(np.float32)
    known[8:20, 8:20] = 1
    islands = np.ones((32, 32), np.float32)
    islands[:, 26:] = 0
    ours = copy_back_mask(torch.from_numpy(known)[None, None], torch.from_numpy(islands)[None, None])
    outside = 1 - islands
    m8 = (np.clip(known + outside, 0, 1) * 255).astype(np.uint8)
    m8 = cv2.blur(cv2.erode(m8, np.ones((3, 3), np.uint8), iterations=1), (3, 3))
    ref = np.clip(m8.astype(np.float32) / 255 - outside, 0, 1)
    assert max_abs(ours[0, 0], torch.from_numpy(ref)) <= 1e-6


def test_inpaint_texture_tiny_networks():
    torch.manual_seed(0)
    vq = DinarVQ(DinarVQConfig(base_channels=16, n_embed=64)).eval()
    unet = DinarUNet(DinarUNetConfig.tiny()).eval()
    texture = torch.randn(1, 21, 32, 32)
    known = torch.zeros(1, 1, 32, 32)
    known[..., :, :16] = 1
    texture[:, 19:20] = known
    islands = torch.ones(1, 1, 32, 32)
    islands[..., 28:, :] = 0

    def run(seed: int):
        return inpaint_texture(
            vq, unet, texture, uv_island_mask=islands, steps=2, generator=torch.Generator().manual_seed(seed)
        )

    res = run(3)
    assert res.texture.shape == res.decoded.shape == (1, 21, 32, 32)
    full = res.blend_mask[0, 0] == 1
    assert full[:27, :14].all() and not full[:, 17:].any()
    assert torch.equal(res.texture[..., :27, :14], texture[..., :27, :14])
    assert torch.equal(res.texture[..., :, 17:], res.decoded[..., :, 17:])
    assert torch.equal(run(3).texture, res.texture)


# --- UV texel conventions ----------------------------------------------------------------------


def test_uv_convention_vector():
    _, inp, out, _ = load_vector("dinar_uv_convention")
    assert torch.equal(uv_to_ndc(inp["uv01"]), inp["uv_ndc"])
    assert max_abs(render_texel_position(inp["uv_ndc"], 256), out["gridsample_xy"]) <= 1e-4
    assert torch.equal(sample_texel_index(inp["uv_ndc"], 256), out["photo_sampling_after_border_rule_rc"])
    assert torch.equal(sample_texel_index(inp["uv_ndc"], 256), out["photo_sampling_centre_texel_rc"])


def test_grid_sample_reads_the_recorded_neighbours():
    _, inp, out, _ = load_vector("dinar_uv_convention")
    texture = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    grid = inp["uv_ndc"].view(1, -1, 1, 2)
    got = torch.nn.functional.grid_sample(texture, grid, mode="bilinear", align_corners=True)[0, 0, :, 0]
    rc = out["gridsample_texels_rc"]
    manual = (texture[0, 0][rc[..., 0], rc[..., 1]] * out["gridsample_weights"]).sum(-1)
    assert max_abs(got, manual) <= 1e-5
