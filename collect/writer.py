"""Writing a run into the lake: group and arrays, the commit protocol, a background writer.

Commit protocol for snapshot ``k`` (readers trust ``RunMeta.committed``):

1. write the chunks of index ``k`` of every array (through an in-memory view
   whose metadata says ``k + 1`` snapshots, or, for the lossless zstd default,
   encoded here and stored under their chunk keys), while the stored metadata
   still says ``k`` (so a plain Zarr reader cannot see the new chunks yet);
2. write the resume checkpoint of snapshot ``k`` under ``checkpoints/<run_id>/``;
3. grow every array's stored metadata to ``k + 1``;
4. set ``RunMeta.committed = k + 1`` (and ``updated``) in the run attributes;
5. delete older checkpoints.

A crash at any point leaves at most one uncommitted snapshot, which
:meth:`RunWriter.reopen` truncates. This module does not import torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import zarr
from zarr.core.array import AsyncArray
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from sgnlake.schema.errors import DivergedError, LakeError, ValidationError
from sgnlake.schema.lake import now, read_run_meta
from sgnlake.schema.meta import RunMeta
from sgnlake.schema.names import (
    ACCURACY,
    FAILED,
    GRAD,
    ITERATION,
    LOSS,
    SGN,
    WEIGHT,
    run_path,
)
from sgnlake.schema.validate import validate_run

from . import chunk_files
from .run_checkpoints import CHECKPOINT_ARRAY, CHECKPOINT_ATTR, RunCheckpoints, checkpoint_name
from .run_claim import claim_run
from .run_documents import GrownArrays, RunAttributes
from .run_layout import create_run_group

__all__ = [  # re-exported: claim_run (run_claim), CHECKPOINT_*, checkpoint_name (run_checkpoints)
    "CHECKPOINT_ARRAY",
    "CHECKPOINT_ATTR",
    "RunWriter",
    "SnapshotLike",
    "checkpoint_name",
    "claim_run",
    "release_snapshot",
]


class SnapshotLike(Protocol):
    """What the writer needs from a snapshot (see :class:`sgnlake.collect.snapshot.Snapshot`).

    Optional methods, called when present: ``wait()`` before the arrays are
    read (their copy from the device may still run), ``release()`` once the
    writer is done with them (their host buffers are then reused), also when
    the snapshot is not written.
    """

    index: int
    iteration: int
    loss: float
    accuracy: float
    sgn: dict[str, np.ndarray]
    grad: dict[str, np.ndarray]
    weight: dict[str, np.ndarray]
    checkpoint: bytes | None


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".replace("\n", " ")


def _wait(snap: SnapshotLike) -> None:
    """Block until ``snap``'s arrays are filled (see :class:`SnapshotLike`)."""
    wait = getattr(snap, "wait", None)
    if wait is not None:
        wait()


def release_snapshot(snap: SnapshotLike) -> None:
    """Hand ``snap``'s host buffers back (see :class:`SnapshotLike`)."""
    release = getattr(snap, "release", None)
    if release is not None:
        release()


