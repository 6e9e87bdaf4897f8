"""Concurrent takeover of one stale lease by real processes (schema/lease.py), local disk and moto S3.

A holder process takes the lease and then becomes stale in one of two real
ways: it is SIGKILLed (its pid is gone), or it is SIGSTOPped until its last
heartbeat is older than the lease timeout (``SGNLAKE_LEASE_TTL`` = 2 s). Then
N = 4 contender processes, started beforehand and released at the same instant
by a barrier file, each try to take the lease over. Exactly one must win (the
generation after the holder's); every other must raise ``LeaseHeldError``
naming the winner (pid and token); no generation beyond the winner's may exist;
and the stopped holder, continued, must learn that it lost the lease.

Then the same with ``sgnlake collect``: a collector SIGKILLed in the middle of
a snapshot leaves a stale run lease; two ``sgnlake collect --resume`` started at
the same instant race for it. Exactly one proceeds (it is paused at its first
chunk write until the other has exited, so the race is decided while both are
alive); the other exits 2 with one line naming the live owner; the finished run
equals an uninterrupted one (plain Zarr oracle) and the lake checks clean.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lake_fixtures import chunk_pattern
from test_reliability_kill import (
    KILL_POINTS,
    N_SNAPSHOTS,
    RUN,
    assert_same_arrays,
    child_command,
    plain_arrays,
)
from test_reliability_misc import assert_lake_clean, reference  # noqa: F401  (fixture)

from sgnlake.schema.store import list_keys, open_store, read_bytes

try:
    from .s3_fixtures import S3, bucket, s3  # noqa: F401  (fixtures)
except ImportError:
    from s3_fixtures import S3, bucket, s3  # noqa: F401  (fixtures)

N_CONTENDERS = 4
TTL = 2.0
KEY = "runs/r"

#: A lease holder or contender in a child process; prints one JSON line per event.
LEASE_CHILD = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
from sgnlake.schema.lease import Lease, LeaseHeldError, LeaseLostError, lease_ttl
so = spec.get("storage_options")
def say(**kw):
    print(json.dumps(kw), flush=True)
if spec["role"] == "holder":
    lease = Lease.acquire(spec["lake"], spec["key"], {"role": "holder"}, ttl=lease_ttl(), storage_options=so)
    say(held=lease.generation, owner=lease.owner)
    while not os.path.exists(spec["stop"]) and lease.lost is None:
        time.sleep(0.05)
    try:
        lease.heartbeat()
        say(lost=False)
    except LeaseLostError as e:
        say(lost=True, message=str(e))
    sys.exit(0)
open(spec["ready"], "w").close()
while not os.path.exists(spec["barrier"]):
    time.sleep(0.002)
try:
    lease = Lease.acquire(spec["lake"], spec["key"], {"role": "contender"}, ttl=lease_ttl(), storage_options=so)
except LeaseHeldError as e:
    say(refused=str(e), owner=e.owner)
    sys.exit(3)
say(won=lease.generation, owner=lease.owner)
while not os.path.exists(spec["stop"]):  # hold it until every other contender has finished
    time.sleep(0.05)
lease.release()
say(released=True)
"""


