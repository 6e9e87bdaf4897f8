"""Running a sweep's runs as tasks on an existing ``dask.distributed`` cluster.

``sgnlake sweep LAKE --scheduler tcp://HOST:PORT [--resources GPU=1]`` submits
each run to run (skip/resume decided beforehand, as for a local sweep) as one
task calling :func:`sgnlake.collect.collect` on a worker; every run writes its
own group of the one lake, which must be reachable from every worker (a shared
disk path, or an S3 URL). A run that raises is reported ``failed`` with its
message. A task whose worker dies is run again by Dask on another worker, which
resumes the run (:func:`run_task`); past Dask's ``allowed-failures`` the run is
reported ``failed`` (``KilledWorker``) and left as it was in the lake: rerunning
the sweep resumes it from its last committed snapshot.

Workers need sgnlake with torch installed. A collecting run sets process-wide
torch state (seeds, threads), so two runs never collect at once in one worker
process: a lock serialises them (start workers with ``--nthreads 1``, or
declare ``--resources GPU=1`` per GPU worker, to avoid idle waits).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sgnlake.schema.errors import ConfigError

from .execution import DONE, FAILED, INTERRUPTED, NOT_STARTED, RESUMED, RunOutcome, _collect_one
from .planning import RunPlan

#: One collecting run at a time per worker process (torch's seeds and thread count are global).
_RUN_LOCK = threading.Lock()


def parse_resources(items: Sequence[str] | None) -> dict[str, float]:
    """``["GPU=1", "MEM=4e9"]`` -> ``{"GPU": 1.0, "MEM": 4e9}`` (Dask resources each run needs).

    Raises
    ------
    ConfigError
        An item is not ``NAME=NUMBER`` with a positive number.
    """
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        try:
            amount = float(value)
        except ValueError:
            amount = float("nan")
        if not sep or not name.strip() or not amount > 0:
            raise ConfigError(f"--resources {item!r} is not NAME=AMOUNT (e.g. GPU=1): fix the option")
        out[name.strip()] = amount
    return out


def run_task(
    location: str,
    config: dict[str, Any],
    resume: bool,
    storage_options: Mapping[str, Any] | None,
    collect_kwargs: Mapping[str, Any],
) -> RunOutcome:
    """One sweep run on a worker (never raises: a failure is a ``failed`` outcome).

    A run planned as new that exists by now was started by an attempt whose worker
    died (Dask then runs the task again on another worker): it is resumed.
    """
    import socket

    with _RUN_LOCK:
        if not resume:
            from sgnlake.collect.runner import stored_run_meta

            rid = config["run_id"]
            so = dict(storage_options) if storage_options else None
            started = stored_run_meta(location, rid, storage_options=so) is not None
            o = _collect_one(location, config, started, False, storage_options, collect_kwargs)
            if started and o.action == RESUMED:
                o.action, o.message = DONE, "resumed after its first worker died"
        else:
            o = _collect_one(location, config, resume, False, storage_options, collect_kwargs)
    return _with_host(o, socket.gethostname())


def _with_host(o: RunOutcome, host: str) -> RunOutcome:
    if o.action == FAILED and host:
        o.message = f"{o.message} (on {host})"
    return o


def run_on_cluster(
    location: str,
    todo: Sequence[tuple[RunPlan, bool]],
    *,
    scheduler: str,
    resources: Mapping[str, float] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    collect_kwargs: Mapping[str, Any] | None = None,
    record: Callable[[RunOutcome], None],
    say: Callable[[str], None],
    timeout: float | None = None,
) -> bool:
    """Run ``todo`` (plan, resume) on the cluster at ``scheduler``; ``record`` each outcome as it ends.

    Longest runs are submitted first. Returns True when Ctrl-C stopped the sweep
    (the runs still going are cancelled; their workers stop them at the next
    snapshot at the latest, leaving them resumable). ``timeout``: seconds to
    connect (default: Dask's ``distributed.comm.timeouts.connect``, 30 s).

    Raises
    ------
    ConfigError
        The scheduler cannot be reached, or ``distributed`` is not installed.
    """
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    try:
        client = Client(scheduler, **({} if timeout is None else {"timeout": timeout}))
    except (OSError, TimeoutError) as e:
        raise ConfigError(f"cannot reach the Dask scheduler {scheduler} ({e}): check the address") from None
    kwargs = dict(collect_kwargs or {})
    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        say(f"running {len(todo)} runs on the Dask cluster {scheduler} ({n_workers} workers)")
        ordered = sorted(todo, key=lambda t: -t[0].cost)
        futures = {}
        for p, resume in ordered:
            fut = client.submit(
                run_task, location, p.config.to_dict(), resume, storage_options, kwargs,
                key=f"sgnlake-run-{p.run_id}-{uuid.uuid4().hex[:8]}", pure=False, retries=0,
                resources=dict(resources) if resources else None,
            )  # fmt: skip
            futures[fut] = p
        seen: set[str] = set()
        try:
            for fut in as_completed(list(futures)):
                p = futures[fut]
                try:
                    o = fut.result()
                except Exception as e:  # noqa: BLE001 - a dead worker or a lost task
                    o = RunOutcome(p.run_id, FAILED, message=f"worker died: {type(e).__name__}: {e}")
                seen.add(p.run_id)
                record(o)
        except KeyboardInterrupt:
            for fut, p in futures.items():
                if p.run_id not in seen:
                    started = fut.status not in ("pending",)
                    fut.cancel()
                    record(RunOutcome(p.run_id, INTERRUPTED if started else NOT_STARTED))
            return True
        return False
    finally:
        client.close()
