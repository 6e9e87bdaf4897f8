"""Copying runs between lakes object by object (local <-> object storage).

A run is copied as its stored objects, never decoded: every key under
``runs/<id>/``, ``results/<id>/`` and ``checkpoints/<id>/`` is read from the
source store and written unchanged to the destination, so chunks, codecs and
attributes arrive byte for byte. Stage-neutral: Zarr's Store API only
(:mod:`sgnlake.schema.store`).

Order and resumption:

- The source run's ``zarr.json`` (its attributes, with the commit marker) is read
  *first*, so every chunk it declares committed is already in the listing taken
  after it, even while a collector is still writing the run.
- Chunks are written first, then array and group metadata (deepest first), and
  the run's own ``zarr.json`` last: until then the destination has no run of that
  name (``run_ids`` ignores it), so a half copy is never a finished run.
- A rerun copies only the objects that are missing in the destination or whose
  size differs, then checks every object's size before writing the run's
  ``zarr.json``.
- A run that already exists in the destination is never overwritten: if its
  ``zarr.json`` is byte-identical to the source's, the copy only adds missing
  objects (e.g. new results); otherwise :class:`RunExistsError`.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import LakeError, RunExistsError, RunNotFoundError, SgnlakeError
from .lake import open_lake_group, run_ids
from .names import CHECKPOINTS_GROUP, RESULTS_GROUP, RUNS_GROUP, check_run_id
from .store import Store, key_sizes, read_bytes, same_location, storage, write_bytes

#: Name of a Zarr v3 node's metadata document.
ZARR_JSON = "zarr.json"


@dataclass
class RunCopy:
    """What copying one run did.

    Attributes
    ----------
    run_id : str
        The run.
    objects : int
        Stored objects of the run in the source (run, results and checkpoint).
    copied : int
        Objects written by this copy.
    bytes_copied : int
        Bytes written by this copy.
    status : str
        ``copied`` (new in the destination), ``resumed`` (a partial copy was
        completed), ``updated`` (the run was there; missing objects such as new
        results were added) or ``up to date`` (nothing to do).
    """

    run_id: str
    objects: int = 0
    copied: int = 0
    bytes_copied: int = 0
    status: str = "copied"


@dataclass
class CopyReport:
    """The outcome of :func:`copy_runs`: one :class:`RunCopy` per run."""

    src: str
    dst: str
    runs: list[RunCopy] = field(default_factory=list)

    @property
    def copied(self) -> int:
        """Objects written, all runs together."""
        return sum(r.copied for r in self.runs)

    @property
    def bytes_copied(self) -> int:
        """Bytes written, all runs together."""
        return sum(r.bytes_copied for r in self.runs)


@dataclass(frozen=True)
class _Location:
    """A lake location and its store (keys relative to the lake root)."""

    text: str
    store: Store

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """``{key: size}`` of every object under ``prefix/`` (a fresh listing: other writers may add)."""
        return key_sizes(self.store, prefix)

    def read(self, key: str) -> bytes | None:
        return read_bytes(self.store, key)

    def write(self, key: str, data: bytes) -> None:
        write_bytes(self.store, key, data)


def _location(location: str, storage_options: Mapping[str, Any] | None, *, read_only: bool) -> _Location:
    return _Location(location, storage(location, read_only=read_only, storage_options=storage_options))


def select_runs(available: Sequence[str], patterns: Iterable[str] | None) -> list[str]:
    """Run ids of ``available`` that match any glob in ``patterns`` (all when none).

    Raises
    ------
    RunNotFoundError
        A pattern matches no run.
    """
    pats = [p for p in (patterns or []) if p]
    if not pats:
        return list(available)
    chosen: list[str] = []
    for pat in pats:
        hits = [r for r in available if fnmatch.fnmatchcase(r, pat)]
        if not hits:
            known = ", ".join(available[:10]) or "none"
            raise RunNotFoundError(f"no run matches {pat!r} in the source lake (runs: {known})")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def run_prefixes(run_id: str) -> tuple[str, str, str]:
    """The three key prefixes that hold everything of one run."""
    check_run_id(run_id)
    return (f"{RUNS_GROUP}/{run_id}", f"{RESULTS_GROUP}/{run_id}", f"{CHECKPOINTS_GROUP}/{run_id}")


def _write_order(keys: Iterable[str], run_marker: str) -> list[list[str]]:
    """Phases of keys: data objects, then metadata deepest first, then the run's ``zarr.json``."""
    data, meta = [], []
    for k in keys:
        if k == run_marker:
            continue
        (meta if k.rsplit("/", 1)[-1] == ZARR_JSON else data).append(k)
    phases: list[list[str]] = [sorted(data)]
    by_depth: dict[int, list[str]] = {}
    for k in meta:
        by_depth.setdefault(k.count("/"), []).append(k)
    phases.extend(sorted(by_depth[d]) for d in sorted(by_depth, reverse=True))
    return [p for p in phases if p]


