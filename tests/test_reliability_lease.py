"""One live writer per run (lease) and SIGTERM, with real ``sgnlake collect`` processes.

A first collector is paused inside a chunk write of snapshot 2 (hook from
test_reliability_misc); a second ``collect --resume`` of the same run must exit
2 with one line naming the first one's pid, and the first must finish with every
snapshot equal to an uninterrupted run (plain Zarr oracle).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from lake_fixtures import chunk_pattern
from test_reliability_kill import N_SNAPSHOTS, RUN, assert_same_arrays, plain_arrays
from test_reliability_misc import CLI_ARGS, assert_lake_clean, cli_child, reference  # noqa: F401

from sgnlake.schema.store import list_keys, open_store, read_bytes


def _wait_for(path: Path, proc, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        assert time.time() < deadline, "child never reached the hook"
        time.sleep(0.05)


def _paused_collector(lake: Path, tmp_path: Path):
    flag, release = tmp_path / "paused", tmp_path / "release"
    a = cli_child(
        ["collect", str(lake), "--run-id", RUN, *CLI_ARGS],
        hook="pause",
        pattern=chunk_pattern(f"runs/{RUN}/fc1.weight/sgn", 2),
        nth=1,
        flag=str(flag),
        release=str(release),
    )
    _wait_for(flag, a)
    return a, release


def test_second_collector_of_a_live_run_is_refused(tmp_path: Path, reference) -> None:  # noqa: F811
    lake = tmp_path / "lake"
    a, release = _paused_collector(lake, tmp_path)
    try:
        b = cli_child(["collect", str(lake), "--run-id", RUN, "--resume", "--no-progress", "--threads", "1"])
        _, b_err = b.communicate(timeout=180)
    finally:
        release.touch()
    _, a_err = a.communicate(timeout=180)
    assert b.returncode == 2, b_err
    assert b_err.count("\n") == 1 and b_err.startswith("error: "), b_err
    assert f"pid {a.pid} on " in b_err and repr(RUN) in b_err, b_err
    assert a.returncode == 0, a_err
    assert_lake_clean(lake)
    assert_same_arrays(plain_arrays(lake), reference, N_SNAPSHOTS)
    # released on exit: a later resume of the (complete) run proceeds
    c = cli_child(["collect", str(lake), "--run-id", RUN, "--resume", "--no-progress"])
    _, c_err = c.communicate(timeout=180)
    assert c.returncode == 0, c_err
    store = open_store(lake)
    (key,) = [k for k in list_keys(store, f".leases/runs/{RUN}") if k.endswith(".json")]
    assert json.loads(read_bytes(store, key))["released"] is True


def test_sigterm_marks_interrupted_exits_143_and_resume_finishes(tmp_path: Path, reference) -> None:  # noqa: F811
    from test_reliability_kill import CONFIG

    from sgnlake.collect import collect

    lake = tmp_path / "lake"
    a, release = _paused_collector(lake, tmp_path)
    os.kill(a.pid, signal.SIGTERM)
    time.sleep(0.5)
    release.touch()
    _, err = a.communicate(timeout=180)
    assert a.returncode == 143, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and f"--run-id {RUN} --resume" in last, err
    meta = json.loads((lake / "runs" / RUN / "zarr.json").read_text())["attributes"]["sgnlake_run"]
    assert meta["status"] == "interrupted" and "SIGTERM" in meta["reason"] and "--resume" in meta["reason"]
    assert 2 <= meta["committed"] < N_SNAPSHOTS
    assert_lake_clean(lake)
    assert_same_arrays(plain_arrays(lake), reference, meta["committed"])
    done = collect(lake, CONFIG, resume=True, progress=False, threads=1)  # the lease was released
    assert done.status == "complete"
    assert_same_arrays(plain_arrays(lake), reference, N_SNAPSHOTS)
    np.testing.assert_equal(done.committed, N_SNAPSHOTS)


@pytest.mark.slow
def test_second_collector_refused_on_s3(tmp_path: Path) -> None:
    """The same lease on object storage: in-process holder, a real second process refused."""
    pytest.importorskip("moto")
    from s3_fixtures import S3, LoggingMotoServer

    from sgnlake.schema.lease import Lease

    server = LoggingMotoServer()
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = S3(server=server, endpoint=f"http://{host}:{port}")
        url = f"s3://{s3.new_bucket()}/lake"
        lease = Lease.acquire(url, f"runs/{RUN}", ttl=60, storage_options=s3.storage_options)
        try:
            b = cli_child(["collect", url, "--run-id", RUN, *CLI_ARGS, *s3.cli_options])
            _, b_err = b.communicate(timeout=180)
        finally:
            lease.release()
        assert b.returncode == 2, b_err
        assert b_err.count("\n") == 1 and f"pid {os.getpid()} on " in b_err, b_err
    finally:
        server.stop()


def test_second_sweep_of_one_grid_is_refused(tmp_path: Path) -> None:
    from test_sweep import TINY

    lake = tmp_path / "lake"
    cfg = tmp_path / "grid.toml"
    cfg.write_text(TINY.replace("model_args.depth = [2, 3]", "model_args.depth = [2]"))
    argv = ["sweep", str(lake), "--config", str(cfg), "--no-progress"]
    flag, release = tmp_path / "paused", tmp_path / "release"
    a = cli_child(argv, hook="pause", pattern=r"/sgn/c[./]1[./]", nth=1, flag=str(flag), release=str(release))
    _wait_for(flag, a)
    try:
        b = cli_child(argv)
        _, b_err = b.communicate(timeout=180)
    finally:
        release.touch()
    a_out, a_err = a.communicate(timeout=240)
    assert b.returncode == 2, b_err
    assert b_err.count("\n") == 1 and f"pid {a.pid} on " in b_err and "sweep" in b_err, b_err
    assert a.returncode == 0, (a_out, a_err)
