"""Alpha as lines: over iterations (Fig 1), per batch size (Fig 2), per layer (Figs 13-15),
against a config axis (Figs 6-7), per-parameter against pooled."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from .style import (
    _REF_KW,
    ALPHA_LABEL,
    ITERATION_LABEL,
    _cap_alpha_axis,
    _capped_note,
    _hue_colors,
    _ref_alpha2,
    _sorted_unique,
    _value_text,
)

#: Legend texts of the per-iteration statistics.
STAT_LABELS = {
    "median": "median over parameters",
    "mean": "mean over parameters",
    "alpha_from_mean_inv": "1 / mean(1/α) over parameters",
    "paper_mean": "paper's statistic: mean of α, negative estimates included",
}
#: Legend texts of the interval error bars, per statistic.
INTERVAL_LABELS = {
    "median": "95% interval of the median",
    "paper_mean": "95% interval of the paper's mean (where the CLT holds)",
}


def plot_alpha_over_iterations(
    ax: Axes,
    stats: pd.DataFrame,
    *,
    title: str = "α over iterations",
    center: str = "median",
    secondary: str | None = "alpha_from_mean_inv",
    band: bool = True,
    m: int | None = None,
) -> Axes:
    """Paper Fig 1: the per-parameter alpha of one run (or group) over iterations.

    Parameters
    ----------
    ax : Axes
    stats : pandas.DataFrame
        Rows of one group from :func:`sgnlake.analyze.aggregate.alpha_stats` or ``Lake.summary(by="model")``
        (columns ``iteration``, ``median``, ``mean``, ``alpha_from_mean_inv``,
        ``q_lo``, ``q_hi``, ``n_params``, ``n_nan``, ``n_gt2``).
    title : str
    center : {"median", "mean", "alpha_from_mean_inv", "paper_mean"}
        The solid line; with ``<center>_lo``/``<center>_hi`` columns (the median's and the
        paper's mean's 95% intervals) it carries them as error bars, and the snapshots
        without an interval are counted in the note.
    secondary : str or None
        A second statistic drawn dashed. The default ``1/mean(1/alpha)`` is
        finite where the plain mean is not: an estimate of ``1/alpha <= 0``
        gives ``alpha = inf`` and an infinite mean. Non-finite points of either
        line are left out and counted in the note.
    band : bool
        Shade the ``q_lo``..``q_hi`` band.
    m : int, optional
        M, the SGN samples per parameter, printed in the note (and flagged when < 100).

    With ``median_lo``/``median_hi`` columns (:mod:`sgnlake.analyze.aggregate`) the median
    carries its 95% interval as error bars; ``n_sparse`` (degenerate parameters left out)
    is printed in the note.

    Returns
    -------
    Axes
    """
    s = stats.sort_values("iteration")
    x = s["iteration"].to_numpy()
    (line,) = ax.plot(x, s[center].to_numpy(), marker="o", ms=3, label=STAT_LABELS.get(center, center))
    missing = _interval_bars(ax, s, x, line.get_color(), y=center)
    if band and {"q_lo", "q_hi"} <= set(s.columns):
        ax.fill_between(
            x,
            s["q_lo"].to_numpy(),
            s["q_hi"].to_numpy(),
            color=line.get_color(),
            alpha=0.2,
            label="interquartile band",
        )
    note = f"; no 95% interval at {missing} snapshot(s)" if missing else ""
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
        head = "" if m is None else f"M = {m}{' (< 100: noisy)' if m < 100 else ''}; "
        if "n_sparse" in s.columns:
            note = f"\ndegenerate (left out): last {int(s['n_sparse'].to_numpy()[-1])}{note}"
        ax.text(
            0.01,
            0.02,
            f"{head}{n} parameters; dead (no estimate): {nan.min()}–{nan.max()} per snapshot, "
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


def _interval_bars(
    ax: Axes, s: pd.DataFrame, x: np.ndarray, color: str, label: bool = True, y: str = "median"
) -> int:
    """Error bars of the 95% interval ``<y>_lo``..``<y>_hi`` when the table has them.

    Returns the number of finite ``y`` points without an interval (0 when the table has no
    interval columns).
    """
    if not {f"{y}_lo", f"{y}_hi", y} <= set(s.columns):
        return 0
    v = s[y].to_numpy(dtype=np.float64)
    lo = np.clip(v - s[f"{y}_lo"].to_numpy(dtype=np.float64), 0, None)
    hi = np.clip(s[f"{y}_hi"].to_numpy(dtype=np.float64) - v, 0, None)
    ok = np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.errorbar(
            x[ok], v[ok], yerr=[lo[ok], hi[ok]], fmt="none", ecolor=color, capsize=2, lw=1,
            label=INTERVAL_LABELS.get(y, f"95% interval of {y}") if label else None,
        )  # fmt: skip
    return int((np.isfinite(v) & ~ok).sum())


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
    deviation across them. A single run's line carries the 95% interval of ``y``
    (``<y>_lo``/``<y>_hi``, e.g. the median's or the paper's mean's) when the table has it.

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
            srt = sub.sort_values(x)
            _interval_bars(ax, srt, srt[x].to_numpy(), colors[h], False, y=y)
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

    ``stats`` is :func:`sgnlake.analyze.aggregate.alpha_stats` grouped by module (or tensor): columns
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
        :func:`sgnlake.analyze.aggregate.alpha_stats` by tensor/module: ``iteration``, ``group``,
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
