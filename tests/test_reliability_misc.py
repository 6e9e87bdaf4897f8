"""Ctrl-C, diverging training, concurrent writers, write errors (disk full), non-finite SGN.

The collector is driven as users drive it: the ``sgnlake`` command in child
processes (hooks that send SIGINT or pause are installed from outside with
``python -c``), or ``sgnlake.collect.collect`` in-process with the lake's store
replaced by :class:`faulty_store.FaultyStore`. The oracle for "committed data
intact" is an uninterrupted run of the same config, read with plain Zarr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from faulty_store import FaultState, patch_open_store
from lake_fixtures import chunk_pattern
from test_reliability_kill import CONFIG, N_SNAPSHOTS, RUN, assert_same_arrays, plain_arrays

from sgnlake.schema import LakeError, RunConfig, Schedule, validate_lake
from sgnlake.schema.check import check_lake

#: ``sgnlake collect`` options equal to ``CONFIG`` (except the lake and run id).
CLI_ARGS = [
    "--model", "fcn", "--depth", "2", "--width", "8", "--n-train", "200", "--batch-size", "20",
    "--lr", "0.1", "--seed", "3", "--iterations", "40", "--every", "10", "--include-start",
    "--engine", "loop", "--device", "cpu", "--param-chunk", "1024", "--threads", "1", "--no-progress",
]  # fmt: skip

#: Runs ``sgnlake collect`` in a child after installing a hook (``spec["hook"]``).
CLI_CHILD = r"""
import json, os, re, signal, sys, time
spec = json.loads(sys.argv[1])
import torch
import zarr.storage
hits = [0]
hook = spec.get("hook")
if hook == "sigint-grad":  # Ctrl-C while the gradients of snapshot 2 are computed
    real_grad = torch.autograd.grad
    def grad(*a, **k):
        hits[0] += 1
        if hits[0] == spec["nth"]:
            os.kill(os.getpid(), signal.SIGINT)
        return real_grad(*a, **k)
    torch.autograd.grad = grad
elif hook in ("sigint-write", "pause"):
    pattern = re.compile(spec["pattern"])

    def reached(key):
        if pattern.search(key):
            hits[0] += 1
            if hits[0] == spec["nth"]:
                if hook == "pause":  # hold the claim open until the test releases it
                    open(spec["flag"], "w").close()
                    deadline = time.time() + 120
                    while not os.path.exists(spec["release"]) and time.time() < deadline:
                        time.sleep(0.02)
                else:  # Ctrl-C arrives while a chunk is being written (an IO thread)
                    os.kill(os.getpid(), signal.SIGINT)

    real_set = zarr.storage.LocalStore.set
    async def set_(self, key, value):
        reached(key)
        await real_set(self, key, value)
    zarr.storage.LocalStore.set = set_
    # the writer's plain local-file chunk writes: the key is the end of the path
    import sgnlake.collect.chunk_files as W
    real_write = W.write_file
    def write(path, parts):
        reached(path.replace(os.sep, "/"))
        return real_write(path, parts)
    W.write_file = write
if hook == "wait":  # start only once another child has signalled (imports are done by now)
    deadline = time.time() + 120
    while not os.path.exists(spec["flag"]) and time.time() < deadline:
        time.sleep(0.02)
