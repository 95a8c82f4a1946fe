"""``avatar animate``: drive an avatar with a motion file, or spin it, into mp4/gif/PNGs."""

from __future__ import annotations

from pathlib import Path

import typer

from avatarcli.cli import motion_options


def register(app: typer.Typer) -> None:
    @app.command(
        help="Animate an avatar with a motion (FBX, BVH, AMASS/AIST++/SMPL-X, clip .npz) or a turntable."
    )
    def animate(
        avatar: Path = typer.Argument(..., help="Avatar file (.pt) from avatar create."),
        motion: Path = typer.Option(None, "--motion", "-m", help="Motion file to play."),
        output: Path = typer.Option(
            None,
            "-o",
            "--output",
            help="Output .mp4, .gif, folder (PNG frames), or .png for a one-pose motion.",
        ),
        turntable: bool = typer.Option(False, "--turntable", help="360° spin in the rest pose (no motion)."),
        view: str = typer.Option(
            "front", "--view", help="front, side, back, left, right or a yaw in degrees."
        ),
        orbit: bool = typer.Option(False, "--orbit", help="Camera circles the avatar while it moves."),
        size: int = typer.Option(512, "--size", help="Frame size in pixels (square)."),
        background: str = typer.Option(
            "white", "--background", help="Colour (white, #rrggbb, r,g,b) or image."
        ),
        fps: float = motion_options.FPS,
        start: float = motion_options.START,
        end: float = motion_options.END,
        loop: int = motion_options.LOOP,
        in_place: bool = motion_options.IN_PLACE,
        mapping: Path = motion_options.MAPPING,
        shade: bool = typer.Option(False, "--shade", help="Add simple lighting on top of the texture."),
        rgb: bool = typer.Option(False, "--rgb", help="Use the colour texture even if the avatar is neural."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, print_json, progress
        from avatarcli.pipelines.animate import AnimateOptions
        from avatarcli.pipelines.animate import animate as run
        from avatarcli.runtime import resolve_device, seed_everything

        seed_everything(state.seed)
        if output is None:
            stem = avatar.stem + (f"_{motion.stem}" if motion else "_turntable")
            output = avatar.with_name(stem + ".mp4")
        opts = AnimateOptions(
            motion=str(motion) if motion else None, turntable=turntable, view=view, orbit=orbit, size=size,
            background=background, fps=fps, start=start, end=end, loop=loop, in_place=in_place,
            mapping=str(mapping) if mapping else None, shade=shade, neural=False if rgb else None,
            overwrite=overwrite,
        )  # fmt: skip
        with progress() as bar:
            task = bar.add_task("rendering frames", total=None, status="")

            def report(done: int, total: int, status: str) -> None:
                bar.update(task, completed=done, total=total, status=status)

            result = run(avatar, output, opts, device=resolve_device(state.device), progress=report)
        if json_out:
            print_json(result.as_dict())
        else:
            console().print(
                f"wrote [bold]{result.output}[/] — "
                + (f"{result.frames} frames at {result.fps:g} fps" if result.frames > 1 else "one pose")
                + f" in {result.seconds:.1f} s"
            )
            for note in result.notes:
                console().print(f"  note: {note}")
