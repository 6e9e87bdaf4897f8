"""``sgnlake check`` / :func:`sgnlake.schema.check.check_lake` on lakes written with plain Zarr.

The lakes come from ``lake_fixtures`` (plain ``zarr.create_array`` following the
contract); damage is done with plain file operations, and the oracle for "every
chunk was read" is the list of chunk files on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_fixtures import run_cli
from lake_fixtures import RunSpec, chunk_coords, chunk_key, chunk_path, write_lake

from sgnlake.schema.check import check_lake
from sgnlake.schema.meta import ResultMeta
from sgnlake.schema.names import SCHEMA_VERSION


def chunk_files(root: Path) -> list[Path]:
    """Chunk files (everything but zarr.json) below ``root``."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.fixture(scope="module")
def clean_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("check") / "lake"
    # r1 in Zarr's nested chunk-key layout (lakes before issue 11), r2 in the collector's flat one
    write_lake(
        str(path),
        [RunSpec("r1"), RunSpec("r2", committed=2, status="running", seed=1, chunk_separator=".")],
    )
    return path


@pytest.fixture
def lake(clean_lake: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "lake"
    shutil.copytree(clean_lake, dst)
    return dst


def test_clean_lake_reads_every_committed_chunk(lake: Path, capsys) -> None:
    rep = check_lake(lake)
    assert rep.ok, [f.line() for f in rep.findings]
    assert (rep.schema, rep.version) == ("sgnlake.lake", SCHEMA_VERSION)
    # r1 is fully committed: every chunk file on disk is read exactly once.
    r1 = {r.run_id: r for r in rep.runs}["r1"]
    assert r1.chunks_checked == len(chunk_files(lake / "runs" / "r1"))
    r2 = {r.run_id: r for r in rep.runs}["r2"]
    assert (r2.committed, r2.stored, r2.uncommitted_tail) == (2, 4, 2)

    # r2: only snapshots 0 and 1 are read (the iteration axis comes first in chunk keys)
    assert (lake / "runs" / "r2" / "fc1.weight" / "sgn" / "c.0.0.0").is_file()  # the flat layout
    n_r2 = sum(1 for p in chunk_files(lake / "runs" / "r2") if chunk_coords(p)[0] in (0, 1))
    assert n_r2 > 0
    assert r2.chunks_checked == n_r2
    assert any("uncommitted" in f.message and f.run == "r2" for f in rep.findings)
    code, out, err = run_cli(["check", str(lake), "--no-progress"], capsys)
    assert code == 0 and "OK: 0 problem(s)" in out and err == ""


def _sgn_dir(lake: Path, run: str, tensor: str) -> Path:
    return lake / "runs" / run / tensor / "sgn"


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncate", "empty", "delete"],
)
def test_corrupt_committed_chunk_is_named(lake: Path, capsys, damage: str) -> None:
    chunk = chunk_path(_sgn_dir(lake, "r1", "fc1.weight"), 2, 0, 0)
    raw = chunk.read_bytes()
    if damage == "garbage":
        chunk.write_bytes(os.urandom(len(raw)))
    elif damage == "truncate":
        chunk.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        chunk.write_bytes(b"")
    else:
        chunk.unlink()
    rep = check_lake(lake)
    assert not rep.ok
    (p,) = rep.problems
    its = np.asarray(zarr.open_group(str(lake), mode="r")["runs/r1/iteration"][:])
    assert (p.run, p.tensor, p.array, p.iteration) == ("r1", "fc1.weight", "sgn", int(its[2]))
    assert p.chunk == chunk_key(_sgn_dir(lake, "r1", "fc1.weight"), 2, 0, 0)
    code, out, _ = run_cli(["check", str(lake), "--no-progress"], capsys)
    assert code == 1
    assert f"run 'r1', tensor 'fc1.weight', array 'sgn', iteration {int(its[2])}" in out
    code, out, _ = run_cli(["check", str(lake), "--json"], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["n_problems"] == 1
    assert doc["findings"][0]["tensor"] == "fc1.weight"


def test_damage_past_commit_marker_is_not_a_problem(lake: Path) -> None:
    chunk_path(_sgn_dir(lake, "r2", "fc1.weight"), 3, 0, 0).write_bytes(b"not zstd at all")
    rep = check_lake(lake)
    assert rep.ok


def test_quick_mode_reads_no_chunk(lake: Path) -> None:
    chunk_path(_sgn_dir(lake, "r1", "fc1.weight"), 0, 0, 0).write_bytes(b"junk")
    rep = check_lake(lake, read_data=False)
    assert rep.ok and rep.chunks_checked == 0
    assert not check_lake(lake).ok


def _edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def _run_attrs(lake: Path, run: str, fn) -> None:
    _edit_json(lake / "runs" / run / "zarr.json", lambda d: fn(d["attributes"]["sgnlake_run"]))


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (lambda a: a.update(committed=5), "committed"),
        (lambda a: a.update(committed=3), "status complete but 3 of 4"),
        (lambda a: a["tensors"][0].update(shape=[12, 8]), "differ from the run's tensor table"),
        (lambda a: a["tensors"].append({**a["tensors"][0], "name": "fc9.weight"}), "missing tensor group"),
        (lambda a: a.update(n_minibatches=41), "minibatch=40, expected 41"),
        (lambda a: a.update(status="exploded"), "run attributes are invalid"),
    ],
    ids=["committed>stored", "complete-but-short", "tensor-attrs", "missing-tensor", "minibatches", "status"],
)
def test_inconsistent_attrs_are_problems(lake: Path, edit, expect: str) -> None:
    _run_attrs(lake, "r1", edit)
    rep = check_lake(lake)
    assert not rep.ok
    assert any(expect in p.message and p.run == "r1" for p in rep.problems), [p.line() for p in rep.problems]


