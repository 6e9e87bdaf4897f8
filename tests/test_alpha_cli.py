"""``sgnlake alpha``: stores results, reuses them, reports per run; one-line errors with exit 2."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr
from lake_fixtures import RunSpec, mohammadi_oracle, published, read_sgn_plain, write_lake
from typer.testing import CliRunner

from sgnlake.cli.app import app

KEY5 = "mohammadi-k1_5"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    return write_lake(
        str(tmp_path_factory.mktemp("cli") / "lake"),
        [
            RunSpec("fcn-b50", committed=3, dead={"fc1.weight": [0]}),
            RunSpec("fcn-b100", batch_size=100, seed=1),
            RunSpec("lenet-b50", seed=2, model="lenet", iterations=(100, 200)),
        ],
    )


@pytest.fixture
def lake(template, tmp_path) -> str:
    return shutil.copytree(template, tmp_path / "lake").as_posix()


def run(*args: str):
    return CliRunner().invoke(app, ["alpha", *args])


def _error_line(result) -> str:
    """The single error line of a failed command (stderr)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_alpha_stores_reports_and_reuses(lake):
    r = run(lake, "--k1", "5", "--no-progress")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "median alpha" in out and "dead" in out and f"results/<run>/{KEY5}/" in out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith(("fcn-", "lenet-"))}
    assert set(rows) == {"fcn-b50", "fcn-b100", "lenet-b50"}
    assert rows["fcn-b50"][1:5] == ["computed", "3", "3", "131"] and rows["fcn-b50"][7] == "1"
    assert (
        "non-finite" in out
        and rows["fcn-b50"][8] == "0"
        and rows["fcn-b50"][9] == "0"
        and "non-finite" not in r.stderr
    )
    x, _ = read_sgn_plain(lake, "fcn-b100", "fc2.weight")
    stored = zarr.open_group(lake, mode="r")[f"{published(lake, 'fcn-b100', KEY5)}/fc2.weight/alpha"][:]
    np.testing.assert_allclose(stored, mohammadi_oracle(x, 5), rtol=1e-10)
    last = mohammadi_oracle(*read_sgn_plain(lake, "fcn-b100", "fc1.weight")[:1], 5)[-1]
    assert last.size == 96  # the table's median is over all tensors; check its format only
    assert float(rows["fcn-b100"][6]) > 0

    again = run(lake, "--k1", "5", "--no-progress")
    assert again.exit_code == 0 and again.stdout.count("up-to-date") == 3
    forced = run(lake, "--k1", "5", "--force", "--runs", "fcn-*", "--no-progress")
    assert forced.exit_code == 0 and forced.stdout.count("computed") == 2 and "lenet-b50" not in forced.stdout


def test_estimator_and_runs_options(lake):
    r = run(lake, "-e", "hill", "--hill-k", "8", "-r", "lenet-b50", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "hill-k_8" in r.stdout
    assert "hill-k_8" in zarr.open_group(lake, mode="r")["results/lenet-b50"]
    r = run(lake, "--estimator", "mcculloch", "--runs", "fcn-b50", "--runs", "fcn-b100", "--no-progress")
    assert r.exit_code == 0, r.output
    group = zarr.open_group(lake, mode="r")[f"{published(lake, 'fcn-b50', 'mcculloch')}/fc1.bias"]
    assert {"alpha", "beta", "scale", "loc"} <= set(group.array_keys())


def test_nonfinite_samples_are_counted_in_the_table(lake):
    g = zarr.open_group(lake, mode="r+")
    sgn = g["runs/fcn-b100/fc1.bias/sgn"]
    x = sgn[:]
    x[1, 4, 2], x[1, 9, 2], x[3, 0, 7] = np.nan, np.inf, -np.inf
    sgn[:] = x
    r = run(lake, "--k1", "5", "--no-progress", "-r", "fcn-b*")
    assert r.exit_code == 0, r.output
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("fcn-")}
    assert rows["fcn-b100"][9] == "3" and rows["fcn-b50"][9] == "0"  # after "dead", "sparse"
    assert rows["fcn-b100"][7] == "0"  # the parameters keep an estimate from their finite samples
    assert "skipped 3 non-finite SGN sample(s)" in r.stderr and "fcn-b100" in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-e", "nope"], "unknown estimator 'nope'"),
        (["-e", "pooled"], "per-snapshot estimator"),
        (["--runs", "zz*"], "no run matches"),
        (["--runs", "missing"], "no run 'missing'"),
        (["--k1", "golden"], "k1"),
        (["-e", "hill", "--k1", "5"], "--k1 applies"),
        (["-e", "hill", "--hill-k", "lots"], "--hill-k"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--storage-option", "novalue"], "key=value"),
    ],
)
def test_bad_options_one_line_exit_2(lake, args, needle):
    r = run(lake, *args, "--no-progress")
    assert r.exit_code == 2
    assert needle in _error_line(r)
    assert "results" not in zarr.open_group(lake, mode="r")  # nothing written


def test_not_a_lake_and_read_only(tmp_path, lake, monkeypatch):
    r = run(str(tmp_path / "nothing"))
    assert r.exit_code == 2 and "no lake" in _error_line(r)
    (tmp_path / "file").write_text("x")
    r = run(str(tmp_path / "file"))
    assert r.exit_code == 2 and "not a lake" in _error_line(r)
    from zarr.storage import LocalStore

    async def refuse(self, key, value, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(LocalStore, "set", refuse)
    r = run(lake, "--no-progress")
    assert r.exit_code == 2 and "read-only" in _error_line(r)


def test_unreachable_scheduler(lake):
    r = run(lake, "--scheduler", "tcp://127.0.0.1:1", "--timeout", "1", "--no-progress")
    assert r.exit_code == 2 and "cannot reach the Dask scheduler" in _error_line(r)


def test_existing_scheduler_gives_threaded_numbers(lake):
    from distributed import LocalCluster

    from sgnlake.analyze import open_lake

    expected = open_lake(lake).alpha("fcn-b100", k1=5).values
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        r = run(
            lake, "--k1", "5", "--scheduler", cluster.scheduler_address, "--no-progress", "-r", "fcn-b100"
        )
    assert r.exit_code == 0, r.output
    assert "dask: 1 workers" in r.stdout
    np.testing.assert_array_equal(open_lake(lake).alpha("fcn-b100", k1=5).values, expected)


def test_workers_processes_match_threads(lake):
    """``--workers 2``: a real LocalCluster of two worker processes gives the threaded numbers."""
    from sgnlake.analyze import open_lake

    expected = {r: open_lake(lake).alpha(r, k1=5).values for r in ("fcn-b50", "lenet-b50")}
    r = run(lake, "--k1", "5", "--workers", "2", "--no-progress", "-r", "fcn-b50", "-r", "lenet-b50")
    assert r.exit_code == 0, r.output
    assert "dask: 2 workers" in r.stdout and r.stdout.count("computed") == 2
    lake_ = open_lake(lake)
    for run_id, values in expected.items():
        got = lake_.alpha(run_id, k1=5)
        assert got.attrs["n_stored"] == got.sizes["iteration"]
        np.testing.assert_array_equal(got.values, values)
