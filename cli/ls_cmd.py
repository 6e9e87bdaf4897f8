"""``sgnlake ls``: list the runs of a lake (metadata and stored sizes only; no torch)."""

from __future__ import annotations

import json

import typer

from .options import lake_arg, storage_opt


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls_cmd(
        lake: str = lake_arg(),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list of runs instead of a table."),
        storage_option: list[str] | None = storage_opt(),
    ) -> None:
        """List the runs of a lake: id, model, dataset, batch, snapshots, status, stored size, ratio.

        A run whose metadata is damaged is listed with status 'damaged' and named on stderr
        (run and file, one line each); the exit code is then 2.
        """
        from sgnlake.schema.errors import SgnlakeError
        from sgnlake.schema.inventory import format_table, list_runs
        from sgnlake.schema.store import parse_storage_options

        from .app import fail

        try:
            rows = list_runs(lake, storage_options=parse_storage_options(storage_option))
        except SgnlakeError as e:
            raise fail(str(e)) from None
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        elif not rows:
            typer.echo("the lake has no runs yet")
        else:
            typer.echo(format_table(rows))
        damaged = [r for r in rows if r.get("status") == "damaged"]
        for r in damaged:
            typer.echo(f"error: {r['damage']}", err=True)
        if damaged:
            raise typer.Exit(2)
