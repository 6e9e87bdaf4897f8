"""Creating, recognising and reading the metadata of a lake (no SGN is read here)."""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import os
from collections.abc import Mapping
from typing import Any

import zarr
import zarr.errors

from .errors import (
    LakeError,
    LakeNotFoundError,
    LakeReadOnlyError,
    NotALakeError,
    RunNotFoundError,
    SgnlakeError,
    ValidationError,
)
from .meta import LakeMeta, RunMeta
from .names import LAKE_ATTR, RUN_ARRAYS, RUN_ATTR, RUNS_GROUP, TENSOR_ARRAYS, check_run_id, run_path
from .store import is_url, local_path, open_store, run_sync, storage


class DamagedError(ValidationError):
    """Lake or run metadata that cannot be read or contradicts the arrays (one line naming run and file)."""


def _root_recognisable(store: Any) -> bool:
    """True when the store holds a lake's ``runs/`` group (its root metadata may be damaged)."""
    from .store import exists

    try:
        return exists(store, f"{RUNS_GROUP}/zarr.json")
    except Exception:
        return False


def now() -> str:
    """Current UTC time as ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _check_local_target(location: str, *, create: bool) -> None:
    path = local_path(location)
    if os.path.isfile(path):
        raise NotALakeError(f"{path} is a file, not a lake: choose a directory path for LAKE")
    if not os.path.exists(path):
        if not create:
            raise LakeNotFoundError(
                f"no lake at {path}: check the path, or create one with 'sgnlake collect'"
            )
        return
    if not os.path.exists(os.path.join(path, "zarr.json")):
        empty = not os.listdir(path)
        if not empty and create:
            raise NotALakeError(
                f"{path} is a non-empty directory that is not a lake: choose an empty or new path"
            )
        if not create:
            error = LakeNotFoundError if empty else NotALakeError
            raise error(f"{path} is not an sgnlake lake (no zarr.json): check the path")


def open_lake_group(
    location: str | os.PathLike[str],
    *,
    mode: str = "r",
    storage_options: Mapping[str, Any] | None = None,
) -> zarr.Group:
    """Open a lake's root group and check that it is an sgnlake lake.

    Parameters
    ----------
    location : str or path
        Local path or fsspec URL.
    mode : {"r", "r+", "a"}
        ``r`` read-only; ``r+`` read-write (must exist); ``a`` create if missing.

    Raises
    ------
    LakeNotFoundError
        Nothing is there yet (a missing path, an empty folder or prefix), unless ``a``.
    NotALakeError
        The location holds something that is not a lake.
    LakeReadOnlyError
        ``a``: the lake is absent and the location is not writable.
    SchemaVersionError
        The lake's schema version is newer than this sgnlake.
    """
    loc = os.fspath(location)
    create = mode == "a"
    if not is_url(loc):  # a local path can be a file or an empty folder: say so before zarr does
        _check_local_target(loc, create=create)
    store = open_store(loc, read_only=(mode == "r"), storage_options=storage_options)
    try:
        root = zarr.open_group(store, mode="r" if mode == "r" else "r+", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        if not create:
            raise LakeNotFoundError(
                f"no lake at {loc}: check the path, or create one with 'sgnlake collect'"
            ) from None
        try:
            root = zarr.open_group(
                store, mode="a", zarr_format=3, attributes={LAKE_ATTR: LakeMeta(created=now()).to_dict()}
            )
            root.require_group(RUNS_GROUP)
        except PermissionError as e:
            raise LakeReadOnlyError(
                f"cannot create a lake at {loc} ({_first_line(e)}): {_access_hint(loc)}"
            ) from None
        except Exception as e:  # e.g. a missing bucket, no credentials
            storage_error(e, loc)
            raise LakeError(
                f"cannot create a lake at {loc} ({_first_line(e)}): {_access_hint(loc)}"
            ) from None
        return root
    except Exception as e:
        storage_error(e, loc)
        if _is_access_error(e):
            raise LakeError(f"cannot read {loc} ({_first_line(e)}): {_access_hint(loc)}") from None
        if _root_recognisable(store):  # a lake whose root zarr.json was damaged
            raise DamagedError(
                f"the lake's root metadata {loc.rstrip('/')}/zarr.json is damaged ({_first_line(e)}): "
                f"run 'sgnlake check {loc}'"
            ) from None
        # e.g. a zarr v2 store
        raise NotALakeError(f"{loc} is not an sgnlake lake ({_first_line(e)}): check the path") from None
    if LAKE_ATTR not in root.attrs:
        if _root_recognisable(store):
            raise DamagedError(
                f"the lake's root metadata {loc.rstrip('/')}/zarr.json lacks the '{LAKE_ATTR}' attribute "
                f"(damaged): run 'sgnlake check {loc}'"
            )
        if create and not list(root.keys()):
            root.attrs[LAKE_ATTR] = LakeMeta(created=now()).to_dict()
            root.require_group(RUNS_GROUP)
            return root
        raise NotALakeError(f"{loc} is a Zarr group but not an sgnlake lake (no '{LAKE_ATTR}' attribute)")
    LakeMeta.from_dict(root.attrs[LAKE_ATTR])  # raises on newer schema
    if create and RUNS_GROUP not in root:
        root.require_group(RUNS_GROUP)
    return root


def probe_lake(
    location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> zarr.Group | None:
    """The lake at ``location`` opened read-only, or None when nothing is there yet.

    The one check of "is there a lake here" before a lake is created with
    :func:`open_lake_group` (``mode="a"``): writes nothing.

    Raises
    ------
    NotALakeError, SchemaVersionError, LakeError
        Something other than a lake is there, a newer lake, or the location cannot be read.
    """
    try:
        return open_lake_group(location, mode="r", storage_options=storage_options)
    except LakeNotFoundError:
        return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _connection_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError

        types.append(BotoConnectionError)  # EndpointConnectionError, ConnectTimeoutError, ...
    except ImportError:
        pass
    try:
        from aiohttp import ClientConnectionError

        types.append(ClientConnectionError)
    except ImportError:
        pass
    return tuple(types)


def connection_error(e: BaseException) -> BaseException | None:
    """The error in ``e``'s chain (``e``, its cause or context, ...) saying the store could not be reached.

    A connection error of Python, botocore or aiohttp (refused, reset, timed out,
    endpoint unreachable); None when ``e`` is something else.
    """
    chain: BaseException | None = e
    for _ in range(8):
        if chain is None:
            return None
        if isinstance(chain, _connection_types()):
            return chain
        chain = chain.__cause__ or chain.__context__
    return None


def storage_error(e: BaseException, loc: str) -> None:
    """Raise a one-line :class:`LakeError` when ``e`` (or its cause) is an unreachable store or a bad option.

    Typed: a connection error of Python, botocore or aiohttp ("cannot connect"), or a
    ``TypeError`` from an object store's client ("unknown storage option"). Returns
    for any other error.
    """
    down = connection_error(e)
    if down is not None:
        raise LakeError(
            f"cannot connect to {loc} ({_first_line(down)}): check the endpoint "
            "(--storage-option client_kwargs.endpoint_url=...) and the network"
        ) from None
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES):
        raise LakeReadOnlyError(
            f"cannot write to {loc} ({_first_line(e)}): the location is read-only; use a writable one"
        ) from None
    if isinstance(e, TypeError) and is_url(loc):
        raise LakeError(
            f"unknown storage option for {loc} ({_first_line(e)}): check the --storage-option names"
        ) from None


def _is_access_error(e: BaseException) -> bool:
    name = type(e).__name__
    return isinstance(e, PermissionError) or any(
        key in name for key in ("Credentials", "AccessDenied", "Forbidden", "NoSuchBucket", "ClientError")
    )


def _access_hint(loc: str) -> str:
    if is_url(loc):  # object stores fail on credentials and buckets, local folders on permissions
        return (
            "check that the bucket exists and the credentials (environment or --storage-option key=...,"
            " secret=..., client_kwargs.endpoint_url=...) allow access"
        )
    return "check that the folder is writable"


def lake_meta(root: zarr.Group) -> LakeMeta:
    """The validated root metadata of an opened lake."""
    return LakeMeta.from_dict(root.attrs[LAKE_ATTR])


def run_ids(root: zarr.Group) -> list[str]:
    """Ids of the readable runs in a lake (groups under ``runs/`` with run attrs), sorted by config.

    The order is :func:`~sgnlake.schema.run_table.run_sort_key` (config, then the id
    naturally: ``b50`` before ``b100``). A run whose ``zarr.json`` cannot be read is
    left out (see :func:`scan_runs`).
    """
    from .run_table import sort_runs

    metas: dict[str, RunMeta | None] = {}
    for name in scan_runs(root)[0]:
        try:
            metas[name] = RunMeta.from_dict(root[run_path(name)].attrs[RUN_ATTR])
        except Exception:  # damaged: sorted last by id
            metas[name] = None
    return sort_runs(metas)


def _child_names(root: zarr.Group, path: str) -> list[str]:
    """Names of the stored children of ``path`` (read from a listing: no child metadata is parsed)."""
    s = storage(root.store)
    full = f"{root.path}/{path}" if root.path else path

    async def go() -> list[str]:
        return [k async for k in s.list_dir(full)]

    return sorted({k.strip("/") for k in run_sync(go())} - {"zarr.json", ""})


def scan_runs(root: zarr.Group) -> tuple[list[str], dict[str, str]]:
    """The runs of a lake: sorted readable ids, and ``{run id: one-line damage}`` for the others.

    A group without run attributes (a collector creating it) is neither. Only each
    run's own ``zarr.json`` is read (see :func:`run_damage` for its arrays).
    """
    try:
        names = _child_names(root, RUNS_GROUP)
    except Exception:  # a store that cannot list directories
        if RUNS_GROUP not in root:
            return [], {}
        names = sorted(name for name, _ in root[RUNS_GROUP].groups())
    ok: list[str] = []
    damaged: dict[str, str] = {}
    for name in names:
        path = run_path(name)
        try:
            g = root[path]
        except KeyError:
            continue
        except Exception as e:
            damaged[name] = (
                f"run {name!r} is damaged: {path}/zarr.json cannot be read ({_first_line(e)}); "
                "the other runs are unaffected (run 'sgnlake check')"
            )
            continue
        if not isinstance(g, zarr.Group) or RUN_ATTR not in g.attrs:
            continue
        try:
            read_run_meta(g)
        except SgnlakeError as e:
            damaged[name] = (
                f"run {name!r} is damaged: {path}/zarr.json has invalid run attributes ({e}); "
                "the other runs are unaffected (run 'sgnlake check')"
            )
            continue
        ok.append(name)
    return ok, damaged


def run_damage(group: zarr.Group, meta: RunMeta) -> str | None:
    """One line naming the run and the file when a run's arrays contradict or lack metadata, else None.

    Reads the metadata of the run's arrays (and its committed iterations); no SGN.
    """
    from .validate import validate_run

    rid = meta.run_id
    base = run_path(rid)
    nodes = [(name, name) for name in RUN_ARRAYS]
    for t in meta.tensors:
        nodes.append((t.name, t.name))
        nodes += [(f"{t.name}/{a}", f"{t.name}/{a}") for a in TENSOR_ARRAYS]
    for rel, _ in nodes:
        try:
            group[rel]
        except KeyError:
            continue  # named by validate_run below
        except Exception as e:
            return (
                f"run {rid!r} is damaged: {base}/{rel}/zarr.json cannot be read ({_first_line(e)}); "
                "the other runs are unaffected (run 'sgnlake check')"
            )
    try:
        problems = validate_run(group, meta)
    except Exception as e:
        problems = [f"run {rid!r}: {_first_line(e)}"]
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return (
            f"{problems[0]}{more}: the metadata of {base} (its zarr.json or its arrays') is damaged; "
            "the other runs are unaffected (run 'sgnlake check')"
        )
    return None


def run_group(root: zarr.Group, run_id: str) -> zarr.Group:
    """The group of run ``run_id``; :class:`RunNotFoundError` if absent."""
    check_run_id(run_id)
    try:
        g = root[run_path(run_id)]
    except KeyError:
        g = None
    if not isinstance(g, zarr.Group) or RUN_ATTR not in g.attrs:
        known = run_ids(root)
        hint = f"known runs: {', '.join(known[:10])}" if known else "the lake has no runs yet"
        raise RunNotFoundError(f"no run {run_id!r} in the lake ({hint})")
    return g


def read_run_meta(group: zarr.Group) -> RunMeta:
    """Parse and validate a run group's attributes."""
    try:
        return RunMeta.from_dict(group.attrs[RUN_ATTR])
    except KeyError:
        raise ValidationError(f"group {group.path!r} has no '{RUN_ATTR}' attribute") from None


def software_versions() -> dict[str, str]:
    """Versions of the packages that shape what is written (a fresh dict; looked up once per process)."""
    return dict(_software_versions())


@functools.cache
def _software_versions() -> dict[str, str]:
    # importlib.metadata scans every installed distribution (~20 ms): once per process is enough,
    # since a running process keeps the modules it imported
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for name in ("sgnlake", "numpy", "zarr", "numcodecs", "torch", "xarray", "dask", "scipy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out
