"""Lake locations (local paths or fsspec URLs: ``s3://``, ``gs://``, ``file://``) and their stores.

Opening a location as a Zarr store, and the storage operations sgnlake needs
beyond Zarr's arrays and groups (list, size, read, write, delete objects), all
through zarr's Store API for local and fsspec lakes alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import weakref
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from zarr.abc.store import Store
from zarr.buffer import cpu, default_buffer_prototype
from zarr.storage import FsspecStore, LocalStore

from .errors import LakeError

T = TypeVar("T")


def is_url(location: str) -> bool:
    """True for ``scheme://...`` locations other than plain local paths.

    Use it only where a local folder genuinely behaves differently from an object
    store (a folder can exist empty, or be a file; error hints differ).
    """
    return "://" in str(location) and not str(location).startswith("file://")


def local_path(location: str | os.PathLike[str]) -> str:
    """The filesystem path of a local lake location (``file://`` stripped)."""
    s = os.fspath(location)
    return s[len("file://") :] if s.startswith("file://") else s


def parse_storage_options(items: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings (``--storage-option``) into a dict.

    Values ``true``/``false`` become booleans and integers become ints; a key
    ``client_kwargs.endpoint_url=...`` sets a nested mapping.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise LakeError(f"bad --storage-option {item!r}: use key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise LakeError(
                f"bad --storage-option {item!r}: empty key or key part; use key=value or "
                "a.b=value (e.g. client_kwargs.endpoint_url=http://...)"
            )
        v: Any = value
        if value.lower() in ("true", "false"):
            v = value.lower() == "true"
        elif value.lstrip("-").isdigit():
            v = int(value)
        node = out
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise LakeError(
                    f"bad --storage-option {item!r}: {'.'.join(parts[: i + 1])!r} was given a value, "
                    "it cannot also hold nested keys"
                )
        if isinstance(node.get(parts[-1]), dict):
            raise LakeError(
                f"bad --storage-option {item!r}: {key!r} already holds nested keys, it cannot be a value"
            )
        node[parts[-1]] = v
    return out


def open_store(
    location: str | os.PathLike[str],
    *,
    read_only: bool = False,
    storage_options: Mapping[str, Any] | None = None,
):
    """Return a Zarr store for a lake location.

    Parameters
    ----------
    location : str or path
        Local path, ``file://`` URL or any fsspec URL.
    read_only : bool
        Open read-only.
    storage_options : mapping, optional
        fsspec storage options (credentials, endpoint, ...).
    """
    loc = os.fspath(location)
    if is_url(loc):  # an object store needs fsspec and its options; a local folder does not
        options = dict(storage_options or {})
        # Object-store listings are cached per filesystem instance by fsspec; a lake
        # is written by other processes, so readers must see fresh listings.
        options.setdefault("use_listings_cache", False)
        try:
            return _fsspec_store(loc, options, read_only)
        except (ImportError, ValueError, TypeError) as e:
            # unknown scheme, backend not installed (s3fs, gcsfs), or a bad storage option
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LakeError(
                f"cannot open {loc} ({msg}): check the URL scheme, install its fsspec backend "
                "(e.g. pip install s3fs), and the --storage-option values"
            ) from None
    if storage_options:
        raise LakeError(
            f"--storage-option is for object stores (s3://, gs://, ...): {loc} is a local path, "
            "drop the option"
        )
    return LocalStore(local_path(loc), read_only=read_only)


def _fsspec_store(url: str, options: Mapping[str, Any], read_only: bool) -> FsspecStore:
    """An fsspec store usable from any event loop, whose sessions are closed.

    The filesystem is opened in synchronous mode behind ``AsyncFileSystemWrapper``:
    its IO runs on fsspec's own event loop, so zarr's loop and :func:`run_sync` can
    both use the store, and fsspec closes its HTTP session when the filesystem is
    released (an asynchronous s3fs instance leaves an unclosed aiohttp session).
    """
    from fsspec.core import url_to_fs
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    fs, path = url_to_fs(url, **options)
    return FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path=path, read_only=read_only)


# ----------------------------------------------------------------------------- store operations
#
# Listing, sizes, existence, reading, writing and deletion of stored objects go through
# zarr's Store API (``list_prefix``, ``getsize``, ``exists``, ``get``, ``set``,
# ``delete_dir``) for local and fsspec lakes alike. The Store API is asynchronous; the
# functions below run it from synchronous code on one event loop owned by sgnlake.
#
# Stores of :func:`open_store` work on any event loop (see :func:`_fsspec_store`); an
# fsspec store opened elsewhere with an asynchronous filesystem is bound to zarr's loop
# (s3fs keeps an aiohttp session created on it), so :func:`storage` gives it a
# loop-independent twin over the same filesystem in synchronous mode.

_LOOP: list[asyncio.AbstractEventLoop] = []
_LOOP_LOCK = threading.Lock()
_TWINS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _loop() -> asyncio.AbstractEventLoop:
    with _LOOP_LOCK:
        if not _LOOP:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="sgnlake-store", daemon=True).start()
            _LOOP.append(loop)
        return _LOOP[0]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine of a :func:`storage` store to completion and return its result.

    Safe from any thread, also while another event loop runs in it (Jupyter).
    """
    return asyncio.run_coroutine_threadsafe(coro, _loop()).result()


def _sync_twin(store: FsspecStore) -> FsspecStore:
    """``store`` over the same filesystem in synchronous mode (usable from any event loop)."""
    from fsspec import AbstractFileSystem
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    fs = store.fs
    if isinstance(fs, AsyncFileSystemWrapper):
        return store
    twin = _TWINS.get(fs)
    if twin is None:
        spec = json.loads(fs.to_json())
        spec["asynchronous"] = False
        sync_fs = AbstractFileSystem.from_json(json.dumps(spec))
        twin = AsyncFileSystemWrapper(sync_fs, asynchronous=True)
        _TWINS[fs] = twin
    return FsspecStore(twin, read_only=store.read_only, path=store.path)


def storage(
    where: str | os.PathLike[str] | Store,
    *,
    read_only: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> Store:
    """A Zarr store of a lake for the functions of this module (listing, sizes, copying).

    Parameters
    ----------
    where : str, path or zarr Store
        A lake location (local path, ``file://`` or fsspec URL) or a store zarr
        opened (e.g. ``group.store``).
    read_only : bool
        Open a location read-only (ignored for a store).
    storage_options : mapping, optional
        fsspec options of a location.

    Returns
    -------
    zarr.abc.store.Store
        A store whose methods can be run with :func:`run_sync`.
    """
    if isinstance(where, FsspecStore):
        return _sync_twin(where)
    if isinstance(where, Store):
        return where
    return open_store(where, read_only=read_only, storage_options=storage_options)


def same_location(a: Store, b: Store) -> bool:
    """True when two stores hold the same objects (same folder, or same protocol and path)."""
    if isinstance(a, LocalStore) and isinstance(b, LocalStore):
        return a.root.resolve() == b.root.resolve()
    if isinstance(a, FsspecStore) and isinstance(b, FsspecStore):
        return a.fs.protocol == b.fs.protocol and a.path.rstrip("/") == b.path.rstrip("/")
    return False


def _dir(prefix: str) -> str:
    """``prefix`` as a directory prefix (``""`` for the root): ``runs/a`` never matches ``runs/ab``."""
    return prefix.strip("/") + "/" if prefix.strip("/") else ""


async def _list(store: Store, prefix: str) -> list[str]:
    try:
        return [k async for k in store.list_prefix(_dir(prefix))]
    except FileNotFoundError:  # a read-only local store whose folder does not exist
        return []


async def _size(store: Store, key: str) -> int:
    try:
        return int(await store.getsize(key))
    except (FileNotFoundError, KeyError):
        return 0  # absent (e.g. a chunk equal to the fill value is never stored)


def list_keys(store: Store, prefix: str = "") -> list[str]:
    """Sorted keys of every stored object under directory ``prefix`` (relative to the store root)."""
    s = storage(store)
    return sorted(run_sync(_list(s, prefix)))


def key_sizes(store: Store, prefix: str = "") -> dict[str, int]:
    """``{key: bytes}`` of every stored object under directory ``prefix``."""
    s = storage(store)

    async def go() -> dict[str, int]:
        keys = await _list(s, prefix)
        sizes = await asyncio.gather(*(_size(s, k) for k in keys))
        return dict(zip(keys, sizes, strict=True))

    return run_sync(go())


def stored_bytes(
    where: str | os.PathLike[str] | Store,
    prefix: str = "",
    *,
    keys: Iterable[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Bytes stored under directory ``prefix`` of a lake, or in the objects ``keys`` (0 if absent).

    The one measure of stored size: ``sgnlake ls``, the sweep and the collector's
    write statistics all count with it.

    Parameters
    ----------
    where : str, path or zarr Store
        Lake location or a store zarr opened.
    prefix : str
        Directory inside the lake, e.g. ``run_path(run_id)``; ``""`` is the whole lake.
    keys : iterable of str, optional
        Count exactly these objects instead (missing ones count 0).
    storage_options : mapping, optional
        fsspec options of a location.
    """
    s = storage(where, storage_options=storage_options)

    async def go() -> int:
        names = await _list(s, prefix) if keys is None else list(keys)
        return sum(await asyncio.gather(*(_size(s, k) for k in names)))

    return int(run_sync(go()))


def is_empty(
    where: str | os.PathLike[str] | Store,
    prefix: str = "",
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> bool:
    """True when nothing is stored under directory ``prefix`` (a missing folder or bucket prefix).

    The "is there anything here yet" probe of a lake location, the same for local
    folders and object stores.
    """
    s = storage(where, storage_options=storage_options)
    return not run_sync(_list(s, prefix))


def exists(store: Store, key: str) -> bool:
    """True when the object ``key`` is stored."""
    s = storage(store)
    try:
        return bool(run_sync(s.exists(key)))
    except FileNotFoundError:
        return False


def read_bytes(store: Store, key: str) -> bytes | None:
    """The stored bytes of ``key`` (None when absent)."""
    s = storage(store)

    async def go() -> bytes | None:
        try:
            buf = await s.get(key, prototype=default_buffer_prototype())
        except FileNotFoundError:
            return None
        return None if buf is None else buf.to_bytes()

    return run_sync(go())


def write_bytes(store: Store, key: str, data: bytes) -> None:
    """Store ``data`` as object ``key`` (parent folders of local stores are created)."""
    s = storage(store)
    run_sync(s.set(key, cpu.Buffer.from_bytes(data)))


def delete_prefix(store: Store, prefix: str) -> None:
    """Delete every object under directory ``prefix`` (nothing if there is none)."""
    s = storage(store)
    run_sync(s.delete_dir(prefix.strip("/")))


def delete_key(store: Store, key: str) -> None:
    """Delete the one object ``key`` (nothing if it is absent)."""
    s = storage(store)
    try:
        run_sync(s.delete(key))
    except FileNotFoundError:
        pass
