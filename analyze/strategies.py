"""How an estimator's numpy kernel is applied to Dask arrays: streamed or per block.

Two strategies, picked per estimator by its registry entry
(:class:`sgnlake.analyze.estimators.Estimator`):

* **streamed** (:class:`Stream`, :func:`streamed`): a parameter's samples may be split
  across chunks along the core dim. The chunk boundaries are moved to the nearest
  multiple of the stream's block length (moving fewer than a block's samples each,
  :func:`aligned_chunks`), every chunk gives partial statistics, ``dask.array.reduction``
  combines them (a tree reduction) and the finalizer turns them into the estimate. When
  the core dim is one chunk (lake ``sgn`` arrays hold all minibatches of a snapshot in
  one chunk) the kernel runs on each block in its stored layout instead
  (:func:`layout_blocks`).
* **per block** (everything else): the core dim(s) are rechunked to one chunk and the
  kernel runs through ``xarray.apply_ufunc(dask="parallelized")``.

:func:`count_nonfinite` counts the samples every kernel drops, block by block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import xarray as xr

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.names import MINIBATCH


@dataclass(frozen=True)
class Stream:
    """A kernel split into chunk / combine / finalize, for samples split across chunks.

    Attributes
    ----------
    chunk : callable
        ``chunk(block, **params) -> stats`` with the statistics on a new last axis of
        length ``n_stats``; ``block`` holds a multiple of ``block_length(params)`` samples.
    combine : callable
        ``combine(stats, axis=..., keepdims=...)``: the statistics of consecutive blocks
        combined (associative, so a tree reduction gives the same result).
    finalize : callable
        ``finalize(stats, **params) -> estimate``.
    n_stats : int
        Length of the statistics axis.
    block_length : callable
        ``block_length(params)``: chunk boundaries along the core dim are multiples of it.
    used : callable
        ``used(params)``: only the first this many samples enter the estimate.
    """

    chunk: Callable[..., np.ndarray]
    combine: Callable[..., np.ndarray]
    finalize: Callable[..., np.ndarray]
    n_stats: int
    block_length: Callable[[Mapping[str, Any]], int]
    used: Callable[[Mapping[str, Any]], int]


def aligned_chunks(chunks: Sequence[int], block: int) -> tuple[int, ...]:
    """Chunk sizes of the same total whose boundaries are multiples of ``block``.

    Each inner boundary moves to the nearest multiple of ``block``; boundaries that
    collapse are merged. ``sum(chunks)`` must be a multiple of ``block``.
    """
    total = int(sum(chunks))
    bounds = np.cumsum(chunks)[:-1]
    snapped = sorted({int(round(b / block)) * block for b in bounds} - {0, total})
    edges = [0, *(b for b in snapped if 0 < b < total), total]
    return tuple(int(e) for e in np.diff(edges)) or (total,)


def _stats_block(x: np.ndarray, chunk: Callable[..., np.ndarray], params: Mapping[str, Any]) -> np.ndarray:
    return chunk(x, **params)[..., None, :]


def _combine(
    combine: Callable[..., np.ndarray], x: np.ndarray, axis: Any = None, keepdims: bool = False, **_: Any
) -> np.ndarray:
    return combine(x, axis=axis, keepdims=keepdims)


def _finalize(
    stats: np.ndarray, finalize: Callable[..., np.ndarray], params: Mapping[str, Any]
) -> np.ndarray:
    return finalize(stats, **params)


def streamed(arr: Any, stream: Stream, params: Mapping[str, Any]) -> Any:
    """The streamed estimate of a dask array with the samples on the last axis."""
    import dask.array as dsa

    block = stream.block_length(params)
    arr = arr[..., : stream.used(params)]
    arr = arr.rechunk({arr.ndim - 1: aligned_chunks(arr.chunks[-1], block)})
    nb = len(arr.chunks[-1])

    combine = partial(_combine, stream.combine)
    stats = arr.map_blocks(
        _stats_block,
        chunk=stream.chunk,
        params=dict(params),
        new_axis=arr.ndim,
        chunks=(*arr.chunks[:-1], (1,) * nb, (stream.n_stats,)),
        dtype=np.float64,
        meta=np.empty((0,) * (arr.ndim + 1), dtype=np.float64),
    )
    combined = dsa.reduction(
        stats,
        chunk=combine,
        combine=combine,
        aggregate=combine,
        axis=arr.ndim - 1,
        dtype=np.float64,
        concatenate=True,
        meta=np.empty((0,) * arr.ndim, dtype=np.float64),
    )
    return combined.map_blocks(
        _finalize,
        finalize=stream.finalize,
        params=dict(params),
        drop_axis=combined.ndim - 1,
        dtype=np.float64,
        meta=np.empty((0,) * (combined.ndim - 1), dtype=np.float64),
    )


def _kernel_block(block: np.ndarray, kernel: Callable[..., np.ndarray], kwargs: Mapping[str, Any], axis: int):
    """``kernel`` along ``axis`` of one block, the axis kept with length 1 (no copy of the block)."""
    return np.expand_dims(kernel(np.moveaxis(block, axis, -1), **kwargs), axis)


def layout_blocks(arr: Any, kernel: Callable[..., np.ndarray], kwargs: Mapping[str, Any], axis: int) -> Any:
    """``kernel`` along the last axis of ``arr`` (one chunk along it), each block in its stored layout.

    ``apply_ufunc(dask="parallelized")`` would hand every block to the kernel through
    ``dask.array.apply_gufunc``, which concatenates the core-dim chunks (here one) into a new
    C-ordered array: a transposing copy of each stored ``(1, M, P)`` chunk to ``(1, P, M)``, after
    which the kernel's reductions run along a short contiguous axis; together ~2x the CPU of the
    kernel on the stored layout (bench/alpha_throughput.py). Here xarray's core-last view is
    moved back to the input's order (``axis``: the core dim's position there), the kernel gets
    a view of each block, and its output keeps a length-1 axis (no concatenation) that is
    dropped afterwards. The kernel must return one float64 per row.
    """
    if isinstance(arr, np.ndarray):
        return kernel(arr, **kwargs)
    import dask.array as dsa

    x = dsa.moveaxis(arr, -1, axis)
    chunks = list(x.chunks)
    chunks[axis] = (1,) * len(chunks[axis])
    out = x.map_blocks(
        _kernel_block,
        kernel=kernel,
        kwargs=kwargs,
        axis=axis,
        chunks=tuple(chunks),
        dtype=np.float64,
        meta=np.empty((0,) * x.ndim, dtype=np.float64),
    )
    index: list[Any] = [slice(None)] * x.ndim
    index[axis] = 0
    return out[tuple(index)]


def _nonfinite_block(block: np.ndarray, axis: int) -> np.ndarray:
    """Non-finite samples of one block along ``axis`` (kept with length 1), as int32."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = block.sum()
    shape = list(block.shape)
    shape[axis] = 1
    if np.isfinite(total) or not np.issubdtype(block.dtype, np.floating):
        return np.zeros(shape, dtype=np.int32)  # one fast pass: a finite sum has no NaN/inf term
    return np.count_nonzero(~np.isfinite(block), axis=axis, keepdims=True).astype(np.int32)


