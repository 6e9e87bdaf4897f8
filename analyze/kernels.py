"""Tail-index and Gaussianity kernels in pure numpy/scipy.

Every per-parameter kernel takes ``x`` with the samples on the LAST axis, shape
``(..., n)``, any float (or integer) dtype, accumulates in float64 and returns
float64 of shape ``(...)`` (or ``(..., k)`` where stated). The xarray/Dask
wrappers live in :mod:`sgnlake.analyze.estimators`; nothing here knows about
xarray, Dask or torch.

Non-finite samples and dead parameters:

* **non-finite samples** (NaN, +-inf; e.g. a corrupt chunk read as NaN, or an
  overflow in one minibatch) are dropped per parameter and the estimate uses
  the remaining finite samples of that parameter; :func:`count_nonfinite`
  counts them so callers report them (they are never dropped silently). The
  Mohammadi estimators drop a non-finite sample from the X mean and every K1
  block that contains one from the Y mean (the block sum is undefined; filling
  the gap would change the law of Y); :func:`hill`, :func:`mcculloch`,
  :func:`gaussianity` and :func:`multivariate` (a row with a non-finite
  coordinate is dropped, and so is its K1 block) do the same on their own terms.
* **dead**: all finite samples equal along the last axis (all zero, or any
  constant; a dead ReLU unit has all-zero SGN), fewer than two finite samples,
  or none at all. Dead parameters are never estimated, they give NaN.
  :func:`dead_mask` finds them.

Estimators:

* :func:`mohammadi` (and :func:`mohammadi_inv`, :func:`mohammadi_chunk`,
  :func:`mohammadi_combine`, :func:`mohammadi_finalize` for streaming,
  :func:`mohammadi_counted` for the fused per-chunk path),
  :func:`pooled`, :func:`multivariate` -- Mohammadi et al. (2015), Cor. 2.4,
  the estimator of Simsekli et al. (2019).
* :func:`hill` -- Hill (1975) on the top-k order statistics of ``|x|``.
* :func:`mcculloch` -- McCulloch (1986) quantile fit of (alpha, beta, scale,
  location), vectorised; identical to ``scipy.stats.levy_stable._fitstart``
  (S1 parameterisation).
* :func:`gaussianity`, :func:`benjamini_hochberg`, :func:`gaussianity_summary`.

Per-group aggregates of the alphas live in :mod:`sgnlake.analyze.aggregate`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.special
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from sgnlake.schema.errors import ConfigError

#: Named rules for choosing the Mohammadi block length K1 (see :func:`choose_k1`).
K1_RULES = ("paper", "simsekli", "sqrt")
#: Default K1 rule: the paper's. "paper" and "simsekli" choose the same K1 for every n >= 1
#: (the largest divisor d <= sqrt(n) is always at least as close to sqrt(n) as its partner
#: n/d, since d + n/d >= 2 sqrt(n); checked for every n from 2 to 20,000): two names, one
#: rule, kept because stored result keys carry the name. In the synthetic validation
#: (docs/estimator-validation.md, 500 parameters per cell) "paper" and "sqrt" are identical
#: at M = 100 (both K1 = 10); at M = 1200 their RMSEs of alpha differ by at most 0.007,
#: within the Monte-Carlo noise of 500 parameters ("sqrt" lower at alpha 1.1, 1.5, 1.7;
#: "paper" at 1.3, 1.9, 2.0). It gives K1 = 1 (no estimate) for prime M, where
#: :func:`sgnlake.analyze.estimators.estimate` refuses with a hint to use "sqrt".
DEFAULT_K1 = "paper"
#: Default Hill k: this fraction of the samples (see :func:`hill_k`).
DEFAULT_HILL_K = 0.1
#: Number of partial statistics returned by :func:`mohammadi_chunk`.
N_MOHAMMADI_STATS = 7
#: Labels of the last axis of :func:`mcculloch`.
STABLE_PARAMS = ("alpha", "beta", "scale", "loc")
#: Labels of the last axis of :func:`gaussianity`.
GAUSSIANITY_TESTS = ("shapiro", "anderson", "dagostino", "ks")

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------- helpers


def _f64(x: ArrayLike) -> FloatArray:
    """``x`` as a float64 array (no copy when it already is one)."""
    return np.asarray(x, dtype=np.float64)


def count_nonfinite(x: ArrayLike) -> NDArray[np.int64]:
    """Count the non-finite (NaN, +-inf) samples of each parameter.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.

    Returns
    -------
    numpy.ndarray of int64, shape (...)
        Number of non-finite samples; every kernel drops them and estimates from
        the remaining finite samples (a parameter without two distinct finite
        samples is dead, see :func:`dead_mask`).
    """
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        return np.zeros(a.shape[:-1], dtype=np.int64)
    return np.count_nonzero(~np.isfinite(a), axis=-1).astype(np.int64)


def dead_mask(x: ArrayLike) -> NDArray[np.bool_]:
    """True for dead parameters: all finite samples equal (all zero or any constant).

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.

    Returns
    -------
    numpy.ndarray of bool, shape (...)
        ``max == min`` over the finite samples along the last axis; a parameter
        with no finite sample (or an empty last axis) counts as dead. Non-finite
        samples are left out (see :func:`count_nonfinite`).
    """
    a = _f64(x)
    if a.shape[-1] == 0:
        return np.ones(a.shape[:-1], dtype=bool)
    finite = np.isfinite(a)
    if finite.all():
        return a.max(axis=-1) == a.min(axis=-1)
    hi = np.where(finite, a, -np.inf).max(axis=-1)
    lo = np.where(finite, a, np.inf).min(axis=-1)
    return ~(lo < hi)


def _rows_with_nonfinite(flat: FloatArray) -> NDArray[np.intp]:
    """Indices of the rows of a 2-D float64 array that hold a non-finite sample."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = flat.sum()
    if flat.size == 0 or np.isfinite(total):
        return np.empty(0, dtype=np.intp)  # one fast pass: a finite sum has no NaN/inf term
    return np.flatnonzero(~np.isfinite(flat).all(axis=-1))