from sgnlake.cli.app import main
main(spec["argv"])
"""


def cli_child(argv: list[str], **spec) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CLI_CHILD, json.dumps({**spec, "argv": argv})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    from sgnlake.collect import collect

    lake = tmp_path_factory.mktemp("ref") / "lake"
    meta = collect(lake, CONFIG, progress=False, threads=1)
    assert meta.status == "complete"
    return plain_arrays(lake)


def assert_lake_clean(lake: Path) -> None:
    rep = validate_lake(lake)
    assert rep.ok, rep.problems
    chk = check_lake(lake)
    assert chk.ok, [f.line() for f in chk.problems]


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize(
    "hook",
    [
        {"hook": "sigint-grad", "nth": 25},  # minibatch 5 of snapshot 2
        {"hook": "sigint-write", "pattern": chunk_pattern(f"runs/{RUN}/fc1.weight/sgn", 2), "nth": 3},
    ],
    ids=["during-gradients", "during-write"],
)
def test_sigint_marks_interrupted_and_resume_finishes(hook, tmp_path: Path, reference) -> None:
    from sgnlake.collect import collect

    lake = tmp_path / "lake"
    proc = cli_child(["collect", str(lake), "--run-id", RUN, *CLI_ARGS], **hook)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and f"--run-id {RUN} --resume" in last, err
    meta = json.loads((lake / "runs" / RUN / "zarr.json").read_text())["attributes"]["sgnlake_run"]
    assert meta["status"] == "interrupted" and "--resume" in meta["reason"]
    assert 1 <= meta["committed"] < N_SNAPSHOTS
    assert_lake_clean(lake)
    assert_same_arrays(plain_arrays(lake), reference, meta["committed"])
    done = collect(lake, CONFIG, resume=True, progress=False, threads=1)
    assert done.status == "complete"
    assert_same_arrays(plain_arrays(lake), reference, N_SNAPSHOTS)


# ----------------------------------------------------------------------------- diverging training


def test_diverging_run_fails_and_keeps_earlier_snapshots(tmp_path: Path, capsys) -> None:
    from sgnlake.analyze import open_lake
    from sgnlake.cli.app import main

    lake = tmp_path / "lake"
    argv = ["collect", str(lake), "--run-id", "boom", *CLI_ARGS]
    # this tiny ReLU net does not diverge at lr 50 or even 1e4 (dead units, finite loss);
    # lr 1e20 with biases overflows the logits at step 1, after the snapshot at iteration 0
    argv[argv.index("--lr") + 1] = "1e20"
    argv[argv.index("--every") + 1] = "1"
    argv.append("--bias")
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "lower --lr" in err, err
    lk = open_lake(lake)
    meta = lk.meta("boom")
    assert meta.status == "failed" and ("diverged" in meta.reason or "non-finite" in meta.reason)
    assert 1 <= meta.committed < len(meta.planned_iterations)
    sgn = lk.sgn("boom", "fc1.weight").values
    assert sgn.shape[0] == meta.committed and np.isfinite(sgn).all()
    assert_lake_clean(lake)
    assert any(f.run == "boom" and "failed" in f.message for f in check_lake(lake).warnings)
    # the committed snapshots of a failed run are analysable
    rep = lk.compute_alpha("boom", progress=False)
    assert rep.runs[0].snapshots == meta.committed
    assert lk.alpha("boom", tensor="fc1.weight").shape[0] == meta.committed


def test_crash_in_training_marks_failed_even_with_a_commit_in_flight(tmp_path: Path) -> None:
    """lr 1e300 overflows float32 in the first SGD step (a RuntimeError from torch) while the
    background writer still commits snapshot 0: the run must end ``failed``, not ``running``."""
    from sgnlake.collect import collect

    cfg = RunConfig.from_dict(
        {
            **CONFIG.to_dict(),
            "run_id": "boom",
            "lr": 1e300,
            "schedule": Schedule(kind="every", every=1, include_start=True).to_dict(),
        }
    )
    lake = tmp_path / "lake"
    with pytest.raises(Exception) as e:
        collect(lake, cfg, progress=False, threads=1)
    assert "overflow" in str(e.value)
    meta = json.loads((lake / "runs" / "boom" / "zarr.json").read_text())["attributes"]["sgnlake_run"]
    assert meta["status"] == "failed" and "overflow" in meta["reason"]
    assert meta["committed"] == 1
    assert_lake_clean(lake)


def _mohammadi_finite_oracle(x: np.ndarray, k1: int) -> float:
    """Mohammadi on the finite samples of one parameter: a non-finite sample leaves the X mean and
    its whole K1 block leaves the Y mean (written independently of analyze/kernels.py)."""
    blocks = x[: (len(x) // k1) * k1].reshape(-1, k1)
    keep = np.isfinite(blocks).all(axis=1)
    y = np.abs(blocks[keep].astype(np.float64).sum(axis=1))
    xs = np.abs(x[np.isfinite(x)].astype(np.float64))
    inv = (np.log(y[y > 0]).mean() - np.log(xs[xs > 0]).mean()) / np.log(k1)
    return 1.0 / inv


def test_analysis_skips_nonfinite_samples_with_a_count(tmp_path: Path) -> None:
    """A NaN or inf SGN sample is skipped (the parameter keeps an estimate from its finite samples)
    and counted separately from dead parameters."""
    from lake_fixtures import RunSpec, write_lake

    from sgnlake.analyze import open_lake

    path = write_lake(str(tmp_path / "lake"), [RunSpec("r", iterations=(0, 100), n_minibatches=40)])
    g = zarr.open_group(path, mode="r+")
    sgn = g["runs/r/fc1.bias/sgn"]
    block = sgn[1]
    block[3, 2] = np.nan
    block[7, 5] = np.inf
    sgn[1] = block
    lk = open_lake(path)
    rep = lk.compute_alpha("r", progress=False, k1=5)
    alpha = lk.alpha("r", tensor="fc1.bias", k1=5).values
    assert np.isfinite(alpha).all()
    for p in (2, 5):
        np.testing.assert_allclose(alpha[1, p], _mohammadi_finite_oracle(block[:, p], 5), rtol=1e-5)
    assert rep.runs[0].dead_last == 0
    assert rep.runs[0].nonfinite_samples == 2
    counts = lk.result("r", tensor="fc1.bias", k1=5)["n_nonfinite"].values
    assert counts[1, 2] == 1 and counts[1, 5] == 1 and counts.sum() == 2


# ----------------------------------------------------------------------------- concurrent writers


def test_concurrent_collectors(tmp_path: Path, reference) -> None:
    """Two collectors write different runs into one new lake at once; a third claiming a run id
    whose creation is in progress is refused with one clear line and leaves the first run intact."""
    lake = tmp_path / "lake"
    flag, release = tmp_path / "claimed", tmp_path / "release"
    b_argv = ["collect", str(lake), "--run-id", "same", *CLI_ARGS]
    b_argv[b_argv.index("--seed") + 1] = "4"
    # B waits (imports done) until A has created run 'same' but not yet written its run attributes
    b = cli_child(b_argv, hook="wait", flag=str(flag))
    a = cli_child(
        ["collect", str(lake), "--run-id", "same", *CLI_ARGS],
        hook="pause",
        pattern=r"runs/same/zarr\.json$",
        nth=2,  # 1: the group is created; 2: the run attributes
        flag=str(flag),
        release=str(release),
    )
    c = cli_child(["collect", str(lake), "--run-id", "other", *CLI_ARGS])
    try:
        (_, b_err) = b.communicate(timeout=240)
    finally:
        release.touch()  # A goes on writing its run attributes only once B is done
    (_, a_err), (_, c_err) = a.communicate(timeout=240), c.communicate(timeout=240)
    assert a.returncode == 0 and c.returncode == 0, (a_err, c_err)
    assert b.returncode == 2, b_err
    assert b_err.startswith("error: ") and b_err.count("\n") == 1 and "'same'" in b_err, b_err
    assert_lake_clean(lake)
    for run in ("same", "other"):
        meta = zarr.open_group(str(lake), mode="r")[f"runs/{run}"].attrs["sgnlake_run"]
        assert meta["status"] == "complete" and meta["config"]["seed"] == 3
        assert_same_arrays(plain_run(lake, run), reference, N_SNAPSHOTS)


def plain_run(lake: Path, run: str) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(lake), mode="r")[f"runs/{run}"]
    n = int(g.attrs["sgnlake_run"]["committed"])
    return {p: np.asarray(a[:n]) for p, a in g.members(max_depth=None) if isinstance(a, zarr.Array)}


# ----------------------------------------------------------------------------- write errors


@pytest.mark.parametrize(
    ("match", "after"),
    [
        (
            chunk_pattern(f"runs/{RUN}/fc1.weight/sgn", 2),
            2,
        ),  # chunks of snapshot 2 fail: disk full mid-snapshot
        ("", None),  # every write fails once snapshot 2 starts (metadata too): status cannot be saved
    ],
    ids=["chunk-writes", "all-writes"],
)
def test_disk_full_stops_the_run_with_committed_data_intact(
    match: str, after: int | None, tmp_path: Path, monkeypatch, reference
) -> None:
    from sgnlake.collect import collect

    lake = tmp_path / "lake"
    if after is None:  # from the first chunk write of snapshot 2 on, every write fails
        state = FaultState(fail_from=chunk_pattern(f"runs/{RUN}/fc1.weight/sgn", 2))
    else:
        state = FaultState(match=match, fail_after=after)
    with monkeypatch.context() as mp:
        handed = patch_open_store(mp, state)
        with pytest.raises(LakeError) as e:
            collect(lake, CONFIG, progress=False, threads=1)
    assert handed and state.failures >= 1
    msg = str(e.value)
    assert "\n" not in msg and "No space left on device" in msg, msg
    meta = json.loads((lake / "runs" / RUN / "zarr.json").read_text())["attributes"]["sgnlake_run"]
    assert meta["committed"] == 2
    if after is not None:
        assert meta["status"] == "failed" and "No space left" in meta["reason"]
    else:
        assert meta["status"] == "running"  # the status write failed too: the run looks crashed
    assert_lake_clean(lake)
    assert_same_arrays(plain_arrays(lake), reference, 2)
    # space freed: resume finishes the run exactly
    done = collect(lake, CONFIG, resume=True, progress=False, threads=1)
    assert done.status == "complete"
    assert_same_arrays(plain_arrays(lake), reference, N_SNAPSHOTS)


def test_faulty_store_fails_after_n_writes(tmp_path: Path) -> None:
    """The fault injector itself: N matching writes succeed, the next raise ENOSPC, reads still work."""
    import errno

    from faulty_store import FaultyStore
    from zarr.storage import LocalStore

    state = FaultState(match=r"(^|/)c/", fail_after=2)  # chunk keys only
    store = FaultyStore(LocalStore(str(tmp_path / "z")), state)
    arr = zarr.create_array(store, shape=(4,), chunks=(1,), dtype="int32", fill_value=-1)
    arr[0] = 10
    arr[1] = 11
    with pytest.raises(OSError) as e:
        arr[2] = 12
    assert e.value.errno == errno.ENOSPC and state.failures == 1 and state.writes == 2
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "z"), mode="r")[:], [10, 11, -1, -1])
