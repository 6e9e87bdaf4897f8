"""``sgnlake copy`` between local lakes: byte-identical objects, resumption, refusals.

Oracles: the files on disk (``os.walk`` + bytes), plain Zarr reads and
:func:`sgnlake.schema.validate_lake`. The lakes are synthetic (``lake_fixtures``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from sgnlake.cli.app import main
from sgnlake.schema import (
    LakeError,
    NotALakeError,
    RunExistsError,
    RunNotFoundError,
    open_lake_group,
    run_ids,
    transfer,
    validate_lake,
)
from sgnlake.schema.transfer import copy_runs, select_runs

try:
    from .lake_fixtures import RunSpec, grow_run, write_lake
except ImportError:
    from lake_fixtures import RunSpec, grow_run, write_lake

PREFIXES = ("runs", "results", "checkpoints")


def objects(lake: Path, run: str | None = None) -> dict[str, bytes]:
    """Every stored object of a lake's runs (or of one run), read from disk: key -> bytes."""
    out: dict[str, bytes] = {}
    for top in PREFIXES:
        base = lake / top if run is None else lake / top / run
        for dirpath, _, files in os.walk(base):
            for f in files:
                p = Path(dirpath) / f
                out[p.relative_to(lake).as_posix()] = p.read_bytes()
    return out


def add_results_and_checkpoint(lake: Path, run_id: str, key: str = "alpha-test") -> None:
    """Give a run a derived result and a checkpoint, with plain Zarr."""
    root = zarr.open_group(str(lake), mode="r+")
    g = root.create_group(f"results/{run_id}/{key}", attributes={"sgnlake_result": {"estimator": "x"}})
    g.create_array("iteration", data=np.array([0, 100], dtype=np.int64), dimension_names=["iteration"])
    t = g.create_group("fc1.weight")
    t.create_array("alpha", data=np.full((2, 96), 1.5, np.float64), dimension_names=["iteration", "param"])
    ck = root.create_group(f"checkpoints/{run_id}")
    ck.create_array("state", data=np.frombuffer(b"opaque resume state" * 10, dtype=np.uint8))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    lake = tmp_path / "src"
    write_lake(str(lake), [RunSpec("r1"), RunSpec("r2", seed=3), RunSpec("s1", seed=4)])
    add_results_and_checkpoint(lake, "r1")
    return lake


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as e:
        main([*args])
    return int(e.value.code or 0)


def test_copy_is_byte_identical_and_valid(src: Path, tmp_path: Path, capsys) -> None:
    dst = tmp_path / "dst"
    assert cli("copy", str(src), str(dst), "--no-progress") == 0
    out = capsys.readouterr().out
    assert "copied 3 run(s)" in out
    want = objects(src)
    assert objects(dst) == want  # chunks, codecs (zarr.json) and attrs byte for byte
    assert any(k.startswith("results/r1/") for k in want) and any(
        k.startswith("checkpoints/r1/") for k in want
    )
    report = validate_lake(str(dst))
    assert report.ok, report.problems
    assert report.runs == ["r1", "r2", "s1"]
    a = zarr.open_group(str(src), mode="r")["runs/r2/fc1.weight/sgn"]
    b = zarr.open_group(str(dst), mode="r")["runs/r2/fc1.weight/sgn"]
    np.testing.assert_array_equal(a[:], b[:])
    assert a.metadata.to_dict() == b.metadata.to_dict()


