"""Check a lake end to end (the ``sgnlake check`` fsck): metadata, commit state, every chunk.

Unlike :func:`~sgnlake.schema.validate.validate_lake`, which reads metadata and
coordinates only, :func:`check_lake` also decodes every stored chunk of the
committed part of every array, one storage unit at a time (bounded memory: at
most ``workers`` chunks in flight), and checks ``results/`` and
``checkpoints/`` against ``runs/``. Stage-neutral: plain Zarr and NumPy.

Findings have a severity:

``problem``
    The lake is damaged or inconsistent (a committed chunk is missing or does not
    decode, attrs contradict the arrays, ...). ``sgnlake check`` exits with 1.
``warning``
    Something a user should know that readers cope with (a failed run, non-finite
    values in committed data, an orphan result).
``info``
    Normal states worth a line (an uncommitted tail left by a crash, an
    interrupted run that can be resumed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from .errors import SgnlakeError
from .lake import lake_meta, open_lake_group, read_run_meta
from .meta import ResultMeta, RunMeta, TensorInfo
from .names import (
    CHECKPOINTS_GROUP,
    CLAIM_ATTR,
    COMPLETE,
    FAILED,
    INTERRUPTED,
    ITERATION,
    RESULT_ATTR,
    RESULTS_GROUP,
    RUN_ARRAYS,
    RUN_ATTR,
    RUNNING,
    RUNS_GROUP,
    TENSOR_ARRAYS,
    TENSOR_ATTR,
    run_path,
)
from .validate import validate_run

PROBLEM = "problem"
WARNING = "warning"
INFO = "info"
SEVERITIES = (PROBLEM, WARNING, INFO)


@dataclass
class Finding:
    """One thing :func:`check_lake` found, located as precisely as possible."""

    severity: str
    message: str
    run: str | None = None
    tensor: str | None = None
    array: str | None = None
    iteration: int | None = None
    chunk: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The finding as one line of text."""
        return f"{self.severity.upper()}: {self.message}"


