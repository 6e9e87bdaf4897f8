"""Codec pipelines for stored arrays, built from a :class:`StorageSpec`.

Lossless by default (spec-native ``zstd`` or ``blosc`` + shuffle). Lossy storage
is opt-in and recorded: ``float16`` storage, or BitRound (numcodecs' ``bitround``
filter, which Zarr stores as ``numcodecs.bitround``; readers need numcodecs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr.codecs as zc

from .meta import StorageSpec

#: Chunk keys of arrays the collector creates: ``c.<i>.<j>...`` files directly in the array's
#: folder. Zarr's default ``c/<i>/<j>/...`` makes a new folder tree for every snapshot (each new
#: key costs mkdirs); readers take the encoding from each array's metadata, so lakes written
#: with the nested layout stay readable and are resumed in their own layout.
CHUNK_KEY_ENCODING: dict[str, str] = {"name": "default", "separator": "."}


def compressors(spec: StorageSpec) -> list[Any]:
    """Bytes-to-bytes codecs for ``spec``."""
    if spec.codec == "none":
        return []
    if spec.codec == "zstd":
        return [zc.ZstdCodec(level=spec.level)]
    shuffle = zc.BloscShuffle.bitshuffle if spec.keepbits is not None else zc.BloscShuffle.shuffle
    return [zc.BloscCodec(cname="zstd", clevel=spec.level, shuffle=shuffle)]


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
