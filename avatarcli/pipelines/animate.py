"""``avatar animate``: drive an avatar with a motion file (or spin it) and write a video.

Pipeline: load avatar + body → load motion (FBX/BVH/AMASS/AIST++/clip npz) → trim, resample,
loop → retarget onto the body → one camera framing the whole clip (no cut-off limbs) →
render frames in small batches → stream them into the video/GIF/PNG-folder sink.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from avatarcli.body.joints import NUM_JOINTS
from avatarcli.errors import UserError
from avatarcli.media import open_frame_sink, parse_background
from avatarcli.pipelines.posing import load_avatar_with_body, make_frame_renderer, view_yaw
from avatarcli.render import Camera, framing_camera

ProgressFn = Callable[[int, int, str], None]


@dataclass
class MotionEdits:
    """How a motion file is cut, retimed, repeated and mapped before it drives the body
    (``avatar animate`` and ``avatar export`` share these)."""

    fps: float | None = None
    start: float | None = None
    end: float | None = None
    loop: int = 1
    in_place: bool = False
    mapping: str | None = None


@dataclass
class AnimateOptions(MotionEdits):
    motion: str | None = None
    turntable: bool = False
    view: str = "front"
    orbit: bool = False
    size: int = 512
    background: str | None = "white"
    turntable_seconds: float = 4.0
    batch: int = 8
    shade: bool = False
    neural: bool | None = None
    overwrite: bool = False


@dataclass
class AnimateResult:
    output: Path
    frames: int
    fps: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "output": str(self.output),
            "frames": self.frames,
            "fps": self.fps,
            "seconds": round(self.seconds, 3),
            "render_fps": round(self.frames / max(self.timings.get("render", 0) + 1e-9, 1e-9), 2),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": self.notes,
        }


def motion_poses(
    motion: str | os.PathLike, body, opts: MotionEdits
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Load and edit a motion file, then retarget it: pose (T, 55, 3), transl (T, 3), fps."""
    from avatarcli.motion import load_motion, retarget

    clip = load_motion(motion)
    if opts.start is not None or opts.end is not None:
        clip = clip.trim(opts.start, opts.end)
    if opts.fps:
        clip = clip.resample(opts.fps)
    if opts.loop > 1:
        clip = clip.loop(opts.loop)
    moved = retarget(clip, body, mapping=opts.mapping, in_place=opts.in_place)
    return moved.pose, moved.transl, float(moved.fps)


def clip_bounds(body, shape: torch.Tensor, pose: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
    """Bounding-box corners (8, 3) of the body over the whole clip (every frame up to 240)."""
    step = max(1, pose.shape[0] // 240)
    lo = torch.full((3,), math.inf)
    hi = torch.full((3,), -math.inf)
    for s in range(0, pose.shape[0], 32 * step):
        idx = torch.arange(s, min(s + 32 * step, pose.shape[0]), step)
        verts = body(shape=shape.expand(len(idx), -1), pose=pose[idx], transl=transl[idx]).vertices
        lo = torch.minimum(lo, verts.reshape(-1, 3).amin(0).cpu())
        hi = torch.maximum(hi, verts.reshape(-1, 3).amax(0).cpu())
    return torch.stack(
        [torch.stack([x, y, z]) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )


def clip_cameras(corners: torch.Tensor, yaws: list[float], size: int) -> Camera:
    """One camera per yaw around the clip's box, sharing the zoom that fits every yaw."""
    distinct = sorted(set(yaws))
    cams = framing_camera(corners, yaw_deg=distinct, size=size, fill=0.9)
    focal = cams.K[:, 0, 0].min()
    K = cams.K.clone()
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    index = torch.as_tensor([distinct.index(y) for y in yaws])
    return Camera(K[index], cams.R[index], cams.t[index], size, size)


def animate(
    avatar_path: str | os.PathLike,
    output: str | os.PathLike,
    opts: AnimateOptions | None = None,
    *,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> AnimateResult:
    """Render the avatar moving (``opts.motion``) or spinning (``opts.turntable``) into ``output``."""
    opts = opts or AnimateOptions()
    if not opts.motion and not opts.turntable:
        raise UserError("nothing to animate: pass --motion FILE, or --turntable for a 360° spin")
    if opts.size < 16 or opts.size > 4096:
        raise UserError(f"--size {opts.size} is out of range (16-4096 pixels)")
    device = torch.device(device)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    avatar, body = load_avatar_with_body(avatar_path, device)
    shape = avatar.shape.to(device)[None]
    t1 = time.perf_counter()
    timings["load"] = t1 - t0
    if opts.motion:
        pose, transl, fps = motion_poses(opts.motion, body, opts)
    else:
        fps = opts.fps or 30.0
        count = max(2, int(round(opts.turntable_seconds * fps)))
        pose = torch.zeros(count, NUM_JOINTS, 3)
        transl = torch.zeros(count, 3)
    pose, transl = pose.to(device), transl.to(device)
    frames = pose.shape[0]
    notes = _frame_count_notes(output, frames, opts.motion)
    timings["motion"] = time.perf_counter() - t1

    base_yaw = view_yaw(opts.view)
    spin = opts.turntable or opts.orbit
    yaws = [base_yaw + (360.0 * i / frames if spin else 0.0) for i in range(frames)]
    yaws = [round(y % 360.0, 4) for y in yaws]
    with torch.no_grad():
        cameras = clip_cameras(clip_bounds(body, shape, pose, transl), yaws, opts.size)
        background = parse_background(opts.background, (opts.size, opts.size))
        draw = make_frame_renderer(avatar, body, device, background, shade=opts.shade, neural=opts.neural)
        pose_time = render_time = write_time = 0.0
        with open_frame_sink(output, fps, overwrite=opts.overwrite) as sink:
            for s in range(0, frames, opts.batch):
                e = min(s + opts.batch, frames)
                ta = time.perf_counter()
                verts = body(shape=shape.expand(e - s, -1), pose=pose[s:e], transl=transl[s:e]).vertices
                tb = time.perf_counter()
                cam = Camera(cameras.K[s:e], cameras.R[s:e], cameras.t[s:e], opts.size, opts.size).to(device)
                images = draw(verts, cam)
                tc = time.perf_counter()
                for img in images:
                    sink.write(img)
                td = time.perf_counter()
                pose_time += tb - ta
                render_time += tc - tb
                write_time += td - tc
                if progress:
                    progress(e, frames, f"{e / max(td - t0, 1e-9):.1f} fps")
    timings.update(pose=pose_time, render=render_time, encode=write_time)
    return AnimateResult(Path(output), frames, fps, time.perf_counter() - t0, timings, notes)


def _frame_count_notes(output: str | os.PathLike, frames: int, motion: str | None) -> list[str]:
    """An image holds one pose (an error for a clip, before any rendering); a one-frame video
    plays as nothing in most players, so say how to get the pose as an image instead."""
    from avatarcli.media.writers import STILL_SUFFIXES

    target = Path(str(output).rstrip("/\\"))
    if target.suffix.lower() in STILL_SUFFIXES:
        if frames > 1:
            what = f"the motion {Path(motion).name} has" if motion else "a turntable has"
            raise UserError(
                f"{target.name} holds one image, but {what} {frames} frames; "
                "write .mp4, .gif or a folder of PNGs instead"
            )
        return []
    if frames == 1 and motion:
        return [
            f"{Path(motion).name} holds a single pose: the output has one frame "
            f"(-o {target.stem}.png writes it as an image)"
        ]
    return []
