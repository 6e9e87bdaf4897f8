"""Start-and-stop helpers for the real processes tests launch (dask scheduler and workers)."""

from __future__ import annotations

import signal
import subprocess
import time


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
