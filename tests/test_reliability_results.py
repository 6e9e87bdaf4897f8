"""Issue 12, analysis side: atomic results under concurrent and killed ``sgnlake alpha`` processes,
``--force`` keeping the old result, missing committed chunks, damaged metadata, and ``check``
telling unfinished results and expected NaN/inf from damage. Real processes, real damage to
real files; plain Zarr and NumPy oracles."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from lake_fixtures import (
    RunSpec,
    chunk_key,
    chunk_path,
    mohammadi_oracle,
    plain_attrs,
    published,
    read_sgn_plain,
    write_lake,
)
from typer.testing import CliRunner

from sgnlake.analyze import open_lake
from sgnlake.cli.app import app
from sgnlake.schema.check import check_lake

KEY5 = "mohammadi-k1_5"
BIG = (("fc1.weight", (32, 256), "weight", "fc1", "Linear"), ("fc1.bias", (32,), "bias", "fc1", "Linear"))


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _error_lines(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    return write_lake(
        str(tmp_path_factory.mktemp("rel") / "lake"),
        [
            RunSpec("a", dead={"fc1.weight": [0, 5]}, iterations=(0, 100, 200)),
            RunSpec("b", seed=1, iterations=(0, 100, 200)),
        ],
    )


@pytest.fixture
def lake(template, tmp_path) -> str:
    return shutil.copytree(template, tmp_path / "lake").as_posix()


def _assert_published_equals_oracle(path: str, run: str, tensors: tuple[str, ...]) -> None:
    for t in tensors:
        x, its = read_sgn_plain(path, run, t)
        node = zarr.open_group(path, mode="r")[published(path, run, KEY5)]
        n = plain_attrs(path, f"results/{run}/{KEY5}")["sgnlake_result"]["n_iterations"]
        assert n == len(its)
        got = node[f"{t}/alpha"][:n]
        want = mohammadi_oracle(x, 5)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # no NaN where a value exists
        np.testing.assert_allclose(got, want, rtol=1e-10)
        assert (node[f"{t}/n_nonfinite"][:n] >= 0).all()


# ----------------------------------------------------------------------------- processes


def _alpha_proc(lake: str) -> subprocess.Popen[str]:
    code = "import sys; from sgnlake.cli.app import main; main(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, "alpha", lake, "--k1", "5", "--no-progress", "--runs", "big"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_generation(lake: str, timeout: float = 60.0) -> None:
    """Until a computation has started writing a generation of the result (or timeout)."""
    key_dir = Path(lake) / "results" / "big" / KEY5
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if key_dir.is_dir() and any(p.name.startswith("gen-") for p in key_dir.iterdir()):
            return
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["first", "second", "only"])
def test_overlapping_alpha_processes_one_killed(tmp_path, victim):
    """Two ``sgnlake alpha`` of one result, one SIGKILLed mid-write: whatever is published is complete.

    The second is refused (one line naming the first) while the first holds the result's
    lease; a killed holder's lease is taken over by the next run.
    """
    lake = write_lake(
        str(tmp_path / "lake"),
        [RunSpec("big", tensors=BIG, n_minibatches=20, iterations=tuple(range(0, 500, 100)))],
    )
    first = _alpha_proc(lake)
    _wait_for_generation(lake)
    second = _alpha_proc(lake) if victim != "only" else None
    if second is not None:
        time.sleep(0.3)
    killed, survivor = (first, second) if victim in ("first", "only") else (second, first)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    if survivor is not None:  # computed, or refused while the other held the result's lease
        out, err = survivor.communicate(timeout=180)
        assert survivor.returncode in (0, 2), err
        if survivor.returncode == 2:
            assert "in use by another process" in err and err.count("error:") == 1, err
    attrs = plain_attrs(lake, f"results/big/{KEY5}")
    if "sgnlake_result" in attrs:  # published by whichever finished: complete and right
        _assert_published_equals_oracle(lake, "big", ("fc1.weight", "fc1.bias"))
    else:
        assert victim == "only"
        assert open_lake(lake).alpha("big", k1=5).attrs["n_stored"] == 0  # not mistaken for stored
    report = check_lake(lake)
    assert report.ok and not report.warnings, report.format_text()
    # a forced rerun publishes a complete result
    r = cli("alpha", lake, "--k1", "5", "--no-progress", "--force")
    assert r.exit_code == 0, r.output
    _assert_published_equals_oracle(lake, "big", ("fc1.weight", "fc1.bias"))
    gens = [p.name for p in (Path(lake) / "results" / "big" / KEY5).iterdir() if p.name.startswith("gen-")]
    assert plain_attrs(lake, f"results/big/{KEY5}")["sgnlake_generation"] in gens


# ----------------------------------------------------------------------------- --force, missing chunks


def _sgn_chunk(lake: str, run: str, tensor: str, snapshot: int) -> Path:
    return chunk_path(Path(lake) / "runs" / run / tensor / "sgn", snapshot, 0, 0)


def test_force_keeps_the_published_result_when_the_new_one_fails(lake):
    assert cli("alpha", lake, "--k1", "5", "--no-progress", "--runs", "a").exit_code == 0
    before = zarr.open_group(lake, mode="r")[f"{published(lake, 'a', KEY5)}/fc1.weight/alpha"][:]
    gen_before = plain_attrs(lake, f"results/a/{KEY5}")["sgnlake_generation"]
    chunk = _sgn_chunk(lake, "a", "fc1.weight", 1)
    assert chunk.is_file()
    chunk.unlink()  # real damage: a committed SGN chunk is gone
    r = cli("alpha", lake, "--k1", "5", "--no-progress", "--runs", "a", "--force")
    assert r.exit_code == 2
    (line,) = _error_lines(r)
    for part in ("run 'a'", "tensor 'fc1.weight'", "array 'sgn'", "iteration 100", "missing"):
        assert part in line, line
    attrs = plain_attrs(lake, f"results/a/{KEY5}")
    assert attrs["sgnlake_generation"] == gen_before  # the old result is still the published one
    after = zarr.open_group(lake, mode="r")[f"{published(lake, 'a', KEY5)}/fc1.weight/alpha"][:]
    np.testing.assert_array_equal(after, before)
    gens = [p.name for p in (Path(lake) / "results" / "a" / KEY5).iterdir() if p.name.startswith("gen-")]
    assert gens == [gen_before]  # the failed generation was removed
    # --skip-corrupt: counted and reported, the chunk's parameters get no alpha
    r = cli("alpha", lake, "--k1", "5", "--no-progress", "--runs", "a", "--force", "--skip-corrupt")
    assert r.exit_code == 0, r.output
    assert (
        "skipped 1 corrupt chunk" in r.stderr
        and f"fc1.weight/sgn/{chunk_key(Path(lake) / 'runs/a/fc1.weight/sgn', 1, 0, 0)}" in r.stderr
    )


def test_missing_chunk_is_an_error_in_alpha_and_report(lake, tmp_path):
    _sgn_chunk(lake, "b", "fc2.bias", 2).unlink()
    r = cli("alpha", lake, "--k1", "5", "--no-progress")
    assert r.exit_code == 2
    (line,) = _error_lines(r)
    assert "run 'b'" in line and "tensor 'fc2.bias'" in line and "iteration 200" in line
    out = tmp_path / "rep"
    r = cli("report", lake, "--out", str(out), "--k1", "5", "--no-pooled", "--runs", "b", "--no-store")
    assert r.exit_code == 2 and "tensor 'fc2.bias'" in _error_lines(r)[0]
    r = cli(
        "report", lake, "--out", str(out), "--k1", "5", "--no-pooled", "--runs", "b", "--no-store",
        "--skip-corrupt",
    )  # fmt: skip
    assert r.exit_code in (0, 1), r.output
    assert "skipped 1 missing or corrupt chunk" in r.stderr


# ----------------------------------------------------------------------------- damaged metadata


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_run_attrs(lake: str, run: str, edit) -> None:
    p = Path(lake) / "runs" / run / "zarr.json"
    doc = json.loads(p.read_text())
    edit(doc["attributes"]["sgnlake_run"])
    p.write_text(json.dumps(doc))


def _shape_edit(meta: dict) -> None:
    meta["tensors"][0]["shape"] = [9, 12]


DAMAGE = {
    "run zarr.json truncated": lambda lake: _truncate(Path(lake) / "runs" / "b" / "zarr.json"),
    "run zarr.json not json": lambda lake: (Path(lake) / "runs" / "b" / "zarr.json").write_text("{not json"),
    "array zarr.json truncated": lambda lake: _truncate(
        Path(lake) / "runs" / "b" / "fc1.weight" / "sgn" / "zarr.json"
    ),
    "committed beyond arrays": lambda lake: _edit_run_attrs(lake, "b", lambda m: m.update(committed=7)),
    "tensor shape edited": lambda lake: _edit_run_attrs(lake, "b", _shape_edit),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_is_named_and_the_others_stay_usable(lake, damage):
    DAMAGE[damage](lake)
    r = cli("ls", lake)
    assert r.exit_code == 2
    (line,) = _error_lines(r)
    assert "run 'b'" in line and "runs/b" in line, line
    rows = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:]}
    assert "damaged" in rows["b"] and "damaged" not in rows["a"]
    r = cli("ls", lake, "--json")
    assert {x["run_id"]: x["status"] for x in json.loads(r.stdout)}["b"] == "damaged"
    # alpha of all runs: the healthy run is computed, the damaged one named, exit 2
    r = cli("alpha", lake, "--k1", "5", "--no-progress")
    assert r.exit_code == 2 and "Traceback" not in r.output
    (line,) = _error_lines(r)
    assert "run 'b'" in line and "runs/b" in line
    assert "sgnlake_result" in plain_attrs(lake, f"results/a/{KEY5}")
    # asking for the damaged run alone: one line, nothing written
    r = cli("alpha", lake, "--k1", "4", "--no-progress", "--runs", "b")
    assert r.exit_code == 2 and len(_error_lines(r)) == 1
    assert not (Path(lake) / "results" / "b").exists()
    # check: DAMAGED with exit 1, not "not a lake"
    r = cli("check", lake, "--no-progress")
    assert r.exit_code == 1 and "DAMAGED" in r.stdout, r.output


def test_damaged_root_metadata(lake):
    _truncate(Path(lake) / "zarr.json")
    for args in (["ls", lake], ["alpha", lake, "--no-progress"]):
        r = cli(*args)
        assert r.exit_code == 2
        (line,) = _error_lines(r)
        assert "zarr.json" in line and "damaged" in line and "not an sgnlake lake" not in line
    r = cli("check", lake, "--no-progress")
    assert r.exit_code == 1 and "DAMAGED" in r.stdout and "zarr.json" in r.stdout, r.output
    assert "runs/" in r.stdout or "run a" in r.stdout  # the runs are still checked


def test_damaged_run_left_out_of_the_report(lake, tmp_path):
    DAMAGE["run zarr.json truncated"](lake)
    out = tmp_path / "rep"
    r = cli("report", lake, "--out", str(out), "--k1", "5", "--no-pooled", "--no-store")
    assert r.exit_code == 2 and (out / "index.html").is_file(), r.output
    (line,) = _error_lines(r)
    assert "run 'b'" in line and "runs/b/zarr.json" in line


# ----------------------------------------------------------------------------- check


def test_check_is_clean_on_a_fresh_lake_with_dead_parameters(lake):
    for est in (["--k1", "5"], ["-e", "mohammadi_inv", "--k1", "5"], ["-e", "hill"]):
        assert cli("alpha", lake, *est, "--no-progress").exit_code == 0
    r = cli("check", lake, "--no-progress")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1].startswith("OK: 0 problem(s), 0 warning(s)"), r.stdout
    assert "NaN/inf value(s)" in r.stdout  # dead parameters: information


def test_check_tells_an_unfinished_result_from_damage(lake, monkeypatch):
    from sgnlake.analyze import results as results_mod

    def crash(obj, progress, label=""):
        raise RuntimeError("killed")

    monkeypatch.setattr(results_mod, "run_graph", crash)
    monkeypatch.setattr(results_mod, "delete_prefix", lambda *a: None)  # as if SIGKILLed: nothing tidied
    with pytest.raises(RuntimeError):
        open_lake(lake).compute_alpha(runs="a", k1=5, progress=False)
    report = check_lake(lake)
    assert report.ok and not report.warnings, report.format_text()
    assert any("unfinished result" in f.message and "sgnlake alpha" in f.message for f in report.findings)


# ----------------------------------------------------------------------------- settings and options


def test_meaningless_estimator_settings_are_refused(lake):
    for args, valid in (
        (["--k1", "40"], "2..20"),
        (["--k1", "21"], "2..20"),
        (["-e", "hill", "--hill-k", "40"], "1..39"),
    ):
        r = cli("alpha", lake, *args, "--no-progress", "--runs", "a")
        assert r.exit_code == 2, r.output
        (line,) = _error_lines(r)
        assert valid in line, line
    assert not (Path(lake) / "results").exists()
    assert cli("alpha", lake, "--k1", "20", "--no-progress", "--runs", "a").exit_code == 0  # K2 = 2


def test_report_out_inside_the_lake_and_huge_iterations_are_refused(lake, tmp_path):
    before = sorted(p.relative_to(lake) for p in Path(lake).rglob("*"))
    for out in (lake, os.path.join(lake, "report"), os.path.join(lake, "runs", "a", "x")):
        r = cli("report", lake, "--out", out, "--no-pooled")
        assert r.exit_code == 2
        (line,) = _error_lines(r)
        assert "inside the lake" in line
    assert sorted(p.relative_to(lake) for p in Path(lake).rglob("*")) == before
    r = cli("report", lake, "--out", str(tmp_path / "r"), "--iterations", "9" * 40)
    assert r.exit_code == 2 and "out of range" in _error_lines(r)[0] and not (tmp_path / "r").exists()


def test_a_second_computation_of_a_live_result_is_refused(lake):
    from sgnlake.analyze.stored import result_lease

    with result_lease(open_lake(lake), "a", KEY5):  # a live computation of this result (this process)
        r = cli("alpha", lake, "--k1", "5", "--no-progress", "--runs", "a")
        assert r.exit_code == 2
        (line,) = _error_lines(r)
        assert f"result '{KEY5}' of run 'a' is in use by another process (pid {os.getpid()}" in line
        assert not (Path(lake) / "results" / "a" / KEY5).exists()  # nothing written
    assert cli("alpha", lake, "--k1", "5", "--no-progress", "--runs", "a").exit_code == 0  # released


@pytest.mark.slow
def test_check_is_ok_without_warnings_on_a_freshly_collected_lake(tmp_path):
    """A real (tiny) collect + alpha of three estimators: ``check`` prints OK, 0 warnings."""
    from sgnlake.cli.app import main

    lake = str(tmp_path / "lake")
    argv = ["collect", lake, "--depth", "3", "--batch-size", "100", "--iterations", "3", "--at", "1,2,3"]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--device", "cpu", "--no-progress", "--threads", "1"])
    assert not e.value.code
    for est in (["--k1", "sqrt"], ["-e", "mohammadi_inv"], ["-e", "hill"]):
        r = cli("alpha", lake, *est, "--no-progress")
        assert r.exit_code == 0, r.output
    r = cli("check", lake, "--no-progress")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1].startswith("OK: 0 problem(s), 0 warning(s)"), r.stdout


def test_results_of_old_lakes_without_generations_still_work(lake):
    """A result written before generations (arrays directly under the key group) reads, appends, is replaced."""
    from lake_fixtures import grow_run

    assert cli("alpha", lake, "--k1", "5", "--no-progress", "--runs", "a").exit_code == 0
    key_dir = Path(lake) / "results" / "a" / KEY5
    doc = json.loads((key_dir / "zarr.json").read_text())
    gen = doc["attributes"].pop("sgnlake_generation")
    for child in (key_dir / gen).iterdir():  # the old layout: the data in the key group itself
        if child.name != "zarr.json":
            child.rename(key_dir / child.name)
    shutil.rmtree(key_dir / gen)
    (key_dir / "zarr.json").write_text(json.dumps(doc))
    assert published(lake, "a", KEY5) == f"results/a/{KEY5}"
    old = open_lake(lake)
    assert old.alpha("a", k1=5).attrs["n_stored"] == 3
    grow_run(lake, "a", [300])
    rep = open_lake(lake).compute_alpha(runs="a", k1=5, progress=False)
    assert rep.runs[0].action == "appended" and rep.runs[0].computed == 1
    assert published(lake, "a", KEY5) == f"results/a/{KEY5}"  # appended in place
    _assert_published_equals_oracle(lake, "a", ("fc1.weight", "fc2.bias"))
    assert cli("alpha", lake, "--k1", "5", "--no-progress", "--runs", "a", "--force").exit_code == 0
    assert published(lake, "a", KEY5) != f"results/a/{KEY5}"
    assert sorted(p.name for p in key_dir.iterdir() if not p.name.startswith("gen-")) == ["zarr.json"]
    _assert_published_equals_oracle(lake, "a", ("fc1.weight", "fc2.bias"))
    assert check_lake(lake).ok
