"""Labelled progress display for Dask computations (one line per run, named by the run)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO


class _Prefixed:
    """A text stream that puts ``label`` at the start of every line Dask's bar (re)draws."""

    def __init__(self, out: TextIO, label: str) -> None:
        self._out = out
        self._label = label

    def write(self, text: str) -> int:
        if self._label and text.startswith("\r"):
            text = f"\r{self._label} {text[1:]}"
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()


@contextlib.contextmanager
def labelled_progress(label: str, out: TextIO | None = None, dt: float = 0.1) -> Iterator[Any]:
    """Dask's local progress bar with ``label`` in front, e.g. ``lenet-b50 [####    ] | 50% ...``.

    Parameters
    ----------
    label : str
        What is computed (a run id); empty: Dask's plain bar.
    out : text stream, optional
        Where the bar is drawn (default stderr, so stdout keeps results).
    dt : float
        Seconds between redraws.
    """
    from dask.diagnostics import ProgressBar

    stream = _Prefixed(out if out is not None else sys.stderr, label)
    with ProgressBar(dt=dt, out=stream) as bar:
        yield bar
