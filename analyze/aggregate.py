"""The one aggregate of per-parameter alpha per group: :func:`group_stats` and :func:`alpha_stats`.

:func:`sgnlake.analyze.summary.summary` (lake results), the figures and the report all
aggregate with these two functions, so their columns (:data:`STAT_COLUMNS`, documented in
:mod:`sgnlake.analyze.summary`) mean the same everywhere. NaN (no estimate) is counted in
``n_nan`` and left out of every statistic; +inf (an estimate of 1/alpha <= 0, see
:func:`sgnlake.analyze.kernels.mohammadi_finalize`) is a used estimate above 2 (it makes
``mean`` infinite). Degenerate parameters (the ``sparse`` result,
:func:`sgnlake.analyze.kernels.sparse_mask`) are counted in ``n_sparse`` and, like NaN,
left out of every statistic unless ``include_sparse``.

Intervals (``median_lo``/``median_hi``, ``mean_inv_lo``/``mean_inv_hi``) describe the
spread over parameters as a sample from the population of the group's parameters:
for the median the distribution-free order-statistic interval (the ranks
``n/2 -+ z sqrt(n)/2`` of the binomial(n, 1/2) normal approximation), for ``mean_inv`` the
normal interval ``mean -+ z s/sqrt(n)``. ``paper_mean_lo``/``paper_mean_hi`` are the same
normal interval for ``paper_mean`` (the mean of ``1/inv_alpha``), given only where the
central limit theorem can be trusted (:func:`paper_mean_interval`): ``1/inv_alpha`` has
no finite variance (nor mean) when estimates of 1/alpha come near 0, and then no
interval is honest, so NaN is stored. They do not include the estimation noise of
each alpha (which the median over many parameters averages out), nor the dependence
between parameters of one network.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from sgnlake.schema.names import ITERATION, PARAM

#: Statistic columns, in order (documented in :mod:`sgnlake.analyze.summary`).
STAT_COLUMNS = (
    "n_params",
    "n",
    "n_nan",
    "n_sparse",
    "n_nonfinite_samples",
    "n_gt2",
    "median",
    "median_lo",
    "median_hi",
    "mean",
    "q_lo",
    "q_hi",
    "mean_inv",
    "mean_inv_lo",
    "mean_inv_hi",
    "alpha_from_mean_inv",
    "paper_mean",
    "paper_mean_lo",
    "paper_mean_hi",
)
#: Default confidence level of the interval columns.
LEVEL = 0.95
#: Columns of :func:`alpha_stats` without non-finite counts: ``iteration``, ``group`` and the
#: statistics less ``n_nonfinite_samples`` (which alpha alone cannot give).
STATS_COLUMNS = (ITERATION, "group", *(c for c in STAT_COLUMNS if c != "n_nonfinite_samples"))
#: Group label of all parameters together (``by=None`` / ``by="model"``).
ALL = "all"


def median_interval(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-free confidence interval of the median of each row, NaN ignored.

    Parameters
    ----------
    values : numpy.ndarray, shape (rows, n)
        Samples (NaN: left out).
    level : float
        Confidence level.

    Returns
    -------
    (lo, hi) : tuple of numpy.ndarray, shape (rows,)
        The order statistics of ranks ``floor(m/2 - z sqrt(m)/2)`` and
        ``ceil(m/2 + z sqrt(m)/2) + 1`` (1-based, clipped to 1..m) of the ``m`` non-NaN
        values of each row: ``P(x_(l) <= median <= x_(u)) >= level`` for any continuous
        law (binomial(m, 1/2) count below the median, normal approximation). NaN for an
        empty row.
    """
    v = np.sort(np.asarray(values, dtype=np.float64), axis=1)  # NaN last
    m = (~np.isnan(v)).sum(axis=1)
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    half = z * np.sqrt(m) / 2
    lo_rank = np.clip(np.floor(m / 2 - half), 1, np.maximum(m, 1)).astype(np.int64)
    hi_rank = np.clip(np.ceil(m / 2 + half) + 1, 1, np.maximum(m, 1)).astype(np.int64)
    rows = np.arange(v.shape[0])
    if v.shape[1] == 0:
        nan = np.full(v.shape[0], np.nan)
        return nan, nan.copy()
    lo = np.where(m > 0, v[rows, lo_rank - 1], np.nan)
    hi = np.where(m > 0, v[rows, hi_rank - 1], np.nan)
    return lo, hi


#: :func:`paper_mean_interval` gives no interval when one parameter's squared deviation is more
#: than this share of the sum of squared deviations over the group.
PAPER_CLT_MAX_SHARE = 0.1


