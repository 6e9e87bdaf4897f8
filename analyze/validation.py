"""Synthetic validation of the tail-index estimators on symmetric alpha-stable samples.

For every (alpha, n) the validation draws ``n_params`` independent parameters of
``n`` i.i.d. symmetric alpha-stable samples (scale 1, S1 = S0 for beta = 0) with
the Chambers-Mallows-Stuck formula (:func:`stable_rvs`; checked against
``scipy.stats.levy_stable.rvs`` in the tests), stores them as float32 like the
lake's SGN, applies each estimator per parameter and reports bias, spread (std),
RMSE and the share of estimates above 2 (:func:`run_validation`,
:func:`format_table`; the CLI is ``sgnlake validate-estimators``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from sgnlake.analyze import kernels
from sgnlake.analyze.estimators import get as get_estimator
from sgnlake.schema.errors import ConfigError

#: Estimators compared by default: (registry name, settings).
DEFAULT_ESTIMATORS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mohammadi", {"k1": "paper"}),
    ("mohammadi", {"k1": "simsekli"}),
    ("mohammadi", {"k1": "sqrt"}),
    ("hill", {"k": kernels.DEFAULT_HILL_K}),
    ("mcculloch", {}),
)
DEFAULT_SIZES = (100, 1200, 60000)
DEFAULT_ALPHAS = (1.1, 1.3, 1.5, 1.7, 1.9, 2.0)
#: Columns of :func:`run_validation` rows, in table order.
COLUMNS = (
    "estimator",
    "n",
    "alpha",
    "n_est",
    "median",
    "bias",
    "std",
    "rmse",
    "share_gt2",
    "rmse_inv",
    "alpha_of_mean_inv",
)


def stable_rvs(
    alpha: float,
    size: int | tuple[int, ...],
    rng: np.random.Generator,
    scale: float = 1.0,
    dtype: DTypeLike = np.float64,
) -> NDArray[Any]:
    """Symmetric alpha-stable samples by the Chambers-Mallows-Stuck formula.

    ``X = sin(alpha V) / cos(V)^(1/alpha) * (cos((1 - alpha) V) / W)^((1 - alpha)/alpha)``
    with V ~ U(-pi/2, pi/2), W ~ Exp(1). beta = 0, so the S0 and S1
    parameterisations agree with ``scipy.stats.levy_stable(alpha, 0, scale=scale)``;
    alpha = 2 gives N(0, 2 scale^2), alpha = 1 the Cauchy law.

    Parameters
    ----------
    alpha : float
        Tail index in (0, 2].
    size : int or tuple of int
        Output shape.
    rng : numpy.random.Generator
        Random generator.
    scale : float
        Scale parameter.
    dtype : numpy dtype
        Output dtype (computed in float64).

    Returns
    -------
    numpy.ndarray
        Samples of the given shape and dtype.
    """
    if not 0 < alpha <= 2:
        raise ConfigError(f"alpha = {alpha} is outside (0, 2]: stable laws need 0 < alpha <= 2")
    v = rng.uniform(-np.pi / 2, np.pi / 2, size)
    w = rng.exponential(1.0, size)
    x = np.sin(alpha * v) / np.cos(v) ** (1.0 / alpha)
    x *= (np.cos((1.0 - alpha) * v) / w) ** ((1.0 - alpha) / alpha)
    return (scale * x).astype(dtype, copy=False)


def error_stats(estimates: NDArray[Any], alpha: float) -> dict[str, float]:
    """Error statistics of per-parameter estimates of a known ``alpha``.

    Parameters
    ----------
    estimates : numpy.ndarray
        Estimated alphas (NaN ones are left out and counted by ``n_est``).
    alpha : float
        True tail index.

    Returns
    -------
    dict
        ``n_est`` (non-NaN estimates), ``median``, ``bias`` (mean - alpha),
        ``std``, ``rmse``, ``share_gt2`` (share of estimates > 2), ``rmse_inv``
        (RMSE of 1/alpha, robust to the few huge alphas of small samples) and
        ``alpha_of_mean_inv`` (1 / mean of 1/alpha). Infinite estimates (1/alpha
        <= 0) make bias/std/rmse infinite.
    """
    e = np.asarray(estimates, dtype=np.float64).ravel()
    e = e[~np.isnan(e)]
    if e.size == 0:
        nan = float("nan")
        return dict.fromkeys(COLUMNS[3:], nan) | {"n_est": 0.0}
    with np.errstate(invalid="ignore", over="ignore"):
        inv = 1.0 / e
        return {
            "n_est": float(e.size),
            "median": float(np.median(e)),
            "bias": float(np.mean(e) - alpha),
            "std": float(np.std(e)) if np.isfinite(e).all() else float("inf"),
            "rmse": float(np.sqrt(np.mean((e - alpha) ** 2))),
            "share_gt2": float(np.mean(e > 2)),
            "rmse_inv": float(np.sqrt(np.mean((inv - 1.0 / alpha) ** 2))),
            "alpha_of_mean_inv": float(1.0 / np.mean(inv)),
        }


def run_validation(
    sizes: Sequence[int] = DEFAULT_SIZES,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_params: int = 500,
    seed: int = 0,
    estimators: Iterable[tuple[str, dict[str, Any]]] = DEFAULT_ESTIMATORS,
    dtype: DTypeLike = np.float32,
    max_batch: int = 1 << 22,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Bias, spread, RMSE and share > 2 of each estimator per (alpha, n).

    Parameters
    ----------
    sizes : sequence of int
        Sample sizes n (minibatch counts M).
    alphas : sequence of float
        True tail indices in (0, 2].
    n_params : int
        Independent parameters per (alpha, n).
    seed : int
        Seed; each (alpha, n) cell gets its own stream, so a cell's samples do
        not depend on the other cells requested.
    estimators : iterable of (name, settings)
        Registered estimators giving a per-parameter alpha (``mohammadi``,
        ``mohammadi_inv``, ``hill``, ``mcculloch``; see
        :meth:`sgnlake.analyze.estimators.Estimator.alpha_fn`).
    dtype : numpy dtype
        Storage dtype of the samples (float32 like the lake's SGN).
    max_batch : int
        Samples drawn at once (memory bound).
    progress : callable, optional
        Called with a short message per (alpha, n) cell.

    Returns
    -------
    list of dict
        One row per (estimator, n, alpha) with the keys of :data:`COLUMNS`;
        ``estimator`` is the :func:`~sgnlake.analyze.estimators.result_key`.
    """
    if n_params < 1:
        raise ConfigError(f"n_params = {n_params} must be >= 1")
    ests = []
    for name, settings in estimators:
        spec = get_estimator(name)
        ests.append((spec.key(**settings), spec.alpha_fn(**settings)))
    for n in sizes:
        if n < 4:
            raise ConfigError(f"sample size {n} is too small: use sizes >= 4")
    rows = []
    for n in sizes:
        for alpha in alphas:
            cell_seed = [seed, int(n), int(round(alpha * 1000))]
            rng = np.random.default_rng(cell_seed)
            per_batch = max(1, max_batch // n)
            results: dict[str, list[NDArray[np.float64]]] = {key: [] for key, _ in ests}
            done = 0
            while done < n_params:
                p = min(per_batch, n_params - done)
                x = stable_rvs(alpha, (p, n), rng, dtype=dtype)
                for key, fn in ests:
                    results[key].append(fn(x))
                done += p
            for key, _ in ests:
                stats = error_stats(np.concatenate(results[key]), alpha)
                rows.append({"estimator": key, "n": int(n), "alpha": float(alpha), **stats})
            if progress is not None:
                progress(f"n={n} alpha={alpha} done")
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(value)
    v = float(value)
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    if abs(v) >= 1000:
        return f"{v:.3g}"
    return f"{v:.3f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_validation` rows.

    Parameters
    ----------
    rows : sequence of dict
        Rows with the keys of :data:`COLUMNS`.

    Returns
    -------
    str
        A GitHub-flavoured markdown table, one line per row.
    """
    header = (
        "estimator",
        "n",
        "alpha",
        "n_est",
        "median",
        "bias",
        "std",
        "RMSE",
        "share>2",
        "RMSE(1/a)",
        "1/mean(1/a)",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [r["estimator"], r["n"], f"{r['alpha']:g}", int(r["n_est"])]
        cells += [_fmt(r[c]) for c in COLUMNS[4:]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- degenerate parameters

#: Columns of :func:`sparse_validation` rows, in table order.
SPARSE_COLUMNS = (
    "n",
    "alpha",
    "n_params",
    "n_planted",
    "n_flagged",
    "precision",
    "recall",
    "median_all",
    "median_clean",
    "median_lo",
    "median_hi",
    "median_true_only",
)


def planted_sparse(
    x: NDArray[Any], share: float, rng: np.random.Generator
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Replace a ``share`` of the rows of ``x`` by degenerate (point-mass dominated) samples.

    A planted row is a point mass holding a fraction ``U(0.6, 0.99)`` of the samples (an
    input pixel that is zero in most minibatches, or a ReLU unit inactive in most of them:
    their gradient is 0 there) and the row's own stable samples elsewhere, then centred
    like SGN (the mean subtracted, so the mass sits at ``-mean``, not at 0).

    Returns
    -------
    x : numpy.ndarray
        The samples (same shape and dtype), planted rows replaced.
    planted : numpy.ndarray of bool
        True for the planted rows.
    """
    p, n = x.shape
    planted = rng.uniform(size=p) < share
    out = x.astype(np.float64)
    atom = rng.uniform(size=(p, n)) < rng.uniform(0.6, 0.99, (p, 1))
    out = np.where(planted[:, None] & atom, 0.0, out)
    out[planted] -= out[planted].mean(axis=1, keepdims=True)
    return out.astype(x.dtype), planted


def sparse_validation(
    sizes: Sequence[int] = (100, 1200),
    alphas: Sequence[float] = (1.3, 1.7),
    n_params: int = 2000,
    share: float = 0.1,
    seed: int = 0,
    k1: str | int = kernels.DEFAULT_K1,
) -> list[dict[str, Any]]:
    """The degenerate-parameter rule on stable samples with planted degenerate parameters.

    Per (n, alpha): ``n_params`` parameters of symmetric alpha-stable float32 samples, a
    ``share`` of them replaced by :func:`planted_sparse` rows. Reports how well
    :func:`sgnlake.analyze.kernels.sparse_mask` finds the planted ones (precision,
    recall) and the median of the Mohammadi alpha with them (``median_all``), without the
    flagged ones (``median_clean``, with its 95% interval, :func:`sgnlake.analyze.aggregate.
    median_interval`) and over the true stable parameters only (``median_true_only``).

    Returns
    -------
    list of dict
        One row per (n, alpha) with the keys of :data:`SPARSE_COLUMNS`.
    """
    from .aggregate import median_interval

    if not 0 <= share < 1:
        raise ConfigError(f"share = {share} must be in [0, 1)")
    rows = []
    for n in sizes:
        for alpha in alphas:
            rng = np.random.default_rng([seed, int(n), int(round(alpha * 1000)), 7])
            x = stable_rvs(alpha, (n_params, n), rng, dtype=np.float32)
            x, planted = planted_sparse(x, share, rng)
            a = kernels.mohammadi(x, k1)
            flagged = kernels.sparse_mask(x)
            tp = int((flagged & planted).sum())
            clean = np.where(flagged, np.nan, a)[None, :]
            lo, hi = median_interval(clean)
            rows.append(
                {
                    "n": int(n),
                    "alpha": float(alpha),
                    "n_params": int(n_params),
                    "n_planted": int(planted.sum()),
                    "n_flagged": int(flagged.sum()),
                    "precision": tp / flagged.sum() if flagged.any() else float("nan"),
                    "recall": tp / planted.sum() if planted.any() else float("nan"),
                    "median_all": float(np.nanmedian(a)),
                    "median_clean": float(np.nanmedian(clean)),
                    "median_lo": float(lo[0]),
                    "median_hi": float(hi[0]),
                    "median_true_only": float(np.nanmedian(a[~planted])),
                }
            )
    return rows


def format_sparse_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`sparse_validation` rows."""
    lines = ["| " + " | ".join(SPARSE_COLUMNS) + " |", "|" + "|".join("---" for _ in SPARSE_COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in SPARSE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
