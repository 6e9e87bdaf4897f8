"""``sgnlake demo``: the README's main job, end to end on the embedded data.

Collects a small grid (LeNet at two batch sizes, an FCN at three) on the
embedded 5,000-digit MNIST subset, estimates the tail index of every parameter
at every snapshot, and writes the report.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer


def demo_configs(quick: bool = False):
    """The demo's run configurations (small enough for 2 CPU cores in a few minutes).

    LeNet at batch sizes 50 and 150, an FCN (depth 3, width 32) at 50, 100 and
    200, all at learning rate 0.1 on the embedded data. Runs are named by the
    collector's rule (:func:`sgnlake.collect.config.default_run_id`), so
    ``sgnlake collect`` with the same settings names them the same way.
    """
    from sgnlake.schema import Schedule

    lenet_epochs = 1 if quick else 2
    fcn_iters = 200 if quick else 600
    runs = [
        {
            "model": "lenet",
            "batch_size": b,
            "lr": 0.1,
            "epochs": lenet_epochs,
            "schedule": Schedule(kind="every", every=max(1, 5000 // b // 5), include_start=True),
        }
        for b in (50, 150)
    ]
    runs += [
        {
            "model": "fcn",
            "model_args": {"depth": 3, "width": 32},
            "batch_size": b,
            "lr": 0.1,
            "iterations": fcn_iters,
            "schedule": Schedule(kind="every", every=fcn_iters // 6, include_start=True),
        }
        for b in (50, 100, 200)
    ]
    return named_configs(runs)


def named_configs(runs):
    """RunConfigs from field dicts, each named by the collector's run-id rule."""
    from sgnlake.collect.config import default_run_id
    from sgnlake.schema import RunConfig

    out = []
    for fields in runs:
        draft = RunConfig(run_id="run", **fields)
        out.append(RunConfig(run_id=default_run_id(draft), **fields))
    return out


def format_timings(collect_s: float, alpha_s: float, report_s: float) -> str:
    """The demo's last timing line: where its time went."""
    total = collect_s + alpha_s + report_s
    return (
        f"done in {total:.0f} s (collect {collect_s:.0f} s, alpha {alpha_s:.0f} s, report {report_s:.0f} s)"
    )


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Argument(
            Path("sgnlake-demo"),
            metavar="OUT",
            help="Output folder: the lake goes to OUT/lake, the report to OUT/report.",
        ),
        quick: bool = typer.Option(False, "--quick", help="Shorter training (for smoke tests)."),
        force: bool = typer.Option(
            False, "--force", help="Recompute alpha even if results are stored in the lake."
        ),
    ) -> None:
        """Run the whole pipeline on the embedded MNIST subset: collect, alpha, report.

        Runs already complete in OUT/lake are skipped, interrupted ones resume, so
        the command can be rerun safely.
        """
        from sgnlake.analyze import open_lake
        from sgnlake.analyze.report import write_report
        from sgnlake.collect.sweep import FAILED, plan, run_sweep

        t0 = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        lake_path = out / "lake"
        # the sweep machinery skips complete runs, resumes interrupted ones and refuses conflicts
        summary = run_sweep(lake_path, plan(demo_configs(quick)), echo=typer.echo)
        if summary.interrupted:
            raise typer.Exit(130)
        if summary.n_failed:
            failed = ", ".join(summary.ids(FAILED))
            typer.echo(f"error: runs failed: {failed}: see the lines above, then rerun to resume", err=True)
            raise typer.Exit(1)
        t_collect = time.perf_counter()
        lake = open_lake(lake_path)
        typer.echo("alpha (mohammadi, per parameter)")
        lake.compute_alpha(force=force)
        t_alpha = time.perf_counter()
        report_dir = out / "report"
        index = write_report(lake, report_dir)
        t_report = time.perf_counter()
        typer.echo(format_timings(t_collect - t0, t_alpha - t_collect, t_report - t_alpha))
        typer.echo(f"lake:   {lake_path}")
        typer.echo(f"report: {index}")
