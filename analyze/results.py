"""Per-parameter estimator results: computed lazily, stored in the lake, reopened lazily.

Stored layout: see :mod:`sgnlake.analyze.stored` (``results/<run_id>/<key>/``, ``key`` =
:func:`sgnlake.analyze.estimators.result_key` of the estimator and its settings). A result is
computed into a fresh generation and published last (one atomic write), so a killed,
failed or concurrent computation never shows a partial result; ``force`` keeps the
published result until the new one is published. A run that gained snapshots since its
result was stored gets only the new snapshots computed and appended (beyond the published
rows, then the count is published); a stored result without ``n_nonfinite`` (written by an
older sgnlake) is recomputed. Estimators with a fused kernel (Mohammadi) are computed by
:mod:`sgnlake.analyze.fused`, one task per result chunk.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from sgnlake.schema.codecs import default_compressors
from sgnlake.schema.conventions import tensor_group_attrs, variable_attrs
from sgnlake.schema.errors import ConfigError, LakeError, SgnlakeError
from sgnlake.schema.lake import now, software_versions
from sgnlake.schema.meta import ResultMeta, TensorInfo
from sgnlake.schema.names import GENERATION_ATTR, ITERATION, MINIBATCH, PARAM, TENSOR_ATTR, results_path
from sgnlake.schema.store import delete_prefix

from . import estimators
from .fused import fused_tasks
from .lake import SelectionError
from .stored import (
    ALPHA,
    NONFINITE,
    RESULT_CHUNK_ELEMENTS,
    array_metadata,
    create_nodes,
    group_metadata,
    new_generation,
    publish,
    published_source,
    read_rows_and_sums,
    result_chunk,
    result_lease,
    stored_dask,
    stored_meta,
    stored_results,
    write_guard,
)

if TYPE_CHECKING:
    from .lake import Lake

__all__ = [
    "ALPHA",
    "NONFINITE",
    "RESULT_CHUNK_ELEMENTS",
    "ComputeReport",
    "RunResult",
    "alpha",
    "check_estimator",
    "compute_alpha",
    "lazy_estimate",
    "resolve_settings",
    "result",
    "result_key",
    "run_graph",
    "stored_meta",
    "stored_results",
]


@dataclass
class RunResult:
    """What :func:`compute_alpha` did for one run."""

    run_id: str
    key: str
    action: str  # computed | appended | up-to-date | empty
    snapshots: int
    computed: int
    params: int
    last_iteration: int | None
    median_alpha_last: float
    dead_last: int
    seconds: float
    path: str
    nonfinite_samples: int = 0  # non-finite SGN samples (dropped) over all snapshots
    sparse_last: int = 0  # degenerate parameters at the last snapshot (left out of median_alpha_last)


@dataclass
class ComputeReport:
    """The outcome of :func:`compute_alpha` (one :class:`RunResult` per run)."""

    estimator: str
    key: str
    settings: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The per-run table (index ``run_id``)."""
        cols = [f for f in RunResult.__dataclass_fields__ if f != "run_id"]
        if not self.runs:
            return pd.DataFrame(columns=["run_id", *cols]).set_index("run_id")
        return pd.DataFrame([r.__dict__ for r in self.runs]).set_index("run_id")

    @property
    def computed(self) -> int:
        """Number of snapshots computed in total (0 when everything was up to date)."""
        return sum(r.computed for r in self.runs)


# ---------------------------------------------------------------------- estimator glue


