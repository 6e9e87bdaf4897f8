"""Running a sweep: skip complete runs, resume the others, a process pool on CPU, Ctrl-C handling."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sgnlake.schema import RunConfig, SgnlakeError
from sgnlake.schema.lease import Lease, lease_ttl
from sgnlake.schema.names import COMPLETE

from .planning import RunPlan, fmt_bytes

# ----------------------------------------------------------------------------- running

DONE, RESUMED, SKIPPED, FAILED, INTERRUPTED = "done", "resumed", "skipped", "failed", "interrupted"
NOT_STARTED = "not started"


@dataclass
class RunOutcome:
    """What happened to one run of a sweep.

    Parameters
    ----------
    run_id : str
        The run.
    action : {"done", "resumed", "skipped", "failed", "interrupted", "not started"}
        ``done``: collected from scratch; ``resumed``: continued from its last
        committed snapshot; ``skipped``: already complete; ``failed``: raised
        (``message`` says why); ``interrupted``: stopped by Ctrl-C;
        ``not started``: the sweep was interrupted before it.
    seconds : float
        Wall time spent on it.
    bytes_written : int
        Growth of the run's group on the store (compressed bytes).
    message : str
        One-line reason for ``failed`` / ``skipped``.
    """

    run_id: str
    action: str
    seconds: float = 0.0
    bytes_written: int = 0
    message: str = ""


@dataclass
class SweepSummary:
    """Outcomes of a sweep invocation."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False  # Ctrl-C ended the sweep early

    def ids(self, *actions: str) -> list[str]:
        """Run ids whose action is one of ``actions``."""
        return [o.run_id for o in self.outcomes if o.action in actions]

    @property
    def n_done(self) -> int:
        return len(self.ids(DONE, RESUMED))

    @property
    def n_failed(self) -> int:
        return len(self.ids(FAILED))

    @property
    def interrupted(self) -> bool:
        return self.stopped or bool(self.ids(INTERRUPTED, NOT_STARTED))

    @property
    def bytes_written(self) -> int:
        return sum(o.bytes_written for o in self.outcomes)

    def format(self) -> str:
        """The end-of-sweep summary (several lines; failures one line each)."""
        n = len(self.outcomes)
        resumed = len(self.ids(RESUMED))
        line = (
            f"sweep: {n} runs: {self.n_done} done ({resumed} resumed), {len(self.ids(SKIPPED))} skipped "
            f"(complete), {self.n_failed} failed"
        )
        if self.interrupted:
            line += f", {len(self.ids(INTERRUPTED))} interrupted, {len(self.ids(NOT_STARTED))} not started"
        line += f"; {fmt_bytes(self.bytes_written)} written in {_fmt_seconds(self.seconds)}"
        lines = [line]
        for o in self.outcomes:
            if o.action == FAILED:
                lines.append(f"  failed {o.run_id}: {o.message}")
        if self.n_failed or self.interrupted:
            lines.append("  rerun the same command to retry: complete runs are skipped, the others resume")
        return "\n".join(lines)


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def stored_bytes(
    location: str | os.PathLike[str], run_id: str, storage_options: Mapping[str, Any] | None = None
) -> int:
    """Bytes stored under ``runs/<run_id>`` (0 if absent): :func:`sgnlake.schema.store.stored_bytes`."""
    from sgnlake.schema.names import run_path
    from sgnlake.schema.store import stored_bytes as _stored

    return _stored(location, run_path(run_id), storage_options=storage_options)


