"""``sgnlake check``: the lake fsck (metadata, commit state, every committed chunk).

Exit codes: 0 clean, 1 problems found, 2 usage errors (not a lake, newer
schema, bad option).
"""

from __future__ import annotations

import json
import sys

import typer

from .options import lake_arg, storage_opt


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        lake: str = lake_arg(),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
        quick: bool = typer.Option(
            False, "--quick", help="Check metadata and commit state only; do not decode chunks."
        ),
        workers: int = typer.Option(4, "--workers", min=1, max=64, help="Chunks read concurrently."),
        storage_option: list[str] = storage_opt(),
        progress: bool = typer.Option(
            True, "--progress/--no-progress", help="Show a progress bar on stderr (when it is a terminal)."
        ),
        fix: bool = typer.Option(
            False,
            "--fix",
            help="Remove orphan results and checkpoints (of runs no longer in the lake) and unfinished "
            "results, saying what was removed; then check. Not while results are being computed.",
        ),
    ) -> None:
        """Check a lake: schema version, each run's commit state, attrs, results, checkpoints,
        and that every committed chunk decodes.

        Prints a readable report (or JSON with --json). Exits 0 when the lake is clean,
        1 when problems were found, 2 on usage errors.
        """
        from sgnlake.schema.check import check_lake
        from sgnlake.schema.store import parse_storage_options

        options = parse_storage_options(storage_option)
        if fix:
            from sgnlake.schema.lifecycle import fix_lake

            fixed = fix_lake(lake, storage_options=options)
            for line in fixed.lines():
                typer.echo(line, err=as_json)
            if not fixed.removed:
                typer.echo("nothing to fix", err=as_json)
        bar = None
        show = progress and not as_json and sys.stderr.isatty()

        def on_total(n: int) -> None:
            nonlocal bar
            if show:
                from tqdm import tqdm

                bar = tqdm(total=n, unit="chunk", desc="check", file=sys.stderr, leave=False)

        def tick(n: int) -> None:
            if bar is not None:
                bar.update(n)

        try:
            report = check_lake(
                lake,
                storage_options=options,
                read_data=not quick,
                workers=workers,
                progress=tick,
                on_total=on_total,
            )
        finally:
            if bar is not None:
                bar.close()
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            typer.echo(report.format_text())
        if not report.ok:
            raise typer.Exit(1)
