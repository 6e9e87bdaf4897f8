"""Thin xarray wrappers around :mod:`sgnlake.analyze.kernels`, lazy with Dask.

:func:`estimate` applies one registered estimator along a core dimension
(``minibatch`` by default) with ``xr.apply_ufunc(..., dask="parallelized")``;
the result has the input's dims without the core dim(s), plus ``stable_param``
(McCulloch) or ``test`` (Gaussianity).

Chunking along the core dim:

* ``mohammadi`` / ``mohammadi_inv`` stream: a parameter's samples may be split
  across chunks along the core dim. The chunk boundaries are moved to the
  nearest multiple of K1 (moving fewer than K1 samples each) so that no Y block
  straddles two chunks, then every chunk gives the 7 partial statistics of
  :func:`~sgnlake.analyze.kernels.mohammadi_chunk`, ``dask.array.reduction``
  combines them (sums, min, max; a tree reduction) and
  :func:`~sgnlake.analyze.kernels.mohammadi_finalize` turns them into alpha.
* every other estimator needs all samples of a parameter at once: the core
  dim(s) are rechunked to one chunk first (lake ``sgn`` arrays already hold all
  M minibatches of a snapshot in one chunk, so this is free there).

:data:`ESTIMATORS` lists each estimator with its settings and defaults;
:func:`result_key` names a persisted result (``"mohammadi-k1_sqrt"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from sgnlake.analyze import kernels
from sgnlake.analyze.kernels import DEFAULT_HILL_K, DEFAULT_K1, GAUSSIANITY_TESTS, K1_RULES, STABLE_PARAMS
from sgnlake.schema.errors import ConfigError
from sgnlake.schema.names import MINIBATCH, PARAM

__all__ = [
    "DEFAULT_HILL_K",
    "DEFAULT_K1",
    "ESTIMATORS",
    "EstimatorSpec",
    "count_nonfinite",
    "estimate",
    "resolve_settings",
    "result_key",
    "summarize_alpha",
]


@dataclass(frozen=True)
class EstimatorSpec:
    """One registered estimator.

    Attributes
    ----------
    name : str
        Registry key and first part of :func:`result_key`.
    description : str
        One line for help texts.
    defaults : Mapping[str, Any]
        Settings with their default values (all settings the estimator accepts).
    output_name : str
        Name of the returned DataArray.
    output_dim : str or None
        New dimension of the result (McCulloch: ``stable_param``; Gaussianity:
        ``test``), labelled by ``output_labels``.
    output_labels : tuple of str
        Coordinate values of ``output_dim``.
    streams : bool
        True when the core dim need not be in one chunk.
    default_dims : tuple of str
        Core dims used when ``estimate(dim=None)``.
    """

    name: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    output_name: str = "alpha"
    output_dim: str | None = None
    output_labels: tuple[str, ...] = ()
    streams: bool = False
    default_dims: tuple[str, ...] = (MINIBATCH,)


ESTIMATORS: dict[str, EstimatorSpec] = {
    spec.name: spec
    for spec in (
        EstimatorSpec(
            "mohammadi",
            "Mohammadi et al. 2015 (Simsekli et al. 2019) alpha per parameter; streams",
            {"k1": DEFAULT_K1},
            streams=True,
        ),
        EstimatorSpec(
            "mohammadi_inv",
            "1/alpha of the Mohammadi estimator (average this, not alpha); streams",
            {"k1": DEFAULT_K1},
            output_name="inv_alpha",
            streams=True,
        ),
        EstimatorSpec("hill", "Hill estimator on the top-k order statistics of |x|", {"k": DEFAULT_HILL_K}),
        EstimatorSpec(
            "mcculloch",
            "McCulloch 1986 quantile fit: alpha, beta, scale, loc (scipy S1)",
            output_name="stable_fit",
            output_dim="stable_param",
            output_labels=STABLE_PARAMS,
        ),
        EstimatorSpec(
            "gaussianity",
            "p-values of Shapiro-Wilk, Anderson-Darling, D'Agostino K^2, KS vs fitted normal",
            output_name="pvalue",
            output_dim="test",
            output_labels=GAUSSIANITY_TESTS,
        ),
        EstimatorSpec(
            "pooled",
            "one Mohammadi alpha over all coordinates of the core dims (Simsekli main.py)",
            {"k1": DEFAULT_K1},
            default_dims=(MINIBATCH, PARAM),
        ),
        EstimatorSpec(
            "multivariate",
            "Simsekli's alpha_estimator on row norms: first core dim = rows, the rest = vector",
            {"k1": DEFAULT_K1},
            default_dims=(MINIBATCH, PARAM),
        ),
    )
}


def _check_k1(value: Any) -> str | int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 2:
            raise ConfigError(
                f"k1 = {value} is too small: use an integer >= 2 or one of {', '.join(K1_RULES)}"
            )
        return int(value)
    if isinstance(value, str):
        if value in K1_RULES:
            return value
        if value.isdigit():
            return _check_k1(int(value))
    raise ConfigError(f"unknown k1 {value!r}: use one of {', '.join(K1_RULES)} or an integer >= 2")


def _check_hill_k(value: Any) -> int | float:
    if isinstance(value, str):
        try:
            value = int(value) if value.isdigit() else float(value)
        except ValueError:
            raise ConfigError(
                f"Hill k = {value!r} is invalid: pass a positive int or a fraction in (0, 1)"
            ) from None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if isinstance(value, (float, np.floating)) and 0 < value < 1:
        return float(value)
    raise ConfigError(f"Hill k = {value!r} is invalid: pass a positive int or a fraction in (0, 1)")


_CHECKS: dict[str, Callable[[Any], Any]] = {"k1": _check_k1, "k": _check_hill_k}


def _spec(estimator: str) -> EstimatorSpec:
    try:
        return ESTIMATORS[estimator]
    except KeyError:
        raise ConfigError(f"unknown estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}") from None


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
    spec = _spec(estimator)
    unknown = sorted(set(settings) - set(spec.defaults))
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ConfigError(f"unknown setting {unknown[0]!r} for estimator {estimator!r}: allowed: {allowed}")
    out = {}
    for key, default in spec.defaults.items():
        out[key] = _CHECKS[key](settings.get(key, default))
    return out


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
    resolved = resolve_settings(estimator, **settings)
    parts = [estimator] + [f"{k}_{v}" for k, v in resolved.items()]
    return "-".join(parts)


# --------------------------------------------------------------------------- dask streaming


def _aligned_chunks(chunks: Sequence[int], k1: int) -> tuple[int, ...]:
    """Chunk sizes of the same total whose boundaries are multiples of ``k1``.

    Each inner boundary moves to the nearest multiple of ``k1``; boundaries that
    collapse are merged. ``sum(chunks)`` must be a multiple of ``k1``.
    """
    total = int(sum(chunks))
    bounds = np.cumsum(chunks)[:-1]
    snapped = sorted({int(round(b / k1)) * k1 for b in bounds} - {0, total})
    edges = [0, *(b for b in snapped if 0 < b < total), total]
    return tuple(int(e) for e in np.diff(edges)) or (total,)


def _stats_block(block: np.ndarray, k1: int) -> np.ndarray:
    return kernels.mohammadi_chunk(block, k1)[..., None, :]


def _combine(x: np.ndarray, axis: Any = None, keepdims: bool = False, **_: Any) -> np.ndarray:
    return kernels.mohammadi_combine(x, axis=axis, keepdims=keepdims)


def _mohammadi_dask(arr: Any, k1: int, k2: int, inverse: bool) -> Any:
    """Streaming Mohammadi on a dask array with the samples on the last axis."""
    import dask.array as dsa

    arr = arr[..., : k1 * k2]
    arr = arr.rechunk({arr.ndim - 1: _aligned_chunks(arr.chunks[-1], k1)})
    nb = len(arr.chunks[-1])
    stats = arr.map_blocks(
        _stats_block,
        k1=k1,
        new_axis=arr.ndim,
        chunks=(*arr.chunks[:-1], (1,) * nb, (kernels.N_MOHAMMADI_STATS,)),
        dtype=np.float64,
        meta=np.empty((0,) * (arr.ndim + 1), dtype=np.float64),
    )
    combined = dsa.reduction(
        stats,
        chunk=_combine,
        combine=_combine,
        aggregate=_combine,
        axis=arr.ndim - 1,
        dtype=np.float64,
        concatenate=True,
        meta=np.empty((0,) * arr.ndim, dtype=np.float64),
    )
    return combined.map_blocks(
        kernels.mohammadi_finalize,
        k1=k1,
        inverse=inverse,
        drop_axis=combined.ndim - 1,
        dtype=np.float64,
        meta=np.empty((0,) * (combined.ndim - 1), dtype=np.float64),
    )


# --------------------------------------------------------------------------- estimate


def _is_dask(da: xr.DataArray) -> bool:
    return da.chunks is not None


def _one_chunk(da: xr.DataArray, dims: Sequence[str]) -> xr.DataArray:
    if _is_dask(da):
        return da.chunk(dict.fromkeys(dims, -1))
    return da


def _checked_k1(n: int, rule: str | int, dim: str) -> tuple[int, int]:
    """:func:`~sgnlake.analyze.kernels.choose_k1`, refusing K1 < 2 (every estimate would be NaN)."""
    k1, k2 = kernels.choose_k1(n, rule)
    if k1 < 2:
        raise ConfigError(
            f"K1 rule {rule!r} gives K1 = {k1} for {n} samples along {dim!r} (prime or < 4): "
            "pass k1='sqrt' or an integer K1 >= 2"
        )
    return k1, k2


def _mohammadi_kernel(x: np.ndarray, k1: int, k2: int, inverse: bool) -> np.ndarray:
    return kernels.mohammadi_finalize(kernels.mohammadi_chunk(x, k1, k2), k1, inverse=inverse)


def _mohammadi_block(block: np.ndarray, k1: int, k2: int, inverse: bool, axis: int) -> np.ndarray:
    """Mohammadi along ``axis`` of one block, the axis kept with length 1 (no copy of the block)."""
    return np.expand_dims(_mohammadi_kernel(np.moveaxis(block, axis, -1), k1, k2, inverse), axis)


def _mohammadi_blocks(arr: Any, k1: int, k2: int, inverse: bool, axis: int) -> Any:
    """Mohammadi along the last axis of ``arr`` (one chunk along it), each block in its stored layout.

    ``apply_ufunc(dask="parallelized")`` would hand every block to the kernel through
    ``dask.array.apply_gufunc``, which concatenates the core-dim chunks (here one) into a new
    C-ordered array: a transposing copy of each stored ``(1, M, P)`` chunk to ``(1, P, M)``, after
    which the kernel's reductions run along a short contiguous axis; together ~2x the CPU of the
    kernel on the stored layout (bench/alpha_throughput.py). Here xarray's core-last view is
    moved back to the input's order (``axis``: the core dim's position there), the kernel gets
    a view of each block, and its output keeps a length-1 axis (no concatenation) that is
    dropped afterwards.
    """
    if isinstance(arr, np.ndarray):
        return _mohammadi_kernel(arr, k1, k2, inverse)
    import dask.array as dsa

    x = dsa.moveaxis(arr, -1, axis)
    chunks = list(x.chunks)
    chunks[axis] = (1,) * len(chunks[axis])
    out = x.map_blocks(
        _mohammadi_block,
        k1=k1,
        k2=k2,
        inverse=inverse,
        axis=axis,
        chunks=tuple(chunks),
        dtype=np.float64,
        meta=np.empty((0,) * x.ndim, dtype=np.float64),
    )
    index: list[Any] = [slice(None)] * x.ndim
    index[axis] = 0
    return out[tuple(index)]


def _pooled_kernel(x: np.ndarray, k1: str | int, ncore: int) -> np.ndarray:
    return np.asarray(kernels.pooled(x, k1, axis=tuple(range(-ncore, 0))), dtype=np.float64)


def _multivariate_kernel(x: np.ndarray, k1: str | int, ncore: int) -> np.ndarray:
    lead = x.shape[:-ncore]
    rows = x.reshape(*lead, x.shape[-ncore], -1)
    return kernels.multivariate(rows, k1)


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
        ``settings``, ``result_key`` (and ``k1``, ``k2`` actually used for the
        Mohammadi estimators). NaN marks dead parameters (no two distinct
        finite samples); non-finite samples are dropped per parameter (see
        :mod:`sgnlake.analyze.kernels`) and counted by :func:`count_nonfinite`.

    Raises
    ------
    ConfigError
        Unknown estimator, setting or dimension, or too few samples.
    """
    spec = _spec(estimator)
    resolved = resolve_settings(estimator, **settings)
    dims = spec.default_dims if dim is None else ((dim,) if isinstance(dim, str) else tuple(dim))
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ConfigError(
            f"dimension {missing[0]!r} is not in the data (dims: {', '.join(map(str, da.dims))}): pass dim=..."
        )
    if estimator not in ("pooled", "multivariate") and len(dims) != 1:
        raise ConfigError(
            f"estimator {estimator!r} works along one dimension, got {len(dims)}: pass dim='name'"
        )
    attrs: dict[str, Any] = {
        "estimator": estimator,
        "settings": dict(resolved),
        "result_key": result_key(estimator, **resolved),
    }
    core = [list(dims)]
    out_core: list[list[str]] = [[spec.output_dim]] if spec.output_dim else [[]]
    gufunc: dict[str, Any] = {}
    if spec.output_dim:
        gufunc["output_sizes"] = {spec.output_dim: len(spec.output_labels)}

    if estimator in ("mohammadi", "mohammadi_inv"):
        (d,) = dims
        k1, k2 = _checked_k1(da.sizes[d], resolved["k1"], d)
        attrs.update(k1=k1, k2=k2)
        inverse = estimator == "mohammadi_inv"
        if _is_dask(da) and len(da.chunksizes[d]) > 1:
            out = xr.apply_ufunc(
                _mohammadi_dask,
                da,
                input_core_dims=core,
                dask="allowed",
                kwargs={"k1": k1, "k2": k2, "inverse": inverse},
            )
        else:
            out = xr.apply_ufunc(
                _mohammadi_blocks,
                da,
                input_core_dims=core,
                dask="allowed",
                kwargs={"k1": k1, "k2": k2, "inverse": inverse, "axis": da.get_axis_num(d)},
            )
    else:
        if estimator == "hill":
            func, kwargs = kernels.hill, {"k": resolved["k"]}
        elif estimator == "mcculloch":
            func, kwargs = kernels.mcculloch, {}
        elif estimator == "gaussianity":
            func, kwargs = kernels.gaussianity, {}
        elif estimator == "pooled":
            func, kwargs = _pooled_kernel, {"k1": resolved["k1"], "ncore": len(dims)}
            n_pool = math.prod(da.sizes[d] for d in dims)
            attrs["k1"], attrs["k2"] = _checked_k1(n_pool, resolved["k1"], "*".join(dims))
        else:  # multivariate
            func, kwargs = _multivariate_kernel, {"k1": resolved["k1"], "ncore": len(dims)}
            attrs["k1"], attrs["k2"] = _checked_k1(da.sizes[dims[0]], resolved["k1"], dims[0])
        if estimator == "gaussianity" and da.sizes[dims[0]] < 8:
            raise ConfigError(
                f"Gaussianity tests need at least 8 samples along {dims[0]!r}, got {da.sizes[dims[0]]}"
            )
        out = xr.apply_ufunc(
            func,
            _one_chunk(da, dims),
            input_core_dims=core,
            output_core_dims=out_core,
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


def _nonfinite_block(block: np.ndarray, axis: int) -> np.ndarray:
    """Non-finite samples of one block along ``axis`` (kept with length 1), as int32."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = block.sum()
    shape = list(block.shape)
    shape[axis] = 1
    if np.isfinite(total) or not np.issubdtype(block.dtype, np.floating):
        return np.zeros(shape, dtype=np.int32)  # one fast pass: a finite sum has no NaN/inf term
    return np.count_nonzero(~np.isfinite(block), axis=axis, keepdims=True).astype(np.int32)


def count_nonfinite(da: xr.DataArray, dim: str = MINIBATCH) -> xr.DataArray:
    """Number of non-finite (NaN, +-inf) samples along ``dim``, lazily when ``da`` is Dask-backed.

    The estimators drop these samples per parameter (see :mod:`sgnlake.analyze.kernels`);
    this is the count to report next to their results.

    Parameters
    ----------
    da : xarray.DataArray
        Samples, e.g. a tensor's ``sgn`` (iteration, minibatch, param).
    dim : str
        Sample dimension (default ``minibatch``).

    Returns
    -------
    xarray.DataArray
        int32 named ``n_nonfinite`` with ``da``'s dims minus ``dim`` (in their order) and
        its coordinates on them. Each block costs one summing pass when it holds no
        non-finite sample (the usual case).
    """
    if dim not in da.dims:
        raise ConfigError(
            f"dimension {dim!r} is not in the data (dims: {', '.join(map(str, da.dims))}): pass dim=..."
        )
    axis = da.get_axis_num(dim)
    data = da.data
    if isinstance(data, np.ndarray):
        counts: Any = _nonfinite_block(data, axis).squeeze(axis)
    else:
        chunks = list(data.chunks)
        chunks[axis] = (1,) * len(chunks[axis])
        per_block = data.map_blocks(
            _nonfinite_block,
            axis=axis,
            chunks=tuple(chunks),
            dtype=np.int32,
            meta=np.empty((0,) * data.ndim, dtype=np.int32),
        )
        if len(chunks[axis]) == 1:
            index: list[Any] = [slice(None)] * data.ndim
            index[axis] = 0
            counts = per_block[tuple(index)]
        else:
            counts = per_block.sum(axis=axis, dtype=np.int32)
    dims = [d for d in da.dims if d != dim]
    coords = {k: v for k, v in da.coords.items() if dim not in v.dims}
    return xr.DataArray(counts, dims=dims, coords=coords, name="n_nonfinite")


def summarize_alpha(alpha: xr.DataArray, dim: str | Sequence[str] | None = None) -> xr.Dataset:
    """:func:`~sgnlake.analyze.kernels.summarize` of a DataArray over ``dim``.

    Parameters
    ----------
    alpha : xarray.DataArray
        Per-parameter alphas (NaN = dead), numpy- or Dask-backed.
    dim : str or sequence of str, optional
        Dims to aggregate (default: all).

    Returns
    -------
    xarray.Dataset
        Variables ``median``, ``mean``, ``mean_inv``, ``alpha_of_mean_inv``,
        ``n_used``, ``n_nan``, ``n_gt2`` over the remaining dims (computed
        eagerly when ``alpha`` is numpy-backed, lazily otherwise).
    """
    dims = list(alpha.dims) if dim is None else ([dim] if isinstance(dim, str) else list(dim))
    names = ("median", "mean", "mean_inv", "alpha_of_mean_inv", "n_used", "n_nan", "n_gt2")

    def _stack(x: np.ndarray) -> np.ndarray:
        s = kernels.summarize(x.reshape(*x.shape[: x.ndim - len(dims)], -1), axis=-1)
        return np.stack([s[n] for n in names], axis=-1)

    out = xr.apply_ufunc(
        _stack,
        _one_chunk(alpha, dims),
        input_core_dims=[dims],
        output_core_dims=[["statistic"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"statistic": len(names)}},
    )
    return xr.Dataset({n: out.isel(statistic=i, drop=True) for i, n in enumerate(names)})