def _sum_log_abs(v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Sum of log|v| over non-zero entries and their count, along the last axis."""
    a = np.abs(v)
    nz = a > 0
    logs = np.zeros_like(a)
    np.log(a, out=logs, where=nz)
    return logs.sum(axis=-1), np.count_nonzero(nz, axis=-1).astype(np.float64)


# --------------------------------------------------------------------------- K1 rules


def _divisors(n: int) -> list[int]:
    """Sorted divisors of ``n >= 1``."""
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return small + large[::-1]


def choose_k1(n: int, rule: str | int = DEFAULT_K1) -> tuple[int, int]:
    """Block length K1 and block count K2 of the Mohammadi estimator for ``n`` samples.

    Parameters
    ----------
    n : int
        Number of samples (M, the minibatch count, for per-parameter SGN).
    rule : {"paper", "simsekli", "sqrt"} or int
        * ``"paper"``: the divisor of n closest to sqrt(n) among the divisors
          d <= n/2 and n itself (the paper's code). Ties cannot occur (they
          need sqrt(n) rational, i.e. a square n, whose root is itself a divisor
          at distance 0). n itself can only win
          for n = 1: for n > 1, n - sqrt(n) > sqrt(n) - 1 since (sqrt(n) - 1)^2 > 0,
          so 1 is always closer. Had it been chosen, K1 = n and K2 = 1 (a single
          block sum), which is what the paper's code would compute.
        * ``"simsekli"``: the largest divisor of n not above sqrt(n) (Simsekli's
          ``for i in range(1, 1+int(sqrt(N))): if N % i == 0: m = i``). The same K1 as
          ``"paper"`` for every n (see :data:`DEFAULT_K1`).
        * ``"sqrt"``: K1 = floor(sqrt(n)), K2 = floor(n / K1); the estimator uses
          the first K1*K2 samples (at most K1 - 1 are left out).
        * an int: that K1 (1 <= K1 <= n), K2 = floor(n / K1).

    Returns
    -------
    (k1, k2) : tuple of int
        K1 * K2 <= n samples are used. With "paper" and "simsekli" a prime n
        gives K1 = 1 (log K1 = 0), for which every estimate is NaN, as in the
        original code (0/0); "sqrt" gives K1 >= 2 for every n >= 4.

    Raises
    ------
    ConfigError
        Unknown rule, n < 1, or an int K1 outside 1..n.
    """
    n = int(n)
    if n < 1:
        raise ConfigError(f"cannot choose K1 for {n} samples: need at least 1 sample (4 for an estimate)")
    if isinstance(rule, (int, np.integer)) and not isinstance(rule, bool):
        k1 = int(rule)
        if not 1 <= k1 <= n:
            raise ConfigError(f"K1 = {k1} is outside 1..{n} for {n} samples: pass a K1 in that range")
        return k1, n // k1
    if rule == "paper":
        s = math.sqrt(n)
        cands = [d for d in _divisors(n) if d <= n / 2] + [n]
        k1 = min(cands, key=lambda d: (abs(d - s), d))
    elif rule == "simsekli":
        k1 = max(d for d in _divisors(n) if d <= math.isqrt(n))
    elif rule == "sqrt":
        k1 = math.isqrt(n)
    else:
        raise ConfigError(f"unknown K1 rule {rule!r}: use one of {', '.join(K1_RULES)} or an integer")
    return k1, n // k1


# --------------------------------------------------------------------------- Mohammadi


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
    # Rows in blocks of ~2 MB of float64 temporaries: cache-resident, ~1.5x faster
    # than whole-array passes on large inputs.
    step = max(1, _BLOCK_ELEMENTS // max(1, m))
    for i in range(0, rows.shape[0], step):
        stats[i : i + step] = _mohammadi_rows(rows[i : i + step, : k1 * k2], k1, k2)
    return stats.reshape(*lead, N_MOHAMMADI_STATS)


_BLOCK_ELEMENTS = 1 << 18


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
    if redo.any():
        stats[redo] = _mohammadi_chunk_masked(_f64(a[redo]), k1, k2)
    return stats


def _mohammadi_chunk_masked(a: FloatArray, k1: int, k2: int) -> FloatArray:
    """:func:`mohammadi_chunk` for rows (shape (p, k1*k2)) with zeros or non-finite samples.

    A non-finite sample is set to 0, which :func:`_sum_log_abs` leaves out of the X sums;
    a block holding one (or whose sum overflows) gets Y = 0, left out of the Y sums.
    """
    finite = np.isfinite(a)
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


# --------------------------------------------------------------------------- degenerate parameters

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


#: Parameters per block of :func:`_sparse_parts`: about this many bytes of samples.
_SPARSE_BLOCK_BYTES = 1 << 19


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
    # n_distinct: sort each parameter's bit patterns, count the values equal to their left neighbour
    ints = keys.view(np.int32 if keys.dtype.itemsize == 4 else np.int64)
    sentinel = np.iinfo(ints.dtype).min  # the bits of -0.0
    left_out = known.n_valid is None or not bool((np.asarray(known.n_valid) == n).all())
    if left_out:
        mask = keys == 0
        if not all_finite:
            mask |= ~np.isfinite(keys)
        np.copyto(ints, sentinel, where=mask)
    ints.sort(axis=-1)
    nd = np.full(b, n, dtype=np.int32)
    if n > 1:
        line = ints.reshape(-1)
        same = np.flatnonzero(line[1:] == line[:-1])  # pairs in one row, and across row ends
        same = same[(same + 1) % n != 0]
        if same.size:
            nd -= np.bincount(same // n, minlength=b).astype(np.int32)
    if left_out and n:
        nd -= (ints[:, 0] == sentinel).astype(np.int32)  # the run of left-out samples is no value
    sparse = (nd < SPARSE_DISTINCT_FRACTION * np.asarray(n_finite)) & ~dead
    return nd, share, sparse


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
    step = min(p, max(8, _SPARSE_BLOCK_BYTES // (n * a.dtype.itemsize)))
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


# --------------------------------------------------------------------------- Hill


def hill_k(n: int, k: int | float | None = None) -> int:
    """Number of top order statistics the Hill estimator uses for ``n`` samples.

    Parameters
    ----------
    n : int
        Sample size.
    k : int, float in (0, 1) or None
        An int is used as is; a float is a fraction of n (floor); None means
        :data:`DEFAULT_HILL_K` (10% of the samples).

    Returns
    -------
    int
        k clipped to 1..n-1.

    Raises
    ------
    ConfigError
        ``k`` is not a positive int or a fraction in (0, 1), or n < 2.
    """
    if n < 2:
        raise ConfigError(f"the Hill estimator needs at least 2 samples, got {n}")
    if k is None:
        k = DEFAULT_HILL_K
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        if k < 1:
            raise ConfigError(f"Hill k = {k} must be >= 1: pass a positive int or a fraction in (0, 1)")
        kk = int(k)
    elif isinstance(k, (float, np.floating)) and 0 < k < 1:
        kk = int(math.floor(k * n))
    else:
        raise ConfigError(f"Hill k = {k!r} is invalid: pass a positive int or a fraction in (0, 1)")
    return max(1, min(kk, n - 1))


def _hill_rows(a: FloatArray, kk: int) -> FloatArray:
    """Hill estimates of the rows of a finite 2-D array with ``kk`` top order statistics."""
    n = a.shape[-1]
    part = np.partition(np.abs(a), n - kk - 1, axis=-1)
    thr = part[..., n - kk - 1]
    top = part[..., n - kk :]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.log(top).mean(axis=-1) - np.log(thr)
        alpha = 1.0 / h
    return np.where(thr > 0, alpha, np.nan)


def hill(x: ArrayLike, k: int | float | None = None) -> FloatArray:
    """Hill estimator of the tail index on the top-k order statistics of ``|x|``.

    With ``|x|`` sorted descending, ``X_(1) >= ... >= X_(n)``:
    ``alpha = 1 / ( mean_{i<=k} log X_(i) - log X_(k+1) )``.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.
    k : int, float in (0, 1) or None
        Number (or fraction) of top order statistics, see :func:`hill_k`.

    Returns
    -------
    numpy.ndarray of float64, shape (...)
        alpha, not clipped at 2 (Hill on stable samples is biased upwards for
        alpha near 2 -- flag ``alpha > 2``, see :func:`sgnlake.analyze.aggregate.group_stats`). NaN for dead
        parameters and when X_(k+1) = 0 (more than n - k - 1 zeros); +inf when
        the top k+1 values are all equal. Non-finite samples are dropped: such
        a parameter is estimated from its n' finite samples with
        ``hill_k(n', k)`` (a fraction k applies to n'), one parameter at a time.
    """
    a = _f64(x)
    n = a.shape[-1]
    kk = hill_k(n, k)
    lead = a.shape[:-1]
    flat = a.reshape(-1, n)
    rows = _rows_with_nonfinite(flat)
    if rows.size == 0:
        out = _hill_rows(flat, kk)
    else:
        out = _hill_rows(np.where(np.isfinite(flat), flat, 0.0), kk)
        for r in rows:
            v = flat[r][np.isfinite(flat[r])]
            out[r] = _hill_rows(v[None], hill_k(v.size, k))[0] if v.size >= 2 else np.nan
    out = np.where(dead_mask(flat), np.nan, out)
    return out.reshape(lead)


# --------------------------------------------------------------------------- McCulloch

# McCulloch (1986) tables as in scipy.stats._levy_stable._fitstart_S1.
# Table III / IV: alpha = psi_1(nu_alpha, nu_beta), beta = psi_2(nu_alpha, nu_beta);
# rows: nu_alpha, columns: nu_beta.
_NU_ALPHA = np.array([2.439, 2.5, 2.6, 2.7, 2.8, 3, 3.2, 3.5, 4, 5, 6, 8, 10, 15, 25])
_NU_BETA = np.array([0, 0.1, 0.2, 0.3, 0.5, 0.7, 1])
# fmt: off
_PSI1 = np.array([
    [2.000, 2.000, 2.000, 2.000, 2.000, 2.000, 2.000],
    [1.916, 1.924, 1.924, 1.924, 1.924, 1.924, 1.924],
    [1.808, 1.813, 1.829, 1.829, 1.829, 1.829, 1.829],
    [1.729, 1.730, 1.737, 1.745, 1.745, 1.745, 1.745],
    [1.664, 1.663, 1.663, 1.668, 1.676, 1.676, 1.676],
    [1.563, 1.560, 1.553, 1.548, 1.547, 1.547, 1.547],
    [1.484, 1.480, 1.471, 1.460, 1.448, 1.438, 1.438],
    [1.391, 1.386, 1.378, 1.364, 1.337, 1.318, 1.318],
    [1.279, 1.273, 1.266, 1.250, 1.210, 1.184, 1.150],
    [1.128, 1.121, 1.114, 1.101, 1.067, 1.027, 0.973],
    [1.029, 1.021, 1.014, 1.004, 0.974, 0.935, 0.874],
    [0.896, 0.892, 0.884, 0.883, 0.855, 0.823, 0.769],
    [0.818, 0.812, 0.806, 0.801, 0.780, 0.756, 0.691],
    [0.698, 0.695, 0.692, 0.689, 0.676, 0.656, 0.597],
    [0.593, 0.590, 0.588, 0.586, 0.579, 0.563, 0.513]])
_PSI2 = np.array([
    [0, 2.160, 1.000, 1.000, 1.000, 1.000, 1.000],
    [0, 1.592, 3.390, 1.000, 1.000, 1.000, 1.000],
    [0, 0.759, 1.800, 1.000, 1.000, 1.000, 1.000],
    [0, 0.482, 1.048, 1.694, 1.000, 1.000, 1.000],
    [0, 0.360, 0.760, 1.232, 2.229, 1.000, 1.000],
    [0, 0.253, 0.518, 0.823, 1.575, 1.000, 1.000],
    [0, 0.203, 0.410, 0.632, 1.244, 1.906, 1.000],
    [0, 0.165, 0.332, 0.499, 0.943, 1.560, 1.000],
    [0, 0.136, 0.271, 0.404, 0.689, 1.230, 2.195],
    [0, 0.109, 0.216, 0.323, 0.539, 0.827, 1.917],
    [0, 0.096, 0.190, 0.284, 0.472, 0.693, 1.759],
    [0, 0.082, 0.163, 0.243, 0.412, 0.601, 1.596],
    [0, 0.074, 0.147, 0.220, 0.377, 0.546, 1.482],
    [0, 0.064, 0.128, 0.191, 0.330, 0.478, 1.362],
    [0, 0.056, 0.112, 0.167, 0.285, 0.428, 1.274]])
# Table V / VII: nu_c = phi_3(alpha, beta), nu_zeta = phi_5(alpha, beta);
# rows: alpha = 2.0, 1.9, ..., 0.5 (reversed below to ascending), columns: beta.
_ALPHA = np.array([2, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1, 0.9, 0.8, 0.7, 0.6, 0.5])[::-1]
_BETA = np.array([0, 0.25, 0.5, 0.75, 1])
_PHI3 = np.array([
    [1.908, 1.908, 1.908, 1.908, 1.908],
    [1.914, 1.915, 1.916, 1.918, 1.921],
    [1.921, 1.922, 1.927, 1.936, 1.947],
    [1.927, 1.930, 1.943, 1.961, 1.987],
    [1.933, 1.940, 1.962, 1.997, 2.043],
    [1.939, 1.952, 1.988, 2.045, 2.116],
    [1.946, 1.967, 2.022, 2.106, 2.211],
    [1.955, 1.984, 2.067, 2.188, 2.333],
    [1.965, 2.007, 2.125, 2.294, 2.491],
    [1.980, 2.040, 2.205, 2.435, 2.696],
    [2.000, 2.085, 2.311, 2.624, 2.973],
    [2.040, 2.149, 2.461, 2.886, 3.356],
    [2.098, 2.244, 2.676, 3.265, 3.912],
    [2.189, 2.392, 3.004, 3.844, 4.775],
    [2.337, 2.634, 3.542, 4.808, 6.247],
    [2.588, 3.073, 4.534, 6.636, 9.144]])[::-1]
_PHI5 = np.array([
    [0, 0.000, 0.000, 0.000, 0.000],
    [0, -0.017, -0.032, -0.049, -0.064],
    [0, -0.030, -0.061, -0.092, -0.123],
    [0, -0.043, -0.088, -0.132, -0.179],
    [0, -0.056, -0.111, -0.170, -0.232],
    [0, -0.066, -0.134, -0.206, -0.283],
    [0, -0.075, -0.154, -0.241, -0.335],
    [0, -0.084, -0.173, -0.276, -0.390],
    [0, -0.090, -0.192, -0.310, -0.447],
    [0, -0.095, -0.208, -0.346, -0.508],
    [0, -0.098, -0.223, -0.380, -0.576],
    [0, -0.099, -0.237, -0.424, -0.652],
    [0, -0.096, -0.250, -0.469, -0.742],
    [0, -0.089, -0.262, -0.520, -0.853],
    [0, -0.078, -0.272, -0.581, -0.997],
    [0, -0.061, -0.279, -0.659, -1.198]])[::-1]
# fmt: on


def _bilinear(gx: FloatArray, gy: FloatArray, table: FloatArray, x: FloatArray, y: FloatArray) -> FloatArray:
    """Piecewise-bilinear interpolation of ``table[i, j]`` at (gx[i], gy[j]).

    Arguments outside the grid are clamped to its edges, as FITPACK's ``bispev``
    (``RectBivariateSpline(kx=1, ky=1, s=0)``) does.
    """
    x = np.clip(x, gx[0], gx[-1])
    y = np.clip(y, gy[0], gy[-1])
    i = np.clip(np.searchsorted(gx, x, side="right") - 1, 0, len(gx) - 2)
    j = np.clip(np.searchsorted(gy, y, side="right") - 1, 0, len(gy) - 2)
    tx = (x - gx[i]) / (gx[i + 1] - gx[i])
    ty = (y - gy[j]) / (gy[j + 1] - gy[j])
    return (
        (1 - tx) * (1 - ty) * table[i, j]
        + tx * (1 - ty) * table[i + 1, j]
        + (1 - tx) * ty * table[i, j + 1]
        + tx * ty * table[i + 1, j + 1]
    )


def mcculloch(x: ArrayLike) -> FloatArray:
    """McCulloch (1986) quantile estimates of all four stable parameters, vectorised.

    Reproduces ``scipy.stats.levy_stable._fitstart`` (S1 parameterisation, the
    scipy default; for beta = 0 S0 and S1 agree) for every parameter at once:
    linear-interpolated percentiles 5, 25, 50, 75, 95, then
    ``nu_alpha = (q95 - q05)/(q75 - q25)``, ``nu_beta = (q95 + q05 - 2 q50)/(q95 - q05)``
    looked up bilinearly in McCulloch's tables (clamped at the table edges).
    nu_alpha < 2.439 gives alpha = 2, beta = sign(nu_beta).

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.

    Returns
    -------
    numpy.ndarray of float64, shape (..., 4)
        (alpha, beta, scale, loc) -- note scipy's ``_fitstart`` returns
        (alpha, beta, loc, scale). NaN for dead parameters and when q75 == q25
        (the quantile fit is undefined; scipy would divide by zero).
        Non-finite samples are dropped: the percentiles of such a parameter are
        those of its finite samples (``numpy.nanpercentile``).
    """
    a = _f64(x)
    bad = dead_mask(a)
    qs = [5, 25, 50, 75, 95]
    flat = a.reshape(-1, a.shape[-1])
    rows = _rows_with_nonfinite(flat)
    if rows.size == 0:
        q = np.percentile(flat, qs, axis=-1)
    else:
        q = np.percentile(np.where(np.isfinite(flat), flat, 0.0), qs, axis=-1)
        sub = flat[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: dead anyway
            q[:, rows] = np.nanpercentile(np.where(np.isfinite(sub), sub, np.nan), qs, axis=-1)
    q05, q25, q50, q75, q95 = q.reshape(len(qs), *a.shape[:-1])
    iqr = q75 - q25
    bad = bad | ~(iqr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu_alpha = np.where(bad, 3.0, (q95 - q05) / np.where(bad, 1.0, iqr))
        nu_beta = np.where(bad, 0.0, (q95 + q05 - 2 * q50) / np.where(bad, 1.0, q95 - q05))
    absnb = np.abs(nu_beta)
    heavy = nu_alpha >= 2.439
    psi1 = _bilinear(_NU_ALPHA, _NU_BETA, _PSI1, nu_alpha, absnb)
    psi2 = _bilinear(_NU_ALPHA, _NU_BETA, _PSI2, nu_alpha, absnb)
    # scipy: psi_1(nu_beta) if nu_beta > 0 else psi_1(-nu_beta); psi_2 odd in nu_beta
    psi2 = np.where(nu_beta > 0, psi2, -psi2)
    alpha = np.where(heavy, np.clip(psi1, np.finfo(float).eps, 2.0), 2.0)
    beta = np.where(heavy, np.clip(psi2, -1.0, 1.0), np.sign(nu_beta))
    absb = np.abs(beta)
    phi3 = _bilinear(_ALPHA, _BETA, _PHI3, alpha, absb)
    phi5 = _bilinear(_ALPHA, _BETA, _PHI5, alpha, absb)
    phi5 = np.where(beta > 0, phi5, -phi5)
    c = iqr / phi3
    zeta = q50 + c * phi5
    delta = np.where(alpha != 1.0, zeta - beta * c * np.tan(np.pi * alpha / 2.0), zeta)
    out = np.stack([alpha, beta, c, delta], axis=-1)
    out[bad] = np.nan
    return out


# --------------------------------------------------------------------------- Gaussianity

# Anderson-Darling critical values for the normal with estimated mean and std
# at 15, 10, 5, 2.5, 1 % (D'Agostino & Stephens 1986), scipy.stats._morestats._Avals_norm.
_AD_NORM = np.array([0.561, 0.631, 0.752, 0.873, 1.035])
_AD_SIG = np.array([0.15, 0.10, 0.05, 0.025, 0.01])


def _anderson_norm_pvalue(a: FloatArray) -> FloatArray:
    """Vectorised ``scipy.stats.anderson(x, 'norm', method='interpolate').pvalue``."""
    n = a.shape[-1]
    y = np.sort(a, axis=-1)
    s = a.std(axis=-1, ddof=1, keepdims=True)
    w = (y - a.mean(axis=-1, keepdims=True)) / s
    logcdf = scipy.special.log_ndtr(w)
    logsf = scipy.special.log_ndtr(-w)
    i = np.arange(1, n + 1)
    a2 = -n - np.sum((2 * i - 1.0) / n * (logcdf + logsf[..., ::-1]), axis=-1)
    critical = np.around(_AD_NORM / (1.0 + 0.75 / n + 2.25 / n / n), 3)
    return np.interp(a2, critical, _AD_SIG)


def _ks_norm_pvalue(a: FloatArray) -> FloatArray:
    """Vectorised ``scipy.stats.kstest(z, 'norm', method='asymp').pvalue`` of the standardised rows."""
    n = a.shape[-1]
    z = np.sort((a - a.mean(axis=-1, keepdims=True)) / a.std(axis=-1, ddof=1, keepdims=True), axis=-1)
    cdf = scipy.special.ndtr(z)
    i = np.arange(1, n + 1)
    d = np.maximum((i / n - cdf).max(axis=-1), (cdf - (i - 1) / n).max(axis=-1))
    return scipy.stats.kstwobign.sf(d * math.sqrt(n))


def gaussianity(x: ArrayLike) -> FloatArray:
    """Per-parameter p-values of four normality tests.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis (n >= 8; D'Agostino warns below 20).

    Returns
    -------
    numpy.ndarray of float64, shape (..., 4)
        p-values in the order of :data:`GAUSSIANITY_TESTS`:

        * ``shapiro``: ``scipy.stats.shapiro``, which is 1-D only, so it runs in a
          Python loop over parameters (~10^4 parameters/s at n = 1200 -- the
          slowest of the four). Above n = 5000 scipy warns that the p-value may
          be inaccurate; the warning is silenced here.
        * ``anderson``: scipy's Anderson-Darling statistic for the normal with
          estimated mean/std, computed vectorised exactly as
          ``scipy.stats.anderson``, with its ``method='interpolate'`` p-value,
          which is interpolated in Stephens' table and therefore clipped to
          [0.01, 0.15].
        * ``dagostino``: D'Agostino-Pearson K^2, ``scipy.stats.normaltest``.
        * ``ks``: Kolmogorov-Smirnov against the normal with the sample mean and
          std (ddof=1), vectorised; p-value from the asymptotic Kolmogorov law
          (``scipy.stats.kstest(..., method='asymp')``; the exact law costs
          ~0.3 ms per parameter at n = 1200 and differs by < 0.01 there). With
          estimated parameters the KS p-value is conservative (too large;
          Lilliefors' correction would reject more), so its rejections are a
          lower bound.

        NaN for dead parameters. Non-finite samples are dropped: such a
        parameter is tested on its finite samples, one parameter at a time
        (NaN when fewer than 8 are left).
    """
    a = _f64(x)
    n = a.shape[-1]
    if n < 8:
        raise ConfigError(f"Gaussianity tests need at least 8 samples per parameter, got {n}")
    lead = a.shape[:-1]
    flat = a.reshape(-1, n)
    rows = _rows_with_nonfinite(flat)
    ok = ~dead_mask(flat)
    ok[rows] = False
    out = np.full((flat.shape[0], 4), np.nan)
    for r in rows:
        v = flat[r][np.isfinite(flat[r])]
        if v.size >= 8 and v.max() > v.min():
            out[r] = gaussianity(v)
    if ok.any():
        v = flat[ok]
        sw = np.empty(v.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for r in range(v.shape[0]):
                sw[r] = scipy.stats.shapiro(v[r]).pvalue
        ad = _anderson_norm_pvalue(v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            k2 = scipy.stats.normaltest(v, axis=-1).pvalue
        ks = _ks_norm_pvalue(v)
        out[ok] = np.stack([sw, ad, k2, ks], axis=-1)
    return out.reshape(*lead, 4)


def benjamini_hochberg(pvals: ArrayLike, q: float = 0.05, axis: int | None = None) -> NDArray[np.bool_]:
    """Benjamini-Hochberg false-discovery-rate rejections.

    Parameters
    ----------
    pvals : array_like
        p-values; NaN entries are ignored (not counted in m, never rejected).
    q : float
        Target false-discovery rate in (0, 1).
    axis : int, optional
        Apply the procedure independently along this axis (each 1-D slice is one
        family). None: all entries form one family.

    Returns
    -------
    numpy.ndarray of bool, same shape as ``pvals``
        True where the hypothesis is rejected: p <= p_(k) with k the largest rank
        such that p_(k) <= q k / m.
    """
    if not 0 < q < 1:
        raise ConfigError(f"FDR level q = {q} must be in (0, 1)")
    p = _f64(pvals)
    if axis is None:
        return benjamini_hochberg(p.reshape(-1), q, axis=0).reshape(p.shape)
    pm = np.moveaxis(p, axis, -1)
    srt = np.sort(pm, axis=-1)  # NaN last
    m = np.count_nonzero(~np.isnan(pm), axis=-1)[..., None]
    ranks = np.arange(1, pm.shape[-1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = srt <= q * ranks / np.maximum(m, 1)
    kmax = np.where(ok, ranks, 0).max(axis=-1, initial=0)
    cutoff = np.take_along_axis(srt, np.maximum(kmax - 1, 0)[..., None], axis=-1)
    with np.errstate(invalid="ignore"):
        rej = (pm <= cutoff) & (kmax[..., None] > 0)
    return np.moveaxis(rej, -1, axis)


def gaussianity_summary(
    pvals: ArrayLike, q: float = 0.05, axis: int | Sequence[int] | None = None
) -> dict[str, FloatArray]:
    """Fraction of parameters that reject normality per test, after BH correction.

    Parameters
    ----------
    pvals : array_like, shape (..., 4)
        Output of :func:`gaussianity` (tests on the last axis).
    q : float
        False-discovery rate of the Benjamini-Hochberg procedure.
    axis : int or sequence of int, optional
        Parameter axes forming one family (default: all axes but the last).

    Returns
    -------
    dict of numpy.ndarray, each of shape (remaining axes..., 4)
        ``fraction`` (rejected / tested; NaN when none tested), ``n_rejected``
        and ``n_tested`` (non-NaN p-values).
    """
    p = _f64(pvals)
    nd = p.ndim
    axes = list(range(nd - 1)) if axis is None else [ax % nd for ax in np.atleast_1d(axis).tolist()]
    if nd - 1 in axes:
        raise ValueError("the tests axis (the last one) cannot be a parameter axis")
    rest = [ax for ax in range(nd - 1) if ax not in axes]
    moved = np.transpose(p, rest + [nd - 1] + axes)
    fam = moved.reshape(*moved.shape[: len(rest) + 1], -1)
    rej = benjamini_hochberg(fam, q, axis=-1)
    n_rej = rej.sum(axis=-1).astype(np.float64)
    n_tested = np.count_nonzero(~np.isnan(fam), axis=-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_tested > 0, n_rej / n_tested, np.nan)
    return {"fraction": frac, "n_rejected": n_rej, "n_tested": n_tested}
