"""Export from a lake: the alpha summary as CSV or Parquet, alpha as netCDF or a standalone Zarr (format 2).

The format follows the output's suffix (``.csv``, ``.parquet``, ``.nc``,
``.zarr``). Exports hold plain values: coordinates with missing config values
become floats with NaN (numbers) or strings (``""`` for missing), and nested
attributes JSON strings, so that every netCDF and Parquet reader opens them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from sgnlake.schema.conventions import variable_attrs
from sgnlake.schema.errors import ConfigError
from sgnlake.schema.names import ITERATION, PARAM

if TYPE_CHECKING:
    from .lake import Lake

#: Output suffix -> (what is exported, format).
FORMATS = {
    ".csv": ("summary", "csv"),
    ".parquet": ("summary", "parquet"),
    ".nc": ("alpha", "netcdf"),
    ".zarr": ("alpha", "zarr"),
}


def export_format(out: str) -> tuple[str, str]:
    """``(what, format)`` of an output path by its suffix; :class:`ConfigError` for another suffix."""
    suffix = os.path.splitext(os.fspath(out).rstrip("/"))[1].lower()
    if suffix not in FORMATS:
        raise ConfigError(
            f"cannot tell the export format of {out!r}: end it with .csv or .parquet (alpha summary), "
            ".nc or .zarr (alpha)"
        )
    return FORMATS[suffix]


def _need_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(
            "writing Parquet needs pyarrow, which is not installed: pip install pyarrow (or export to .csv)"
        ) from None


def _netcdf_engine() -> str:
    for engine, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf"), ("scipy", "scipy.io")):
        try:
            __import__(module)
            return engine
        except ImportError:
            continue
    raise ConfigError(
        "writing netCDF needs netCDF4, h5netcdf or scipy: pip install netCDF4 (or export to .zarr)"
    )


def _plain_values(values: np.ndarray) -> np.ndarray:
    """An object array as floats (numbers, None -> NaN) or strings (None -> "")."""
    items = list(values.ravel())
    present = [v for v in items if v is not None]
    if all(isinstance(v, bool | np.bool_) for v in present) and present and len(present) == len(items):
        return np.asarray(items, dtype=bool).reshape(values.shape)
    if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in present):
        return np.asarray([np.nan if v is None else float(v) for v in items]).reshape(values.shape)
    return np.asarray(["" if v is None else str(v) for v in items]).reshape(values.shape)


def _plain_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, str | int | float | np.number) and not isinstance(v, bool):
            out[k] = v
        else:
            out[k] = json.dumps(v, default=str)
    return out


def portable(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with object coordinates and nested attributes made plain (see module docstring)."""
    ds = ds.copy()
    for name in list(ds.variables):
        var = ds[name]
        if var.dtype == object:
            ds = ds.assign_coords({name: (var.dims, _plain_values(var.values))}) if name in ds.coords else ds
            if name in ds.data_vars:
                ds[name] = (var.dims, _plain_values(var.values))
        ds[name].attrs = _plain_attrs(dict(ds[name].attrs))
    ds.attrs = _plain_attrs(dict(ds.attrs))
    return ds


def export_summary(
    lake: Lake,
    out: str,
    runs: str | Sequence[str] | None = None,
    by: str = "module",
    estimator: str = "mohammadi",
    **kwargs: Any,
) -> pd.DataFrame:
    """Write :meth:`Lake.summary` (long format, one row per run, iteration and group) to CSV or Parquet.

    Keyword arguments select runs by config or are estimator settings (as in
    :meth:`Lake.alpha_runs`). Returns the written table.
    """
    from .views import split_where

    _, fmt = export_format(out)
    if fmt == "parquet":
        _need_pyarrow()
    where, settings = split_where(kwargs)
    ids = lake.select_runs(runs, **where)
    df = lake.summary(ids, by=by, estimator=estimator, **settings)
    if fmt == "csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    return df


def export_alpha(
    lake: Lake,
    out: str,
    runs: str | Sequence[str] | None = None,
    estimator: str = "mohammadi",
    tensor: str | None = None,
    **kwargs: Any,
) -> xr.Dataset:
    """Write alpha of the selected runs, ``(run, iteration, param)``, to netCDF or a standalone Zarr.

    The Dataset holds ``alpha`` with CF attributes and the runs' config as
    coordinates along ``run`` (:meth:`Lake.alpha_runs`). Returns what was written.
    """
    _, fmt = export_format(out)
    engine = _netcdf_engine() if fmt == "netcdf" else None
    arr = lake.alpha_runs(runs, estimator=estimator, tensor=tensor, **kwargs)
    arr = arr.assign_attrs({**arr.attrs, **variable_attrs("alpha")})
    ds = portable(arr.to_dataset(name="alpha"))
    ds.attrs = _plain_attrs({"source": f"sgnlake lake {lake.location}", **dict(arr.attrs)})
    if os.path.exists(out):
        raise ConfigError(f"{out} exists: choose a new output path")
    # uniform chunks (one run and snapshot, up to 2**16 parameters) for any store
    ds = ds.chunk({"run": 1, ITERATION: 1, PARAM: min(ds.sizes[PARAM], 1 << 16)})
    if fmt == "netcdf":
        ds.to_netcdf(out, engine=engine)
    else:  # Zarr format 2: its string coordinates are readable by every Zarr library
        ds.to_zarr(out, mode="w-", consolidated=True, zarr_format=2)
    return ds
