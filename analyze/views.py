"""Cross-run views of a lake: runs selected by config, alpha and summaries with a ``run`` dimension.

``lake.alpha_runs(batch_size=[50, 100])`` is one DataArray ``(run, iteration, param)``
whose ``run`` coordinate carries the runs' config (``batch_size``, ``depth``,
``width``, ``lr``, ``seed``, ...) as non-index coordinates, so that
``.groupby("batch_size")`` or ``.swap_dims(run="batch_size")`` work directly.
Also here: parameter selections by index tuple (``("fc1.weight", (3, 17))``) and
the text of ``repr(lake)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from sgnlake.schema.conventions import ravel_param
from sgnlake.schema.meta import TensorInfo
from sgnlake.schema.names import ITERATION, PARAM, RESULTS_GROUP
from sgnlake.schema.run_table import CONFIG_COLUMNS, config_columns

from .selection import IterationSel, SelectionError

if TYPE_CHECKING:
    from .lake import Lake

#: A parameter selection: flat index / list / slice (as before), one index tuple
#: ``(3, 17)``, a list of index tuples, or ``(tensor, index)`` pairs for views over
#: several tensors (``("fc1.weight", (3, 17))`` or a list of such pairs).
ParamSel = Any


class RunIds(list):
    """The run ids (a list); calling it, as in ``lake.run_ids()``, still works but is deprecated."""

    def __call__(self) -> list[str]:
        warnings.warn(
            "lake.run_ids() is deprecated: lake.run_ids is a property (a list of run ids)",
            DeprecationWarning,
            stacklevel=2,
        )
        return list(self)


# ---------------------------------------------------------------------- runs by config


def _matches(value: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
    for w in options:
        if value == w or (isinstance(value, float) and isinstance(w, int | float) and np.isclose(value, w)):
            return True
    return False


def filter_by_config(lake: Lake, ids: Sequence[str], where: Mapping[str, Any]) -> list[str]:
    """The runs of ``ids`` whose config matches every ``column=value`` (or list of values) in ``where``.

    Raises
    ------
    SelectionError
        A key is not a run-table config column, or no run matches.
    """
    if not where:
        return list(ids)
    known = set(config_columns()) | set(CONFIG_COLUMNS)
    bad = [k for k in where if k not in known]
    if bad:
        raise SelectionError(
            f"cannot select runs by {bad[0]!r}: use config columns ({', '.join(CONFIG_COLUMNS)})"
        )
    out = [r for r in ids if all(_matches(lake.config_row(r).get(k), v) for k, v in where.items())]
    if not out:
        asked = ", ".join(f"{k}={v!r}" for k, v in where.items())
        raise SelectionError(f"no run has {asked} (see lake.runs for the runs' config)")
    return out


def split_where(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword arguments into config filters (run-table columns) and estimator settings."""
    cols = set(config_columns()) | set(CONFIG_COLUMNS)
    where = {k: v for k, v in kwargs.items() if k in cols}
    settings = {k: v for k, v in kwargs.items() if k not in cols}
    return where, settings


# ---------------------------------------------------------------------- parameter selections


def _is_index_tuple(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(i, int | np.integer) for i in x)


def _is_tensor_pair(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)


def flat_params(params: ParamSel, info: TensorInfo) -> Any:
    """``params`` for one tensor as flat positions (index tuples raveled; others unchanged).

    A tuple of ints is one index into the tensor (``(3, 17)`` of ``fc1.weight``);
    a list of such tuples several. Lists of ints and slices are flat positions.

    Raises
    ------
    SelectionError
        An index tuple does not fit the tensor's shape.
    """
    if params is None or isinstance(params, slice | int | np.integer):
        return params
    if _is_tensor_pair(params):
        params = [params]
    if _is_index_tuple(params):
        params = [params]
    if isinstance(params, list) and params and all(_is_tensor_pair(p) for p in params):
        others = sorted({p[0] for p in params} - {info.name})
        if others:
            raise SelectionError(f"params name tensor {others[0]!r}, but the selection is of {info.name!r}")
        params = [p[1] for p in params]
    if isinstance(params, list) and params and all(_is_index_tuple(p) for p in params):
        try:
            return ravel_param(params, info.shape).tolist()
        except ValueError as e:
            raise SelectionError(f"tensor {info.name!r}: {e}") from None
    return params


