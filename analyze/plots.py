"""Figure functions for the SGN tail-index report (matplotlib, Agg; no Lake, no torch).

Every function draws on an ``ax`` (or a sequence of axes) that the caller owns,
from labelled data: pandas DataFrames, xarray objects or numpy arrays. Nothing
here opens a lake, so each figure can be tested and reused on its own; the
report module (:mod:`sgnlake.analyze.report`) is the only place that reads one.

Figures follow the numbering of the paper (Fig 1: alpha over iterations; Fig 2:
per batch size; Figs 3-5: one parameter's SGN against a Gaussian; Figs 6-7:
alpha against depth and width; Figs 8-9: SGN against a fitted alpha-stable law;
Figs 10-12: alpha distribution over parameters; Figs 13-15: alpha per layer over
iterations; Fig 16: alpha distribution per layer).

Use :func:`new_figure` to get a figure drawn by the Agg canvas without pyplot
(no global state, no display needed, safe in threads) and :func:`save_figure`
to write it as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy import stats as sps

from .summary import STAT_COLUMNS

#: Axis label of the tail index.
ALPHA_LABEL = "tail index α (1 = Cauchy-like, 2 = Gaussian)"
#: Axis label of the training iteration.
ITERATION_LABEL = "iteration t (SGD updates)"
#: Axis label of SGN values (a gradient component: loss per unit of weight).
SGN_LABEL = "SGN  U = g_j − g  (∂loss/∂w units)"
#: Axis label of a density of SGN values.
DENSITY_LABEL = "probability density (1 / SGN units)"

#: Columns of :func:`alpha_stats` output: the statistics of
#: :func:`sgnlake.analyze.summary.summary`, so its output feeds the same figures
#: (less the count of non-finite SGN samples, which alpha alone cannot give).
STATS_COLUMNS = (
    "iteration",
    "group",
    *(c for c in STAT_COLUMNS if c != "n_nonfinite_samples"),
)

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


# ----------------------------------------------------------------------------- statistics


def alpha_stats(
    alpha: xr.DataArray,
    by: str | None = None,
    *,
    quantiles: tuple[float, float] = (0.25, 0.75),
) -> pd.DataFrame:
    """Summarise per-parameter alpha over ``param`` at each iteration (and group).

    The in-memory counterpart of :func:`sgnlake.analyze.summary.summary` for one
    DataArray (same statistics, same column names).

    Parameters
    ----------
    alpha : xarray.DataArray
        Dims ``(iteration, param)``; NaN marks parameters without a tail index
        (zero or constant SGN, e.g. dead ReLU units).
    by : str, optional
        Name of a coordinate along ``param`` (``module``, ``tensor``, ``kind``)
        to group parameters by; ``None`` puts all parameters in group ``"all"``.
    quantiles : (float, float)
        Lower and upper quantile of the band (``q_lo``, ``q_hi``).

    Returns
    -------
    pandas.DataFrame
        One row per (iteration, group) with columns :data:`STATS_COLUMNS`:
        ``n_params`` parameters, ``n`` with a finite estimate, ``n_nan``
        without, ``n_gt2`` above 2, and the median, mean, quantiles, mean of
        1/alpha and its inverse over the finite estimates (NaN where a group has
        none). Groups keep their order of first appearance along ``param``.
    """
    from .summary import group_stats

    alpha = alpha.transpose("iteration", "param")
    vals = np.asarray(alpha.values, dtype=np.float64)
    iters = np.asarray(alpha["iteration"].values) if "iteration" in alpha.coords else np.arange(vals.shape[0])
    if by is None:
        labels = np.full(vals.shape[1], "all", dtype=object)
    else:
        labels = np.asarray(alpha[by].values, dtype=object)
    frames = []
    for g in dict.fromkeys(labels.tolist()):
        st = group_stats(vals[:, labels == g], quantiles)
        st.update(iteration=iters.astype(np.int64), group=g)
        frames.append(pd.DataFrame(st))
    if not frames:
        return pd.DataFrame(columns=list(STATS_COLUMNS))
    out = pd.concat(frames, ignore_index=True)[list(STATS_COLUMNS)]
    return out.sort_values("iteration", kind="stable").reset_index(drop=True)


def histogram_edges(values: np.ndarray, *, lo: float = 0.5, hi: float = 2.5, limits=(0.0, 4.0), bins=40):
    """Bin edges for alpha histograms: at least ``[lo, hi]``, widened to the data within ``limits``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size:
        lo = min(lo, max(limits[0], float(v.min())))
        hi = max(hi, min(limits[1], float(v.max())))
    return np.linspace(lo, hi, bins + 1)


