"""``sgnlake export``: the alpha summary to CSV / Parquet, alpha to netCDF / Zarr."""

from __future__ import annotations

import typer

from .options import parse_runs, runs_opt

_HELP = """Export from lake LAKE to OUT; the format follows OUT's suffix.

  .csv, .parquet  the alpha summary (one row per run, iteration and group;
                  Parquet needs pyarrow)
  .nc, .zarr      alpha per parameter, dims (run, iteration, param), with the
                  runs' config as coordinates

Stored results are used where present, the rest is computed (not stored).
"""


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command("export", help=_HELP)
    def export(
        lake: str = typer.Argument(..., metavar="LAKE", help="Lake path or fsspec URL."),
        out: str = typer.Argument(..., metavar="OUT", help="Output file: .csv, .parquet, .nc or .zarr."),
        runs: list[str] = runs_opt(),
        estimator: str = typer.Option("mohammadi", "--estimator", "-e", help="Estimator of alpha."),
        by: str = typer.Option("module", "--by", help="Summary grouping: module, tensor, kind or model."),
        tensor: str = typer.Option(None, "--tensor", help="Alpha of this tensor only (.nc, .zarr)."),
        storage_option: list[str] = typer.Option(
            None, "--storage-option", "-o", help="fsspec storage option key=value (repeatable)."
        ),
    ) -> None:
        from sgnlake.analyze.export import export_alpha, export_format, export_summary
        from sgnlake.analyze.lake import open_lake
        from sgnlake.schema.store import parse_storage_options

        what, fmt = export_format(out)
        opened = open_lake(lake, parse_storage_options(storage_option), read_only=True)
        if what == "summary":
            df = export_summary(opened, out, parse_runs(runs), by=by, estimator=estimator)
            typer.echo(f"wrote {len(df)} summary row(s) of {df['run_id'].nunique()} run(s) to {out} ({fmt})")
        else:
            ds = export_alpha(opened, out, parse_runs(runs), estimator=estimator, tensor=tensor)
            sizes = ", ".join(f"{k}={v}" for k, v in ds.sizes.items())
            typer.echo(f"wrote alpha ({sizes}) to {out} ({fmt})")
