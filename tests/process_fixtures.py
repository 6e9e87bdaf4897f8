"""Start-and-stop helpers for the real processes tests launch (dask scheduler and workers)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def wait_for(pred, timeout: float, what: str, procs: list[subprocess.Popen]) -> None:
    """Poll ``pred`` until true; fail early when one of ``procs`` exits, or after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not pred():
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: process {p.args} exited with {p.returncode}")
        if time.monotonic() > end:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.05)


def stop_all(procs: list[subprocess.Popen], grace: float = 10) -> None:
    """Stop processes a fixture started: SIGTERM all, then SIGKILL those still alive after ``grace`` s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@contextmanager
def dask_cluster(
    base: Path, env: Mapping[str, str], worker_args: Sequence[str], n_workers: int = 2, grace: float = 10
) -> Iterator[str]:
    """A real ``dask scheduler`` on 127.0.0.1 (random port) and ``n_workers`` one-thread ``dask worker``
    processes (extra ``worker_args``); yields the scheduler address once every worker has joined.

    Output goes to ``base/cluster.log``. On exit the workers are stopped first (a worker whose scheduler
    is gone keeps trying to reconnect), then the scheduler.
    """
    from distributed import Client

    sched_file = base / "scheduler.json"
    workers: list[subprocess.Popen] = []
    with open(base / "cluster.log", "wb") as log:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)],
            env=dict(env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for(
                lambda: sched_file.exists() and sched_file.stat().st_size > 0,
                30,
                "scheduler start",
                [scheduler],
            )
            address = json.loads(sched_file.read_text())["address"]
            cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1"]
            cmd += ["--no-nanny", "--no-dashboard", *worker_args]
            for i in range(n_workers):
                workers.append(
                    subprocess.Popen(
                        [*cmd, "--name", f"w{i}"], env=dict(env), stdout=log, stderr=subprocess.STDOUT
                    )
                )
            with Client(address, timeout=30) as client:
                client.wait_for_workers(n_workers, timeout=30)
            yield address
        finally:
            stop_all(workers, grace=grace)
            stop_all([scheduler], grace=grace)