# ----------------------------------------------------------------------------- alpha over iterations


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


#: Legend texts of the per-iteration statistics.
STAT_LABELS = {
    "median": "median over parameters",
    "mean": "mean over parameters",
    "alpha_from_mean_inv": "1 / mean(1/α) over parameters",
}


def _capped_note(ax: Axes) -> None:
    note = _cap_alpha_axis(ax)
    if note:
        ax.text(0.99, 0.01, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=7)


def plot_alpha_over_iterations(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    title: str = "α over iterations",
    center: str = "median",
    secondary: str | None = "alpha_from_mean_inv",
    band: bool = True,
) -> Axes:
    """Paper Fig 1: the per-parameter alpha of one run (or group) over iterations.

    Parameters
    ----------
    ax : Axes
    stats : pandas.DataFrame
        Rows of one group from :func:`alpha_stats` or ``Lake.summary(by="model")``
        (columns ``iteration``, ``median``, ``mean``, ``alpha_from_mean_inv``,
        ``q_lo``, ``q_hi``, ``n_params``, ``n_nan``, ``n_gt2``).
    title : str
    center : {"median", "mean", "alpha_from_mean_inv"}
        The solid line.
    secondary : str or None
        A second statistic drawn dashed. The default ``1/mean(1/alpha)`` is
        finite where the plain mean is not: an estimate of ``1/alpha <= 0``
        gives ``alpha = inf`` and an infinite mean. Non-finite points of either
        line are left out and counted in the note.
    band : bool
        Shade the ``q_lo``..``q_hi`` band.

    Returns
    -------
    Axes
    """
    s = stats.sort_values("iteration")
    x = s["iteration"].to_numpy()
    (line,) = ax.plot(x, s[center].to_numpy(), marker="o", ms=3, label=STAT_LABELS.get(center, center))
    if band and {"q_lo", "q_hi"} <= set(s.columns):
        ax.fill_between(
            x,
            s["q_lo"].to_numpy(),
            s["q_hi"].to_numpy(),
            color=line.get_color(),
            alpha=0.2,
            label="interquartile band",
        )
    note = ""
    if secondary and secondary != center and secondary in s.columns:
        y2 = s[secondary].to_numpy(dtype=np.float64)
        ok = np.isfinite(y2)
        ax.plot(x[ok], y2[ok], ls="--", color="tab:orange", label=STAT_LABELS.get(secondary, secondary))
        if not ok.all():
            note = f"; {secondary} infinite at {int((~ok).sum())} snapshot(s)"
    _ref_alpha2(ax)
    capped = _cap_alpha_axis(ax)
    if capped:
        note += f"; {capped}"
    if len(s):
        n = int(s["n_params"].max())
        nan = s["n_nan"].to_numpy()
        gt2 = s["n_gt2"].to_numpy()
        ax.text(
            0.01,
            0.02,
            f"{n} parameters; dead (no estimate): {nan.min()}–{nan.max()} per snapshot, "
            f"last {nan[-1]}; α > 2: last {gt2[-1]}{note}",
            transform=ax.transAxes,
            fontsize=8,
            va="bottom",
        )
    ax.set_title(title)
    ax.set_xlabel(ITERATION_LABEL)
    ax.set_ylabel(ALPHA_LABEL)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


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


