"""Per-iteration statistics of per-parameter alpha, the table the alpha figures draw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..summary import STAT_COLUMNS

#: Columns of :func:`alpha_stats` output: the statistics of
#: :func:`sgnlake.analyze.summary.summary`, so its output feeds the same figures
#: (less the count of non-finite SGN samples, which alpha alone cannot give).
STATS_COLUMNS = (
    "iteration",
    "group",
    *(c for c in STAT_COLUMNS if c != "n_nonfinite_samples"),
)


def alpha_stats(
    alpha: xr.DataArray,
    by: str | None = None,
    *,
    quantiles: tuple[float, float] = (0.25, 0.75),
) -> pd.DataFrame:
    """Summarise per-parameter alpha over ``param`` at each iteration (and group).

    The in-memory counterpart of :func:`sgnlake.analyze.summary.summary` for one
    DataArray (same statistics, same column names).

    Parameters
    ----------
    alpha : xarray.DataArray
        Dims ``(iteration, param)``; NaN marks parameters without a tail index
        (zero or constant SGN, e.g. dead ReLU units).
    by : str, optional
        Name of a coordinate along ``param`` (``module``, ``tensor``, ``kind``)
        to group parameters by; ``None`` puts all parameters in group ``"all"``.
    quantiles : (float, float)
        Lower and upper quantile of the band (``q_lo``, ``q_hi``).

    Returns
    -------
    pandas.DataFrame
        One row per (iteration, group) with columns :data:`STATS_COLUMNS`:
        ``n_params`` parameters, ``n`` with a finite estimate, ``n_nan``
        without, ``n_gt2`` above 2, and the median, mean, quantiles, mean of
        1/alpha and its inverse over the finite estimates (NaN where a group has
        none). Groups keep their order of first appearance along ``param``.
    """
    from ..summary import group_stats

    alpha = alpha.transpose("iteration", "param")
    vals = np.asarray(alpha.values, dtype=np.float64)
    iters = np.asarray(alpha["iteration"].values) if "iteration" in alpha.coords else np.arange(vals.shape[0])
    if by is None:
        labels = np.full(vals.shape[1], "all", dtype=object)
    else:
        labels = np.asarray(alpha[by].values, dtype=object)
    frames = []
    for g in dict.fromkeys(labels.tolist()):
        st = group_stats(vals[:, labels == g], quantiles)
        st.update(iteration=iters.astype(np.int64), group=g)
        frames.append(pd.DataFrame(st))
    if not frames:
        return pd.DataFrame(columns=list(STATS_COLUMNS))
    out = pd.concat(frames, ignore_index=True)[list(STATS_COLUMNS)]
    return out.sort_values("iteration", kind="stable").reset_index(drop=True)
