"""The report page for a reader: run sections, filter, captions without raw dicts, an accurate
note on stored alpha, --figures, and regeneration that reuses figures whose inputs did not change."""

from __future__ import annotations

import io
import json
import os

import pytest
from lake_fixtures import RunSpec, grow_run, write_lake

from sgnlake.analyze.report import FIGURE_KINDS, build_report, select_figures
from sgnlake.analyze.report.data import stored_alpha_note
from sgnlake.analyze.report.html import model_text
from sgnlake.analyze.results import ComputeReport, RunResult
from sgnlake.schema.errors import ConfigError

TENSORS = (
    ("fc1.weight", (6, 8), "weight", "fc1", "Linear"),
    ("fc2.weight", (3, 6), "weight", "fc2", "Linear"),
)
ITS = (0, 50, 100)


def _specs() -> list[RunSpec]:
    kw = {"tensors": TENSORS, "iterations": ITS, "model": "fcn"}
    return [
        RunSpec("fcn-d2-w6-b50-s0", n_minibatches=30, batch_size=50, **kw),
        RunSpec("fcn-d2-w6-b100-s0", n_minibatches=15, batch_size=100, seed=1, **kw),
    ]


@pytest.fixture(scope="module")
def lake_path(tmp_path_factory) -> str:
    return write_lake(str(tmp_path_factory.mktemp("lake") / "lake"), _specs())


def _quiet(msg: str) -> None:
    pass


def test_page_has_sections_filter_and_readable_captions(lake_path, tmp_path):
    rep = build_report(lake_path, tmp_path / "r", dpi=30, figures=["alpha"], log=_quiet)
    text = rep.index.read_text(encoding="utf-8")
    assert text.count('<details class="run"') == 2 and 'id="run-filter"' in text and "<script>" in text
    assert '<tr data-run="fcn-d2-w6-b50-s0">' in text
    assert "Result metadata" in text and "{'" not in text and "{}" not in text  # no raw Python dicts
    assert "position:sticky" in text


def test_model_text_and_stored_note():
    assert model_text("lenet", {}) == "lenet (default args)"
    assert model_text("fcn", {"depth": 3, "width": 32}) == "fcn (depth=3, width=32)"

    def rr(run: str, action: str) -> RunResult:
        return RunResult(run, "k", action, 3, 0, 10, 2, 1.5, 0, 0.1, "p")

    rep = ComputeReport(
        "mohammadi", "k", {}, [rr("a", "up-to-date"), rr("b", "computed"), rr("c", "up-to-date")]
    )
    note = stored_alpha_note(rep)
    assert (
        "computed now and stored for 1 run(s)" in note and "already stored in the lake for 2 run(s)" in note
    )
    assert "0 run(s)" not in stored_alpha_note(ComputeReport("m", "k", {}, [rr("a", "up-to-date")]))


def test_select_figures():
    assert select_figures(None) is None
    assert select_figures(["alpha-hist*"]) == {"alpha-hist", "alpha-hist-layers"}
    assert select_figures(["fig02", "fig13", "sgn"]) == {"batch-size", "layers", "sgn"}
    assert select_figures(["*"]) == set(FIGURE_KINDS)
    with pytest.raises(ConfigError, match="matches no figure kind"):
        select_figures(["fig99"])


def test_figures_selects_kinds_and_bad_kind_writes_nothing(lake_path, tmp_path):
    rep = build_report(lake_path, tmp_path / "r", dpi=30, figures=["alpha", "batch-size"], log=_quiet)
    assert sorted(f.path for f in rep.figures) == [
        "fig02_batch_size_1.png",
        "runs/fcn-d2-w6-b100-s0/fig01_alpha.png",
        "runs/fcn-d2-w6-b50-s0/fig01_alpha.png",
    ]
    assert any(n.startswith("Not drawn (--figures): layers, alpha-hist") for n in rep.notes)
    with pytest.raises(ConfigError):
        build_report(lake_path, tmp_path / "bad", figures=["nope"], log=_quiet)
    assert not (tmp_path / "bad").exists()


def test_regeneration_reuses_unchanged_figures(tmp_path):
    lake = write_lake(str(tmp_path / "lake"), _specs())
    out = tmp_path / "r"
    kinds = ["alpha", "layers", "batch-size"]
    first = build_report(lake, out, dpi=30, figures=kinds, log=_quiet)
    assert first.reused == 0 and first.errors == []
    stamp = {f.path: os.stat(out / f.path).st_mtime_ns for f in first.figures}
    side = json.loads((out / "runs/fcn-d2-w6-b50-s0/fig01_alpha.png.json").read_text())
    entry = next(f for f in first.figures if f.path == "runs/fcn-d2-w6-b50-s0/fig01_alpha.png")
    assert len(side["inputs"]) == 64 and side["caption"] == entry.caption

    again = build_report(lake, out, dpi=30, figures=kinds, log=_quiet)
    assert again.reused == len(first.figures)
    assert [(f.path, f.caption) for f in again.figures] == [(f.path, f.caption) for f in first.figures]
    assert {f.path: os.stat(out / f.path).st_mtime_ns for f in again.figures} == stamp  # not redrawn

    # one run gains a snapshot: its figures and the cross-run ones change, the other run's do not
    grow_run(lake, "fcn-d2-w6-b100-s0", [150])
    third = build_report(lake, out, dpi=30, figures=kinds, log=_quiet)
    redrawn = {f.path for f in third.figures if os.stat(out / f.path).st_mtime_ns != stamp.get(f.path)}
    assert redrawn == {
        "fig02_batch_size_1.png",
        "runs/fcn-d2-w6-b100-s0/fig01_alpha.png",
        "runs/fcn-d2-w6-b100-s0/fig13_layers.png",
    }
    assert third.reused == 2  # the b50 run's figures

    fourth = build_report(lake, out, dpi=31, figures=["alpha"], log=_quiet)  # another dpi: drawn again
    assert fourth.reused == 0


def test_dask_progress_is_labelled():
    import dask.array as da

    from sgnlake.analyze.progress import labelled_progress

    buf = io.StringIO()
    with labelled_progress("fcn-b50", out=buf, dt=0.01):
        da.ones(10, chunks=2).sum().compute()
    lines = [s for s in buf.getvalue().split("\r") if s.strip()]
    assert lines and all(s.startswith("fcn-b50 [") for s in lines), lines


def test_cli_report_reuses_figures_unless_redraw(lake_path, tmp_path):
    from typer.testing import CliRunner

    from sgnlake.cli.app import app

    argv = ["report", lake_path, "-O", str(tmp_path / "r"), "--figures", "alpha", "--dpi", "30"]
    first = CliRunner().invoke(app, argv)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, argv)
    assert "2 figure(s) unchanged since the last report" in again.output
    redraw = CliRunner().invoke(app, [*argv, "--redraw"])
    assert redraw.exit_code == 0 and "unchanged" not in redraw.output
