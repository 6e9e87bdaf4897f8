"""Chunks of a snapshot as zarr stores them, and the plain local-file writes of the commit path.

For the lossless zstd default the writer encodes each chunk itself (:func:`direct_codec`:
exactly the bytes zarr's codec pipeline stores), on a pool of threads (:func:`copier`), and
on a local disk writes the chunk files and metadata documents with plain file calls
(:func:`write_file`, :func:`write_atomic`) instead of going through zarr's store. Used by
:class:`sgnlake.collect.writer.RunWriter`. This module does not import torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import LocalStore


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


class DirectCodec:
    """numcodecs' ``Zstd``, then (optionally) zarr's trailing 4-byte little-endian CRC-32C."""

    def __init__(self, zstd: numcodecs.abc.Codec, crc32c: bool) -> None:
        self.zstd = zstd
        self.crc32c = crc32c

    def encode_parts(self, buf: Any) -> list[bytes]:
        """The stored chunk as its pieces: the compressed bytes and the 4 checksum bytes (no copy joins them)."""
        data = self.zstd.encode(buf)
        if not self.crc32c:
            return [data]
        return [data, crc32c(data).to_bytes(4, "little")]

    def encode(self, buf: Any) -> bytes:
        """The stored chunk as one ``bytes`` object."""
        return b"".join(self.encode_parts(buf))


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (as zarr's ``Crc32cCodec`` computes it)."""
    try:
        import google_crc32c

        return int(google_crc32c.value(data))
    except ImportError:  # pragma: no cover - numcodecs' codec appends the same 4 bytes
        return int.from_bytes(bytes(numcodecs.CRC32C().encode(data))[-4:], "little")


def direct_codec(arr: zarr.Array) -> DirectCodec | None:
    """A codec that encodes a chunk of ``arr`` to exactly the bytes zarr stores, or None.

    Only for the lossless default pipeline (``bytes`` in this machine's byte order, then
    ``zstd``, optionally then ``crc32c``) on a regular chunk grid: zarr's ``ZstdCodec`` is
    numcodecs' ``Zstd`` with the same level and checksum over the raw chunk bytes, and zarr's
    ``Crc32cCodec`` appends the little-endian CRC-32C of the compressed bytes. Anything else
    (blosc, BitRound, float16, sharding) goes through zarr.
    """
    md = arr.metadata
    if not isinstance(md, ArrayV3Metadata) or not isinstance(md.chunk_grid, RegularChunkGrid):
        return None
    codecs = list(md.codecs)
    crc = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
    if crc:
        codecs = codecs[:-1]
    if len(codecs) != 2:
        return None
    raw, zstd = codecs
    if not isinstance(raw, BytesCodec) or not isinstance(zstd, ZstdCodec):
        return None
    if raw.endian is not None and raw.endian.value != sys.byteorder:
        return None
    return DirectCodec(numcodecs.Zstd(level=zstd.level, checksum=zstd.checksum), crc)


def encode_chunk(codec: DirectCodec, part: np.ndarray, shape: tuple[int, ...], fill: Any) -> list[bytes]:
    """``part`` (one chunk, smaller at the array's far edges) encoded as zarr stores it (see ``encode_parts``).

    An edge chunk is padded to the full chunk ``shape`` with the fill value, as zarr does.
    """
    if part.shape != shape:
        full = np.full(shape, fill, dtype=part.dtype)
        full[tuple(slice(0, n) for n in part.shape)] = part
        part = full
    return codec.encode_parts(np.ascontiguousarray(part))


def local_root(store: Any) -> str | None:
    """The folder of a writable local-disk store (written with plain file calls), else None."""
    if isinstance(store, LocalStore) and not store.read_only:
        return os.fspath(store.root)
    return None


def write_file(path: str, parts: Sequence[Any]) -> int:
    """Write ``parts`` (buffers) one after the other into the file ``path`` (created or truncated); return bytes.

    Not atomic: only for keys no reader trusts yet (the chunks and checkpoint of a snapshot
    that is not committed; :meth:`sgnlake.collect.writer.RunWriter.truncate` deletes them after a crash). Missing
    parent folders (nested chunk keys of older lakes) are created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    total = 0
    try:
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                n = os.write(fd, view)
                total += n
                view = view[n:]
    finally:
        os.close(fd)
    return total


def write_atomic(path: str, data: bytes) -> None:
    """Replace the file ``path`` by ``data`` atomically (temporary file + rename, as zarr's ``LocalStore``)."""
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        write_file(tmp, [data])
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def store_chunk(item: tuple[Any, tuple[Any, ...]]) -> int | list[bytes]:
    """Encode one chunk (:func:`encode_chunk`); write it when its target is a local file path.

    Returns the bytes written to that file, or the encoded pieces for a zarr store path.
    """
    target, job = item
    parts = encode_chunk(*job)
    return write_file(target, parts) if isinstance(target, str) else parts
