"""The estimator registry, and :func:`estimate`: one estimator along a core dim, lazily with Dask.

Every estimator is one :class:`Estimator` in :data:`ESTIMATORS`, and the entry owns its
behaviour: its numpy kernel (:mod:`sgnlake.analyze.kernels`), its settings (validation,
defaults, command-line option, result-key naming), whether it gives one result per
parameter, how its settings become kernel parameters for a given sample size (K1, K2),
its Dask strategy (streamed chunk/combine/finalize or per block, see
:mod:`sgnlake.analyze.strategies`), its fused per-chunk path (used by
:func:`sgnlake.analyze.results.compute_alpha`) and how its output gives an alpha. Code
elsewhere asks the registry (:func:`get`, :func:`per_parameter_estimators`,
:func:`alpha_estimators`, :func:`check_estimator`, :func:`settings_from_options`)
instead of testing estimator names.

:func:`estimate` applies one estimator along a core dimension (``minibatch`` by
default); the result has the input's dims without the core dim(s), plus
``stable_param`` (McCulloch) or ``test`` (Gaussianity). :func:`result_key` names a
persisted result (``"mohammadi-k1_sqrt"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import xarray as xr

from sgnlake.analyze import kernels
from sgnlake.analyze.estimator_extras import MOHAMMADI_EXTRAS, Extra
from sgnlake.analyze.estimator_settings import (
    HILL_K,
    K1,
    Params,
    Setting,
    _plan_gaussianity,
    _plan_hill,
    _plan_k1_first,
    _plan_k1_pooled,
    _plan_none,
)
from sgnlake.analyze.kernels import DEFAULT_HILL_K, DEFAULT_K1, GAUSSIANITY_TESTS, STABLE_PARAMS
from sgnlake.analyze.strategies import Stream, count_nonfinite, layout_blocks, streamed
from sgnlake.schema.errors import ConfigError
from sgnlake.schema.names import MINIBATCH, PARAM

__all__ = [
    "DEFAULT_HILL_K",
    "DEFAULT_K1",
    "ESTIMATORS",
    "Estimator",
    "Extra",
    "Setting",
    "alpha_estimators",
    "check_estimator",
    "count_nonfinite",
    "estimate",
    "estimate_extras",
    "get",
    "per_parameter_estimators",
    "resolve_settings",
    "result_key",
    "settings_from_options",
]

# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Estimator:
    """One registered estimator and its behaviour.

    Attributes
    ----------
    name : str
        Registry key and first part of :func:`result_key`.
    description : str
        One line for help texts.
    kernel : callable
        The numpy kernel, ``kernel(x, **settings)`` with the samples on the last axis
        (per-parameter) or on the last ``ncore`` axes (``kernel(x, ncore=..., **settings)``,
        pooled estimators); float64 of shape ``(...)`` or ``(..., len(output_labels))``.
    settings : tuple of Setting
        The settings it accepts (their defaults fill in what is not given).
    per_parameter : bool
        One result per parameter along ``minibatch``; otherwise one result pooled over
        ``(minibatch, param)`` (the default core dims).
    plan : callable
        ``plan(sizes, dims, settings) -> params``: the kernel parameters for the sizes of the
        core dims (K1, K2), recorded in the result's attrs; raises a one-line
        :class:`ConfigError` when the estimator cannot work on that many samples.
    stream : Stream or None
        The streamed Dask strategy (chunk/combine/finalize, called with ``plan``'s params);
        None: the core dim(s) go to the kernel in one chunk.
    fused : callable or None
        Fused per-chunk path, ``fused(x, **params) -> (estimate, n_nonfinite)`` from one
        pass over ``x`` (samples on the last axis); used by
        :func:`sgnlake.analyze.results.compute_alpha` to read, estimate, count and write
        each result chunk in one task.
    to_alpha : callable or None
        Turns the kernel's output into alpha (``1/x`` for ``mohammadi_inv``, the ``alpha``
        label for ``mcculloch``); None when the estimator gives no alpha.
    output_name : str
        Name of the returned DataArray (of the stored output without ``output_dim``).
    output_dim : str or None
        New dimension of the result (McCulloch: ``stable_param``; Gaussianity: ``test``),
        labelled by ``output_labels``.
    output_labels : tuple of str
        Coordinate values of ``output_dim``.
    pooled : str or None
        The registered estimator that pools all coordinates of a snapshot into one sample
        of this one (``mohammadi`` -> ``pooled``), for per-parameter vs pooled comparisons.
    extras : tuple of Extra
        Further outputs stored beside the result (Mohammadi: ``inv_alpha``, ``n_distinct``,
        ``max_share``, ``sparse``). With extras, ``fused`` returns them as a third value,
        a dict by name.
    """

    name: str
    description: str
    kernel: Callable[..., np.ndarray]
    settings: tuple[Setting, ...] = ()
    per_parameter: bool = True
    plan: Callable[[Sequence[int], Sequence[str], Mapping[str, Any]], Params] = _plan_none
    stream: Stream | None = None
    fused: Callable[..., tuple[Any, ...]] | None = None
    to_alpha: Callable[[np.ndarray], np.ndarray] | None = None
    output_name: str = "alpha"
    output_dim: str | None = None
    output_labels: tuple[str, ...] = ()
    pooled: str | None = None
    extras: tuple[Extra, ...] = ()

    @property
    def defaults(self) -> dict[str, Any]:
        """Settings with their default values (all settings the estimator accepts)."""
        return {s.name: s.default for s in self.settings}

    @property
    def default_dims(self) -> tuple[str, ...]:
        """Core dims used when ``estimate(dim=None)``."""
        return (MINIBATCH,) if self.per_parameter else (MINIBATCH, PARAM)

    @property
    def stores_alpha(self) -> bool:
        """True when a stored per-parameter result has an ``alpha`` output."""
        return self.per_parameter and (self.output_name == "alpha" or "alpha" in self.output_labels)

    def resolve(self, **settings: Any) -> dict[str, Any]:
        """All settings with defaults filled in, validated (see :func:`resolve_settings`)."""
        known = {s.name: s for s in self.settings}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise ConfigError(
                f"unknown setting {unknown[0]!r} for estimator {self.name!r}: allowed: {allowed}"
            )
        return {name: s.check(settings.get(name, s.default)) for name, s in known.items()}

    def key(self, **settings: Any) -> str:
        """The result key (see :func:`result_key`)."""
        return "-".join([self.name] + [f"{k}_{v}" for k, v in self.resolve(**settings).items()])

    def alpha_fn(self, **settings: Any) -> Callable[[np.ndarray], np.ndarray]:
        """Per-parameter alpha of numpy samples (last axis) with these settings, as a function.

        Raises
        ------
        ConfigError
            The estimator gives no per-parameter alpha, or a setting is invalid.
        """
        if self.to_alpha is None or not self.per_parameter:
            names = [n for n, e in ESTIMATORS.items() if e.per_parameter and e.to_alpha is not None]
            raise ConfigError(f"estimator {self.name!r} gives no per-parameter alpha: use {', '.join(names)}")
        return partial(_alpha_of, self.kernel, self.to_alpha, self.resolve(**settings))


def _alpha_of(
    kernel: Callable[..., np.ndarray],
    to_alpha: Callable[[np.ndarray], np.ndarray],
    settings: Mapping[str, Any],
    x: np.ndarray,
) -> np.ndarray:
    return to_alpha(kernel(x, **settings))


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _reciprocal(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / x


def _first_label(x: np.ndarray) -> np.ndarray:
    return x[..., 0]


def _pooled_kernel(x: np.ndarray, k1: str | int, ncore: int) -> np.ndarray:
    return np.asarray(kernels.pooled(x, k1, axis=tuple(range(-ncore, 0))), dtype=np.float64)


def _multivariate_kernel(x: np.ndarray, k1: str | int, ncore: int) -> np.ndarray:
    lead = x.shape[:-ncore]
    rows = x.reshape(*lead, x.shape[-ncore], -1)
    return kernels.multivariate(rows, k1)


def _mohammadi_stream_chunk(block: np.ndarray, k1: int, k2: int) -> np.ndarray:
    return kernels.mohammadi_chunk(block, k1)  # k2 = this block's length / k1


def _mohammadi_stream(inverse: bool) -> Stream:
    return Stream(
        chunk=_mohammadi_stream_chunk,
        combine=kernels.mohammadi_combine,
        finalize=partial(_mohammadi_finalize, inverse=inverse),
        n_stats=kernels.N_MOHAMMADI_STATS,
        block_length=_block_k1,
        used=_used_k1k2,
    )


def _mohammadi_finalize(stats: np.ndarray, k1: int, k2: int, inverse: bool) -> np.ndarray:
    return kernels.mohammadi_finalize(stats, k1, inverse=inverse)


def _block_k1(params: Mapping[str, Any]) -> int:
    return int(params["k1"])


def _used_k1k2(params: Mapping[str, Any]) -> int:
    return int(params["k1"]) * int(params["k2"])


ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator(
            "mohammadi",
            "Mohammadi et al. 2015 (Simsekli et al. 2019) alpha per parameter; streams",
            kernels.mohammadi,
            (K1,),
            plan=_plan_k1_first,
            stream=_mohammadi_stream(inverse=False),
            fused=kernels.mohammadi_outputs,
            to_alpha=_identity,
            pooled="pooled",
            extras=MOHAMMADI_EXTRAS,
        ),
        Estimator(
            "mohammadi_inv",
            "1/alpha of the Mohammadi estimator (average this, not alpha); streams",
            kernels.mohammadi_inv,
            (K1,),
            plan=_plan_k1_first,
            stream=_mohammadi_stream(inverse=True),
            fused=partial(kernels.mohammadi_counted, inverse=True),
            to_alpha=_reciprocal,
            output_name="inv_alpha",
        ),
        Estimator(
            "hill",
            "Hill estimator on the top-k order statistics of |x|",
            kernels.hill,
            (HILL_K,),
            plan=_plan_hill,
            to_alpha=_identity,
        ),
        Estimator(
            "mcculloch",
            "McCulloch 1986 quantile fit: alpha, beta, scale, loc (scipy S1)",
            kernels.mcculloch,
            to_alpha=_first_label,
            output_name="stable_fit",
            output_dim="stable_param",
            output_labels=STABLE_PARAMS,
        ),
        Estimator(
            "gaussianity",
            "p-values of Shapiro-Wilk, Anderson-Darling, D'Agostino K^2, KS vs fitted normal",
            kernels.gaussianity,
            plan=_plan_gaussianity,
            output_name="pvalue",
            output_dim="test",
            output_labels=GAUSSIANITY_TESTS,
        ),
        Estimator(
            "pooled",
            "one Mohammadi alpha over all coordinates of the core dims (Simsekli main.py)",
            _pooled_kernel,
            (K1,),
            per_parameter=False,
            plan=_plan_k1_pooled,
        ),
        Estimator(
            "multivariate",
            "Simsekli's alpha_estimator on row norms: first core dim = rows, the rest = vector",
            _multivariate_kernel,
            (K1,),
            per_parameter=False,
            plan=_plan_k1_first,
        ),
    )
}


def get(estimator: str) -> Estimator:
    """The registry entry of ``estimator``; a one-line :class:`ConfigError` for an unknown name."""
    try:
        return ESTIMATORS[estimator]
    except KeyError:
        raise ConfigError(f"unknown estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}") from None


def per_parameter_estimators() -> list[str]:
    """Registered estimators that give one result per parameter (along ``minibatch``)."""
    return [n for n, e in ESTIMATORS.items() if e.per_parameter]


def alpha_estimators() -> list[str]:
    """Per-parameter estimators whose stored result has an ``alpha`` output (figures, reports)."""
    return [n for n, e in ESTIMATORS.items() if e.stores_alpha]


def check_estimator(estimator: str, alpha: bool = False) -> Estimator:
    """The registry entry of a per-parameter estimator (with an ``alpha`` output if ``alpha``).

    Raises
    ------
    ConfigError
        One line: unknown estimator, a pooled (per-snapshot) estimator, or (``alpha``) one
        without a per-parameter alpha.
    """
    if alpha:
        names = alpha_estimators()
        if estimator not in names:
            spec = get(estimator)
            raise ConfigError(
                f"estimator {estimator!r} gives no per-parameter alpha ({spec.description}): "
                f"use one of {', '.join(names)}"
            )
        return ESTIMATORS[estimator]
    names = per_parameter_estimators()
    if estimator not in names:
        what = "unknown estimator" if estimator not in ESTIMATORS else "per-snapshot estimator"
        raise ConfigError(f"{what} {estimator!r}: per-parameter results need one of {', '.join(names)}")
    return ESTIMATORS[estimator]


def resolve_settings(estimator: str, **settings: Any) -> dict[str, Any]:
    """Validate an estimator's settings and fill in the defaults.

    Parameters
    ----------
    estimator : str
        A key of :data:`ESTIMATORS`.
    **settings
        Settings to override (strings such as ``k1="30"`` or ``k="0.05"`` from a
        command line are converted).

    Returns
    -------
    dict
        All settings of the estimator, in the order of its defaults.

    Raises
    ------
    ConfigError
        Unknown estimator, unknown setting or invalid value.
    """
    return get(estimator).resolve(**settings)


def result_key(estimator: str, **settings: Any) -> str:
    """Storage key of a persisted result: the estimator and all its settings.

    Parameters
    ----------
    estimator : str
        A key of :data:`ESTIMATORS`.
    **settings
        Settings (defaults filled in, so equal settings give equal keys).

    Returns
    -------
    str
        ``"<estimator>[-<setting>_<value>]..."``, e.g. ``"mohammadi-k1_sqrt"``,
        ``"hill-k_0.1"``, ``"mcculloch"``; a valid Zarr node name.
    """
    return get(estimator).key(**settings)


def settings_from_options(estimator: str, options: Mapping[str, str | None]) -> dict[str, Any]:
    """Estimator settings from command-line options (``{"--k1": "30", "--hill-k": None}``).

    Options given as None are left out; the others must be settings of ``estimator``.

    Raises
    ------
    ConfigError
        One line naming the option: it does not apply to ``estimator``, or its value is invalid.
    """
    spec = get(estimator)
    mine = {s.option: s for s in spec.settings}
    out: dict[str, Any] = {}
    for option, raw in options.items():
        if raw is None:
            continue
        if option not in mine:
            users = [
                n for n in per_parameter_estimators() if option in {s.option for s in ESTIMATORS[n].settings}
            ]
            raise ConfigError(
                f"{option} applies to the {' and '.join(users)} estimator, not {estimator!r}: drop it"
            )
        try:
            out[mine[option].name] = mine[option].check(raw.strip())
        except ConfigError as e:
            raise ConfigError(f"{option} {raw!r}: {e}") from None
    return out


# --------------------------------------------------------------------------- estimate


def _is_dask(da: xr.DataArray) -> bool:
    return da.chunks is not None


def _one_chunk(da: xr.DataArray, dims: Sequence[str]) -> xr.DataArray:
    if _is_dask(da):
        return da.chunk(dict.fromkeys(dims, -1))
    return da


def estimate(
    da: xr.DataArray,
    estimator: str = "mohammadi",
    dim: str | Sequence[str] | None = None,
    **settings: Any,
) -> xr.DataArray:
    """Apply one estimator along a core dimension, lazily when ``da`` is Dask-backed.

    Parameters
    ----------
    da : xarray.DataArray
        Samples, e.g. a tensor's ``sgn`` (iteration, minibatch, param); any float
        dtype (float32 SGN is accumulated in float64).
    estimator : str
        A key of :data:`ESTIMATORS`: ``mohammadi`` (default), ``mohammadi_inv``,
        ``hill``, ``mcculloch``, ``gaussianity``, ``pooled``, ``multivariate``.
    dim : str or sequence of str, optional
        Core dim(s) consumed by the estimator. Default: ``minibatch``, and
        (``minibatch``, ``param``) for ``pooled`` (all coordinates of a snapshot
        as one sample, flattened in that order) and ``multivariate`` (rows =
        first dim, vector = the others).
    **settings
        Estimator settings (see :data:`ESTIMATORS`), e.g. ``k1="paper"`` or ``k=0.05``.

    Returns
    -------
    xarray.DataArray
        float64 with ``da``'s dims minus the core dim(s) (plus ``stable_param``
        or ``test``), ``da``'s other coordinates, and attrs ``estimator``,
        ``settings``, ``result_key`` and the kernel parameters of the estimator's
        plan (``k1``, ``k2`` actually used for the Mohammadi estimators). NaN marks
        dead parameters (no two distinct finite samples); non-finite samples are
        dropped per parameter (see :mod:`sgnlake.analyze.kernels`) and counted by
        :func:`count_nonfinite`. An estimator with a stream (Mohammadi) accepts a
        core dim split across chunks (see :mod:`sgnlake.analyze.strategies`); the
        others get it rechunked to one chunk (free for lake ``sgn`` arrays).

    Raises
    ------
    ConfigError
        Unknown estimator, setting or dimension, or too few samples.
    """
    spec = get(estimator)
    resolved = spec.resolve(**settings)
    dims = spec.default_dims if dim is None else ((dim,) if isinstance(dim, str) else tuple(dim))
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ConfigError(
            f"dimension {missing[0]!r} is not in the data (dims: {', '.join(map(str, da.dims))}): pass dim=..."
        )
    if spec.per_parameter and len(dims) != 1:
        raise ConfigError(
            f"estimator {estimator!r} works along one dimension, got {len(dims)}: pass dim='name'"
        )
    params = spec.plan(tuple(da.sizes[d] for d in dims), dims, resolved)
    attrs: dict[str, Any] = {
        "estimator": estimator,
        "settings": dict(resolved),
        "result_key": spec.key(**resolved),
        **params,
    }
    kwargs = dict(resolved) if spec.per_parameter else {**resolved, "ncore": len(dims)}
    core = [list(dims)]
    if spec.stream is not None:
        (d,) = dims
        if _is_dask(da) and len(da.chunksizes[d]) > 1:
            func, fkw = streamed, {"stream": spec.stream, "params": params}
        else:
            func, fkw = layout_blocks, {"kernel": spec.kernel, "kwargs": kwargs, "axis": da.get_axis_num(d)}
        out = xr.apply_ufunc(func, da, input_core_dims=core, dask="allowed", kwargs=fkw)
    else:
        gufunc: dict[str, Any] = {}
        if spec.output_dim:
            gufunc["output_sizes"] = {spec.output_dim: len(spec.output_labels)}
        out = xr.apply_ufunc(
            spec.kernel,
            _one_chunk(da, dims),
            input_core_dims=core,
            output_core_dims=[[spec.output_dim]] if spec.output_dim else [[]],
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs=gufunc,
            kwargs=kwargs,
        )
        if spec.output_dim:
            out = out.assign_coords({spec.output_dim: list(spec.output_labels)})
    out.name = spec.output_name
    out.attrs = attrs
    return out


def estimate_extras(
    da: xr.DataArray, estimator: str = "mohammadi", dim: str = MINIBATCH, **settings: Any
) -> dict[str, xr.DataArray]:
    """The :attr:`Estimator.extras` of ``estimator`` along ``dim``, lazily when ``da`` is Dask-backed.

    The core dim goes to each kernel in one chunk (free for lake ``sgn`` arrays), so the
    values equal the numpy kernels' for any chunking.

    Returns
    -------
    dict of str to xarray.DataArray
        One array per extra output, named by it, with ``da``'s dims minus ``dim``
        (empty for an estimator without extras).
    """
    spec = get(estimator)
    resolved = spec.resolve(**settings)
    if dim not in da.dims:
        raise ConfigError(
            f"dimension {dim!r} is not in the data (dims: {', '.join(map(str, da.dims))}): pass dim=..."
        )
    x = _one_chunk(da, (dim,))
    out = {}
    for extra in spec.extras:
        res = xr.apply_ufunc(
            extra.kernel,
            x,
            input_core_dims=[[dim]],
            dask="parallelized",
            output_dtypes=[np.dtype(extra.dtype)],
            kwargs=dict(resolved),
        )
        out[extra.name] = res.astype(extra.dtype).rename(extra.name)
    return out
