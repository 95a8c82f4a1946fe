"""``avatar export``: an avatar as a rigged, textured .glb (optionally with a motion)."""

from __future__ import annotations

from pathlib import Path

import typer

from avatarcli.cli import motion_options


def register(app: typer.Typer) -> None:
    @app.command(help="Export an avatar as a rigged, textured glTF (.glb) for Blender, Unity, three.js.")
    def export(
        avatar: Path = typer.Argument(..., help="Avatar file (.pt) from avatar create."),
        output: Path = typer.Option(
            None, "-o", "--output", help="Output .glb (default: next to the avatar)."
        ),
        motion: Path = typer.Option(
            None, "--motion", "-m", help="Motion to include as the file's animation."
        ),
        fps: float = motion_options.FPS,
        start: float = motion_options.START,
        end: float = motion_options.END,
        loop: int = motion_options.LOOP,
        in_place: bool = motion_options.IN_PLACE,
        mapping: Path = motion_options.MAPPING,
        influences: int = typer.Option(
            4, "--influences", help="Joints per vertex: 4 (every viewer) or 8 (exact; Blender, not three.js)."
        ),
        refine_steps: int = typer.Option(
            0,
            "--refine-steps",
            help="Rebuild the texture from the kept photos, refined N steps (64: sharper).",
        ),
        corrective_shapes: bool = typer.Option(
            None,
            "--corrective-shapes/--no-corrective-shapes",
            help="Bake the clip's pose-corrective shapes into morph targets so viewers pose the mesh "
            "as avatar animate does (default: on for SMPL-X; on for anny corrects 4-influence skinning).",
            show_default=False,
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, print_json, progress
        from avatarcli.pipelines.export import ExportOptions, export_glb
        from avatarcli.runtime import seed_everything

        seed_everything(state.seed)
        if output is None:
            output = avatar.with_name(avatar.stem + (f"_{motion.stem}" if motion else "") + ".glb")
        opts = ExportOptions(
            motion=str(motion) if motion else None, fps=fps, start=start, end=end, loop=loop,
            in_place=in_place, mapping=str(mapping) if mapping else None, overwrite=overwrite,
            influences=influences, refine_steps=refine_steps, corrective_shapes=corrective_shapes,
        )  # fmt: skip
        with progress() as bar:
            task = bar.add_task("exporting", total=5, status="")

            def report(done: int, total: int, status: str) -> None:
                bar.update(task, completed=done, total=total, status=status)

            result = export_glb(avatar, output, opts, progress=report)
        if json_out:
            print_json(result.as_dict())
            return
        line = f"wrote [bold]{result.output}[/] — {result.vertices} vertices, {result.joints} joints"
        if result.frames:
            line += f", {result.frames} frames at {result.fps:g} fps"
        if result.morph_targets:
            line += f", {result.morph_targets} corrective morph targets"
        console().print(line + f" (preview {result.preview})")
        for note in result.notes:
            console().print(f"  note: {note}")
