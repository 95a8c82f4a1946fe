"""``avatar fit``: perception + body fitting alone (fit files + overlay previews + quality)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command(help="Fit the body to photos of one person; writes fit files and overlay previews.")
    def fit(
        photos: list[Path] = typer.Argument(..., help="One or more photos of the same person."),
        output: Path = typer.Option(Path("fit"), "-o", "--output", help="Output folder."),
        body: str = typer.Option("anny", "--body", help="anny (bundled) or smplx (your model files)."),
        smplx_dir: Path = typer.Option(None, "--smplx-dir", help="Folder with SMPL-X model files."),
        iters: int = typer.Option(400, "--iters", help="Optimisation iterations."),
        mask: Path = typer.Option(None, "--mask", help="Person mask image (one photo only)."),
        keypoints: Path = typer.Option(None, "--keypoints", help="OpenPose JSON (one photo only)."),
        sidecars: bool = typer.Option(
            True, "--sidecars/--no-sidecars", help="Read a mask / OpenPose JSON kept beside each photo."
        ),
        dinar_camera: bool = typer.Option(False, "--dinar-camera", help="Use DINAR's f=5000px/512 camera."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing fit files."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, print_json, progress, say_not_photos, stage_progress
        from avatarcli.pipelines.create import split_inputs
        from avatarcli.pipelines.fit import fit_photos
        from avatarcli.runtime import resolve_device, seed_everything

        seed_everything(state.seed)
        inputs, extras = split_inputs(photos)
        say_not_photos(console(), extras)
        with progress() as bar:
            report = stage_progress(bar, "fit: {}")
            result = fit_photos(
                inputs, output, body_name=body, smplx_dir=str(smplx_dir) if smplx_dir else None, iters=iters,
                mask=str(mask) if mask else None, keypoints=str(keypoints) if keypoints else None,
                sidecars=sidecars, dinar_camera=dinar_camera, seed=state.seed, overwrite=overwrite,
                device=resolve_device(state.device), progress=report,
            )  # fmt: skip
        if json_out:
            print_json(result.as_dict())
            return
        con = console()
        for path, q in zip(result.fit_files, result.quality, strict=True):
            iou = q.get("silhouette_iou")
            iou_s = f"IoU {iou:.3f}" if iou is not None else "IoU n/a"
            con.print(
                f"wrote [bold]{path}[/]: {iou_s}, keypoint error {q['keypoint_error_pct']:.2f} % of height"
            )
        for w in result.warnings:
            con.print(f"[yellow]warning:[/] {w}")
