"""``sgnlake report``: figures and a self-contained HTML page for a lake.

Exit codes: 0 report written, 1 written but some figures failed (listed on
stderr and in the page), 2 usage errors (not a lake, unknown run or estimator, a
--param that no selected run has, --out inside the lake); on those the --out folder
is not created. A run with damaged metadata is left out (named on stderr) and the
report of the other runs is written, with exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .options import figure_kinds_help, hill_k_help, k1_help, lake_arg, parse_runs, runs_opt, storage_opt


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        lake: str = lake_arg(),
        out: Path = typer.Option(
            ..., "--out", "-O", metavar="DIR", help="Output folder for index.html and the PNGs."
        ),
        runs: list[str] = runs_opt("Run ids or glob patterns; default all."),
        estimator: str = typer.Option(
            "mohammadi",
            "--estimator",
            "-e",
            metavar="NAME",
            help="Tail-index estimator: mohammadi, hill or mcculloch.",
        ),
        k1: str = typer.Option(None, "--k1", metavar="RULE|INTEGER", help=k1_help(), show_default=False),
        hill_k: str = typer.Option(
            None, "--hill-k", metavar="NUMBER", help=hill_k_help(), show_default=False
        ),
        iterations: str = typer.Option(
            None,
            "--iterations",
            "-i",
            metavar="LIST",
            help="Snapshots for the distribution and SGN figures, e.g. 100,5000,last "
            "(nearest committed one per run); default first, middle, last.",
        ),
        param: str = typer.Option(
            None,
            "--param",
            metavar="TENSOR:INDEX",
            help="Parameter whose SGN is drawn, TENSOR:INDEX (e.g. fc1.weight:123); at least one "
            "selected run must have it (the others draw their default parameter, with a note).",
        ),
        storage_option: list[str] = storage_opt(),
        store: bool = typer.Option(
            True, "--store/--no-store", help="Store computed alpha in the lake so it is reused next time."
        ),
        force: bool = typer.Option(False, "--force", help="Recompute alpha even if it is stored."),
        pooled: bool = typer.Option(
            True, "--pooled/--no-pooled", help="Draw per-parameter vs pooled alpha (reads all SGN again)."
        ),
        dpi: int = typer.Option(
            100, "--dpi", min=30, max=400, help="Resolution of the PNGs (dots per inch)."
        ),
        figures: list[str] = typer.Option(
            None,
            "--figures",
            metavar="KIND",
            help="Draw only these figure kinds (names or globs; repeatable or comma-separated): "
            + figure_kinds_help()
            + ". Default: all.",
            show_default=False,
        ),
        redraw: bool = typer.Option(
            False,
            "--redraw",
            help="Draw every figure again; by default a figure whose inputs did not change since the "
            "last report in --out (hash in the .png.json beside it) is reused.",
        ),
        compare_at: str = typer.Option(
            "steps",
            "--compare-at",
            help="Compare runs of different batch size, depth or width at equal 'steps' (SGD updates; "
            "the paper's Fig 2) or equal 'epochs'.",
        ),
        include_sparse: bool = typer.Option(
            False,
            "--include-sparse/--exclude-sparse",
            help="Keep degenerate parameters (few distinct SGN values, alpha pulled to 1) in medians "
            "and means; by default they are counted (n_sparse) and left out.",
        ),
        skip_corrupt: bool = typer.Option(
            False,
            "--skip-corrupt",
            help="Read SGN chunks that are missing or cannot be decoded as NaN and count them (a note "
            "in the report), instead of stopping with an error naming the chunk.",
        ),
    ) -> None:
        """Write figures (paper Figs 1-16 where the lake allows) and OUT/index.html.

        Alpha is reused from the lake when stored, else computed (and stored with
        --store). Figures across runs (batch size, depth, width) are drawn only
        when the selected runs vary that axis; the page says so otherwise.
        """
        from sgnlake.schema.errors import SgnlakeError

        from .alpha_cmd import parse_settings
        from .app import fail

        try:
            from sgnlake.analyze.report import build_report, parse_iterations
            from sgnlake.analyze.results import check_estimator
            from sgnlake.schema.store import parse_storage_options

            check_estimator(estimator)
            if out.exists() and not out.is_dir():
                raise fail(f"--out {out} is a file, not a folder: choose a folder for the report")
            settings = parse_settings(estimator, k1, hill_k)
            patterns = parse_runs(runs)
            rep = build_report(
                lake,
                out,
                runs=patterns,
                estimator=estimator,
                settings=settings,
                iterations=parse_iterations(iterations),
                storage_options=parse_storage_options(storage_option),
                dpi=dpi,
                store=store,
                force=force,
                param=param,
                pooled=pooled,
                figures=parse_runs(figures),
                reuse=not redraw,
                log=lambda msg: typer.echo(msg, err=True),
                compare_at=compare_at,
                include_sparse=include_sparse,
                skip_corrupt=skip_corrupt,
            )
        except SgnlakeError as e:
            raise fail(str(e)) from None
        for damage in rep.skipped_runs.values():
            typer.echo(f"error: {damage}; left out of the report", err=True)
        for note in rep.notes:
            typer.echo(f"note: {note}", err=True)
        for err in rep.errors:
            typer.echo(f"warning: figure failed: {err}", err=True)
        typer.echo(f"report: {rep.index.resolve()} ({len(rep.figures)} figures)")
        if rep.skipped_runs:
            raise typer.Exit(2)
        if rep.errors:
            raise typer.Exit(1)
