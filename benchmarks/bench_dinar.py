"""How long each stage of DINAR avatar creation and neural rendering takes, with full-size networks.

The networks carry seeded random weights (the official ones are CC BY-NC and never bundled);
speed does not depend on the values. Stages: encode, generate, VQ encode, one DDIM step (UNet +
scheduler, timed over a few steps), VQ decode, one refinement step (render forward + backward),
``avatar merge --method dinar``'s two-view merge (Eq. 5) and a two-view refinement step, and
the neural render of 512² frames at batch 1 and 16. Reduced-precision (bf16, fp16 on CUDA)
and channels-last variants are timed too and checked against fp32 (max abs difference).

"Quality" against DDIM steps: with random weights there is no quality to measure, so the
benchmark reports an honest proxy instead — how far the 50- and 25-step latents land from the
200-step latent from the same seed, relative to the 200-step latent's RMS, both for eta = 1
(DINAR's stochastic setting; the noise draws differ between step counts, so a 200-vs-200 run
with another seed is shown as the noise floor) and for eta = 0 (deterministic: only the
discretisation differs). On CPU this uses the tiny UNet unless ``--quality-net official``.

Usage: ``python benchmarks/bench_dinar.py [--device cpu|cuda] [--json] [--render-batch 16]``
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], object], device: torch.device, repeats: int = 1, warmup: int | None = None
) -> float:
    """Median wall-clock seconds of ``fn`` after ``warmup`` untimed calls (default: 1 on CUDA,
    where the first call autotunes kernels; 0 on CPU, where it would only double long runs)."""
    if warmup is None:
        warmup = 1 if device.type == "cuda" else 0
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def log(message: str) -> None:
    """Progress on stderr, so ``--json`` output stays one object on stdout."""
    print(f"[bench_dinar] {message}", file=sys.stderr, flush=True)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def synthetic_inputs(device: torch.device, size: int = 512, tex: int = 256, batch: int = 1, seed: int = 0):
    """A person-shaped ellipse, its uv render (the ellipse mapped onto a texture patch), masks."""
    from avatarcli.pipelines.dinar import DinarInputs

    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    on = (xs / 0.35) ** 2 + (ys / 0.9) ** 2 < 1
    mask = on.float()[None, None].expand(batch, 1, size, size).contiguous()
    image = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1) * mask - (1 - mask)
    uv = torch.stack([torch.where(on, xs * 0.8, -10.0), torch.where(on, ys * 0.5 - 0.3, -10.0)])
    uv = uv[None].expand(batch, 2, size, size).contiguous()
    sampled = torch.zeros(batch, 1, tex, tex)
    sampled[..., tex // 8 : tex // 2, tex // 8 : tex - tex // 8] = 1
    filled = torch.nn.functional.max_pool2d(sampled, 3, 1, 1)
    inputs = DinarInputs(
        image=image,
        mask=mask,
        rgb_texture=torch.rand(batch, 3, tex, tex, generator=g) * filled,
        sampled=sampled,
        filled=filled,
        normal_angles=filled * 0.9,
        uv_render=uv,
        uv_mask=mask.clone(),
    )
    return DinarInputs(**{k: (v.to(device) if v is not None else None) for k, v in vars(inputs).items()})


def bench_stages(nets, device: torch.device, args) -> tuple[list[dict], dict]:
    """Per-stage times at batch 1 (fp32), plus the tensors later stages reuse."""
    from avatarcli.inpaint.schedule import DiffusionSchedule
    from avatarcli.inpaint.texture import erode3x3

    inputs = synthetic_inputs(device)
    g = torch.Generator(device=device).manual_seed(0)
    rows: list[dict] = []
    state: dict = {"inputs": inputs}
    with torch.no_grad():
        enc = timed(lambda: nets.encoder(inputs.image, inputs.mask, generator=g), device, args.repeats)
        w = nets.encoder(inputs.image, inputs.mask, generator=g)
        gen = timed(lambda: nets.generator(w, generator=g), device, args.repeats)
        generated = nets.generator(w, generator=g)
        ring = inputs.filled - inputs.sampled
        tex21 = torch.cat([generated, inputs.rgb_texture, inputs.filled, ring], 1)
        vq_enc = timed(lambda: nets.vq.encode(tex21), device, args.repeats)
        z = nets.vq.encode(tex21)
        latent_mask = torch.nn.functional.interpolate(inputs.filled, size=z.shape[-2:], mode="nearest")
        cond = torch.cat([z, latent_mask], 1)
        keep = erode3x3(latent_mask)
        scheduler = DiffusionSchedule().ddim_scheduler(200)
        buffers = {k: v.to(device) for k, v in DiffusionSchedule().buffers().items()}
        x = torch.randn(z.shape, generator=g, device=device)

        def ddim_step() -> torch.Tensor:
            t = 501
            noisy = buffers["sqrt_alphas_cumprod"][t] * z + buffers["sqrt_one_minus_alphas_cumprod"][t] * x
            xt = noisy * keep + x * (1 - keep)
            eps = nets.unet(xt, torch.full((1,), t, device=device, dtype=torch.long), cond)
            return scheduler.step(eps, t, xt, eta=1.0, variance_noise=torch.randn_like(xt)).prev_sample

        step = timed(ddim_step, device, repeats=args.ddim_steps)
        dec = timed(lambda: nets.vq.decode(z), device, args.repeats)
    state.update(z=z, cond=cond, keep=keep, tex21=tex21)

    # one refinement step: neural render of the photo view, loss, backward to the RGB texels
    from avatarcli.texture.refine import photometric_loss

    nets.renderer.requires_grad_(False)
    rgb = tex21[:, 16:19].clone().requires_grad_(True)
    target = (inputs.image + 1) / 2

    def refine_step() -> None:
        texture = torch.cat([tex21[:, :16], rgb, tex21[:, 19:]], 1)
        out = (nets.renderer(texture, inputs.uv_render, inputs.uv_mask).rgb + 1) / 2
        photometric_loss(out, target, inputs.uv_mask).backward()

    refine = timed(refine_step, device, repeats=args.refine_steps)

    # merge --method dinar: two views' 21-channel inputs → one texture (Eq. 5), and one
    # refinement step against both views (render batch 2, per-view gradient shares)
    from avatarcli.pipelines.dinar import _per_view_gradients, merge_dinar_inputs

    two = synthetic_inputs(device, batch=2)
    cos2 = torch.stack([two.normal_angles[0], two.normal_angles[1] * 0.5])
    generated2 = generated.expand(2, -1, -1, -1)
    merge = timed(
        lambda: merge_dinar_inputs(generated2, two.rgb_texture, two.sampled, two.filled, cos2, 0.1),
        device,
        args.repeats,
    )
    share = torch.full((2, 1) + tex21.shape[-2:], 0.5, device=device)

    def refine_step_two_views() -> None:
        copies = _per_view_gradients(rgb, share)
        texture = torch.cat(
            [tex21[:, :16].expand(2, -1, -1, -1), copies, tex21[:, 19:].expand(2, -1, -1, -1)], 1
        )
        out = (nets.renderer(texture, two.uv_render, two.uv_mask).rgb + 1) / 2
        photometric_loss(out, (two.image + 1) / 2, two.uv_mask).backward()

    refine_two = timed(refine_step_two_views, device, repeats=args.refine_steps)
    log("stages timed")
    for stage, seconds, note in [
        ("encode (512², 5 ch → w)", enc, ""),
        ("generate (w → 16×256²)", gen, ""),
        ("VQ encode (21×256² → 6×64²)", vq_enc, ""),
        ("DDIM step (UNet 387 M + update)", step, f"× 200 steps ≈ {step * 200:.1f} s"),
        ("VQ decode (6×64² → 21×256²)", dec, ""),
        ("refine step (render fwd+bwd)", refine, f"× 64 steps ≈ {refine * 64:.1f} s"),
        ("merge 2 views (Eq. 5, 21×256²)", merge, "avatar merge --method dinar"),
        ("refine step, 2 views (fwd+bwd)", refine_two, f"× 64 steps ≈ {refine_two * 64:.1f} s"),
    ]:
        views = 2 if "2 views" in stage else 1
        row = {"stage": stage, "batch": views, "variant": "fp32", "ms": seconds * 1e3, "note": note}
        rows.append({**row, "ms_per_frame": seconds * 1e3 / views})
    return rows, state


def bench_render(nets, device: torch.device, args, tex21: torch.Tensor) -> list[dict]:
    """Neural render of 512² frames at batch 1 and ``--render-batch``, fp32 and variants."""
    inputs = synthetic_inputs(device, batch=args.render_batch)
    renderer = nets.renderer.eval()
    variants: list[tuple[str, torch.dtype, bool]] = [("fp32", torch.float32, False)]
    if not args.no_variants:
        variants.append(("fp32 channels-last", torch.float32, True))
        variants.append(("bf16", torch.bfloat16, False))
        if device.type == "cuda":
            variants += [("bf16 channels-last", torch.bfloat16, True), ("fp16", torch.float16, False)]
            variants.append(("fp16 channels-last", torch.float16, True))
    rows: list[dict] = []
    reference: dict[int, torch.Tensor] = {}
    warm = 1 if device.type == "cuda" else 0  # CPU runs are long enough that warm-up only doubles them
    for name, dtype, channels_last in variants:
        net = type(renderer)(renderer.config).to(device)
        net.load_state_dict(renderer.state_dict())
        net = net.to(dtype=dtype).eval()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        for batch in (1, args.render_batch):
            tex = tex21[:1].expand(batch, -1, -1, -1).to(dtype)
            uv = inputs.uv_render[:batch].to(dtype)
            uv_mask = inputs.uv_mask[:batch].to(dtype)
            if channels_last:
                tex, uv, uv_mask = (
                    t.contiguous(memory_format=torch.channels_last) for t in (tex, uv, uv_mask)
                )
            with torch.no_grad():

                def call(net=net, tex=tex, uv=uv, uv_mask=uv_mask) -> torch.Tensor:
                    return net(tex, uv, uv_mask, segm_threshold=0.5).rgb

                repeats = args.repeats if (device.type == "cuda" or batch == 1) else 1
                seconds = timed(call, device, repeats=repeats, warmup=warm)
                out = call().float()
            non_finite = int((~torch.isfinite(out)).sum())
            if name == "fp32":
                reference[batch] = out
            diff = None if non_finite else max_abs_diff(out, reference[batch])
            rows.append(
                {
                    "stage": "neural render 512²",
                    "batch": batch,
                    "variant": name,
                    "ms": seconds * 1e3,
                    "ms_per_frame": seconds * 1e3 / batch,
                    "max_abs_diff_vs_fp32": diff,  # None: the variant produced NaN/inf
                    "non_finite_pixels": non_finite,
                }
            )
            log(f"render {name} batch {batch}: {seconds:.2f} s")
    return rows


def bench_steps_proxy(device: torch.device, args) -> list[dict]:
    """Distance of 50/25-step latents from the 200-step latent, same seed (see module doc)."""
    from avatarcli.inpaint.ddim import inpaint_latent
    from avatarcli.inpaint.texture import erode3x3
    from avatarcli.pipelines.dinar import random_dinar_networks

    nets = random_dinar_networks(args.quality_net, seed=1, device=device)
    tex = nets.texture_size
    inputs = synthetic_inputs(device, size=nets.image_size, tex=tex)
    with torch.no_grad():
        g = torch.Generator(device=device).manual_seed(0)
        generated = nets.generator(nets.encoder(inputs.image, inputs.mask, generator=g), generator=g)
        tex21 = torch.cat([generated, inputs.rgb_texture, inputs.filled, inputs.filled - inputs.sampled], 1)
        z = nets.vq.encode(tex21)
    latent_mask = torch.nn.functional.interpolate(inputs.filled, size=z.shape[-2:], mode="nearest")
    cond = torch.cat([z, latent_mask], 1)
    keep = erode3x3(latent_mask)
    unknown = (1 - keep).bool().expand_as(z)

    def sample(steps: int, eta: float, seed: int) -> torch.Tensor:
        gen = torch.Generator(device=device).manual_seed(seed)
        return inpaint_latent(nets.unet, z, cond, keep, steps=steps, eta=eta, generator=gen)

    rows = []
    for eta in (1.0, 0.0):
        start = time.perf_counter()
        best = sample(200, eta, 0)
        scale = float(best[unknown].pow(2).mean().sqrt())
        candidates = [(50, 0), (25, 0)] + ([(200, 1)] if eta > 0 else [])
        for steps, seed in candidates:
            other = sample(steps, eta, seed)
            rms = float((other - best)[unknown].pow(2).mean().sqrt())
            rows.append(
                {
                    "eta": eta,
                    "steps": steps,
                    "seed": seed,
                    "rms_vs_200": rms,
                    "relative": rms / scale if scale else math.nan,
                    "net": args.quality_net,
                }
            )
        rows[-1]["seconds_for_eta"] = time.perf_counter() - start
    return rows


def diff_text(row: dict) -> str:
    if "max_abs_diff_vs_fp32" not in row:
        return ""
    diff = row["max_abs_diff_vs_fp32"]
    return f"NaN/inf in {row['non_finite_pixels']} values" if diff is None else f"{diff:.2e}"


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    table = Table(title=f"DINAR stages, full-size random networks on {report['device']}")
    for col in ("stage", "batch", "variant", "ms", "ms/frame", "max |Δ| vs fp32", "note"):
        table.add_column(col, justify="right" if col not in ("stage", "variant", "note") else "left")
    for row in report["stages"] + report["render"]:
        table.add_row(
            row["stage"],
            str(row["batch"]),
            row["variant"],
            f"{row['ms']:.1f}",
            f"{row.get('ms_per_frame', row['ms']):.1f}",
            diff_text(row),
            row.get("note", ""),
        )
    console.print(table)
    if report.get("steps_proxy"):
        proxy = Table(
            title=f"DDIM steps proxy ({report['steps_proxy'][0]['net']} UNet, random weights): "
            "RMS distance of the unknown-region latent from the 200-step result"
        )
        for col in ("eta", "steps", "seed", "rms vs 200", "relative"):
            proxy.add_column(col, justify="right")
        for row in report["steps_proxy"]:
            proxy.add_row(
                f"{row['eta']:.0f}", str(row["steps"]), str(row["seed"]),
                f"{row['rms_vs_200']:.4f}", f"{row['relative']:.3f}",
            )  # fmt: skip
        console.print(proxy)
        console.print(
            "eta=1 rows include the noise floor (200 steps, another seed); random weights: "
            "a sampler-divergence proxy, not image quality."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--render-batch", type=int, default=16)
    parser.add_argument("--ddim-steps", type=int, default=2, help="DDIM steps to time (median)")
    parser.add_argument("--refine-steps", type=int, default=2, help="refinement steps to time (median)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the other timings (median)")
    parser.add_argument("--no-variants", action="store_true", help="fp32 only")
    parser.add_argument("--no-steps-proxy", action="store_true")
    parser.add_argument("--quality-net", choices=("tiny", "official"), default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args(argv)

    from avatarcli.pipelines.dinar import random_dinar_networks

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.quality_net is None:
        args.quality_net = "official" if device.type == "cuda" else "tiny"
    start = time.perf_counter()
    nets = random_dinar_networks("official", seed=0, device=device)
    build = time.perf_counter() - start
    log(f"built full-size random networks in {build:.1f} s")
    stages, state = bench_stages(nets, device, args)
    render = bench_render(nets, device, args, state["tex21"].detach())
    proxy = [] if args.no_steps_proxy else bench_steps_proxy(device, args)
    report = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "build_networks_s": build,
        "stages": stages,
        "render": render,
        "steps_proxy": proxy,
        "total_s": time.perf_counter() - start,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
