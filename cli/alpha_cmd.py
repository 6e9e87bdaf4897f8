"""``sgnlake alpha``: per-parameter tail index of every run and snapshot, stored in the lake."""

from __future__ import annotations

import math
from typing import Any

import typer

from .options import hill_k_help, k1_default, lake_arg, parse_runs, runs_opt, storage_opt

_HELP = """Estimate the tail index alpha of the SGN of every parameter, for every committed
snapshot of every run (or of --runs), and store it in the lake under
results/<run>/<key>/ (key = estimator and settings).

Results are computed once: a second call with the same settings computes nothing, a run
that gained snapshots gets only the new ones computed, --force recomputes everything.
Reopen them lazily with sgnlake.analyze.open_lake(LAKE).alpha(RUN) or plain
xarray.open_datatree(LAKE, engine="zarr").

Runs on Dask: threads by default, a local cluster with --workers, an existing cluster
with --scheduler. Prints one line per run: snapshots, parameters, median alpha and the
count of parameters without an estimate (dead: zero/constant SGN) and of degenerate ones
(sparse: few distinct SGN values; left out of the median) at the last snapshot,
and the number of non-finite (NaN/inf) SGN samples over all snapshots. Non-finite samples
are dropped per parameter and the estimate uses the remaining finite ones (Mohammadi: a
K1 block holding one is left out of the block sums); a parameter with no two distinct
finite samples counts as dead."""


def parse_settings(estimator: str, k1: str | None, hill_k: str | None) -> dict[str, Any]:
    """Estimator settings from the command-line options (only those given; see
    :func:`sgnlake.analyze.estimators.settings_from_options`)."""
    from sgnlake.analyze.estimators import settings_from_options

    return settings_from_options(estimator, {"--k1": k1, "--hill-k": hill_k})


def _fmt(x: float, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def format_table(report: Any) -> str:
    """The per-run table printed by ``sgnlake alpha``."""
    header = (
        "run",
        "action",
        "snapshots",
        "new",
        "parameters",
        "last it",
        "median alpha",
        "dead",
        "sparse",
        "non-finite",
        "seconds",
    )
    rows = [
        (
            r.run_id,
            r.action,
            str(r.snapshots),
            str(r.computed),
            str(r.params),
            "-" if r.last_iteration is None else str(r.last_iteration),
            _fmt(r.median_alpha_last),
            str(r.dead_last),
            str(r.sparse_last),
            str(r.nonfinite_samples),
            _fmt(r.seconds, 1),
        )
        for r in report.runs
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        "  ".join(
            h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("alpha", help=_HELP)
    def alpha(
        lake: str = lake_arg(),
        runs: list[str] = runs_opt(),
        estimator: str = typer.Option(
            "mohammadi",
            "--estimator",
            "-e",
            metavar="NAME",
            help="Per-parameter estimator: mohammadi (Mohammadi et al. 2015, the paper's), "
            "hill (top-k order statistics of |SGN|), mcculloch (quantile fit; also stores "
            "beta, scale, loc), mohammadi_inv (1/alpha) or gaussianity (p-values of four "
            "normality tests).",
        ),
        k1: str = typer.Option(
            None,
            "--k1",
            metavar="RULE|INTEGER",
            show_default=False,
            help="Mohammadi block size K1 for the M samples: paper (divisor of M closest to "
            "sqrt(M), the paper's code), simsekli (largest divisor <= sqrt(M)), sqrt "
            "(floor(sqrt(M)), first K1*floor(M/K1) samples) or an integer >= 2. Part of the "
            "result key." + k1_default(),
        ),
        hill_k: str = typer.Option(
            None, "--hill-k", metavar="NUMBER", help=hill_k_help(), show_default=False
        ),
        force: bool = typer.Option(False, "--force", help="Recompute results that are already stored."),
        workers: int = typer.Option(
            None,
            "--workers",
            "-w",
            min=0,
            show_default=False,
            help="Start a local dask.distributed cluster with this many worker processes "
            "(default: Dask's threaded scheduler in this process).",
        ),
        threads_per_worker: int = typer.Option(
            1, "--threads-per-worker", min=1, help="Threads per local worker (with --workers)."
        ),
        memory_limit: str = typer.Option(
            "auto",
            "--memory-limit",
            metavar="SIZE",
            help="Memory limit per local worker, e.g. 4GiB (with --workers).",
        ),
        scheduler: str = typer.Option(
            None,
            "--scheduler",
            metavar="ADDRESS",
            help="Address of an existing Dask scheduler, e.g. tcp://HOST:8786; its workers need "
            "sgnlake installed and access to the lake.",
        ),
        storage_option: list[str] = storage_opt(
            "fsspec storage option KEY=VALUE for URL lakes (repeatable), e.g. "
            "client_kwargs.endpoint_url=http://localhost:9000."
        ),
        timeout: float = typer.Option(
            30.0, "--timeout", min=0.1, help="Seconds to wait for the --scheduler to answer."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per run."),
        skip_corrupt: bool = typer.Option(
            False,
            "--skip-corrupt",
            help="Read SGN chunks that are missing or cannot be decoded as NaN (their parameters get "
            "no alpha) and count them, instead of stopping with an error naming the chunk.",
        ),
    ) -> None:
        from sgnlake.schema.errors import SgnlakeError

        from .app import fail

        try:
            from sgnlake.analyze.cluster import dask_client
            from sgnlake.analyze.lake import open_lake
            from sgnlake.analyze.results import check_estimator, result_key
            from sgnlake.schema.store import parse_storage_options

            check_estimator(estimator)
            settings = parse_settings(estimator, k1, hill_k)
            key = result_key(estimator, **settings)
            opened = open_lake(
                lake, storage_options=parse_storage_options(storage_option), skip_corrupt=skip_corrupt
            )
            ids = opened.select_runs(parse_runs(runs))
            skipped = dict(opened.skipped_runs)  # damaged runs left out of all runs or a glob
            opened.writable_root()  # fail early on a read-only lake
            typer.echo(f"{estimator} ({key}) for {len(ids)} run(s) in {lake}")
            with dask_client(
                workers=workers,
                scheduler=scheduler,
                threads_per_worker=threads_per_worker,
                memory_limit=memory_limit,
                echo=typer.echo,
                timeout=timeout,
            ):
                report = opened.compute_alpha(
                    ids, estimator=estimator, force=force, progress=progress, **settings
                )
        except SgnlakeError as e:
            raise fail(str(e)) from None
        typer.echo(format_table(report))
        nonfinite = {r.run_id: r.nonfinite_samples for r in report.runs if r.nonfinite_samples}
        if nonfinite:
            first = next(iter(nonfinite))
            more = f" (+{len(nonfinite) - 1} more run(s))" if len(nonfinite) > 1 else ""
            typer.echo(
                f"note: skipped {sum(nonfinite.values())} non-finite SGN sample(s), e.g. {nonfinite[first]} "
                f"in run {first}{more}; alpha uses the remaining finite samples of each parameter",
                err=True,
            )
        if opened.corrupt_chunks:
            keys = sorted(set(opened.corrupt_chunks))
            more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
            typer.echo(
                f"warning: skipped {len(keys)} corrupt chunk(s), read as NaN (--skip-corrupt): "
                f"{keys[0]}{more}; run 'sgnlake check {lake}'",
                err=True,
            )
        typer.echo(f"results stored in {lake.rstrip('/')}/results/<run>/{report.key}/")
        for damage in skipped.values():  # the other runs were computed
            typer.echo(f"error: {damage}; skipped", err=True)
        if skipped:
            raise typer.Exit(2)