def plot_alpha_lines(
    ax: Axes,
    table: pd.DataFrame,
    *,
    hue: str,
    x: str = "iteration",
    y: str = "median",
    title: str,
    hue_label: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    hue_order: Sequence[Hashable] | None = None,
    marker: str = "o",
) -> Axes:
    """One line of ``y`` against ``x`` per value of ``hue``.

    Rows sharing (``hue``, ``x``) (e.g. seeds of one configuration) are averaged;
    when there are several, the line carries error bars of +- one standard
    deviation across them.

    Parameters
    ----------
    ax : Axes
    table : pandas.DataFrame
        Long table with columns ``x``, ``y`` and ``hue``.
    hue : str
        Column whose values get one line each (sorted; up to 10 get a
        qualitative palette, more numbers a sequential colormap).
    x, y : str
        Columns for the axes.
    title, hue_label, xlabel, ylabel : str
        Texts; ``hue_label`` prefixes each legend entry (``batch size = 50``);
        ``""`` shows the bare value.
    hue_order : sequence, optional
        Explicit order of the lines.
    marker : str
        Marker of the points.

    Returns
    -------
    Axes
    """
    order = list(hue_order) if hue_order is not None else _sorted_unique(table[hue])
    colors = _hue_colors(order)
    prefix = "" if hue_label == "" else f"{hue_label or hue} = "
    for h in order:
        sub = table[table[hue] == h]
        if sub.empty:
            continue
        agg = sub.groupby(x, sort=True)[y].agg(["mean", "std", "count"])
        xs = agg.index.to_numpy()
        ys = agg["mean"].to_numpy()
        label = f"{prefix}{_value_text(h)}"
        if (agg["count"] > 1).any():
            ax.errorbar(
                xs, ys, yerr=agg["std"].fillna(0).to_numpy(), marker=marker, ms=3, capsize=2,
                color=colors[h], label=label + " (mean ± sd over runs)",
            )  # fmt: skip
        else:
            ax.plot(xs, ys, marker=marker, ms=3, color=colors[h], label=label)
    _ref_alpha2(ax)
    _capped_note(ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel or (ITERATION_LABEL if x == "iteration" else x))
    ax.set_ylabel(ylabel or f"{y} {ALPHA_LABEL}")
    ax.legend(fontsize=8, loc="best", ncol=1 if len(order) <= 8 else 2)
    ax.grid(alpha=0.3)
    return ax


def plot_alpha_by_batch_size(ax: Axes, table: pd.DataFrame, *, y: str = "median", title: str | None = None):
    """Paper Fig 2: alpha over iterations, one line per batch size.

    ``table`` has columns ``iteration``, ``batch_size`` and ``y`` (one row per
    run and iteration; runs with equal batch size are averaged).
    """
    return plot_alpha_lines(
        ax, table, hue="batch_size", x="iteration", y=y, hue_label="batch size",
        title=title or f"{y} α over iterations per batch size",
    )  # fmt: skip


def plot_alpha_by_layer(ax: Axes, stats: pd.DataFrame, *, y: str = "mean", title: str | None = None):
    """Paper Figs 13-15: alpha of one run over iterations, one line per layer.

    ``stats`` is :func:`alpha_stats` grouped by module (or tensor): columns
    ``iteration``, ``group`` and ``y``. Layers keep their order in the table.
    """
    return plot_alpha_lines(
        ax, stats, hue="group", x="iteration", y=y, hue_label="layer",
        hue_order=list(dict.fromkeys(stats["group"].tolist())),
        title=title or f"{y} α per layer over iterations",
    )  # fmt: skip


_CONFIG_LABELS = {
    "depth": "depth (number of linear layers)",
    "width": "width (units per hidden layer)",
    "batch_size": "batch size b (examples per minibatch)",
    "lr": "learning rate",
}


def plot_alpha_vs_config(
    ax: Axes,
    table: pd.DataFrame,
    *,
    x: str,
    hue: str | None = None,
    y: str = "median",
    title: str | None = None,
    hue_label: str | None = None,
) -> Axes:
    """Paper Figs 6-7 (and alpha against batch size): alpha against a config axis.

    Parameters
    ----------
    ax : Axes
    table : pandas.DataFrame
        One row per run with columns ``x``, ``y`` and ``hue`` (e.g. the median
        alpha at each run's last snapshot with the run's ``depth``/``width``).
    x : str
        Config column on the horizontal axis (``depth``, ``width``, ``batch_size``).
    hue : str, optional
        Config column with one line per value (``width`` for Fig 6, ``depth``
        for Fig 7); ``None`` draws a single line.
    y : str
        The alpha statistic.
    title : str, optional
    hue_label : str, optional
        Legend prefix of the lines (default the ``hue`` name; ``""`` for none).

    Returns
    -------
    Axes
    """
    t = table.copy()
    if hue is None:
        hue = "_all"
        t[hue] = "all runs"
    plot_alpha_lines(
        ax, t, hue=hue, x=x, y=y, hue_label=("" if hue == "_all" else hue) if hue_label is None else hue_label,
        xlabel=_CONFIG_LABELS.get(x, x),
        title=title or f"{y} α against {x}" + (f", lines per {hue}" if hue != "_all" else ""),
    )  # fmt: skip
    xs = _sorted_unique(t[x].dropna())
    if xs and all(isinstance(v, int | float | np.number) and float(v).is_integer() for v in xs):
        ax.set_xticks([int(v) for v in xs])
    return ax


