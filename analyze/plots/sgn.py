"""SGN of one parameter: histogram, log density and QQ-plot against a Gaussian (Figs 3-5),
density against a fitted alpha-stable law (Figs 8-9)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from scipy import stats as sps

from .style import _GAUSS_KW, _STABLE_KW, DENSITY_LABEL, SGN_LABEL


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
    peak = 0.0
    if np.isfinite([a, beta, scale, loc]).all() and scale > 0:
        pdf = sps.levy_stable.pdf(grid, a, beta, loc=loc, scale=scale)
        peak = float(np.nanmax(pdf)) if pdf.size else 0.0
        flag = " (at the boundary)" if stable_fit_at_boundary(stable) else ""
        ax.plot(
            grid, pdf, label=f"α-stable (α={a:.2f}, β={beta:.2f}, γ={scale:.3g}, δ={loc:.3g}){flag}",
            **_STABLE_KW,
        )  # fmt: skip
    if log:
        ax.set_yscale("log")
        pos = dens[dens > 0]
        if pos.size:
            ax.set_ylim(pos.min() / 20, None)
    elif dens.size and peak > 3 * dens.max() > 0:
        # a fitted spike (tiny scale) would flatten the histogram: keep the data readable
        ax.set_ylim(0, 1.5 * dens.max())
        ax.text(
            0.01, 0.98, f"stable density peaks at {peak:.3g} (clipped)", transform=ax.transAxes,
            fontsize=7, va="top",
        )  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(SGN_LABEL)
    ax.set_ylabel(DENSITY_LABEL + (", log scale" if log else ""))
    ax.legend(fontsize=7)
    return ax


#: McCulloch's tables cover alpha in [0.5, 2] and |beta| <= 1; a fit on their edge is clipped there.
STABLE_ALPHA_RANGE = (0.5, 2.0)


def stable_fit_at_boundary(stable: Sequence[float], tol: float = 1e-3) -> bool:
    """True when a McCulloch fit sits on the edge of its range (alpha at 0.5 or 2, |beta| = 1).

    Such a fit is clipped by the quantile tables, not located: the sample's quantile ratios
    lie outside what a stable law of that range gives (e.g. too few distinct values, or lighter
    tails than the Gaussian).
    """
    a, beta = float(stable[0]), float(stable[1])
    lo, hi = STABLE_ALPHA_RANGE
    return bool(a <= lo + tol or a >= hi - tol or abs(beta) >= 1 - tol)


def plot_sgn_stable_qq(
    ax: Axes,
    x: np.ndarray | xr.DataArray,
    stable: Sequence[float],
    *,
    title: str,
    n_quantiles: int = 25,
) -> Axes:
    """QQ-plot of the SGN against the fitted alpha-stable law.

    The sample's quantiles at ``n_quantiles`` plotting positions ``(i - 0.5) / n`` against
    ``scipy.stats.levy_stable.ppf`` of the fitted (alpha, beta, scale, loc) (S1; a modest
    number of quantiles: the ppf is a numerical inversion, ~0.05 s each). Points on the
    diagonal: the fitted law describes the sample, tails included.
    """
    v = _finite(x)
    a, beta, scale, loc = (float(s) for s in stable)
    probs = (np.arange(n_quantiles) + 0.5) / n_quantiles
    if v.size < 2 or not (np.isfinite([a, beta, scale, loc]).all() and scale > 0):
        ax.text(0.5, 0.5, "no stable fit", transform=ax.transAxes, ha="center")
        ax.set_title(title)
        return ax
    theo = sps.levy_stable.ppf(probs, a, beta, loc=loc, scale=scale)
    emp = np.quantile(v, probs)
    ok = np.isfinite(theo)
    ax.plot(theo[ok], emp[ok], "o", ms=3, color="tab:blue", label=f"SGN quantiles (M = {v.size})")
    lim = (
        [np.nanmin([theo[ok].min(), emp.min()]), np.nanmax([theo[ok].max(), emp.max()])]
        if ok.any()
        else [0, 1]
    )
    ax.plot(
        lim,
        lim,
        **_STABLE_KW,
        label="fitted α-stable" + (" (at the boundary)" if stable_fit_at_boundary(stable) else ""),
    )
    ax.set_title(title)
    ax.set_xlabel("α-stable quantile")
    ax.set_ylabel("SGN quantile")
    ax.legend(fontsize=7)
    return ax
