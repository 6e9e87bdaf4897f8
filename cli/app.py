"""The ``sgnlake`` Typer application and its error handling.

Each command group lives in a module of this package that defines
``register(app)``; this module only assembles them. Every
:class:`~sgnlake.schema.errors.SgnlakeError` is printed as one line
``error: ...`` on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from sgnlake.schema.errors import SgnlakeError

app = typer.Typer(
    name="sgnlake",
    help=(
        "sgnlake: a data lake for stochastic gradient noise (SGN).\n\n"
        "Collect per-parameter SGN from SGD training into a Zarr v3 lake, then analyse its "
        "tail index lazily with xarray and Dask."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

#: Command modules; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "demo_cmd",  # sgnlake demo: the README's main job
    "collect_cmd",  # sgnlake collect
    "ls_cmd",  # sgnlake ls
    "alpha_cmd",  # sgnlake alpha
    "report_cmd",  # sgnlake report
    "validate_cmd",  # sgnlake validate-estimators
    "sweep_cmd",  # sgnlake sweep
    "check_cmd",  # sgnlake check
    "copy_cmd",  # sgnlake copy
    "rm_cmd",  # sgnlake rm
    "export_cmd",  # sgnlake export
)


def version() -> str:
    """The installed sgnlake version (``unknown`` when not installed as a package)."""
    import importlib.metadata as md

    try:
        return md.version("sgnlake")
    except md.PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sgnlake {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print the sgnlake version and exit.",
    ),
) -> None:
    """sgnlake: a data lake for stochastic gradient noise (SGN).

    Collect per-parameter SGN from SGD training into a Zarr v3 lake, then analyse its
    tail index lazily with xarray and Dask.
    """


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{name}":
                continue
            raise
        mod.register(app)
    from .options import ClickStyleCommand

    for info in app.registered_commands:  # Click-style usage and metavars in every --help
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = ClickStyleCommand


_register_all()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return an Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


try:  # typer >= 0.24 vendors click as typer._click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``sgnlake`` console script.

    Usage errors (unknown option, bad option value, missing argument) are printed
    as one line ``error: ... (see 'sgnlake CMD --help')`` with exit code 2, like
    every :class:`~sgnlake.schema.errors.SgnlakeError`.
    """
    try:
        code = app(args=argv, prog_name="sgnlake", standalone_mode=False)
    except NoArgsIsHelpError as e:  # `sgnlake` or a group alone: the help text, as click prints it
        typer.echo(e.ctx.get_help() if e.ctx is not None else e.format_message(), err=True)
        sys.exit(2)
    except UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "sgnlake"
        typer.echo(f"error: {e.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except SgnlakeError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
