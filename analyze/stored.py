"""Stored per-parameter results: finding, listing and reading them, chunk sizes, write errors.

Layout (plain Zarr v3, readable by ``xarray.open_datatree``; see
:mod:`sgnlake.analyze.results` for how results are computed)::

    results/<run_id>/<key>/            attrs: sgnlake_result = ResultMeta and
                                       sgnlake_generation = "gen-<id>" (published LAST, in one write)
      gen-<id>/                        one generation: a complete computation
        iteration  (iteration)         int64, the run's committed iterations
        <tensor>/                      attrs: sgnlake_tensor = TensorInfo
          alpha  (iteration, param)    float, NaN where no tail index (dead units)
          ...                          further outputs (McCulloch: beta, scale, loc; any other)
          n_nonfinite (iteration, param) int32, non-finite SGN samples of the parameter
          inv_alpha, n_distinct, ...   the estimator's extra outputs (its registry ``extras``)

A result is visible only through its key group's attributes: a computation writes a
fresh generation and then publishes it by rewriting the key group's ``zarr.json``
(one atomic object write) with the ``ResultMeta`` and the generation's name; only then
is the previous generation deleted. A killed or failed computation leaves an
unpublished generation that no reader sees. A run that gained snapshots gets the new
rows appended to the published generation beyond ``ResultMeta.n_iterations`` (invisible
to readers) and the attributes rewritten with the new count last. Lakes written before
generations keep the arrays directly under ``<key>/`` (no ``sgnlake_generation``
attribute); they are read, appended to and replaced the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pandas as pd
import zarr
from dask.base import tokenize

from sgnlake.schema.errors import LakeError, LakeReadOnlyError, SgnlakeError
from sgnlake.schema.meta import ResultMeta
from sgnlake.schema.names import (
    GENERATION_ATTR,
    GENERATION_PREFIX,
    ITERATION,
    RESULT_ATTR,
    RESULTS_GROUP,
    results_path,
)
from sgnlake.schema.store import delete_prefix

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


def is_generation(name: str) -> bool:
    """True for the name of a generation group (``gen-<id>``)."""
    return name.startswith(GENERATION_PREFIX)


def new_generation() -> str:
    """A fresh, unique generation name (two concurrent computations never share one)."""
    import uuid

    return f"{GENERATION_PREFIX}{uuid.uuid4().hex[:16]}"


def published(kg: zarr.Group) -> tuple[zarr.Group, dict[str, Any]] | None:
    """The published data group of a result key group and its ``ResultMeta`` dict, or None.

    The data group is the generation the key group's attributes name, or the key group
    itself for a result written before generations. None when nothing is published
    (a first computation still running or killed) or the named generation is missing.
    """
    attrs = kg.attrs.asdict()
    raw = attrs.get(RESULT_ATTR)
    if raw is None:
        return None
    gen = attrs.get(GENERATION_ATTR)
    if gen is None:
        return kg, raw
    data = node(kg, str(gen))
    return None if data is None else (data, raw)


def stored_meta(lake: Lake, run: str, key: str) -> tuple[zarr.Group, ResultMeta] | None:
    """The published result ``key`` of ``run`` that still matches the run, or None.

    Returns its data group (see :func:`published`) and metadata. A result matches
    when its iterations are a prefix of the run's committed iterations (the run may
    have gained snapshots since).
    """
    kg = node(lake.root, results_path(run, key))
    found = published(kg) if kg is not None else None
    if found is None:
        return None
    g, raw = found
    try:
        meta = ResultMeta.from_dict(raw)
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
    # Device results (``source == "device"``, collect/device_alpha.py ResultSink) now store the
    # extras too; ones written before that cannot be recomputed here (they come from every
    # parameter's SGN, which the lake does not hold), so a missing extra there is not staleness:
    # readers find no extra arrays rather than values recomputed from the SGN sample.
    if meta.source != "device" and not all(e in g[n] for n in names for e in _extra_names(meta.estimator)):
        return None  # the result predates the estimator's extra outputs (inv_alpha, sparse)
    if any(g[n][NONFINITE].shape[0] < meta.n_iterations for n in names):
        return None  # arrays shorter than the published count: damaged, recompute
    return g, meta


def published_source(lake: Lake, run: str, key: str) -> str | None:
    """The ``source`` the published result ``key`` of ``run`` records (``sgn``, ``device``), unchecked.

    One attribute read, none of :func:`stored_meta`'s checks against the run: for a caller that
    needs the full check only for device results (a forced recomputation). None when nothing is
    published.
    """
    kg = node(lake.root, results_path(run, key))
    raw = kg.attrs.get(RESULT_ATTR) if kg is not None else None
    if not isinstance(raw, dict):
        return None
    return str(raw.get("source", "sgn"))


def _extra_names(estimator: str) -> list[str]:
    """Names of the extra outputs the registry declares for ``estimator`` (none if unknown)."""
    from .estimators import ESTIMATORS

    spec = ESTIMATORS.get(estimator)
    return [e.name for e in spec.extras] if spec else []


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
            found = published(g)
            meta = ResultMeta.from_dict(found[1]) if found else None
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


def result_lease(lake: Lake, run: str, key: str) -> Any:
    """The lease on computing result ``key`` of ``run`` (:class:`sgnlake.schema.lease.Lease`).

    A second computation of the same result while one is live is refused with one line
    naming its owner (:class:`~sgnlake.schema.lease.LeaseHeldError`); a killed one's lease
    is taken over. Readers never depend on it (generations are published atomically); it
    keeps two processes from computing one result twice and from appending concurrently.
    """
    from sgnlake.schema.lease import Lease

    return Lease.acquire(
        lake.writable_root(),
        results_path(run, key),
        owner_info={"command": "alpha"},
        what=f"result {key!r} of run {run!r}",
    )


def publish(wroot: zarr.Group, key_path: str, meta: dict[str, Any], gen: str | None, append: bool) -> None:
    """Make a computed result visible: rewrite the key group's attributes in one write, then tidy.

    Parameters
    ----------
    wroot : zarr.Group
        The lake's root opened for writing.
    key_path : str
        ``results/<run>/<key>``.
    meta : dict
        The ``ResultMeta`` to publish (``n_iterations`` rows of the data group are complete).
    gen : str or None
        The generation holding the data (None: a result written before generations,
        appended to in place).
    append : bool
        Rows were appended to the published generation ``gen``; it must still be the
        published one (a concurrent recomputation may have replaced it).

    Raises
    ------
    LakeError
        ``append`` and the generation was replaced meanwhile (nothing published).
    """
    kg = wroot[key_path]  # read afresh: another process may have published meanwhile
    attrs = kg.attrs.asdict()
    prev = attrs.get(GENERATION_ATTR)
    legacy = RESULT_ATTR in attrs and prev is None
    if append and prev != gen:
        raise LakeError(
            f"result {key_path} was replaced by a concurrent computation while snapshots were "
            "appended: nothing published; run sgnlake alpha again"
        )
    new = {**attrs, RESULT_ATTR: meta}
    if gen is not None:
        new[GENERATION_ATTR] = gen
    kg.update_attributes(new)  # THE publication: one atomic write of the key group's zarr.json
    if append:
        return
    store = wroot.store
    if prev is not None and prev != gen:
        delete_prefix(store, f"{key_path}/{prev}")
    if legacy:  # the arrays of a result written before generations, now superseded
        for name in list(kg.keys()):
            if not is_generation(name):
                delete_prefix(store, f"{key_path}/{name}")


def array_metadata(**create: Any) -> Any:
    """The metadata document :func:`zarr.create_array` writes for these keyword arguments.

    Built by Zarr itself on an in-memory store (nothing is written to the lake), so a node
    created from it by :func:`create_nodes` stores the very ``zarr.json`` bytes
    ``group.create_array(name, **create)`` would.

    Parameters
    ----------
    **create
        Keyword arguments of :func:`zarr.create_array` (``shape``, ``chunks``, ``dtype``, ...).

    Returns
    -------
    zarr.core.metadata.ArrayV3Metadata
    """
    from zarr.storage import MemoryStore

    return zarr.create_array(MemoryStore(), **create).metadata


def create_nodes(group: zarr.Group, nodes: Mapping[str, Any]) -> dict[str, zarr.Array | zarr.Group]:
    """Create new groups and arrays under ``group`` at once: every metadata document in one Zarr call.

    ``group.create_group`` / ``create_array`` each check and write every parent group's
    document up to the store's root (about 16 store round trips per array in a result
    generation); this writes each new node's ``zarr.json`` once, concurrently on Zarr's event
    loop, after checking that none of them exists (:meth:`zarr.Group.create_hierarchy`).
    The documents are the ones the per-node calls would write.

    Parameters
    ----------
    group : zarr.Group
        An existing group (opened writable).
    nodes : mapping of str to metadata
        Paths relative to ``group`` (parents before their children's paths need not be
        listed) -> ``zarr.core.group.GroupMetadata`` or :func:`array_metadata`.

    Returns
    -------
    dict
        The created nodes by the same paths.
    """
    return dict(group.create_hierarchy(dict(nodes)))


def group_metadata(attributes: Mapping[str, Any] | None = None) -> Any:
    """The metadata document ``group.create_group(name, attributes=...)`` writes (Zarr v3)."""
    from zarr.core.group import GroupMetadata

    return GroupMetadata(attributes=dict(attributes or {}), zarr_format=3)


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
    return read_rows_and_sums([], [arr], n, block_elements)[1][0]


def read_rows_and_sums(
    rows: Sequence[tuple[zarr.Array, int]],
    sums: Sequence[zarr.Array],
    n: int,
    block_elements: int = 1 << 22,
    concurrency: int = 4,
) -> tuple[list[np.ndarray], list[int]]:
    """Rows of stored arrays and sums of the first ``n`` rows of 2-D count arrays, in one Zarr call.

    All reads run concurrently on Zarr's event loop (one round trip from this thread instead
    of one per read); each sum reads a bounded block of rows at a time, and at most
    ``concurrency`` blocks are held at once.

    Parameters
    ----------
    rows : sequence of (zarr.Array, int)
        ``arr[i]`` to read.
    sums : sequence of zarr.Array
        2-D count arrays: ``arr[:n].sum()`` to compute (as int64).
    n : int
        Rows summed.
    block_elements : int
        Elements per block read of a sum.
    concurrency : int
        Blocks of the sums held at once (with the defaults, 64 MB of int32 counts at most).

    Returns
    -------
    tuple of (list of numpy.ndarray, list of int)
        The rows, and the sums, in the order given.
    """
    import asyncio

    from zarr.core.sync import sync

    async def run() -> tuple[list[Any], list[int]]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def total(arr: zarr.Array) -> int:
            step = max(1, block_elements // max(1, arr.shape[1]))

            async def block(i: int) -> int:
                async with gate:
                    data = await arr.async_array.getitem(slice(i, min(i + step, n)))
                    return int(np.asarray(data).sum(dtype=np.int64))

            return sum(await asyncio.gather(*(block(i) for i in range(0, n, step))))

        got = await asyncio.gather(
            asyncio.gather(*(arr.async_array.getitem(i) for arr, i in rows)),
            asyncio.gather(*(total(arr) for arr in sums)),
        )
        return list(got[0]), list(got[1])

    got_rows, got_sums = sync(run())
    return [np.asarray(r) for r in got_rows], got_sums
