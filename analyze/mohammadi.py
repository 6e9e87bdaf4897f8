"""Mohammadi et al. (2015) tail-index estimators (Simsekli et al. 2019): streaming statistics, the fused
per-chunk kernels, and the pooled and multivariate variants."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .degenerate import _even_step, sparse_outputs
from .k1_rules import DEFAULT_K1, choose_k1
from .sample_checks import FloatArray, _f64, _sum_log_abs, count_nonfinite

#: Number of partial statistics returned by :func:`mohammadi_chunk`.
N_MOHAMMADI_STATS = 7


def mohammadi_chunk(x_block: ArrayLike, k1: int, k2: int | None = None) -> FloatArray:
    """Partial statistics of the Mohammadi estimator for one block of samples.

    The block holds consecutive samples (last axis) whose first sample starts a
    K1-block, so that the Y sums never straddle two blocks.

    Parameters
    ----------
    x_block : array_like, shape (..., m)
        Samples on the last axis, any float dtype.
    k1 : int
        Block length K1 (>= 1).
    k2 : int, optional
        Use only the first ``k1*k2`` samples of the block (for a whole-sample
        call with :func:`choose_k1`'s K2). If None, ``m`` must be a multiple of
        ``k1``.

    Returns
    -------
    numpy.ndarray, shape (..., 7)
        ``[sum log|Y|, #Y != 0, sum log|X|, #X != 0, #non-finite, min X, max X]``
        where X are the samples used and Y the sums of K1 consecutive samples.
        Exact zeros (in X or Y) are left out of the log sums and counts: for a
        continuous law P(X = 0) = 0, so dropping them does not change what is
        estimated, while a single log|0| = -inf would wipe out the parameter.
        Non-finite samples are dropped the same way: a non-finite X is left out
        of the X sums, and a K1 block that contains one is left out of the Y
        sums (its sum is undefined); they are counted in ``#non-finite``.
        min/max are over the finite samples (a parameter with fewer than two
        distinct finite samples is dead, NaN in :func:`mohammadi_finalize`).
        Since blocks never straddle two calls, the statistics of consecutive
        blocks combine (:func:`mohammadi_combine`) to those of the whole sample.

    Raises
    ------
    ValueError
        ``m`` is not a multiple of ``k1`` (k2 None) or smaller than ``k1*k2``.
    """
    x = np.asarray(x_block)
    k1 = int(k1)
    if k1 < 1:
        raise ValueError(f"k1 must be >= 1, got {k1}")
    m = x.shape[-1]
    if k2 is None:
        if m % k1:
            raise ValueError(f"block of {m} samples is not a multiple of K1 = {k1}: align blocks to K1")
        k2 = m // k1
    elif m < k1 * k2:
        raise ValueError(f"block of {m} samples is shorter than K1*K2 = {k1 * k2}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    lead = x.shape[:-1]
    rows = x.reshape(-1, m)
    stats = np.empty((rows.shape[0], N_MOHAMMADI_STATS))
    # Rows in blocks of ~4 MB of float64 temporaries (L2/L3-resident, ~1.5x faster than
    # whole-array passes on large inputs), split evenly: no short tail block paying the
    # per-block Python overhead (held under the GIL) for a few rows.
    step = _even_step(rows.shape[0], max(1, _BLOCK_ELEMENTS // max(1, m)))
    for i in range(0, rows.shape[0], step):
        stats[i : i + step] = _mohammadi_rows(rows[i : i + step, : k1 * k2], k1, k2)
    return stats.reshape(*lead, N_MOHAMMADI_STATS)


_BLOCK_ELEMENTS = 1 << 19


#: float32 samples per float64 product in :func:`_sum_log_abs_fast`: |x| of a float32 lies in
#: [1.4e-45, 3.4e38], so a product of 4 lies in [3.8e-180, 1.4e154], always a normal float64.
_LOG_GROUP = 4


def _sum_log_abs_fast(a: NDArray[Any]) -> FloatArray:
    """``sum(log|a|)`` along the last axis, in float64; not finite when ``a`` holds a zero or non-finite.

    float32 samples are multiplied in float64 in groups of :data:`_LOG_GROUP` (the
    product of four float32 is a normal float64, never over- or underflowing, with
    a relative rounding error <= 3 ulp), so only a quarter of the logs are taken:
    the log is the kernel's dominant cost. float64 samples take one log each.
    """
    n = a.shape[-1]
    if a.dtype != np.float32 or n < _LOG_GROUP:
        logx = np.abs(a, dtype=np.float64)
        np.log(logx, out=logx)
        return logx.sum(axis=-1)
    full = n - n % _LOG_GROUP
    g = a[:, :full].reshape(a.shape[0], full // _LOG_GROUP, _LOG_GROUP)
    prod = np.multiply(g[..., 0], g[..., 1], dtype=np.float64)
    for j in range(2, _LOG_GROUP):
        np.multiply(prod, g[..., j], out=prod)
    np.abs(prod, out=prod)
    np.log(prod, out=prod)
    total = prod.sum(axis=-1)
    if full < n:
        rest = np.abs(a[:, full:], dtype=np.float64)
        total += np.log(rest, out=rest).sum(axis=-1)
    return total


def _mohammadi_rows(a: NDArray[Any], k1: int, k2: int) -> FloatArray:
    """:func:`mohammadi_chunk` statistics of rows ``a`` (shape (p, k1*k2), float32/64)."""
    # Fast path: float64 |x| straight from the input dtype, log in place; a row
    # whose log sums are not finite holds a zero or a non-finite sample and is
    # redone with masks.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slx = _sum_log_abs_fast(a)
        y = a.reshape(a.shape[0], k2, k1).sum(axis=-1, dtype=np.float64)
        sly = np.log(np.abs(y)).sum(axis=-1)
    stats = np.empty((a.shape[0], N_MOHAMMADI_STATS))
    stats[:, 0] = sly
    stats[:, 1] = k2
    stats[:, 2] = slx
    stats[:, 3] = k1 * k2
    stats[:, 4] = 0.0
    if k1 * k2 > 0:
        stats[:, 5] = a.min(axis=-1)
        stats[:, 6] = a.max(axis=-1)
    else:
        stats[:, 5] = np.inf
        stats[:, 6] = -np.inf
    redo = ~(np.isfinite(slx) & np.isfinite(sly))
    if redo.any() and k1 * k2 > 0:
        # all-zero rows (a dead unit, a border pixel's weights): min = max = 0. The masked path
        # gives them exactly +0.0 sums and counts (no non-zero X or Y, nothing non-finite) and
        # the same min and max up to the sign of zero, which no output reads (only lo < hi).
        zero = redo & (stats[:, 5] == 0) & (stats[:, 6] == 0)
        if zero.any():
            stats[zero, :5] = 0.0
            redo &= ~zero
    if redo.any():
        idx = np.flatnonzero(redo)
        if a.ndim == 2 and a.strides[-1] != a.itemsize:
            # the stored (M, P) layout seen as (P, M): gather the columns of its rows (sequential
            # reads) instead of rows whose samples lie a whole stored row apart (cache-hostile)
            sub = np.ascontiguousarray(a.T[:, idx].T, dtype=np.float64)
        else:
            sub = _f64(a[idx])
        stats[idx] = _mohammadi_chunk_masked(sub, k1, k2)
    return stats


def _mohammadi_chunk_masked(a: FloatArray, k1: int, k2: int) -> FloatArray:
    """:func:`mohammadi_chunk` for rows (shape (p, k1*k2)) with zeros or non-finite samples.

    A non-finite sample is set to 0, which :func:`_sum_log_abs` leaves out of the X sums;
    a block holding one (or whose sum overflows) gets Y = 0, left out of the Y sums.
    """
    finite = np.isfinite(a)
    if a.size and finite.all():  # zeros only (the common case: exact zeros in real SGN): no masks needed
        n_bad = np.zeros(a.shape[0])
        lo, hi = a.min(axis=-1), a.max(axis=-1)
        clean = a
        with np.errstate(over="ignore", invalid="ignore"):
            y = clean.reshape(a.shape[0], k2, k1).sum(axis=-1)
        block_ok = np.isfinite(y)
    else:
        n_bad = np.count_nonzero(~finite, axis=-1).astype(np.float64)
        lo = np.where(finite, a, np.inf).min(axis=-1, initial=np.inf)
        hi = np.where(finite, a, -np.inf).max(axis=-1, initial=-np.inf)
        clean = np.where(finite, a, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            y = clean.reshape(a.shape[0], k2, k1).sum(axis=-1)
        block_ok = finite.reshape(a.shape[0], k2, k1).all(axis=-1) & np.isfinite(y)
    y = np.where(block_ok, y, 0.0)
    sly, ny = _sum_log_abs(y)
    slx, nx = _sum_log_abs(clean)
    return np.stack([sly, ny, slx, nx, n_bad, lo, hi], axis=-1)


def mohammadi_combine(
    parts: ArrayLike | Sequence[ArrayLike], axis: int | tuple[int, ...] = 0, keepdims: bool = False
) -> FloatArray:
    """Combine partial statistics of :func:`mohammadi_chunk` (sums, min, max).

    Parameters
    ----------
    parts : array_like or sequence of array_like
        Partial statistics with the 7 statistics on the last axis. A sequence
        is stacked along a new axis 0 first.
    axis : int or tuple of int
        Axis (axes) along which to combine; must not be the last axis.
    keepdims : bool
        Keep the combined axes with length 1 (for ``dask.array.reduction``).

    Returns
    -------
    numpy.ndarray
        Combined statistics, last axis of length 7.
    """
    if isinstance(parts, (list, tuple)):
        p = np.stack([_f64(q) for q in parts], axis=0)
    else:
        p = _f64(parts)
    axes = tuple(np.atleast_1d(axis).tolist())
    axes = tuple(ax % p.ndim for ax in axes)
    if p.ndim - 1 in axes:
        raise ValueError("cannot combine along the statistics axis (the last one)")
    sums = p[..., :5].sum(axis=axes, keepdims=keepdims)
    lo = p[..., 5:6].min(axis=axes, keepdims=keepdims, initial=np.inf)
    hi = p[..., 6:7].max(axis=axes, keepdims=keepdims, initial=-np.inf)
    return np.concatenate([sums, lo, hi], axis=-1)


def mohammadi_finalize(stats: ArrayLike, k1: int, inverse: bool = False) -> FloatArray:
    """Turn combined Mohammadi statistics into alpha (or 1/alpha).

    Parameters
    ----------
    stats : array_like, shape (..., 7)
        Output of :func:`mohammadi_chunk` / :func:`mohammadi_combine`.
    k1 : int
        Block length K1 used for the statistics.
    inverse : bool
        Return ``1/alpha = (mean log|Y| - mean log|X|) / log K1`` instead.

    Returns
    -------
    numpy.ndarray, shape (...)
        alpha = 1 / (1/alpha), from the finite samples (non-finite ones and
        the K1 blocks holding them are dropped, see :func:`mohammadi_chunk`).
        NaN for dead parameters (fewer than two distinct finite samples), for
        no non-zero finite X or Y, and for K1 = 1. When the estimate of 1/alpha is <= 0
        (possible only for very few, light-tailed samples) alpha is +inf: it is
        flagged by ``n_gt2`` in :func:`sgnlake.analyze.aggregate.group_stats`, never clipped; 1/alpha
        (``inverse=True``) is returned as is.
    """
    s = _f64(stats)
    sly, ny, slx, nx, nbad, lo, hi = np.moveaxis(s, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (sly / ny - slx / nx) / math.log(k1) if k1 > 1 else np.full(sly.shape, np.nan)
        bad = (nx == 0) | (ny == 0) | ~(lo < hi)
        inv = np.where(bad, np.nan, inv)
    if inverse:
        return np.asarray(inv, dtype=np.float64)
    return alpha_of_inv(inv)


def alpha_of_inv(inv: ArrayLike) -> FloatArray:
    """alpha from the Mohammadi estimate of 1/alpha: ``1/inv``, +inf where ``inv <= 0``, NaN kept.

    The one rule (used by :func:`mohammadi_finalize` and the fused outputs). The paper's
    code returns ``1/inv`` as is (a negative alpha); the stored ``inv_alpha`` keeps it, so
    the paper's mean is ``mean(1/inv_alpha)`` (see :mod:`sgnlake.analyze.aggregate`).
    """
    v = _f64(inv)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(v > 0, 1.0 / np.where(v > 0, v, 1.0), np.inf)
    return np.where(np.isnan(v), np.nan, alpha).astype(np.float64)


def mohammadi_counted(
    x: ArrayLike, k1: int, k2: int, inverse: bool = False
) -> tuple[FloatArray, NDArray[np.int64]]:
    """Mohammadi alpha (or 1/alpha) and the non-finite sample count from one pass over ``x``.

    The one Mohammadi kernel: :func:`mohammadi`, :func:`mohammadi_inv` and the fused
    per-chunk path of :func:`sgnlake.analyze.results.compute_alpha` all end here.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis (a strided view is fine: rows are read in place).
    k1, k2 : int
        Block length and block count (:func:`choose_k1`); the first ``k1*k2`` samples are used.
    inverse : bool
        Return 1/alpha instead of alpha (see :func:`mohammadi_finalize`).

    Returns
    -------
    estimate : numpy.ndarray of float64, shape (...)
        ``mohammadi_finalize(mohammadi_chunk(x, k1, k2), k1, inverse)``.
    n_nonfinite : numpy.ndarray of int64, shape (...)
        :func:`count_nonfinite` of ``x`` (samples past ``k1*k2`` included), taken from
        the kernel's own statistic instead of a second pass.
    """
    a = np.asarray(x)
    stats, bad = _stats_counted(a, k1, k2)
    return mohammadi_finalize(stats, k1, inverse=inverse), bad


def _stats_counted(a: NDArray[Any], k1: int, k2: int) -> tuple[FloatArray, NDArray[np.int64]]:
    """:func:`mohammadi_chunk` statistics of ``a`` and its non-finite counts over all samples."""
    stats = mohammadi_chunk(a, k1, k2)
    bad = stats[..., 4].astype(np.int64)
    used = int(k1) * int(k2)
    if used < a.shape[-1]:
        bad = bad + count_nonfinite(a[..., used:])
    return stats, bad


def mohammadi_outputs(x: ArrayLike, k1: int, k2: int) -> tuple[FloatArray, NDArray[np.int64], dict[str, Any]]:
    """The fused Mohammadi kernel with every stored output, from one statistics pass.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.
    k1, k2 : int
        Block length and count (:func:`choose_k1`).

    Returns
    -------
    alpha : numpy.ndarray of float64, shape (...)
        As :func:`mohammadi_counted`.
    n_nonfinite : numpy.ndarray of int64, shape (...)
        As :func:`mohammadi_counted`.
    extras : dict of str to numpy.ndarray
        ``inv_alpha`` (the estimate of 1/alpha, negatives kept, :func:`mohammadi_finalize`
        with ``inverse=True``) and the degeneracy outputs of :func:`sparse_outputs`.
    """
    a = np.asarray(x)
    stats, bad = _stats_counted(a, k1, k2)
    inv = mohammadi_finalize(stats, k1, inverse=True)
    n = a.shape[-1]
    if int(k1) * int(k2) == n and a.dtype in (np.float32, np.float64):
        # the kernel's statistics cover every sample: finite counts, finite min and max are shared
        extras = sparse_outputs(a, n - bad, (stats[..., 5], stats[..., 6]), stats[..., 3])
    else:
        extras = sparse_outputs(a)
    return alpha_of_inv(inv), bad, {"inv_alpha": inv, **extras}


def mohammadi(x: ArrayLike, k1: str | int = DEFAULT_K1) -> FloatArray:
    """Mohammadi et al. (2015) tail-index estimator per parameter.

    With K = K1*K2 samples X_1..X_K (the first K of the last axis) and
    Y_i = X_{(i-1)K1+1} + ... + X_{iK1}:
    ``1/alpha = (mean_i log|Y_i| - mean_j log|X_j|) / log K1``.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis (e.g. the M SGN values of each parameter).
    k1 : {"paper", "simsekli", "sqrt"} or int
        K1 rule, see :func:`choose_k1`.

    Returns
    -------
    numpy.ndarray of float64, shape (...)
        alpha from the finite samples; NaN for dead parameters (see
        :func:`mohammadi_chunk` and :func:`mohammadi_finalize`).
        Unlike Simsekli's code (``log(|x| + 2.2e-16)``), exact zeros are left out
        of the log means (see :func:`mohammadi_chunk`), which keeps the estimate
        scale invariant.
    """
    a = np.asarray(x)
    kk1, kk2 = choose_k1(a.shape[-1], k1)
    return mohammadi_finalize(mohammadi_chunk(a, kk1, kk2), kk1)


def mohammadi_inv(x: ArrayLike, k1: str | int = DEFAULT_K1) -> FloatArray:
    """1/alpha of the Mohammadi estimator (nearly unbiased; average this, not alpha).

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.
    k1 : {"paper", "simsekli", "sqrt"} or int
        K1 rule, see :func:`choose_k1`.

    Returns
    -------
    numpy.ndarray of float64, shape (...)
        1/alpha (may be <= 0 for tiny samples) from the finite samples; NaN for
        dead parameters.
    """
    a = np.asarray(x)
    kk1, kk2 = choose_k1(a.shape[-1], k1)
    return mohammadi_finalize(mohammadi_chunk(a, kk1, kk2), kk1, inverse=True)


def pooled(x: ArrayLike, k1: str | int = DEFAULT_K1, axis: int | Sequence[int] | None = None) -> Any:
    """Mohammadi estimator with all coordinates of a block pooled into one sample.

    As Simsekli et al. (2019), ``main.py``: ``alpha_estimator(m,
    (grads - mean_grad).view(-1, 1))`` with ``grads`` of shape (minibatch,
    parameter). The pooled axes are flattened in C order -- for an SGN block
    (minibatch, param) that is minibatch-major, exactly their ordering, so a Y
    block mostly sums K1 neighbouring parameters of one minibatch. The order
    matters (Y sums consecutive entries); pass (minibatch, param) to match them.
    ``k1="simsekli"`` reproduces their K1 rule. Exact zeros (e.g. dead
    parameters in the pool) are left out of the log means instead of their
    ``+ 2.2e-16``.

    Parameters
    ----------
    x : array_like
        Any shape.
    k1 : {"paper", "simsekli", "sqrt"} or int
        K1 rule applied to the pooled sample size.
    axis : int or sequence of int, optional
        Axes to pool (in the given order, C-order flattening). None pools all
        axes and returns one float.

    Returns
    -------
    float or numpy.ndarray of float64
        One alpha (or one per remaining index when ``axis`` is given).
    """
    a = np.asarray(x)
    if axis is None:
        return float(mohammadi(a.reshape(-1), k1))
    axes = [ax % a.ndim for ax in np.atleast_1d(axis).tolist()]
    rest = [ax for ax in range(a.ndim) if ax not in axes]
    moved = np.transpose(a, rest + axes)
    flat = moved.reshape(*moved.shape[: len(rest)], -1)
    return mohammadi(flat, k1)


def multivariate(x_nd: ArrayLike, k1: str | int = DEFAULT_K1) -> FloatArray:
    """Simsekli's ``alpha_estimator`` on the row norms of N x d blocks.

    ``1/alpha = (mean_i log||Y_i|| - mean_j log||X_j||) / log K1`` where X_j are
    the N rows (d-vectors) and Y_i the sums of K1 consecutive rows.

    Parameters
    ----------
    x_nd : array_like, shape (..., N, d)
        N vector samples of dimension d (e.g. minibatch x parameters).
    k1 : {"paper", "simsekli", "sqrt"} or int
        K1 rule applied to N.

    Returns
    -------
    numpy.ndarray of float64, shape (...)
        alpha; NaN when all rows are equal (dead) or K1 = 1. A row with a
        non-finite coordinate is dropped from the X mean and its K1 block from
        the Y mean (as in :func:`mohammadi_chunk`); zero-norm rows are left out
        of the log means.
    """
    a = _f64(x_nd)
    if a.ndim < 2:
        raise ValueError("multivariate needs x of shape (..., N, d)")
    n, d = a.shape[-2], a.shape[-1]
    kk1, kk2 = choose_k1(n, k1)
    a = a[..., : kk1 * kk2, :]
    finite = np.isfinite(a)
    row_ok = finite.all(axis=-1)
    clean = np.where(row_ok[..., None], a, 0.0)
    xn = np.linalg.norm(clean, axis=-1)
    yn = np.linalg.norm(clean.reshape(*a.shape[:-2], kk2, kk1, d).sum(axis=-2), axis=-1)
    yn = np.where(row_ok.reshape(*a.shape[:-2], kk2, kk1).all(axis=-1), yn, 0.0)
    sly, ny = _sum_log_abs(yn)
    slx, nx = _sum_log_abs(xn)
    if a.shape[-2] == 0:
        dead = np.ones(a.shape[:-2], dtype=bool)
    else:
        ok = row_ok[..., None]
        lo = np.where(ok, a, np.inf).min(axis=-2)
        hi = np.where(ok, a, -np.inf).max(axis=-2)
        dead = ~(lo < hi).any(axis=-1)
    # lo < hi marks the statistics as live; dead ones are masked below
    lo, hi = np.full(sly.shape, -1.0), np.zeros(sly.shape)
    stats = np.stack([sly, ny, slx, nx, np.zeros(sly.shape), lo, hi], axis=-1)
    return np.where(dead, np.nan, mohammadi_finalize(stats, kk1))
