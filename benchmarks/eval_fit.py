"""Fitting quality: synthetic people with known answers, and the masked real photos in ../shared/data.

    python benchmarks/eval_fit.py                 # table
    python benchmarks/eval_fit.py --json          # one JSON object
    python benchmarks/eval_fit.py --synthetic 12 --iters 400 --no-real --no-octopus

Targets (issue #4): synthetic PA joint error ≤ 30 mm, 2D error ≤ 1 % of height, IoU ≥ 0.95;
real photos IoU ≥ 0.80, confident keypoints ≤ 2 %; the eight octopus views jointly: one
shape, yaws that turn consistently.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"

REAL_CASES = {
    "pifu_ryota (mediapipe kp, mask file)": ("pifu_ryota.png", {"mask": "pifu_ryota_mask.png"}),
    "sith_002 (openpose kp, alpha mask)": ("sith_002.png", {"keypoints": "sith_002_keypoints.json"}),
    "sith_007 (openpose kp, alpha mask)": ("sith_007.png", {"keypoints": "sith_007_keypoints.json"}),
    "sith_002 (mediapipe kp, alpha mask)": ("sith_002.png", {}),
}


def _yaw_deg(pose0: np.ndarray) -> float:
    import torch

    from avatarcli.body.kinematics import axis_angle_to_matrix

    fwd = axis_angle_to_matrix(torch.tensor(pose0)) @ torch.tensor([0.0, 0.0, 1.0])
    return math.degrees(math.atan2(float(fwd[0]), float(fwd[2])))


def run_synthetic(body, count: int, settings) -> list[dict]:
    from avatarcli.fitting import fit_views
    from avatarcli.fitting.synthetic import evaluate, make_case

    rows = []
    for seed in range(count):
        case = make_case(body, seed, size=512)
        t0 = time.perf_counter()
        fit = fit_views([case.view], body, settings=settings)[0]
        row = {"case": f"synthetic-{seed}", "seconds": time.perf_counter() - t0}
        row.update(evaluate(body, case, fit))
        rows.append(row)
    return rows


def run_real(body, settings) -> list[dict]:
    from avatarcli.fitting import fit_perceptions
    from avatarcli.perception import perceive

    rows = []
    for name, (photo, overrides) in REAL_CASES.items():
        if not (PHOTOS / photo).exists():
            continue
        # each row reads the files it names and nothing else (sith's keypoints lie beside it)
        p = perceive(PHOTOS / photo, sidecars=False, **{k: PHOTOS / v for k, v in overrides.items()})
        t0 = time.perf_counter()
        fit = fit_perceptions([p], body, settings=settings)[0]
        rows.append(
            {
                "case": name,
                "seconds": time.perf_counter() - t0,
                "silhouette_iou": fit.quality["silhouette_iou"],
                "keypoint_error_pct": fit.quality["keypoint_error_pct"],
                "warnings": fit.warnings,
            }
        )
    return rows


def run_octopus(body, settings) -> dict | None:
    from avatarcli.fitting import fit_perceptions
    from avatarcli.perception import perceive

    root = PHOTOS / "octopus_multiview"
    if not root.is_dir():
        return None
    views = [
        perceive(
            root / "frames" / f"{i:04d}.png",
            mask=root / "segmentations" / f"{i:04d}.png",
            keypoints=root / "keypoints" / f"{i:04d}_keypoints.json",
        )
        for i in range(8)
    ]
    t0 = time.perf_counter()
    fits = fit_perceptions(views, body, settings=settings)
    seconds = time.perf_counter() - t0
    yaws = [_yaw_deg(f.pose[0]) for f in fits]
    unwrapped = np.degrees(np.unwrap(np.radians(yaws)))
    steps = np.diff(unwrapped)
    return {
        "case": "octopus 8 views jointly",
        "seconds": seconds,
        "silhouette_iou": [f.quality["silhouette_iou"] for f in fits],
        "keypoint_error_pct": [f.quality["keypoint_error_pct"] for f in fits],
        "yaw_deg": yaws,
        "turns_one_way": bool((steps > 0).all() or (steps < 0).all()),
        "shared_shape": all(np.array_equal(fits[0].shape, f.shape) for f in fits),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=8, help="number of synthetic cases")
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--focal-ratio", type=float, default=None, help="real photos: focal / longer side")
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--no-octopus", action="store_true")
    parser.add_argument("--body", default="anny")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("GLOG_minloglevel", "2")

    import torch

    from avatarcli.body import load_body
    from avatarcli.fitting import FitSettings

    torch.set_num_threads(args.threads)
    body = load_body(args.body)
    settings = FitSettings(iters=args.iters)
    real_settings = FitSettings(iters=args.iters)
    if args.focal_ratio:
        real_settings.focal_ratio = args.focal_ratio

    synthetic = run_synthetic(body, args.synthetic, settings) if args.synthetic else []
    real = [] if args.no_real else run_real(body, real_settings)
    octopus = None if args.no_octopus else run_octopus(body, real_settings)
    summary = {}
    if synthetic:
        summary["synthetic"] = {
            k: float(np.mean([r[k] for r in synthetic]))
            for k in ("pa_joint_error_mm", "keypoint_error_pct", "silhouette_iou", "seconds")
        }
    result = {
        "body": args.body,
        "iters": args.iters,
        "synthetic": synthetic,
        "real": real,
        "octopus": octopus,
        "summary": summary,
    }
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fit quality ({args.body}, {args.iters} iterations)")
    for col in ("case", "PA joints mm", "2D err % height", "silhouette IoU", "seconds"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in synthetic:
        table.add_row(
            r["case"],
            f"{r['pa_joint_error_mm']:.1f}",
            f"{r['keypoint_error_pct']:.2f}",
            f"{r['silhouette_iou']:.3f}",
            f"{r['seconds']:.1f}",
        )
    if synthetic:
        m = summary["synthetic"]
        table.add_row(
            "[b]synthetic mean",
            f"{m['pa_joint_error_mm']:.1f}",
            f"{m['keypoint_error_pct']:.2f}",
            f"{m['silhouette_iou']:.3f}",
            f"{m['seconds']:.1f}",
        )
    for r in real:
        table.add_row(
            r["case"],
            "–",
            f"{r['keypoint_error_pct']:.2f}",
            f"{r['silhouette_iou']:.3f}",
            f"{r['seconds']:.1f}",
        )
    if octopus:
        for i, (iou, err, yaw) in enumerate(
            zip(octopus["silhouette_iou"], octopus["keypoint_error_pct"], octopus["yaw_deg"], strict=True)
        ):
            table.add_row(f"octopus view {i} (yaw {yaw:+.0f}°)", "–", f"{err:.2f}", f"{iou:.3f}", "")
        table.add_row(
            f"octopus: one shape={octopus['shared_shape']}, turns one way={octopus['turns_one_way']}",
            "",
            "",
            "",
            f"{octopus['seconds']:.1f}",
        )
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
