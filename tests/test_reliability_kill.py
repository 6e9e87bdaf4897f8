"""SIGKILL a collection at chosen moments, then check the lake and resume it.

Each kill point runs ``sgnlake.collect.collect`` in a child ``python -c`` process
that wraps Zarr's ``LocalStore.set`` and the writer's plain local-file writes
(``chunk_files.write_file``, ``chunk_files.write_atomic``, by store key), or ``torch.autograd.grad``, from outside and
SIGKILLs itself at one exact moment: during the gradients of a snapshot, in the
middle of writing its chunks, while writing its checkpoint, while growing the
arrays, just before and just after the commit marker, and while creating the
run. Nothing in the collector is asked to cooperate.

After the kill, the lake must validate (``validate_lake``), pass ``check_lake``,
and show through ``open_lake`` exactly the committed snapshots of an
uninterrupted reference run. Resuming must then finish the run so that every
array equals the reference run's, value for value (CPU, same seed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from lake_fixtures import chunk_pattern

from sgnlake.schema import RunConfig, Schedule, StorageSpec, validate_lake
from sgnlake.schema.check import check_lake

RUN = "k"

#: A small FCN (784 -> 8 -> 10, no bias): fc1.weight has 6272 parameters, so with
#: param_chunk 1024 each snapshot writes 7 chunks per fc1 array. 5 snapshots.
CONFIG = RunConfig(
    run_id=RUN,
    model="fcn",
    model_args={"depth": 2, "width": 8},
    n_train=200,
    batch_size=20,
    lr=0.1,
    seed=3,
    iterations=40,
    schedule=Schedule(kind="every", every=10, include_start=True),
    engine="loop",
    device="cpu",
    storage=StorageSpec(param_chunk=1024),
)
N_SNAPSHOTS = 5
M = 10  # minibatches per snapshot (200 // 20)

CHILD = r"""
import json, os, re, signal, sys
spec = json.loads(sys.argv[1])
import torch
import zarr.storage
from sgnlake.collect import collect
from sgnlake.schema import RunConfig

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

hits = [0]
if spec["kind"] == "timer":
    import threading
    threading.Timer(spec["delay"], die).start()
elif spec["kind"] == "grad":
    real_grad = torch.autograd.grad
    def grad(*a, **k):
        hits[0] += 1
        if hits[0] == spec["nth"]:
            die()
        return real_grad(*a, **k)
    torch.autograd.grad = grad
else:
    import threading
    import sgnlake.collect.chunk_files as W
    pattern = re.compile(spec["pattern"])
    cond = spec.get("cond")
    lock = threading.Lock()
    lake_root = os.path.abspath(spec["lake"])

    def which(key, payload):
        # 0: not a counted write; else this write's number (writes run concurrently)
        if not pattern.search(key):
            return 0
        if cond and not eval(cond, {"doc": json.loads(payload())}):
            return 0
        with lock:
            hits[0] += 1
            return hits[0]

    real_set = zarr.storage.LocalStore.set
    async def set_(self, key, value):
        mine = which(key, value.to_bytes)
        if mine == spec["nth"] and spec["when"] == "before":
            die()
        await real_set(self, key, value)
        if mine == spec["nth"] and spec["when"] == "after":
            die()
    zarr.storage.LocalStore.set = set_

    # the writer's plain local-file writes (chunks, grown zarr.json, checkpoints) by their store key
    def wrap(real, payload):
        def write(path, data):
            key = os.path.relpath(os.path.abspath(path), lake_root).replace(os.sep, "/")
            mine = which(key, lambda: payload(data))
            if mine == spec["nth"] and spec["when"] == "before":
                die()
            out = real(path, data)
            if mine == spec["nth"] and spec["when"] == "after":
                die()
            return out
        return write
    W.write_file = wrap(W.write_file, lambda parts: b"".join(bytes(p) for p in parts))
    W.write_atomic = wrap(W.write_atomic, lambda data: data)