def paper_mean_interval(
    x: np.ndarray, level: float = LEVEL, max_share: float = PAPER_CLT_MAX_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Normal interval of the mean of each row where the CLT applies, else NaN.

    Used for the paper's statistic (``x = 1/inv_alpha``): its values are ``1/X`` for an
    estimate ``X`` of 1/alpha, whose density at 0 (a few parameters with estimates near 0)
    gives ``1/X`` tails like a Cauchy law's: no finite variance, a sample mean that does not
    settle as parameters are added, and no honest interval (a bootstrap over parameters
    does not fix this; it is inconsistent for infinite variance). The interval
    ``mean -+ z s / sqrt(n)`` is therefore given only when the row passes a
    Lindeberg-type check: the largest ``(x_i - mean)^2`` is at most ``max_share`` of
    ``sum (x_i - mean)^2`` (with finite variance this share tends to 0 as n grows; with a
    tail index <= 2 it does not). On synthetic data
    (``tests/test_aggregate.py``) the interval covers the true mean ~95% when ``1/X`` has a
    finite variance, and is NaN in most rows when ``X`` has density at 0.

    Parameters
    ----------
    x : numpy.ndarray, shape (rows, n)
        Values (NaN: left out; a non-finite value makes the row's interval NaN).
    level : float
        Confidence level.
    max_share : float
        The check's threshold (:data:`PAPER_CLT_MAX_SHARE`).

    Returns
    -------
    (lo, hi) : tuple of numpy.ndarray, shape (rows,)
    """
    v = np.asarray(x, dtype=np.float64)
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        n = (~np.isnan(v)).sum(axis=1)
        mean = np.nanmean(v, axis=1)
        dev2 = (v - mean[:, None]) ** 2
        ss = np.nansum(dev2, axis=1)
        top = np.nanmax(dev2, axis=1) if v.shape[1] else np.full(v.shape[0], np.nan)
        ok = (n >= 2) & np.isfinite(mean) & np.isfinite(ss) & (ss > 0) & (top <= max_share * ss)
        half = z * np.sqrt(ss / np.maximum(n - 1, 1)) / np.sqrt(np.maximum(n, 1))
        lo = np.where(ok, mean - half, np.nan)
        hi = np.where(ok, mean + half, np.nan)
    return lo, hi


def group_stats(
    values: np.ndarray,
    quantiles: tuple[float, float] = (0.25, 0.75),
    nonfinite: np.ndarray | None = None,
    *,
    inv: np.ndarray | None = None,
    sparse: np.ndarray | None = None,
    include_sparse: bool = False,
    level: float = LEVEL,
) -> dict[str, np.ndarray]:
    """Statistics of a ``(snapshots, params)`` block of alphas, one value per snapshot.

    Parameters
    ----------
    values : numpy.ndarray, shape (snapshots, params)
        Per-parameter alphas (NaN: no estimate).
    quantiles : (float, float)
        Quantiles reported as ``q_lo`` and ``q_hi``.
    nonfinite : numpy.ndarray, shape (snapshots, params), optional
        Non-finite SGN samples per parameter (the ``n_nonfinite`` result); their
        row sums are ``n_nonfinite_samples``.
    inv : numpy.ndarray, shape (snapshots, params), optional
        The estimate of 1/alpha (the ``inv_alpha`` result, negatives kept): ``mean_inv``
        and ``paper_mean`` (the paper's mean of ``1/inv`` over parameters, negative alphas
        included, with its interval ``paper_mean_lo``/``paper_mean_hi`` from
        :func:`paper_mean_interval`) come from it. Without it ``mean_inv`` is the mean of ``1/alpha`` (an
        estimate of 1/alpha <= 0 counts as 0) and ``paper_mean`` is NaN.
    sparse : numpy.ndarray, shape (snapshots, params), optional
        1 (True) for degenerate parameters (the ``sparse`` result; negative = unknown,
        taken as not sparse). Counted in ``n_sparse``.
    include_sparse : bool
        Keep degenerate parameters in the statistics (default: left out, like NaN).
    level : float
        Confidence level of the interval columns.

    Returns
    -------
    dict of str to numpy.ndarray
        The :data:`STAT_COLUMNS` (NaN where a snapshot has no estimate);
        ``n_nonfinite_samples`` only when ``nonfinite`` is given.
    """
    v = np.asarray(values, dtype=np.float64)
    has = ~np.isnan(v)
    sp = np.zeros(v.shape, dtype=bool) if sparse is None else np.asarray(sparse) > 0
    n_sparse = (has & sp).sum(axis=1).astype(np.int64)
    used = has if include_sparse else has & ~sp
    v = np.where(used, v, np.nan)
    if inv is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            iv = 1.0 / v
        paper = np.full(v.shape[0], np.nan)
    else:
        iv = np.where(used, np.asarray(inv, dtype=np.float64), np.nan)
        paper = None
    paper_lo = paper_hi = np.full(v.shape[0], np.nan)
    out: dict[str, np.ndarray] = {}
    if nonfinite is not None:
        out["n_nonfinite_samples"] = np.asarray(nonfinite).sum(axis=1, dtype=np.int64)
    n = used.sum(axis=1)
    lo, hi = median_interval(v, level)
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_inv = np.nanmean(iv, axis=1)
        half = z * np.nanstd(iv, axis=1, ddof=1) / np.sqrt(n)
        if paper is None:
            paper = np.nanmean(1.0 / iv, axis=1)
            paper_lo, paper_hi = paper_mean_interval(1.0 / iv, level)
        return out | {
            "n_params": np.full(v.shape[0], v.shape[1], dtype=np.int64),
            "n": n.astype(np.int64),
            "n_nan": (~has).sum(axis=1).astype(np.int64),
            "n_sparse": n_sparse,
            "n_gt2": (used & (v > 2)).sum(axis=1).astype(np.int64),
            "median": np.nanmedian(v, axis=1),
            "median_lo": lo,
            "median_hi": hi,
            "mean": np.nanmean(v, axis=1),
            "q_lo": np.nanquantile(v, quantiles[0], axis=1),
            "q_hi": np.nanquantile(v, quantiles[1], axis=1),
            "mean_inv": mean_inv,
            "mean_inv_lo": mean_inv - half,
            "mean_inv_hi": mean_inv + half,
            "alpha_from_mean_inv": 1.0 / mean_inv,
            "paper_mean": paper,
            "paper_mean_lo": paper_lo,
            "paper_mean_hi": paper_hi,
        }


def alpha_stats(
    alpha: xr.DataArray,
    by: str | None = None,
    *,
    quantiles: tuple[float, float] = (0.25, 0.75),
    nonfinite: xr.DataArray | None = None,
    inv: xr.DataArray | None = None,
    sparse: xr.DataArray | None = None,
    include_sparse: bool = False,
    level: float = LEVEL,
) -> pd.DataFrame:
    """:func:`group_stats` of ``(iteration, param)`` alphas per iteration and group, as a table.

    Parameters
    ----------
    alpha : xarray.DataArray
        Dims ``(iteration, param)`` (any order); NaN marks parameters without a tail
        index (zero or constant SGN, e.g. dead ReLU units). Computed if Dask-backed.
    by : str, optional
        Name of a coordinate along ``param`` (``module``, ``tensor``, ``kind``) to group
        parameters by; ``None`` or ``"model"`` puts all parameters in group ``"all"``.
    quantiles : (float, float)
        Lower and upper quantile (``q_lo``, ``q_hi``).
    nonfinite : xarray.DataArray, optional
        Non-finite SGN samples per (iteration, param) (the ``n_nonfinite`` result);
        adds ``n_nonfinite_samples``.
    inv, sparse : xarray.DataArray, optional
        The ``inv_alpha`` and ``sparse`` results, same dims (see :func:`group_stats`).
    include_sparse : bool
        Keep degenerate parameters in the statistics (see :func:`group_stats`).
    level : float
        Confidence level of the interval columns.

    Returns
    -------
    pandas.DataFrame
        One row per (iteration, group), iterations ascending and groups in their order of
        first appearance along ``param``; columns ``iteration``, ``group`` and the
        :data:`STAT_COLUMNS` (less ``n_nonfinite_samples`` without ``nonfinite``).
    """
    alpha = alpha.transpose(ITERATION, PARAM)
    vals = np.asarray(alpha.values, dtype=np.float64)
    counts = None if nonfinite is None else np.asarray(nonfinite.transpose(ITERATION, PARAM).values)
    invs = None if inv is None else np.asarray(inv.transpose(ITERATION, PARAM).values, dtype=np.float64)
    sps = None if sparse is None else np.asarray(sparse.transpose(ITERATION, PARAM).values)
    iters = np.asarray(alpha[ITERATION].values) if ITERATION in alpha.coords else np.arange(vals.shape[0])
    if by is None or by == "model":
        labels = np.full(vals.shape[1], ALL, dtype=object)
    else:
        labels = np.asarray(alpha[by].values, dtype=object)
    columns = [
        ITERATION,
        "group",
        *(c for c in STAT_COLUMNS if counts is not None or c != "n_nonfinite_samples"),
    ]
    frames = []
    for g in dict.fromkeys(labels.tolist()):
        cols = labels == g
        st: dict[str, Any] = group_stats(
            vals[:, cols],
            quantiles,
            None if counts is None else counts[:, cols],
            inv=None if invs is None else invs[:, cols],
            sparse=None if sps is None else sps[:, cols],
            include_sparse=include_sparse,
            level=level,
        )
        st.update({ITERATION: iters.astype(np.int64), "group": g})
        frames.append(pd.DataFrame(st))
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    return out.sort_values(ITERATION, kind="stable").reset_index(drop=True)
