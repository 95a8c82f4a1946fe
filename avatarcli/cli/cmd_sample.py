"""``avatar sample``: random avatars from the StylePeople generator."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command(help="Sample random avatars from the StylePeople generator (needs its weights).")
    def sample(
        n: int = typer.Option(8, "-n", help="How many avatars."),
        output: Path = typer.Option(Path("samples"), "-o", "--output", help="Output folder."),
        truncation: float = typer.Option(
            0.7, "--truncation", help="0 = the average person, 1 = full variety."
        ),
        body: str = typer.Option("anny", "--body", help="Body model: anny or smplx."),
        smplx_dir: Path = typer.Option(None, "--smplx-dir", help="Folder with SMPL-X model files."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, print_json, progress
        from avatarcli.pipelines.sample import sample_avatars
        from avatarcli.runtime import resolve_device

        with progress() as bar:
            task = bar.add_task("sampling", total=n, status="")
            results = sample_avatars(
                n, output, seed=state.seed, truncation=truncation, body_name=body,
                smplx_dir=str(smplx_dir) if smplx_dir else None, overwrite=overwrite,
                device=resolve_device(state.device), progress=lambda d, t: bar.update(task, completed=d),
            )  # fmt: skip
        if json_out:
            print_json(results)
        else:
            for r in results:
                console().print(f"wrote [bold]{r['avatar']}[/] (seed {r['seed']}) and {r['preview']}")
