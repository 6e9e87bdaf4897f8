"""Extra per-parameter outputs stored beside an estimator's result (Mohammadi: ``inv_alpha`` and the
degenerate-parameter classification of issue 13).

Used by the registry in :mod:`sgnlake.analyze.estimators` (which re-exports :class:`Extra`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sgnlake.analyze import kernels


@dataclass(frozen=True)
class Extra:
    """A further per-parameter output stored beside an estimator's result.

    Attributes
    ----------
    name : str
        Name of the stored array (beside ``alpha``).
    dtype : str
        Its dtype (float: NaN fill; integer: -1 fill).
    kernel : callable
        ``kernel(x, **settings)`` with all samples of a parameter on the last axis; the
        estimator's fused kernel gives the same values (its third return value).
    description : str
        One line for docs.
    """

    name: str
    dtype: str
    kernel: Callable[..., np.ndarray]
    description: str


def _inv_alpha_extra(x: np.ndarray, k1: str | int) -> np.ndarray:
    return kernels.mohammadi_inv(x, k1)


def _n_distinct_extra(x: np.ndarray, **_: Any) -> np.ndarray:
    return kernels.n_distinct(x)


def _max_share_extra(x: np.ndarray, **_: Any) -> np.ndarray:
    return kernels.max_share(x).astype(np.float32)


def _sparse_extra(x: np.ndarray, **_: Any) -> np.ndarray:
    return kernels.sparse_mask(x).astype(np.int8)


#: The degenerate-parameter outputs (see :func:`sgnlake.analyze.kernels.sparse_outputs`).
SPARSE_EXTRAS = (
    Extra("n_distinct", "int32", _n_distinct_extra, "distinct finite non-zero SGN values"),
    Extra("max_share", "float32", _max_share_extra, "largest sample's share of sum |SGN|"),
    Extra("sparse", "int8", _sparse_extra, "1: degenerate (few distinct values), left out of medians"),
)
MOHAMMADI_EXTRAS = (
    Extra("inv_alpha", "float64", _inv_alpha_extra, "estimate of 1/alpha, negative values kept"),
    *SPARSE_EXTRAS,
)
