"""Rasteriser speed: ours (pure PyTorch) against embree ray casting, in the same run.

    .venv/bin/python benchmarks/bench_render.py                 # table
    .venv/bin/python benchmarks/bench_render.py --json          # one JSON object
    .venv/bin/python benchmarks/bench_render.py --sizes 512 --batches 1 --repeat 5

Meshes: the anny body (13,718 v / 27,420 f; a closed body-proportioned proxy of the same face
count if anny cannot be loaded) and a SMPL-X-size mesh (the SMPL-X body when
``AVATAR_SMPLX_DIR`` is set, else a closed body-proportioned ellipsoid of ~20k faces). Each
batch element is a different turntable view, framed to fit. "ours" is a full
:func:`avatarcli.render.rasterize` (face ids, differentiable barycentrics, depth); "ours cull"
also drops back faces (what the render helpers do for closed bodies). Embree casts one ray per
pixel centre, per frame; "embree" includes building its BVH (a posed body changes every
frame), "embree cast" is the ray casting alone. Embree time per frame does not depend on the
batch, so it is measured once per size at batch 1. Peak memory of the largest case (anny,
largest size and batch) is measured in a fresh process. ``--threads`` defaults to 1: on a small
shared machine torch's extra threads spin against other work (embree uses its own threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch


def body_meshes(device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor, str]]:
    """name → (vertices (V, 3), faces (F, 3), description)."""
    import trimesh

    meshes: dict[str, tuple[torch.Tensor, torch.Tensor, str]] = {}
    try:
        from avatarcli.body import load_body

        body = load_body("anny")
        with torch.no_grad():
            verts = body().vertices[0].float()
        meshes["anny"] = (verts, body.faces, "anny body, rest pose")
    except Exception as exc:  # noqa: BLE001 - a benchmark should still run without anny
        proxy = trimesh.creation.icosphere(subdivisions=5)
        print(f"(anny unavailable: {exc}; using a proxy)", file=sys.stderr)
        meshes["anny"] = (_as_body(proxy), torch.tensor(proxy.faces), "proxy ellipsoid")
    smplx_dir = os.environ.get("AVATAR_SMPLX_DIR")
    if smplx_dir:
        from avatarcli.body import load_body

        body = load_body("smplx", model_dir=smplx_dir)
        with torch.no_grad():
            meshes["smplx"] = (body().vertices[0].float(), body.faces, "SMPL-X body")
    else:
        proxy = trimesh.creation.icosphere(subdivisions=5)
        meshes["smplx-size"] = (_as_body(proxy), torch.tensor(proxy.faces), "ellipsoid proxy")
    return {k: (v.to(device), f.to(device).long(), d) for k, (v, f, d) in meshes.items()}


def _as_body(mesh) -> torch.Tensor:
    """Scale a unit sphere to a body's bounding box (0.5 × 1.7 × 0.3 m)."""
    return torch.tensor(mesh.vertices, dtype=torch.float32) * torch.tensor([0.25, 0.85, 0.15])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(verts, faces, camera, repeat: int, cull: bool, stat=min) -> float:
    """Seconds for one batched rasterisation (``stat`` over ``repeat`` runs)."""
    from avatarcli.render import rasterize

    batch = camera.batch_size
    vb = verts[None].expand(batch, -1, -1)
    rasterize(vb, faces, camera, cull_backfaces=cull)  # warm-up
    times = []
    for _ in range(repeat):
        _sync(verts.device)
        t0 = time.perf_counter()
        rasterize(vb, faces, camera, cull_backfaces=cull)
        _sync(verts.device)
        times.append(time.perf_counter() - t0)
    return stat(times)


