"""Per-(run, iteration, group) aggregates of per-parameter alpha, as a long DataFrame.

This is what the figures consume (alpha over iterations, per batch size, depth,
width, per layer). One row per run x snapshot x group, with these columns:

``run_id``
    The run.
``iteration``
    Training iteration of the snapshot (SGD updates done).
``by``
    The grouping: ``tensor``, ``module`` (the paper's "layer"; weight and bias
    of a module together), ``kind`` (weight / bias) or ``model`` (all parameters).
``group``
    The tensor name, module name, kind, or ``"all"`` for ``by="model"``.
``n_params``
    Parameters in the group.
``n``
    Parameters with an estimate (not NaN; the ones used by the statistics below).
    An estimate of 1/alpha <= 0 gives alpha = +inf: used, counted in ``n_gt2``.
``n_nan``
    Parameters without a tail index (NaN: zero or constant SGN, e.g. dead ReLU
    units, or no finite SGN sample at all); never averaged in.
``n_nonfinite_samples``
    Non-finite (NaN, +-inf) SGN samples of the group's parameters at this
    snapshot. The estimators drop them per parameter and estimate from the
    remaining finite samples (see :mod:`sgnlake.analyze.kernels`); this counts
    what was dropped. Counted separately from ``n_nan`` (a parameter with a
    few non-finite samples still has an estimate).
``n_gt2``
    Estimates above 2 (possible with finite samples; flagged, not clipped).
``median``, ``mean``
    Median and mean of the used alphas (``mean`` is inf if one is +inf).
``q_lo``, ``q_hi``
    Lower/upper quantiles of the used alphas (default 0.25 / 0.75).
``mean_inv``
    Mean of 1/alpha over the used alphas (1/alpha is the nearly unbiased
    quantity of the Mohammadi estimator).
``alpha_from_mean_inv``
    ``1 / mean_inv``: an aggregate alpha robust to the upward skew of alpha.
``estimator``, ``key``
    Estimator name and result key (estimator + settings).
config columns
    :data:`sgnlake.analyze.lake.CONFIG_COLUMNS` of the run (``model``, ``depth``,
    ``width``, ``bias``, ``dataset``, ``n_train``, ``batch_size``, ``lr``,
    ``seed``, ``shuffle``, ``partition``, ``n_minibatches``, ``dtype``,
    ``keepbits``), repeated on each row so figures can group by them.

Stored results (:func:`sgnlake.analyze.results.compute_alpha`) are used when
present; missing snapshots are computed on the fly (and not stored).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.names import ITERATION

from .lake import CONFIG_COLUMNS, IterationSel, _label_positions
from .results import ALPHA, NONFINITE

if TYPE_CHECKING:
    from .lake import Lake

#: Groupings accepted by :func:`summary`.
GROUPINGS = ("tensor", "module", "kind", "model")
#: Statistic columns, in order (before the estimator and config columns).
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
#: All columns of :func:`summary`, in order.
SUMMARY_COLUMNS = (
    "run_id",
    "iteration",
    "by",
    "group",
    *STAT_COLUMNS,
    "estimator",
    "key",
    *CONFIG_COLUMNS,
)


def group_stats(
    values: np.ndarray, quantiles: tuple[float, float] = (0.25, 0.75), nonfinite: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Statistics of a ``(snapshots, params)`` block of alphas, one value per snapshot.

    NaN (no estimate) counts in ``n_nan`` and is left out of every statistic;
    +inf (an estimate of 1/alpha <= 0, see :func:`sgnlake.analyze.kernels.mohammadi_finalize`)
    is a used estimate above 2 (it makes ``mean`` infinite, ``mean_inv`` adds 0),
    as in :func:`sgnlake.analyze.kernels.summarize`.

    Parameters
    ----------
    values : numpy.ndarray, shape (snapshots, params)
        Per-parameter alphas.
    quantiles : (float, float)
        Quantiles reported as ``q_lo`` and ``q_hi``.
    nonfinite : numpy.ndarray, shape (snapshots, params), optional
        Non-finite SGN samples per parameter (the ``n_nonfinite`` result); their
        row sums are ``n_nonfinite_samples``.

    Returns
    -------
    dict of str to numpy.ndarray
        The :data:`STAT_COLUMNS` (NaN where a snapshot has no finite value);
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


def summary(
    lake: Lake,
    runs: str | Sequence[str] | None = None,
    by: str = "module",
    estimator: str = "mohammadi",
    iterations: IterationSel = None,
    quantiles: tuple[float, float] = (0.25, 0.75),
    block_bytes: int = 64 * 2**20,
    **settings: Any,
) -> pd.DataFrame:
    """Aggregate per-parameter alpha per (run, iteration, group).

    Parameters
    ----------
    lake : Lake
        An opened lake.
    runs : str or list of str, optional
        Run ids or glob patterns (default: all runs with committed snapshots).
    by : {"module", "tensor", "kind", "model"}
        Grouping of parameters (``model``: all parameters as group ``"all"``).
    estimator : str
        Estimator name; ``**settings`` are its settings (they pick the stored result).
    iterations : int, list of int, slice or None
        Iteration values to summarise (default: every committed snapshot).
    quantiles : (float, float)
        Quantiles reported as ``q_lo`` and ``q_hi``.
    block_bytes : int
        Alphas are loaded this many bytes at a time (bounded memory).

    Returns
    -------
    pandas.DataFrame
        Long format with :data:`SUMMARY_COLUMNS` (documented in this module's
        docstring); groups keep the model's tensor order.
    """
    if by not in GROUPINGS:
        raise ConfigError(f"unknown grouping by={by!r}: use one of {', '.join(GROUPINGS)}")
    ids = [r for r in lake.select_runs(runs) if lake.meta(r).committed > 0]
    frames = []
    for run in ids:
        ds = lake.result(run, estimator=estimator, **settings)
        if ALPHA not in ds:
            raise ConfigError(
                f"estimator {estimator!r} has no alpha output (outputs: {', '.join(map(str, ds.data_vars))}): "
                "summarise lake.result(...) yourself"
            )
        ds = ds[[ALPHA, NONFINITE]]
        if iterations is not None:
            pos, _ = _label_positions(ds[ITERATION].values, iterations, run)
            ds = ds.isel({ITERATION: pos})
        a = ds[ALPHA]
        labels = np.full(a.sizes["param"], "all", dtype=object) if by == "model" else a[by].values
        groups = list(dict.fromkeys(labels.tolist()))
        cols = {g: np.flatnonzero(labels == g) for g in groups}
        its = a[ITERATION].values
        step = max(1, block_bytes // max(1, 12 * a.sizes["param"]))  # float64 alpha + int32 count
        parts: list[dict[str, Any]] = []
        for i0 in range(0, len(its), step):
            part = ds.isel({ITERATION: slice(i0, i0 + step)}).compute()  # one graph: SGN read once
            block = np.asarray(part[ALPHA].values)
            counts = np.asarray(part[NONFINITE].values)
            for g in groups:
                st = group_stats(block[:, cols[g]], quantiles, counts[:, cols[g]])
                st.update(iteration=its[i0 : i0 + step], group=g)
                parts.append(st)
        df = pd.concat([pd.DataFrame(p) for p in parts], ignore_index=True)
        df["run_id"], df["by"] = run, by
        df["estimator"], df["key"] = estimator, ds.attrs.get("key", "")
        for k, v in lake.config_coords(run).items():
            df[k] = v
        order = {g: i for i, g in enumerate(groups)}
        df = df.sort_values(["iteration", "group"], key=lambda s: s.map(order) if s.name == "group" else s)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out[list(SUMMARY_COLUMNS)]
