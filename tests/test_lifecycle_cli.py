"""``sgnlake rm``, ``check --fix``, ``export`` and ``--version``, checked with plain zarr / xarray / pandas."""

from __future__ import annotations

import importlib.metadata as md
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from cli_fixtures import run_cli
from lake_fixtures import RunSpec, write_lake

from sgnlake.schema.check import check_lake


def _add_result(lake: Path, run: str, key: str, finished: bool = True) -> None:
    root = zarr.open_group(str(lake), mode="r+")
    g = root.require_group(f"results/{run}/{key}")
    if finished:
        g.attrs["sgnlake_result"] = {
            "estimator": "mohammadi",
            "settings": {"k1": 5},
            "run_id": run,
            "n_iterations": 1,
        }
    it = g.create_array("iteration", shape=(1,), dtype="int64", dimension_names=["iteration"])
    it[:] = [0]


def _add_checkpoint(lake: Path, run: str) -> None:
    root = zarr.open_group(str(lake), mode="r+")
    g = root.require_group(f"checkpoints/{run}")
    g.create_array("state", shape=(4,), dtype="uint8", dimension_names=["byte"])[:] = 1


def _nodes(lake: Path) -> set[str]:
    root = zarr.open_group(str(lake), mode="r")
    return {
        f"{top}/{name}"
        for top in ("runs", "results", "checkpoints")
        if top in root
        for name, _ in root[top].groups()
    }


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    specs = [RunSpec("r1"), RunSpec("r2", batch_size=100), RunSpec("busy", status="running")]
    path = Path(write_lake(str(tmp_path / "lake"), specs))
    for r in ("r1", "r2", "busy"):
        _add_result(path, r, "mohammadi-k1_5")
        _add_checkpoint(path, r)
    return path


def test_rm_deletes_run_results_and_checkpoint(lake: Path, capsys) -> None:
    code, out, _ = run_cli(["rm", str(lake), "r1", "--yes"], capsys)
    assert code == 0, out
    assert "runs/r1" in out and "results/r1" in out and "checkpoints/r1" in out
    assert not (lake / "runs" / "r1").exists() and not (lake / "results" / "r1").exists()
    assert not (lake / "checkpoints" / "r1").exists()
    assert {"runs/r2", "results/r2", "checkpoints/r2"} <= _nodes(lake)
    rep = check_lake(lake)
    assert rep.ok and not rep.warnings or all("r1" not in w.message for w in rep.warnings)


def test_rm_needs_confirmation(lake: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["rm", str(lake), "r1"], capsys)  # stdin of pytest is not a terminal
    assert code == 2 and "--yes" in err
    assert (lake / "runs" / "r1" / "zarr.json").exists()
    code, out, _ = run_cli(["rm", str(lake), "r1", "--dry-run"], capsys)
    assert code == 0 and "would delete" in out and (lake / "runs" / "r1").exists()
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("typer.confirm", lambda *a, **k: False)
    code, out, _ = run_cli(["rm", str(lake), "r1"], capsys)
    assert code == 1 and "nothing deleted" in out and (lake / "runs" / "r1" / "zarr.json").exists()


def test_rm_refuses_a_held_run_and_unknown_runs(lake: Path, capsys) -> None:
    from sgnlake.schema.lease import Lease

    lease = Lease.acquire(str(lake), "runs/r2", {"command": "test"}, heartbeat=False)
    try:
        code, _, err = run_cli(["rm", str(lake), "r1", "r2", "--yes", "--force"], capsys)
        assert code == 2 and "'r2' cannot be deleted now: a collector is writing it" in err, err
        assert (lake / "runs" / "r1" / "zarr.json").exists()  # nothing deleted
    finally:
        lease.release()
    code, _, err = run_cli(["rm", str(lake), "busy", "--yes"], capsys)  # status running, no lease
    assert code == 2 and "no collector holds it" in err and "--force" in err
    code, _, err = run_cli(["rm", str(lake), "nope", "--yes"], capsys)
    assert code == 2 and "no run 'nope'" in err
    code, _, _ = run_cli(["rm", str(lake), "r2", "busy", "--yes", "--force"], capsys)
    assert code == 0 and not (lake / "runs" / "busy").exists() and not (lake / "runs" / "r2").exists()