@dataclass
class RunSummary:
    """Commit state and chunk count of one run."""

    run_id: str
    status: str = "?"
    committed: int = 0
    planned: int = 0
    stored: int = 0
    uncommitted_tail: int = 0
    tensors: int = 0
    chunks_checked: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    """Result of :func:`check_lake`; ``ok`` is True when no finding is a problem."""

    location: str
    schema: str = ""
    version: int = 0
    runs: list[RunSummary] = field(default_factory=list)
    results: int = 0
    checkpoints: int = 0
    chunks_checked: int = 0
    bytes_checked: int = 0
    data_checked: bool = True
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, severity: str, message: str, **where: Any) -> None:
        self.findings.append(Finding(severity, message, **where))

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "schema": self.schema,
            "version": self.version,
            "ok": self.ok,
            "n_problems": len(self.problems),
            "n_warnings": len(self.warnings),
            "chunks_checked": self.chunks_checked,
            "bytes_checked": self.bytes_checked,
            "data_checked": self.data_checked,
            "results": self.results,
            "checkpoints": self.checkpoints,
            "runs": [r.to_dict() for r in self.runs],
            "findings": [f.to_dict() for sev in SEVERITIES for f in self.findings if f.severity == sev],
        }

    def format_text(self) -> str:
        """A readable multi-line report (what ``sgnlake check`` prints)."""
        lines = [
            f"lake {self.location}: schema {self.schema} version {self.version}, {len(self.runs)} run(s)"
        ]
        for r in self.runs:
            tail = f", uncommitted tail {r.uncommitted_tail}" if r.uncommitted_tail else ""
            lines.append(
                f"  run {r.run_id}: {r.status}, {r.committed}/{r.planned} snapshots committed"
                f"{tail}, {r.tensors} tensor(s), {r.chunks_checked} chunk(s) read"
            )
        lines.append(f"  results: {self.results} group(s); checkpoints: {self.checkpoints} group(s)")
        for sev in SEVERITIES:
            lines.extend(f.line() for f in self.findings if f.severity == sev)
        read = (
            f"{self.chunks_checked} chunk(s), {self.bytes_checked / 1e6:.1f} MB decoded"
            if self.data_checked
            else "chunks not read (--quick)"
        )
        verdict = "OK" if self.ok else "DAMAGED"
        lines.append(f"{verdict}: {len(self.problems)} problem(s), {len(self.warnings)} warning(s); {read}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- chunk reading


@dataclass
class _ChunkJob:
    array: zarr.Array
    coords: tuple[int, ...]
    selection: tuple[slice, ...]
    key: str
    where: dict[str, Any]


def _unit_shape(arr: zarr.Array) -> tuple[int, ...]:
    """Shape of the storage unit (the shard when sharded, else the chunk)."""
    return tuple(arr.shards) if arr.shards is not None else tuple(arr.chunks)


def _stored_keys(arr: zarr.Array) -> set[str] | None:
    """Keys (relative to the array) of stored chunks, or None if the store cannot list."""
    store = arr.store
    if not store.supports_listing:
        return None
    prefix = f"{arr.path}/" if arr.path else ""

    async def _collect() -> set[str]:
        return {k[len(prefix) :] async for k in store.list_prefix(prefix)}

    return sync(_collect())


def _chunk_jobs(
    arr: zarr.Array, n_iter: int | None, where: dict[str, Any], iterations: np.ndarray | None
) -> Iterator[_ChunkJob]:
    """Storage units of ``arr`` covering its first ``n_iter`` entries along axis 0 (all if None)."""
    shape = tuple(arr.shape)
    if not shape:
        yield _ChunkJob(arr, (), (), arr.metadata.encode_chunk_key(()), dict(where))
        return
    unit = _unit_shape(arr)
    extent = list(shape)
    if n_iter is not None:
        extent[0] = min(n_iter, shape[0])
    if any(e == 0 for e in extent):
        return
    grid = [range(-(-e // u)) for e, u in zip(extent, unit, strict=True)]
    for coords in product(*grid):
        sel = tuple(slice(c * u, min((c + 1) * u, e)) for c, u, e in zip(coords, unit, extent, strict=True))
        w = dict(where)
        if iterations is not None:
            i0 = sel[0].start
            w["iteration"] = int(iterations[i0]) if i0 < len(iterations) else None
        yield _ChunkJob(arr, coords, sel, arr.metadata.encode_chunk_key(coords), w)


def _first_coord(arr: zarr.Array, key: str) -> int | None:
    """Chunk coordinate along axis 0 encoded in ``key`` (None for non-chunk keys)."""
    enc = arr.metadata.chunk_key_encoding
    sep = getattr(enc, "separator", "/")
    if getattr(enc, "name", "default") == "default":
        if not key.startswith("c" + sep):
            return None
        key = key[2:]
    try:
        return int(key.split(sep, 1)[0])
    except ValueError:
        return None


def _nan_filled(arr: zarr.Array) -> bool:
    """True if ``arr`` is a float array with NaN fill (an absent committed chunk is then data loss)."""
    fill = arr.fill_value
    try:
        return arr.dtype.kind == "f" and bool(np.isnan(fill))
    except TypeError:
        return False


def _read_chunk(job: _ChunkJob) -> tuple[int, int]:
    """Decode one storage unit; return (bytes decoded, non-finite count)."""
    data = np.asarray(job.array[job.selection])
    bad = int(np.count_nonzero(~np.isfinite(data))) if data.dtype.kind == "f" else 0
    return data.nbytes, bad


def _describe(job: _ChunkJob) -> str:
    w = job.where
    parts = []
    if w.get("run"):
        parts.append(f"run {w['run']!r}")
    if w.get("tensor"):
        parts.append(f"tensor {w['tensor']!r}")
    parts.append(f"array {job.array.path.rsplit('/', 1)[-1]!r}")
    if w.get("iteration") is not None:
        parts.append(f"iteration {w['iteration']} (snapshot {job.selection[0].start})")
    return ", ".join(parts) + f", chunk {job.array.path}/{job.key}"


class _ChunkChecker:
    """Reads chunk jobs with a bounded number in flight and records findings."""

    def __init__(
        self,
        report: CheckReport,
        workers: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.report = report
        self.workers = max(1, workers)
        self.progress = progress
        self.per_run: dict[str, int] = {}
        self.nonfinite: dict[tuple[str | None, str | None, str], int] = {}
        self.listed: dict[str, set[str] | None] = {}

    def keys(self, arr: zarr.Array) -> set[str] | None:
        """Stored chunk keys of ``arr`` (listed once), or None when the store cannot list."""
        if arr.path not in self.listed:
            try:
                self.listed[arr.path] = _stored_keys(arr)
            except Exception:  # listing is an optimisation only
                self.listed[arr.path] = None
        return self.listed[arr.path]

    def run(self, jobs: list[_ChunkJob]) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: dict[Future[tuple[int, int]], _ChunkJob] = {}
            for job in jobs:
                keys = self.keys(job.array)
                if keys is not None and job.key not in keys:
                    if _nan_filled(job.array):
                        self._missing(job)
                    else:  # zarr does not store chunks equal to the fill value: legitimately absent
                        self._tick(job)
                    continue
                pending[pool.submit(_read_chunk, job)] = job
                if len(pending) >= 2 * self.workers:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        self._finish(fut, pending.pop(fut))
            for fut in list(pending):
                self._finish(fut, pending.pop(fut))

    def _tick(self, job: _ChunkJob) -> None:
        run = job.where.get("run")
        if run is not None and job.where.get("part") == RUNS_GROUP:
            self.per_run[run] = self.per_run.get(run, 0) + 1
        self.report.chunks_checked += 1
        if self.progress is not None:
            self.progress(1)

    def _missing(self, job: _ChunkJob) -> None:
        self._tick(job)
        self.report.add(
            PROBLEM,
            f"{_describe(job)}: chunk is missing from the store (reads as fill value)",
            **_where(job),
        )

    def _finish(self, fut: Future[tuple[int, int]], job: _ChunkJob) -> None:
        self._tick(job)
        try:
            nbytes, bad = fut.result()
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else ""
            self.report.add(
                PROBLEM,
                f"{_describe(job)}: cannot be decoded ({type(e).__name__}: {msg})",
                **_where(job),
            )
            return
        self.report.bytes_checked += nbytes
        if bad:
            k = (job.where.get("run"), job.where.get("tensor"), job.array.path)
            self.nonfinite[k] = self.nonfinite.get(k, 0) + bad

    def report_strays(self, run_arrays: list[tuple[str, zarr.Array]]) -> None:
        """Record chunks stored beyond an array's shape along ``iteration`` (an unfinished write)."""
        per_run: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        for run, arr in run_arrays:
            keys = self.keys(arr)
            if not keys:
                continue
            n = sum(
                1
                for k in keys
                if (c := _first_coord(arr, k)) is not None and c * _unit_shape(arr)[0] >= arr.shape[0]
            )
            if n:
                per_run.setdefault(run, []).append(arr.path.split("/", 2)[-1])
                counts[run] = counts.get(run, 0) + n
        for run, arrays in per_run.items():
            more = f" (+{len(arrays) - 3} more)" if len(arrays) > 3 else ""
            self.report.add(
                INFO,
                f"run {run!r}: {counts[run]} chunk(s) stored beyond the arrays' shape in "
                f"{', '.join(arrays[:3])}{more} (an unfinished write: invisible to readers, "
                "deleted on resume)",
                run=run,
            )

    def report_nonfinite(self) -> None:
        for (run, tensor, path), n in sorted(self.nonfinite.items(), key=lambda kv: str(kv[0])):
            self.report.add(
                WARNING,
                f"array {path!r}: {n} non-finite value(s) in the committed part",
                run=run,
                tensor=tensor,
                array=path.rsplit("/", 1)[-1],
            )


def _where(job: _ChunkJob) -> dict[str, Any]:
    w = job.where
    return {
        "run": w.get("run"),
        "tensor": w.get("tensor"),
        "array": job.array.path.rsplit("/", 1)[-1],
        "iteration": w.get("iteration"),
        "chunk": job.key,
    }


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
    jobs: list[_ChunkJob],
    run_arrays: list[tuple[str, zarr.Array]],
) -> RunMeta | None:
    summary = RunSummary(run_id=name)
    report.runs.append(summary)
    try:
        meta = read_run_meta(group)
    except SgnlakeError as e:
        if RUN_ATTR not in group.attrs:
            claim = group.attrs.get(CLAIM_ATTR)
            who = (
                f" by pid {claim.get('pid')} on {claim.get('host')} since {claim.get('time')}"
                if isinstance(claim, Mapping)
                else ""
            )
            report.add(
                WARNING,
                f"run {name!r}: group has no run attributes: a collector is creating it{who}, or "
                f"crashed while creating it (not a run; the next 'sgnlake collect' of this run id on "
                f"that host replaces it)",
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
            jobs.extend(_chunk_jobs(arr, meta.committed, base, iterations))

    known = {t.name for t in meta.tensors}
    for child, _node in _children(group, report, run=name):
        if child in RUN_ARRAYS:
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
            jobs.extend(_chunk_jobs(arr, meta.committed, {**base, "tensor": t.name}, iterations))
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
    root: zarr.Group, metas: Mapping[str, RunMeta | None], report: CheckReport, jobs: list[_ChunkJob]
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
    jobs: list[_ChunkJob],
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
    if rmeta is not None and rmeta.run_id != run:
        report.add(PROBLEM, f"{where}: attrs name run {rmeta.run_id!r}", run=run)
    it_arr = _safe_get(kg, ITERATION, report, run=run, array=ITERATION)
    its: np.ndarray | None = None
    if not isinstance(it_arr, zarr.Array):
        report.add(PROBLEM, f"{where}: missing its own 'iteration' coordinate array", run=run)
    else:
        try:
            its = np.asarray(it_arr[:])
        except Exception:
            its = None  # reported by the chunk read
        if its is not None and run_its is not None and not set(its.tolist()) <= run_its:
            extra = sorted(set(its.tolist()) - run_its)[:5]
            report.add(
                PROBLEM, f"{where}: iterations {extra} are not committed snapshots of run {run!r}", run=run
            )
        if its is not None and rmeta is not None and rmeta.n_iterations != len(its):
            report.add(
                PROBLEM,
                f"{where}: attrs say {rmeta.n_iterations} iteration(s), the coordinate holds {len(its)}",
                run=run,
            )
        jobs.extend(_chunk_jobs(it_arr, None, {"run": run, "part": RESULTS_GROUP}, None))
    tensors = {t.name for t in meta.tensors} if meta is not None else None
    for tname, node in _children(kg, report, run=run):
        if tname == ITERATION:
            continue
        if isinstance(node, zarr.Array):
            _check_result_array(where, run, None, node, its, report, jobs)
            continue
        if tensors is not None and tname not in tensors:
            report.add(WARNING, f"{where}: group {tname!r} is not a tensor of run {run!r}", run=run)
        for _, arr in _children(node, report, run=run, tensor=tname):
            if isinstance(arr, zarr.Array):
                _check_result_array(where, run, tname, arr, its, report, jobs)


def _check_result_array(
    where: str,
    run: str,
    tensor: str | None,
    arr: zarr.Array,
    its: np.ndarray | None,
    report: CheckReport,
    jobs: list[_ChunkJob],
) -> None:
    dims = _dims(arr)
    name = arr.path.rsplit("/", 1)[-1]
    label = f"{tensor}/{name}" if tensor else name
    if dims is None:
        report.add(PROBLEM, f"{where}: {label} has no dimension_names", run=run, tensor=tensor, array=name)
    elif ITERATION in dims and its is not None:
        n = arr.shape[dims.index(ITERATION)]
        if n != len(its):
            report.add(
                PROBLEM,
                f"{where}: {label} has iteration={n}, the coordinate holds {len(its)}",
                run=run,
                tensor=tensor,
                array=name,
            )
    use_its = its if dims is not None and dims[:1] == (ITERATION,) else None
    jobs.extend(_chunk_jobs(arr, None, {"run": run, "tensor": tensor, "part": RESULTS_GROUP}, use_its))


def _check_checkpoints(
    root: zarr.Group, metas: Mapping[str, RunMeta | None], report: CheckReport, jobs: list[_ChunkJob]
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
                jobs.extend(_chunk_jobs(n, None, {"run": run, "part": CHECKPOINTS_GROUP}, None))
            else:
                stack.extend(c for _, c in _children(n, report, run=run))


# ----------------------------------------------------------------------------- entry point


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
    root = open_lake_group(loc, mode="r", storage_options=storage_options)
    lm = lake_meta(root)
    report = CheckReport(location=loc, schema=lm.schema, version=lm.version, data_checked=read_data)
    jobs: list[_ChunkJob] = []
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
        if child not in (RUNS_GROUP, RESULTS_GROUP, CHECKPOINTS_GROUP):
            report.add(WARNING, f"unknown top-level node {child!r} (not part of the lake layout)")
    if read_data:
        if on_total is not None:
            on_total(len(jobs))
        checker = _ChunkChecker(report, workers, progress)
        checker.run(jobs)
        checker.report_strays(run_arrays)
        checker.report_nonfinite()
        by_run = {r.run_id: r for r in report.runs}
        for run, n in checker.per_run.items():
            if run in by_run:
                by_run[run].chunks_checked = n
    return report
