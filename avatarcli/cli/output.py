"""Console helpers: rich output on stderr, machine-readable JSON on stdout, progress bars."""

from __future__ import annotations

import json
import sys
from typing import Any


def console():
    from rich.console import Console

    from avatarcli.cli.app import state

    return Console(stderr=True, quiet=state.quiet, highlight=False)


def say_not_photos(con, extras) -> None:
    """Name the input files left out of the photos (masks, keypoints, previews kept beside them)."""
    if extras:
        more = f" and {len(extras) - 4} more" if len(extras) > 4 else ""
        names = ", ".join(p.name for p in extras[:4]) + more
        con.print(f"[dim]not taken for photos (kept beside them): {names}[/]")


def print_json(data: Any) -> None:
    """One JSON object on stdout (nothing else goes to stdout with --json)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def progress():
    """A rich progress bar (hidden with --quiet) for long steps."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console(),
        transient=False,
    )


def stage_progress(bar, label: str = "  {}"):
    """``report(stage, done, total)`` for ``bar``: one bar per stage name, labelled ``label``."""
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(label.format(stage), total=total, status="")
        bar.update(tasks[stage], completed=done, total=total)

    return report