# ----------------------------------------------------------------------------- alpha distributions


def plot_alpha_histogram(
    ax: Axes,
    values: np.ndarray | xr.DataArray,
    *,
    title: str,
    bins: np.ndarray | None = None,
    color: Any = "tab:blue",
) -> Axes:
    """Paper Figs 10-12: histogram of alpha over all parameters at one snapshot.

    Counts (not densities) per bin are drawn as a filled step patch; NaN
    estimates (dead parameters) and values outside the bins (``+inf``
    included) are counted in a note in the corner, never dropped silently.

    Parameters
    ----------
    ax : Axes
    values : array-like
        Alpha of every parameter at one iteration (any shape; flattened).
    title : str
    bins : numpy.ndarray, optional
        Bin edges; default :func:`histogram_edges` of the data.
    color : matplotlib color

    Returns
    -------
    Axes
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    est = v[~np.isnan(v)]  # estimates, +inf included (1/alpha <= 0)
    fin = est[np.isfinite(est)]
    edges = histogram_edges(fin) if bins is None else np.asarray(bins, dtype=np.float64)
    counts, _ = np.histogram(fin, bins=edges)
    outside = int(est.size - counts.sum())
    med = float(np.median(est)) if est.size else float("nan")
    note = f"{v.size} parameters\ndead (NaN): {v.size - est.size}"
    if outside:
        note += f"\noutside [{edges[0]:.2g}, {edges[-1]:.2g}]: {outside}"
    ax.stairs(counts, edges, fill=True, alpha=0.75, color=color, label="parameters per bin")
    if np.isfinite(med):
        ax.axvline(med, color="k", lw=1.2, ls="--", label=f"median {med:.3f}")
    ax.axvline(2.0, label="α = 2 (Gaussian)", **_REF_KW)
    ax.text(
        0.98, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=7,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"},
    )  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel("number of parameters")
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)
    return ax


def plot_alpha_histograms_by_group(
    ax: Axes,
    values: np.ndarray,
    groups: np.ndarray | Sequence[Hashable],
    *,
    title: str,
    bins: np.ndarray | None = None,
) -> Axes:
    """Paper Fig 16: alpha distribution per layer at one snapshot.

    One step outline per group, as a density (each integrates to 1 over the
    bins) so that layers of very different sizes compare; the legend gives each
    layer's parameter count, median and dead count.

    Parameters
    ----------
    ax : Axes
    values : numpy.ndarray
        Alpha per parameter (1-D).
    groups : array-like
        Group label per parameter (same length), e.g. the ``module`` coordinate.
    title : str
    bins : numpy.ndarray, optional
        Shared bin edges.

    Returns
    -------
    Axes
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lab = np.asarray(groups, dtype=object).ravel()
    order = list(dict.fromkeys(lab.tolist()))
    colors = _hue_colors(order)
    edges = histogram_edges(v) if bins is None else np.asarray(bins, dtype=np.float64)
    for g in order:
        sub = v[lab == g]
        est = sub[~np.isnan(sub)]  # +inf estimates count as outside the bins
        inside = est[(est >= edges[0]) & (est <= edges[-1])]
        if inside.size:
            dens, _ = np.histogram(inside, bins=edges, density=True)
        else:
            dens = np.zeros(len(edges) - 1)
        med = float(np.median(est)) if est.size else float("nan")
        ax.stairs(
            dens, edges, lw=1.6, color=colors[g],
            label=f"{g}: {sub.size} params, median {med:.2f}, dead {sub.size - est.size}",
        )  # fmt: skip
    ax.axvline(2.0, label="α = 2 (Gaussian)", **_REF_KW)
    ax.set_title(title)
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel("density over the layer's parameters")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return ax


