"""Common styling of the report figures: axis labels, line styles, Agg figures, the capped alpha axis, colours.

:func:`new_figure` gives a figure drawn by the Agg canvas without pyplot (no
global state, no display needed, safe in threads); :func:`save_figure` writes it
as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Axis label of the tail index.
ALPHA_LABEL = "tail index α (1 = Cauchy-like, 2 = Gaussian)"
#: Axis label of the training iteration.
ITERATION_LABEL = "iteration t (SGD updates)"
#: Axis label of SGN values (a gradient component: loss per unit of weight).
SGN_LABEL = "SGN  U = g_j − g  (∂loss/∂w units)"
#: Axis label of a density of SGN values.
DENSITY_LABEL = "probability density (1 / SGN units)"

_GAUSS_KW = {"color": "tab:red", "lw": 1.6}
_STABLE_KW = {"color": "tab:green", "lw": 1.6}
_REF_KW = {"color": "0.45", "ls": ":", "lw": 1.0}


# ----------------------------------------------------------------------------- figures


def new_figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None, **kw: Any):
    """Create an Agg figure and its axes without touching pyplot's global state.

    Parameters
    ----------
    nrows, ncols : int
        Grid of subplots.
    size : (float, float), optional
        Figure size in inches; defaults to 6.4 x 4.2 per column/row (capped).
    **kw
        Passed to :meth:`matplotlib.figure.Figure.subplots` (``sharex``, ``squeeze``...).

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : Axes or numpy.ndarray of Axes
    """
    if size is None:
        size = (min(6.4 * ncols, 16.0), min(4.2 * nrows, 14.0))
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **kw)
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> str:
    """Write ``fig`` as a PNG at ``dpi`` and return the path."""
    path = os.fspath(path)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# ----------------------------------------------------------------------------- alpha axis


def _ref_alpha2(ax: Axes) -> None:
    ax.axhline(2.0, label="α = 2 (Gaussian)", **_REF_KW)


#: Alpha axes of line plots stop here; points above are counted in a note. A
#: single huge estimate (small or pooled samples of light-tailed noise give
#: 1/alpha near 0) would otherwise flatten every other line.
ALPHA_AXIS_CAP = 4.0


def _cap_alpha_axis(ax: Axes, cap: float = ALPHA_AXIS_CAP) -> str:
    """Limit the alpha axis to ``cap`` when a line goes above it; return a note ("" if none)."""
    ys = [
        np.asarray(ln.get_ydata(), dtype=np.float64)
        for ln in ax.lines
        if not ln.get_label().startswith("α = 2")
    ]
    y = np.concatenate(ys) if ys else np.zeros(0)
    above = y[y > cap]  # +inf included
    if not above.size:
        return ""
    fin = y[np.isfinite(y) & (y <= cap)]
    lo = min(0.0, float(fin.min())) if fin.size else 0.0
    ax.set_ylim(lo if lo < 0 else 0.0, cap)
    return f"{above.size} point(s) above α = {cap:g} not shown (max {above.max():.3g})"


def _capped_note(ax: Axes) -> None:
    note = _cap_alpha_axis(ax)
    if note:
        ax.text(0.99, 0.01, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=7)


# ----------------------------------------------------------------------------- colours and values


def _hue_colors(values: Sequence[Hashable]) -> dict[Hashable, Any]:
    vals = list(values)
    numeric = all(isinstance(v, int | float | np.integer | np.floating) for v in vals)
    if numeric and len(vals) > 10:
        cmap = matplotlib.colormaps["viridis"]
        return {v: cmap(i / (len(vals) - 1) * 0.85) for i, v in enumerate(vals)}
    cmap = matplotlib.colormaps["tab10" if len(vals) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(vals)}


def _value_text(v: Any) -> str:
    """``16.0`` -> ``"16"`` (integer columns with gaps become floats in pandas)."""
    if isinstance(v, float | np.floating) and np.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _sorted_unique(series: pd.Series) -> list:
    vals = list(pd.unique(series))
    try:
        return sorted(vals)
    except TypeError:
        return vals
