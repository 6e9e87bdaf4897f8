"""Per-parameter estimator results: computed lazily, stored in the lake, reopened lazily.

Stored layout (plain Zarr v3, readable by ``xarray.open_datatree``)::

    results/<run_id>/<key>/            attrs: sgnlake_result = ResultMeta (written LAST)
      iteration  (iteration)           int64, the run's committed iterations
      <tensor>/                        attrs: sgnlake_tensor = TensorInfo
        alpha  (iteration, param)      float, NaN where no tail index (dead units)
        ...                            further outputs (McCulloch: beta, scale, loc)
        n_nonfinite (iteration, param) int32, non-finite SGN samples of the parameter
                                       (NaN/inf; dropped by the estimator, see
                                       :mod:`sgnlake.analyze.kernels`)

``key`` is :func:`sgnlake.analyze.estimators.result_key` of the estimator and
its settings. A result whose ``ResultMeta`` attribute is missing is unfinished
(a crashed computation) and is recomputed. A run that gained snapshots since
its result was stored gets only the new snapshots computed and appended; a
stored result without ``n_nonfinite`` (written by an older sgnlake) is
recomputed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from dask.base import tokenize

from sgnlake.schema.errors import ConfigError, LakeError, LakeReadOnlyError, SgnlakeError
from sgnlake.schema.lake import now, software_versions
from sgnlake.schema.meta import ResultMeta, TensorInfo
from sgnlake.schema.names import (
    ITERATION,
    MINIBATCH,
    PARAM,
    RESULT_ATTR,
    RESULTS_GROUP,
    SGN,
    TENSOR_ATTR,
    results_path,
)

from .lake import SelectionError

if TYPE_CHECKING:
    from .lake import Lake

#: Output variable that holds the tail index.
ALPHA = "alpha"
#: Output variable that counts the non-finite SGN samples of each parameter and snapshot.
NONFINITE = "n_nonfinite"
#: Target size (elements) of a stored result chunk along ``param`` (a multiple of the SGN chunk).
RESULT_CHUNK_ELEMENTS = 65536


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


def _estimators():
    from . import estimators

    return estimators


def per_parameter_estimators() -> list[str]:
    """Registered estimators that give one result per parameter (along ``minibatch``)."""
    registry = _estimators().ESTIMATORS
    return [n for n in registry if tuple(getattr(registry[n], "default_dims", (MINIBATCH,))) == (MINIBATCH,)]


def check_estimator(estimator: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``estimator`` gives per-parameter results."""
    names = per_parameter_estimators()
    if estimator not in names:
        what = "unknown estimator" if estimator not in _estimators().ESTIMATORS else "per-snapshot estimator"
        raise ConfigError(f"{what} {estimator!r}: per-parameter results need one of {', '.join(names)}")


def result_key(estimator: str, **settings: Any) -> str:
    """The result key (group name) of an estimator and its settings (defaults filled in)."""
    check_estimator(estimator)
    try:
        return _estimators().result_key(estimator, **settings)
    except SgnlakeError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad settings for estimator {estimator!r}: {e}") from None


