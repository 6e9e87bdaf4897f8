"""Stored per-parameter results: finding, listing and reading them, chunk sizes, write errors.

Layout (plain Zarr v3, readable by ``xarray.open_datatree``; see
:mod:`sgnlake.analyze.results` for how results are computed)::

    results/<run_id>/<key>/            attrs: sgnlake_result = ResultMeta (written LAST)
      iteration  (iteration)           int64, the run's committed iterations
      <tensor>/                        attrs: sgnlake_tensor = TensorInfo
        alpha  (iteration, param)      float, NaN where no tail index (dead units)
        ...                            further outputs (McCulloch: beta, scale, loc)
        n_nonfinite (iteration, param) int32, non-finite SGN samples of the parameter
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pandas as pd
import zarr
from dask.base import tokenize

from sgnlake.schema.errors import LakeError, LakeReadOnlyError, SgnlakeError
from sgnlake.schema.meta import ResultMeta
from sgnlake.schema.names import ITERATION, RESULT_ATTR, RESULTS_GROUP, results_path

if TYPE_CHECKING:
    from .lake import Lake

#: Output variable that holds the tail index.
ALPHA = "alpha"
#: Output variable that counts the non-finite SGN samples of each parameter and snapshot.
NONFINITE = "n_nonfinite"
#: Target size (elements) of a stored result chunk along ``param`` (a multiple of the SGN chunk).
RESULT_CHUNK_ELEMENTS = 65536


def node(group: zarr.Group, path: str) -> zarr.Group | None:
    """The subgroup ``path`` of ``group``, or None when it is missing or an array."""
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
    g = node(lake.root, results_path(run, key))
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
    ids = list(lake.run_ids) if runs is None else lake.select_runs(runs)
    base = node(lake.root, RESULTS_GROUP)
    for run in ids:
        rg = node(base, run) if base is not None else None
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


def stored_dask(lake: Lake, arr: zarr.Array, path: str, n: int, created: str) -> da.Array:
    """The first ``n`` rows of a stored result array as Dask, named by where and when it was stored."""
    token = tokenize(lake.location, path, arr.shape, arr.chunks, n, created)
    return da.from_array(arr, chunks=arr.chunks, name=f"result-{token}", lock=False)[:n]


def result_chunk(sgn_param_chunk: int, numel: int) -> int:
    """Stored result chunk along ``param``: whole SGN chunks, about :data:`RESULT_CHUNK_ELEMENTS`."""
    pc = max(1, sgn_param_chunk)
    return min(numel, pc * max(1, RESULT_CHUNK_ELEMENTS // pc))


def write_guard(lake: Lake, fn, *args: Any) -> Any:
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


def stored_sum(arr: zarr.Array, n: int, block_elements: int = 1 << 24) -> int:
    """Sum of the first ``n`` rows of a stored 2-D count array, read a bounded block of rows at a time."""
    step = max(1, block_elements // max(1, arr.shape[1]))
    return int(sum(np.asarray(arr[i : min(i + step, n)]).sum(dtype=np.int64) for i in range(0, n, step)))
