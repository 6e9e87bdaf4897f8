"""What the user asks the report for: snapshots (``--iterations``) and the drawn parameter (``--param``).

Parsing and checks only; each bad value is a one-line :class:`ConfigError`
raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sgnlake.schema.errors import ConfigError


def pick_iterations(available: Sequence[int], requested: Sequence[int] | None = None) -> list[int]:
    """The snapshots figures show: the nearest committed iteration to each requested one.

    Parameters
    ----------
    available : sequence of int
        Committed iterations of a run (sorted).
    requested : sequence of int, optional
        Wanted iterations; default the first, middle and last snapshot. A
        negative value counts from the end (``-1`` = last snapshot).

    Returns
    -------
    list of int
        Distinct available iterations in the requested order (empty if none).
    """
    av = np.asarray(available, dtype=np.int64)
    if av.size == 0:
        return []
    if requested is None or len(requested) == 0:
        picks = [int(av[0]), int(av[(av.size - 1) // 2 if av.size > 2 else av.size // 2]), int(av[-1])]
    else:
        picks = []
        for r in requested:
            r = int(r)
            if r < 0:
                picks.append(int(av[max(av.size + r, 0)]))
            else:
                picks.append(int(av[np.argmin(np.abs(av - r))]))
    return list(dict.fromkeys(picks))


def parse_iterations(text: str | None) -> list[int] | None:
    """Parse ``--iterations`` (``"100,5000,-1"``; ``last`` = ``-1``, ``first`` = ``0``).

    Raises
    ------
    ConfigError
        A value is not an integer.
    """
    if text is None or not text.strip():
        return None
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "last":
            out.append(-1)
        elif item == "first":
            out.append(0)
        else:
            try:
                value = int(item)
            except ValueError:
                raise ConfigError(
                    f"bad --iterations value {item[:40]!r}: use integers, 'first' or 'last', e.g. 100,5000,last"
                ) from None
            if not -(2**63) <= value < 2**63:
                raise ConfigError(
                    f"--iterations value {item[:40]}{'...' if len(item) > 40 else ''} is out of range: use "
                    "iteration numbers of the runs (or negative counts from the end), e.g. 100,5000,last"
                )
            out.append(value)
    return out or None


def parse_param(text: str | None) -> tuple[str, int] | None:
    """Parse ``--param TENSOR:INDEX`` (``fc1.weight:123``; INDEX is the C-order flat index).

    Raises
    ------
    ConfigError
        Not of the form ``TENSOR:INDEX`` with a non-negative integer index.
    """
    if text is None:
        return None
    name, _, idx = text.rpartition(":")
    if not name or not idx.strip().isdigit():
        raise ConfigError(f"bad --param {text!r}: use TENSOR:INDEX, e.g. fc1.weight:123")
    return name.strip(), int(idx)


def _check_iterations(iterations: Sequence[int] | None) -> list[int] | None:
    """``iterations`` as a list of ints (``--iterations`` is parsed by :func:`parse_iterations`).

    Raises
    ------
    ConfigError
        A value is not an integer.
    """
    if iterations is None:
        return None
    out = []
    for v in iterations:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ConfigError(f"bad iteration {v!r}: use integers (negative counts from the last snapshot)")
        out.append(int(v))
    return out or None


def check_param(lake: Any, runs: Sequence[str], param: tuple[str, int]) -> None:
    """Check that ``--param TENSOR:INDEX`` names a parameter of at least one of ``runs``.

    A run that lacks it (other tensors, a smaller tensor) draws its default
    parameter instead, with a note; a parameter that no selected run has is an error.

    Raises
    ------
    ConfigError
        No selected run has the tensor, or the index is out of range in every run that has it.
    """
    name, idx = param
    sizes: dict[str, int] = {}
    names: list[str] = []
    for r in runs:
        for t in lake.meta(r).tensors:
            if t.name not in names:
                names.append(t.name)
            if t.name == name:
                sizes[r] = t.numel
    if not sizes:
        shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
        raise ConfigError(
            f"--param {name}:{idx}: no selected run has a tensor {name!r} (tensors: {shown or 'none'}): "
            "use TENSOR:INDEX with one of them"
        )
    if all(idx >= n for n in sizes.values()):
        largest = max(sizes.values())
        raise ConfigError(
            f"--param {name}:{idx}: index {idx} is out of range, {name} has {largest} parameters: "
            f"use an index in 0..{largest - 1}"
        )