def copy_runs(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    runs: Iterable[str] | None = None,
    src_storage_options: Mapping[str, Any] | None = None,
    dst_storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
    jobs: int = 16,
    on_run: Callable[[RunCopy], None] | None = None,
) -> CopyReport:
    """Copy runs (each with its results and checkpoint) from lake ``src`` to lake ``dst``.

    Objects are copied as stored (no decoding), so chunks, codecs and attributes
    are identical in both lakes. ``dst`` is created if it does not exist.

    Parameters
    ----------
    src, dst : str or path
        Lake locations: local paths or fsspec URLs (``s3://bucket/lake``).
    runs : iterable of str, optional
        Glob patterns of run ids (``fcn-*``); all runs of ``src`` when omitted.
    src_storage_options, dst_storage_options : mapping, optional
        fsspec storage options of each side (endpoint, credentials, ...).
    progress : bool
        Show a progress bar (bytes) on stderr.
    jobs : int
        Objects transferred concurrently.
    on_run : callable, optional
        Called with each run's :class:`RunCopy` when that run is done.

    Returns
    -------
    CopyReport
        Per run: objects in the source, objects and bytes written, status.

    Raises
    ------
    RunExistsError
        A selected run exists in ``dst`` and differs from the source.
    RunNotFoundError
        A pattern in ``runs`` matches no run of ``src``.
    LakeError
        A location cannot be read or written (missing bucket, credentials, ...).
    """
    s, d = os.fspath(src), os.fspath(dst)
    try:
        return _copy_runs(
            s, d, runs, src_storage_options, dst_storage_options, progress, max(1, int(jobs)), on_run
        )
    except SgnlakeError:
        raise
    except (OSError, ValueError) as e:
        raise LakeError(
            f"copy {s} -> {d} failed ({type(e).__name__}: {e}): check both locations, "
            "credentials and --storage-option / --dst-storage-option"
        ) from None
    except Exception as e:
        if type(e).__module__.startswith(("botocore", "aiobotocore", "google", "gcsfs", "s3fs")):
            raise LakeError(
                f"copy {s} -> {d} failed ({type(e).__name__}: {e}): check credentials and endpoint"
            ) from None
        raise


def _copy_runs(
    s: str,
    d: str,
    patterns: Iterable[str] | None,
    src_opts: Mapping[str, Any] | None,
    dst_opts: Mapping[str, Any] | None,
    progress: bool,
    jobs: int,
    on_run: Callable[[RunCopy], None] | None,
) -> CopyReport:
    src_root = open_lake_group(s, mode="r", storage_options=src_opts)
    selected = select_runs(run_ids(src_root), patterns)
    sloc = _location(s, src_opts, read_only=True)
    dloc = _location(d, dst_opts, read_only=True)  # writable once the checks pass
    if same_location(sloc.store, dloc.store):
        raise LakeError(f"source and destination are the same lake ({s}): choose another DST")
    # Refuse before writing anything: no selected run may exist in DST with other metadata.
    markers: dict[str, bytes] = {}
    for run_id in selected:
        markers[run_id] = _check_target(sloc, dloc, run_id)
    open_lake_group(d, mode="a", storage_options=dst_opts)
    dloc = _location(d, dst_opts, read_only=False)
    report = CopyReport(src=s, dst=d)
    for run_id in selected:
        rc = _copy_one(sloc, dloc, run_id, markers[run_id], progress, jobs)
        report.runs.append(rc)
        if on_run is not None:
            on_run(rc)
    return report


