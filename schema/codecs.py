"""Codec pipelines for stored arrays, built from a :class:`StorageSpec`.

Lossless by default (spec-native ``zstd`` or ``blosc`` + shuffle). Lossy storage
is opt-in and recorded: ``float16`` storage, or BitRound (numcodecs' ``bitround``
filter, which Zarr stores as ``numcodecs.bitround``; readers need numcodecs).

Every array sgnlake creates ends its codec chain with Zarr v3's ``crc32c`` codec
(:func:`checksum`): each stored chunk carries a CRC-32C of its compressed bytes,
which Zarr verifies on every read, so a flipped bit is a decoding error (named by
``sgnlake check`` and the readers) instead of a silently changed value. Arrays of
older lakes, created without it, read as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import zarr.codecs as zc

from .meta import StorageSpec

#: Chunk keys of arrays the collector creates: ``c.<i>.<j>...`` files directly in the array's
#: folder. Zarr's default ``c/<i>/<j>/...`` makes a new folder tree for every snapshot (each new
#: key costs mkdirs); readers take the encoding from each array's metadata, so lakes written
#: with the nested layout stay readable and are resumed in their own layout.
CHUNK_KEY_ENCODING: dict[str, str] = {"name": "default", "separator": "."}


def checksum() -> list[Any]:
    """The checksum codec appended to every array's bytes-to-bytes codecs (CRC-32C, 4 bytes a chunk)."""
    return [zc.Crc32cCodec()]


def default_compressors() -> list[Any]:
    """Bytes-to-bytes codecs of sgnlake's other arrays (results, checkpoints): zstd, then the checksum."""
    return [zc.ZstdCodec(level=3), *checksum()]


def compressors(spec: StorageSpec) -> list[Any]:
    """Bytes-to-bytes codecs for ``spec`` (the compressor, then the checksum)."""
    if spec.codec == "none":
        return checksum()
    if spec.codec == "zstd":
        return [zc.ZstdCodec(level=spec.level), *checksum()]
    shuffle = zc.BloscShuffle.bitshuffle if spec.keepbits is not None else zc.BloscShuffle.shuffle
    return [zc.BloscCodec(cname="zstd", clevel=spec.level, shuffle=shuffle), *checksum()]


def filters(spec: StorageSpec) -> list[Any]:
    """Array-to-array codecs for ``spec`` (BitRound when ``keepbits`` is set)."""
    if spec.keepbits is None:
        return []
    return [zc.BitRound(keepbits=spec.keepbits)]


def array_kwargs(spec: StorageSpec) -> dict[str, Any]:
    """Keyword arguments for :func:`zarr.create_array` for a float SGN array."""
    return {
        "dtype": np.dtype(spec.dtype),
        "compressors": compressors(spec),
        "filters": filters(spec),
        "fill_value": np.nan,
        "chunk_key_encoding": dict(CHUNK_KEY_ENCODING),
    }


def plain_chain(codecs: Sequence[Any], dtype: Any) -> tuple[Any, bool] | None:
    """``(zstd, crc)`` for the plain lossless codec chains sgnlake writes, or None for any other.

    Recognised: Zarr's ``bytes`` codec (little-endian, or a one-byte dtype), then optionally
    ``zstd`` (returned: the ``ZstdCodec``, None when absent), then optionally ``crc32c`` last
    (``crc`` True). Blosc, BitRound, float16 storage, sharding and big-endian
    chains give None.
    """
    chain = list(codecs)
    crc = bool(chain) and isinstance(chain[-1], zc.Crc32cCodec)
    if crc:
        chain.pop()
    zstd = chain.pop() if chain and isinstance(chain[-1], zc.ZstdCodec) else None
    if len(chain) != 1 or not isinstance(chain[0], zc.BytesCodec):
        return None
    endian = getattr(chain[0].endian, "value", chain[0].endian)
    if np.dtype(dtype).itemsize > 1 and endian != "little":
        return None
    return zstd, crc


def _zstd_content_size(frame: np.ndarray) -> int | None:
    """The decompressed size a zstd frame header declares (RFC 8878, 3.1.1.1), or None when it declares none."""
    if frame.size < 6 or bytes(frame[:4]) != b"\x28\xb5\x2f\xfd":
        return None
    fhd = int(frame[4])
    single = (fhd >> 5) & 1
    size = (single, 2, 4, 8)[fhd >> 6]
    pos = 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3]
    if not size or frame.size < pos + size:
        return None
    value = int.from_bytes(bytes(frame[pos : pos + size]), "little")
    return value + 256 if size == 2 else value


def chunk_decoder(
    codecs: Sequence[Any], dtype: Any, chunk_shape: Sequence[int]
) -> Callable[[bytes], np.ndarray] | None:
    """A plain decoder of one stored chunk for the codec chains sgnlake writes losslessly, or None.

    Recognised: Zarr's ``bytes`` codec (little-endian, or a one-byte dtype), then optionally
    ``zstd``, then optionally ``crc32c`` last: the checksum is verified (``ValueError`` on a
    mismatch, as Zarr's codec raises), zstd is decoded with numcodecs (the library Zarr's
    codec wraps), and the bytes are viewed as the chunk. Any other chain (blosc, BitRound,
    float16 storage, sharding, big-endian) gives None: read it through Zarr.

    Parameters
    ----------
    codecs : sequence
        The array's codecs (``zarr.Array.metadata.codecs``).
    dtype : numpy dtype
        The array's dtype.
    chunk_shape : sequence of int
        The array's chunk shape (stored chunks always hold a whole chunk).

    Returns
    -------
    callable or None
        ``decode(data, out=None) -> numpy.ndarray`` of ``chunk_shape`` (a read-only view of the
        decoded bytes), or None for a chain it does not handle. With ``out`` (a C-contiguous
        array of the chunk's shape and little-endian dtype) a zstd chunk whose frame declares
        exactly ``out.nbytes`` is decoded into ``out``, which is returned.
    """
    plain = plain_chain(codecs, dtype)
    if plain is None:
        return None
    zstd: Any = None
    if plain[0] is not None:
        import numcodecs

        zstd = numcodecs.Zstd()  # decoding needs no level; frame checksums are verified when present
    crc = plain[1]
    dt = np.dtype(dtype)
    if dt.itemsize > 1:
        dt = dt.newbyteorder("<")
    shape = tuple(int(c) for c in chunk_shape)
    if crc:
        import google_crc32c

    def decode(data: bytes, out: np.ndarray | None = None) -> np.ndarray:
        buf = np.frombuffer(data, dtype=np.uint8)
        if crc:
            if buf.size < 4 or google_crc32c.value(buf[:-4]) != int.from_bytes(bytes(buf[-4:]), "little"):
                raise ValueError("Stored and computed checksum do not match (crc32c)")
            buf = buf[:-4]
        # into ``out`` only when the frame fills it exactly: numcodecs leaves a longer buffer's tail as it was
        if (
            zstd is not None
            and out is not None
            and out.shape == shape
            and out.dtype == dt
            and out.flags.c_contiguous
            and _zstd_content_size(buf) == out.nbytes
        ):
            zstd.decode(buf, out=out)  # into the caller's buffer: no fresh allocation (page faults) per chunk
            return out
        raw = zstd.decode(buf) if zstd is not None else buf
        return np.frombuffer(raw, dtype=dt).reshape(shape)

    return decode
