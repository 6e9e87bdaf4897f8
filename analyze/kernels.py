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

This module is the one import path for all of them; they live in small modules by what
they hold: :mod:`~sgnlake.analyze.sample_checks` (non-finite counts, dead parameters),
:mod:`~sgnlake.analyze.k1_rules` (K1), :mod:`~sgnlake.analyze.mohammadi`,
:mod:`~sgnlake.analyze.degenerate` (sparse parameters), :mod:`~sgnlake.analyze.hill`,
:mod:`~sgnlake.analyze.mcculloch` and :mod:`~sgnlake.analyze.gaussianity`.
"""

from __future__ import annotations

from .degenerate import (
    _PAIRWISE_MAX,
    SPARSE_DISTINCT_FRACTION,
    _pairwise_abs_sum,
    _sparse_parts,
    max_share,
    n_distinct,
    sparse_mask,
    sparse_outputs,
)
from .gaussianity import GAUSSIANITY_TESTS, benjamini_hochberg, gaussianity, gaussianity_summary
from .hill import DEFAULT_HILL_K, hill, hill_k
from .k1_rules import DEFAULT_K1, K1_RULES, choose_k1
from .mcculloch import STABLE_PARAMS, mcculloch
from .mohammadi import (
    _BLOCK_ELEMENTS,
    _LOG_GROUP,
    N_MOHAMMADI_STATS,
    _mohammadi_chunk_masked,
    _mohammadi_rows,
    _sum_log_abs_fast,
    alpha_of_inv,
    mohammadi,
    mohammadi_chunk,
    mohammadi_combine,
    mohammadi_counted,
    mohammadi_finalize,
    mohammadi_inv,
    mohammadi_outputs,
    multivariate,
    pooled,
)
from .sample_checks import FloatArray, _f64, _rows_with_nonfinite, _sum_log_abs, count_nonfinite, dead_mask

__all__ = [
    "DEFAULT_HILL_K",
    "DEFAULT_K1",
    "GAUSSIANITY_TESTS",
    "K1_RULES",
    "N_MOHAMMADI_STATS",
    "SPARSE_DISTINCT_FRACTION",
    "STABLE_PARAMS",
    "FloatArray",
    "alpha_of_inv",
    "benjamini_hochberg",
    "choose_k1",
    "count_nonfinite",
    "dead_mask",
    "gaussianity",
    "gaussianity_summary",
    "hill",
    "hill_k",
    "max_share",
    "mcculloch",
    "mohammadi",
    "mohammadi_chunk",
    "mohammadi_combine",
    "mohammadi_counted",
    "mohammadi_finalize",
    "mohammadi_inv",
    "mohammadi_outputs",
    "multivariate",
    "n_distinct",
    "pooled",
    "sparse_mask",
    "sparse_outputs",
]
#: Private helpers re-exported for the tests and benchmarks that pin them.
_PRIVATE = (
    _BLOCK_ELEMENTS,
    _LOG_GROUP,
    _PAIRWISE_MAX,
    _f64,
    _mohammadi_chunk_masked,
    _mohammadi_rows,
    _pairwise_abs_sum,
    _rows_with_nonfinite,
    _sparse_parts,
    _sum_log_abs,
    _sum_log_abs_fast,
)
