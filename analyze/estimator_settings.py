"""Estimator settings (validation, defaults, command-line options) and how they become kernel parameters.

Used by the registry in :mod:`sgnlake.analyze.estimators` (which re-exports :class:`Setting`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sgnlake.analyze import kernels
from sgnlake.analyze.kernels import DEFAULT_HILL_K, DEFAULT_K1, K1_RULES
from sgnlake.schema.errors import ConfigError

Params = dict[str, Any]


def _check_k1(value: Any) -> str | int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 2:
            raise ConfigError(
                f"k1 = {value} is too small: use an integer >= 2 or one of {', '.join(K1_RULES)}"
            )
        return int(value)
    if isinstance(value, str):
        value = value.strip()
        if value in K1_RULES:
            return value
        if value.isdigit():
            return _check_k1(int(value))
    raise ConfigError(f"unknown k1 {value!r}: use one of {', '.join(K1_RULES)} or an integer >= 2")


def _check_hill_k(value: Any) -> int | float:
    bad = f"Hill k = {value!r} is invalid: pass a positive int or a fraction in (0, 1)"
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            raise ConfigError(bad) from None
        if isinstance(value, float) and value >= 1 and value == int(value):
            value = int(value)  # "10.0" counts 10 order statistics
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if isinstance(value, (float, np.floating)) and 0 < value < 1:
        return float(value)
    raise ConfigError(bad)


@dataclass(frozen=True)
class Setting:
    """One estimator setting: its name (in keys and ``**settings``), default, check and CLI option.

    ``check`` validates a value and converts strings from a command line
    (``"30"`` -> 30); it raises a one-line :class:`ConfigError`.
    """

    name: str
    default: Any
    check: Callable[[Any], Any]
    option: str


K1 = Setting("k1", DEFAULT_K1, _check_k1, "--k1")
HILL_K = Setting("k", DEFAULT_HILL_K, _check_hill_k, "--hill-k")


# --------------------------------------------------------------------------- kernel parameters


def _k1k2(n: int, rule: str | int, dim: str) -> tuple[int, int]:
    """:func:`~sgnlake.analyze.kernels.choose_k1`, refusing K1 < 2 or K2 < 2 (every estimate NaN)."""
    if isinstance(rule, (int, np.integer)) and not isinstance(rule, bool) and not 2 <= rule <= n // 2:
        valid = f"an integer K1 in 2..{n // 2}" if n >= 4 else "more samples (at least 4)"
        raise ConfigError(
            f"K1 = {rule} for {n} samples along {dim!r} leaves K2 = {n // rule if rule else 0} block(s) of "
            f"K1 samples; the estimator needs K1 >= 2 and K2 >= 2: pass {valid} or k1='sqrt'"
        )
    k1, k2 = kernels.choose_k1(n, rule)
    if k1 < 2:
        raise ConfigError(
            f"K1 rule {rule!r} gives K1 = {k1} for {n} samples along {dim!r} (prime or < 4): "
            "pass k1='sqrt' or an integer K1 >= 2"
        )
    return k1, k2


def _plan_k1_first(sizes: Sequence[int], dims: Sequence[str], s: Mapping[str, Any]) -> Params:
    """K1, K2 for the samples along the first core dim (per-parameter and multivariate)."""
    k1, k2 = _k1k2(sizes[0], s["k1"], dims[0])
    return {"k1": k1, "k2": k2}


def _plan_k1_pooled(sizes: Sequence[int], dims: Sequence[str], s: Mapping[str, Any]) -> Params:
    """K1, K2 for all coordinates of the core dims pooled into one sample."""
    k1, k2 = _k1k2(math.prod(sizes), s["k1"], "*".join(dims))
    return {"k1": k1, "k2": k2}


def _plan_hill(sizes: Sequence[int], dims: Sequence[str], s: Mapping[str, Any]) -> Params:
    """Refuse a Hill k that uses every sample (k >= M leaves no threshold order statistic)."""
    n, k = sizes[0], s["k"]
    if isinstance(k, int) and k >= n >= 2:
        raise ConfigError(
            f"Hill k = {k} needs more than {k} samples, but {dims[0]!r} has {n}: pass an integer "
            f"k in 1..{n - 1} or a fraction in (0, 1)"
        )
    return {}


def _plan_gaussianity(sizes: Sequence[int], dims: Sequence[str], s: Mapping[str, Any]) -> Params:
    if sizes[0] < 8:
        raise ConfigError(f"Gaussianity tests need at least 8 samples along {dims[0]!r}, got {sizes[0]}")
    return {}


def _plan_none(sizes: Sequence[int], dims: Sequence[str], s: Mapping[str, Any]) -> Params:
    return {}
