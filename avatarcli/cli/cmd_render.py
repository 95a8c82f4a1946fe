"""``avatar render``: one still image of an avatar."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command(help="Render one image of an avatar (input view/pose reproduces the source photo).")
    def render(
        avatar: Path = typer.Argument(..., help="Avatar file (.pt)."),
        output: Path = typer.Option(..., "-o", "--output", help="Output .png or .jpg."),
        view: str = typer.Option(
            "front",
            "--view",
            help="input (the camera of the pose's photo), front, side, back, left, right or yaw degrees.",
        ),
        pose: str = typer.Option(
            "rest",
            "--pose",
            help="input (the avatar's photo's pose), rest, or a photo / .fit.json whose pose it takes.",
        ),
        size: int = typer.Option(512, "--size", help="Image size for non-input views."),
        background: str = typer.Option("white", "--background", help="Colour or image file."),
        input_index: int = typer.Option(0, "--input-index", help="Which input view, for multi-view avatars."),
        shade: bool = typer.Option(False, "--shade", help="Add simple lighting."),
        rgb: bool = typer.Option(False, "--rgb", help="Use the colour texture even if the avatar is neural."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, progress, stage_progress
        from avatarcli.pipelines.render_still import render_still
        from avatarcli.runtime import resolve_device, seed_everything

        seed_everything(state.seed)
        with progress() as bar:  # only a photo given as --pose takes long (its fit)
            path = render_still(
                avatar, output, view=view, pose=pose, size=size, background=background,
                input_index=input_index, shade=shade, neural=False if rgb else None, overwrite=overwrite,
                device=resolve_device(state.device), progress=stage_progress(bar, "fit: {}"),
            )  # fmt: skip
        console().print(f"wrote [bold]{path}[/]")
