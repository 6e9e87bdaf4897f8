"""Lazy, labelled access to a lake: runs table, SGN/grad/weight selections, snapshots.

Opening a lake reads its root metadata only; every selection builds a Dask graph
over the Zarr arrays (one task per stored chunk) and reads nothing until it is
computed. Readers use only the first ``committed`` snapshots of a run (the
commit marker), so a run that is still being written is safe to analyse.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from dask.base import tokenize

from sgnlake.schema.conventions import unravel_param
from sgnlake.schema.errors import LakeError, RunNotFoundError, SgnlakeError
from sgnlake.schema.lake import (
    DamagedError,
    open_lake_group,
    read_run_meta,
    run_damage,
    run_group,
    run_ids,
    scan_runs,
)
from sgnlake.schema.meta import RunMeta, TensorInfo
from sgnlake.schema.names import (
    ACCURACY,
    GRAD,
    ITERATION,
    LOSS,
    MINIBATCH,
    PARAM,
    SGN,
    WEIGHT,
)
from sgnlake.schema.run_table import CONFIG_COLUMNS, STATE_COLUMNS, config_columns, run_row

from .chunk_reader import ChunkReader
from .selection import (
    IndexSel,
    IterationSel,
    SelectionError,
    _index_positions,
    _label_positions,
    _take,
)
from .views import RunIds, flat_params

if TYPE_CHECKING:
    from .results import ComputeReport


def open_lake(
    location: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    read_only: bool = False,
    skip_corrupt: bool = False,
) -> Lake:
    """Open a lake lazily (reads its root metadata only).

    Parameters
    ----------
    location : str or path
        Local path, ``file://`` URL or any fsspec URL (``s3://bucket/lake``).
    storage_options : mapping, optional
        fsspec options (credentials, ``client_kwargs.endpoint_url``, ...).
    read_only : bool
        Refuse to store derived results (:meth:`Lake.compute_alpha` raises).
    skip_corrupt : bool
        Read chunks that cannot be decoded as NaN and list them in
        :attr:`Lake.corrupt_chunks`, instead of raising
        :class:`~sgnlake.schema.errors.CorruptChunkError` naming the chunk.

    Returns
    -------
    Lake

    Raises
    ------
    NotALakeError
        Nothing at ``location``, or something that is not an sgnlake lake.
    SchemaVersionError
        The lake was written by a newer sgnlake.
    """
    loc = os.fspath(location)
    root = open_lake_group(loc, mode="r", storage_options=storage_options)
    return Lake(loc, root, storage_options=storage_options, read_only=read_only, skip_corrupt=skip_corrupt)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _as_list(x: str | Sequence[str] | None) -> list[str] | None:
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)


class Lake:
    """A lake opened for analysis. Create with :func:`open_lake`.

    Metadata (run attributes, iteration coordinates) is read on first use and
    cached; :meth:`refresh` forgets it (to see snapshots committed since).
    """

    def __init__(
        self,
        location: str,
        root: zarr.Group,
        *,
        storage_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
        skip_corrupt: bool = False,
    ) -> None:
        self.location = location
        self.storage_options = dict(storage_options or {})
        self.read_only = read_only
        #: Read a chunk that cannot be decoded as NaN (recorded in :attr:`corrupt_chunks`)
        #: instead of raising :class:`~sgnlake.schema.errors.CorruptChunkError`.
        self.skip_corrupt = skip_corrupt
        #: Chunks read as NaN because they could not be decoded (``skip_corrupt``; filled
        #: by reads in this process, i.e. Dask's threaded scheduler, not by remote workers).
        self.corrupt_chunks: list[str] = []
        self._root = root
        self._meta: dict[str, RunMeta] = {}
        self._iterations: dict[str, np.ndarray] = {}
        self._groups: dict[str, zarr.Group] = {}
        self._param_index: dict[tuple[str, str], np.ndarray] = {}
        self._writable: zarr.Group | None = None
        self._damaged: dict[str, str] | None = None
        #: Damaged runs left out of the last :meth:`select_runs` of all runs or a glob
        #: (``{run id: one-line damage naming the file}``); callers report them.
        self.skipped_runs: dict[str, str] = {}

    def __repr__(self) -> str:
        from .views import lake_repr

        return lake_repr(self)

    # ------------------------------------------------------------------ metadata

    @property
    def root(self) -> zarr.Group:
        """The lake's root Zarr group (read-only)."""
        return self._root

    def refresh(self) -> None:
        """Forget cached run metadata, so new runs and snapshots become visible."""
        self._meta.clear()
        self._iterations.clear()
        self._groups.clear()
        self._damaged = None
        self._param_index.clear()

    def damaged_runs(self) -> dict[str, str]:
        """``{run id: one line naming the run and file}`` for every run whose metadata is damaged.

        Reads every run's metadata and its arrays' metadata once (cached until :meth:`refresh`).
        """
        if self._damaged is None:
            ok, damaged = scan_runs(self._root)
            for run in ok:
                try:
                    self.meta(run)
                except DamagedError as e:
                    damaged[run] = str(e)
            self._damaged = dict(sorted(damaged.items()))
        return self._damaged

    @property
    def run_ids(self) -> RunIds:
        """Ids of the runs in the lake, sorted by config (:func:`~sgnlake.schema.run_table.run_sort_key`).

        Runs whose metadata is damaged are left out (see :meth:`damaged_runs`). A
        property, like :attr:`runs`; calling it (``lake.run_ids()``) still works but
        is deprecated.
        """
        damaged = self.damaged_runs()
        return RunIds(r for r in run_ids(self._root) if r not in damaged)

    def select_runs(self, runs: str | Sequence[str] | None = None, **where: Any) -> list[str]:
        """Resolve run ids and glob patterns (``'fcn-*'``) to the matching run ids, sorted by config.

        Keyword arguments select by config column (``batch_size=[50, 100]``,
        ``depth=2``): a value or a list of accepted values.

        Raises
        ------
        RunNotFoundError
            An exact id is not in the lake, or no run matches at all.
        SelectionError
            A keyword is not a config column, or no run has the asked config.
        """
        from .views import filter_by_config

        known = list(self.run_ids)
        damaged = self.damaged_runs()
        pats = _as_list(runs)
        if pats is None:
            self.skipped_runs = dict(damaged)
            if not known:
                if damaged:
                    raise DamagedError(next(iter(damaged.values())))
                raise RunNotFoundError(f"the lake {self.location} has no runs yet: collect some first")
            return filter_by_config(self, known, where)
        out: set[str] = set()
        self.skipped_runs = {}
        for p in pats:
            if _is_glob(p):
                out.update(fnmatch.filter(known, p))
                self.skipped_runs.update({r: damaged[r] for r in fnmatch.filter(damaged, p)})
            elif p in known:
                out.add(p)
            elif p in damaged:
                raise DamagedError(damaged[p])
            else:
                run_group(self._root, p)  # raises the one-line RunNotFoundError
        if not out and self.skipped_runs:
            raise DamagedError(next(iter(self.skipped_runs.values())))
        if not out:
            hint = f"runs: {', '.join(known[:10])}" if known else "the lake has no runs"
            raise RunNotFoundError(f"no run matches {', '.join(map(repr, pats))} ({hint})")
        return filter_by_config(self, [r for r in known if r in out], where)

    def _group(self, run: str) -> zarr.Group:
        if run not in self._groups:
            try:
                self._groups[run] = run_group(self._root, run)
            except SgnlakeError:
                raise
            except Exception as e:  # the run's zarr.json cannot be parsed
                first = str(e).splitlines()[0] if str(e) else ""
                raise DamagedError(
                    f"run {run!r} is damaged: runs/{run}/zarr.json cannot be read ({type(e).__name__}: "
                    f"{first}); the other runs are unaffected (run 'sgnlake check')"
                ) from None
        return self._groups[run]

    def meta(self, run: str) -> RunMeta:
        """The metadata of run ``run`` (config, tensors, status, commit marker)."""
        if run not in self._meta:
            if self._damaged and run in self._damaged:
                raise DamagedError(self._damaged[run])
            group = self._group(run)
            meta = read_run_meta(group)
            damage = run_damage(group, meta)
            if damage is not None:
                raise DamagedError(damage)
            self._meta[run] = meta
        return self._meta[run]

    def iterations(self, run: str) -> np.ndarray:
        """Iteration values of the committed snapshots of ``run`` (int64)."""
        if run not in self._iterations:
            n = self.meta(run).committed
            arr = self._group(run)[ITERATION]
            self._iterations[run] = np.asarray(arr[:n], dtype=np.int64) if n else np.zeros(0, np.int64)
        return self._iterations[run]

    def tensor_info(self, run: str, tensor: str) -> TensorInfo:
        """The :class:`TensorInfo` of one tensor of a run (one-line error if absent)."""
        meta = self.meta(run)
        try:
            return meta.tensor(tensor)
        except KeyError:
            names = ", ".join(t.name for t in meta.tensors)
            raise SelectionError(f"run {run!r} has no tensor {tensor!r} (tensors: {names})") from None

    def param_index(self, run: str, tensor: str) -> np.ndarray:
        """Flat C-order indices (int64) along the stored ``param`` axis of one tensor.

        ``arange(numel)`` for a tensor stored whole; for a run that stores a seeded
        parameter sample (``--param-sample``, ``TensorInfo.stored``) the sorted
        indices recorded in the tensor group's ``param`` array (read once, cached).
        These are the ``param`` coordinate of :meth:`sgn`, :meth:`grad` and :meth:`weight`.
        """
        key = (run, tensor)
        if key not in self._param_index:
            info = self.tensor_info(run, tensor)
            if info.stored is None:
                idx = np.arange(info.numel, dtype=np.int64)
            else:
                idx = np.asarray(self._group(run)[info.name][PARAM][:], dtype=np.int64)
            self._param_index[key] = idx
        return self._param_index[key]

    def tensors(self, run: str) -> pd.DataFrame:
        """The tensor table of ``run``: one row per tensor (index ``tensor``).

        Columns: ``shape``, ``numel``, ``kind``, ``module``, ``module_type``,
        ``n_stored`` (parameters stored: ``numel``, or the size of a ``--param-sample``),
        ``offset`` (first position of the tensor in the concatenated ``param``
        axis of :meth:`alpha`).
        """
        rows, offset = [], 0
        for t in self.meta(run).tensors:
            rows.append(
                {
                    "tensor": t.name,
                    "shape": tuple(t.shape),
                    "numel": t.numel,
                    "kind": t.kind,
                    "module": t.module,
                    "module_type": t.module_type,
                    "n_stored": t.n_stored,
                    "offset": offset,
                }
            )
            offset += t.n_stored
        cols = ["tensor", "shape", "numel", "kind", "module", "module_type", "n_stored", "offset"]
        return pd.DataFrame(rows, columns=cols).set_index("tensor")

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run (index ``run_id``), from run metadata only.

        Columns (:func:`sgnlake.schema.run_table.run_row`): the run config
        ``model, depth, width, bias, dataset, n_train, batch_size, lr, seed,
        epochs, iterations, shuffle, partition, engine, device, dtype, codec,
        level, keepbits, param_chunk``, the state ``status, committed, planned,
        total_steps, n_examples, n_minibatches, remainder, n_tensors, n_params,
        created, updated, reason`` and any further model arguments.
        """
        rows = [run_row(self.meta(r)) for r in self.run_ids]
        if not rows:
            return pd.DataFrame(columns=[*config_columns(), *STATE_COLUMNS]).set_index("run_id")
        return pd.DataFrame(rows).set_index("run_id")

    def config_coords(self, run: str) -> dict[str, Any]:
        """The :data:`CONFIG_COLUMNS` of one run as a dict."""
        row = self.config_row(run)
        return {k: row.get(k) for k in CONFIG_COLUMNS}

    def config_row(self, run: str) -> dict[str, Any]:
        """The run-table row of one run (config and state columns, flat)."""
        return run_row(self.meta(run))

    def unravel_param(self, run: str, tensor: str, flat: int | Sequence[int]) -> tuple:
        """Index tuple(s) into ``tensor``'s shape of flat C-order ``param`` coordinate value(s)."""
        return unravel_param(flat, self.tensor_info(run, tensor).shape)

    def _param_sel(self, run: str, info: TensorInfo, params: Any) -> Any:
        """``params`` as positions along the stored axis (index tuples raveled, mapped into a sample)."""
        flat = flat_params(params, info)
        if flat is params or info.stored is None:
            return flat
        idx = self.param_index(run, info.name)
        want = np.asarray(flat, dtype=np.int64)
        pos = np.minimum(np.searchsorted(idx, want), len(idx) - 1)
        if not np.all(idx[pos] == want):
            missing = unravel_param(int(want[idx[pos] != want][0]), info.shape)
            raise SelectionError(
                f"parameter {missing} of {info.name!r} is not in the sample run {run!r} stores "
                f"(lake.param_index({run!r}, {info.name!r}) lists the stored ones)"
            )
        return pos.tolist()

    # ------------------------------------------------------------------ selections

    def _iteration_positions(self, run: str, sel: IterationSel) -> tuple[slice | np.ndarray, np.ndarray]:
        values = self.iterations(run)
        return _label_positions(values, sel, run)

    def _dask(self, run: str, tensor: str, name: str) -> da.Array:
        """A Dask array over the committed part of one tensor array (no chunk read)."""
        meta = self.meta(run)
        info = self.tensor_info(run, tensor)
        arr = self._group(run)[info.name][name]
        n = meta.committed
        token = tokenize(self.location, run, tensor, name, arr.shape, arr.chunks, n, meta.created)
        if self.skip_corrupt:
            token = tokenize(token, "skip-corrupt")
        reader = ChunkReader(
            arr, run, tensor, name, self.iterations(run), self.skip_corrupt, self.corrupt_chunks
        )
        x = da.from_array(reader, chunks=arr.chunks, name=f"{name}-{token}", asarray=True, lock=False)
        return x[:n]

    def _tensor_attrs(self, run: str, info: TensorInfo) -> dict[str, Any]:
        return {
            "run_id": run,
            "tensor": info.name,
            "shape": list(info.shape),
            "module": info.module,
            "kind": info.kind,
            "module_type": info.module_type,
            "batch_size": self.meta(run).config.batch_size,
            "n_minibatches": self.meta(run).n_minibatches,
        }

    def sgn(
        self,
        run: str,
        tensor: str,
        iterations: IterationSel = None,
        params: IndexSel = None,
        minibatches: IndexSel = None,
    ) -> xr.DataArray:
        """The SGN of one tensor, lazily: dims ``(iteration, minibatch, param)``.

        Parameters
        ----------
        run, tensor : str
            Run id and tensor name (``fc1.weight``).
        iterations : int, list of int, slice or None
            Iteration *values* (a slice is label-based, both ends inclusive);
            values the run has not committed raise :class:`SelectionError`.
        params, minibatches : int, list of int, slice or None
            Positions along the stored axes. The ``param`` coordinate is the C-order
            flat index within the tensor (:meth:`param_index`: the position itself,
            unless the run stores a parameter sample).
            ``params`` also takes an index tuple into the tensor's shape
            (``(3, 17)`` of ``fc1.weight``) or a list of them.

        Returns
        -------
        xarray.DataArray
            Dask-backed, float; coords ``iteration``, ``minibatch``, ``param``;
            attrs ``run_id``, ``tensor``, ``shape``, ``module``, ``kind``, ...
        """
        info = self.tensor_info(run, tensor)
        x = self._dask(run, tensor, SGN)
        it_pos, it_vals = self._iteration_positions(run, iterations)
        mb_pos, mb_vals = _index_positions(x.shape[1], minibatches, "minibatch", run)
        p_pos, p_vals = _index_positions(x.shape[2], self._param_sel(run, info, params), "param", run, tensor)
        if info.stored is not None:
            p_vals = self.param_index(run, tensor)[p_vals]
        x = _take(x, (it_pos, mb_pos, p_pos))
        return xr.DataArray(
            x,
            dims=(ITERATION, MINIBATCH, PARAM),
            coords={ITERATION: it_vals, MINIBATCH: mb_vals, PARAM: p_vals},
            name=SGN,
            attrs=self._tensor_attrs(run, info),
        )

    def _param_array(
        self, name: str, run: str, tensor: str, iterations: IterationSel, params: IndexSel
    ) -> xr.DataArray:
        info = self.tensor_info(run, tensor)
        x = self._dask(run, tensor, name)
        it_pos, it_vals = self._iteration_positions(run, iterations)
        p_pos, p_vals = _index_positions(x.shape[1], self._param_sel(run, info, params), "param", run, tensor)
        if info.stored is not None:
            p_vals = self.param_index(run, tensor)[p_vals]
        x = _take(x, (it_pos, p_pos))
        return xr.DataArray(
            x,
            dims=(ITERATION, PARAM),
            coords={ITERATION: it_vals, PARAM: p_vals},
            name=name,
            attrs=self._tensor_attrs(run, info),
        )

    def grad(
        self, run: str, tensor: str, iterations: IterationSel = None, params: IndexSel = None
    ) -> xr.DataArray:
        """The full gradient ``g`` of one tensor, lazily: dims ``(iteration, param)``.

        Selections as in :meth:`sgn`.
        """
        return self._param_array(GRAD, run, tensor, iterations, params)

    def weight(
        self, run: str, tensor: str, iterations: IterationSel = None, params: IndexSel = None
    ) -> xr.DataArray:
        """The weights ``w_t`` of one tensor, lazily: dims ``(iteration, param)``.

        Selections as in :meth:`sgn`.
        """
        return self._param_array(WEIGHT, run, tensor, iterations, params)

    def snapshots(self, run: str) -> xr.Dataset:
        """Loss and accuracy at the committed snapshots of ``run`` (dims ``iteration``)."""
        g = self._group(run)
        n = self.meta(run).committed
        data = {
            v: (ITERATION, np.asarray(g[v][:n], dtype=np.float64) if n else np.zeros(0))
            for v in (LOSS, ACCURACY)
        }
        return xr.Dataset(data, coords={ITERATION: self.iterations(run)}, attrs={"run_id": run})

    def sgn_runs(
        self,
        runs: str | Sequence[str] | None,
        tensor: str,
        iterations: IterationSel = None,
        params: IndexSel = None,
        minibatches: IndexSel = None,
    ) -> xr.DataArray:
        """The SGN of one tensor for several runs, stacked along a new ``run`` dim.

        The runs must agree on the tensor's shape, the number of minibatches and
        the selected iteration values (pass ``iterations=`` with values all runs
        have, or ``minibatches=`` to use a common number of samples, when they
        differ). Config values (:data:`CONFIG_COLUMNS`) become coords along ``run``.

        Raises
        ------
        SelectionError
            The runs' shapes or iterations disagree (the message names the first
            mismatch), or a run lacks the tensor.
        """
        ids = self.select_runs(runs)
        arrays = [self.sgn(r, tensor, iterations, params, minibatches) for r in ids]
        ref, ref_id = arrays[0], ids[0]
        for r, a in zip(ids[1:], arrays[1:], strict=True):
            if tuple(a.attrs["shape"]) != tuple(ref.attrs["shape"]):
                raise SelectionError(
                    f"tensor {tensor!r} has shape {tuple(a.attrs['shape'])} in run {r!r} but "
                    f"{tuple(ref.attrs['shape'])} in {ref_id!r}: choose runs of the same model"
                )
            if a.sizes[MINIBATCH] != ref.sizes[MINIBATCH]:
                raise SelectionError(
                    f"run {r!r} has {a.sizes[MINIBATCH]} minibatches but {ref_id!r} has "
                    f"{ref.sizes[MINIBATCH]}: pass minibatches=slice(0, N) with a common N"
                )
            if not np.array_equal(a[ITERATION].values, ref[ITERATION].values):
                common = np.intersect1d(a[ITERATION].values, ref[ITERATION].values)
                raise SelectionError(
                    f"runs {ref_id!r} and {r!r} have different snapshot iterations "
                    f"({ref.sizes[ITERATION]} vs {a.sizes[ITERATION]}, {len(common)} in common): "
                    "pass iterations=[...] with values every run has"
                )
        out = xr.concat(
            [a.drop_attrs(deep=False) for a in arrays], dim="run", coords="minimal", compat="override"
        )
        coords: dict[str, Any] = {"run": ids}
        cfg = [self.config_coords(r) for r in ids]
        for k in CONFIG_COLUMNS:
            coords[k] = ("run", [c[k] for c in cfg])
        out = out.assign_coords(coords)
        attrs = {k: v for k, v in ref.attrs.items() if k not in ("run_id", "batch_size", "n_minibatches")}
        out.attrs = attrs
        return out

    # ------------------------------------------------------------------ results

    def writable_root(self) -> zarr.Group:
        """The root group opened for writing derived results.

        Raises
        ------
        LakeError
            The lake was opened ``read_only`` or cannot be opened for writing.
        """
        if self.read_only:
            raise LakeError(
                f"the lake {self.location} was opened read-only: open it with read_only=False to store results"
            )
        if self._writable is None:
            try:
                self._writable = open_lake_group(
                    self.location, mode="r+", storage_options=self.storage_options
                )
            except (PermissionError, OSError) as e:
                raise LakeError(
                    f"cannot open {self.location} for writing ({type(e).__name__}): "
                    "the lake is read-only; copy it somewhere writable first"
                ) from None
        return self._writable

    def compute_alpha(
        self,
        runs: str | Sequence[str] | None = None,
        estimator: str = "mohammadi",
        force: bool = False,
        progress: bool = True,
        **settings: Any,
    ) -> ComputeReport:
        """Compute per-parameter results for every committed snapshot and store them.

        See :func:`sgnlake.analyze.results.compute_alpha`.
        """
        from .results import compute_alpha

        return compute_alpha(self, runs, estimator=estimator, force=force, progress=progress, **settings)

    def alpha(
        self, run: str, estimator: str = "mohammadi", tensor: str | None = None, **settings: Any
    ) -> xr.DataArray:
        """Per-parameter tail index of ``run``, lazily (stored if present, else computed).

        See :func:`sgnlake.analyze.results.alpha`.
        """
        from .results import alpha

        return alpha(self, run, estimator=estimator, tensor=tensor, **settings)

    def result(
        self, run: str, estimator: str = "mohammadi", tensor: str | None = None, **settings: Any
    ) -> xr.Dataset:
        """Every output of an estimator for ``run`` (e.g. McCulloch's alpha, beta, scale, loc).

        See :func:`sgnlake.analyze.results.result`.
        """
        from .results import result

        return result(self, run, estimator=estimator, tensor=tensor, **settings)

    def stored_results(self, runs: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Derived results stored in the lake (one row per run and result key).

        See :func:`sgnlake.analyze.results.stored_results`.
        """
        from .results import stored_results

        return stored_results(self, runs)

    def summary(
        self,
        runs: str | Sequence[str] | None = None,
        by: str = "module",
        estimator: str = "mohammadi",
        iterations: IterationSel = None,
        **settings: Any,
    ) -> pd.DataFrame:
        """Per-(run, iteration, group) aggregates of alpha as a long DataFrame.

        See :func:`sgnlake.analyze.summary.summary` for the columns.
        """
        from .summary import summary

        return summary(self, runs, by=by, estimator=estimator, iterations=iterations, **settings)

    def alpha_runs(
        self,
        runs: str | Sequence[str] | None = None,
        estimator: str = "mohammadi",
        tensor: str | None = None,
        iterations: IterationSel = None,
        params: Any = None,
        **kwargs: Any,
    ) -> xr.DataArray:
        """Alpha of several runs with a ``run`` dimension and config coordinates.

        ``lake.alpha_runs(batch_size=[50, 100])``: config columns select runs, other
        keywords are estimator settings. See :func:`sgnlake.analyze.views.alpha_runs`.
        """
        from .views import alpha_runs

        return alpha_runs(self, runs, estimator, tensor, iterations, params, **kwargs)

    def summary_runs(
        self,
        runs: str | Sequence[str] | None = None,
        by: str = "module",
        estimator: str = "mohammadi",
        iterations: IterationSel = None,
        **kwargs: Any,
    ) -> xr.Dataset:
        """Summary statistics of alpha as a Dataset ``(run, iteration, group)`` with config coordinates.

        See :func:`sgnlake.analyze.views.summary_runs`.
        """
        from .views import summary_runs

        return summary_runs(self, runs, by, estimator, iterations, **kwargs)

    def datatree(self, runs: str | Sequence[str] | None = None) -> xr.DataTree:
        """The lake as an ordered :class:`xarray.DataTree` (committed snapshots, no checkpoints).

        See :func:`sgnlake.analyze.views.datatree`.
        """
        from .views import datatree

        return datatree(self, runs)
