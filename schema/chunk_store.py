"""Stored chunks as Zarr stores them, written and encoded without Zarr's per-key machinery.

For the plain lossless chains sgnlake writes (:func:`sgnlake.schema.codecs.plain_chain` with
zstd), :func:`direct_codec` encodes a chunk to exactly the bytes Zarr's codec pipeline stores
(:func:`encode_chunk` pads edge chunks with the fill value as Zarr does), and on a writable
local store (:func:`local_root`) the files are written with plain calls: :func:`write_file`
for keys no reader trusts yet, :func:`write_atomic` (temporary file + rename, as Zarr's
``LocalStore``) for everything else. The collector's writer
(:mod:`sgnlake.collect.chunk_files`) and alpha's result writes (:mod:`sgnlake.analyze.fused`)
both use them; the read side is :func:`sgnlake.schema.codecs.chunk_decoder`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Sequence
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import LocalStore

from .codecs import plain_chain


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

    Only for the lossless default pipeline (:func:`sgnlake.schema.codecs.plain_chain` with
    ``zstd``: little-endian ``bytes``, ``zstd``, optionally ``crc32c``) on a regular chunk grid:
    zarr's ``ZstdCodec`` is numcodecs' ``Zstd`` with the same level and checksum over the raw
    chunk bytes, and zarr's ``Crc32cCodec`` appends the little-endian CRC-32C of the compressed
    bytes. Anything else (no codec, blosc, BitRound, float16, sharding) goes through zarr.
    """
    md = arr.metadata
    if not isinstance(md, ArrayV3Metadata) or not isinstance(md.chunk_grid, RegularChunkGrid):
        return None
    plain = plain_chain(md.codecs, arr.dtype)
    if plain is None or plain[0] is None:
        return None
    zstd, crc = plain
    return DirectCodec(numcodecs.Zstd(level=zstd.level, checksum=zstd.checksum), crc)


def encode_chunk(codec: DirectCodec, part: np.ndarray, shape: tuple[int, ...], fill: Any) -> list[bytes]:
    """``part`` (one chunk, smaller at the array's far edges) encoded as zarr stores it (see ``encode_parts``).

    An edge chunk is padded to the full chunk ``shape`` with the fill value, as zarr does; the
    bytes are little-endian, as :func:`direct_codec`'s chains store them.
    """
    if part.shape != shape:
        full = np.full(shape, fill, dtype=part.dtype)
        full[tuple(slice(0, n) for n in part.shape)] = part
        part = full
    return codec.encode_parts(np.ascontiguousarray(part, dtype=part.dtype.newbyteorder("<")))


def local_root(store: Any) -> str | None:
    """The folder of a writable local-disk store (written with plain file calls), else None."""
    if isinstance(store, LocalStore) and not store.read_only:
        return os.fspath(store.root)
    return None


def write_file(path: str, parts: Sequence[Any]) -> int:
    """Write ``parts`` (buffers) one after the other into the file ``path`` (created or truncated); return bytes.

    Not atomic: only for keys no reader trusts yet (the chunks and checkpoint of a snapshot
    that is not committed; :meth:`sgnlake.collect.writer.RunWriter.truncate` deletes them after a crash); anything else
    goes through :func:`write_atomic`. Missing
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


#: This process's part of temporary file names (random: unique across processes and hosts), and a counter
#: for the rest (unique across threads): one random draw per process instead of one per file.
_TMP_TOKEN = uuid.uuid4().hex
_TMP_COUNT = itertools.count()


def _new_tmp_token() -> None:  # a forked child must not reuse its parent's names
    global _TMP_TOKEN, _TMP_COUNT
    _TMP_TOKEN, _TMP_COUNT = uuid.uuid4().hex, itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_tmp_token)


def write_atomic(path: str, data: bytes) -> None:
    """Replace the file ``path`` by ``data`` atomically (temporary file + rename, as zarr's ``LocalStore``)."""
    tmp = f"{path}.{_TMP_TOKEN}{next(_TMP_COUNT):x}.partial"
    try:
        write_file(tmp, [data])
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
