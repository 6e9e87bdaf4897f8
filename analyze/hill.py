"""Hill (1975) tail-index estimator on the top-k order statistics of ``|x|``."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from sgnlake.schema.errors import ConfigError

from .sample_checks import FloatArray, _f64, _rows_with_nonfinite, dead_mask

#: Default Hill k: this fraction of the samples (see :func:`hill_k`).
DEFAULT_HILL_K = 0.1


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