@pytest.mark.slow
def test_rm_refuses_while_a_real_collector_writes(tmp_path: Path, capsys) -> None:
    lake = tmp_path / "lake"
    cmd = [sys.executable, "-m", "sgnlake.cli", "collect", str(lake), "--run-id", "live", "--model", "fcn"]
    cmd += [
        "--depth",
        "2",
        "--width",
        "8",
        "--n-train",
        "200",
        "--batch-size",
        "20",
        "--iterations",
        "100000",
    ]
    cmd += ["--every", "5", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while (
            not (lake / "runs" / "live" / "zarr.json").exists()
            or "sgnlake_run" not in (lake / "runs" / "live" / "zarr.json").read_text()
        ):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.time() < deadline, "the collector did not create its run"
            time.sleep(0.2)
        code, _, err = run_cli(["rm", str(lake), "live", "--yes", "--force"], capsys)
        assert code == 2 and "a collector is writing it" in err, err
        assert (lake / "runs" / "live" / "zarr.json").exists()
    finally:
        proc.send_signal(signal.SIGINT)  # the collector stops cleanly: status interrupted
        proc.wait(timeout=60)
    code, _, err = run_cli(["rm", str(lake), "live", "--yes"], capsys)  # no longer held
    assert code == 0, err
    assert not (lake / "runs" / "live").exists()


def test_check_fix_removes_orphans_and_unfinished_results(lake: Path, capsys) -> None:
    import shutil

    shutil.rmtree(lake / "runs" / "r1")  # deleted by hand: its result and checkpoint are orphans
    _add_result(lake, "r2", "unfinished", finished=False)
    rep = check_lake(lake, read_data=False)
    assert any("orphan result" in w.message for w in rep.warnings)
    code, out, _ = run_cli(["check", str(lake), "--fix", "--quick"], capsys)
    assert "removed results/r1: orphan results" in out
    assert "removed checkpoints/r1: orphan checkpoint" in out
    assert "removed results/r2/unfinished: unfinished result" in out
    assert code == 0, out
    assert _nodes(lake) == {f"{t}/{r}" for t in ("runs", "results", "checkpoints") for r in ("r2", "busy")}
    assert (lake / "results" / "r2" / "mohammadi-k1_5" / "zarr.json").exists()  # finished results stay
    rep = check_lake(lake)
    assert rep.ok and not any("orphan" in w.message for w in rep.warnings)
    code, out, _ = run_cli(["check", str(lake), "--fix", "--quick"], capsys)
    assert code == 0 and "nothing to fix" in out


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("export") / "lake"
    return write_lake(str(path), [RunSpec("b100", batch_size=100), RunSpec("b50", batch_size=50, seed=3)])


def test_export_summary_csv(grid: str, tmp_path: Path, capsys) -> None:
    from sgnlake.analyze import open_lake

    out = tmp_path / "summary.csv"
    code, text, err = run_cli(["export", grid, str(out), "--by", "tensor"], capsys)
    assert code == 0, err
    assert "2 run(s)" in text
    got = pd.read_csv(out)
    ref = open_lake(grid).summary(by="tensor")
    assert list(got["run_id"].drop_duplicates()) == ["b50", "b100"]  # natural config order
    np.testing.assert_allclose(got["median"].to_numpy(), ref["median"].to_numpy(), equal_nan=True)
    assert list(got.columns) == list(ref.columns)


def test_export_parquet_needs_pyarrow(grid: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "summary.parquet"
    code, _, err = run_cli(["export", grid, str(out)], capsys)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert code == 2 and "pip install pyarrow" in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    else:
        assert code == 0, err
        assert len(pd.read_parquet(out)) > 0


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_export_alpha(grid: str, tmp_path: Path, capsys, suffix: str) -> None:
    from sgnlake.analyze import open_lake

    out = tmp_path / f"alpha{suffix}"
    code, text, err = run_cli(["export", grid, str(out)], capsys)
    assert code == 0, err
    ds = xr.open_dataset(out) if suffix == ".nc" else xr.open_zarr(out, consolidated=False)
    lake = open_lake(grid)
    assert list(ds["run"].values) == ["b50", "b100"]
    assert list(ds["batch_size"].values) == [50, 100]
    assert ds["alpha"].attrs["long_name"] == "tail index of the SGN"
    for r in ("b50", "b100"):
        np.testing.assert_allclose(ds["alpha"].sel(run=r).values, lake.alpha(r).values, equal_nan=True)
    assert list(ds["tensor"].values[:1]) == ["fc1.weight"]
    ds.close()
    code, _, err = run_cli(["export", grid, str(out)], capsys)
    assert code == 2 and "exists" in err


def test_export_bad_suffix(grid: str, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["export", grid, str(tmp_path / "x.txt")], capsys)
    assert code == 2 and ".csv" in err and ".nc" in err


def test_version(capsys) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"sgnlake {md.version('sgnlake')}"