def test_broken_array_metadata_is_a_problem(lake: Path) -> None:
    (lake / "runs" / "r1" / "fc2.bias" / "weight" / "zarr.json").write_text("{not json")
    rep = check_lake(lake)
    assert not rep.ok
    assert any("fc2.bias" in p.message for p in rep.problems)


def test_run_group_without_attrs_is_a_warning(lake: Path) -> None:
    root = zarr.open_group(str(lake), mode="r+")
    root.create_group("runs/half-created")
    claim = {"token": "t", "host": "node7", "pid": 4242, "time": "2025-01-01T00:00:00+00:00"}
    root.create_group("runs/being-created", attributes={"sgnlake_claim": claim})
    rep = check_lake(lake)
    assert rep.ok
    assert any(w.run == "half-created" and "no run attributes" in w.message for w in rep.warnings)
    (w,) = [w for w in rep.warnings if w.run == "being-created"]
    assert "pid 4242 on node7" in w.message
    # any host's collect replaces it (it holds the run's lease), not only the claimant's host
    assert "of this run id, on any host, replaces it under the run's lease" in w.message


def test_nonfinite_committed_values_are_warned(lake: Path) -> None:
    g = zarr.open_group(str(lake), mode="r+")
    g["runs/r1/loss"][1] = np.inf
    rep = check_lake(lake)
    assert rep.ok
    (w,) = [w for w in rep.warnings if "non-finite" in w.message]
    assert (w.run, w.array) == ("r1", "loss") and "1 non-finite" in w.message


def _write_result(lake: Path, run: str, key: str, iterations: list[int], n_attr: int | None = None) -> None:
    root = zarr.open_group(str(lake), mode="r+")
    g = root.require_group(f"results/{run}/{key}")
    meta = ResultMeta(
        estimator="mohammadi", settings={"k1": "sqrt"}, run_id=run, n_iterations=n_attr or len(iterations)
    )
    g.attrs["sgnlake_result"] = meta.to_dict()
    it = g.create_array("iteration", shape=(len(iterations),), dtype="int64", dimension_names=["iteration"])
    it[:] = iterations
    tg = g.create_group("fc1.bias")
    a = tg.create_array(
        "alpha",
        shape=(len(iterations), 8),
        chunks=(1, 8),
        dtype="float64",
        dimension_names=["iteration", "param"],
    )
    a[:] = 1.5


def test_results_are_checked(lake: Path) -> None:
    _write_result(lake, "r1", "alpha-good", [0, 100, 200, 300])
    rep = check_lake(lake)
    assert rep.ok and rep.results == 1
    _write_result(lake, "r1", "alpha-bad-its", [0, 150])
    _write_result(lake, "r1", "alpha-bad-n", [0, 100], n_attr=3)
    _write_result(lake, "gone", "alpha", [0])
    chunk = next(
        p
        for p in (lake / "results" / "r1" / "alpha-good" / "fc1.bias" / "alpha" / "c").rglob("*")
        if p.is_file()
    )
    chunk.write_bytes(b"\x00\x01")
    rep = check_lake(lake)
    msgs = [p.message for p in rep.problems]
    assert any("[150] are not committed snapshots" in m for m in msgs), msgs
    assert any("attrs say 3 iteration(s)" in m for m in msgs), msgs
    assert any("alpha-good" in m and "cannot be decoded" in m for m in msgs), msgs
    assert any(w.run == "gone" and "orphan result" in w.message for w in rep.warnings)