def existing_runs(
    location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """RunMeta of every run already in the lake (empty if there is no lake yet); writes nothing."""
    from sgnlake.schema import probe_lake, read_run_meta, run_group, run_ids

    root = probe_lake(location, storage_options=storage_options)
    if root is None:
        return {}
    return {rid: read_run_meta(run_group(root, rid)) for rid in run_ids(root)}


def config_conflict(p: RunPlan, meta: Any) -> str | None:
    """Why an existing run (its RunMeta) is not the planned run, or None if it is.

    The collector's resume rule (:func:`sgnlake.collect.config.resume_differences`).
    """
    from sgnlake.collect.config import resume_differences

    diffs = resume_differences(meta.config, p.config)
    if not diffs:
        return None
    key, have, want = diffs[0]
    return f"{key} is {have!r} in the lake, {want!r} in the sweep"


def adopt_stored_ids(plans: Sequence[RunPlan], existing: Mapping[str, Any]) -> list[RunPlan]:
    """``plans`` with each run renamed to the id it is stored under, when that differs.

    A run collected by an older sgnlake may be stored under an id of an older
    naming rule (the demo's ``lenet-b50``, a sweep's ``fcn-d3-w32-b50-lr0.1-s0``):
    a planned run absent under its own id but present with the same config
    (:func:`sgnlake.collect.config.compatible_run`) keeps its stored id, so it is
    skipped or resumed rather than collected twice.
    """
    from sgnlake.collect.config import compatible_run

    planned = {p.run_id for p in plans}
    free = {rid: meta for rid, meta in existing.items() if rid not in planned}
    out: list[RunPlan] = []
    for p in plans:
        rid = p.run_id if p.run_id in existing or not free else compatible_run(p.config, free)
        if rid is not None and rid != p.run_id:
            free.pop(rid)
            p = dataclasses.replace(p, config=dataclasses.replace(p.config, run_id=rid))
        out.append(p)
    return out


def is_complete(meta: Any) -> bool:
    """True when a run is complete: status complete and every planned snapshot committed."""
    return meta.status == COMPLETE and meta.committed >= len(meta.planned_iterations)


def _uses_gpu(configs: Sequence[RunConfig]) -> bool:
    devices = {c.device for c in configs}
    if any(d.startswith("cuda") for d in devices):
        return True
    if "auto" in devices:
        import torch

        return bool(torch.cuda.is_available())
    return False


_IN_WORKER = False  # set in sweep worker processes


def _run_one(
    location: str,
    config: dict[str, Any],
    resume: bool,
    progress: bool,
    storage_options: Mapping[str, Any] | None,
    collect_kwargs: Mapping[str, Any],
) -> RunOutcome:
    """Collect one run (in this process or a worker); never raises except on Ctrl-C."""
    if _IN_WORKER:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops this run
    try:
        return _collect_one(location, config, resume, progress, storage_options, collect_kwargs)
    finally:
        if _IN_WORKER:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # an idle worker ignores it


def _worker_init() -> None:
    """Worker processes ignore Ctrl-C except while running a run (no tracebacks from idle workers)."""
    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _collect_one(
    location: str,
    config: dict[str, Any],
    resume: bool,
    progress: bool,
    storage_options: Mapping[str, Any] | None,
    collect_kwargs: Mapping[str, Any],
) -> RunOutcome:
    from sgnlake.collect import collect

    cfg = RunConfig.from_dict(config)
    t0 = time.perf_counter()
    before = stored_bytes(location, cfg.run_id, storage_options)
    try:
        collect(
            location,
            cfg,
            resume=resume,
            progress=progress,
            storage_options=dict(storage_options) if storage_options else None,
            **dict(collect_kwargs),
        )
    except KeyboardInterrupt:
        return RunOutcome(
            cfg.run_id,
            INTERRUPTED,
            time.perf_counter() - t0,
            max(0, stored_bytes(location, cfg.run_id, storage_options) - before),
        )
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the sweep
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        name = "" if isinstance(e, SgnlakeError) else f"{type(e).__name__}: "
        return RunOutcome(
            cfg.run_id,
            FAILED,
            time.perf_counter() - t0,
            max(0, stored_bytes(location, cfg.run_id, storage_options) - before),
            f"{name}{msg}",
        )
    after = stored_bytes(location, cfg.run_id, storage_options)
    return RunOutcome(
        cfg.run_id, RESUMED if resume else DONE, time.perf_counter() - t0, max(0, after - before)
    )


def _stop_workers(pool: cf.ProcessPoolExecutor, futures: list[cf.Future], grace: float = 3.0) -> None:
    """Stop the runs still going after a Ctrl-C.

    From a terminal, Ctrl-C reaches the workers too and each marks its run
    interrupted; runs still going after ``grace`` seconds (the signal went to
    this process only, or a queued run started) get a SIGINT forwarded to the
    pool's worker processes, until every future is done.
    """
    while True:
        pending = [f for f in futures if not f.done()]
        if not pending:
            return
        done, _ = cf.wait(pending, timeout=grace)
        if len(done) == len(pending):
            return
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGINT)


