"""The README's main job (`sgnlake demo`) end to end, checked with plain zarr.

The default test runs the demo's wiring (collect, alpha, report, rerun) on tiny
configs in seconds; the full ``--quick`` demo runs once, marked slow (CI runs it).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import zarr
from typer.testing import CliRunner

from sgnlake.cli import demo_cmd
from sgnlake.cli.app import app, main
from sgnlake.schema import Schedule

pytest.importorskip("torch")


def tiny_demo_configs(quick: bool = False):
    """The demo's two kinds of run (a LeNet and an FCN) shrunk to seconds.

    M = 240 / b is 6 and 8: the paper's K1 rule needs M >= 4 and not prime.
    """
    common = {"n_train": 240, "lr": 0.1, "device": "cpu", "engine": "loop", "iterations": 6}
    schedule = Schedule(kind="every", every=3, include_start=True)
    runs = [
        {"model": "lenet", "batch_size": 40, "schedule": schedule, **common},
        {
            "model": "fcn",
            "model_args": {"depth": 2, "width": 8},
            "batch_size": 30,
            "schedule": schedule,
            **common,
        },
    ]
    return demo_cmd.named_configs(runs)


def no_report(monkeypatch) -> list[str]:
    """Replace the report writer by a stub (figures are tested in test_report.py); returns its calls."""
    import sgnlake.analyze.report as report

    calls: list[str] = []

    def write_report(lake, out, **_kw):
        calls.append(lake.location)
        Path(out).mkdir(parents=True, exist_ok=True)
        return Path(out) / "index.html"

    monkeypatch.setattr(report, "write_report", write_report)
    return calls


def check_demo_output(out: Path, runs: list[str], min_figures: int | None) -> None:
    """Every run complete, alpha stored for every committed snapshot of every tensor, the report's images exist."""
    root = zarr.open_group(str(out / "lake"), mode="r")
    assert sorted(name for name, _ in root["runs"].groups()) == sorted(runs)
    for rid in runs:
        meta = root[f"runs/{rid}"].attrs["sgnlake_run"]
        assert meta["status"] == "complete"
        assert meta["committed"] == len(meta["planned_iterations"]) > 1
        (key,) = [k for k, _ in root[f"results/{rid}"].groups()]
        for t in meta["tensors"]:
            gen = root[f"results/{rid}/{key}"].attrs.get("sgnlake_generation")  # the published generation
            base = f"results/{rid}/{key}" if gen is None else f"results/{rid}/{key}/{gen}"
            a = root[f"{base}/{t['name']}/alpha"]
            assert a.shape == (meta["committed"], t["numel"])
    if min_figures is None:
        return
    index = (out / "report" / "index.html").read_text()
    pngs = re.findall(r'src="([^"]+\.png)"', index)
    assert len(pngs) >= min_figures and all((out / "report" / p).is_file() for p in pngs)


def test_demo_wiring_on_tiny_configs(tmp_path, monkeypatch):
    """Collect, alpha and the report call on two tiny runs; the rerun skips them and keeps the results.

    The report writer is a stub here (its figures take most of the demo's time and are
    tested in test_report.py); the slow full demo below writes the real report.
    """
    monkeypatch.setattr(demo_cmd, "demo_configs", tiny_demo_configs)
    calls = no_report(monkeypatch)
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", str(out)])
    assert res.exit_code == 0, res.output
    runs = ["fcn-d2-w8-n240-b30-s0", "lenet-n240-b40-s0"]
    check_demo_output(out, runs, min_figures=None)
    assert calls == [str(out / "lake")] and f"report: {out / 'report' / 'index.html'}" in res.output
    results = {p: p.stat().st_mtime_ns for p in (out / "lake" / "results").rglob("*") if p.is_file()}
    again = CliRunner().invoke(app, ["demo", str(out)])  # rerun: every run skipped, results kept
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped") == len(runs) and len(calls) == 2
    assert {p: p.stat().st_mtime_ns for p in (out / "lake" / "results").rglob("*") if p.is_file()} == results


def test_demo_skips_runs_stored_under_its_old_ids(tmp_path, monkeypatch):
    """A demo folder from before the unified ids (``lenet-b50``...) is reused, not collected again."""
    from sgnlake.collect import collect

    configs = tiny_demo_configs()
    monkeypatch.setattr(demo_cmd, "demo_configs", lambda quick=False: configs)
    no_report(monkeypatch)
    out = tmp_path / "demo"
    old_ids = ["lenet-b40", "fcn-d2-w8-b30"]  # hand-written ids of the demo of old
    for old, c in zip(old_ids, configs, strict=True):
        collect(out / "lake", dataclasses.replace(c, run_id=old), progress=False, threads=1)
    res = CliRunner().invoke(app, ["demo", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.count("skipped") == 2
    root = zarr.open_group(str(out / "lake"), mode="r")
    assert sorted(name for name, _ in root["runs"].groups()) == sorted(old_ids)
    assert sorted(name for name, _ in root["results"].groups()) == sorted(old_ids)


def test_collect_sweep_and_demo_name_a_config_the_same_way(tmp_path, capsys):
    """`sgnlake collect` (default id), `sgnlake sweep` and `sgnlake demo` give one config one name."""
    from sgnlake.collect import sweep as sw

    (demo_fcn,) = [c for c in demo_cmd.demo_configs(quick=True) if c.model == "fcn" and c.batch_size == 100]
    spec = sw.loads_spec(
        """
        [base]
        model = "fcn"
        model_args = { depth = 3 }
        lr = 0.1
        iterations = 200
        [grid]
        batch_size = [50, 100]
        """
    )
    (swept,) = [c for c in sw.expand(spec) if c.batch_size == 100]
    # the schedule and training length are not part of a name: one step and one snapshot suffice
    argv = ["collect", str(tmp_path / "lake"), "--depth", "3", "--batch-size", "100", "--iterations", "1"]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--at", "1", "--device", "cpu", "--no-progress", "--threads", "1"])
    assert not e.value.code, capsys.readouterr().err
    (collected,) = [name for name, _ in zarr.open_group(str(tmp_path / "lake"), mode="r")["runs"].groups()]
    assert collected == demo_fcn.run_id == swept.run_id == "fcn-d3-w32-b100-s0"


@pytest.mark.slow
def test_full_demo_collects_computes_alpha_and_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    runs = ["fcn-d3-w32-b100-s0", "fcn-d3-w32-b200-s0", "fcn-d3-w32-b50-s0", "lenet-b150-s0", "lenet-b50-s0"]
    check_demo_output(out, runs, min_figures=20)
    again = CliRunner().invoke(app, ["demo", str(out), "--quick"])  # rerun: every run skipped
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped") >= len(runs)