collect(spec["lake"], RunConfig.from_dict(spec["config"]), progress=False, threads=1)
print("NOT KILLED")
"""

RUN_JSON = rf"runs/{RUN}/zarr\.json$"
MARKER = "doc['attributes'].get('sgnlake_run', {{}}).get('committed') == {}"

#: name -> (child spec, committed snapshots expected after the kill). During the gradients of
#: snapshot 2 the background writer may still be committing snapshot 1: 1 or 2 are committed.
KILL_POINTS: dict[str, tuple[dict[str, Any], int | tuple[int, ...]]] = {
    # torch.autograd.grad call 25 = minibatch 5 of snapshot 2 (the loop engine makes M calls per snapshot)
    "during-gradients": ({"kind": "grad", "nth": 2 * M + 5}, (1, 2)),
    # 3 of the 7 sgn chunks of fc1.weight at snapshot 2 are on disk
    "mid-chunk-write": (
        {
            "kind": "set",
            "pattern": chunk_pattern(f"runs/{RUN}/fc1.weight/sgn", 2),
            "nth": 3,
            "when": "after",
            "note": "chunk(s) stored beyond the arrays' shape",
        },
        2,
    ),
    "during-checkpoint": (
        {
            "kind": "set",
            "pattern": chunk_pattern(f"checkpoints/{RUN}/s000002/state", 0),
            "nth": 1,
            "when": "before",
        },
        2,
    ),
    # one array grown to 3 snapshots, the others and the marker still at 2
    "mid-resize": (
        {
            "kind": "set",
            "pattern": rf"runs/{RUN}/fc1\.weight/sgn/zarr\.json$",
            "cond": "doc['shape'][0] == 3",
            "nth": 1,
            "when": "after",
            "note": "uncommitted snapshot slot",
        },
        2,
    ),
    # every array grown to 3, commit marker not yet written
    "before-commit-marker": (
        {
            "kind": "set",
            "pattern": RUN_JSON,
            "cond": MARKER.format(3),
            "nth": 1,
            "when": "before",
            "note": "uncommitted snapshot slot",
        },
        2,
    ),
    # between snapshots: marker says 2, old checkpoint not yet deleted, next snapshot not started
    "after-commit-marker": (
        {"kind": "set", "pattern": RUN_JSON, "cond": MARKER.format(2), "nth": 1, "when": "after"},
        2,
    ),
    # all snapshots committed, status still 'running' (killed before 'complete' is written)
    "before-complete": (
        {
            "kind": "set",
            "pattern": RUN_JSON,
            "cond": "doc['attributes'].get('sgnlake_run', {}).get('status') == 'complete'",
            "nth": 1,
            "when": "before",
        },
        N_SNAPSHOTS,
    ),
    # while creating the run: arrays being created, run attributes not written yet
    # a moment chosen by a timer (where it lands depends on the machine; the invariants hold anywhere)
    "random-timer": ({"kind": "timer", "delay": 0.7}, (0, 1, 2, 3, 4, 5)),
    "during-creation": (
        {"kind": "set", "pattern": rf"runs/{RUN}/fc2\.weight/grad/zarr\.json$", "nth": 1, "when": "after"},
        0,
    ),
}


def plain_arrays(lake: Path) -> dict[str, np.ndarray]:
    """Every array of the run (committed part), read with plain Zarr."""
    g = zarr.open_group(str(lake), mode="r")[f"runs/{RUN}"]
    n = int(g.attrs["sgnlake_run"]["committed"])
    out: dict[str, np.ndarray] = {}
    for path, arr in g.members(max_depth=None):
        if isinstance(arr, zarr.Array):
            out[path] = np.asarray(arr[:n])
    return out


def assert_same_arrays(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], n: int) -> None:
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert got[name].shape[0] == n, name
        np.testing.assert_array_equal(got[name], ref[name][:n], err_msg=name)


def child_command(lake: Path, spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-c", CHILD, json.dumps({**spec, "lake": str(lake), "config": CONFIG.to_dict()})]


@dataclass
class Killed:
    lake: Path
    returncode: int
    output: str


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Killed], dict[str, np.ndarray]]:
    """Run every kill point's child (a few at a time) while collecting the reference run in-process.

    Returns the killed lakes by kill point and the arrays of the uninterrupted reference run.
    """
    from sgnlake.collect import collect

    base = tmp_path_factory.mktemp("kill")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    todo = list(KILL_POINTS.items())
    running: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    out: dict[str, Killed] = {}

    def reap(block: bool) -> None:
        for name, (proc, lake) in list(running.items()):
            if block or proc.poll() is not None:
                stdout, _ = proc.communicate(timeout=180)
                out[name] = Killed(lake, proc.returncode, stdout[-3000:])
                del running[name]
                return

    def launch() -> None:
        while todo and len(running) < 3:
            name, (spec, _) = todo.pop(0)
            lake = base / name / "lake"
            proc = subprocess.Popen(
                child_command(lake, spec),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            running[name] = (proc, lake)

    launch()
    ref_lake = base / "reference" / "lake"
    meta = collect(ref_lake, CONFIG, progress=False, threads=1)
    assert meta.status == "complete" and meta.committed == N_SNAPSHOTS
    reference = plain_arrays(ref_lake)
    while running or todo:
        launch()
        reap(block=True)
    return out, reference


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume(point: str, killed: tuple[dict[str, Killed], dict[str, np.ndarray]]) -> None:
    from sgnlake.analyze import open_lake

    results, reference = killed
    spec, expect = KILL_POINTS[point]
    allowed = expect if isinstance(expect, tuple) else (expect,)
    res = results[point]
    lake = res.lake
    if spec["kind"] == "timer" and res.returncode == 0:
        allowed = (N_SNAPSHOTS,)  # the run finished before the timer fired
    else:
        assert res.returncode == -signal.SIGKILL, (res.returncode, res.output)

    # --- the killed lake: valid, clean for the fsck, committed data intact, nothing uncommitted visible
    if not (lake / "zarr.json").exists():  # killed before the lake was created
        assert 0 in allowed
        _resume_and_compare(lake, reference)
        return
    rep = validate_lake(lake)
    assert rep.ok, rep.problems
    chk = check_lake(lake)
    assert chk.ok, [f.line() for f in chk.problems]
    if spec.get("note"):
        assert any(spec["note"] in f.message for f in chk.findings), [f.line() for f in chk.findings]
    lk = open_lake(lake)
    if RUN not in lk.run_ids:
        assert 0 in allowed  # killed before the run attributes were written: not a run
    else:
        meta = lk.meta(RUN)
        assert meta.committed in allowed, (meta.committed, allowed)
        assert meta.status == ("complete" if res.returncode == 0 else "running")
        n = meta.committed
        np.testing.assert_array_equal(lk.iterations(RUN), reference["iteration"][:n])
        for tensor in ("fc1.weight", "fc2.weight"):
            got = lk.sgn(RUN, tensor).values
            np.testing.assert_array_equal(got, reference[f"{tensor}/sgn"][:n])
        assert_same_arrays(plain_arrays(lake), reference, n)

    _resume_and_compare(lake, reference)


def _resume_and_compare(lake: Path, reference: dict[str, np.ndarray]) -> None:
    """Resume finishes the run; every array equals the uninterrupted run's."""
    from sgnlake.collect import collect

    meta = collect(lake, CONFIG, resume=True, progress=False, threads=1)
    assert meta.status == "complete" and meta.committed == N_SNAPSHOTS
    assert_same_arrays(plain_arrays(lake), reference, N_SNAPSHOTS)
    assert validate_lake(lake).ok
    chk = check_lake(lake)
    assert chk.ok, [f.line() for f in chk.problems]
    assert not any("beyond" in f.message or "uncommitted" in f.message for f in chk.findings)
