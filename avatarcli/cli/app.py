"""The typer application: global options and command registration.

Nothing heavy is imported here or in the command modules at import time, so that
``avatar --help`` stays instant; each command imports its pipeline when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import typer

from avatarcli._version import __version__


@dataclass
class CliState:
    """Global options shared by every command."""

    device: str = "auto"
    seed: int = 0
    verbose: bool = False
    quiet: bool = False


state = CliState()

app = typer.Typer(
    name="avatar",
    help="Turn photos of people into rigged, animatable full-body avatars, and render them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"avatarcli {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed repeats a run exactly."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="More output; tracebacks on errors."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and final results."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    if device.lower() not in ("auto", "cpu") and not device.lower().startswith("cuda"):
        raise typer.BadParameter(f"unknown device {device!r}; use auto, cpu or cuda", param_hint="--device")
    state.device, state.seed, state.verbose, state.quiet = device.lower(), seed, verbose, quiet


def _register() -> None:
    from avatarcli.cli import cmd_doctor

    cmd_doctor.register(app)
    import importlib

    for name in (
        "cmd_weights", "cmd_fit", "cmd_create", "cmd_render", "cmd_animate", "cmd_export", "cmd_sample",
    ):  # fmt: skip
        try:
            module = importlib.import_module(f"avatarcli.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"avatarcli.cli.{name}":
                raise
            continue
        module.register(app)


_register()
