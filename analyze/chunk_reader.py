"""Reading a Zarr array through Dask one chunk at a time, naming any chunk that cannot be decoded."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from sgnlake.schema.errors import CorruptChunkError, SgnlakeError


class ChunkReader:
    """A Zarr array seen through Dask one chunk at a time, naming any chunk that cannot be decoded.

    ``da.from_array`` calls :meth:`__getitem__` with exactly one chunk's region.
    A decoding error becomes a one-line :class:`CorruptChunkError` naming run,
    tensor, array, iteration and chunk key; with ``skip`` the chunk reads as NaN
    and its key is appended to ``sink``.
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

    def __getitem__(self, sel: Any) -> np.ndarray:
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