def check_estimator(estimator: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``estimator`` gives per-parameter results."""
    estimators.check_estimator(estimator)


def result_key(estimator: str, **settings: Any) -> str:
    """The result key (group name) of a per-parameter estimator and its settings (defaults filled in)."""
    return estimators.check_estimator(estimator).key(**settings)


def resolve_settings(estimator: str, **settings: Any) -> dict[str, Any]:
    """All settings of ``estimator`` with defaults filled in (what is recorded in ``ResultMeta``)."""
    return estimators.check_estimator(estimator).resolve(**settings)


def _outputs(res: xr.DataArray, estimator: str) -> dict[str, xr.DataArray]:
    """Split an estimator result into 2-D ``(iteration, param)`` outputs by name."""
    if ITERATION not in res.dims or PARAM not in res.dims:
        raise ConfigError(
            f"estimator {estimator!r} does not give one value per parameter: use "
            "sgnlake.analyze.estimators.estimate on lake.sgn(...) directly"
        )
    extra = [d for d in res.dims if d not in (ITERATION, PARAM)]
    if not extra:
        return {str(res.name or ALPHA): res.transpose(ITERATION, PARAM)}
    if len(extra) > 1:
        raise ConfigError(f"estimator {estimator!r} returned dims {res.dims}: cannot store them")
    dim = extra[0]
    labels = res[dim].values if dim in res.coords else np.arange(res.sizes[dim])
    out = {}
    for i, lab in enumerate(labels):
        out[str(lab)] = res.isel({dim: i}, drop=True).transpose(ITERATION, PARAM)
    return out


def lazy_estimate(
    lake: Lake, run: str, info: TensorInfo, estimator: str, start: int = 0, **settings: Any
) -> dict[str, xr.DataArray]:
    """Lazy estimator outputs of one tensor for the committed snapshots from position ``start``.

    Besides the estimator's outputs, :data:`NONFINITE` counts the non-finite samples of each
    parameter (computed from the same SGN chunks, so a graph computing both reads them once),
    and the estimator's :attr:`~sgnlake.analyze.estimators.Estimator.extras` follow.
    """
    x = lake.sgn(run, info.name)
    if start:
        x = x.isel({ITERATION: slice(start, None)})
    try:
        res = estimators.estimate(x, estimator=estimator, dim=MINIBATCH, **settings)
    except SgnlakeError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad settings for estimator {estimator!r}: {e}") from None
    outs = _outputs(res, estimator)
    outs[NONFINITE] = estimators.count_nonfinite(x, MINIBATCH).transpose(ITERATION, PARAM)
    for name, extra in estimators.estimate_extras(x, estimator, MINIBATCH, **settings).items():
        outs[name] = extra.transpose(ITERATION, PARAM)
    return outs


# ---------------------------------------------------------------------- reading results


def _param_coords(infos: Sequence[TensorInfo], indices: Sequence[np.ndarray]) -> dict[str, Any]:
    """The ``param`` coords of results over ``infos``; ``indices``: each tensor's flat indices."""
    sizes = [len(i) for i in indices]
    tensor = np.concatenate([np.full(n, t.name, dtype=object) for t, n in zip(infos, sizes, strict=True)])
    module = np.concatenate([np.full(n, t.module, dtype=object) for t, n in zip(infos, sizes, strict=True)])
    kind = np.concatenate([np.full(n, t.kind, dtype=object) for t, n in zip(infos, sizes, strict=True)])
    index = np.concatenate([np.asarray(i, dtype=np.int64) for i in indices])
    return {
        PARAM: np.arange(len(index), dtype=np.int64),
        "tensor": (PARAM, tensor),
        "module": (PARAM, module),
        "kind": (PARAM, kind),
        "index": (PARAM, index),
    }


def result(
    lake: Lake, run: str, estimator: str = "mohammadi", tensor: str | None = None, **settings: Any
) -> xr.Dataset:
    """Every output of ``estimator`` for ``run``, lazily, over all tensors (or one).

    Stored snapshots are read from the lake; snapshots committed after the
    result was stored (or all, if none is stored) are computed lazily and not
    stored (use :func:`compute_alpha` to store them).

    Returns
    -------
    xarray.Dataset
        Variables (``alpha``; McCulloch adds ``beta``, ``scale``, ``loc``) and
        ``n_nonfinite`` (int32: non-finite SGN samples the estimator dropped) with
        dims ``(iteration, param)``; ``param`` runs over all selected tensors
        concatenated in the run's tensor order, with coords ``tensor``,
        ``module``, ``kind`` and ``index`` (flat index within the tensor).
        Attrs: ``run_id``, ``estimator``, ``key``, ``settings``,
        ``n_stored`` (snapshots read from stored results).
    """
    key = result_key(estimator, **settings)
    meta = lake.meta(run)
    if meta.committed == 0:
        raise SelectionError(f"run {run!r} has no committed snapshot yet: nothing to estimate")
    infos = list(meta.tensors) if tensor is None else [lake.tensor_info(run, tensor)]
    its = lake.iterations(run)
    found = stored_meta(lake, run, key)
    n_stored = found[1].n_iterations if found else 0
    per_output: dict[str, list[da.Array]] = {}
    indices = []
    for info in infos:
        parts: dict[str, list[da.Array]] = {}
        # a result covers the stored SGN's parameters, or all of them (computed on the device)
        index = lake.param_index(run, info.name)
        if found:
            g, rmeta = found
            tg = g[info.name]
            for name, arr in sorted(tg.arrays()):
                path = f"{results_path(run, key, info.name)}/{name}"
                parts.setdefault(name, []).append(stored_dask(lake, arr, path, n_stored, rmeta.created))
                if arr.shape[1] != len(index):
                    if arr.shape[1] != info.numel or n_stored < len(its):
                        raise LakeError(
                            f"stored result {key!r} of run {run!r} covers {arr.shape[1]} parameters of "
                            f"{info.name!r} but the run stores the SGN of {len(index)}: resume the run "
                            "(sgnlake collect --resume) to bring its device results up to date"
                        )
                    index = np.arange(info.numel, dtype=np.int64)
        indices.append(index)
        if n_stored < len(its):
            for name, out in lazy_estimate(lake, run, info, estimator, n_stored, **settings).items():
                if found and name not in parts:
                    raise LakeError(
                        f"stored result {key!r} of run {run!r} lacks output {name!r}: recompute it with force=True"
                    )
                parts.setdefault(name, []).append(out.data)
        for name, pieces in parts.items():
            per_output.setdefault(name, []).append(
                pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=0)
            )
    coords = {ITERATION: its, **_param_coords(infos, indices)}
    data = {
        name: ((ITERATION, PARAM), arrays[0] if len(arrays) == 1 else da.concatenate(arrays, axis=1))
        for name, arrays in per_output.items()
    }
    return xr.Dataset(
        data,
        coords=coords,
        attrs={
            "run_id": run,
            "estimator": estimator,
            "key": key,
            "settings": resolve_settings(estimator, **settings),
            "n_stored": n_stored,
        },
    )