def param_positions(params: ParamSel, infos: Sequence[TensorInfo]) -> np.ndarray | None:
    """Positions along a ``param`` axis that concatenates ``infos`` (as :meth:`Lake.alpha` does).

    Accepts ``(tensor, index)`` pairs (``("fc1.weight", (3, 17))``, or a flat int as
    the index), lists of them, or plain positions along the concatenated axis.
    """
    if params is None:
        return None
    offsets, off = {}, 0
    for t in infos:
        offsets[t.name] = (off, t)
        off += t.n_stored
    items = [params] if _is_tensor_pair(params) else params
    if isinstance(items, list) and items and all(_is_tensor_pair(p) for p in items):
        out = []
        for name, index in items:
            if name not in offsets:
                raise SelectionError(f"no tensor {name!r} (tensors: {', '.join(offsets)})")
            base, info = offsets[name]
            if info.stored is not None:
                raise SelectionError(
                    f"tensor {name!r} is stored as a parameter sample: select its params by position"
                )
            flat = flat_params(index if not isinstance(index, int | np.integer) else [index], info)
            flat = np.atleast_1d(np.asarray(flat, dtype=np.int64))
            if np.any((flat < 0) | (flat >= info.numel)):
                raise SelectionError(f"param {flat.max()} out of range: {name!r} has {info.numel} params")
            out.append(base + flat)
        return np.concatenate(out)
    if isinstance(items, slice):
        return np.arange(off, dtype=np.int64)[items]
    pos = np.atleast_1d(np.asarray(items))
    if pos.dtype.kind not in "iu":
        raise SelectionError(f"params must be ints, (tensor, index) pairs or a slice, got {params!r}")
    if np.any((pos < 0) | (pos >= off)):
        raise SelectionError(f"param {pos.max()} out of range: the view has {off} params")
    return pos.astype(np.int64)


# ---------------------------------------------------------------------- cross-run views


def _stack(arrays: Sequence[xr.DataArray], lake: Lake, ids: Sequence[str]) -> xr.DataArray:
    out = xr.concat(
        [a.drop_attrs(deep=False) for a in arrays],
        dim="run",
        join="outer",
        coords="minimal",
        compat="override",
        fill_value=np.nan,
    )
    coords: dict[str, Any] = {"run": list(ids)}
    cfg = [lake.config_coords(r) for r in ids]
    for k in CONFIG_COLUMNS:
        coords[k] = ("run", [c[k] for c in cfg])
    return out.assign_coords(coords)


