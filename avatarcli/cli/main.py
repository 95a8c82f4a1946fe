"""Entry point: run the typer app and turn exceptions into one-line messages and exit codes.

Exit codes: 0 success, 2 user error (bad input, missing weights, usage), 1 unexpected error
(with a hint to rerun with ``-v`` for the traceback), 130 interrupted.
"""

from __future__ import annotations

import sys


def _print_error(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")


def main(argv: list[str] | None = None) -> int:
    """Run ``avatar``; returns (and, as a console script, exits with) the exit code."""
    import typer

    try:  # recent typer vendors click as typer._click; older releases use click itself
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException, NoArgsIsHelpError

    from avatarcli.cli.app import app, state
    from avatarcli.errors import UserError

    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name="avatar", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        _print_error("interrupted")
        code = 130
    except NoArgsIsHelpError as exc:  # bare `avatar`: show help, not an error
        exc.show()
        code = 0
    except ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        code = 2
    except UserError as exc:
        _print_error(str(exc))
        code = exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted; finished outputs are intact, nothing half-written was kept")
        code = 130
    except Exception as exc:  # a bug: short message, traceback only with -v
        if state.verbose:
            import traceback

            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _print_error(f"unexpected {type(exc).__name__}: {first}")
        if not state.verbose:
            print("rerun with -v for the full traceback, and please report it", file=sys.stderr)
        code = 1
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