def resolve_settings(estimator: str, **settings: Any) -> dict[str, Any]:
    """All settings of ``estimator`` with defaults filled in (what is recorded in ``ResultMeta``)."""
    check_estimator(estimator)
    est = _estimators()
    if hasattr(est, "resolve_settings"):
        return dict(est.resolve_settings(estimator, **settings))
    return dict(settings)


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
    parameter (computed from the same SGN chunks, so a graph computing both reads them once).
    """
    x = lake.sgn(run, info.name)
    if start:
        x = x.isel({ITERATION: slice(start, None)})
    est = _estimators()
    try:
        res = est.estimate(x, estimator=estimator, dim=MINIBATCH, **settings)
    except SgnlakeError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad settings for estimator {estimator!r}: {e}") from None
    outs = _outputs(res, estimator)
    outs[NONFINITE] = est.count_nonfinite(x, MINIBATCH).transpose(ITERATION, PARAM)
    return outs


# ---------------------------------------------------------------------- stored results


def _node(group: zarr.Group, path: str) -> zarr.Group | None:
    try:
        node = group[path]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Group) else None


def stored_meta(lake: Lake, run: str, key: str) -> tuple[zarr.Group, ResultMeta] | None:
    """The stored, finished result ``key`` of ``run`` that still matches the run, or None.

    A result matches when its iterations are a prefix of the run's committed
    iterations (the run may have gained snapshots since).
    """
    g = _node(lake.root, results_path(run, key))
    if g is None or RESULT_ATTR not in g.attrs:
        return None
    try:
        meta = ResultMeta.from_dict(g.attrs[RESULT_ATTR])
    except SgnlakeError:
        return None
    its = lake.iterations(run)
    if meta.n_iterations > len(its) or ITERATION not in g:
        return None
    run_created = lake.meta(run).created
    if meta.run_created and run_created and meta.run_created != run_created:
        return None  # the run was collected again under the same id
    stored_its = np.asarray(g[ITERATION][: meta.n_iterations])
    if not np.array_equal(stored_its, its[: meta.n_iterations]):
        return None
    names = {t.name for t in lake.meta(run).tensors}
    if not all(n in g and isinstance(g[n], zarr.Group) and NONFINITE in g[n] for n in names):
        return None  # a tensor is missing, or the result predates the non-finite counts
    return g, meta


def stored_results(lake: Lake, runs: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Derived results stored in the lake, one row per (run, key).

    Columns: ``run_id, key, estimator, settings, n_iterations, committed,
    up_to_date, finished, created``. ``finished`` is False for a result whose
    computation did not complete (no ``ResultMeta`` attribute).
    """
    rows = []
    ids = lake.run_ids() if runs is None else lake.select_runs(runs)
    base = _node(lake.root, RESULTS_GROUP)
    for run in ids:
        rg = _node(base, run) if base is not None else None
        if rg is None:
            continue
        for key, g in sorted(rg.groups()):
            attrs = g.attrs.get(RESULT_ATTR)
            meta = ResultMeta.from_dict(attrs) if attrs else None
            committed = lake.meta(run).committed
            rows.append(
                {
                    "run_id": run,
                    "key": key,
                    "estimator": meta.estimator if meta else None,
                    "settings": dict(meta.settings) if meta else None,
                    "n_iterations": meta.n_iterations if meta else 0,
                    "committed": committed,
                    "up_to_date": bool(meta and meta.n_iterations == committed),
                    "finished": meta is not None,
                    "created": meta.created if meta else None,
                }
            )
    cols = [
        "run_id",
        "key",
        "estimator",
        "settings",
        "n_iterations",
        "committed",
        "up_to_date",
        "finished",
        "created",
    ]
    return pd.DataFrame(rows, columns=cols)


def _stored_dask(lake: Lake, arr: zarr.Array, path: str, n: int, created: str) -> da.Array:
    token = tokenize(lake.location, path, arr.shape, arr.chunks, n, created)
    return da.from_array(arr, chunks=arr.chunks, name=f"result-{token}", lock=False)[:n]


# ---------------------------------------------------------------------- reading results


def _param_coords(infos: Sequence[TensorInfo]) -> dict[str, Any]:
    tensor = np.concatenate([np.full(t.numel, t.name, dtype=object) for t in infos])
    module = np.concatenate([np.full(t.numel, t.module, dtype=object) for t in infos])
    kind = np.concatenate([np.full(t.numel, t.kind, dtype=object) for t in infos])
    index = np.concatenate([np.arange(t.numel, dtype=np.int64) for t in infos])
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
    for info in infos:
        parts: dict[str, list[da.Array]] = {}
        if found:
            g, rmeta = found
            tg = g[info.name]
            for name, arr in sorted(tg.arrays()):
                path = f"{results_path(run, key, info.name)}/{name}"
                parts.setdefault(name, []).append(_stored_dask(lake, arr, path, n_stored, rmeta.created))
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
    coords = {ITERATION: its, **_param_coords(infos)}
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


def run_graph(obj: Any, progress: bool) -> None:
    """Compute a Dask collection on the active client or scheduler, with an optional progress bar on stderr."""
    client = _current_client()
    if client is not None and dask.config.get("scheduler", None) in (None, "dask.distributed"):
        futures = client.compute(obj)
        if progress:
            from distributed import progress as dprogress

            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for results
                dprogress(futures, notebook=False)
        client.gather(futures)
        return
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(dt=0.1, out=sys.stderr):
            dask.compute(obj)
    else:
        dask.compute(obj)


