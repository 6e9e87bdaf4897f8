"""The HTML report of a lake: figures (PNG) and a self-contained ``index.html``.

This is the only module of the figure layer that talks to a
:class:`~sgnlake.analyze.lake.Lake`: it reads alpha (stored results are reused,
missing ones are computed), loss/accuracy snapshots and a few SGN samples, turns
them into labelled tables and hands those to :mod:`sgnlake.analyze.plots`.

Layout of the output folder::

    OUT/index.html                 run table, key numbers, every figure with a caption
    OUT/fig02_batch_size_*.png     figures across runs (drawn only when runs vary that axis)
    OUT/runs/<run_id>/*.png        figures of one run

Links in ``index.html`` are relative, so the folder can be moved, zipped or
opened straight from disk (no server).
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sgnlake.schema.errors import ConfigError, LakeError
from sgnlake.schema.names import MINIBATCH

from . import plots
from .lake import CONFIG_COLUMNS

#: Config columns that define a "context": runs that agree on all of them except
#: the axis a figure varies (and the seed) are drawn together. ``n_minibatches``
#: follows from ``n_train`` and ``batch_size``.
CONTEXT_COLUMNS = tuple(c for c in CONFIG_COLUMNS if c not in ("seed", "n_minibatches"))

#: At most this many figures per cross-run kind (one per context); the rest are listed.
MAX_CONTEXT_FIGURES = 6

#: A pooled sample larger than this (values per tensor and snapshot) uses a seeded
#: subset of the tensor's parameters (all minibatches of each), to bound memory.
POOLED_MAX_VALUES = 1 << 24


@dataclass
class FigureEntry:
    """One figure of the report: file (relative to the report folder), caption, section."""

    path: str
    caption: str
    section: str
    title: str = ""


@dataclass
class Report:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    index : Path
        The ``index.html``.
    figures : list of FigureEntry
        Every PNG written, in page order.
    notes : list of str
        Figures not drawn and why (e.g. "no runs vary depth").
    errors : list of str
        Figures that failed (each also shown in the HTML); empty on success.
    key_numbers : pandas.DataFrame
        One row per run: the table of the HTML page.
    """

    index: Path
    out_dir: Path
    figures: list[FigureEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    key_numbers: pd.DataFrame | None = None


@dataclass
class _RunData:
    run: str
    meta: Any
    alpha: xr.DataArray  # (iteration, param) at the chosen snapshots only, in memory
    stats: pd.DataFrame  # summary by model (group "all")
    by_module: pd.DataFrame
    by_tensor: pd.DataFrame
    snapshots: xr.Dataset
    tensors: pd.DataFrame
    chosen: list[int]


# ----------------------------------------------------------------------------- small helpers


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
                out.append(int(item))
            except ValueError:
                raise ConfigError(
                    f"bad --iterations value {item!r}: use integers, 'first' or 'last', e.g. 100,5000,last"
                ) from None
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


def _fmt(v: Any, digits: int = 4) -> str:
    """Table/caption text of a value: ``digits`` significant digits, ``inf``, ``–`` for missing."""
    if v is None:
        return "–"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if np.isnan(v):
            return "–"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{float(v):.{digits}g}"
    try:
        if pd.isna(v):
            return "–"
    except (TypeError, ValueError):
        pass
    return str(v)


def _settings_text(estimator: str, settings: Mapping[str, Any]) -> str:
    if not settings:
        return f"{estimator} (default settings)"
    return f"{estimator} (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"


def _plain_value(v: Any) -> Any:
    """``3.0`` -> ``3`` (pandas turns integer columns with gaps into floats)."""
    if isinstance(v, float | np.floating) and np.isfinite(v) and float(v).is_integer():
        return int(v)
    return v


def _context_label(row: Mapping[str, Any], cols: Sequence[str]) -> str:
    parts = []
    for c in cols:
        v = row.get(c)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        v = _plain_value(v)
        parts.append(str(v) if c == "model" else f"{c}={v}")
    return " ".join(parts) or "all runs"


def _varying_contexts(df: pd.DataFrame, axes: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """Groups of runs that agree on every context column except ``axes`` (and seed)
    and in which at least one of ``axes`` takes two or more values."""
    if df.empty or not all(a in df.columns for a in axes):
        return []
    ctx = [c for c in CONTEXT_COLUMNS if c in df.columns and c not in axes]
    keys = pd.Series(
        ["|".join(str(_plain_value(v)) for v in row) for row in df[ctx].itertuples(index=False)]
        if ctx
        else "all",
        index=df.index,
        dtype=object,
    )
    # label contexts by what tells them apart in this lake (the model name always)
    shown = [c for c in ctx if c == "model" or df[c].map(lambda v: str(_plain_value(v))).nunique() > 1]
    out = []
    for _, idx in keys.groupby(keys, sort=True).groups.items():
        sub = df.loc[idx]
        if any(sub[a].dropna().nunique() >= 2 for a in axes):
            out.append((_context_label(sub.iloc[0].to_dict(), shown), sub))
    out.sort(key=lambda t: -len(t[1]))
    return out


def _pooled_alpha_value(x: np.ndarray, k1: Any) -> float:
    """Mohammadi alpha of all values of a ``(minibatch, param)`` block as one sample.

    Flattened minibatch-major (C order), as Simsekli et al. (2019) do; non-finite
    values are dropped as in every kernel (with the K1 blocks that hold them); NaN
    when the block holds no usable values.
    """
    from .kernels import pooled

    a = np.asarray(x)
    if a.size < 4:
        return float("nan")
    return float(pooled(a, k1))


def _stable_fit(x: np.ndarray) -> np.ndarray:
    """McCulloch quantile fit (alpha, beta, scale, loc; scipy S1) of one sample."""
    from .kernels import mcculloch

    return np.asarray(mcculloch(np.asarray(x, dtype=np.float64)), dtype=np.float64).reshape(-1)[:4]


def _wrap_line(text: Any, line: str, limit: float, renderer: Any) -> str:
    """``line`` wrapped at spaces/hyphens so that each piece of ``text`` (its font) is <= ``limit`` px."""
    text.set_text(line)
    width = text.get_window_extent(renderer).width
    if width <= limit or len(line) < 12:
        return line
    chars = max(10, int(len(line) * limit / width))
    wrapped = line
    for _ in range(8):
        wrapped = textwrap.fill(line, width=chars, break_long_words=chars <= 10)
        text.set_text(wrapped)
        if text.get_window_extent(renderer).width <= limit or chars <= 10:
            break
        chars = max(10, int(chars * 0.9))
    return wrapped


def fit_titles(fig: Any) -> int:
    """Wrap every axes title (and the suptitle) that is wider than its axes (the figure).

    Long titles (run ids, context labels) are otherwise cut off at the right edge of
    the PNG or run into the neighbouring panel: constrained layout makes room for a
    title's height, not its width. Titles are wrapped at spaces and hyphens onto
    more lines (never shortened), each line measured with the figure's renderer.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure with constrained layout (:func:`sgnlake.analyze.plots.new_figure`).

    Returns
    -------
    int
        Number of titles wrapped.
    """
    renderer = fig.canvas.get_renderer()
    fig_w = fig.get_figwidth() * fig.dpi
    titled = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    sup = getattr(fig, "_suptitle", None)
    # cheap bound first: a title narrower than 60% of its grid column always fits
    suspects = []
    for ax in titled:
        spec = ax.get_subplotspec()
        col = fig_w * (len(spec.colspan) / spec.get_gridspec().ncols if spec is not None else 1.0)
        if ax.title.get_window_extent(renderer).width > 0.6 * col:
            suspects.append(ax)
    if not suspects and not (sup is not None and sup.get_window_extent(renderer).width > 0.9 * fig_w):
        return 0
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)  # run the layout (no rendering): axes take their final widths
    else:
        fig.canvas.draw()
    wrapped = 0
    for ax in suspects:
        limit = ax.get_window_extent(renderer).width
        old = ax.get_title()
        new = "\n".join(_wrap_line(ax.title, ln, limit, renderer) for ln in old.split("\n"))
        ax.title.set_text(new)
        wrapped += new != old
    if sup is not None and sup.get_text():
        old = sup.get_text()
        new = "\n".join(_wrap_line(sup, ln, 0.95 * fig_w, renderer) for ln in old.split("\n"))
        sup.set_text(new)
        wrapped += new != old
    return wrapped


def resolve_report_estimator(estimator: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check that ``estimator`` gives one alpha per parameter and fill in its default settings.

    Raises
    ------
    ConfigError
        Unknown estimator or setting, or an estimator without a per-parameter
        alpha (``gaussianity``, ``mohammadi_inv``, ``pooled``, ``multivariate``).
    """
    from .estimators import ESTIMATORS, resolve_settings

    resolved = resolve_settings(estimator, **settings)  # one-line error for unknown names
    spec = ESTIMATORS[estimator]
    per_param = [
        n
        for n, s in ESTIMATORS.items()
        if s.default_dims == (MINIBATCH,) and (s.output_name == "alpha" or "alpha" in s.output_labels)
    ]
    if estimator not in per_param:
        raise ConfigError(
            f"estimator {estimator!r} gives no per-parameter alpha ({spec.description}): "
            f"use one of {', '.join(per_param)}"
        )
    return resolved


# ----------------------------------------------------------------------------- the builder


class _Builder:
    def __init__(
        self,
        lake: Any,
        out_dir: Path,
        *,
        estimator: str,
        settings: Mapping[str, Any],
        iterations: Sequence[int] | None,
        dpi: int,
        store: bool,
        force: bool,
        param: tuple[str, int] | None,
        pooled: bool,
        log: Callable[[str], None],
    ) -> None:
        self.lake = lake
        self.out = out_dir
        self.estimator = estimator
        self.settings = dict(settings)
        self.requested = list(iterations) if iterations else None
        self.dpi = dpi
        self.store = store
        self.force = force
        self.param = param
        self.pooled = pooled
        self.log = log
        self.report = Report(index=out_dir / "index.html", out_dir=out_dir)
        self.stored_note = ""

    # -------------------------------------------------------------- figures

    def _save(self, fig, rel: str, caption: str, section: str, title: str = "") -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fit_titles(fig)
        plots.save_figure(fig, path, dpi=self.dpi)
        self.report.figures.append(FigureEntry(rel, caption, section, title))

    def _try(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # a figure must not take the whole report down; it is reported
            msg = f"{what}: {type(e).__name__}: {e}"
            self.report.errors.append(msg)
            self.log(f"warning: figure failed, {msg}")
            if os.environ.get("SGNLAKE_DEBUG"):
                traceback.print_exc()

    # -------------------------------------------------------------- data

    def load(self, ids: list[str]) -> dict[str, _RunData]:
        """Store alpha (when asked and possible), summarise it, and read the chosen snapshots."""
        active = []
        for r in ids:
            if self.lake.meta(r).committed == 0:
                self.report.notes.append(f"run {r}: no committed snapshots yet, nothing to draw")
            else:
                active.append(r)
        if not active:
            return {}
        if self.store and not getattr(self.lake, "read_only", False):
            self.log(
                f"report: alpha ({_settings_text(self.estimator, self.settings)}) for {len(active)} run(s)"
            )
            try:
                rep = self.lake.compute_alpha(
                    active, self.estimator, force=self.force, progress=False, **self.settings
                )
                done = sum(1 for r in rep.runs if r.action in ("computed", "appended"))
                self.stored_note = (
                    f"α computed and stored in the lake for {done} run(s); "
                    f"{len(rep.runs) - done} reused from stored results (key {rep.key})."
                )
            except LakeError as e:
                self.stored_note = f"α could not be stored in the lake ({e}); it was computed in memory."
        summ = {
            by: self.lake.summary(active, by=by, estimator=self.estimator, **self.settings)
            for by in ("model", "module", "tensor")
        }
        out = {}
        for r in active:
            its = self.lake.iterations(r)
            chosen = pick_iterations(its, self.requested)
            a = self.lake.alpha(r, self.estimator, **self.settings).sel(iteration=chosen)
            a = a.load() if hasattr(a, "load") else a
            out[r] = _RunData(
                run=r,
                meta=self.lake.meta(r),
                alpha=a,
                stats=summ["model"][summ["model"]["run_id"] == r].reset_index(drop=True),
                by_module=summ["module"][summ["module"]["run_id"] == r].reset_index(drop=True),
                by_tensor=summ["tensor"][summ["tensor"]["run_id"] == r].reset_index(drop=True),
                snapshots=self.lake.snapshots(r),
                tensors=self.lake.tensors(r),
                chosen=chosen,
            )
        return out

    # -------------------------------------------------------------- per-run figures

    def run_figures(self, d: _RunData) -> None:
        sec = f"run:{d.run}"
        base = f"runs/{d.run}"
        m = d.meta.n_minibatches
        b = d.meta.config.batch_size
        est = _settings_text(self.estimator, self.settings)
        common = f"Estimator {est}; M = {m} SGN samples (minibatches of b = {b}) per parameter and snapshot."

        def fig1() -> None:
            fig, ax = plots.new_figure()
            plots.plot_alpha_over_iterations(ax, d.stats, title=f"{d.run}: α over iterations (Fig 1)")
            self._save(
                fig, f"{base}/fig01_alpha.png",
                f"Paper Fig 1. Median (solid, with interquartile band) and 1/mean(1/α) (dashed) of the "
                f"per-parameter tail index over all {int(d.stats['n_params'].max())} parameters of run {d.run} "
                f"at each of its {len(d.stats)} committed snapshots. 1/α is the nearly unbiased quantity of "
                f"the estimator; the plain mean of α is not drawn, it is dominated (or made infinite) by the "
                f"few estimates far above 2 that small samples give. Parameters without an estimate (zero or "
                f"constant SGN, e.g. dead ReLU units) are counted in the note and left out. {common}",
                sec, "α over iterations",
            )  # fmt: skip

        def fig13() -> None:
            fig, ax = plots.new_figure()
            plots.plot_alpha_by_layer(
                ax, d.by_module, y="median", title=f"{d.run}: median α per layer (Figs 13-15)"
            )
            self._save(
                fig, f"{base}/fig13_layers.png",
                f"Paper Figs 13-15. Median per-parameter α of each layer (module: weight and bias "
                f"together) over iterations, run {d.run} (batch size {b}). The paper plots the mean; the "
                f"median is used because single estimates far above 2 (or infinite) dominate the mean at "
                f"small M. {common}",
                sec, "α per layer over iterations",
            )  # fmt: skip

        def fig10() -> None:
            n = len(d.chosen)
            fig, axes = plots.new_figure(1, n, size=(4.6 * n, 3.8), squeeze=False)
            vals = [d.alpha.sel(iteration=t).values for t in d.chosen]
            edges = plots.histogram_edges(np.concatenate(vals))
            for ax, t, v in zip(axes[0], d.chosen, vals, strict=True):
                plots.plot_alpha_histogram(ax, v, title=f"{d.run}, iteration {t}", bins=edges)
            self._save(
                fig, f"{base}/fig10_alpha_hist.png",
                f"Paper Figs 10-12. Distribution of the per-parameter α over all parameters of run {d.run} "
                f"at iterations {', '.join(map(str, d.chosen))} (shared bins; dashed line: median; dotted: "
                f"α = 2, the Gaussian). Dead parameters (no estimate) and values outside the bins are counted "
                f"in the legends. {common}",
                sec, "α distribution over parameters",
            )  # fmt: skip

        def fig16() -> None:
            n = len(d.chosen)
            fig, axes = plots.new_figure(1, n, size=(4.6 * n, 3.8), squeeze=False)
            vals = [d.alpha.sel(iteration=t).values for t in d.chosen]
            edges = plots.histogram_edges(np.concatenate(vals))
            for ax, t, v in zip(axes[0], d.chosen, vals, strict=True):
                plots.plot_alpha_histograms_by_group(
                    ax, v, d.alpha["module"].values, title=f"{d.run}, iteration {t}", bins=edges
                )
            self._save(
                fig, f"{base}/fig16_alpha_hist_layers.png",
                f"Paper Fig 16. Distribution of α per layer (density within each layer) at iterations "
                f"{', '.join(map(str, d.chosen))}, run {d.run}. {common}",
                sec, "α distribution per layer",
            )  # fmt: skip

        def alphamap() -> None:
            t_last = d.chosen[-1]
            tab = d.tensors
            names = [n for n in tab.index if len(tab.loc[n, "shape"]) >= 2] or list(tab.index)
            ncols = min(len(names), 3)
            nrows = -(-len(names) // ncols)
            fig, axes = plots.new_figure(nrows, ncols, size=(5.0 * ncols, 3.6 * nrows), squeeze=False)
            a_t = d.alpha.sel(iteration=t_last)
            for ax, name in zip(axes.ravel(), names, strict=False):
                vals = a_t.values[d.alpha["tensor"].values == name]
                plots.plot_alpha_map(ax, vals, tab.loc[name, "shape"], title=f"{name} @ iteration {t_last}")
            for ax in axes.ravel()[len(names) :]:
                ax.set_visible(False)
            self._save(
                fig, f"{base}/alpha_map.png",
                f"Per-parameter α of each weight tensor of run {d.run} at iteration {t_last}, laid out like "
                f"the weight: rows are output units, columns input units; conv weights as a grid of "
                f"filters (output channel × input channel blocks of kernel pixels). Colour scale fixed to "
                f"1..2 (values beyond saturate), grey = no estimate. {common}",
                sec, "α maps",
            )  # fmt: skip

        self._try(f"{d.run} fig 1", fig1)
        self._try(f"{d.run} figs 13-15", fig13)
        self._try(f"{d.run} figs 10-12", fig10)
        self._try(f"{d.run} fig 16", fig16)
        self._try(f"{d.run} alpha map", alphamap)
        self._try(f"{d.run} SGN figures", lambda: self.sgn_figures(d, common))
        if self.pooled and self.estimator == "mohammadi":
            self._try(f"{d.run} pooled", lambda: self.pooled_figure(d, common))
        elif self.pooled:
            self.report.notes.append(
                f"run {d.run}: the per-parameter vs pooled figure is drawn for the mohammadi estimator only "
                f"(the pooled estimate is Mohammadi's), not for {self.estimator}."
            )

    def _chosen_param(self, d: _RunData) -> tuple[str, int, str]:
        """The (tensor, flat index) whose SGN is drawn, and how it was chosen."""
        tab = d.tensors
        if self.param is not None:
            name, idx = self.param
            if name in tab.index and idx < int(tab.loc[name, "numel"]):
                return name, idx, "chosen with --param"
            sizes = ", ".join(f"{n} ({int(tab.loc[n, 'numel'])})" for n in tab.index)
            self.report.notes.append(
                f"run {d.run}: --param {name}:{idx} does not exist in this run (tensors: {sizes}); "
                "the default parameter is drawn instead"
            )
        weights = [n for n in tab.index if tab.loc[n, "kind"] == "weight"] or list(tab.index)
        name = max(weights, key=lambda n: tab.loc[n, "numel"])
        a = d.alpha.sel(iteration=d.chosen[-1]).values[d.alpha["tensor"].values == name]
        fin = np.isfinite(a)
        how = "the one whose α at the last chosen snapshot is closest to the tensor's median"
        if not fin.any():
            return name, 0, "the tensor has no finite α at the last chosen snapshot"
        med = np.median(a[fin])
        dist = np.where(fin, np.abs(a - med), np.inf)
        return name, int(np.argmin(dist)), how

    def sgn_figures(self, d: _RunData, common: str) -> None:
        name, idx, how = self._chosen_param(d)
        sec = f"run:{d.run}"
        base = f"runs/{d.run}"
        sgn = self.lake.sgn(d.run, name, iterations=d.chosen, params=[idx])
        x = np.asarray(sgn.values, dtype=np.float64)[:, :, 0]  # (iteration, minibatch)
        a_par = d.alpha.values[:, d.alpha["tensor"].values == name][:, idx]
        n = len(d.chosen)
        fig, axes = plots.new_figure(3, n, size=(4.6 * n, 10.0), squeeze=False)
        for j, t in enumerate(d.chosen):
            plots.plot_sgn_gaussian_panels(axes[:, j], x[j], title=f"{name}[{idx}] @ t={t}")
        self._save(
            fig, f"{base}/fig03_sgn_gaussian.png",
            f"Paper Figs 3-5. SGN of one parameter ({name}, flat index {idx}: {how}) "
            f"at iterations {', '.join(map(str, d.chosen))} "
            f"(columns). Upper: histogram with the fitted Gaussian; centre: the same histogram as dots on a "
            f"log density scale; lower: QQ-plot against the Gaussian. Its α at these snapshots: "
            f"{', '.join(_fmt(v, 3) for v in a_par)} (inf: an estimate of 1/α ≤ 0). {common}",
            sec, "one parameter's SGN against a Gaussian",
        )  # fmt: skip
        t_last = d.chosen[-1]
        xl = x[-1]
        fit = _stable_fit(xl)
        fig, axes = plots.new_figure(1, 2, size=(11.0, 4.0))
        plots.plot_sgn_stable_fit(axes[0], xl, fit, title=f"{name}[{idx}] @ t={t_last} (Fig 8)")
        plots.plot_sgn_stable_fit(
            axes[1], xl, fit, title=f"{name}[{idx}] @ t={t_last}, log (Fig 9)", log=True
        )
        self._save(
            fig, f"{base}/fig08_sgn_stable.png",
            f"Paper Figs 8-9. The same parameter's SGN at iteration {t_last} against the α-stable density "
            f"fitted by McCulloch's quantile method (scipy levy_stable, S1 parameterisation: α={fit[0]:.2f}, "
            f"β={fit[1]:.2f}, scale={fit[2]:.3g}, loc={fit[3]:.3g}) and the fitted Gaussian; linear (left) and "
            f"log (right) density. {common}",
            sec, "SGN against α-stable and Gaussian fits",
        )  # fmt: skip

    def pooled_figure(self, d: _RunData, common: str) -> None:
        sec, base = f"run:{d.run}", f"runs/{d.run}"
        rows = []
        rng = np.random.default_rng(0)
        subsampled = []
        for name in d.tensors.index:
            numel = int(d.tensors.loc[name, "numel"])
            m = d.meta.n_minibatches
            params = None
            if m * numel > POOLED_MAX_VALUES:
                keep = max(1, POOLED_MAX_VALUES // m)
                params = np.sort(rng.choice(numel, keep, replace=False)).tolist()
                subsampled.append(f"{name} ({keep} of {numel} parameters)")
            sgn = self.lake.sgn(d.run, name, params=params)
            for i, t in enumerate(sgn["iteration"].values):
                x = np.asarray(sgn.isel(iteration=i).values)
                a = _pooled_alpha_value(x, self.settings["k1"])
                rows.append({"iteration": int(t), "group": name, "alpha": a})
        pooled = pd.DataFrame(rows, columns=["iteration", "group", "alpha"])
        fig, ax = plots.new_figure(size=(8.5, 4.6))
        plots.plot_param_vs_pooled(ax, d.by_tensor, pooled, title=f"{d.run}: per-parameter vs pooled α")
        sub = f" Pooled samples were subsampled for {', '.join(subsampled)} (seeded)." if subsampled else ""
        self._save(
            fig, f"{base}/pooled_vs_param.png",
            f"Per-parameter α (solid: median over the tensor's parameters) against "
            f"the pooled α of the same tensor (dashed: all coordinates and minibatches of the tensor taken as "
            f"one sample, as in Simsekli et al. 2019), same estimator. The pooled estimate assumes the "
            f"coordinates are i.i.d. (Panigrahi et al. 2019 showed they are not), which is why the paper "
            f"estimates α per parameter.{sub} {common}",
            sec, "per-parameter vs pooled α",
        )  # fmt: skip

    # -------------------------------------------------------------- cross-run figures

    def cross_run_figures(self, data: list[_RunData], runs_df: pd.DataFrame) -> None:
        sec = "cross"
        est = _settings_text(self.estimator, self.settings)
        if not data:
            return
        ids = [d.run for d in data]
        df = runs_df.loc[ids].copy()
        last = {d.run: d.stats.sort_values("iteration").iloc[-1] for d in data}
        df["median"] = [last[r]["median"] for r in ids]
        df["mean"] = [last[r]["mean"] for r in ids]
        df["last_iteration"] = [int(last[r]["iteration"]) for r in ids]
        long = pd.concat(
            [d.stats.assign(run_id=d.run, batch_size=d.meta.config.batch_size) for d in data],
            ignore_index=True,
        )

        # Fig 2: alpha over iterations per batch size
        groups = _varying_contexts(df, ["batch_size"])
        if not groups:
            self.report.notes.append(
                "Paper Fig 2 (α over iterations per batch size) not drawn: no runs that differ only in batch size."
            )
        for k, (label, sub) in enumerate(groups[:MAX_CONTEXT_FIGURES]):

            def fig2(label=label, sub=sub, k=k) -> None:
                fig, ax = plots.new_figure()
                table = long[long["run_id"].isin(sub.index)]
                plots.plot_alpha_by_batch_size(
                    ax, table, title=f"median α over iterations per batch size: {label}"
                )
                sizes = sorted(sub["batch_size"].unique())
                self._save(
                    fig, f"fig02_batch_size_{k + 1}.png",
                    f"Paper Fig 2. Median per-parameter α over iterations, one line per batch size "
                    f"({', '.join(map(str, sizes))}), for runs of {label} ({len(sub)} runs; runs with the same "
                    f"batch size, e.g. seeds, are averaged with ± one standard deviation). Estimator {est}; "
                    f"M differs with the batch size (M = floor(n / b)).",
                    sec, f"α per batch size: {label}",
                )  # fmt: skip

            self._try(f"fig 2 ({label})", fig2)
        self._omitted("Fig 2", groups)

        # alpha against batch size (one line per context)
        if groups:

            def figb() -> None:
                rows = []
                for label, sub in groups:
                    rows.append(sub.assign(context=label))
                table = pd.concat(rows)
                fig, ax = plots.new_figure()
                plots.plot_alpha_vs_config(
                    ax, table, x="batch_size", hue="context", hue_label="",
                    title="median α at the last snapshot against batch size",
                )  # fmt: skip
                self._save(
                    fig, "alpha_vs_batch_size.png",
                    f"Median per-parameter α at each run's last snapshot (iterations "
                    f"{', '.join(sorted({str(v) for v in table['last_iteration']}))}) against batch size, one line "
                    f"per model configuration. Estimator {est}.",
                    sec, "α against batch size",
                )  # fmt: skip

            self._try("alpha vs batch size", figb)
        else:
            self.report.notes.append(
                "α against batch size not drawn: no runs that differ only in batch size."
            )

        # Figs 6-7: alpha against depth (lines per width) and against width (lines per depth)
        groups = _varying_contexts(df, ["depth", "width"])
        if not groups:
            self.report.notes.append(
                "Paper Figs 6-7 (α against depth and width) not drawn: no runs that differ only in depth or width."
            )
        for k, (label, sub) in enumerate(groups[:MAX_CONTEXT_FIGURES]):

            def fig6(label=label, sub=sub, k=k) -> None:
                panels = [a for a in ("depth", "width") if sub[a].dropna().nunique() >= 2]
                fig, axes = plots.new_figure(1, len(panels), squeeze=False)
                for ax, x in zip(axes[0], panels, strict=True):
                    other = "width" if x == "depth" else "depth"
                    plots.plot_alpha_vs_config(
                        ax, sub, x=x, hue=other, y="median",
                        title=f"median α against {x}, lines per {other}: {label}",
                    )  # fmt: skip
                self._save(
                    fig, f"fig06_depth_width_{k + 1}.png",
                    f"Paper Figs 6-7. Median per-parameter α at each run's last snapshot (iterations "
                    f"{', '.join(sorted({str(v) for v in sub['last_iteration']}))}) against "
                    + " and ".join(f"{a} (lines per {'width' if a == 'depth' else 'depth'})" for a in panels)
                    + f", runs of {label} ({len(sub)} runs; seeds averaged, ± one standard deviation). "
                    f"Estimator {est}.",
                    sec, f"α against depth/width: {label}",
                )  # fmt: skip

            self._try(f"figs 6-7 ({label})", fig6)
        self._omitted("Figs 6-7", groups)

    def _omitted(self, what: str, groups: list) -> None:
        if len(groups) > MAX_CONTEXT_FIGURES:
            rest = ", ".join(label for label, _ in groups[MAX_CONTEXT_FIGURES:])
            self.report.notes.append(
                f"{what}: only the {MAX_CONTEXT_FIGURES} largest groups are drawn; not drawn: {rest} "
                "(select them with --runs)"
            )

    # -------------------------------------------------------------- key numbers

    def key_numbers(self, ids: list[str], data: dict[str, _RunData], runs_df: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for r in ids:
            row = runs_df.loc[r]
            d = data.get(r)
            out: dict[str, Any] = {
                "run": r,
                "model": row.get("model"),
                "depth": row.get("depth"),
                "width": row.get("width"),
                "bias": row.get("bias"),
                "dataset": row.get("dataset"),
                "batch size": row.get("batch_size"),
                "lr": row.get("lr"),
                "seed": row.get("seed"),
                "status": row.get("status"),
                "snapshots": f"{row.get('committed')}/{row.get('planned')}",
                "M": row.get("n_minibatches"),
                "parameters": row.get("n_params"),
            }
            if d is not None:
                st = d.stats.sort_values("iteration")
                first, lastr = st.iloc[0], st.iloc[-1]
                snap = d.snapshots
                out.update(
                    {
                        "first iteration": int(first["iteration"]),
                        "last iteration": int(lastr["iteration"]),
                        "loss (last)": float(snap["loss"].values[-1]) if snap.sizes["iteration"] else None,
                        "accuracy (last)": float(snap["accuracy"].values[-1])
                        if snap.sizes["iteration"]
                        else None,
                        "median α (first)": float(first["median"]),
                        "median α (last)": float(lastr["median"]),
                        "dead (no α), last": f"{int(lastr['n_nan'])}/{int(lastr['n_params'])}",
                        "α > 2, last": int(lastr["n_gt2"]),
                        "non-finite SGN samples (all snapshots)": int(st["n_nonfinite_samples"].sum()),
                    }
                )
            rows.append(out)
        return pd.DataFrame(rows, dtype=object)  # object: integers stay integers next to gaps

    # -------------------------------------------------------------- HTML

    def write_html(
        self, ids: list[str], data: dict[str, _RunData], runs_df: pd.DataFrame, location: str
    ) -> None:
        rep = self.report
        e = html.escape
        est = _settings_text(self.estimator, self.settings)
        stored = next((d.alpha.attrs for d in data.values() if d.alpha.attrs), {})
        lines = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>sgnlake report: {e(str(location))}</title>",
            "<style>",
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}",
            "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}",
            "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f0f0f0}",
            "td:first-child,th:first-child{text-align:left}",
            "figure{margin:1.2em 0;border-top:1px solid #ddd;padding-top:0.6em}",
            "figure img{max-width:100%;height:auto}figcaption{font-size:0.9em;max-width:60em}",
            ".note{color:#7a5b00}.error{color:#b00020}code{background:#f5f5f5}",
            "</style></head><body>",
            "<h1>SGN tail-index report</h1>",
            f"<p>Lake: <code>{e(str(location))}</code>; generated "
            f"{e(_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat())} by sgnlake; "
            f"{len(ids)} run(s).</p>",
            f"<p>Estimator: <b>{e(est)}</b>, one α per parameter and snapshot from its M SGN samples "
            "(M = number of minibatches of the snapshot, listed per run). α = 2 is the Gaussian; smaller α "
            "means heavier tails. Parameters whose SGN is zero or constant (e.g. dead ReLU units) have no "
            "estimate: they are counted as “dead”, never averaged in. Estimates above 2 are kept and counted. "
            "Non-finite SGN samples (NaN, ±inf) are dropped per parameter and α is estimated from the "
            "remaining finite samples (Mohammadi: a block of K1 samples holding one is left out of the block "
            "sums); the run table counts them.</p>",
        ]
        if stored:
            shown = {
                k: v for k, v in stored.items() if k in ("estimator", "settings", "key", "source", "created")
            }
            if shown:
                lines.append(f"<p>Result metadata: <code>{e(str(shown))}</code></p>")
        if self.stored_note:
            lines.append(f'<p class="note">{e(self.stored_note)}</p>')
        if self.requested:
            lines.append(
                f"<p>Requested iterations {e(', '.join(map(str, self.requested)))}; each run shows its "
                "nearest committed snapshots (negative values count from the last).</p>"
            )
        else:
            lines.append(
                "<p>Distributions are shown at each run's first, middle and last committed snapshot.</p>"
            )
        lines.append("<h2>Runs</h2>")
        lines.append(_html_table(rep.key_numbers))
        lines.append('<p><a href="#cross">Figures across runs</a> · ' + " · ".join(
            f'<a href="#run-{e(r)}">{e(r)}</a>' for r in ids) + "</p>")  # fmt: skip
        if rep.errors:
            lines.append("<h2>Problems</h2><ul>")
            lines += [f'<li class="error">{e(m)}</li>' for m in rep.errors]
            lines.append("</ul>")
        lines.append('<h2 id="cross">Across runs</h2>')
        cross = [f for f in rep.figures if f.section == "cross"]
        lines += [_html_figure(f) for f in cross]
        notes = [n for n in rep.notes if not n.startswith("run ")]
        if notes:
            lines.append("<ul>" + "".join(f'<li class="note">{e(n)}</li>' for n in notes) + "</ul>")
        for r in ids:
            lines.append(f'<h2 id="run-{e(r)}">Run {e(r)}</h2>')
            d = data.get(r)
            lines += [f'<p class="note">{e(n)}</p>' for n in rep.notes if n.startswith(f"run {r}:")]
            if d is None:
                continue
            cfg = d.meta.config
            m = d.meta
            lines.append(
                f"<p>{e(cfg.model)} {e(str(dict(cfg.model_args)))} on {e(cfg.dataset)}: n = {m.n_examples} "
                f"examples, batch size {cfg.batch_size}, M = {m.n_minibatches} minibatches per snapshot "
                f"(remainder {m.remainder} left out), lr {cfg.lr}, seed {cfg.seed}; status {e(m.status)}, "
                f"{m.committed} of {len(m.planned_iterations)} planned snapshots committed "
                f"(iterations {d.stats['iteration'].min()}..{d.stats['iteration'].max()}). "
                f"Snapshots shown in distributions: {e(', '.join(map(str, d.chosen)))}.</p>"
            )
            lines += [_html_figure(f) for f in rep.figures if f.section == f"run:{r}"]
        lines.append("</body></html>")
        rep.index.write_text("\n".join(lines), encoding="utf-8")


def _html_table(df: pd.DataFrame | None) -> str:
    if df is None or df.empty:
        return "<p>No runs.</p>"
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            txt = _fmt(v)
            if c == "run":
                txt = f'<a href="#run-{e(txt)}">{e(txt)}</a>'
                cells.append(f"<td>{txt}</td>")
            else:
                cells.append(f"<td>{e(txt)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_figure(f: FigureEntry) -> str:
    e = html.escape
    src = e(f.path, quote=True)
    return (
        f'<figure><a href="{src}"><img src="{src}" alt="{e(f.title or f.path, quote=True)}" loading="lazy"></a>'
        f"<figcaption>{e(f.caption)}</figcaption></figure>"
    )


# ----------------------------------------------------------------------------- entry points


def build_report(
    lake: Any,
    out_dir: str | os.PathLike[str],
    *,
    runs: str | Sequence[str] | None = None,
    estimator: str = "mohammadi",
    settings: Mapping[str, Any] | None = None,
    iterations: Sequence[int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    dpi: int = 100,
    store: bool = True,
    force: bool = False,
    param: str | None = None,
    pooled: bool = True,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Write the figures and ``index.html`` of a lake's report into ``out_dir``.

    Parameters
    ----------
    lake : Lake, str or path
        An opened :class:`~sgnlake.analyze.lake.Lake`, or a lake location
        (local path or fsspec URL) to open with ``storage_options``.
    out_dir : str or path
        Output folder (created; existing files of the same names are replaced).
    runs : str or sequence of str, optional
        Run ids or glob patterns (``"fcn-*"``); default every run.
    estimator : str
        Tail-index estimator (``mohammadi``, ...), see :mod:`sgnlake.analyze.estimators`.
    settings : mapping, optional
        Estimator settings (e.g. ``{"k1": "sqrt"}``), passed to ``Lake.alpha``.
    iterations : sequence of int, optional
        Snapshots for the distribution and SGN figures (nearest committed one
        per run; negative counts from the end); default first, middle, last.
    storage_options : mapping, optional
        fsspec options when ``lake`` is a location.
    dpi : int
        Resolution of the PNGs.
    store : bool
        Store computed alpha in the lake (reused next time); read-only lakes
        fall back to computing in memory, with a note in the report.
    force : bool
        Recompute alpha even if it is stored.
    param : str, optional
        ``TENSOR:INDEX`` of the parameter whose SGN is drawn (Figs 3-5, 8-9);
        default, per run, the parameter of its largest weight tensor whose α at
        the last chosen snapshot is closest to the tensor's median (also used,
        with a note, in runs that lack the given parameter). At least one
        selected run must have it (see :func:`check_param`).
    pooled : bool
        Draw the per-parameter vs pooled figure (reads every SGN snapshot again).
    log : callable, optional
        Receives progress lines (default: print to stderr).

    Returns
    -------
    Report
        Paths of ``index.html`` and every figure, notes and errors.

    Raises
    ------
    SgnlakeError
        A one-line error for bad input (not a lake, unknown run, estimator or
        setting, bad ``param`` or ``iterations``, ``out_dir`` a file), raised
        before ``out_dir`` is created or anything is written.
    """
    from .lake import open_lake

    if log is None:

        def log(msg: str) -> None:
            print(msg, file=sys.stderr)

    # validate everything before OUT is created: a bad input leaves no trace
    settings = resolve_report_estimator(estimator, settings or {})
    chosen_param = parse_param(param)
    requested = _check_iterations(iterations)
    location = getattr(lake, "location", None)
    if isinstance(lake, str | os.PathLike):
        location = os.fspath(lake)
        lake = open_lake(location, storage_options=storage_options)
    ids = lake.select_runs(runs)
    if chosen_param is not None:
        check_param(lake, ids, chosen_param)
    runs_df = lake.runs
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    b = _Builder(
        lake, out, estimator=estimator, settings=settings, iterations=requested, dpi=dpi,
        store=store, force=force, param=chosen_param, pooled=pooled, log=log,
    )  # fmt: skip
    data = b.load(ids)
    for r in ids:
        if r in data:
            log(f"report: figures of {r}")
            b.run_figures(data[r])
    b.cross_run_figures([data[r] for r in ids if r in data], runs_df)
    b.report.key_numbers = b.key_numbers(ids, data, runs_df)
    b.write_html(ids, data, runs_df, location or str(lake))
    return b.report


def write_report(lake: Any, out_dir: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Like :func:`build_report` but return only the path of ``index.html``."""
    return build_report(lake, out_dir, **kwargs).index
