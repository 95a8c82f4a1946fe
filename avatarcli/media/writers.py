"""Frame sinks that stream to disk and only appear under their final name when complete.

``open_frame_sink("out.mp4", fps=30)`` picks the format from the extension: ``.mp4``/``.mov``
(H.264 through the ffmpeg bundled in imageio-ffmpeg), ``.gif``, a folder of PNGs (a path
with no suffix or ending in ``/``), or one ``.png``/``.jpg`` image (a single pose). Frames are
written as they come (memory stays flat in the number of frames, except GIF, whose encoder keeps
the palette frames until it closes); on success the temporary file or folder is renamed onto the
target, on any error it is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from avatarcli.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
#: one frame only: a motion file that holds a single pose
STILL_SUFFIXES = (".png", ".jpg", ".jpeg")
NAMED_COLOURS = {
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "grey": (0.5, 0.5, 0.5),
    "gray": (0.5, 0.5, 0.5),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
}


def parse_background(spec: str | None, size: tuple[int, int]) -> tuple[float, float, float] | np.ndarray:
    """``white``/``#rrggbb``/``r,g,b`` (0-255) → RGB floats, or an image path → (H, W, 3) floats."""
    if spec is None or spec == "":
        return NAMED_COLOURS["white"]
    s = spec.strip().lower()
    if s in NAMED_COLOURS:
        return NAMED_COLOURS[s]
    if s.startswith("#") and len(s) == 7:
        try:
            return tuple(int(s[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    parts = s.split(",")
    if len(parts) == 3:
        try:
            vals = [float(p) for p in parts]
            return tuple(v / 255 if max(vals) > 1 else v for v in vals)  # type: ignore[return-value]
        except ValueError:
            pass
    path = Path(spec).expanduser()
    if path.is_file():
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im = im.convert("RGB").resize(size, Image.BICUBIC)
                return np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"background image {path} cannot be read ({exc})") from exc
    raise UserError(
        f"background {spec!r} is neither a colour (white, #rrggbb, r,g,b) nor an existing image file"
    )


class FrameSink(ABC):
    """Base class: ``write(frame)`` for (H, W, 3) uint8 frames, ``close()`` to finish atomically."""

    def __init__(self, target: Path, overwrite: bool) -> None:
        self.target = target
        if target.exists() and not overwrite:
            raise UserError(f"{target} already exists; pass --overwrite to replace it")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create output folder {target.parent}: {exc.strerror}") from exc
        if not os.access(target.parent, os.W_OK):
            raise UserError(f"output folder {target.parent} is not writable; choose another with -o")
        self.frames = 0

    @abstractmethod
    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 frame."""

    @abstractmethod
    def _finish(self) -> None:
        """Complete the output and move it onto the target name."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove every temporary trace of the output."""

    def close(self, ok: bool = True) -> None:
        if ok and self.frames:
            self._finish()
        else:
            self._discard()

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


class _ImageioSink(FrameSink):
    def __init__(self, target: Path, fps: float, overwrite: bool) -> None:
        super().__init__(target, overwrite)
        import imageio.v2 as imageio

        fd, name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=".part" + target.suffix, dir=target.parent
        )
        os.close(fd)
        self.tmp = Path(name)
        if target.suffix.lower() == ".gif":
            self.writer = imageio.get_writer(self.tmp, mode="I", duration=1000.0 / fps, loop=0)
        else:
            self.writer = imageio.get_writer(
                self.tmp, fps=fps, codec="libx264", pixelformat="yuv420p", quality=8, macro_block_size=2
            )

    def write(self, frame: np.ndarray) -> None:
        self.writer.append_data(np.ascontiguousarray(frame))
        self.frames += 1

    def _finish(self) -> None:
        from avatarcli.io_utils import publish

        self.writer.close()
        publish(self.tmp, self.target)

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


class _PngFolderSink(FrameSink):
    def __init__(self, target: Path, overwrite: bool) -> None:
        super().__init__(target, overwrite)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))

    def write(self, frame: np.ndarray) -> None:
        from PIL import Image

        Image.fromarray(frame).save(self.tmp / f"frame_{self.frames:05d}.png")
        self.frames += 1

    def _finish(self) -> None:
        from avatarcli.io_utils import publish

        if self.target.exists():
            shutil.rmtree(self.target) if self.target.is_dir() else self.target.unlink()
        publish(self.tmp, self.target)

    def _discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _StillSink(FrameSink):
    """One image: the frame of a single-pose motion."""

    def __init__(self, target: Path, overwrite: bool) -> None:
        super().__init__(target, overwrite)
        self.frame: np.ndarray | None = None

    def write(self, frame: np.ndarray) -> None:
        if self.frames:
            raise UserError(
                f"{self.target} holds one image, but more frames came; write .mp4, .gif or a folder"
            )
        self.frame = np.ascontiguousarray(frame)
        self.frames = 1

    def _finish(self) -> None:
        from PIL import Image

        from avatarcli.io_utils import atomic_write

        kind = "PNG" if self.target.suffix.lower() == ".png" else "JPEG"
        with atomic_write(self.target) as tmp:  # the existing file was checked when opened
            Image.fromarray(self.frame).save(tmp, format=kind, quality=95)

    def _discard(self) -> None:
        self.frame = None


def open_frame_sink(path: str | os.PathLike, fps: float, *, overwrite: bool = False) -> FrameSink:
    """A sink for ``path``: video by suffix (.mp4/.mov/.mkv), .gif, one .png/.jpg image, else a
    PNG folder."""
    raw = str(path)
    target = Path(raw.rstrip("/\\"))
    suffix = target.suffix.lower()
    if raw.endswith(("/", "\\")) or suffix == "":
        return _PngFolderSink(target, overwrite)
    if suffix in VIDEO_SUFFIXES or suffix == ".gif":
        return _ImageioSink(target, fps, overwrite)
    if suffix in STILL_SUFFIXES:
        return _StillSink(target, overwrite)
    raise UserError(
        f"unknown output type {suffix!r} for {target}; use .mp4, .gif, a folder name, or .png for one pose"
    )
