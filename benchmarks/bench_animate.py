"""Animation throughput: frames per second at 512² (RGB path), split by stage, and memory.

    python benchmarks/bench_animate.py            # readable table
    python benchmarks/bench_animate.py --json     # one JSON object

Stages: motion parsing (+ retargeting), posing (LBS), rasterising + texturing, encoding (H.264).
Memory: peak RSS growth while rendering 100 and 1000 frames (streaming: it should not grow).
Uses an avatar made from the synthetic outfit texture (no photo, no weights needed). View-dependent
colour: the same avatar photographed from 12 directions and kept as photos (what ``avatar merge``
makes from a turn-around), a 120-frame turntable drawn with and without floating textures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "motions"


def _avatar(tmp: Path) -> Path:
    from avatarcli.avatar_file import Avatar, save_avatar
    from avatarcli.body import load_body
    from avatarcli.pipelines.synthetic import outfit_texture

    body = load_body("anny")
    tex = outfit_texture(body, 256)
    avatar = Avatar(
        body_backend="anny", body_model_id=body.model_id, shape=torch.zeros(body.num_shape), uv_layout="anny",
        textures={"rgb": (tex.permute(1, 2, 0) * 255).round().to(torch.uint8)},
    )  # fmt: skip
    return save_avatar(avatar, tmp / "bench.pt", overwrite=True)


def _view_dependent_avatar(tmp: Path, size: int) -> Path:
    """The outfit avatar photographed from 12 yaws at ``size`` px, the photos kept in its file."""
    from avatarcli.avatar_file import load_avatar, save_avatar
    from avatarcli.body import load_body
    from avatarcli.pipelines.posing import avatar_rgb_texture
    from avatarcli.render import framing_camera, render_textured
    from avatarcli.texture.build import TextureView
    from avatarcli.texture.view_dependent import build_view_photos, to_avatar_textures

    avatar = load_avatar(_avatar(tmp))
    body = load_body("anny")
    vertices = body(shape=avatar.shape[None]).vertices
    texture = avatar_rgb_texture(avatar, torch.device("cpu"))
    views = []
    for yaw in range(0, 360, 30):
        camera = framing_camera(vertices, yaw_deg=float(yaw), size=size)
        with torch.no_grad():
            photo, cover = render_textured(vertices, body.faces, body.uv, body.uv_faces, texture, camera)
        views.append(TextureView(vertices, camera, photo, cover[0] > 0.5))
    avatar.textures.update(to_avatar_textures(build_view_photos(body, views)))
    return save_avatar(avatar, tmp / "bench_view.pt", overwrite=True)


def _view_dependent_turntables(tmp: Path, size: int, device: str) -> dict:
    """Turntable fps of a view-dependent avatar with and without floating textures."""
    import avatarcli.texture.view_dependent as view_dependent
    from avatarcli.pipelines.animate import AnimateOptions, animate

    avatar = _view_dependent_avatar(tmp, size)
    out = {}
    for floating in (False, True):
        view_dependent.FLOATING = floating
        opts = AnimateOptions(turntable=True, size=size, overwrite=True)
        r = animate(avatar, tmp / f"view_turn_{floating}.mp4", opts, device=device)
        out["floating" if floating else "blend"] = {"frames": r.frames, "fps": round(r.frames / r.seconds, 2)}
    view_dependent.FLOATING = True
    out["floating_cost"] = round(out["blend"]["fps"] / out["floating"]["fps"], 2)
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(size: int, device: str, frames_long: int) -> dict:
    from avatarcli.pipelines.animate import AnimateOptions, animate

    out: dict = {"size": size, "device": device, "torch_threads": torch.get_num_threads(), "clips": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        avatar = _avatar(tmp)
        clips = [ROOT / "examples" / "motions" / "walk.npz"]
        for name in ("mixamo_Walking_InPlace.fbx", "cmu_131_01.bvh"):
            if (SHARED / name).exists():
                clips.append(SHARED / name)
        for clip in clips:
            opts = AnimateOptions(motion=str(clip), size=size, end=2.0, overwrite=True)
            r = animate(avatar, tmp / f"{clip.stem}.mp4", opts, device=device)
            t = r.timings
            out["clips"].append(
                {
                    "motion": clip.name,
                    "frames": r.frames,
                    "parse_retarget_s": round(t["motion"], 3),
                    "pose_ms_per_frame": round(1000 * t["pose"] / r.frames, 2),
                    "render_ms_per_frame": round(1000 * t["render"] / r.frames, 2),
                    "encode_ms_per_frame": round(1000 * t["encode"] / r.frames, 2),
                    "fps_render_loop": round(r.frames / (t["pose"] + t["render"] + t["encode"]), 2),
                }
            )
        memory = {}
        for count in (100, frames_long):
            before = _peak_rss_mb()
            fps = 30.0 * count / 120.0  # a 4 s turntable at this rate has `count` frames
            opts = AnimateOptions(turntable=True, size=size, fps=fps, overwrite=True)
            r = animate(avatar, tmp / f"turn{count}.mp4", opts, device=device)
            memory[str(count)] = {
                "frames": r.frames,
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "peak_growth_mb": round(_peak_rss_mb() - before, 1),
                "fps": round(r.frames / r.seconds, 2),
            }
        out["memory"] = memory
        out["view_dependent"] = _view_dependent_turntables(tmp, size, device)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=1000, help="length of the long memory run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.size, args.device, args.frames)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"animate at {args.size}² on {args.device} ({result['torch_threads']} threads)")
    head = ("motion", "frames", "parse+rt s", "pose ms", "raster ms", "encode ms", "fps")
    print("{:32s} {:>6s} {:>10s} {:>8s} {:>9s} {:>9s} {:>6s}".format(*head))
    for c in result["clips"]:
        print(
            f"{c['motion']:32s} {c['frames']:6d} {c['parse_retarget_s']:10.2f} {c['pose_ms_per_frame']:8.1f} "
            f"{c['render_ms_per_frame']:9.1f} {c['encode_ms_per_frame']:9.1f} {c['fps_render_loop']:6.1f}"
        )
    for m in result["memory"].values():
        growth = f"peak RSS {m['peak_rss_mb']:.0f} MB (+{m['peak_growth_mb']:.0f})"
        print(f"turntable {m['frames']:5d} frames: {growth}, {m['fps']:.1f} fps")
    v = result["view_dependent"]
    print(
        f"view-dependent turntable ({v['blend']['frames']} frames, 12 kept photos):",
        f"blend {v['blend']['fps']:.1f} fps, floating textures {v['floating']['fps']:.1f} fps",
        f"({v['floating_cost']:.2f}× the time)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