def _child(spec: dict[str, Any], ttl: float) -> subprocess.Popen[str]:
    env = {**os.environ, "SGNLAKE_LEASE_TTL": str(ttl)}
    return subprocess.Popen(
        [sys.executable, "-c", LEASE_CHILD, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _first_line(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    line = proc.stdout.readline()
    assert line, proc.communicate(timeout=timeout)
    return json.loads(line)


def _wait(pred, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def _generations(lake: str, storage_options: dict[str, Any] | None) -> list[str]:
    store = open_store(lake, storage_options=storage_options)
    return sorted(k.rsplit("/", 1)[-1] for k in list_keys(store, f".leases/{KEY}") if k.endswith(".json"))


def _record(lake: str, storage_options: dict[str, Any] | None, generation: int) -> dict[str, Any]:
    store = open_store(lake, storage_options=storage_options)
    return json.loads(read_bytes(store, f".leases/{KEY}/g{generation:09d}.json"))


def _contest(lake: str, tmp: Path, storage_options: dict[str, Any] | None, stale: str) -> None:
    so = storage_options
    hold_stop = tmp / "holder-stop"
    holder = _child(
        {"role": "holder", "lake": lake, "key": KEY, "stop": str(hold_stop), "storage_options": so},
        ttl=TTL if stale == "stalled" else 3600,
    )
    procs = [holder]
    try:
        held = _first_line(holder)
        barrier, stop = tmp / "barrier", tmp / "stop"
        contenders = [
            _child(
                {
                    "role": "contender",
                    "lake": lake,
                    "key": KEY,
                    "ready": str(tmp / f"ready{i}"),
                    "barrier": str(barrier),
                    "stop": str(stop),
                    "storage_options": so,
                },
                ttl=TTL,
            )  # fmt: skip
            for i in range(N_CONTENDERS)
        ]
        procs += contenders
        _wait(lambda: all((tmp / f"ready{i}").exists() for i in range(N_CONTENDERS)), "contenders ready")
        if stale == "killed":
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
        else:  # stalled: alive, but its last heartbeat older than the timeout
            holder.send_signal(signal.SIGSTOP)
            beat = _record(lake, so, held["held"])["heartbeat"]
            _wait(lambda: time.time() - beat > TTL + 0.3, "heartbeat stale", timeout=30)
        barrier.touch()

        # every contender but one is refused; the winner holds until they are done
        results: list[dict[str, Any]] = []
        for p in contenders:
            results.append(_first_line(p))
        won = [r for r in results if "won" in r]
        refused = [r for r in results if "refused" in r]
        assert len(won) == 1 and len(refused) == N_CONTENDERS - 1, results
        winner = won[0]
        assert winner["won"] == held["held"] + 1
        for r in refused:
            assert r["owner"]["token"] == winner["owner"]["token"], r
            assert f"pid {winner['owner']['pid']} on " in r["refused"], r
        assert _generations(lake, so) == [f"g{winner['won']:09d}.json"]  # no generation beyond the winner's
        for p in contenders:
            if p.pid != winner["owner"]["pid"]:
                assert p.wait(timeout=60) == 3
        stop.touch()
        for p in contenders:
            p.wait(timeout=60)
        assert _record(lake, so, winner["won"])["released"] is True
        if stale == "stalled":  # continued, the old holder learns it was taken over
            holder.send_signal(signal.SIGCONT)
            hold_stop.touch()
            out = _first_line(holder)
            assert out["lost"] is True and "taken over" in out["message"], out
            assert holder.wait(timeout=60) == 0
            assert _generations(lake, so) == [f"g{winner['won']:09d}.json"]  # it wrote no record back
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.communicate(timeout=60)


@pytest.mark.parametrize("stale", ["killed", "stalled"])
def test_concurrent_takeover_local(stale: str, tmp_path: Path) -> None:
    _contest(str(tmp_path / "lake"), tmp_path, None, stale)


@pytest.mark.parametrize("stale", ["killed", "stalled"])
def test_concurrent_takeover_s3(stale: str, s3: S3, bucket: str, tmp_path: Path) -> None:
    _contest(f"s3://{bucket}/lake", tmp_path, s3.storage_options, stale)


# ----------------------------------------------------------------------------- two resumers

#: ``sgnlake collect`` in a child: ready file, wait for the barrier, pause at the first matching chunk write.
COLLECT_CHILD = r"""
import json, os, re, sys, time
spec = json.loads(sys.argv[1])
import zarr.storage
import sgnlake.collect.chunk_files as W
pattern = re.compile(spec["pattern"])
hits = [0]
def reached(key):
    if pattern.search(key):
        hits[0] += 1
        if hits[0] == 1:  # the winner: hold the lease here until the test lets it go on
            open(spec["flag"], "w").close()
            deadline = time.time() + 120
            while not os.path.exists(spec["release"]) and time.time() < deadline:
                time.sleep(0.02)
real_set = zarr.storage.LocalStore.set
async def set_(self, key, value):
    reached(key)
    await real_set(self, key, value)
zarr.storage.LocalStore.set = set_
real_write = W.write_file  # the writer's plain local-file chunk writes: the key ends the path
def write(path, parts):
    reached(path.replace(os.sep, "/"))
    return real_write(path, parts)
W.write_file = write
from sgnlake.cli.app import main
open(spec["ready"], "w").close()
while not os.path.exists(spec["barrier"]):
    time.sleep(0.002)
main(spec["argv"])
"""


def test_two_resumers_of_a_killed_run_one_proceeds(tmp_path: Path, reference) -> None:  # noqa: F811
    lake = tmp_path / "lake"
    spec, committed = KILL_POINTS["mid-chunk-write"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    killed = subprocess.run(child_command(lake, spec), capture_output=True, text=True, timeout=180, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    rec = [k for k in list_keys(open_store(lake), f".leases/runs/{RUN}") if k.endswith(".json")]
    assert len(rec) == 1 and not json.loads(read_bytes(open_store(lake), rec[0])).get("released")

    barrier, release = tmp_path / "barrier", tmp_path / "release"
    argv = ["collect", str(lake), "--run-id", RUN, "--resume", "--no-progress", "--threads", "1"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                COLLECT_CHILD,
                json.dumps(
                    {
                        "argv": argv,
                        "ready": str(tmp_path / f"ready{i}"),
                        "barrier": str(barrier),
                        "flag": str(tmp_path / f"paused{i}"),
                        "release": str(release),
                        "pattern": chunk_pattern(f"runs/{RUN}/fc1.weight/sgn", committed),
                    }
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        _wait(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), "resumers ready")
        barrier.touch()
        paused = lambda: [i for i in range(2) if (tmp_path / f"paused{i}").exists()]  # noqa: E731
        exited = lambda: [i for i in range(2) if procs[i].poll() is not None]  # noqa: E731
        _wait(lambda: len(exited()) == 2 or (paused() and exited()), "one paused, one exited", timeout=180)
        assert len(paused()) == 1 and len(exited()) == 1, [p.communicate(timeout=5) for p in procs]
    finally:
        release.touch()
    (w,) = paused()
    winner, loser = procs[w], procs[1 - w]
    _, l_err = loser.communicate(timeout=60)
    w_out, w_err = winner.communicate(timeout=180)
    assert loser.returncode == 2, l_err
    assert l_err.count("\n") == 1 and l_err.startswith("error: ") and "Traceback" not in l_err, l_err
    assert f"pid {winner.pid} on " in l_err and repr(RUN) in l_err, l_err
    assert winner.returncode == 0, w_err
    assert f"run {RUN}: complete, {N_SNAPSHOTS}/{N_SNAPSHOTS} snapshots" in w_out
    assert_lake_clean(lake)
    assert_same_arrays(plain_arrays(lake), reference, N_SNAPSHOTS)
    store = open_store(lake)
    (key,) = [k for k in list_keys(store, f".leases/runs/{RUN}") if k.endswith(".json")]
    rec = json.loads(read_bytes(store, key))
    assert rec["released"] is True and rec["owner"]["pid"] == winner.pid and rec["generation"] == 2


# ----------------------------------------------------------------------------- half-created run of another host


def test_collect_replaces_a_failed_creation_left_by_another_host(tmp_path: Path) -> None:
    """A run group without run attributes, claimed by a collector on another host whose store went away.

    Its creator held the run's lease while creating; with that lease stale (released, here),
    the same ``collect`` on this host replaces the group and finishes the run.
    """
    from test_reliability_kill import CONFIG

    from sgnlake.collect import collect
    from sgnlake.schema import open_lake_group
    from sgnlake.schema.lease import Lease
    from sgnlake.schema.names import CLAIM_ATTR

    lake = tmp_path / "lake"
    open_lake_group(str(lake), mode="a")  # an empty lake
    claim = {"token": "t", "host": "elsewhere", "pid": 1, "time": "2026-01-01T00:00:00+00:00"}
    (lake / "runs" / RUN).mkdir()
    (lake / "runs" / RUN / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {CLAIM_ATTR: claim}})
    )
    (lake / "runs" / RUN / "iteration").mkdir()  # part of an array, as a cut creation leaves
    (lake / "runs" / RUN / "iteration" / "zarr.json").write_text("{}")
    Lease.acquire(lake, f"runs/{RUN}", heartbeat=False).release()  # its lease: released (or stale)
    done = collect(lake, CONFIG, progress=False, threads=1)
    assert done.status == "complete" and done.committed == N_SNAPSHOTS
    assert_lake_clean(lake)
