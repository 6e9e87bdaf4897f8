"""``sgnlake rm``: delete runs with their derived results and resume checkpoints."""

from __future__ import annotations

import sys

import typer

_HELP = """Delete runs from lake LAKE, each with its results and resume checkpoint.

Refuses a run that a collector is writing (it holds the run's lease); a run left
with status running by a crashed collector needs --force. Asks for confirmation
on a terminal; pass --yes to skip the question (needed when stdin is not a
terminal).
"""


def register(app: typer.Typer) -> None:
    """Add the ``rm`` command to ``app``."""

    @app.command("rm", help=_HELP)
    def rm(
        lake: str = typer.Argument(..., metavar="LAKE", help="Lake path or fsspec URL."),
        runs: list[str] = typer.Argument(..., metavar="RUN...", help="Run ids to delete."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
        force: bool = typer.Option(
            False,
            "--force",
            help="Delete a run left with status running by a crashed collector (a live collector always refuses).",
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be deleted."),
        storage_option: list[str] = typer.Option(
            None, "--storage-option", "-o", help="fsspec storage option key=value (repeatable)."
        ),
    ) -> None:
        from sgnlake.schema.lifecycle import remove_runs
        from sgnlake.schema.store import parse_storage_options

        options = parse_storage_options(storage_option)
        plan = remove_runs(lake, runs, storage_options=options, force=force, dry_run=True)
        typer.echo("would delete:" if dry_run else "to delete:")
        for path in plan:
            typer.echo(f"  {path}")
        if dry_run:
            return
        if not yes:
            if not sys.stdin.isatty():
                typer.echo(
                    "error: not deleting without confirmation: pass --yes (stdin is not a terminal)", err=True
                )
                raise typer.Exit(2)
            if not typer.confirm(f"delete {len(runs)} run(s) from {lake}?", default=False):
                typer.echo("nothing deleted")
                raise typer.Exit(1)
        removed = remove_runs(lake, runs, storage_options=options, force=force)
        typer.echo(f"deleted {len(removed)} path(s) of {len(set(runs))} run(s) from {lake}")
