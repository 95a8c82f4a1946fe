"""``avatar doctor``: what this installation can do (device, packages, bodies, weights)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command(help="Report the device, package versions, body models and installed weights.")
    def doctor(
        smplx_dir: Path = typer.Option(None, "--smplx-dir", help="Folder with SMPL-X model files."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        from avatarcli.cli.app import state
        from avatarcli.cli.output import console, print_json
        from avatarcli.pipelines.doctor import OPTIONAL_PACKAGES, doctor_report

        report = doctor_report(smplx_dir=smplx_dir, device=state.device)
        if json_out:
            print_json(report)
            return
        from rich.table import Table

        con = console()
        dev = report["device"]
        con.print(f"[bold]avatarcli {report['version']}[/]  python {report['python']}")
        gpu = f" — {dev['gpu_name']} ({dev['gpu_memory_gb']:.1f} GB)" if dev.get("gpu_name") else ""
        con.print(f"device: [bold]{dev['selected']}[/] (CUDA available: {dev['cuda_available']}){gpu}")
        t = Table(title="body models", show_lines=False)
        for col in ("body", "status", "detail"):
            t.add_column(col)
        for b in report["bodies"]:
            t.add_row(
                b["name"], "[green]available[/]" if b["available"] else "[yellow]missing[/]", b["detail"]
            )
        con.print(t)
        w = Table(title="weights (manifest)")
        for col in ("name", "status", "file"):
            w.add_column(col)
        for entry in report["weights"]:
            w.add_row(entry["name"], entry["status"], entry.get("file", ""))
        if not report["weights"]:
            w.add_row("—", "none installed", "see weights/README.md; the default path needs none")
        con.print(w)
        p = Table(title="packages")
        p.add_column("package")
        p.add_column("version")
        for name, ver in report["packages"].items():
            p.add_row(name, ver or "[red]not installed[/]")
        for name, ver in report["optional_packages"].items():
            p.add_row(name, ver or f"[dim]not installed — optional: {OPTIONAL_PACKAGES[name]}[/]")
        con.print(p)
