"""Alpha distributions over parameters: one histogram per snapshot (Figs 10-12), one per layer (Fig 16)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes

from .style import _REF_KW, ALPHA_LABEL, _hue_colors


def histogram_edges(values: np.ndarray, *, lo: float = 0.5, hi: float = 2.5, limits=(0.0, 4.0), bins=40):
    """Bin edges for alpha histograms: at least ``[lo, hi]``, widened to the data within ``limits``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size:
        lo = min(lo, max(limits[0], float(v.min())))
        hi = max(hi, min(limits[1], float(v.max())))
    return np.linspace(lo, hi, bins + 1)


def _degenerate(v: np.ndarray, sparse: np.ndarray | xr.DataArray | None) -> np.ndarray:
    """Boolean mask of degenerate parameters with an estimate (``sparse`` > 0; negative = unknown)."""
    if sparse is None:
        return np.zeros(v.shape, dtype=bool)
    sp = np.asarray(sparse).ravel()
    if sp.shape != v.shape:
        raise ValueError(f"sparse has {sp.size} values for {v.size} alphas")
    return (sp > 0) & ~np.isnan(v)


def degenerate_caption(include_sparse: bool) -> str:
    """The sentence that says how a figure treats degenerate parameters."""
    what = (
        "Degenerate parameters (fewer distinct non-zero SGN values than half the samples, e.g. input "
        "pixels that are zero in most minibatches; their estimate is pulled to α = 1 and makes the spike "
        "at α ≈ 1) are "
    )
    if include_sparse:
        return what + "kept in the statistics (--include-sparse)."
    return what + "counted in the notes and left out (--include-sparse keeps them)."


def plot_alpha_histogram(
    ax: Axes,
    values: np.ndarray | xr.DataArray,
    *,
    title: str,
    bins: np.ndarray | None = None,
    color: Any = "tab:blue",
    sparse: np.ndarray | xr.DataArray | None = None,
    include_sparse: bool = False,
) -> Axes:
    """Paper Figs 10-12: histogram of alpha over all parameters at one snapshot.

    Counts (not densities) per bin are drawn as a filled step patch; NaN
    estimates (dead parameters), degenerate parameters left out and values
    outside the bins (``+inf`` included) are counted in a note in the corner,
    never dropped silently.

    Parameters
    ----------
    ax : Axes
    values : array-like
        Alpha of every parameter at one iteration (any shape; flattened).
    title : str
    bins : numpy.ndarray, optional
        Bin edges; default :func:`histogram_edges` of the data.
    color : matplotlib color
    sparse : array-like, optional
        The ``sparse`` result of the same parameters (same size; > 0: degenerate).
    include_sparse : bool
        Draw degenerate parameters (stacked in grey on top of the others) and count them
        in the median; by default they are left out like in the summaries
        (:func:`sgnlake.analyze.aggregate.group_stats`).

    Returns
    -------
    Axes
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    deg = _degenerate(v, sparse)
    est_all = v[~np.isnan(v)]  # estimates, +inf included (1/alpha <= 0)
    est = v[~np.isnan(v) & ~deg]  # non-degenerate estimates
    fin = est[np.isfinite(est)]
    fin_deg = v[deg & np.isfinite(v)]
    edges = (
        histogram_edges(np.concatenate([fin, fin_deg]) if include_sparse else fin)
        if bins is None
        else np.asarray(bins, dtype=np.float64)
    )
    counts, _ = np.histogram(fin, bins=edges)
    outside = int(est.size - counts.sum())
    med_of = est_all if include_sparse else est
    med = float(np.median(med_of)) if med_of.size else float("nan")
    note = f"{v.size} parameters\ndead (NaN): {v.size - est_all.size}"
    if sparse is not None:
        note += f"\ndegenerate ({'kept, grey' if include_sparse else 'left out'}): {int(deg.sum())}"
    ax.stairs(counts, edges, fill=True, alpha=0.75, color=color, label="parameters per bin")
    if include_sparse and deg.any():
        dcounts, _ = np.histogram(fin_deg, bins=edges)
        outside += int(deg.sum() - dcounts.sum())
        ax.stairs(
            counts + dcounts, edges, baseline=counts, fill=True, alpha=0.75, color="0.55",
            label="degenerate parameters",
        )  # fmt: skip
    if outside:
        note += f"\noutside [{edges[0]:.2g}, {edges[-1]:.2g}]: {outside}"
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
    sparse: np.ndarray | None = None,
    include_sparse: bool = False,
) -> Axes:
    """Paper Fig 16: alpha distribution per layer at one snapshot.

    One step outline per group, as a density (each integrates to 1 over the
    bins) so that layers of very different sizes compare; the legend gives each
    layer's parameter count, median, dead count and (with ``sparse``) degenerate count.

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
    sparse : array-like, optional
        The ``sparse`` result of the same parameters (> 0: degenerate).
    include_sparse : bool
        Keep degenerate parameters in the densities and medians (default: left out).

    Returns
    -------
    Axes
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    deg = _degenerate(v, sparse)
    lab = np.asarray(groups, dtype=object).ravel()
    order = list(dict.fromkeys(lab.tolist()))
    colors = _hue_colors(order)
    edges = histogram_edges(v) if bins is None else np.asarray(bins, dtype=np.float64)
    for g in order:
        sub = v[lab == g]
        dg = deg[lab == g]
        est = sub[~np.isnan(sub) & (include_sparse | ~dg)]  # +inf estimates count as outside the bins
        inside = est[(est >= edges[0]) & (est <= edges[-1])]
        if inside.size:
            dens, _ = np.histogram(inside, bins=edges, density=True)
        else:
            dens = np.zeros(len(edges) - 1)
        med = float(np.median(est)) if est.size else float("nan")
        ax.stairs(
            dens, edges, lw=1.6, color=colors[g],
            label=f"{g}: {sub.size} params, median {med:.2f}, dead {int(np.isnan(sub).sum())}"
            + ("" if sparse is None else f", degenerate {int(dg.sum())}" + (" (kept)" if include_sparse else "")),
        )  # fmt: skip
    ax.axvline(2.0, label="α = 2 (Gaussian)", **_REF_KW)
    ax.set_title(title)
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel("density over the layer's parameters")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return ax