def alpha(
    lake: Lake, run: str, estimator: str = "mohammadi", tensor: str | None = None, **settings: Any
) -> xr.DataArray:
    """Per-parameter tail index of ``run``: the ``alpha`` variable of :func:`result`.

    Returns
    -------
    xarray.DataArray
        Dask-backed, dims ``(iteration, param)`` over all tensors concatenated
        (or ``tensor`` alone), coords ``tensor``, ``module``, ``kind``, ``index``.
        NaN marks parameters without a tail index (zero or constant SGN).
    """
    ds = result(lake, run, estimator=estimator, tensor=tensor, **settings)
    if ALPHA not in ds:
        raise ConfigError(
            f"estimator {estimator!r} has no alpha output (outputs: {', '.join(ds.data_vars)}): "
            "use lake.result(...)"
        )
    out = ds[ALPHA]
    out.attrs = dict(ds.attrs)
    return out


# ---------------------------------------------------------------------- computing + storing


def _current_client() -> Any:
    """The active ``dask.distributed`` client, if any (without importing distributed)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def run_graph(obj: Any, progress: bool, label: str = "") -> Any:
    """Compute a Dask collection on the active client or scheduler, with an optional progress bar on stderr
    (labelled with ``label``, e.g. the run id). Returns the computed value (a list of delayed tasks:
    their results, in order)."""
    client = _current_client()
    if client is not None and dask.config.get("scheduler", None) in (None, "dask.distributed"):
        futures = client.compute(obj)
        if progress:
            from distributed import progress as dprogress

            if label:
                print(label, file=sys.stderr)
            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for results
                dprogress(futures, notebook=False)
        return client.gather(futures)
    if progress:
        from .progress import labelled_progress

        with labelled_progress(label):
            return _compute_local(obj)
    return _compute_local(obj)


def _compute_local(obj: Any) -> Any:
    """``dask.compute`` in this process. With the default threaded scheduler the tasks run on a pool
    of our own that is drained before returning or raising: when one task fails, the tasks already
    running finish their writes first, so a caller that removes an unpublished generation on failure
    removes all of it (dask's shared pool would let them write after the cleanup)."""
    if dask.config.get("scheduler", None) not in (None, "threads", "threading"):
        return dask.compute(obj)[0]
    with ThreadPoolExecutor(max_workers=dask.config.get("num_workers", None) or os.cpu_count() or 1) as pool:
        return dask.compute(obj, scheduler="threads", pool=pool)[0]


def _compute_run(
    lake: Lake, run: str, estimator: str, key: str, settings: Mapping[str, Any], force: bool, progress: bool
) -> RunResult:
    t0 = time.perf_counter()
    meta = lake.meta(run)
    n = meta.committed
    path = f"{lake.location.rstrip('/')}/{results_path(run, key)}"
    n_params = sum(t.n_stored for t in meta.tensors)
    if n == 0:
        return RunResult(run, key, "empty", 0, 0, n_params, None, float("nan"), 0, 0.0, path)
    # a forced recomputation replaces any published result except device results (checked in full)
    found = stored_meta(lake, run, key) if not force or published_source(lake, run, key) == "device" else None
    if found and found[1].source == "device":
        force = False  # computed on the device from every parameter's SGN, which the lake does not hold
        if found[1].n_iterations < n:
            raise LakeError(
                f"the device results {key!r} of run {run!r} lag its snapshots: resume the run "
                "(sgnlake collect --resume) to bring them up to date"
            )
    found = None if force else found
    start = found[1].n_iterations if found else 0
    if found and start == n:
        return _finish(lake, run, key, "up-to-date", n, 0, n_params, t0, path, estimator, settings)

    its = lake.iterations(run)
    wroot = lake.writable_root()

    # the first tensor's lazy estimate: a bad setting fails before anything is written; its outputs'
    # names and dtypes are every tensor's (one estimator, one M per run). The other tensors' lazy
    # graphs are built only for the general path (the fused tasks read the SGN themselves).
    tensors = list(meta.tensors)
    first = lazy_estimate(lake, run, tensors[0], estimator, start, **settings)
    kinds = {name: out.dtype for name, out in first.items()}

    sgn_chunk = {info.name: lake.root[f"runs/{run}/{info.name}/sgn"].chunks[2] for info in tensors}

    def array_kwargs(info: TensorInfo, name: str, dtype: Any) -> dict[str, Any]:
        """How the result array ``name`` of one tensor is created (its ``zarr.create_array`` arguments)."""
        return {
            "shape": (n, info.n_stored),
            "chunks": (1, result_chunk(sgn_chunk[info.name], info.n_stored)),
            "dtype": dtype,
            "fill_value": np.nan if np.issubdtype(dtype, np.floating) else -1,
            "dimension_names": [ITERATION, PARAM],
            "attributes": variable_attrs(name, info),
            "compressors": default_compressors(),  # zstd + crc32c checksum
        }

    def group_attrs(info: TensorInfo) -> dict[str, Any]:
        return {TENSOR_ATTR: info.to_dict(), **tensor_group_attrs(info)}

    it_kwargs: dict[str, Any] = {
        "shape": (n,),
        "dtype": "int64",
        "dimension_names": [ITERATION],
        "attributes": variable_attrs(ITERATION),
        "compressors": default_compressors(),
    }

    def grown(info: TensorInfo, dg: zarr.Group) -> dict[str, zarr.Array]:
        """The result arrays of one tensor in the published data group, grown to ``n`` rows (appending)."""
        appending = bool(start) and info.name in dg
        if appending:
            tg = dg[info.name]
        else:
            tg = dg.create_group(info.name, attributes=group_attrs(info), overwrite=bool(start))
        arrays = {}
        for name, dtype in kinds.items():
            if appending and name in tg:
                arr = tg[name]
                if arr.shape[0] < n:  # never shrink: rows of a concurrent append stay
                    arr.resize((n, info.n_stored))
            else:
                arr = tg.create_array(name, overwrite=bool(start), **array_kwargs(info, name, dtype))
            arrays[name] = arr
        return arrays

    def prepare() -> tuple[zarr.Group, zarr.Group, str | None, list[dict[str, zarr.Array]]]:
        kg = wroot.require_group(results_path(run, key))
        gen: str | None
        if found:  # append to the published data group, beyond its published rows (invisible)
            dg = wroot[found[0].path]
            gen = kg.attrs.get(GENERATION_ATTR)
            it = dg[ITERATION]
            if it.shape[0] < n:  # never shrink: rows of a concurrent append stay
                it.resize((n,))
            # the tensors' documents are grown concurrently (each a few store round trips)
            with ThreadPoolExecutor(max_workers=min(8, len(tensors))) as pool:
                arrays = list(pool.map(lambda info: grown(info, dg), tensors))
        else:  # a fresh generation: the published result (if any) stays until this one is published
            gen = new_generation()
            dg = kg.create_group(gen)  # first: a killed computation leaves a generation group to clean up
            # every other document of the generation in one call (per-node creation walks the parents)
            nodes: dict[str, Any] = {ITERATION: array_metadata(**it_kwargs)}
            for info in tensors:
                nodes[info.name] = group_metadata(group_attrs(info))
                for name, dtype in kinds.items():
                    nodes[f"{info.name}/{name}"] = array_metadata(**array_kwargs(info, name, dtype))
            made = create_nodes(dg, nodes)
            it = made[ITERATION]
            arrays = [{name: made[f"{info.name}/{name}"] for name in kinds} for info in tensors]
        it[start:n] = its[start:n]
        return kg, dg, gen, arrays

    with write_guard(lake, result_lease, lake, run, key) as lease:
        kg, dg, gen, arrays = write_guard(lake, prepare)
        try:
            by_tensor = {info.name: arrs for info, arrs in zip(tensors, arrays, strict=True)}
            fused = fused_tasks(lake, run, estimators.get(estimator), settings, by_tensor, start, n)
            if fused is not None:
                graph: Any = fused  # one task per result chunk: read, estimate, count, write
            else:
                sources, targets, regions = [], [], []
                for info, arrs in zip(tensors, arrays, strict=True):
                    outs = (
                        first
                        if info is tensors[0]
                        else lazy_estimate(lake, run, info, estimator, start, **settings)
                    )
                    for name, out in outs.items():
                        arr = arrs[name]
                        # align every task's output with one stored chunk: no two tasks write one chunk
                        sources.append(out.data.rechunk((1, arr.chunks[1])))
                        targets.append(arr)
                        regions.append((slice(start, n), slice(0, info.n_stored)))
                graph = da.store(sources, targets, regions=regions, lock=False, compute=False)
            done = write_guard(lake, run_graph, graph, progress, run)
        except BaseException:
            if not start and gen is not None:  # an unpublished generation of ours: nobody reads it
                with contextlib.suppress(Exception):
                    delete_prefix(wroot.store, f"{kg.path}/{gen}")
            raise

        rmeta = ResultMeta(
            estimator=estimator,
            settings=dict(settings),
            run_id=run,
            n_iterations=n,
            source="sgn",
            created=now(),
            software=software_versions(),
            run_created=meta.created,
        )
        lease.check()  # taken over after a stall: the other computation publishes
        write_guard(lake, publish, wroot, kg.path, rmeta.to_dict(), gen, start > 0)
    action = "appended" if start else "computed"
    # the fused tasks return the non-finite samples they counted and wrote: only older rows are read back
    counted = sum(done) if fused is not None and isinstance(done, list) and len(done) == len(fused) else None
    return _finish(
        lake,
        run,
        key,
        action,
        n,
        n - start,
        n_params,
        t0,
        path,
        estimator,
        settings,
        dg,
        by_tensor,
        (start, counted),
    )


def _finish(
    lake: Lake,
    run: str,
    key: str,
    action: str,
    n: int,
    computed: int,
    n_params: int,
    t0: float,
    path: str,
    estimator: str,
    settings: Mapping[str, Any],
    published: zarr.Group | None = None,
    arrays: Mapping[str, Mapping[str, zarr.Array]] | None = None,
    counted: tuple[int, int | None] = (0, None),
) -> RunResult:
    """Assemble a RunResult: median alpha and dead count at the last snapshot, non-finite samples.

    ``published``: the data group this call just published (read without checking it again);
    ``arrays``: its result arrays by tensor and output name, as created (not opened again);
    ``counted``: ``(start, count)``, the non-finite samples of rows ``start:n`` counted while
    computing them (None: unknown), so only the first ``start`` rows' counts are read.
    """
    med, dead, nonfinite, n_sparse = float("nan"), 0, 0, 0
    found = (published, None) if published is not None else stored_meta(lake, run, key)
    if found:
        g, _ = found
        tensors = lake.meta(run).tensors
        if arrays is None:
            arrays = {}
            for info in tensors:
                tg = g[info.name]
                arrays[info.name] = {k: tg[k] for k in (ALPHA, "sparse", NONFINITE) if k in tg}
        named = [(info, arrays[info.name]) for info in tensors]
        with_alpha = [(info, o) for info, o in named if ALPHA in o]
        reads = [(o[ALPHA], n - 1) for _, o in with_alpha]
        reads += [(o["sparse"], n - 1) for _, o in with_alpha if "sparse" in o]
        # every read in one call: the last rows and the non-finite counts of all tensors concurrently
        start, count = counted
        summed = n if count is None else start
        rows, counts = read_rows_and_sums(reads, [o[NONFINITE] for _, o in named] if summed else [], summed)
        nonfinite = sum(counts) + (count or 0)
        if with_alpha:
            alpha_rows, sparse_rows = rows[: len(with_alpha)], iter(rows[len(with_alpha) :])
            last, sparse = [], []
            for (info, o), row in zip(with_alpha, alpha_rows, strict=True):
                last.append(np.asarray(row, dtype=np.float64))
                sp = next(sparse_rows) if "sparse" in o else np.zeros(info.numel)
                sparse.append(np.asarray(sp) > 0)
            vals = np.concatenate(last)
            has = ~np.isnan(vals)  # +inf (1/alpha <= 0) is an estimate above 2, not a dead unit
            sp = np.concatenate(sparse) & has
            used = has & ~sp  # degenerate parameters are left out, as in the summaries
            dead, n_sparse = int((~has).sum()), int(sp.sum())
            med = float(np.median(vals[used])) if used.any() else float("nan")
    its = lake.iterations(run)
    return RunResult(
        run_id=run,
        key=key,
        action=action,
        snapshots=n,
        computed=computed,
        params=n_params,
        last_iteration=int(its[n - 1]) if n else None,
        median_alpha_last=med,
        dead_last=dead,
        seconds=time.perf_counter() - t0,
        path=path,
        nonfinite_samples=nonfinite,
        sparse_last=n_sparse,
    )


def compute_alpha(
    lake: Lake,
    runs: str | Sequence[str] | None = None,
    estimator: str = "mohammadi",
    force: bool = False,
    progress: bool = True,
    **settings: Any,
) -> ComputeReport:
    """Compute per-parameter results for every committed snapshot of each run and store them.

    Results go to ``results/<run_id>/<key>/`` (see the module docstring), chunk
    by chunk on the active Dask scheduler (threads by default; see
    :func:`sgnlake.analyze.cluster.dask_client`), so memory is bounded by a few
    result chunks' worth of SGN per worker thread. The Mohammadi estimators run
    one fused task per result chunk (:mod:`sgnlake.analyze.fused`: read the SGN chunks,
    estimate, count the non-finite samples, write both results); the others go through
    :func:`dask.array.store`. The ``ResultMeta`` attribute is written last,
    after all data.

    Parameters
    ----------
    lake : Lake
        An opened lake (not ``read_only``).
    runs : str or list of str, optional
        Run ids or glob patterns (default: every run).
    estimator : str
        A name in :data:`sgnlake.analyze.estimators.ESTIMATORS` (``mohammadi``,
        ``hill``, ``mcculloch``, ...).
    force : bool
        Recompute even when an up-to-date result is stored.
    progress : bool
        Show a progress bar per run.
    **settings
        Estimator settings (``k1="paper"``, ...); they are part of the result key.

    Returns
    -------
    ComputeReport
        Per run: what was done (``computed``, ``appended`` for a run that gained
        snapshots, ``up-to-date``, ``empty``), snapshots, parameters, median
        alpha and NaN count at the last snapshot, non-finite SGN samples
        (dropped by the estimator) over all snapshots, seconds and result path.

    Raises
    ------
    ConfigError
        Unknown estimator or settings.
    RunNotFoundError
        No run matches ``runs``.
    LakeError
        The lake is read-only.
    """
    key = result_key(estimator, **settings)
    lake.refresh()  # see snapshots committed since the lake was opened
    ids = lake.select_runs(runs)
    if lake.read_only:
        lake.writable_root()  # raises the one-line read-only error
    resolved = resolve_settings(estimator, **settings)
    report = ComputeReport(estimator=estimator, key=key, settings=resolved)
    for run in ids:
        report.runs.append(_compute_run(lake, run, estimator, key, resolved, force, progress))
    return report
