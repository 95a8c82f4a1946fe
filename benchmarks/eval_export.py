"""How closely an exported .glb poses like the tool, per motion: plain skinning vs corrective morphs.

For each motion in ``../shared/data/motions`` (Mixamo FBX, CMU BVH, AIST++ pickle) and the bundled
examples, the avatar is exported three ways — 4 influences (every viewer), 4 influences with the
clip's corrective morph targets (``--corrective-shapes``), 8 influences (Blender) — and each file
is read back and posed from its own data as a viewer would (``pose_glb``), against the tool's
posing on up to 24 frames. Figures: worst and mean vertex error (mm), morph targets, file size,
export time.

Usage: ``python benchmarks/eval_export.py [AVATAR.pt] [--json]``; without an avatar one is made
from ``examples/person.png`` (``avatar create``, a minute or two on CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "4 influences": {"influences": 4, "corrective_shapes": False},
    "4 + correctives": {"influences": 4, "corrective_shapes": True},
    "8 influences": {"influences": 8, "corrective_shapes": False},
}


def made_avatar(folder: Path) -> Path:
    from avatarcli.pipelines.create import CreateOptions, create_avatar

    result = create_avatar([ROOT / "examples" / "person.png"], folder / "person.pt", CreateOptions(seed=0))
    return result.avatar


def evaluate(avatar: Path, folder: Path) -> list[dict]:
    from eval_retarget import motion_files  # the same motion files as the retargeting benchmark

    from avatarcli.pipelines.export import ExportOptions, export_glb

    rows = []
    for motion in motion_files():
        for label, options in VARIANTS.items():
            out = folder / f"{motion.stem}_{options['influences']}_{options['corrective_shapes']}.glb"
            result = export_glb(avatar, out, ExportOptions(motion=str(motion), preview=False, **options))
            rows.append(
                {
                    "motion": motion.name,
                    "variant": label,
                    "frames": result.frames,
                    "error_max_mm": round(result.skinning_error_max * 1000, 3),
                    "error_mean_mm": round(result.skinning_error_mean * 1000, 4),
                    "morph_targets": result.morph_targets,
                    "megabytes": round(out.stat().st_size / 1e6, 2),
                    "seconds": round(result.seconds, 1),
                }
            )
            out.unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "avatar", nargs="?", type=Path, help="avatar file (default: made from examples/person.png)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        avatar = args.avatar or made_avatar(folder)
        rows = evaluate(avatar, folder)
    if args.json:
        print(json.dumps({"avatar": str(args.avatar or "examples/person.png"), "rows": rows}))
        return 0
    print(f"{'motion':34s} {'variant':16s} {'frames':>6s} {'max mm':>8s} {'mean mm':>8s} {'morphs':>6s} "
          f"{'MB':>6s} {'s':>6s}")  # fmt: skip
    for r in rows:
        print(
            f"{r['motion']:34s} {r['variant']:16s} {r['frames']:6d} {r['error_max_mm']:8.3f} "
            f"{r['error_mean_mm']:8.4f} {r['morph_targets']:6d} {r['megabytes']:6.2f} {r['seconds']:6.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