def sweep_lease_key(plans: Sequence[RunPlan]) -> str:
    """Lease key of a sweep: its grid, named by a digest of its sorted run ids."""
    digest = hashlib.sha256("\n".join(sorted(p.run_id for p in plans)).encode()).hexdigest()[:16]
    return f"sweeps/{digest}"


def run_sweep(
    location: str | os.PathLike[str],
    plans: Sequence[RunPlan],
    *,
    jobs: int = 1,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    collect_kwargs: Mapping[str, Any] | None = None,
    threads: int | None = None,
    echo: Callable[[str], None] | None = print,
    scheduler: str | None = None,
    resources: Mapping[str, float] | None = None,
) -> SweepSummary:
    """Run (or skip, or resume) every planned run into one lake.

    A run already complete in the lake is skipped; a run present but not
    complete (interrupted, crashed, failed) is resumed from its last committed
    snapshot with the collector's ``resume=True``. A run whose stored config
    disagrees with the plan is reported as failed and left untouched. A failed
    run does not stop the sweep and is not retried within the same invocation
    (a deterministic failure such as divergence would only fail again); rerunning
    the sweep retries it by resuming.

    Parameters
    ----------
    location : str or path
        Lake path or fsspec URL (created if missing).
    plans : sequence of RunPlan
        From :func:`plan`.
    jobs : int
        Worker processes on CPU, each running whole runs (different runs write
        different groups of the lake). Runs on a GPU go one after another.
    progress : bool
        Show the collector's progress bars (only with one job).
    storage_options : mapping, optional
        fsspec options for URL lakes.
    collect_kwargs : mapping, optional
        Extra keyword arguments for :func:`sgnlake.collect.collect`.
    threads : int, optional
        Torch threads per CPU run; default :func:`sgnlake.collect.config.default_threads`.
    echo : callable or None
        Receives one line per run as it finishes.
    scheduler : str, optional
        Address of an existing ``dask.distributed`` scheduler (``tcp://host:8786``):
        each run becomes a task there (:mod:`.cluster`), ``jobs`` is ignored and
        ``location`` must be reachable from the workers.
    resources : mapping of str to float, optional
        Dask resources each run's task needs on its worker (``{"GPU": 1}``).

    Returns
    -------
    SweepSummary

    Raises
    ------
    LeaseHeldError
        Another live sweep runs the same grid into this lake.
    """
    from sgnlake.schema import open_lake_group

    say = echo or (lambda _s: None)
    loc = os.fspath(location)
    t0 = time.perf_counter()
    summary = SweepSummary()
    existing = existing_runs(loc, storage_options)
    plans = adopt_stored_ids(plans, existing)
    todo: list[tuple[RunPlan, bool]] = []
    for p in plans:
        meta = existing.get(p.run_id)
        if meta is None:
            todo.append((p, False))
            continue
        conflict = config_conflict(p, meta)
        if conflict:
            summary.outcomes.append(
                RunOutcome(
                    p.run_id,
                    FAILED,
                    message=f"a run {p.run_id!r} with another config is in the lake ({conflict}): "
                    "use another lake or a run_id template",
                )
            )
            say(f"failed   {p.run_id}: exists with another config ({conflict})")
        elif is_complete(meta):
            summary.outcomes.append(RunOutcome(p.run_id, SKIPPED, message="complete"))
            say(f"skipped  {p.run_id} (complete, {meta.committed} snapshots)")
        else:
            todo.append((p, True))
    lease = None
    if todo:
        root = open_lake_group(loc, mode="a", storage_options=storage_options)  # create once, before workers
        # one live sweep of this grid (LeaseHeldError names the other); released when run_sweep returns
        lease = Lease.acquire(
            root, sweep_lease_key(plans), {"command": "sweep"}, ttl=lease_ttl(), what="this sweep's grid"
        )
    with lease if lease is not None else contextlib.nullcontext():
        _execute(
            loc, todo, summary, jobs=jobs, progress=progress, storage_options=storage_options,
            collect_kwargs=collect_kwargs, threads=threads, say=say, scheduler=scheduler, resources=resources,
        )  # fmt: skip
    summary.seconds = time.perf_counter() - t0
    order = {p.run_id: i for i, p in enumerate(plans)}
    summary.outcomes.sort(key=lambda o: order.get(o.run_id, len(order)))
    return summary