def time_embree(verts, faces, camera, repeat: int, stat=min) -> tuple[float, float]:
    """Seconds per frame for (BVH build + cast, cast only), one ray per pixel centre."""
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    cam = camera.to("cpu")
    origin, dirs = cam.pixel_rays(torch.float64)
    d = dirs[0].reshape(-1, 3).numpy()
    o = np.repeat(origin[:1].numpy(), len(d), axis=0)
    mesh = trimesh.Trimesh(verts.double().cpu().numpy(), faces.cpu().numpy(), process=False)
    full, cast = [], []
    for _ in range(max(1, repeat)):
        fresh = trimesh.Trimesh(mesh.vertices.copy(), mesh.faces, process=False)
        t0 = time.perf_counter()
        intersector = RayMeshIntersector(fresh)
        intersector.intersects_first(o[:1], d[:1])  # forces the BVH build
        t1 = time.perf_counter()
        intersector.intersects_id(o, d, multiple_hits=False, return_locations=True)
        t2 = time.perf_counter()
        full.append(t2 - t0)
        cast.append(t2 - t1)
    return stat(full), stat(cast)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM, resettable on Linux; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> None:
    """Restart the peak-RSS counter from the current RSS (Linux ≥ 4.0; a no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def memory_probe(size: int, batch: int, device: str) -> dict:
    """Peak memory of one anny rasterisation at size² × batch, in a fresh process.

    Reported as the growth of the process's peak RSS over its state after a tiny warm-up render
    (CPU), or ``torch.cuda.max_memory_allocated`` (CUDA), next to the size of the outputs.
    """
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys, json; sys.path.insert(0, {here!r}); import bench_render as b; "
        f"print(json.dumps(b._measure_memory({size}, {batch}, {device!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure_memory(size: int, batch: int, device_name: str) -> dict:
    from avatarcli.render import framing_camera, rasterize

    torch.set_num_threads(1)
    device = torch.device(
        "cuda" if device_name == "auto" and torch.cuda.is_available() else device_name.replace("auto", "cpu")
    )
    name, (verts, faces, _) = next(iter(body_meshes(device).items()))
    rasterize(verts, faces, framing_camera(verts, 0.0, 32).to(device))
    reset_peak_rss()
    before = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    camera = framing_camera(verts, [360.0 * k / batch for k in range(batch)], size).to(device)
    frags = rasterize(verts[None].expand(batch, -1, -1), faces, camera)
    outputs = sum(
        t.numel() * t.element_size() for t in (frags.face_index, frags.bary, frags.depth, frags.mask)
    )
    result = {
        "case": f"{name} {size}x{size} batch {batch} ({device.type})",
        "outputs_mb": outputs / 2**20,
        "peak_rss_growth_mb": peak_rss_mb() - before,
    }
    if device.type == "cuda":
        result["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run(args: argparse.Namespace) -> dict:
    from avatarcli.render import framing_camera

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    )
    stat = min if args.stat == "min" else statistics.median
    meshes = body_meshes(device)
    rows = []
    memory = None
    for name, (verts, faces, desc) in meshes.items():
        for size in args.sizes:
            embree_full = embree_cast = None
            if not args.no_embree:
                cam1 = framing_camera(verts, 0.0, size)
                embree_full, embree_cast = time_embree(verts, faces, cam1, args.repeat, stat)
            for batch in args.batches:
                yaws = [360.0 * k / batch for k in range(batch)]
                camera = framing_camera(verts, yaws, size).to(device)
                ours = time_ours(verts, faces, camera, args.repeat, cull=False, stat=stat)
                ours_cull = time_ours(verts, faces, camera, args.repeat, cull=True, stat=stat)
                row = {
                    "mesh": name,
                    "mesh_desc": desc,
                    "vertices": int(verts.shape[0]),
                    "faces": int(faces.shape[0]),
                    "size": size,
                    "batch": batch,
                    "device": device.type,
                    "ours_ms_per_frame": 1000 * ours / batch,
                    "ours_cull_ms_per_frame": 1000 * ours_cull / batch,
                    "embree_ms_per_frame": None if embree_full is None else 1000 * embree_full,
                    "embree_cast_ms_per_frame": None if embree_cast is None else 1000 * embree_cast,
                }
                if embree_full is not None:
                    row["ratio_vs_embree"] = row["ours_ms_per_frame"] / row["embree_ms_per_frame"]
                    row["ratio_vs_embree_cast"] = row["ours_ms_per_frame"] / row["embree_cast_ms_per_frame"]
                rows.append(row)
    if not args.no_memory:
        memory = memory_probe(max(args.sizes), max(args.batches), args.device)
    return {
        "benchmark": "render",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda_device": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "repeat": args.repeat,
        "stat": args.stat,
        "rows": rows,
        "memory": memory,
    }


def print_table(result: dict) -> None:
    print(
        f"render benchmark  torch {result['torch']}  threads {result['threads']}  "
        f"{result['stat']} of {result['repeat']} runs"
    )
    if result["cuda_device"]:
        print(f"CUDA: {result['cuda_device']}")
    head = (
        f"{'mesh':<11}{'faces':>7}{'size':>6}{'batch':>6}{'ours':>10}{'ours cull':>11}"
        f"{'embree':>10}{'cast only':>11}{'ratio':>7}"
    )
    print(head + "   (ms per frame)")
    print("-" * len(head))
    for r in result["rows"]:
        emb = "-" if r["embree_ms_per_frame"] is None else f"{r['embree_ms_per_frame']:.1f}"
        cast = "-" if r["embree_cast_ms_per_frame"] is None else f"{r['embree_cast_ms_per_frame']:.1f}"
        ratio = "-" if "ratio_vs_embree" not in r else f"{r['ratio_vs_embree']:.2f}"
        print(
            f"{r['mesh']:<11}{r['faces']:>7}{r['size']:>6}{r['batch']:>6}{r['ours_ms_per_frame']:>10.2f}"
            f"{r['ours_cull_ms_per_frame']:>11.2f}{emb:>10}{cast:>11}{ratio:>7}"
        )
    if result["memory"]:
        m = result["memory"]
        extra = f", CUDA peak {m['cuda_peak_allocated_mb']:.0f} MB" if "cuda_peak_allocated_mb" in m else ""
        print(
            f"memory ({m['case']}): outputs {m['outputs_mb']:.0f} MB, "
            f"peak RSS growth {m['peak_rss_growth_mb']:.0f} MB{extra}"
        )
    print("ratio = ours / embree (BVH build + cast), per frame; < 1 means ours is faster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[256, 512, 1024])
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--stat",
        choices=["min", "median"],
        default="min",
        help="best-of-N (default; robust on a shared CPU) or median",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = torch's default)"
    )
    parser.add_argument("--no-embree", action="store_true")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probe")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