def _check_target(sloc: _Location, dloc: _Location, run_id: str) -> bytes:
    """Read the source run's ``zarr.json`` (first: what it calls committed is stored) and
    raise :class:`RunExistsError` if the destination holds a different run of that name."""
    marker = f"{RUNS_GROUP}/{run_id}/{ZARR_JSON}"
    body = sloc.read(marker)
    if body is None:
        raise RunNotFoundError(f"run {run_id!r} vanished from {sloc.text} during the copy: rerun the copy")
    there = dloc.read(marker)
    if there is not None and there != body:
        raise RunExistsError(
            f"run {run_id!r} already exists in {dloc.text} and differs from the source: "
            "delete it there, or leave it out with --runs"
        )
    return body


def _copy_one(
    sloc: _Location, dloc: _Location, run_id: str, marker_body: bytes, progress: bool, jobs: int
) -> RunCopy:
    marker = f"{RUNS_GROUP}/{run_id}/{ZARR_JSON}"
    dst_marker = dloc.read(marker)
    if dst_marker is not None and dst_marker != marker_body:
        raise RunExistsError(
            f"run {run_id!r} appeared in {dloc.text} during the copy and differs from the source: "
            "delete it there, or leave it out with --runs"
        )
    src_sizes: dict[str, int] = {}
    dst_sizes: dict[str, int] = {}
    for prefix in run_prefixes(run_id):
        src_sizes.update(sloc.list_sizes(prefix))
        dst_sizes.update(dloc.list_sizes(prefix))
    src_sizes[marker] = len(marker_body)
    rc = RunCopy(run_id=run_id, objects=len(src_sizes))
    if dst_marker is not None:  # a finished copy: only add what is missing, overwrite nothing
        todo = {k for k in src_sizes if k not in dst_sizes and k != marker}
        rc.status = "updated" if todo else "up to date"
    else:
        todo = {k for k, n in src_sizes.items() if dst_sizes.get(k) != n}
        if any(k in dst_sizes for k in src_sizes):
            rc.status = "resumed"
    if not todo:
        return rc
    total = sum(src_sizes[k] for k in todo if k != marker)
    bar = _progress_bar(total, f"{run_id}", progress)
    lock = threading.Lock()

    def copy_key(key: str) -> None:
        body = sloc.read(key)
        if body is None:
            raise RunNotFoundError(f"object {key} vanished from {sloc.text} during the copy: rerun the copy")
        dloc.write(key, body)
        with lock:
            rc.copied += 1
            rc.bytes_copied += len(body)
            if bar is not None:
                bar.update(len(body))

    # Parent groups results/ and checkpoints/: written once, only if missing, never overwritten.
    for group in (RESULTS_GROUP, CHECKPOINTS_GROUP):
        key = f"{group}/{ZARR_JSON}"
        if any(k.startswith(f"{group}/") for k in todo) and dloc.read(key) is None:
            if (body := sloc.read(key)) is not None:
                dloc.write(key, body)
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for phase in _write_order(todo, marker):
                for fut in [pool.submit(copy_key, k) for k in phase]:
                    fut.result()
    finally:
        if bar is not None:
            bar.close()
    # Verify by size before the run becomes visible in the destination.
    now: dict[str, int] = {}
    for prefix in run_prefixes(run_id):
        now.update(dloc.list_sizes(prefix))
    bad = sorted(k for k in todo if k != marker and now.get(k) != src_sizes[k])
    if bad:
        raise LakeError(
            f"copy of run {run_id!r} is incomplete ({len(bad)} objects differ in size, e.g. {bad[0]}): "
            "rerun the copy"
        )
    if marker in todo:
        dloc.write(marker, marker_body)
        rc.copied += 1
        rc.bytes_copied += len(marker_body)
    return rc


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