def _result_chunk(sgn_param_chunk: int, numel: int) -> int:
    pc = max(1, sgn_param_chunk)
    return min(numel, pc * max(1, RESULT_CHUNK_ELEMENTS // pc))


def _write_guard(lake: Lake, fn, *args: Any) -> Any:
    """Run a write, turning store permission errors into one-line LakeErrors."""
    try:
        return fn(*args)
    except PermissionError as e:
        raise LakeError(
            f"cannot write results into {lake.location} ({e.strerror or e}): the lake is read-only; "
            "copy it somewhere writable (sgnlake copy) first"
        ) from None
    except OSError as e:
        raise LakeError(
            f"storage error while computing results in {lake.location} ({e.strerror or e}): the "
            "result stays unfinished; fix the storage and run again"
        ) from None
    except ValueError:  # zarr's answer to a write into a read-only store: ask the store, not the message
        if lake.read_only or getattr(lake.writable_root().store, "read_only", False):
            raise LakeReadOnlyError(
                f"cannot write results into {lake.location}: the store is read-only; "
                "open it writable or copy it first"
            ) from None
        raise


def _compute_run(
    lake: Lake, run: str, estimator: str, key: str, settings: Mapping[str, Any], force: bool, progress: bool
) -> RunResult:
    t0 = time.perf_counter()
    meta = lake.meta(run)
    n = meta.committed
    path = f"{lake.location.rstrip('/')}/{results_path(run, key)}"
    n_params = sum(t.numel for t in meta.tensors)
    if n == 0:
        return RunResult(run, key, "empty", 0, 0, n_params, None, float("nan"), 0, 0.0, path)
    found = None if force else stored_meta(lake, run, key)
    start = found[1].n_iterations if found else 0
    if found and start == n:
        return _finish(lake, run, key, "up-to-date", n, 0, n_params, t0, path, estimator, settings)

    its = lake.iterations(run)
    wroot = lake.writable_root()

    # build every lazy estimate first: a bad setting fails before anything is written
    planned = [(info, lazy_estimate(lake, run, info, estimator, start, **settings)) for info in meta.tensors]

    def prepare() -> tuple[zarr.Group, list[da.Array], list[zarr.Array], list[tuple[slice, slice]]]:
        if start == 0:
            kg = wroot.create_group(results_path(run, key), overwrite=True)
        else:
            kg = wroot[results_path(run, key)]
            del kg.attrs[RESULT_ATTR]  # unfinished until the attribute is written again
        it = kg.create_array(
            ITERATION, shape=(n,), dtype="int64", dimension_names=[ITERATION], overwrite=True
        )
        it[:] = its
        sources, targets, regions = [], [], []
        for info, outs in planned:
            sgn_chunk = lake.root[f"runs/{run}/{info.name}/sgn"].chunks[2]
            rc = _result_chunk(sgn_chunk, info.numel)
            if start and info.name in kg:
                tg = kg[info.name]
            else:
                tg = kg.create_group(info.name, attributes={TENSOR_ATTR: info.to_dict()}, overwrite=True)
            for name, out in outs.items():
                if start and name in tg:
                    arr = tg[name]
                    arr.resize((n, info.numel))
                else:
                    arr = tg.create_array(
                        name,
                        shape=(n, info.numel),
                        chunks=(1, rc),
                        dtype=out.dtype,
                        fill_value=np.nan if np.issubdtype(out.dtype, np.floating) else -1,
                        dimension_names=[ITERATION, PARAM],
                        overwrite=True,
                    )
                # align every task's output with one stored chunk: no two tasks write one chunk
                sources.append(out.data.rechunk((1, arr.chunks[1])))
                targets.append(arr)
                regions.append((slice(start, n), slice(0, info.numel)))
        return kg, sources, targets, regions

    kg, sources, targets, regions = _write_guard(lake, prepare)
    fused = _fused_tasks(lake, run, estimator, settings, kg, start, n)
    if fused is not None:
        graph: Any = fused  # one task per result chunk: read, estimate, count, write
    else:
        graph = da.store(sources, targets, regions=regions, lock=False, compute=False)
    _write_guard(lake, run_graph, graph, progress)

    def commit() -> None:
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
        kg.attrs[RESULT_ATTR] = rmeta.to_dict()  # LAST: marks the result finished

    _write_guard(lake, commit)
    action = "appended" if start else "computed"
    return _finish(lake, run, key, action, n, n - start, n_params, t0, path, estimator, settings)


class _FusedTarget:
    """What every fused task of one tensor shares: the ``sgn`` reader, both result arrays, K1/K2.

    A plain class (not a dataclass or container), so Dask passes it to the tasks as an
    opaque object instead of traversing it.
    """

    __slots__ = ("reader", "out", "counts", "k1", "k2", "inverse", "step")

    def __init__(
        self, reader: Any, out: zarr.Array, counts: zarr.Array, k1: int, k2: int, inverse: bool, step: int
    ) -> None:
        self.reader, self.out, self.counts = reader, out, counts
        self.k1, self.k2, self.inverse, self.step = k1, k2, inverse, step


def _read_region(reader: Any, it: int, lo: int, hi: int, step: int) -> np.ndarray:
    """``sgn[it:it+1, :, lo:hi]`` (whole stored chunks of ``step`` params) in one Zarr call.

    Zarr decodes the chunks of one call concurrently and pays its per-call overhead once.
    If that read fails, the chunks are read again one by one through the lake's chunk reader,
    which names the corrupt chunk (or, with ``skip_corrupt``, reads it alone as NaN and
    records it), exactly as the per-chunk Dask reads do.
    """
    m = reader.shape[1]
    try:
        return np.asarray(reader.arr[it : it + 1, :, lo:hi])
    except Exception as e:
        if isinstance(e, SgnlakeError):
            raise
    parts = [
        reader[(slice(it, it + 1), slice(0, m), slice(j, min(j + step, hi)))] for j in range(lo, hi, step)
    ]
    return np.concatenate(parts, axis=-1)


def _fused_chunk(target: _FusedTarget, it: int, lo: int, hi: int) -> int:
    """Read the stored ``sgn`` chunks of snapshot ``it`` over params ``lo:hi``, estimate, write both results.

    The samples reach the Mohammadi kernel as a view in their stored layout, as
    :func:`sgnlake.analyze.estimators.estimate` hands them over (the kernel works row by
    row, so the results are the same); the kernel's non-finite statistic (plus the samples
    past ``k1*k2``, which the kernel leaves out) gives :data:`NONFINITE`. Returns the
    number of non-finite samples.
    """
    from . import kernels

    k1, k2 = target.k1, target.k2
    used = k1 * k2
    block = _read_region(target.reader, it, lo, hi, target.step)
    x = np.moveaxis(block, 1, -1)  # (1, p, M) view of the stored (1, M, p) layout
    stats = kernels.mohammadi_chunk(x, k1, k2)
    bad = stats[..., 4]
    if used < x.shape[-1]:
        bad = bad + np.count_nonzero(~np.isfinite(x[..., used:]), axis=-1)
    counts = bad.astype(np.int32)
    est = kernels.mohammadi_finalize(stats, k1, inverse=target.inverse)
    target.out[it : it + 1, lo:hi] = est.astype(target.out.dtype, copy=False)
    target.counts[it : it + 1, lo:hi] = counts
    return int(counts.sum(dtype=np.int64))


def _fused_tasks(
    lake: Lake, run: str, estimator: str, settings: Mapping[str, Any], kg: zarr.Group, start: int, n: int
) -> list[Any] | None:
    """One Dask task per stored result chunk for the Mohammadi estimators, or None when not applicable.

    Replaces the read -> estimate -> count -> store graph (about five tasks per stored
    ``sgn`` chunk) with one task that reads the ``sgn`` chunks under a result chunk,
    computes alpha and the non-finite counts from one kernel pass, and writes both result
    chunks (no two tasks write one chunk). Applies when the ``sgn`` array holds all
    minibatches in one chunk and each result chunk covers whole ``sgn`` chunks (the
    collector's layout); the results are identical to the general path.
    """
    if estimator not in ("mohammadi", "mohammadi_inv"):
        return None
    from .lake import ChunkReader

    est = _estimators()
    out_name = est._spec(estimator).output_name
    tasks = []
    for info in lake.meta(run).tensors:
        arr = lake.root[f"runs/{run}/{info.name}/{SGN}"]
        m, pc = arr.shape[1], arr.chunks[2]
        tg = kg[info.name]
        out, counts = tg[out_name], tg[NONFINITE]
        rc = out.chunks[1]
        if arr.chunks[1] != m or (rc % pc and rc < info.numel) or counts.chunks[1] != rc:
            return None
        k1, k2 = est._checked_k1(m, settings["k1"], MINIBATCH)
        reader = ChunkReader(
            arr, run, info.name, SGN, lake.iterations(run), lake.skip_corrupt, lake.corrupt_chunks
        )
        target = _FusedTarget(reader, out, counts, k1, k2, estimator == "mohammadi_inv", pc)
        task = dask.delayed(_fused_chunk, pure=False)
        for it in range(start, n):
            for lo in range(0, info.numel, rc):
                tasks.append(task(target, it, lo, min(lo + rc, info.numel)))
    return tasks


def _stored_sum(arr: zarr.Array, n: int, block_elements: int = 1 << 24) -> int:
    """Sum of the first ``n`` rows of a stored 2-D count array, read a bounded block of rows at a time."""
    step = max(1, block_elements // max(1, arr.shape[1]))
    return int(sum(np.asarray(arr[i : min(i + step, n)]).sum(dtype=np.int64) for i in range(0, n, step)))


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
) -> RunResult:
    """Assemble a RunResult: median alpha and dead count at the last snapshot, non-finite samples."""
    med, dead, nonfinite = float("nan"), 0, 0
    found = stored_meta(lake, run, key)
    if found:
        g, _ = found
        last = []
        for info in lake.meta(run).tensors:
            tg = g[info.name]
            if ALPHA in tg:
                last.append(np.asarray(tg[ALPHA][n - 1], dtype=np.float64))
            nonfinite += _stored_sum(tg[NONFINITE], n)
        if last:
            vals = np.concatenate(last)
            used = ~np.isnan(vals)  # +inf (1/alpha <= 0) is an estimate above 2, not a dead unit
            dead = int((~used).sum())
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
    one fused task per result chunk (read the SGN chunks, estimate, count the
    non-finite samples, write both results); the others go through
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
