"""Reading every stored chunk of a lake for ``sgnlake check``, a bounded number at a time.

Each storage unit (the shard when sharded, else the chunk) of the committed part
of an array becomes a :class:`ChunkJob`; :class:`ChunkChecker` decodes them in a
thread pool (at most ``2 * workers`` in flight), records chunks that are missing,
do not decode or hold non-finite values, and chunks stored beyond an array's
shape (an unfinished write).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import zarr

from .check_report import INFO, PROBLEM, WARNING, CheckReport
from .names import RESULTS_GROUP, RUNS_GROUP
from .store import list_keys


@dataclass
class ChunkJob:
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
    if not arr.store.supports_listing:
        return None
    prefix = f"{arr.path}/" if arr.path else ""
    return {k[len(prefix) :] for k in list_keys(arr.store, arr.path)}


def chunk_jobs(
    arr: zarr.Array, n_iter: int | None, where: dict[str, Any], iterations: np.ndarray | None
) -> Iterator[ChunkJob]:
    """Storage units of ``arr`` covering its first ``n_iter`` entries along axis 0 (all if None)."""
    shape = tuple(arr.shape)
    if not shape:
        yield ChunkJob(arr, (), (), arr.metadata.encode_chunk_key(()), dict(where))
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
        yield ChunkJob(arr, coords, sel, arr.metadata.encode_chunk_key(coords), w)


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


def _read_chunk(job: ChunkJob) -> tuple[int, int]:
    """Decode one storage unit; return (bytes decoded, non-finite count)."""
    data = np.asarray(job.array[job.selection])
    bad = int(np.count_nonzero(~np.isfinite(data))) if data.dtype.kind == "f" else 0
    return data.nbytes, bad


def _describe(job: ChunkJob) -> str:
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


class ChunkChecker:
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
        self.nonfinite_results: dict[tuple[str | None, str | None, str], int] = {}
        self.listed: dict[str, set[str] | None] = {}

    def keys(self, arr: zarr.Array) -> set[str] | None:
        """Stored chunk keys of ``arr`` (listed once), or None when the store cannot list."""
        if arr.path not in self.listed:
            try:
                self.listed[arr.path] = _stored_keys(arr)
            except Exception:  # listing is an optimisation only
                self.listed[arr.path] = None
        return self.listed[arr.path]

    def run(self, jobs: list[ChunkJob]) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: dict[Future[tuple[int, int]], ChunkJob] = {}
            for job in jobs:
                keys = self.keys(job.array)
                if keys is not None and job.key not in keys:
                    # runs/ stores every committed chunk (also all-NaN ones); results are written
                    # by zarr, which does not store chunks equal to the fill value (all-NaN alpha)
                    if _nan_filled(job.array) and job.where.get("part") != RESULTS_GROUP:
                        self._missing(job)
                    else:  # legitimately absent: reads as the fill value
                        self._tick(job)
                    continue
                pending[pool.submit(_read_chunk, job)] = job
                if len(pending) >= 2 * self.workers:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        self._finish(fut, pending.pop(fut))
            for fut in list(pending):
                self._finish(fut, pending.pop(fut))

    def _tick(self, job: ChunkJob) -> None:
        run = job.where.get("run")
        if run is not None and job.where.get("part") == RUNS_GROUP:
            self.per_run[run] = self.per_run.get(run, 0) + 1
        self.report.chunks_checked += 1
        if self.progress is not None:
            self.progress(1)

    def _missing(self, job: ChunkJob) -> None:
        self._tick(job)
        self.report.add(
            PROBLEM,
            f"{_describe(job)}: chunk is missing from the store (reads as fill value)",
            **_where(job),
        )

    def _finish(self, fut: Future[tuple[int, int]], job: ChunkJob) -> None:
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
            into = self.nonfinite_results if job.where.get("part") == RESULTS_GROUP else self.nonfinite
            into[k] = into.get(k, 0) + bad

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
        """Non-finite committed data is a warning; NaN/inf in results is expected (information).

        A result holds NaN for dead parameters (zero or constant SGN) and +inf where
        1/alpha <= 0 (an estimate above 2); one line per result says how many.
        """
        per_result: dict[tuple[str | None, str], int] = {}
        for (run, _tensor, path), n in self.nonfinite_results.items():
            k = (run, path.rsplit("/", 2)[0] if path.count("/") >= 3 else path)
            per_result[k] = per_result.get(k, 0) + n
        for (run, where), n in sorted(per_result.items(), key=lambda kv: str(kv[0])):
            self.report.add(
                INFO,
                f"{where}: {n} NaN/inf value(s) (parameters without an estimate: dead units, or "
                "1/alpha <= 0; expected)",
                run=run,
            )
        for (run, tensor, path), n in sorted(self.nonfinite.items(), key=lambda kv: str(kv[0])):
            self.report.add(
                WARNING,
                f"array {path!r}: {n} non-finite value(s) in the committed part",
                run=run,
                tensor=tensor,
                array=path.rsplit("/", 1)[-1],
            )


def _where(job: ChunkJob) -> dict[str, Any]:
    w = job.where
    return {
        "run": w.get("run"),
        "tensor": w.get("tensor"),
        "array": job.array.path.rsplit("/", 1)[-1],
        "iteration": w.get("iteration"),
        "chunk": job.key,
    }