# ----------------------------------------------------------------------------- alpha map


def alpha_map_image(values: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Arrange a tensor's flat per-parameter values as a 2-D image.

    ``param`` is the C-order flattening of ``shape``. 2-D weights ``(out, in)``
    stay as they are; 1-D tensors (biases) become one row; conv weights
    ``(out, in, kh, kw)`` become a grid of filters with ``out`` block-rows and
    ``in`` block-columns of ``kh x kw`` pixels; other ranks are reshaped to
    ``(shape[0], -1)``.
    """
    shape = tuple(int(s) for s in shape)
    v = np.asarray(values, dtype=np.float64).reshape(shape)
    if v.ndim == 1:
        return v[None, :]
    if v.ndim == 2:
        return v
    if v.ndim == 4:
        o, i, kh, kw = shape
        return v.transpose(0, 2, 1, 3).reshape(o * kh, i * kw)
    return v.reshape(shape[0], -1)


def plot_alpha_map(
    ax: Axes,
    values: np.ndarray,
    shape: Sequence[int],
    *,
    title: str,
    vmin: float = 1.0,
    vmax: float = 2.0,
    cmap: str = "viridis",
    colorbar: bool = True,
) -> Axes:
    """Heatmap of one tensor's alpha, shaped like the weight (see :func:`alpha_map_image`).

    Dead parameters (NaN) are grey; the colour scale is fixed to ``vmin..vmax``
    (values beyond saturate; the colorbar's arrows say so). Conv filters are
    separated by white lines.

    Returns
    -------
    Axes
    """
    shape = tuple(int(s) for s in shape)
    img = alpha_map_image(values, shape)
    cm = matplotlib.colormaps[cmap].with_extremes(bad="0.7")
    im = ax.imshow(
        np.ma.masked_invalid(img), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins="auto"))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins="auto"))
    if len(shape) == 4:
        o, i, kh, kw = shape
        for r in range(1, o):
            ax.axhline(r * kh - 0.5, color="white", lw=0.6)
        for c in range(1, i):
            ax.axvline(c * kw - 0.5, color="white", lw=0.6)
        # one tick per filter block (channel index), thinned when there are many
        for axis, n, k in ((ax.yaxis, o, kh), (ax.xaxis, i, kw)):
            step = max(1, -(-n // 16))
            chans = list(range(0, n, step))
            axis.set_ticks([c * k + (k - 1) / 2 for c in chans], labels=[str(c) for c in chans])
        ax.set_ylabel(f"output channel ({o}; blocks of {kh} kernel rows)")
        ax.set_xlabel(f"input channel ({i}; blocks of {kw} kernel columns)")
    elif len(shape) == 1:
        ax.set_yticks([])
        ax.set_xlabel(f"index ({shape[0]})")
    elif len(shape) == 2:
        ax.set_ylabel(f"output unit ({shape[0]})")
        ax.set_xlabel(f"input unit ({shape[1]})")
    else:
        ax.set_ylabel(f"dim 0 ({shape[0]})")
        ax.set_xlabel("remaining dims, C order")
    n_nan = int(np.isnan(np.asarray(values, dtype=np.float64)).sum())
    ax.set_title(f"{title}\nshape {shape}, dead (grey): {n_nan}", fontsize=9)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, extend="both", fraction=0.05)
        cb.set_label("α")
    return ax


# ----------------------------------------------------------------------------- SGN of one parameter


def _sgn_edges(x: np.ndarray, max_bins: int = 80, min_bins: int = 10) -> np.ndarray:
    n = int(np.clip(2 * np.sqrt(max(x.size, 1)), min_bins, max_bins))
    lo, hi = (float(x.min()), float(x.max())) if x.size else (-1.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def _finite(x: np.ndarray | xr.DataArray) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def gaussian_fit(x: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood Gaussian (mean, standard deviation) of the finite values of ``x``."""
    v = _finite(x)
    return float(v.mean()), float(v.std())


def plot_sgn_histogram(ax: Axes, x: np.ndarray | xr.DataArray, *, title: str) -> Axes:
    """Paper Figs 3-5, upper panel: SGN histogram (density) with the fitted Gaussian."""
    v = _finite(x)
    edges = _sgn_edges(v)
    ax.hist(v, bins=edges, density=True, color="tab:blue", alpha=0.6, label=f"SGN, M = {v.size} minibatches")
    mu, sd = gaussian_fit(v)
    grid = np.linspace(edges[0], edges[-1], 400)
    if sd > 0:
        ax.plot(grid, sps.norm.pdf(grid, mu, sd), label=f"Gaussian fit (μ={mu:.3g}, σ={sd:.3g})", **_GAUSS_KW)
    ax.set_title(title)
    ax.set_xlabel(SGN_LABEL)
    ax.set_ylabel(DENSITY_LABEL)
    ax.legend(fontsize=8)
    return ax


def plot_sgn_log_density(ax: Axes, x: np.ndarray | xr.DataArray, *, title: str) -> Axes:
    """Paper Figs 3-5, centre panel: dotted SGN histogram on a log density scale, with the Gaussian."""
    v = _finite(x)
    edges = _sgn_edges(v)
    dens, _ = np.histogram(v, bins=edges, density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    keep = dens > 0
    ax.plot(centres[keep], dens[keep], "o", ms=3, color="tab:blue", label="SGN histogram (non-empty bins)")
    mu, sd = gaussian_fit(v)
    if sd > 0:
        grid = np.linspace(edges[0], edges[-1], 400)
        pdf = sps.norm.pdf(grid, mu, sd)
        floor = dens[keep].min() / 10 if keep.any() else 1e-12
        ax.plot(grid[pdf > floor], pdf[pdf > floor], label="Gaussian fit", **_GAUSS_KW)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(SGN_LABEL)
    ax.set_ylabel(DENSITY_LABEL + ", log scale")
    ax.legend(fontsize=8)
    return ax


def plot_sgn_qq(ax: Axes, x: np.ndarray | xr.DataArray, *, title: str) -> Axes:
    """Paper Figs 3-5, lower panel: QQ-plot of the SGN against the Gaussian (``scipy.stats.probplot``)."""
    v = _finite(x)
    (osm, osr), (slope, intercept, r) = sps.probplot(v, dist="norm")
    ax.plot(osm, osr, "o", ms=3, color="tab:blue", label="ordered SGN")
    ax.plot(osm, slope * osm + intercept, label=f"Gaussian line (R² = {r * r:.3f})", **_GAUSS_KW)
    ax.set_title(title)
    ax.set_xlabel("theoretical quantile of N(0, 1)")
    ax.set_ylabel("ordered SGN (∂loss/∂w units)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_sgn_gaussian_panels(axes: Sequence[Axes], x: np.ndarray | xr.DataArray, *, title: str) -> None:
    """Paper Figs 3-5: histogram, log-scale histogram and QQ-plot of one parameter's SGN.

    Parameters
    ----------
    axes : sequence of 3 Axes
        Upper, centre and lower panel.
    x : array-like
        The M SGN samples of one parameter at one snapshot.
    title : str
        Prefix of the panel titles (run, tensor, parameter, iteration).
    """
    a, b, c = axes
    plot_sgn_histogram(a, x, title=f"{title}: histogram")
    plot_sgn_log_density(b, x, title=f"{title}: log-scale density")
    plot_sgn_qq(c, x, title=f"{title}: QQ-plot vs Gaussian")


def plot_sgn_stable_fit(
    ax: Axes,
    x: np.ndarray | xr.DataArray,
    stable: Sequence[float],
    *,
    title: str,
    log: bool = False,
    grid_points: int = 161,
) -> Axes:
    """Paper Figs 8-9: SGN density against the fitted alpha-stable and Gaussian densities.

    Parameters
    ----------
    ax : Axes
    x : array-like
        The SGN samples of one parameter.
    stable : (alpha, beta, scale, loc)
        Stable parameters in scipy's S1 parameterisation (e.g. a McCulloch fit).
    title : str
    log : bool
        Log density axis (Fig 9) instead of linear (Fig 8).
    grid_points : int
        Points at which ``scipy.stats.levy_stable.pdf`` is evaluated (it is slow).

    Returns
    -------
    Axes
    """
    v = _finite(x)
    edges = _sgn_edges(v)
    dens, _ = np.histogram(v, bins=edges, density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    a, beta, scale, loc = (float(s) for s in stable)
    if log:
        keep = dens > 0
        ax.plot(centres[keep], dens[keep], "o", ms=3, color="tab:blue", label=f"SGN (M = {v.size})")
    else:
        ax.stairs(dens, edges, fill=True, alpha=0.5, color="tab:blue", label=f"SGN (M = {v.size})")
    grid = np.linspace(edges[0], edges[-1], grid_points)
    mu, sd = gaussian_fit(v)
    if sd > 0:
        ax.plot(grid, sps.norm.pdf(grid, mu, sd), label=f"Gaussian (σ={sd:.3g})", **_GAUSS_KW)
    if np.isfinite([a, beta, scale, loc]).all() and scale > 0:
        pdf = sps.levy_stable.pdf(grid, a, beta, loc=loc, scale=scale)
        ax.plot(
            grid, pdf, label=f"α-stable (α={a:.2f}, β={beta:.2f}, γ={scale:.3g}, δ={loc:.3g})", **_STABLE_KW
        )
    if log:
        ax.set_yscale("log")
        pos = dens[dens > 0]
        if pos.size:
            ax.set_ylim(pos.min() / 20, None)
    ax.set_title(title)
    ax.set_xlabel(SGN_LABEL)
    ax.set_ylabel(DENSITY_LABEL + (", log scale" if log else ""))
    ax.legend(fontsize=7)
    return ax


# ----------------------------------------------------------------------------- per-parameter vs pooled


def plot_param_vs_pooled(
    ax: Axes,
    stats: pd.DataFrame,
    pooled: pd.DataFrame,
    *,
    title: str = "per-parameter vs pooled α",
    center: str = "median",
    band: bool = False,
) -> Axes:
    """Per-parameter alpha against the pooled alpha of the same tensors over iterations.

    Pooled means all coordinates (and minibatches) of a tensor taken as one
    sample (Simsekli et al. 2019); the per-parameter estimate treats each
    coordinate as its own distribution (the paper's approach). Each group gets
    one colour: solid line = per-parameter ``center``, dashed line = pooled;
    the legend lists the colours and the two line styles once.

    Parameters
    ----------
    ax : Axes
    stats : pandas.DataFrame
        :func:`alpha_stats` by tensor/module: ``iteration``, ``group``,
        ``center``, ``q_lo``, ``q_hi``.
    pooled : pandas.DataFrame
        Columns ``iteration``, ``group``, ``alpha``.
    title, center : str
    band : bool
        Shade each group's ``q_lo``..``q_hi`` (off by default: bands of small
        tensors such as biases are wide and hide the lines).

    Returns
    -------
    Axes
    """
    order = list(dict.fromkeys(stats["group"].tolist() + pooled["group"].tolist()))
    colors = _hue_colors(order)
    for g in order:
        s = stats[stats["group"] == g].sort_values("iteration")
        if len(s):
            ax.plot(
                s["iteration"], s[center], color=colors[g], marker="o", ms=3,
                label=f"{g}: per-parameter {center}",
            )  # fmt: skip
            if band and {"q_lo", "q_hi"} <= set(s.columns):
                ax.fill_between(s["iteration"], s["q_lo"], s["q_hi"], color=colors[g], alpha=0.12)
        p = pooled[pooled["group"] == g].sort_values("iteration")
        if len(p):
            ax.plot(
                p["iteration"], p["alpha"], color=colors[g], ls="--", marker="s", ms=3, label=f"{g}: pooled"
            )
    ref = ax.axhline(2.0, **_REF_KW)
    _capped_note(ax)
    # legend: one colour per group, then the two line styles (the lines keep full labels)
    handles = [Line2D([], [], color=colors[g], lw=2, label=str(g)) for g in order]
    handles += [
        Line2D([], [], color="0.2", marker="o", ms=3, label=f"per-parameter {center}"),
        Line2D([], [], color="0.2", ls="--", marker="s", ms=3, label="pooled"),
        Line2D([], [], color=ref.get_color(), ls=":", label="α = 2 (Gaussian)"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(title)
    ax.set_xlabel(ITERATION_LABEL)
    ax.set_ylabel(ALPHA_LABEL)
    ax.grid(alpha=0.3)
    return ax
