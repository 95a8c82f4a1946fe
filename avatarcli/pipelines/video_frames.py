"""Frames for a video avatar: decode a clip (or take a list of images), subsample, write PNGs.

Perception takes file paths (it hashes them for its cache), so decoded frames are written to a
folder the caller owns. Decoding goes through imageio (its bundled ffmpeg for mp4/mov/webm,
Pillow for GIF); anything it cannot read becomes an :class:`~avatarcli.errors.InputFileError`
naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatarcli.errors import InputFileError, UserError

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v"}


@dataclass
class FrameList:
    """The frames an avatar is made from: image paths and their index in the source."""

    paths: list[Path]
    source_index: list[int]
    source: str  # the video path, or "frames"
    total: int  # frames in the source before subsampling


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def subsample(count: int, every: int, max_frames: int) -> list[int]:
    """Every ``every``-th index of ``count``, then thinned evenly to at most ``max_frames``."""
    if every < 1 or max_frames < 1:
        raise UserError("--every and --max-frames must be ≥ 1")
    picked = list(range(0, count, every))
    if len(picked) > max_frames:
        spots = np.linspace(0, len(picked) - 1, max_frames).round().astype(int)
        picked = [picked[i] for i in sorted(set(spots.tolist()))]
    return picked


def _read_video(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    if not path.is_file():
        raise InputFileError(f"{path}: no such video file")
    try:
        if path.suffix.lower() == ".gif":
            frames = imageio.mimread(path, memtest=False)
        else:
            with imageio.get_reader(path, format="FFMPEG") as reader:
                frames = [frame for frame in reader]
    except Exception as exc:  # imageio/ffmpeg/Pillow raise many types for damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(
            f"{path}: cannot decode the video ({first}); is it a complete video file?"
        ) from exc
    if not frames:
        raise InputFileError(f"{path}: the video has no frames")
    return [_as_rgb(np.asarray(f)) for f in frames]


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3]).astype(np.uint8)


def collect_frames(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    folder: Path,
    *,
    every: int = 1,
    max_frames: int = 60,
) -> FrameList:
    """A video path → subsampled frames written as PNGs into ``folder``; a list of images → itself
    (subsampled the same way)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UserError("no input video or frames given")
    if len(paths) == 1 and is_video(paths[0]):
        import imageio.v2 as imageio

        frames = _read_video(paths[0])
        picked = subsample(len(frames), every, max_frames)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for i in picked:
            target = folder / f"frame_{i:05d}.png"
            imageio.imwrite(target, frames[i])
            out.append(target)
        return FrameList(out, picked, str(paths[0]), len(frames))
    videos = [p for p in paths if is_video(p)]
    if videos:
        raise UserError(f"give one video, or image frames, not both ({videos[0]})")
    for p in paths:
        if not p.is_file():
            raise InputFileError(f"{p}: no such file")
    picked = subsample(len(paths), every, max_frames)
    return FrameList([paths[i] for i in picked], picked, "frames", len(paths))
