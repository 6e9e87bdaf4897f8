"""Check a lake end to end (the ``sgnlake check`` fsck): metadata, commit state, every chunk.

Unlike :func:`~sgnlake.schema.validate.validate_lake`, which reads metadata and
coordinates only, :func:`check_lake` also decodes every stored chunk of the
committed part of every array, one storage unit at a time (bounded memory: at
most ``workers`` chunks in flight), and checks ``results/`` and
``checkpoints/`` against ``runs/``. Stage-neutral: plain Zarr and NumPy.

Findings have a severity (``problem``, ``warning``, ``info``), defined with the report
classes in :mod:`sgnlake.schema.check_report`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import zarr
import zarr.errors

from .check_chunks import ChunkChecker, ChunkJob, chunk_jobs
from .check_report import INFO, PROBLEM, SEVERITIES, WARNING, CheckReport, Finding, RunSummary
from .errors import SgnlakeError
from .lake import DamagedError, lake_meta, open_lake_group, read_run_meta
from .lease import LEASES_PREFIX
from .meta import ResultMeta, RunMeta, TensorInfo
from .names import (
    CHECKPOINTS_GROUP,
    CLAIM_ATTR,
    COMPLETE,
    FAILED,
    GENERATION_ATTR,
    GENERATION_PREFIX,
    INTERRUPTED,
    ITERATION,
    LEGACY_CLAIM_ATTR,
    RESULT_ATTR,
    RESULTS_GROUP,
    RUN_ARRAYS,
    RUN_ATTR,
    RUN_COORDS,
    RUNNING,
    RUNS_GROUP,
    TENSOR_ARRAYS,
    TENSOR_ATTR,
    run_path,
)
from .store import open_store
from .validate import validate_run

__all__ = [
    "INFO",
    "PROBLEM",
    "SEVERITIES",
    "WARNING",
    "CheckReport",
    "Finding",
    "RunSummary",
    "check_lake",
]

# ----------------------------------------------------------------------------- structure


def _first_line(e: BaseException) -> str:
    text = str(e)
    return text.splitlines()[0] if text else ""


def _dims(arr: zarr.Array) -> tuple[str | None, ...] | None:
    names = getattr(arr.metadata, "dimension_names", None)
    return tuple(names) if names is not None else None


def _safe_get(group: zarr.Group, name: str, report: CheckReport, **where: Any) -> Any:
    """``group[name]`` or None, recording unreadable metadata as a problem."""
    try:
        return group[name]
    except KeyError:
        return None
    except Exception as e:
        report.add(
            PROBLEM,
            f"node {(group.path + '/' if group.path else '') + name!r}: metadata cannot be read "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            **where,
        )
        return None


def _children(group: zarr.Group, report: CheckReport, **where: Any) -> list[tuple[str, Any]]:
    """Child nodes of ``group``; a child whose metadata is broken is recorded and skipped."""
    out: list[tuple[str, Any]] = []
    try:
        with warnings.catch_warnings():  # lease records (.leases/) are not Zarr nodes, by design
            warnings.filterwarnings("ignore", message=r"Object at .* is not recognized", category=UserWarning)
            names = sorted(group.keys())
    except Exception as e:
        report.add(PROBLEM, f"group {group.path!r}: cannot list members ({type(e).__name__}: {e})", **where)
        return out
    for name in names:
        node = _safe_get(group, name, report, **where)
        if node is not None:
            out.append((name, node))
    return out


def _check_run(
    root: zarr.Group,
    name: str,
    group: zarr.Group,
    report: CheckReport,
    jobs: list[ChunkJob],
    run_arrays: list[tuple[str, zarr.Array]],
) -> RunMeta | None:
    summary = RunSummary(run_id=name)
    report.runs.append(summary)
    try:
        meta = read_run_meta(group)
    except SgnlakeError as e:
        if RUN_ATTR not in group.attrs:
            claim = group.attrs.get(CLAIM_ATTR, group.attrs.get(LEGACY_CLAIM_ATTR))
            who = (
                f" by pid {claim.get('pid')} on {claim.get('host')} since {claim.get('time')}"
                if isinstance(claim, Mapping)
                else ""
            )
            report.add(
                WARNING,
                f"run {name!r}: group has no run attributes: a collector is creating it{who}, or "
                f"crashed while creating it (not a run; the next 'sgnlake collect' of this run id, on "
                f"any host, replaces it under the run's lease)",
                run=name,
            )
        else:
            report.add(PROBLEM, f"run {name!r}: run attributes are invalid ({e})", run=name)
        return None
    summary.status = meta.status
    summary.committed = meta.committed
    summary.planned = len(meta.planned_iterations)
    summary.tensors = len(meta.tensors)
    summary.reason = meta.reason
    if meta.run_id != name:
        report.add(PROBLEM, f"run {name!r}: attributes name run {meta.run_id!r}", run=name)
    try:
        for p in validate_run(group, meta):
            report.add(PROBLEM, p, run=name)
    except Exception as e:  # unreadable node metadata; located precisely by the walk below
        report.add(
            PROBLEM,
            f"run {name!r}: structure check stopped ({type(e).__name__}: {_first_line(e)})",
            run=name,
        )

    resume = f"sgnlake collect {report.location} --run-id {name} --resume"
    if meta.status == COMPLETE and meta.committed != len(meta.planned_iterations):
        report.add(
            PROBLEM,
            f"run {name!r}: status complete but {meta.committed} of "
            f"{len(meta.planned_iterations)} planned snapshots are committed",
            run=name,
        )
    elif meta.status == FAILED:
        why = f": {meta.reason}" if meta.reason else ""
        report.add(
            WARNING, f"run {name!r}: failed after {meta.committed} committed snapshot(s){why}", run=name
        )
    elif meta.status == INTERRUPTED:
        report.add(
            INFO,
            f"run {name!r}: interrupted after {meta.committed} committed snapshot(s); "
            f"continue it with '{resume}'",
            run=name,
        )
    elif meta.status == RUNNING:
        report.add(
            INFO,
            f"run {name!r}: status running ({meta.committed} committed): a collector is writing it, "
            f"or one crashed; if none is running, continue it with '{resume}'",
            run=name,
        )

    iterations: np.ndarray | None = None
    it_arr = _safe_get(group, ITERATION, report, run=name, array=ITERATION)
    if isinstance(it_arr, zarr.Array) and it_arr.ndim == 1:
        try:
            iterations = np.asarray(it_arr[: meta.committed])
        except Exception:
            iterations = None  # reported by the chunk read below

    stored = 0
    base = {"run": name, "part": RUNS_GROUP}
    for aname in RUN_ARRAYS:
        arr = _safe_get(group, aname, report, run=name, array=aname)
        if isinstance(arr, zarr.Array) and _dims(arr) == (ITERATION,):
            stored = max(stored, arr.shape[0])
            run_arrays.append((name, arr))
            jobs.extend(chunk_jobs(arr, meta.committed, base, iterations))

    known = {t.name for t in meta.tensors}
    for child, _node in _children(group, report, run=name):
        if child in RUN_ARRAYS or child in RUN_COORDS:
            continue
        if child not in known:
            report.add(WARNING, f"run {name!r}: node {child!r} is not in the tensor table", run=name)
    for t in meta.tensors:
        tg = _safe_get(group, t.name, report, run=name, tensor=t.name)
        if not isinstance(tg, zarr.Group):
            continue
        _check_tensor_attrs(name, t, tg, report)
        for aname, dims in TENSOR_ARRAYS.items():
            arr = _safe_get(tg, aname, report, run=name, tensor=t.name, array=aname)
            if not isinstance(arr, zarr.Array) or _dims(arr) != dims:
                continue  # reported by validate_run
            stored = max(stored, arr.shape[0])
            run_arrays.append((name, arr))
            if arr.chunks[0] != 1:
                report.add(
                    WARNING,
                    f"run {name!r}: {t.name}/{aname} has iteration chunk {arr.chunks[0]}, expected 1 "
                    "(appending snapshots rewrites chunks)",
                    run=name,
                    tensor=t.name,
                    array=aname,
                )
            jobs.extend(chunk_jobs(arr, meta.committed, {**base, "tensor": t.name}, iterations))
    summary.stored = stored
    summary.uncommitted_tail = max(0, stored - meta.committed)
    if summary.uncommitted_tail:
        report.add(
            INFO,
            f"run {name!r}: {summary.uncommitted_tail} uncommitted snapshot slot(s) beyond the "
            f"{meta.committed} committed (an unfinished write; readers ignore it, resume overwrites it)",
            run=name,
        )
    return meta


def _check_tensor_attrs(run: str, t: TensorInfo, tg: zarr.Group, report: CheckReport) -> None:
    raw = tg.attrs.get(TENSOR_ATTR)
    if raw is None:
        report.add(
            PROBLEM,
            f"run {run!r}: tensor group {t.name!r} has no {TENSOR_ATTR!r} attribute",
            run=run,
            tensor=t.name,
        )
        return
    try:
        got = TensorInfo.from_dict(raw)
    except SgnlakeError as e:
        report.add(
            PROBLEM, f"run {run!r}: tensor group {t.name!r} attrs are invalid ({e})", run=run, tensor=t.name
        )
        return
    if got != t:
        report.add(
            PROBLEM,
            f"run {run!r}: tensor group {t.name!r} attrs {got.to_dict()} differ from the run's tensor table "
            f"{t.to_dict()}",
            run=run,
            tensor=t.name,
        )


def _result_meta(node: Any) -> ResultMeta | None:
    raw = node.attrs.get(RESULT_ATTR)
    return None if raw is None else ResultMeta.from_dict(raw)


def _check_results(
    root: zarr.Group, metas: Mapping[str, RunMeta | None], report: CheckReport, jobs: list[ChunkJob]
) -> None:
    res = _safe_get(root, RESULTS_GROUP, report)
    if res is None:
        return
    if not isinstance(res, zarr.Group):
        report.add(PROBLEM, f"{RESULTS_GROUP!r} is not a group")
        return
    for run, rg in _children(res, report):
        if not isinstance(rg, zarr.Group):
            report.add(PROBLEM, f"results/{run} is not a group", run=run)
            continue
        if run not in metas:
            report.add(WARNING, f"results/{run}: no run {run!r} in the lake (orphan result)", run=run)
        meta = metas.get(run)
        run_its = None
        if meta is not None:
            try:
                run_its = set(np.asarray(root[run_path(run)][ITERATION][: meta.committed]).tolist())
            except Exception:
                run_its = None
        for key, kg in _children(rg, report, run=run):
            report.results += 1
            _check_result_group(run, key, kg, meta, run_its, report, jobs)


def _check_result_group(
    run: str,
    key: str,
    kg: Any,
    meta: RunMeta | None,
    run_its: set[int] | None,
    report: CheckReport,
    jobs: list[ChunkJob],
) -> None:
    where = f"results/{run}/{key}"
    if not isinstance(kg, zarr.Group):
        report.add(PROBLEM, f"{where} is not a group", run=run)
        return
    rmeta: ResultMeta | None = None
    try:
        rmeta = _result_meta(kg)
    except SgnlakeError as e:
        report.add(PROBLEM, f"{where}: {RESULT_ATTR!r} attrs are invalid ({e})", run=run)
        return
    gen = kg.attrs.get(GENERATION_ATTR)
    children = _children(kg, report, run=run)
    unpublished = [n for n, _ in children if n.startswith(GENERATION_PREFIX) and n != gen]
    if unpublished:
        report.add(
            INFO,
            f"{where}: {len(unpublished)} unpublished generation(s) ({', '.join(unpublished[:3])}): a "
            "computation still running, or killed or failed (readers ignore them; the next "
            "'sgnlake alpha --force' of this result replaces them)",
            run=run,
        )
    if rmeta is None:
        report.add(
            INFO,
            f"{where}: unfinished result (a computation still running, or killed): readers ignore it; "
            f"rerun 'sgnlake alpha {report.location}'",
            run=run,
        )
        return
    if rmeta.run_id != run:
        report.add(PROBLEM, f"{where}: attrs name run {rmeta.run_id!r}", run=run)
    if gen is not None:
        data = dict(children).get(str(gen))
        if not isinstance(data, zarr.Group):
            report.add(PROBLEM, f"{where}: the published generation {gen!r} is missing", run=run)
            return
        where = f"{where}/{gen}"
        children = _children(data, report, run=run)
    else:
        data = kg
        children = [(n, c) for n, c in children if not n.startswith(GENERATION_PREFIX)]
    n_pub = rmeta.n_iterations
    it_arr = dict(children).get(ITERATION)
    its: np.ndarray | None = None
    if not isinstance(it_arr, zarr.Array):
        report.add(PROBLEM, f"{where}: missing its own 'iteration' coordinate array", run=run)
    else:
        try:
            its = np.asarray(it_arr[:n_pub])
        except Exception:
            its = None  # reported by the chunk read
        if its is not None and run_its is not None and not set(its.tolist()) <= run_its:
            extra = sorted(set(its.tolist()) - run_its)[:5]
            report.add(
                PROBLEM, f"{where}: iterations {extra} are not committed snapshots of run {run!r}", run=run
            )
        if it_arr.shape[0] < n_pub:
            report.add(
                PROBLEM,
                f"{where}: attrs say {n_pub} iteration(s), the coordinate holds {it_arr.shape[0]}",
                run=run,
            )
        elif it_arr.shape[0] > n_pub:
            report.add(
                INFO,
                f"{where}: {it_arr.shape[0] - n_pub} row(s) beyond the {n_pub} published (an append "
                "still running, or killed: readers ignore them, the next 'sgnlake alpha' rewrites them)",
                run=run,
            )
        jobs.extend(chunk_jobs(it_arr, n_pub, {"run": run, "part": RESULTS_GROUP}, None))
    tensors = {t.name for t in meta.tensors} if meta is not None else None
    for tname, node in children:
        if tname == ITERATION:
            continue
        if isinstance(node, zarr.Array):
            _check_result_array(where, run, None, node, its, n_pub, report, jobs)
            continue
        if tensors is not None and tname not in tensors:
            report.add(WARNING, f"{where}: group {tname!r} is not a tensor of run {run!r}", run=run)
        for _, arr in _children(node, report, run=run, tensor=tname):
            if isinstance(arr, zarr.Array):
                _check_result_array(where, run, tname, arr, its, n_pub, report, jobs)


def _check_result_array(
    where: str,
    run: str,
    tensor: str | None,
    arr: zarr.Array,
    its: np.ndarray | None,
    n_pub: int,
    report: CheckReport,
    jobs: list[ChunkJob],
) -> None:
    dims = _dims(arr)
    name = arr.path.rsplit("/", 1)[-1]
    label = f"{tensor}/{name}" if tensor else name
    if dims is None:
        report.add(PROBLEM, f"{where}: {label} has no dimension_names", run=run, tensor=tensor, array=name)
    elif ITERATION in dims:
        n = arr.shape[dims.index(ITERATION)]
        if n < n_pub:
            report.add(
                PROBLEM,
                f"{where}: {label} has iteration={n}, the result publishes {n_pub}",
                run=run,
                tensor=tensor,
                array=name,
            )
    first = dims is not None and dims[:1] == (ITERATION,)
    jobs.extend(
        chunk_jobs(
            arr, n_pub if first else None, {"run": run, "tensor": tensor, "part": RESULTS_GROUP},
            its if first else None,
        )
    )  # fmt: skip


def _check_checkpoints(
    root: zarr.Group, metas: Mapping[str, RunMeta | None], report: CheckReport, jobs: list[ChunkJob]
) -> None:
    ck = _safe_get(root, CHECKPOINTS_GROUP, report)
    if ck is None:
        return
    if not isinstance(ck, zarr.Group):
        report.add(PROBLEM, f"{CHECKPOINTS_GROUP!r} is not a group")
        return
    for run, node in _children(ck, report):
        report.checkpoints += 1
        if run not in metas:
            report.add(WARNING, f"checkpoints/{run}: no run {run!r} in the lake (orphan checkpoint)", run=run)
        meta = metas.get(run)
        if meta is not None and meta.status == COMPLETE:
            report.add(INFO, f"checkpoints/{run}: kept for a complete run", run=run)
        stack: list[Any] = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, zarr.Array):
                jobs.extend(chunk_jobs(n, None, {"run": run, "part": CHECKPOINTS_GROUP}, None))
            else:
                stack.extend(c for _, c in _children(n, report, run=run))


# ----------------------------------------------------------------------------- entry point


class _Root:
    """The root of a lake whose own ``zarr.json`` cannot be read: its children opened one by one."""

    path = ""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getitem__(self, path: str) -> Any:
        try:
            return zarr.open(store=self.store, path=path, mode="r", zarr_format=3)
        except (FileNotFoundError, zarr.errors.NodeNotFoundError) as e:
            raise KeyError(path) from e

    def __contains__(self, path: str) -> bool:
        try:
            self[path]
        except KeyError:
            return False
        return True

    def keys(self) -> list[str]:
        return [n for n in (RUNS_GROUP, RESULTS_GROUP, CHECKPOINTS_GROUP) if n in self]


def check_lake(
    location: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    read_data: bool = True,
    workers: int = 4,
    progress: Callable[[int], Any] | None = None,
    on_total: Callable[[int], Any] | None = None,
) -> CheckReport:
    """Check a lake: schema version, commit state, attrs, results, checkpoints and every chunk.

    Parameters
    ----------
    location : str or path
        Local path or fsspec URL of the lake (opened read-only).
    storage_options : mapping, optional
        fsspec storage options.
    read_data : bool
        Decode every chunk of the committed part of every array (and of results
        and checkpoints). ``False`` checks metadata only.
    workers : int
        Chunks read concurrently (memory holds at most ``2 * workers`` chunks).
    progress : callable, optional
        Called with ``1`` after each chunk (e.g. ``tqdm.update``).
    on_total : callable, optional
        Called once with the number of chunks to read, before reading.

    Returns
    -------
    CheckReport
        Findings with severity ``problem``, ``warning`` or ``info``; ``.ok`` is
        True when there is no problem.

    Raises
    ------
    NotALakeError, SchemaVersionError
        The location is not a lake, or one of a newer schema version.
    """
    loc = os.fspath(location)
    try:
        root = open_lake_group(loc, mode="r", storage_options=storage_options)
        lm = lake_meta(root)
        report = CheckReport(location=loc, schema=lm.schema, version=lm.version, data_checked=read_data)
    except DamagedError as e:  # the root zarr.json is damaged but runs/ is there: check the rest
        report = CheckReport(location=loc, schema="?", version=0, data_checked=read_data)
        report.add(PROBLEM, str(e))
        root = _Root(open_store(loc, read_only=True, storage_options=storage_options))
    jobs: list[ChunkJob] = []
    run_arrays: list[tuple[str, zarr.Array]] = []
    metas: dict[str, RunMeta | None] = {}
    runs = _safe_get(root, RUNS_GROUP, report)
    if not isinstance(runs, zarr.Group):
        report.add(PROBLEM, f"missing group {RUNS_GROUP!r} (every lake has one)")
    else:
        for name, node in _children(runs, report):
            if not isinstance(node, zarr.Group):
                report.add(PROBLEM, f"runs/{name} is an array, expected a run group", run=name)
                continue
            metas[name] = _check_run(root, name, node, report, jobs, run_arrays)
    _check_results(root, metas, report, jobs)
    _check_checkpoints(root, metas, report, jobs)
    for child, _ in _children(root, report):
        if child not in (RUNS_GROUP, RESULTS_GROUP, CHECKPOINTS_GROUP, LEASES_PREFIX):
            report.add(WARNING, f"unknown top-level node {child!r} (not part of the lake layout)")
    if read_data:
        if on_total is not None:
            on_total(len(jobs))
        checker = ChunkChecker(report, workers, progress)
        checker.run(jobs)
        checker.report_strays(run_arrays)
        checker.report_nonfinite()
        by_run = {r.run_id: r for r in report.runs}
        for run, n in checker.per_run.items():
            if run in by_run:
                by_run[run].chunks_checked = n
    return report
