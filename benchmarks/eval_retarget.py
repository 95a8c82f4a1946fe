"""Retargeting fidelity on real motion files: bone-direction error after retarget + FK.

For each motion in ``../shared/data/motions`` (Mixamo FBX, CMU BVH, AIST++ pickle) and the
bundled examples, the clip is retargeted onto the anny body (or, if anny cannot be loaded,
the synthetic A-pose skeleton), both skeletons are posed, and every mapped bone's direction
is compared per frame (:mod:`avatarcli.motion.evaluation`). Figures per file:

* **all bones, rest-aligned** (the headline, checked against the targets) — every bone with both
  ends mapped; the raw angle for bones whose rest directions agree, and for the
  proportion-limited ones (below) whether they move like the source (their parent's rotation
  since rest, applied to the target bone's rest direction);
* **all bones, raw** — the plain angle for every bone, proportion offsets included;
* **drift** — for the proportion-limited bones, how far their error ever moves away from
  their rest-pose error (small = the motion itself transfers; the offset is proportions);
* **transferable** — leaving out sibling bones whose *rest* directions already differ by
  more than 2° between the two skeletons (e.g. pelvis→hips when the pelvises have different
  width/height ratios); no single joint rotation can match those, so they measure skeleton
  proportions, not motion transfer. They are listed under ``proportion_limited``.

Usage: ``python benchmarks/eval_retarget.py [--body anny|synthetic] [--frames N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_MOTIONS = ROOT.parent / "shared" / "data" / "motions"
EXAMPLES = ROOT / "examples" / "motions"
PATTERNS = ("*.fbx", "*.bvh", "aistpp_*.pkl")
TARGET_MEAN_DEG, TARGET_P95_DEG = 4.0, 10.0


def motion_files() -> list[Path]:
    """The shared real motions (where ../shared is present) and the bundled examples."""
    files = [p for pattern in PATTERNS for p in sorted(SHARED_MOTIONS.glob(pattern))]
    return files + sorted(EXAMPLES.glob("*.npz"))


def load_target(kind: str) -> tuple[object, str]:
    from avatarcli.motion.skeletons import Skeleton

    if kind == "synthetic":
        return Skeleton.a_pose(), "synthetic A-pose skeleton"
    try:
        from avatarcli.body import load_body

        return load_body("anny"), "anny"
    except Exception as exc:  # anny missing or not buildable here: still measure something
        print(
            f"anny unavailable ({type(exc).__name__}: {exc}); using the synthetic A-pose skeleton",
            file=sys.stderr,
        )
        return Skeleton.a_pose(), "synthetic A-pose skeleton (anny unavailable)"


def evaluate(path: Path, body: object, max_frames: int | None) -> dict:
    from avatarcli.motion import load_motion, retarget
    from avatarcli.motion.evaluation import bone_direction_errors

    start = time.perf_counter()
    clip = load_motion(path)
    load_s = time.perf_counter() - start
    if max_frames and clip.num_frames > max_frames:
        clip = clip.trim(end=max_frames, unit="frames")
    start = time.perf_counter()
    motion = retarget(clip, body)
    retarget_s = time.perf_counter() - start
    errors = bone_direction_errors(clip, motion, body)
    good = errors.transferable()
    aligned = errors.rest_aligned()
    limited = set(errors.proportion_limited)
    return {
        "file": path.name,
        "frames": clip.num_frames,
        "fps": round(clip.fps, 3),
        "mapped_joints": len(motion.joint_map),
        "bones": len(errors.bones),
        "aligned_mean_deg": round(aligned.mean, 3),
        "aligned_p95_deg": round(aligned.p95, 3),
        "aligned_max_deg": round(aligned.max, 3),
        "meets_targets": bool(aligned.mean <= TARGET_MEAN_DEG and aligned.p95 <= TARGET_P95_DEG),
        "mean_deg": round(errors.mean, 3),
        "p95_deg": round(errors.p95, 3),
        "max_deg": round(errors.max, 3),
        "transferable_bones": len(good.bones),
        "transferable_mean_deg": round(good.mean, 3),
        "transferable_p95_deg": round(good.p95, 3),
        "transferable_max_deg": round(good.max, 3),
        "proportion_limited": {
            b: round(float(r), 1)
            for b, r in zip(errors.bones, errors.rest_degrees, strict=True)
            if b in limited
        },
        "proportion_limited_max_drift_deg": round(
            float(
                max(
                    (d for b, d in zip(errors.bones, errors.drift_from_rest(), strict=True) if b in limited),
                    default=0.0,
                )
            ),
            3,
        ),
        "load_s": round(load_s, 3),
        "retarget_s": round(retarget_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", choices=("anny", "synthetic"), default="anny")
    parser.add_argument("--frames", type=int, default=None, help="evaluate at most N frames per file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    files = motion_files()
    if not files:
        print(f"no motion files found under {SHARED_MOTIONS} or {EXAMPLES}", file=sys.stderr)
        return 1
    body, body_name = load_target(args.body)
    rows = [evaluate(p, body, args.frames) for p in files]
    if args.json:
        print(
            json.dumps(
                {
                    "body": body_name,
                    "targets_deg": {"mean": TARGET_MEAN_DEG, "p95": TARGET_P95_DEG},
                    "files": rows,
                }
            )
        )
        return 0
    print(f"retarget fidelity onto {body_name}: bone-direction error in degrees (source vs body after FK)")
    print("  aligned = all bones, rest-aligned (targets apply); raw = all bones, plain angle;")
    print("  xfer = bones whose rest directions agree; drift = most a limited bone's error ever moves")
    head = (
        f"{'file':34} {'frames':>6} {'bones':>5} | {'aligned':>7} {'p95':>6} {'max':>6} | "
        f"{'raw':>6} {'p95':>6} {'max':>6} | "
        f"{'xfer':>4} {'mean':>6} {'p95':>6} {'max':>6} | {'drift':>5} | limited bones (rest error °)"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        limited = ", ".join(f"{b} {d}" for b, d in r["proportion_limited"].items())
        print(
            f"{r['file']:34} {r['frames']:6d} {r['bones']:5d} | {r['aligned_mean_deg']:7.2f} "
            f"{r['aligned_p95_deg']:6.2f} {r['aligned_max_deg']:6.2f} | "
            f"{r['mean_deg']:6.2f} {r['p95_deg']:6.2f} "
            f"{r['max_deg']:6.2f} | {r['transferable_bones']:4d} {r['transferable_mean_deg']:6.2f} "
            f"{r['transferable_p95_deg']:6.2f} {r['transferable_max_deg']:6.2f} | "
            f"{r['proportion_limited_max_drift_deg']:5.2f} | {limited or '-'}"
        )
    print(f"targets (rest-aligned, all bones): mean ≤ {TARGET_MEAN_DEG}°, p95 ≤ {TARGET_P95_DEG}°")
    return 0


if __name__ == "__main__":
    sys.exit(main())