def test_checkpoints_are_checked(lake: Path) -> None:
    root = zarr.open_group(str(lake), mode="r+")
    for run in ("r2", "ghost"):
        g = root.require_group(f"checkpoints/{run}")
        a = g.create_array("state", shape=(100,), chunks=(50,), dtype="uint8", dimension_names=["byte"])
        a[:] = np.arange(100, dtype=np.uint8)
    rep = check_lake(lake)
    assert rep.ok and rep.checkpoints == 2
    assert any(w.run == "ghost" and "orphan checkpoint" in w.message for w in rep.warnings)
    (lake / "checkpoints" / "r2" / "state" / "c" / "1").write_bytes(b"x")
    rep = check_lake(lake)
    (p,) = rep.problems
    assert p.run == "r2" and "checkpoints/r2/state" in p.message


def test_usage_errors_exit_2(lake: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(["check", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and out == "" and err.startswith("error: no lake at") and err.count("\n") == 1
    _edit_json(lake / "zarr.json", lambda d: d["attributes"]["sgnlake"].update(version=99))
    code, out, err = run_cli(["check", str(lake)], capsys)
    assert code == 2 and "newer" in err and "upgrade" in err and err.count("\n") == 1
    code, out, err = run_cli(["check", str(lake), "--storage-option", "novalue"], capsys)
    assert code == 2 and "key=value" in err
    code, out, err = run_cli(["check", str(lake), "--workers", "0"], capsys)
    assert code == 2 and "Traceback" not in err


def test_alpha_names_a_corrupt_chunk_or_skips_it(lake: Path, capsys) -> None:
    """The analysis meets the chunk check reports: one line naming it, or NaN with --skip-corrupt."""
    chunk = chunk_path(_sgn_dir(lake, "r1", "fc1.weight"), 2, 0, 0)
    chunk.write_bytes(b"garbage!" * 4)
    it2 = int(np.asarray(zarr.open_group(str(lake), mode="r")["runs/r1/iteration"][2]))
    code, out, err = run_cli(["alpha", str(lake), "--runs", "r1", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    rel = chunk.relative_to(lake).as_posix()
    assert f"run 'r1', tensor 'fc1.weight', array 'sgn', iteration {it2}, chunk {rel}" in err, err
    code, out, err = run_cli(["alpha", str(lake), "--runs", "r1", "--no-progress", "--skip-corrupt"], capsys)
    assert code == 0, err
    assert "skipped 1 corrupt chunk(s)" in err and rel in err
    from sgnlake.analyze import open_lake

    alpha = open_lake(lake).alpha("r1", tensor="fc1.weight").values  # (iteration, param)
    per_chunk = zarr.open_group(str(lake), mode="r")["runs/r1/fc1.weight/sgn"].chunks[2]
    block = int(chunk.name)
    bad = slice(block * per_chunk, (block + 1) * per_chunk)
    assert np.isnan(alpha[2, bad]).all()
    # elsewhere every parameter has an estimate (possibly inf: 1/alpha <= 0 happens at M = 40)
    assert not np.isnan(np.delete(alpha[2], np.r_[bad])).any() and not np.isnan(alpha[[0, 1, 3]]).any()


def test_check_on_an_fsspec_url(lake: Path, capsys) -> None:
    """Lakes on object storage are checked through fsspec (here the in-memory filesystem)."""
    import fsspec

    from sgnlake.schema.transfer import copy_runs

    url = f"memory://check-{os.getpid()}-{lake.parent.name}"
    copy_runs(str(lake), url, progress=False)
    rep = check_lake(url)
    assert rep.ok and rep.chunks_checked == check_lake(lake).chunks_checked
    fs = fsspec.filesystem("memory")
    root = url[len("memory://") :]
    r1 = lake / "runs" / "r1" / "fc2.weight"
    sgn_key = f"{root}/runs/r1/fc2.weight/sgn/{chunk_key(r1 / 'sgn', 1, 0, 0)}"
    grad_key = f"{root}/runs/r1/fc2.weight/grad/{chunk_key(r1 / 'grad', 3, 0)}"
    assert fs.exists(sgn_key) and fs.exists(grad_key)
    fs.pipe(sgn_key, b"garbage")
    fs.rm(grad_key)
    code, out, _ = run_cli(["check", url, "--json"], capsys)
    doc = json.loads(out)
    assert code == 1
    got = {(f["tensor"], f["array"], f["iteration"]) for f in doc["findings"] if f["severity"] == "problem"}
    its = np.asarray(zarr.open_group(str(lake), mode="r")["runs/r1/iteration"][:])
    assert got == {("fc2.weight", "sgn", int(its[1])), ("fc2.weight", "grad", int(its[3]))}
    fs.rm(root, recursive=True)