def alpha_runs(
    lake: Lake,
    runs: str | Sequence[str] | None = None,
    estimator: str = "mohammadi",
    tensor: str | None = None,
    iterations: IterationSel = None,
    params: ParamSel = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Alpha of several runs, lazily, stacked along a ``run`` dimension with config coordinates.

    Parameters
    ----------
    lake : Lake
        An opened lake.
    runs : str or list of str, optional
        Run ids or glob patterns (default: every run with committed snapshots).
    estimator : str
        Estimator name.
    tensor : str, optional
        One tensor (default: all tensors, concatenated along ``param``).
    iterations : int, list of int, slice or None
        Iteration values; a run without one of them gets NaN there (outer join).
    params : optional
        Flat positions, index tuples (with ``tensor``) or ``(tensor, index)`` pairs.
    **kwargs
        Run-table config columns select runs (``batch_size=[50, 100]``, ``depth=2``);
        any other keyword is an estimator setting (``k1=...``).

    Returns
    -------
    xarray.DataArray
        Dims ``(run, iteration, param)``; coords ``run`` and :data:`CONFIG_COLUMNS`
        along it, ``iteration`` the union of the runs' iterations (NaN where a run has
        no snapshot), ``param`` coordinates as in :meth:`Lake.alpha`. Runs in
        :func:`~sgnlake.schema.run_table.run_sort_key` order.

    Raises
    ------
    SelectionError
        No run matches, or runs have different tensor layouts along ``param``.
    """
    where, settings = split_where(kwargs)
    ids = [r for r in lake.select_runs(runs, **where) if lake.meta(r).committed > 0]
    if not ids:
        raise SelectionError("no selected run has a committed snapshot yet: nothing to estimate")
    arrays = []
    for r in ids:
        a = lake.alpha(r, estimator=estimator, tensor=tensor, **settings)
        if iterations is not None:
            a = a.sel({ITERATION: _iteration_values(a, iterations, r)})
        if params is not None:
            infos = [lake.tensor_info(r, tensor)] if tensor else list(lake.meta(r).tensors)
            pos = param_positions(params if tensor is None else _pairs(params, tensor), infos)
            a = a.isel({PARAM: pos})
        arrays.append(a)
    _check_layout(arrays, ids)
    out = _stack(arrays, lake, ids)
    out.name = "alpha"
    out.attrs = {k: v for k, v in arrays[0].attrs.items() if k != "run_id" and k != "n_stored"}
    return out


def _pairs(params: ParamSel, tensor: str) -> ParamSel:
    """Params for one tensor as ``(tensor, index)`` pairs (plain flat positions stay positions)."""
    if _is_tensor_pair(params) or (isinstance(params, list) and params and _is_tensor_pair(params[0])):
        return params
    if _is_index_tuple(params):
        return [(tensor, params)]
    if isinstance(params, list) and params and all(_is_index_tuple(p) for p in params):
        return [(tensor, p) for p in params]
    return params


def _iteration_values(a: xr.DataArray, sel: IterationSel, run: str) -> Any:
    from .selection import _label_positions

    pos, _ = _label_positions(a[ITERATION].values, sel, run)
    return a[ITERATION].values[pos]


def _check_layout(arrays: Sequence[xr.DataArray], ids: Sequence[str]) -> None:
    ref = arrays[0]
    for r, a in zip(ids[1:], arrays[1:], strict=True):
        same = a.sizes[PARAM] == ref.sizes[PARAM] and all(
            np.array_equal(a[c].values, ref[c].values) for c in ("tensor", "index") if c in a.coords
        )
        if not same:
            raise SelectionError(
                f"runs {ids[0]!r} and {r!r} have different parameters ({ref.sizes[PARAM]} vs "
                f"{a.sizes[PARAM]}): select runs of one model, or one tensor= of the same shape"
            )


def summary_runs(
    lake: Lake,
    runs: str | Sequence[str] | None = None,
    by: str = "module",
    estimator: str = "mohammadi",
    iterations: IterationSel = None,
    **kwargs: Any,
) -> xr.Dataset:
    """:func:`~sgnlake.analyze.summary.summary` of several runs as a Dataset ``(run, iteration, group)``.

    Keyword arguments select runs by config (``batch_size=[50, 100]``) or are
    estimator settings, as in :func:`alpha_runs`. The statistics
    (:data:`~sgnlake.analyze.aggregate.STAT_COLUMNS`) are variables; config columns
    are coordinates along ``run``; NaN where a run has no snapshot at an iteration.
    """
    from .aggregate import STAT_COLUMNS
    from .summary import summary

    where, settings = split_where(kwargs)
    ids = lake.select_runs(runs, **where)
    df = summary(lake, ids, by=by, estimator=estimator, iterations=iterations, **settings)
    if df.empty:
        raise SelectionError("no selected run has a committed snapshot yet: nothing to summarise")
    groups = list(dict.fromkeys(df["group"]))
    ids = [r for r in ids if r in set(df["run_id"])]
    stats = [c for c in STAT_COLUMNS if c in df.columns]
    ds = df.set_index(["run_id", ITERATION, "group"])[stats].to_xarray()
    ds = ds.rename({"run_id": "run"}).reindex(run=ids, group=groups)
    cfg = [lake.config_coords(r) for r in ids]
    ds = ds.assign_coords({k: ("run", [c[k] for c in cfg]) for k in CONFIG_COLUMNS})
    ds.attrs = {"by": by, "estimator": estimator, "key": str(df["key"].iloc[0])}
    return ds


# ---------------------------------------------------------------------- repr


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def lake_repr(lake: Lake, max_runs: int = 12) -> str:
    """Text of ``repr(lake)``: runs with config, snapshots, SGN size (from metadata), stored results."""
    try:
        ids = list(lake.run_ids)
    except Exception as e:  # repr must not raise
        return f"<sgnlake Lake {lake.location!r} (unreadable: {type(e).__name__})>"
    lines = [f"<sgnlake Lake {lake.location!r}: {len(ids)} run(s)>"]
    total_snap, total_bytes = 0, 0.0
    rows = []
    for r in ids:
        try:
            m = lake.meta(r)
        except Exception:
            rows.append(f"  {r}: metadata unreadable")
            continue
        itemsize = 2 if m.config.storage.dtype == "float16" else 4
        n_params = sum(t.numel for t in m.tensors)
        nbytes = m.committed * n_params * (m.n_minibatches + 2) * itemsize
        total_snap += m.committed
        total_bytes += nbytes
        if len(rows) < max_runs:
            c = m.config
            args = ", ".join(f"{k}={v}" for k, v in dict(c.model_args).items())
            rows.append(
                f"  {r}: {c.model}({args}) b={c.batch_size} lr={c.lr:g} seed={c.seed} {m.status}, "
                f"{m.committed}/{len(m.planned_iterations)} snapshots, {n_params} params, "
                f"{m.n_minibatches} minibatches"
            )
    if len(ids) > max_runs:
        rows.append(f"  ... {len(ids) - max_runs} more (lake.runs lists all)")
    lines.extend(rows)
    n_results = 0
    try:
        if RESULTS_GROUP in lake.root:
            for _, rg in lake.root[RESULTS_GROUP].groups():
                n_results += sum(1 for _ in rg.groups())
    except Exception:
        pass
    lines.append(
        f"  {total_snap} committed snapshot(s), ~{_size(total_bytes)} of SGN+grad+weight uncompressed, "
        f"{n_results} stored result(s) (lake.stored_results())"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------- datatree


def datatree(lake: Lake, runs: str | Sequence[str] | None = None) -> xr.DataTree:
    """The lake as an :class:`xarray.DataTree` in a stable order, without internals.

    What ``xr.open_datatree(lake, engine="zarr", consolidated=False)`` shows, with:
    runs in :func:`~sgnlake.schema.run_table.run_sort_key` order and tensors in the
    model's order (zarr lists groups in storage order), ``checkpoints`` (opaque
    resume state) left out, internal ``_sgnlake*`` attributes dropped, and only the
    committed snapshots of each run. Lazy: arrays are read when used.
    """
    from sgnlake.schema.conventions import public_attrs
    from sgnlake.schema.names import RUNS_GROUP

    ids = lake.select_runs(runs)
    children: dict[str, xr.DataTree] = {}
    for r in ids:
        meta = lake.meta(r)
        n = meta.committed
        path = f"{RUNS_GROUP}/{r}"
        ds = xr.open_zarr(lake.root.store, group=path, consolidated=False, zarr_format=3)
        ds = ds.isel({ITERATION: slice(0, n)}) if ITERATION in ds.dims else ds
        ds.attrs = public_attrs(ds.attrs)
        tensors = {}
        for t in meta.tensors:
            tds = xr.open_zarr(lake.root.store, group=f"{path}/{t.name}", consolidated=False, zarr_format=3)
            tds = tds.isel({ITERATION: slice(0, n)}) if ITERATION in tds.dims else tds
            tds.attrs = public_attrs(tds.attrs)
            tensors[t.name] = xr.DataTree(tds)
        children[r] = xr.DataTree(ds, children=tensors)
    root_attrs = public_attrs(dict(lake.root.attrs))
    return xr.DataTree(xr.Dataset(attrs=root_attrs), children={RUNS_GROUP: xr.DataTree(children=children)})
