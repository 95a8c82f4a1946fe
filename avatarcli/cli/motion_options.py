"""The motion-editing options ``avatar animate`` and ``avatar export`` share: one definition, so
their flags and help cannot drift apart (they fill :class:`~avatarcli.pipelines.animate.MotionEdits`)."""

from __future__ import annotations

from pathlib import Path

import typer

FPS: float = typer.Option(None, "--fps", help="Resample the motion to this frame rate.")
START: float = typer.Option(None, "--start", help="Start time in seconds.")
END: float = typer.Option(None, "--end", help="End time in seconds.")
LOOP: int = typer.Option(1, "--loop", help="Play the motion this many times.")
IN_PLACE: bool = typer.Option(False, "--in-place", help="Remove horizontal root motion.")
MAPPING: Path = typer.Option(None, "--mapping", help="JSON/YAML joint map {source: smplx_joint}.")
