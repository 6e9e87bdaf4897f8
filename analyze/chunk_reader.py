"""Reading a Zarr array through Dask one chunk at a time, naming any chunk that is missing or cannot be decoded.

The collector stores every committed chunk of ``sgn``, ``grad`` and ``weight`` (also
all-NaN ones), so a committed chunk absent from the store is data loss, not fill: Zarr
would silently read it as NaN. The reader lists the array's stored chunks once (one
listing per array, not one request per chunk) and names a missing one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import product
from typing import Any

import numpy as np
import zarr

from sgnlake.schema.errors import CorruptChunkError, SgnlakeError
from sgnlake.schema.store import list_keys


class DirectReadError(Exception):
    """A chunk file that :meth:`ChunkReader.direct_chunks` could not read or decode (the caller reads through Zarr)."""


class ChunkReader:
    """A Zarr array seen through Dask one chunk at a time, naming any chunk that cannot be decoded.

    ``da.from_array`` calls :meth:`__getitem__` with exactly one chunk's region.
    A decoding error or a missing chunk (of a float array with NaN fill) becomes a
    one-line :class:`CorruptChunkError` naming run, tensor, array, iteration and chunk
    key; with ``skip`` the chunk reads as NaN and its key is appended to ``sink``.
    """

    def __init__(
        self,
        arr: zarr.Array,
        run: str,
        tensor: str,
        name: str,
        iterations: np.ndarray,
        skip: bool,
        sink: list[str],
    ) -> None:
        self.arr, self.run, self.tensor, self.name = arr, run, tensor, name
        self.iterations, self.skip, self.sink = iterations, skip, sink
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        self._stored: set[str] | None = None
        self._listed = False
        self._direct: Any = None  # (folder, decoder) of the plain-file read path, False when not possible

    def _stored_keys(self) -> set[str] | None:
        """Stored chunk keys of the array (listed once), or None when absent chunks are legitimate."""
        if not self._listed:
            fill = self.arr.fill_value
            nan_fill = self.dtype.kind == "f" and fill is not None and bool(np.isnan(fill))
            keys = None
            if nan_fill and self.arr.store.supports_listing:
                try:
                    keys = set(list_keys(self.arr.store, self.arr.path))
                except Exception:  # listing is a check only; reads still report what they find
                    keys = None
            self._stored, self._listed = keys, True
        return self._stored

    def check_present(self, sel: tuple[slice, ...]) -> bool:
        """Raise :class:`CorruptChunkError` naming the first missing chunk under ``sel``.

        With ``skip`` the missing chunks are recorded instead and False is returned.
        """
        stored = self._stored_keys()
        if stored is None:
            return True
        ranges = []
        for s, n, c in zip(sel, self.shape, self.arr.chunks, strict=False):
            lo, hi, _ = s.indices(n)
            ranges.append(range(lo // c, -(-hi // c)) if hi > lo else range(0))
        rest = zip(self.shape[len(ranges) :], self.arr.chunks[len(ranges) :], strict=True)
        ranges += [range(-(-n // c)) for n, c in rest]
        prefix = f"{self.arr.path}/"
        missing = []
        for coords in product(*ranges):
            key = prefix + self.arr.metadata.encode_chunk_key(coords)
            if key not in stored:
                missing.append((coords, key))
        if not missing:
            return True
        if self.skip:
            self.sink.extend(k for _, k in missing)
            return False
        coords, key = missing[0]
        it = coords[0] * self.arr.chunks[0]
        label = f", iteration {int(self.iterations[it])} (snapshot {it})" if it < len(self.iterations) else ""
        raise CorruptChunkError(
            f"run {self.run!r}, tensor {self.tensor!r}, array {self.name!r}{label}, chunk {key} is "
            "missing from the store (committed data lost): run 'sgnlake check' on the lake, or pass "
            "--skip-corrupt (skip_corrupt=True) to read it as NaN"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_direct"] = None  # a closure: found again where the reader is unpickled
        return state

    def _direct_path(self) -> Any:
        """``(folder, decode)`` for reading chunk files directly, or False (not a local store, or a codec
        chain :func:`sgnlake.schema.codecs.chunk_decoder` does not handle)."""
        if self._direct is None:
            from zarr.storage import LocalStore

            from sgnlake.schema.codecs import chunk_decoder

            direct: Any = False
            md = self.arr.metadata
            if isinstance(self.arr.store, LocalStore) and getattr(md, "zarr_format", None) == 3:
                decode = chunk_decoder(md.codecs, self.dtype, self.arr.chunks)
                if decode is not None:
                    direct = (os.path.join(str(self.arr.store.root), self.arr.path), decode)
            self._direct = direct
        return self._direct

    def read_direct(self, sel: tuple[slice, ...]) -> np.ndarray | None:
        """The region ``sel`` (a slice per axis) read from the chunk files with plain file reads, or None.

        For a local store and a codec chain :func:`sgnlake.schema.codecs.chunk_decoder` handles,
        every chunk under ``sel`` is read with ``open().read()``, its checksum verified and decoded
        in this thread, without Zarr's per-call machinery. None when that path does not apply or
        anything fails (a missing or damaged chunk): the caller then reads through Zarr, which
        names the chunk or reads it as the fill value, as before.
        """
        found = self._direct_path()
        if not found:
            return None
        folder, decode = found
        chunks = self.arr.chunks
        bounds = [s.indices(n)[:2] for s, n in zip(sel, self.shape, strict=True)]
        out = np.empty(tuple(max(0, hi - lo) for lo, hi in bounds), dtype=self.dtype)
        ranges = [
            range(lo // c, -(-hi // c)) if hi > lo else range(0)
            for (lo, hi), c in zip(bounds, chunks, strict=True)
        ]
        try:
            for coords in product(*ranges):
                chunk = self._decode_file(folder, decode, coords)
                src, dst = [], []
                for k, ((lo, hi), c) in zip(coords, zip(bounds, chunks, strict=True), strict=True):
                    a, b = max(lo, k * c), min(hi, (k + 1) * c)
                    src.append(slice(a - k * c, b - k * c))
                    dst.append(slice(a - lo, b - lo))
                out[tuple(dst)] = chunk[tuple(src)]
        except Exception:  # missing, damaged or unexpected: Zarr's read decides and names it
            return None
        return out

    def _decode_file(
        self, folder: str, decode: Any, coords: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The stored chunk at ``coords`` read with one plain file read, its checksum verified, decoded
        (into ``out`` when the codec allows, see :func:`sgnlake.schema.codecs.chunk_decoder`)."""
        with open(os.path.join(folder, self.arr.metadata.encode_chunk_key(coords)), "rb") as f:
            data = f.read()
        return decode(data) if out is None else decode(data, out=out)

    def direct_chunks(self, it: int, lo: int, hi: int) -> Iterator[np.ndarray] | None:
        """The stored chunks of ``arr[it, :, lo:hi]`` one at a time, each read and decoded from its file.

        For a (snapshot, minibatch, param) array chunked ``(1, M, c)`` (all minibatches in one
        chunk) and ``lo`` a multiple of ``c``: yields, in order, each chunk's ``(M, w)`` part
        inside ``lo:hi`` as a view of the decoded chunk (no copy into a region array), so a
        caller works chunk by chunk on what it just decoded. None when the direct path does not
        apply (see :meth:`read_direct`). A chunk that cannot be read or decoded (missing,
        damaged) raises :class:`DirectReadError` when it is reached; the caller then reads the
        region through :meth:`read_direct`'s fallback (Zarr), which names it or reads it as NaN.
        """
        found = self._direct_path()
        if not found or self.ndim != 3 or self.arr.chunks[0] != 1 or self.arr.chunks[1] != self.shape[1]:
            return None
        c = self.arr.chunks[2]
        if lo % c or not 0 <= lo < hi <= self.shape[2]:
            return None
        return self._iter_chunks(found, it, lo, hi, c)

    def _iter_chunks(self, found: tuple[str, Any], it: int, lo: int, hi: int, c: int) -> Iterator[np.ndarray]:
        folder, decode = found
        # one buffer for every chunk of the call: a fresh multi-MB allocation per chunk costs its page faults
        buf = np.empty(
            self.arr.chunks, dtype=self.dtype.newbyteorder("<") if self.dtype.itemsize > 1 else self.dtype
        )
        for k in range(lo // c, -(-hi // c)):
            try:
                chunk = self._decode_file(folder, decode, (it, 0, k), buf)
            except Exception as e:  # missing, damaged or unexpected: Zarr's read decides and names it
                raise DirectReadError(str(e)) from None
            yield chunk[0, :, : min(hi - k * c, c)]

    def __getitem__(self, sel: Any) -> np.ndarray:
        if isinstance(sel, tuple) and all(isinstance(s, slice) for s in sel):
            self.check_present(sel)
        try:
            return np.asarray(self.arr[sel])
        except Exception as e:
            if isinstance(e, SgnlakeError):
                raise
            where, key = self._where(sel)
            if self.skip:
                self.sink.append(key)
                shape = tuple(len(range(*s.indices(n))) for s, n in zip(sel, self.shape, strict=False))
                return np.full(shape, np.nan, dtype=self.dtype)
            first = str(e).splitlines()[0] if str(e) else ""
            raise CorruptChunkError(
                f"{where} cannot be decoded ({type(e).__name__}: {first}): run 'sgnlake check' on the "
                "lake, or pass --skip-corrupt (skip_corrupt=True) to read it as NaN"
            ) from None

    def _where(self, sel: Any) -> tuple[str, str]:
        sel = sel if isinstance(sel, tuple) else (sel,)
        starts = [s.start or 0 if isinstance(s, slice) else int(s) for s in sel]
        starts += [0] * (self.ndim - len(starts))
        coords = tuple(st // c for st, c in zip(starts, self.arr.chunks, strict=True))
        key = f"{self.arr.path}/{self.arr.metadata.encode_chunk_key(coords)}"
        it = starts[0]
        label = f", iteration {int(self.iterations[it])}" if it < len(self.iterations) else ""
        return f"run {self.run!r}, tensor {self.tensor!r}, array {self.name!r}{label}, chunk {key}", key