class RunWriter:
    """Writes the snapshots of one run, optionally in a background thread.

    Use :meth:`create` for a new run and :meth:`reopen` to resume one. In the
    background mode at most ``slots`` snapshots are in host memory: call
    :meth:`acquire` before computing a snapshot and :meth:`submit` it when done
    (or :meth:`release` if computing it failed). Errors in the writer thread are
    raised by the next :meth:`acquire`, :meth:`submit` or :meth:`drain` as
    :class:`~sgnlake.schema.errors.LakeError`.
    """

    #: The run's single-writer lease (:class:`sgnlake.schema.lease.Lease`), checked before each commit.
    lease: Any = None

    def __init__(self, root: zarr.Group, meta: RunMeta, *, background: bool = True, slots: int = 2) -> None:
        self.root = root
        self.meta = meta
        self.group = root[run_path(meta.run_id)]
        self._arrays: dict[str, zarr.Array] = {}
        for name in (ITERATION, LOSS, ACCURACY):
            self._arrays[name] = self.group[name]
        for t in meta.tensors:
            tg = self.group[t.name]
            for a in (SGN, GRAD, WEIGHT):
                self._arrays[f"{t.name}/{a}"] = tg[a]
        #: arrays whose chunks are encoded here and stored directly (see :func:`~sgnlake.collect.chunk_files.direct_codec`)
        self._direct = {
            n: c for n, a in self._arrays.items() if (c := chunk_files.direct_codec(a)) is not None
        }
        #: Writes per-snapshot results computed on the device with each commit (``--store alpha``):
        #: an object with ``write(k, iteration, results)`` and ``commit(n)`` (see
        #: :class:`sgnlake.collect.device_alpha.ResultSink`), or None.
        self.result_sink: Any = None
        self.bytes_stored = 0
        self.bytes_raw = 0
        self.write_seconds: list[float] = []
        #: process CPU seconds (all threads) per commit stage, summed over commits; only the writer's
        #: own cost when the process does nothing else (synchronous commits, ``bench/commit.py``)
        self.stage_cpu: dict[str, float] = {}
        #: grows every array's zarr.json (and metadata in memory) by one snapshot per commit
        self._grown = GrownArrays(self._arrays.values())
        #: the one writer of the run attributes (commit marker, status, meta changes)
        self._attrs = RunAttributes(self.group)
        #: the run's resume checkpoints under ``checkpoints/<run_id>/``
        self.checkpoints = RunCheckpoints(root, meta.run_id)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._error_index = -1
        self._background = background
        self._slots = threading.Semaphore(slots)
        self._queue: queue.Queue[SnapshotLike | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"sgnlake-writer-{meta.run_id}", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls, root: zarr.Group, meta: RunMeta, *, param_index: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> RunWriter:
        """Create the run group, its arrays and attributes, and return a writer.

        The run group is first claimed atomically (:func:`~sgnlake.collect.run_claim.claim_run`), so of two
        collectors creating the same run id only one proceeds. The run attributes
        are written last, so a crash while creating leaves a group that is not
        (yet) a run; the next attempt, on any host, replaces it under the run's lease.

        Raises
        ------
        RunExistsError
            A run with this id exists.

        ``param_index`` (tensor name -> kept flat indices) is recorded for a run
        that stores a parameter sample (:mod:`sgnlake.collect.sampling`).
        """
        create_run_group(root, meta, param_index=param_index)
        return cls(root, meta, **kwargs)

    @classmethod
    def reopen(cls, root: zarr.Group, run_id: str, **kwargs: Any) -> RunWriter:
        """Open an existing run for resuming: drop everything beyond ``committed``.

        Arrays longer than ``committed`` are shrunk (their extra chunks deleted),
        chunks written through a view but never committed are deleted, and
        checkpoints other than the last committed one are removed.

        Raises
        ------
        ValidationError
            The run's arrays do not match its attributes.
        """
        g = root[run_path(run_id)]
        meta = read_run_meta(g)
        problems = validate_run(g, meta)
        if problems:
            raise ValidationError(f"cannot resume: {problems[0]}")
        writer = cls(root, meta, **kwargs)
        writer.truncate()
        return writer

    def truncate(self) -> None:
        """Shrink every array to ``committed`` snapshots and delete stray chunks and checkpoints."""
        k = self.meta.committed
        store = self.root.store
        for arr in self._arrays.values():
            n = arr.shape[0]
            if n > k:
                arr.resize((k, *arr.shape[1:]))
            stray = [f"{arr.path}/{key}" for key in self._chunk_keys(arr, n)]
            sync(chunk_files.gather(*(store.delete(s) for s in stray)))
        self.checkpoints.keep_only(k)

    # ------------------------------------------------------------------ reading back

    def read_checkpoint(self) -> bytes | None:
        """Bytes of the checkpoint of the last committed snapshot (None when nothing is committed).

        Raises
        ------
        LakeError
            The checkpoint is missing or its digest does not match.
        """
        return self.checkpoints.read(self.meta.committed)

    # ------------------------------------------------------------------ writing

    @staticmethod
    def _chunk_keys(arr: zarr.Array, index: int) -> Iterator[str]:
        """Keys (relative to the array) of the chunks of snapshot ``index``."""
        md = arr.metadata
        grids = [range(math.ceil(s / c)) for s, c in zip(arr.shape[1:], md.chunks[1:], strict=True)]
        for rest in np.ndindex(*(len(r) for r in grids)) if grids else [()]:
            yield md.encode_chunk_key((index, *rest))

    def _values(self, snap: SnapshotLike) -> dict[str, Any]:
        vals: dict[str, Any] = {
            ITERATION: np.int64(snap.iteration),
            LOSS: np.float64(snap.loss),
            ACCURACY: np.float64(snap.accuracy),
        }
        for t in self.meta.tensors:
            vals[f"{t.name}/{SGN}"] = snap.sgn[t.name]
            vals[f"{t.name}/{GRAD}"] = snap.grad[t.name]
            vals[f"{t.name}/{WEIGHT}"] = snap.weight[t.name]
        return vals

    def commit(self, snap: SnapshotLike) -> None:
        """Write and commit snapshot ``snap`` (synchronously, in the calling thread).

        On a local disk (zarr's ``LocalStore``) the lossless default's chunks are encoded
        and written with plain file calls in the writer's threads (numcodecs, CRC-32C and
        ``os.write`` release the GIL), and the arrays' grown ``zarr.json`` documents are
        written atomically from cached documents; other stores and codecs go through zarr.
        The bytes stored are the same either way, and so is the commit protocol (see the
        module docstring).
        """
        t0 = time.perf_counter()
        c0 = time.process_time()
        k = snap.index
        if self.lease is not None:  # never write once another collector took the run over
            self.lease.check()
        if k != self.meta.committed:
            raise LakeError(f"snapshot {k} submitted but {self.meta.committed} are committed")
        _wait(snap)
        vals = self._values(snap)
        stage = self._stage_timer(c0)
        stage("wait")
        local = chunk_files.local_root(self.root.store)
        views = []
        jobs: list[tuple[AsyncArray, tuple[slice, ...], np.ndarray]] = []
        direct: list[tuple[Any, tuple[chunk_files.DirectCodec, np.ndarray, tuple[int, ...], Any]]] = []
        via_zarr: list[zarr.Array] = []
        for name, arr in self._arrays.items():
            aa = arr._async_array
            value = np.asarray(vals[name])
            codec = self._direct.get(name)
            if codec is not None and value.dtype == arr.dtype:
                # encoded in the writer's threads and stored as is: the bytes zarr would write (the
                # uncommitted chunks stay invisible: the stored shape still says k snapshots)
                md, chunks = aa.metadata, aa.metadata.chunks
                for sel, part in chunk_files.chunk_parts(k, value, chunks[1:]):
                    key = md.encode_chunk_key(tuple(s.start // c for s, c in zip(sel, chunks, strict=True)))
                    target = (
                        aa.store_path / key if local is None else os.path.join(local, aa.store_path.path, key)
                    )
                    direct.append((target, (codec, part, chunks, arr.fill_value)))
                continue
            via_zarr.append(arr)
            view = AsyncArray(
                metadata=aa.metadata.update_shape((k + 1, *aa.metadata.shape[1:])),
                store_path=aa.store_path,
                # SGN chunks are never all-NaN: skip zarr's scan for empty (fill-value) chunks
                config=dataclasses.replace(aa.config, write_empty_chunks=True),
            )
            if value.ndim == 0:
                views.append(view.setitem(k, value))
            else:
                jobs.extend(
                    (view, sel, part)
                    for sel, part in chunk_files.chunk_parts(k, value, aa.metadata.chunks[1:])
                )
        # chunk-shaped C-contiguous values take zarr's no-copy path; the strided ones are copied in
        # parallel here (numpy releases the GIL) instead of one by one in zarr's event loop thread;
        # directly stored chunks are encoded (and on a local disk written) in the same threads
        pool = chunk_files.copier()
        stored = list(pool.map(chunk_files.store_chunk, direct))
        parts = list(pool.map(np.ascontiguousarray, [j[2] for j in jobs]))
        views.extend(view.setitem(sel, part) for (view, sel, _), part in zip(jobs, parts, strict=True))
        proto = default_buffer_prototype()
        views.extend(
            t.set(proto.buffer.from_bytes(b"".join(r)))
            for (t, _), r in zip(direct, stored, strict=True)
            if not isinstance(r, int)
        )
        if views:
            sync(chunk_files.gather(*views))
        del parts, jobs
        stage("chunks")
        results = getattr(snap, "results", None)
        if self.result_sink is not None and results is not None:
            self.result_sink.write(k, snap.iteration, results)
        if snap.checkpoint is not None:
            self._write_checkpoint(k, snap.iteration, snap.checkpoint)
        stage("checkpoint")
        self._grown.grow(k + 1, local)
        stage("metadata")
        with self._lock:
            # keep status and reason: a failure recorded while this commit was in flight must stay
            self.meta = self.meta.replace(committed=k + 1, updated=now())
            self._attrs.write(self.meta)
        stage("attributes")
        if self.result_sink is not None and results is not None:
            self.result_sink.commit(k + 1)
        if k >= 1:
            self.checkpoints.delete_old(local, k)
        stage("old checkpoints")
        self.bytes_raw += sum(v.nbytes for n, v in vals.items() if "/" in n)
        self.bytes_stored += sum(r if isinstance(r, int) else sum(len(b) for b in r) for r in stored)
        if via_zarr:
            self.bytes_stored += self._stored_bytes(k, via_zarr)
        stage("statistics")
        self.write_seconds.append(time.perf_counter() - t0)

    def _stage_timer(self, c0: float) -> Any:
        """A function ``stage(name)`` adding the process CPU seconds since the last call to :attr:`stage_cpu`."""
        last = [c0]

        def stage(name: str) -> None:
            t = time.process_time()
            self.stage_cpu[name] = self.stage_cpu.get(name, 0.0) + t - last[0]
            last[0] = t

        return stage

    def _write_checkpoint(self, k: int, iteration: int, data: bytes) -> None:
        """Write the checkpoint of snapshot ``k`` (see :meth:`~sgnlake.collect.run_checkpoints.RunCheckpoints.write`)."""
        self.checkpoints.write(k, iteration, data)

    def _stored_bytes(self, k: int, arrays: Sequence[zarr.Array]) -> int:
        """Bytes stored for the chunks of snapshot ``k`` of ``arrays`` (a chunk equal to the fill value counts 0)."""
        from sgnlake.schema.store import stored_bytes

        keys = [f"{a.path}/{key}" for a in arrays for key in self._chunk_keys(a, k)]
        return stored_bytes(self.root.store, keys=keys)

    # ------------------------------------------------------------------ background thread

    def _run(self) -> None:
        while True:
            snap = self._queue.get()
            try:
                if snap is None:
                    return
                if self._error is None:
                    try:
                        self.commit(snap)
                    except BaseException as e:  # noqa: BLE001 - handed to the main thread
                        self._error, self._error_index = e, snap.index
                        if isinstance(e, DivergedError):  # found here, not by the caller: the run stops
                            with contextlib.suppress(Exception):
                                self.set_status(FAILED, str(e))
            finally:
                if snap is not None:
                    release_snapshot(snap)  # its buffers first: the slot means they are free
                    self._slots.release()
                self._queue.task_done()

    def check(self) -> None:
        """Raise the writer thread's error, if any, as a one-line :class:`LakeError`.

        A :class:`~sgnlake.schema.errors.DivergedError` (a snapshot whose deferred centring
        found a non-finite gradient, see :meth:`sgnlake.collect.snapshot.Snapshot.wait`) is
        raised as such, with its own message: that snapshot was not committed, and the writer
        thread has already recorded status ``failed`` with that message.
        """
        if isinstance(self._error, DivergedError):
            raise DivergedError(str(self._error))
        if self._error is not None:
            raise LakeError(
                f"writing snapshot {self._error_index} of run {self.meta.run_id!r} failed: "
                f"{_one_line(self._error)}"
            ) from self._error

    def acquire(self) -> None:
        """Wait for a free slot before computing the next snapshot."""
        if not self._background:
            return
        while not self._slots.acquire(timeout=0.2):
            self.check()
        if self._error is not None:
            self._slots.release()
            self.check()

    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire` when no snapshot is submitted."""
        if self._background:
            self._slots.release()

    def submit(self, snap: SnapshotLike) -> None:
        """Queue ``snap`` for writing (or write it now when not in background mode).

        The writer owns ``snap`` from here: it releases it after writing, or
        at once when a writer error is raised instead.
        """
        if not self._background:
            try:
                self.commit(snap)
            finally:
                release_snapshot(snap)
            return
        try:
            self.check()
        except BaseException:
            release_snapshot(snap)
            self.release()
            raise
        self._queue.put(snap)

    def drain(self) -> None:
        """Wait until every submitted snapshot is committed; raise a writer error."""
        if self._background:
            self._queue.join()
        self.check()

    @property
    def failed(self) -> bool:
        """True when the writer thread has failed."""
        return self._error is not None

    def set_status(self, status: str, reason: str = "", **extra: Any) -> RunMeta:
        """Record ``status`` (and ``reason``, extra entries) in the run attributes."""
        with self._lock:
            ex = dict(self.meta.extra)
            ex.update(extra)
            self.meta = self.meta.replace(status=status, reason=reason, updated=now(), extra=ex)
            self._attrs.write(self.meta)
            return self.meta

    def update_meta(self, **changes: Any) -> RunMeta:
        """Replace fields of the run's metadata (not ``committed`` nor ``status``) and write them.

        Used by :class:`~sgnlake.collect.probe.Probe` to announce each snapshot
        step in ``planned_iterations`` before that snapshot is committed.
        """
        if "committed" in changes or "status" in changes:
            raise ValueError("update_meta cannot change committed or status")
        with self._lock:
            self.meta = self.meta.replace(**changes, updated=now())
            self._attrs.write(self.meta)
            return self.meta

    def close(self) -> None:
        """Stop the writer thread (after what was queued)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._thread = None