def _execute(
    loc: str,
    todo: list[tuple[RunPlan, bool]],
    summary: SweepSummary,
    *,
    jobs: int,
    progress: bool,
    storage_options: Mapping[str, Any] | None,
    collect_kwargs: Mapping[str, Any] | None,
    threads: int | None,
    say: Callable[[str], None],
    scheduler: str | None,
    resources: Mapping[str, float] | None,
) -> None:
    """Collect or resume the runs of ``todo`` (locally, in processes or on a cluster), into ``summary``."""
    kwargs = dict(collect_kwargs or {})
    gpu = bool(todo) and scheduler is None and _uses_gpu([p.config for p, _ in todo])
    if scheduler is not None:
        jobs = 1  # the cluster's workers run the runs
    if jobs > 1 and gpu:
        say("runs use a GPU: running them one after another (--jobs ignored)")
        jobs = 1
    jobs = max(1, min(jobs, len(todo)))
    if threads is not None:
        kwargs["threads"] = threads
    elif not gpu and scheduler is None:  # on a cluster each worker picks its own default
        from sgnlake.collect.config import default_threads

        kwargs["threads"] = default_threads(jobs)

    def record(o: RunOutcome) -> None:
        summary.outcomes.append(o)
        extra = f": {o.message}" if o.message else ""
        say(f"{o.action:<8} {o.run_id} in {_fmt_seconds(o.seconds)}, {fmt_bytes(o.bytes_written)}{extra}")

    if scheduler is not None:
        if todo:
            from .cluster import run_on_cluster

            summary.stopped = run_on_cluster(
                loc, todo, scheduler=scheduler, resources=resources, storage_options=storage_options,
                collect_kwargs=kwargs, record=record, say=say,
            )  # fmt: skip
    elif jobs == 1:
        for p, resume in todo:
            say(f"{'resume' if resume else 'collect'}  {p.run_id}")
            o = _run_one(loc, p.config.to_dict(), resume, progress, storage_options, kwargs)
            record(o)
            if o.action == INTERRUPTED:
                summary.stopped = True
                done = {x.run_id for x in summary.outcomes}
                summary.outcomes.extend(
                    RunOutcome(q.run_id, NOT_STARTED) for q, _ in todo if q.run_id not in done
                )
                break
    else:
        ordered = sorted(todo, key=lambda t: -t[0].cost)  # longest first balances the workers
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {
                pool.submit(_run_one, loc, p.config.to_dict(), resume, False, storage_options, kwargs): p
                for p, resume in ordered
            }
            say(f"running {len(futures)} runs in {jobs} processes ({kwargs['threads']} torch threads each)")
            try:
                for fut in cf.as_completed(futures):
                    try:
                        record(fut.result())
                    except BaseException as e:  # noqa: BLE001 - a crashed worker
                        if isinstance(e, KeyboardInterrupt):
                            raise
                        record(RunOutcome(futures[fut].run_id, FAILED, message=f"worker died: {e}"))
            except KeyboardInterrupt:
                summary.stopped = True
                for fut in futures:
                    fut.cancel()
                _stop_workers(pool, list(futures))
                pool.shutdown(wait=True, cancel_futures=True)
                seen = {o.run_id for o in summary.outcomes}
                for fut, p in futures.items():
                    if p.run_id in seen:
                        continue
                    outcome = RunOutcome(p.run_id, NOT_STARTED if fut.cancelled() else INTERRUPTED)
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        outcome = fut.result()
                    summary.outcomes.append(outcome)


def prepare_data(configs: Sequence[RunConfig], *, download: bool = False) -> None:
    """Check (and with ``download`` fetch) every dataset the sweep needs, once, before any run."""
    from sgnlake.collect.data import load_dataset

    seen: set[tuple[str, str | None]] = set()
    for c in configs:
        key = (c.dataset, c.data_dir)
        if c.dataset == "mnist5k" or key in seen:
            continue
        seen.add(key)
        load_dataset(c.dataset, data_dir=c.data_dir, n_train=1, download=download)
