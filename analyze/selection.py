"""Selections along a run's axes: iteration labels and positional indices, applied to Dask arrays.

Label selections are resolved against the committed iterations of a run; a
selection the lake does not hold raises a one-line :class:`SelectionError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np

from sgnlake.schema.errors import SgnlakeError

#: Selection of iterations: ``None`` (all committed), one value, a list of values,
#: or a label slice ``slice(100, 500)`` (both ends inclusive, like ``xarray.sel``).
IterationSel = int | Sequence[int] | slice | None
#: Positional selection along ``param`` (flat index) or ``minibatch``.
IndexSel = int | Sequence[int] | slice | None


class SelectionError(SgnlakeError, KeyError):
    """A selection asks for iterations, parameters or runs that the lake does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _label_positions(
    values: np.ndarray, sel: IterationSel, run: str
) -> tuple[slice | np.ndarray, np.ndarray]:
    """Positions of iteration *values* ``sel`` in the sorted ``values``."""
    if sel is None:
        return slice(None), values
    span = f"{values[0]}..{values[-1]}" if len(values) else "none"
    if isinstance(sel, slice):
        lo = 0 if sel.start is None else int(np.searchsorted(values, sel.start, side="left"))
        hi = len(values) if sel.stop is None else int(np.searchsorted(values, sel.stop, side="right"))
        pos = slice(lo, hi, sel.step)
        picked = values[pos]
        if len(picked) == 0:
            raise SelectionError(
                f"run {run!r} has no committed snapshot in iterations {sel.start}..{sel.stop} "
                f"(it has {len(values)} at {span})"
            )
        return pos, picked
    want = np.atleast_1d(np.asarray(sel))
    if want.dtype.kind not in "iu":
        raise SelectionError(f"iterations must be integers, a list of them or a slice, got {sel!r}")
    idx = np.searchsorted(values, want)
    ok = np.zeros(len(want), dtype=bool)
    inside = idx < len(values)
    ok[inside] = values[idx[inside]] == want[inside]
    if not np.all(ok):
        missing = want[~ok]
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise SelectionError(
            f"run {run!r} has no committed snapshot at iteration {shown} "
            f"(it has {len(values)} snapshots at {span}; see lake.iterations({run!r}))"
        )
    return _compact(idx), values[idx]


def _index_positions(
    size: int, sel: IndexSel, what: str, run: str, tensor: str | None = None
) -> tuple[slice | np.ndarray, np.ndarray]:
    """Positions (and coordinate values) of a positional selection along one axis."""
    full = np.arange(size, dtype=np.int64)
    if sel is None:
        return slice(None), full
    if isinstance(sel, slice):
        return sel, full[sel]
    idx = np.atleast_1d(np.asarray(sel))
    where = f"tensor {tensor!r} of run {run!r}" if tensor else f"run {run!r}"
    if idx.dtype.kind not in "iu":
        raise SelectionError(f"{what}s must be integers, a list of them or a slice, got {sel!r}")
    bad = idx[(idx < 0) | (idx >= size)]
    if len(bad):
        raise SelectionError(f"{what} {bad[0]} out of range: {where} has {size} {what}s (0..{size - 1})")
    return _compact(idx), full[idx]


def _compact(idx: np.ndarray) -> slice | np.ndarray:
    """A slice when ``idx`` is a contiguous increasing run, else the index array."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _take(x: da.Array, positions: Sequence[slice | np.ndarray]) -> da.Array:
    """Apply one selection per axis (slices at once, index arrays one axis at a time)."""
    x = x[tuple(p if isinstance(p, slice) else slice(None) for p in positions)]
    for axis, p in enumerate(positions):
        if not isinstance(p, slice):
            key = [slice(None)] * x.ndim
            key[axis] = p
            x = x[tuple(key)]
    return x
