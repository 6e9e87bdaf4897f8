"""Chunks of a snapshot as zarr stores them, and the plain local-file writes of the commit path.

For the lossless zstd default the writer encodes each chunk itself (:func:`direct_codec`:
exactly the bytes zarr's codec pipeline stores), on a pool of threads (:func:`copier`), and
on a local disk writes the chunk files and metadata documents with plain file calls
(:func:`write_file`, :func:`write_atomic`) instead of going through zarr's store. Used by
:class:`sgnlake.collect.writer.RunWriter`. The encoding and file writes themselves live in
:mod:`sgnlake.schema.chunk_store` (alpha's result writes use them too) and are re-exported
here, where the writer calls them and the fault-injection tests patch them. This module does
not import torch.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from sgnlake.schema.chunk_store import (  # noqa: F401  (re-exported: the writer and its tests use them here)
    DirectCodec,
    crc32c,
    direct_codec,
    encode_chunk,
    local_root,
    write_atomic,
    write_file,
)


async def gather(*coros: Any) -> list[Any]:
    """Await ``coros`` concurrently (inside zarr's event loop)."""
    return list(await asyncio.gather(*coros))


_COPIER: ThreadPoolExecutor | None = None
_COPIER_LOCK = threading.Lock()


def copier() -> ThreadPoolExecutor:
    """The process's pool of threads (one per usable core) that make strided chunks contiguous."""
    global _COPIER
    with _COPIER_LOCK:
        if _COPIER is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            _COPIER = ThreadPoolExecutor(max(1, cores or 1), thread_name_prefix="sgnlake-copy")
        return _COPIER


def _forget_copier() -> None:  # a forked child has none of its parent's threads
    global _COPIER, _COPIER_LOCK
    _COPIER, _COPIER_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_copier)


def chunk_parts(
    index: int, value: np.ndarray, chunks: tuple[int, ...]
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """``(selection, value)`` per chunk of snapshot ``index``: ``value`` shaped like one chunk (a view).

    ``value`` holds one snapshot (the array's shape without its first axis); each
    yielded value is ``(1, *chunk)`` (smaller at the array's far edges), so zarr
    writes it without filling and copying a chunk buffer first.
    """
    grids = [range(0, s, c) for s, c in zip(value.shape, chunks, strict=True)]
    for starts in np.ndindex(*(len(g) for g in grids)):
        sel = tuple(
            slice(g[i], min(g[i] + c, n))
            for i, g, c, n in zip(starts, grids, chunks, value.shape, strict=True)
        )
        yield (slice(index, index + 1), *sel), value[sel][None]


def store_chunk(item: tuple[Any, tuple[Any, ...]]) -> int | list[bytes]:
    """Encode one chunk (:func:`encode_chunk`); write it when its target is a local file path.

    Returns the bytes written to that file, or the encoded pieces for a zarr store path.
    """
    target, job = item
    parts = encode_chunk(*job)
    return write_file(target, parts) if isinstance(target, str) else parts
