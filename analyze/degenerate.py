"""Degenerate (sparse) parameters: distinct values, the largest sample's share, the sparse flag (issue 13)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .sample_checks import FloatArray

#: A parameter is *sparse* (degenerate) when its distinct finite non-zero SGN values number
#: fewer than this fraction of its finite samples: then one value (a point mass, e.g. the
#: constant SGN of an input pixel that is zero in most minibatches) holds about half the
#: samples or more, the law is far from the continuous stable law the estimators assume,
#: and the Mohammadi estimate is pulled to alpha = 1 (an exactly constant sample gives
#: 1/alpha = log(K1 c)/log K1 - log(c)/log K1 = 1). Validated on planted cases in
#: :func:`sgnlake.analyze.validation.sparse_validation`.
SPARSE_DISTINCT_FRACTION = 0.5


#: Rows of :func:`_pairwise_abs_sum` emulate numpy's pairwise float64 sum up to this many samples
#: (checked bitwise against ``np.abs(x).sum(axis=-1, dtype=np.float64)`` by the tests); longer
#: rows are summed by numpy itself, row by row.
_PAIRWISE_MAX = 4096


def _pairwise_abs_sum(cols: NDArray[Any]) -> FloatArray:
    """numpy's ``sum(dtype=float64)`` of every column of ``cols`` (shape (n, b), float32/64), bit for bit.

    numpy sums a row of n <= 8192 float64 values as ``0 + pairwise(row)``: below 8 values
    one after the other; up to 128 in eight interleaved partial sums combined as
    ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))`` plus the tail in order; above,
    the two halves (the first a multiple of 8 long) recursively. The same additions done
    on whole rows of the (n, b) column layout vectorise across the b parameters instead
    of paying numpy's per-row reduction overhead on short rows.
    """
    n = cols.shape[0]
    if n < 8:
        total = np.zeros(cols.shape[1])
        for i in range(n):
            total += cols[i]
        return total
    if n <= 128:
        r = cols[:8].astype(np.float64)  # float64 partial sums of float32 or float64 samples
        stop = n - n % 8
        for i in range(8, stop, 8):
            r += cols[i : i + 8]
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for i in range(stop, n):
            total += cols[i]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_abs_sum(cols[:half]) + _pairwise_abs_sum(cols[half:])


#: Parameters per block of :func:`_sparse_parts`: about this many bytes of samples (a block's
#: buffers, about 2.5x this, stay in a 2 MiB L2 or the L3; bigger blocks than the 512 KiB of
#: before cost no speed on one thread and halve the per-block Python work held under the GIL).
_SPARSE_BLOCK_BYTES = 1 << 20


def _even_step(p: int, step: int) -> int:
    """The block length that splits ``p`` parameters into as many blocks as ``step`` does, evenly."""
    if p <= step:
        return max(1, p)
    return -(-p // -(-p // step))


class _Known:
    """Per-parameter facts a caller may already have (the Mohammadi kernel's statistics), each optional.

    ``n_finite``: finite samples; ``n_valid``: finite non-zero samples; ``lo``, ``hi``: minimum
    and maximum of the finite samples (+inf, -inf when none is finite); all over every sample.
    """

    __slots__ = ("n_finite", "n_valid", "lo", "hi")

    def __init__(self, n_finite: Any = None, n_valid: Any = None, lo: Any = None, hi: Any = None) -> None:
        self.n_finite, self.n_valid, self.lo, self.hi = n_finite, n_valid, lo, hi

    def flat(self, p: int) -> _Known:
        """The same facts as flat (p,) arrays."""
        return _Known(*(None if v is None else np.asarray(v).reshape(p) for v in self._values()))

    def part(self, i: int, j: int) -> _Known:
        """The facts of parameters ``i:j``."""
        return _Known(*(None if v is None else v[i:j] for v in self._values()))

    def _values(self) -> tuple[Any, Any, Any, Any]:
        return self.n_finite, self.n_valid, self.lo, self.hi


def _sparse_block(
    cols: NDArray[Any], keys: NDArray[Any], known: _Known
) -> tuple[NDArray[np.int32], FloatArray, NDArray[np.bool_]]:
    """``(n_distinct, max_share, sparse)`` of the b parameters of one block.

    ``cols`` holds the samples as (n, b) (a parameter per column) and ``keys`` the same
    samples as C-contiguous (b, n) rows; both are scratch and are overwritten. ``known``
    holds what the caller already computed.

    Distinct values are counted on the samples' bit patterns: two finite non-zero floats
    are equal exactly when their bits are (only +0 and -0 differ in bits, and zeros are
    left out), so each parameter's row is sorted as integers, in place and cache-resident,
    with the left-out samples (zero, NaN, +-inf) all set to the bits of -0.0, the smallest
    integer, so that they form one run at the start of the row.
    """
    n, b = cols.shape
    n_finite = known.n_finite
    all_finite = n_finite is not None and bool((np.asarray(n_finite) == n).all())
    finite = None
    if not all_finite:
        finite = np.isfinite(cols)
        all_finite = bool(finite.all())
        if n_finite is None:
            n_finite = np.full(b, n) if all_finite else np.add.reduce(finite, axis=0, dtype=np.intp)
    lo, hi = known.lo, known.hi
    if lo is None or hi is None:
        if all_finite:
            lo, hi = cols.min(axis=0), cols.max(axis=0)
        else:
            lo = np.where(finite, cols, np.inf).min(axis=0, initial=np.inf)
            hi = np.where(finite, cols, -np.inf).max(axis=0, initial=-np.inf)
    dead = ~(lo < hi)
    # max_share: the largest |x| is max(-lo, hi) over the finite samples (0 when there are none)
    amax = np.maximum(np.maximum(-np.asarray(lo, np.float64), hi), 0.0)
    np.abs(cols, out=cols)
    if not all_finite:
        cols[~finite] = 0
    total = (
        _pairwise_abs_sum(cols)
        if n <= _PAIRWISE_MAX
        else np.ascontiguousarray(cols.T).sum(axis=-1, dtype=np.float64)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, amax / total, np.nan)
    n_valid = known.n_valid
    if n_valid is not None and not bool((np.asarray(n_valid) > 0).all()):
        # a parameter with no finite non-zero sample (a dead unit, a border pixel) has no distinct
        # value: its row is not sorted; the others are packed (whole contiguous rows, a cheap copy)
        has = np.flatnonzero(np.asarray(n_valid) > 0)
        nd = np.zeros(b, dtype=np.int32)
        if has.size:
            nd[has] = _distinct_rows(keys[has], np.asarray(n_valid)[has], all_finite)
    else:
        nd = _distinct_rows(keys, n_valid, all_finite)
    sparse = (nd < SPARSE_DISTINCT_FRACTION * np.asarray(n_finite)) & ~dead
    return nd, share, sparse


def _distinct_rows(keys: NDArray[Any], n_valid: Any, all_finite: bool) -> NDArray[np.int32]:
    """Distinct finite non-zero values of each row of ``keys`` (C-contiguous (b, n), scratch: sorted in place).

    ``n_valid``: finite non-zero samples per row when known (else counted here);
    ``all_finite``: no row holds a non-finite sample.
    """
    b, n = keys.shape
    # n_distinct: sort each parameter's bit patterns, count the values equal to their left neighbour
    ints = keys.view(np.int32 if keys.dtype.itemsize == 4 else np.int64)
    sentinel = np.iinfo(ints.dtype).min  # the bits of -0.0
    left_out = n_valid is None or not bool((np.asarray(n_valid) == n).all())
    if left_out:
        mask = keys == 0
        if not all_finite:
            mask |= ~np.isfinite(keys)
        np.copyto(ints, sentinel, where=mask)
        if n_valid is None:
            n_valid = n - np.add.reduce(mask, axis=-1, dtype=np.intp)
    ints.sort(axis=-1)
    # distinct values = valid samples - valid samples equal to their left neighbour (the run of
    # left-out samples at the row start is skipped: it holds no value and may be long, e.g. a dead unit)
    nd = np.asarray(n_valid if left_out else np.full(b, n), dtype=np.int32).copy()
    if n > 1:
        line = ints.reshape(-1)
        tie = np.zeros(b * n, dtype=bool)  # tie[i]: sample i equals sample i + 1 of the same row
        np.equal(line[1:], line[:-1], out=tie[:-1])
        if left_out:
            tie[:-1] &= line[1:] != sentinel
        rows = tie.reshape(b, n)
        rows[:, -1] = False  # the pair across a row end
        n_ties = int(np.count_nonzero(tie))
        if n_ties > b // 4:  # many ties (constant or sparse parameters): count them row by row
            nd -= rows.view(np.uint8).sum(axis=1, dtype=np.int32)
        elif n_ties:  # few: count where they are
            nd -= np.bincount(np.flatnonzero(tie) // n, minlength=b).astype(np.int32)
    return nd


def _sparse_parts(
    x: ArrayLike, known: _Known | None = None
) -> tuple[NDArray[np.int32], FloatArray, NDArray[np.bool_]]:
    """``(n_distinct, max_share, sparse)`` per parameter of ``x`` (shape (..., n)), in cache-sized blocks.

    ``x`` is read in place in either layout: rows of samples (C order), or the lake's stored
    (minibatch, param) layout seen as (param, minibatch) through ``np.moveaxis``. A block of
    parameters is copied into an (n, b) buffer (the column-wise sums and extremes vectorise
    across parameters there) whose rows are padded so that the transposing copy into (b, n)
    rows for the sort never walks a power-of-two stride (which thrashes the cache).
    ``known`` (shaped like ``x.shape[:-1]``) holds facts the caller has computed.
    """
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    lead, n = a.shape[:-1], a.shape[-1]
    p = math.prod(lead)
    nd = np.zeros(p, dtype=np.int32)
    share = np.full(p, np.nan)
    sparse = np.zeros(p, dtype=bool)
    if not n or not p:
        return nd.reshape(lead), share.reshape(lead), sparse.reshape(lead)
    flat = a.reshape(p, n)  # a copy only for inputs neither row- nor column-contiguous
    kn = (known or _Known()).flat(p)
    step = _even_step(p, max(8, _SPARSE_BLOCK_BYTES // (n * a.dtype.itemsize)))
    stage = np.empty((n, step + 16), dtype=a.dtype)  # padded: rows never a power of two apart
    keys = np.empty((step, n), dtype=a.dtype)
    for i in range(0, p, step):
        j = min(i + step, p)
        cols = stage[:, : j - i]
        np.copyto(cols, flat[i:j].T)
        np.copyto(keys[: j - i], cols.T)
        nd[i:j], share[i:j], sparse[i:j] = _sparse_block(cols, keys[: j - i], kn.part(i, j))
    return nd.reshape(lead), share.reshape(lead), sparse.reshape(lead)


def n_distinct(x: ArrayLike) -> NDArray[np.int32]:
    """Number of distinct finite non-zero values along the last axis.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.

    Returns
    -------
    numpy.ndarray of int32, shape (...)
        Distinct values among the finite, non-zero samples (0 for an all-zero parameter).
    """
    return _sparse_parts(x)[0]


def max_share(x: ArrayLike) -> FloatArray:
    """The largest sample's share of the sum of ``|x|`` over the finite samples.

    Returns
    -------
    numpy.ndarray of float64, shape (...)
        ``max |x| / sum |x|`` in (0, 1]; NaN when every finite sample is 0 (or none is finite).
        A diagnostic, not part of the sparse rule: for a stable law with alpha < 1 the
        largest sample carries a large share of the sum by itself.
    """
    return _sparse_parts(x)[1]


def sparse_mask(x: ArrayLike) -> NDArray[np.bool_]:
    """True for degenerate parameters: few distinct non-zero values (see :data:`SPARSE_DISTINCT_FRACTION`).

    Dead parameters (:func:`dead_mask`) are not sparse: they have no estimate at all.
    """
    return _sparse_parts(x)[2]


def sparse_outputs(
    x: ArrayLike,
    n_finite: ArrayLike | None = None,
    lo_hi: tuple[ArrayLike, ArrayLike] | None = None,
    n_valid: ArrayLike | None = None,
) -> dict[str, NDArray[Any]]:
    """The stored degeneracy outputs: ``n_distinct`` (int32), ``max_share`` (float32), ``sparse`` (int8).

    One pass (one sort per parameter) for all three; :func:`n_distinct`, :func:`max_share`
    and :func:`sparse_mask` give the same values one at a time.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis (C order, or the stored (minibatch, param) layout seen
        through ``np.moveaxis``).
    n_finite : array_like, shape (...), optional
        Finite samples per parameter, when the caller has counted them.
    lo_hi : (array_like, array_like), optional
        Minimum and maximum of each parameter's finite samples over all n samples
        (+inf, -inf when none is finite), when the caller has them.
    n_valid : array_like, shape (...), optional
        Finite non-zero samples per parameter, when the caller has counted them.
    """
    nd, share, sparse = _sparse_parts(x, _Known(n_finite, n_valid, *(lo_hi or (None, None))))
    return {"n_distinct": nd, "max_share": share.astype(np.float32), "sparse": sparse.astype(np.int8)}