def count_nonfinite(da: xr.DataArray, dim: str = MINIBATCH) -> xr.DataArray:
    """Number of non-finite (NaN, +-inf) samples along ``dim``, lazily when ``da`` is Dask-backed.

    The estimators drop these samples per parameter (see :mod:`sgnlake.analyze.kernels`);
    this is the count to report next to their results.

    Parameters
    ----------
    da : xarray.DataArray
        Samples, e.g. a tensor's ``sgn`` (iteration, minibatch, param).
    dim : str
        Sample dimension (default ``minibatch``).

    Returns
    -------
    xarray.DataArray
        int32 named ``n_nonfinite`` with ``da``'s dims minus ``dim`` (in their order) and
        its coordinates on them. Each block costs one summing pass when it holds no
        non-finite sample (the usual case).
    """
    if dim not in da.dims:
        raise ConfigError(
            f"dimension {dim!r} is not in the data (dims: {', '.join(map(str, da.dims))}): pass dim=..."
        )
    axis = da.get_axis_num(dim)
    data = da.data
    if isinstance(data, np.ndarray):
        counts: Any = _nonfinite_block(data, axis).squeeze(axis)
    else:
        chunks = list(data.chunks)
        chunks[axis] = (1,) * len(chunks[axis])
        per_block = data.map_blocks(
            _nonfinite_block,
            axis=axis,
            chunks=tuple(chunks),
            dtype=np.int32,
            meta=np.empty((0,) * data.ndim, dtype=np.int32),
        )
        if len(chunks[axis]) == 1:
            index: list[Any] = [slice(None)] * data.ndim
            index[axis] = 0
            counts = per_block[tuple(index)]
        else:
            counts = per_block.sum(axis=axis, dtype=np.int32)
    dims = [d for d in da.dims if d != dim]
    coords = {k: v for k, v in da.coords.items() if dim not in v.dims}
    return xr.DataArray(counts, dims=dims, coords=coords, name="n_nonfinite")
