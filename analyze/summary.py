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
``n_sparse``
    Degenerate parameters with an estimate (the stored ``sparse`` result: fewer distinct
    non-zero SGN values than half the samples, see
    :data:`sgnlake.analyze.kernels.SPARSE_DISTINCT_FRACTION`); counted like NaN and left
    out of every statistic below unless ``include_sparse=True``. 0 for estimators
    without the ``sparse`` output.
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
``median_lo``, ``median_hi``
    95% distribution-free interval of the median over parameters (see
    :mod:`sgnlake.analyze.aggregate`).
``q_lo``, ``q_hi``
    Lower/upper quantiles of the used alphas (default 0.25 / 0.75).
``mean_inv``
    Mean of the estimates of 1/alpha (the stored ``inv_alpha``, negatives kept;
    1/alpha is the nearly unbiased quantity of the Mohammadi estimator). For
    estimators without ``inv_alpha``: the mean of 1/alpha.
``mean_inv_lo``, ``mean_inv_hi``
    95% normal interval of ``mean_inv`` over parameters.
``alpha_from_mean_inv``
    ``1 / mean_inv``: an aggregate alpha robust to the upward skew of alpha.
``paper_mean``
    The paper's statistic: the mean of ``1/inv_alpha`` over the used parameters,
    negative alphas included (what the authors' ``alpha_estimator`` returns and
    averages). NaN for estimators without ``inv_alpha``.
``paper_mean_lo``, ``paper_mean_hi``
    95% normal interval of ``paper_mean`` over parameters, NaN where it cannot be
    trusted: ``1/inv_alpha`` has no finite variance when estimates of 1/alpha come near 0,
    detected by one parameter carrying more than 10% of the sum of squared deviations
    (see :func:`sgnlake.analyze.aggregate.paper_mean_interval`).
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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.names import ITERATION

from .aggregate import STAT_COLUMNS, alpha_stats, group_stats
from .lake import CONFIG_COLUMNS, IterationSel, _label_positions
from .stored import ALPHA, NONFINITE

#: Stored outputs the summary uses when present (Mohammadi's extras).
INV_ALPHA = "inv_alpha"
SPARSE = "sparse"

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["GROUPINGS", "STAT_COLUMNS", "SUMMARY_COLUMNS", "group_stats", "summary"]

#: Groupings accepted by :func:`summary`.
GROUPINGS = ("tensor", "module", "kind", "model")
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


def summary(
    lake: Lake,
    runs: str | Sequence[str] | None = None,
    by: str = "module",
    estimator: str = "mohammadi",
    iterations: IterationSel = None,
    quantiles: tuple[float, float] = (0.25, 0.75),
    block_bytes: int = 64 * 2**20,
    include_sparse: bool = False,
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
    include_sparse : bool
        Keep degenerate (``sparse``) parameters in the statistics (default: counted in
        ``n_sparse`` and left out).

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
        extra = [v for v in (INV_ALPHA, SPARSE) if v in ds]
        ds = ds[[ALPHA, NONFINITE, *extra]]
        if iterations is not None:
            pos, _ = _label_positions(ds[ITERATION].values, iterations, run)
            ds = ds.isel({ITERATION: pos})
        its = ds[ITERATION].values
        step = max(1, block_bytes // max(1, 21 * ds.sizes["param"]))  # alpha, inv, count, sparse
        parts = []
        for i0 in range(0, len(its), step):
            part = ds.isel({ITERATION: slice(i0, i0 + step)}).compute()  # one graph: SGN read once
            parts.append(
                alpha_stats(
                    part[ALPHA],
                    by,
                    quantiles=quantiles,
                    nonfinite=part[NONFINITE],
                    inv=part[INV_ALPHA] if INV_ALPHA in part else None,
                    sparse=part[SPARSE] if SPARSE in part else None,
                    include_sparse=include_sparse,
                )
            )
        df = pd.concat(parts, ignore_index=True)
        df["run_id"], df["by"] = run, by
        df["estimator"], df["key"] = estimator, ds.attrs.get("key", "")
        for k, v in lake.config_coords(run).items():
            df[k] = v
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out[list(SUMMARY_COLUMNS)]
