"""Per-parameter sample checks shared by the kernels: non-finite counts, dead parameters, log sums.

Samples are on the LAST axis (see :mod:`sgnlake.analyze.kernels`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


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
    # log(1) = +0.0 exactly: the left-out entries add the same +0.0 as a masked log would, and the
    # unmasked log runs vectorised (2-3x faster than ``np.log(..., where=nz)``)
    np.copyto(a, 1.0, where=~nz)
    np.log(a, out=a)
    return a.sum(axis=-1), np.count_nonzero(nz, axis=-1).astype(np.float64)
