"""Time per photo: perception (cold and cached) and fitting, on 2 CPU threads.

    python benchmarks/bench_fit.py [--iters 400] [--repeat 2] [--json]

Uses pifu_ryota from ../shared/data when present (else a synthetic anny case for the fit
alone). Target (issue #4): ≤ 10 s for one view, perception + fit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("GLOG_minloglevel", "2")

    import torch

    torch.set_num_threads(args.threads)
    from avatarcli.body import load_body
    from avatarcli.fitting import FitSettings, fit_perceptions, fit_views

    t0 = time.perf_counter()
    body = load_body("anny")
    load_s = time.perf_counter() - t0
    result: dict = {"threads": args.threads, "iters": args.iters, "body_load_s": load_s}
    photo = PHOTOS / "pifu_ryota.png"
    if photo.exists():
        from avatarcli.perception import perceive

        with tempfile.TemporaryDirectory() as cache:
            os.environ["AVATAR_CACHE"] = cache  # cold perception cache, then warm
            t0 = time.perf_counter()
            p = perceive(photo, mask=PHOTOS / "pifu_ryota_mask.png")
            result["perceive_cold_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            p = perceive(photo, mask=PHOTOS / "pifu_ryota_mask.png")
            result["perceive_cached_s"] = time.perf_counter() - t0

        def run():
            return fit_perceptions([p], body, settings=FitSettings(iters=args.iters))

        result["photo"] = photo.name
    else:
        from avatarcli.fitting.synthetic import make_case

        view = make_case(body, 0, size=512).view

        def run():
            return fit_views([view], body, settings=FitSettings(iters=args.iters))

        result["photo"] = "synthetic-0"
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    result["fit_s"] = min(times)
    result["fit_s_all"] = times
    result["total_one_view_s"] = result["fit_s"] + result.get("perceive_cold_s", 0.0)
    if args.json:
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bench_fit: {result['photo']}, {args.threads} threads, {args.iters} iterations")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for key in ("body_load_s", "perceive_cold_s", "perceive_cached_s", "fit_s", "total_one_view_s"):
        if key in result:
            table.add_row(key.removesuffix("_s").replace("_", " "), f"{result[key]:.2f}")
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
