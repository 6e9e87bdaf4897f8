"""The one aggregate of per-parameter alpha per group: :func:`group_stats` and :func:`alpha_stats`.

:func:`sgnlake.analyze.summary.summary` (lake results), the figures and the report all
aggregate with these two functions, so their columns (:data:`STAT_COLUMNS`, documented in
:mod:`sgnlake.analyze.summary`) mean the same everywhere. NaN (no estimate) is counted in
``n_nan`` and left out of every statistic; +inf (an estimate of 1/alpha <= 0, see
:func:`sgnlake.analyze.kernels.mohammadi_finalize`) is a used estimate above 2 (it makes
``mean`` infinite and adds 0 to ``mean_inv``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sgnlake.schema.names import ITERATION, PARAM

#: Statistic columns, in order (documented in :mod:`sgnlake.analyze.summary`).
STAT_COLUMNS = (
    "n_params",
    "n",
    "n_nan",
    "n_nonfinite_samples",
    "n_gt2",
    "median",
    "mean",
    "q_lo",
    "q_hi",
    "mean_inv",
    "alpha_from_mean_inv",
)
#: Columns of :func:`alpha_stats` without non-finite counts: ``iteration``, ``group`` and the
#: statistics less ``n_nonfinite_samples`` (which alpha alone cannot give).
STATS_COLUMNS = (ITERATION, "group", *(c for c in STAT_COLUMNS if c != "n_nonfinite_samples"))
#: Group label of all parameters together (``by=None`` / ``by="model"``).
ALL = "all"


def group_stats(
    values: np.ndarray, quantiles: tuple[float, float] = (0.25, 0.75), nonfinite: np.ndarray | None = None
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

    Returns
    -------
    dict of str to numpy.ndarray
        The :data:`STAT_COLUMNS` (NaN where a snapshot has no estimate);
        ``n_nonfinite_samples`` only when ``nonfinite`` is given.
    """
    v = np.asarray(values, dtype=np.float64)
    used = ~np.isnan(v)
    out: dict[str, np.ndarray] = {}
    if nonfinite is not None:
        out["n_nonfinite_samples"] = np.asarray(nonfinite).sum(axis=1, dtype=np.int64)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_inv = np.nanmean(1.0 / v, axis=1)
        return out | {
            "n_params": np.full(v.shape[0], v.shape[1], dtype=np.int64),
            "n": used.sum(axis=1).astype(np.int64),
            "n_nan": (~used).sum(axis=1).astype(np.int64),
            "n_gt2": (used & (v > 2)).sum(axis=1).astype(np.int64),
            "median": np.nanmedian(v, axis=1),
            "mean": np.nanmean(v, axis=1),
            "q_lo": np.nanquantile(v, quantiles[0], axis=1),
            "q_hi": np.nanquantile(v, quantiles[1], axis=1),
            "mean_inv": mean_inv,
            "alpha_from_mean_inv": 1.0 / mean_inv,
        }


def alpha_stats(
    alpha: xr.DataArray,
    by: str | None = None,
    *,
    quantiles: tuple[float, float] = (0.25, 0.75),
    nonfinite: xr.DataArray | None = None,
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
            vals[:, cols], quantiles, None if counts is None else counts[:, cols]
        )
        st.update({ITERATION: iters.astype(np.int64), "group": g})
        frames.append(pd.DataFrame(st))
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    return out.sort_values(ITERATION, kind="stable").reset_index(drop=True)
