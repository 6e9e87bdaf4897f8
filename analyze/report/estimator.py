"""Everything the report knows about estimators by name, in one place.

The report draws one alpha per parameter; which estimators give one, how their
settings read in captions, and which of them has a pooled counterpart (the
per-parameter vs pooled figure) are decided here and nowhere else in
:mod:`sgnlake.analyze.report`. An estimator registry that owns this behaviour
replaces the bodies of these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def resolve_report_estimator(estimator: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check that ``estimator`` gives one alpha per parameter and fill in its default settings.

    Raises
    ------
    ConfigError
        Unknown estimator or setting, or an estimator without a per-parameter
        alpha (``gaussianity``, ``mohammadi_inv``, ``pooled``, ``multivariate``).
    """
    from ..estimators import check_estimator, get

    resolved = get(estimator).resolve(**settings)  # one-line error for unknown names and settings
    check_estimator(estimator, alpha=True)  # and for estimators without a per-parameter alpha
    return resolved


def _settings_text(estimator: str, settings: Mapping[str, Any]) -> str:
    if not settings:
        return f"{estimator} (default settings)"
    return f"{estimator} (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"


def pooled_supported(estimator: str) -> bool:
    """Whether the per-parameter vs pooled figure is drawn for ``estimator`` (the pooled estimate is Mohammadi's)."""
    from ..estimators import get

    return get(estimator).pooled is not None


def pooled_alpha(x: np.ndarray, settings: Mapping[str, Any]) -> float:
    """Pooled alpha of a ``(minibatch, param)`` block with the report's (resolved) estimator ``settings``."""
    return _pooled_alpha_value(x, settings["k1"])


def _pooled_alpha_value(x: np.ndarray, k1: Any) -> float:
    """Mohammadi alpha of all values of a ``(minibatch, param)`` block as one sample.

    Flattened minibatch-major (C order), as Simsekli et al. (2019) do; non-finite
    values are dropped as in every kernel (with the K1 blocks that hold them); NaN
    when the block holds no usable values.
    """
    from ..kernels import pooled

    a = np.asarray(x)
    if a.size < 4:
        return float("nan")
    return float(pooled(a, k1))
