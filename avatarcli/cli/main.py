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


#: options of the ``avatar`` group (:mod:`avatarcli.cli.app`) that users also write after the
#: command; no command has an option of these names
_GLOBAL_WITH_VALUE = ("--seed", "--device")
_GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")


def hoist_global_options(args: list[str]) -> list[str]:
    """``avatar create x.jpg --seed 3`` means ``avatar --seed 3 create x.jpg``: global options
    written after the command move in front of it (nothing after a ``--`` moves)."""
    head: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):  # options before the command stay put
        head.append(args[i])
        takes_value = args[i] in _GLOBAL_WITH_VALUE
        i += 1
        if takes_value and i < len(args):
            head.append(args[i])
            i += 1
    hoisted, tail = [], []
    while i < len(args):
        token = args[i]
        if token == "--":
            tail.extend(args[i:])
            break
        if token in _GLOBAL_WITH_VALUE and i + 1 < len(args):
            hoisted.extend(args[i : i + 2])
            i += 2
            continue
        if token in _GLOBAL_FLAGS or token.startswith(tuple(f"{o}=" for o in _GLOBAL_WITH_VALUE)):
            hoisted.append(token)
        else:
            tail.append(token)
        i += 1
    return head + hoisted + tail


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
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
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