def test_runs_glob_selects_runs_with_their_results(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    assert cli("copy", str(src), str(dst), "--runs", "r1", "--runs", "s*", "--no-progress") == 0
    assert run_ids(open_lake_group(str(dst))) == ["r1", "s1"]
    got = objects(dst)
    want = {k: v for k, v in objects(src).items() if k.count("/") == 1 or k.split("/")[1] in ("r1", "s1")}
    assert got == want


def test_glob_matching_nothing_is_a_one_line_error(src: Path, tmp_path: Path, capsys) -> None:
    assert cli("copy", str(src), str(tmp_path / "dst"), "--runs", "nope*", "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run matches 'nope*'") and "\n" not in err
    with pytest.raises(RunNotFoundError):
        select_runs(["a", "b"], ["c"])
    assert select_runs(["a1", "a2", "b"], ["a*", "a1"]) == ["a1", "a2"]
    assert select_runs(["a", "b"], None) == ["a", "b"]


@pytest.mark.filterwarnings("ignore:Object at r1 is not recognized:UserWarning")
def test_interrupted_copy_is_not_a_run_and_resumes(src: Path, tmp_path: Path, monkeypatch) -> None:
    dst = tmp_path / "dst"
    real_write = transfer._Location.write
    calls = {"n": 0}

    def failing_write(self, key: str, data: bytes) -> None:
        if self.text == str(dst) and key.split("/")[1] == "r1":
            calls["n"] += 1
            if calls["n"] > 30:
                raise OSError("simulated network failure")
        real_write(self, key, data)

    monkeypatch.setattr(transfer._Location, "write", failing_write)
    with pytest.raises(LakeError, match="simulated network failure"):
        copy_runs(str(src), str(dst), runs=["r1"], jobs=1)
    monkeypatch.setattr(transfer._Location, "write", real_write)
    partial = objects(dst, "r1")
    assert len(partial) == 30  # results/ and checkpoints/ parent groups are outside the run
    assert "runs/r1/zarr.json" not in partial
    assert run_ids(open_lake_group(str(dst))) == []  # a half copy is not a finished run
    assert validate_lake(str(dst)).ok
    # A torn object (as a crash mid-write leaves on a local disk) is recopied: sizes differ.
    torn = next(k for k in sorted(partial) if not k.endswith("zarr.json"))  # a chunk (either layout)
    (dst / torn).write_bytes(partial[torn][:-3])
    report = copy_runs(str(src), str(dst), runs=["r1"])
    (rc,) = report.runs
    assert rc.status == "resumed"
    assert rc.objects == len(objects(src, "r1"))
    assert rc.copied == rc.objects - 29
    assert objects(dst, "r1") == objects(src, "r1")
    assert validate_lake(str(dst)).runs == ["r1"]


def test_rerun_is_up_to_date_and_adds_new_results(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    copy_runs(str(src), str(dst))
    again = copy_runs(str(src), str(dst))
    assert [r.status for r in again.runs] == ["up to date"] * 3
    assert again.copied == 0
    before = objects(src, "r2")
    add_results_and_checkpoint(src, "r2", key="alpha-new")
    new = {k: v for k, v in objects(src, "r2").items() if k not in before}
    report = copy_runs(str(src), str(dst), runs=["r2"])
    assert report.runs[0].status == "updated"
    assert report.copied == len(new) and report.bytes_copied == sum(map(len, new.values()))
    assert objects(dst) == objects(src)


def test_refuses_to_overwrite_a_different_run(src: Path, tmp_path: Path, capsys) -> None:
    dst = tmp_path / "dst"
    write_lake(str(dst), [RunSpec("r1", seed=42)])
    before = objects(dst)
    assert cli("copy", str(src), str(dst), "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run 'r1' already exists in") and "\n" not in err
    assert objects(dst) == before
    with pytest.raises(RunExistsError):
        copy_runs(str(src), str(dst), runs=["r1"])


def test_copy_of_a_growing_run_is_a_consistent_snapshot(src: Path, tmp_path: Path, monkeypatch) -> None:
    """The run's metadata is read before the listing: what it calls committed is all there."""
    dst = tmp_path / "dst"
    real_list = transfer._Location.list_sizes
    grown = {"done": False}

    def list_then_grow(self, prefix: str) -> dict[str, int]:
        if not grown["done"] and self.text == str(src):
            grown["done"] = True  # a collector commits two more snapshots right after the metadata read
            grow_run(str(src), "r2", [400, 500])
        return real_list(self, prefix)

    monkeypatch.setattr(transfer._Location, "list_sizes", list_then_grow)
    copy_runs(str(src), str(dst), runs=["r2"])
    monkeypatch.setattr(transfer._Location, "list_sizes", real_list)
    report = validate_lake(str(dst))
    assert report.ok, report.problems
    g_src = zarr.open_group(str(src), mode="r")["runs/r2"]
    g_dst = zarr.open_group(str(dst), mode="r")["runs/r2"]
    assert g_dst.attrs["sgnlake_run"]["committed"] == 4 and g_src.attrs["sgnlake_run"]["committed"] == 6
    np.testing.assert_array_equal(g_dst["fc2.weight/sgn"][:4], g_src["fc2.weight/sgn"][:4])
    with pytest.raises(RunExistsError):  # the source moved on: never overwritten silently
        copy_runs(str(src), str(dst), runs=["r2"])


def test_same_lake_and_non_lake_destinations_are_refused(src: Path, tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="same lake"):
        copy_runs(str(src), f"file://{src}")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a lake")
    with pytest.raises(NotALakeError):
        copy_runs(str(src), str(junk))
    with pytest.raises(NotALakeError):
        copy_runs(str(tmp_path / "missing"), str(tmp_path / "dst"))
