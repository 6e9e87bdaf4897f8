"""The fused per-chunk path of :func:`sgnlake.analyze.results.compute_alpha`.

One Dask task per stored result chunk reads the ``sgn`` chunks under it, runs the
estimator's fused kernel (:attr:`sgnlake.analyze.estimators.Estimator.fused`: the
estimate and the non-finite counts from one pass) and writes both result chunks, instead
of the read -> estimate -> count -> store graph (about five tasks per stored ``sgn``
chunk). The results equal the general lazy path's (``tests/test_alpha_results.py`` pins
them for random chunkings).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import zarr

from sgnlake.schema.chunk_store import direct_codec, encode_chunk, local_root, write_atomic
from sgnlake.schema.errors import SgnlakeError
from sgnlake.schema.names import MINIBATCH, SGN

from .chunk_reader import DirectReadError
from .stored import NONFINITE

if TYPE_CHECKING:
    from .estimators import Estimator
    from .lake import Lake


class FusedTarget:
    """What every fused task of one tensor shares: the ``sgn`` reader, both result arrays, the kernel.

    A plain class (not a dataclass or container), so Dask passes it to the tasks as an
    opaque object instead of traversing it.

    Parameters
    ----------
    reader : ChunkReader
        The tensor's ``sgn`` array (iteration, minibatch, param) seen through
        :class:`sgnlake.analyze.lake.ChunkReader` (``.arr``, ``.shape``, per-chunk reads).
    out, counts : zarr.Array
        The ``(iteration, param)`` result arrays: the estimate and the non-finite counts.
    kernel : callable
        ``kernel(x, **params) -> (estimate, n_nonfinite)``, the estimator's fused kernel.
    params : dict
        Kernel parameters (the estimator's plan for M samples: K1, K2).
    step : int
        Parameters per stored ``sgn`` chunk.
    extras : dict of str to zarr.Array, optional
        Result arrays of the estimator's extra outputs; the kernel then returns them as a
        third value, a dict by name.
    """

    __slots__ = ("reader", "out", "counts", "kernel", "params", "step", "extras")

    def __init__(
        self,
        reader: Any,
        out: zarr.Array,
        counts: zarr.Array,
        kernel: Callable[..., tuple[np.ndarray, np.ndarray]],
        params: Mapping[str, Any],
        step: int,
        extras: Mapping[str, zarr.Array] | None = None,
    ) -> None:
        self.reader, self.out, self.counts = reader, out, counts
        self.kernel, self.params, self.step = kernel, dict(params), step
        self.extras = dict(extras or {})


def _read_region(reader: Any, it: int, lo: int, hi: int, step: int) -> np.ndarray:
    """``sgn[it:it+1, :, lo:hi]`` (whole stored chunks of ``step`` params): chunk files read directly, or one Zarr call.

    The caller has checked that the chunks are present (:meth:`ChunkReader.check_present`).

    On a local store with a lossless zstd/crc32c chain the chunk files are read and decoded in
    this task (:meth:`ChunkReader.read_direct`, half the CPU of Zarr's path); otherwise Zarr
    decodes the chunks of one call concurrently and pays its per-call overhead once.
    If that read fails, the chunks are read again one by one through the lake's chunk reader,
    which names the corrupt chunk (or, with ``skip_corrupt``, reads it alone as NaN and
    records it), exactly as the per-chunk Dask reads do.
    """
    m = reader.shape[1]
    sel = (slice(it, it + 1), slice(0, m), slice(lo, hi))  # its chunks' presence checked by the caller
    direct = reader.read_direct(sel)  # plain file reads + the codec, when the store and codecs allow
    if direct is not None:
        return direct
    try:
        return np.asarray(reader.arr[it : it + 1, :, lo:hi])
    except Exception as e:
        if isinstance(e, SgnlakeError):
            raise
    parts = [
        reader[(slice(it, it + 1), slice(0, m), slice(j, min(j + step, hi)))] for j in range(lo, hi, step)
    ]
    return np.concatenate(parts, axis=-1)


def _estimate_by_chunk(target: FusedTarget, it: int, lo: int, hi: int) -> tuple[Any, ...] | None:
    """The kernel's outputs over params ``lo:hi``, run on each stored chunk as it is decoded; None when
    the chunk files cannot all be read directly (the caller then reads the region through Zarr).

    Each chunk's samples reach the kernel as a (1, w, M) view of the decoded (M, w) chunk, the
    stored layout the region path hands over too; the kernel's values of a parameter depend on
    its own samples only, so the outputs, joined along params, are the region path's.
    """
    chunks = target.reader.direct_chunks(it, lo, hi)
    if chunks is None:
        return None
    parts = []
    try:
        for chunk in chunks:
            parts.append(target.kernel(chunk.T[None], **target.params))
    except DirectReadError:
        return None
    if len(parts) == 1:
        return parts[0]
    joined: list[Any] = [np.concatenate([p[i] for p in parts], axis=-1) for i in range(2)]
    if len(parts[0]) > 2:
        joined.append({k: np.concatenate([p[2][k] for p in parts], axis=-1) for k in parts[0][2]})
    return tuple(joined)


def fused_chunk(target: FusedTarget, it: int, lo: int, hi: int) -> int:
    """Read the stored ``sgn`` chunks of snapshot ``it`` over params ``lo:hi``, estimate, write both results.

    The samples reach the fused kernel as a view in their stored layout, as
    :func:`sgnlake.analyze.estimators.estimate` hands them to the estimator's kernel: on a
    local store with the plain lossless chain chunk by chunk as each is decoded
    (:func:`_estimate_by_chunk`, no copy into a region array), otherwise on the region read
    at once (:func:`_read_region`). Returns the number of non-finite samples.
    """
    # a missing chunk raises (or, with skip_corrupt, is recorded and read below as NaN fill)
    present = target.reader.check_present(
        (slice(it, it + 1), slice(0, target.reader.shape[1]), slice(lo, hi))
    )
    res = _estimate_by_chunk(target, it, lo, hi) if present else None
    if res is None:
        block = _read_region(target.reader, it, lo, hi, target.step)
        x = np.moveaxis(block, 1, -1)  # (1, p, M) view of the stored (1, M, p) layout
        res = target.kernel(x, **target.params)
    est, bad, *more = res
    counts = np.asarray(bad).astype(np.int32)
    write_chunk(target.out, it, lo, hi, est)
    write_chunk(target.counts, it, lo, hi, counts)
    for name, arr in target.extras.items():
        write_chunk(arr, it, lo, hi, more[0][name])
    return int(counts.sum(dtype=np.int64))


def write_chunk(arr: zarr.Array, it: int, lo: int, hi: int, values: Any) -> None:
    """``arr[it, lo:hi] = values`` where ``lo:hi`` is one whole stored chunk of a (iteration, param) array.

    On a writable local store with the plain lossless chain
    (:func:`sgnlake.schema.chunk_store.direct_codec`), the chunk is encoded here as Zarr encodes
    it (:func:`~sgnlake.schema.chunk_store.encode_chunk`: the edge chunk padded with the fill
    value) and written as one file through a temporary file and a rename
    (:func:`~sgnlake.schema.chunk_store.write_atomic`), as Zarr's local store writes; otherwise
    through Zarr.
    """
    v = np.asarray(values).reshape(1, hi - lo).astype(arr.dtype, copy=False)
    path = _direct_chunk_path(arr, it, lo, hi)
    codec = direct_codec(arr) if path is not None else None
    if codec is None:
        arr[it : it + 1, lo:hi] = v
        return
    write_atomic(path, b"".join(encode_chunk(codec, v, tuple(arr.chunks), arr.metadata.fill_value)))


def _direct_chunk_path(arr: zarr.Array, it: int, lo: int, hi: int) -> str | None:
    """File of chunk ``(it, lo // chunk)`` when :func:`write_chunk` may write it directly, else None."""
    root = local_root(arr.store)
    if root is None or arr.chunks[0] != 1 or arr.ndim != 2:
        return None
    rc = arr.chunks[1]
    if lo % rc or not (hi - lo == rc or (hi == arr.shape[1] and hi - lo < rc)):
        return None
    return os.path.join(root, arr.path, arr.metadata.encode_chunk_key((it, lo // rc)))


def tensor_tasks(target: FusedTarget, start: int, n: int) -> list[Any] | None:
    """Delayed :func:`fused_chunk` tasks over snapshots ``start:n``, one per result chunk.

    None when the layout does not allow them: the ``sgn`` array must hold all minibatches
    in one chunk, and every result chunk must cover whole ``sgn`` chunks, in both results
    alike (no two tasks write one chunk).
    """
    arr, out, counts = target.reader.arr, target.out, target.counts
    m, numel, pc = arr.shape[1], arr.shape[2], target.step
    rc = out.chunks[1]
    if arr.chunks[1] != m or (rc % pc and rc < numel) or counts.chunks[1] != rc:
        return None
    if any(e.chunks[1] != rc for e in target.extras.values()):
        return None
    task = dask.delayed(fused_chunk, pure=False)
    return [task(target, it, lo, min(lo + rc, numel)) for it in range(start, n) for lo in range(0, numel, rc)]


def fused_tasks(
    lake: Lake,
    run: str,
    spec: Estimator,
    settings: Mapping[str, Any],
    arrays: Mapping[str, Mapping[str, zarr.Array]],
    start: int,
    n: int,
) -> list[Any] | None:
    """The fused tasks of every tensor of ``run`` (see :func:`tensor_tasks`), or None when not applicable.

    ``arrays`` holds each tensor's result arrays by output name (as the caller created them).
    None when the estimator has no fused kernel or a tensor's layout does not allow it;
    the caller then stores the general lazy graph.
    """
    if spec.fused is None:
        return None
    from .lake import ChunkReader

    tasks: list[Any] = []
    iterations = lake.iterations(run)
    for info in lake.meta(run).tensors:
        arr = lake.root[f"runs/{run}/{info.name}/{SGN}"]
        params = spec.plan((arr.shape[1],), (MINIBATCH,), settings)
        reader = ChunkReader(arr, run, info.name, SGN, iterations, lake.skip_corrupt, lake.corrupt_chunks)
        outs = arrays[info.name]
        extras = {e.name: outs[e.name] for e in spec.extras}
        target = FusedTarget(
            reader, outs[spec.output_name], outs[NONFINITE], spec.fused, params, arr.chunks[2], extras
        )
        more = tensor_tasks(target, start, n)
        if more is None:
            return None
        tasks += more
    return tasks
