"""``avatar weights list|verify|import``: the local neural-weights registry (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import typer

weights_app = typer.Typer(
    help="List, verify and import neural weights (never downloaded).", no_args_is_help=True
)


def _table(statuses, title: str) -> None:
    from rich.table import Table

    from avatarcli.cli.output import console

    t = Table(title=title)
    for col in ("name", "status", "detail"):
        t.add_column(col)
    colour = {"present": "green", "missing": "yellow", "mismatch": "red"}
    for s in statuses:
        t.add_row(s.name, f"[{colour.get(s.status, 'white')}]{s.status}[/]", s.detail)
    console().print(t)


@weights_app.command("list", help="Show the weights the tool knows, and which are installed.")
def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    from avatarcli.cli.output import print_json
    from avatarcli.weights_registry import list_weights, weights_dir

    statuses = list_weights()
    if json_out:
        print_json({"folder": str(weights_dir()), "weights": [s.to_json() for s in statuses]})
    else:
        _table(statuses, f"weights in {weights_dir()}")


@weights_app.command("verify", help="Check every installed file's size and sha256 against the manifest.")
def verify_cmd(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    from avatarcli.cli.output import print_json
    from avatarcli.errors import UserError
    from avatarcli.weights_registry import verify_weights, weights_dir

    statuses = verify_weights()
    if json_out:
        print_json({"folder": str(weights_dir()), "weights": [s.to_json() for s in statuses]})
    else:
        _table(statuses, f"verified weights in {weights_dir()}")
    bad = [s.name for s in statuses if s.status == "mismatch"]
    if bad:
        raise UserError(f"{', '.join(bad)} do not match the manifest; re-import them (avatar weights import)")


@weights_app.command("import", help="Convert an official checkpoint into our safetensors files.")
def import_cmd(
    kind: str = typer.Argument(..., help="Which model family: dinar, stylepeople or lpips."),
    checkpoint: Path = typer.Argument(
        ..., help="Official checkpoint (.ckpt / generative_model.pth; lpips: vgg16-397923af.pth)."
    ),
    second: Path = typer.Argument(None, help="lpips only: the lpips package's weights/v0.1/vgg.pth."),
    encoder: Path = typer.Option(None, "--encoder", help="StylePeople encoder.pth (optional)."),
    encoder_config: Path = typer.Option(
        None, "--encoder-config", help="StylePeople encoder_config.yaml describing --encoder (optional)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    from dataclasses import asdict

    from avatarcli.cli.output import console, print_json
    from avatarcli.errors import UserError
    from avatarcli.weights_registry import weights_dir

    con = console()
    if second is not None and kind != "lpips":
        raise UserError(f"{kind} takes one checkpoint; the second file ({second}) is for lpips")
    if kind == "dinar":
        from avatarcli.weights_registry import import_dinar

        report = import_dinar(checkpoint, progress=lambda msg: con.print(f"  {msg}"))
        names, notes = [e.name for e in report.entries], report.notes
    elif kind == "stylepeople":
        from avatarcli.nets.sp_checkpoint import import_stylepeople

        report = import_stylepeople(checkpoint, weights_dir(), encoder=encoder, encoder_config=encoder_config)
        names, notes = [e.name for e in report.entries], report.notes
    elif kind == "lpips":
        from avatarcli.weights_registry import import_lpips

        if second is None:
            raise UserError("lpips needs two files: avatar weights import lpips vgg16-397923af.pth vgg.pth")
        report = import_lpips(checkpoint, second, weights_dir())
        names, notes = [e.name for e in report.entries], report.notes
    else:
        raise UserError(f"unknown weights family {kind!r}; supported: dinar, stylepeople, lpips")
    if json_out:
        print_json({"imported": names, "notes": notes, "entries": [asdict(e) for e in report.entries]})
    else:
        con.print(f"imported [bold]{checkpoint}[/] → {', '.join(names)} in {weights_dir()}")
        for note in notes:
            con.print(f"  note: {note}")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
