"""The report's figures, each written as PNG with its caption.

:class:`FigureBuilder` draws the figures of one run (Figs 1, 3-5, 8-16, alpha
maps, per-parameter vs pooled) and those across runs (Fig 2, alpha against
batch size, Figs 6-7) from the tables of :mod:`.data` with the functions of
:mod:`sgnlake.analyze.plots`. A figure that fails is listed in the report's
errors; it never takes the report down.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import plots
from .cache import FigureCache, inputs_hash, run_inputs
from .data import (
    DEFAULT_COMPARE_AT,
    _RunData,
    _stable_fit,
    _varying_contexts,
    chosen_param,
    cross_run_tables,
    param_sgn,
    pooled_values,
)
from .estimator import _settings_text, pooled_supported
from .html import _fmt
from .result import FigureEntry, Report

#: At most this many figures per cross-run kind (one per context); the rest are listed.
MAX_CONTEXT_FIGURES = 6


class FigureBuilder:
    """Draws and saves the report's figures into ``out_dir``, recording each in ``report``.

    Parameters
    ----------
    lake : Lake
        Read for the SGN figures (one parameter) and the pooled figure (all SGN).
    out_dir : Path
        The report folder.
    report : Report
        Receives every figure written (:attr:`Report.figures`), the figures not
        drawn and why (:attr:`Report.notes`) and the failures (:attr:`Report.errors`).
    estimator : str
    settings : mapping
        Resolved estimator settings (:func:`.estimator.resolve_report_estimator`).
    dpi : int
    param : (str, int), optional
        ``--param`` (tensor, flat index).
    pooled : bool
        Draw the per-parameter vs pooled figure.
    log : callable
        Receives progress and warning lines.
    compare_at : {"steps", "epochs"}
        Where runs of different batch size, depth or width are compared (see
        :func:`.data.cross_run_tables`).
    include_sparse : bool
        Whether the summaries kept degenerate parameters (said in the captions).
    """

    def __init__(
        self,
        lake: Any,
        out_dir: Path,
        report: Report,
        *,
        estimator: str,
        settings: Mapping[str, Any],
        dpi: int,
        param: tuple[str, int] | None,
        pooled: bool,
        log: Callable[[str], None],
        figures: frozenset[str] | None = None,
        cache: FigureCache | None = None,
        compare_at: str = DEFAULT_COMPARE_AT,
        include_sparse: bool = False,
    ) -> None:
        self.lake = lake
        self.out = out_dir
        self.report = report
        self.estimator = estimator
        self.settings = dict(settings)
        self.dpi = dpi
        self.param = param
        self.pooled = pooled
        self.log = log
        self.figures = figures  # figure kinds to draw (--figures); None: all
        self.cache = cache  # reuse figures whose inputs did not change
        self.not_selected: set[str] = set()  # kinds left out by --figures
        self.reused = 0  # figures reused from an earlier report
        self._inputs: dict[str, str] = {}
        self.compare_at = compare_at
        self.include_sparse = include_sparse

    def _save(self, fig, rel: str, caption: str, section: str, title: str = "") -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        plots.fit_titles(fig)
        plots.save_figure(fig, path, dpi=self.dpi)
        self.report.figures.append(FigureEntry(rel, caption, section, title))

    def _run_inputs(self, d: _RunData) -> str:
        if d.run not in self._inputs:
            self._inputs[d.run] = run_inputs(d)
        return self._inputs[d.run]

    def _try(self, what: str, fn: Callable[[], None], kind: str | None = None, inputs: str = "") -> None:
        """Draw job ``what`` (figure kind ``kind``) unless --figures leaves it out or its PNGs
        are up to date (same ``inputs`` hash in their sidecars)."""
        if kind is not None and self.figures is not None and kind not in self.figures:
            self.not_selected.add(kind)
            return
        key = self.cache.key(what, inputs) if self.cache is not None and kind is not None else None
        if key is not None:
            hit = self.cache.lookup(what, key)
            if hit is not None:
                entries, notes = hit
                self.report.figures.extend(entries)
                self.report.notes.extend(n for n in notes if n not in self.report.notes)
                self.reused += len(entries)
                return
        n_fig, n_notes = len(self.report.figures), len(self.report.notes)
        try:
            fn()
        except Exception as e:  # a figure must not take the whole report down; it is reported
            msg = f"{what}: {type(e).__name__}: {e}"
            self.report.errors.append(msg)
            self.log(f"warning: figure failed, {msg}")
            if os.environ.get("SGNLAKE_DEBUG"):
                traceback.print_exc()
            return
        if key is not None:
            self.cache.record(what, key, self.report.figures[n_fig:], self.report.notes[n_notes:])

    # -------------------------------------------------------------- per-run figures

    def run_figures(self, d: _RunData) -> None:
        sec = f"run:{d.run}"
        base = f"runs/{d.run}"
        m = d.meta.n_minibatches
        b = d.meta.config.batch_size
        est = _settings_text(self.estimator, self.settings)
        common = f"Estimator {est}; M = {m} SGN samples (minibatches of b = {b}) per parameter and snapshot."
        if m < 100:
            common += " Warning: M < 100, single estimates are noisy."
        sparse_txt = plots.degenerate_caption(self.include_sparse)
        sp = {} if d.sparse is None else {"include_sparse": self.include_sparse}

        def sparse_at(t: int) -> np.ndarray | None:
            return None if d.sparse is None else d.sparse.sel(iteration=t).values

        def fig1() -> None:
            fig, ax = plots.new_figure()
            plots.plot_alpha_over_iterations(ax, d.stats, title=f"{d.run}: α over iterations (Fig 1)", m=m)
            self._save(
                fig, f"{base}/fig01_alpha.png",
                f"Paper Fig 1. Median (solid, with interquartile band and the 95% interval of the median "
                f"over parameters as error bars) and 1/mean(1/α) (dashed) of the "
                f"per-parameter tail index over all {int(d.stats['n_params'].max())} parameters of run {d.run} "
                f"at each of its {len(d.stats)} committed snapshots. 1/α is the nearly unbiased quantity of "
                f"the estimator; the plain mean of α is not drawn, it is dominated (or made infinite) by the "
                f"few estimates far above 2 that small samples give. Parameters without an estimate (zero or "
                f"constant SGN, e.g. dead ReLU units) are counted in the note and left out. {sparse_txt} "
                f"The paper's own statistic (the mean of α with negative estimates included) is the "
                f"summary's paper_mean column. {common}",
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

        def histogram_panels(draw: Callable[..., Any]) -> Any:
            """One panel per chosen iteration, ``draw(ax, values, title=, bins=, sparse=)``, shared bins."""
            n = len(d.chosen)
            fig, axes = plots.new_figure(1, n, size=(4.6 * n, 3.8), squeeze=False)
            vals = [d.alpha.sel(iteration=t).values for t in d.chosen]
            edges = plots.histogram_edges(np.concatenate(vals))
            for ax, t, v in zip(axes[0], d.chosen, vals, strict=True):
                draw(ax, v, title=f"{d.run}, iteration {t}", bins=edges, sparse=sparse_at(t), **sp)
            return fig

        def fig10() -> None:
            fig = histogram_panels(plots.plot_alpha_histogram)
            grey = (
                " Kept degenerate parameters are stacked in grey: they make the spike at α ≈ 1."
                if self.include_sparse and d.sparse is not None
                else ""
            )
            self._save(
                fig, f"{base}/fig10_alpha_hist.png",
                f"Paper Figs 10-12. Distribution of the per-parameter α over all parameters of run {d.run} "
                f"at iterations {', '.join(map(str, d.chosen))} (shared bins; dashed line: median; dotted: "
                f"α = 2, the Gaussian). Dead parameters (no estimate) and values outside the bins are counted "
                f"in the notes. {sparse_txt if d.sparse is not None else ''}{grey} {common}",
                sec, "α distribution over parameters",
            )  # fmt: skip

        def fig16() -> None:
            groups = d.alpha["module"].values
            fig = histogram_panels(
                lambda ax, v, **kw: plots.plot_alpha_histograms_by_group(ax, v, groups, **kw)
            )
            self._save(
                fig, f"{base}/fig16_alpha_hist_layers.png",
                f"Paper Fig 16. Distribution of α per layer (density within each layer) at iterations "
                f"{', '.join(map(str, d.chosen))}, run {d.run}. "
                f"{sparse_txt if d.sparse is not None else ''} {common}",
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
                sel = d.alpha["tensor"].values == name
                plots.plot_alpha_map(
                    ax, a_t.values[sel], tab.loc[name, "shape"], title=f"{name} @ iteration {t_last}",
                    index=d.alpha["index"].values[sel],
                )  # fmt: skip
            for ax in axes.ravel()[len(names) :]:
                ax.set_visible(False)
            self._save(
                fig, f"{base}/alpha_map.png",
                f"Per-parameter α of each weight tensor of run {d.run} at iteration {t_last}, laid out like "
                f"the weight: rows are output units, columns input units; conv weights as a grid of "
                f"filters (output channel × input channel blocks of kernel pixels). Colour scale fixed to "
                f"1..2 (values beyond saturate), grey = no estimate. Degenerate parameters show as dark (α ≈ 1) "
                f"columns and rows: in a first layer the weights of pixels that are zero in most minibatches "
                f"(near the image border, repeating every image row along the flat input index), deeper the "
                f"weights of rarely active units; their count is in the run table. {common}",
                sec, "α maps",
            )  # fmt: skip

        inputs = self._run_inputs(d)
        self._try(f"{d.run} fig 1", fig1, "alpha", inputs)
        self._try(f"{d.run} figs 13-15", fig13, "layers", inputs)
        self._try(f"{d.run} figs 10-12", fig10, "alpha-hist", inputs)
        self._try(f"{d.run} fig 16", fig16, "alpha-hist-layers", inputs)
        self._try(f"{d.run} alpha map", alphamap, "alpha-map", inputs)
        self._try(f"{d.run} SGN figures", lambda: self.sgn_figures(d, common), "sgn", inputs)
        if self.pooled and pooled_supported(self.estimator):
            self._try(f"{d.run} pooled", lambda: self.pooled_figure(d, common), "pooled", inputs)
        elif self.pooled:
            self.report.notes.append(
                f"run {d.run}: the per-parameter vs pooled figure is drawn for the mohammadi estimator only "
                f"(the pooled estimate is Mohammadi's), not for {self.estimator}."
            )

    def sgn_figures(self, d: _RunData, common: str) -> None:
        name, idx, how = chosen_param(d, self.param, self.report.notes, lake=self.lake)
        sec = f"run:{d.run}"
        base = f"runs/{d.run}"
        x, a_par = param_sgn(self.lake, d, name, idx)  # (iteration, minibatch), alpha per iteration
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
        fig, axes = plots.new_figure(1, 3, size=(16.0, 4.0))
        plots.plot_sgn_stable_fit(axes[0], xl, fit, title=f"{name}[{idx}] @ t={t_last} (Fig 8)")
        plots.plot_sgn_stable_fit(
            axes[1], xl, fit, title=f"{name}[{idx}] @ t={t_last}, log (Fig 9)", log=True
        )
        plots.plot_sgn_stable_qq(axes[2], xl, fit, title=f"{name}[{idx}] @ t={t_last}: QQ vs fitted α-stable")
        boundary = (
            " The fit lies on the boundary of McCulloch's tables (α at 0.5 or 2, or |β| = 1): it is clipped "
            "there, not located, so read it as 'outside the stable range', not as an estimate."
            if plots.stable_fit_at_boundary(fit)
            else ""
        )
        self._save(
            fig, f"{base}/fig08_sgn_stable.png",
            f"Paper Figs 8-9. The same parameter's SGN at iteration {t_last} against the α-stable density "
            f"fitted by McCulloch's quantile method (scipy levy_stable, S1 parameterisation: α={fit[0]:.2f}, "
            f"β={fit[1]:.2f}, scale={fit[2]:.3g}, loc={fit[3]:.3g}) and the fitted Gaussian; linear (left) and "
            f"log (centre) density, and the QQ-plot of the SGN against the fitted α-stable law (right, 25 "
            f"quantiles).{boundary} {common}",
            sec, "SGN against α-stable and Gaussian fits",
        )  # fmt: skip

    def pooled_figure(self, d: _RunData, common: str) -> None:
        sec, base = f"run:{d.run}", f"runs/{d.run}"
        pooled, subsampled = pooled_values(self.lake, d, self.settings)
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
        df, long = cross_run_tables(data, runs_df, self.compare_at)
        xcol = "epoch" if self.compare_at == "epochs" else "iteration"
        at_txt = (
            f"Runs are compared at equal {'epochs (SGD steps / M)' if xcol == 'epoch' else 'SGD steps'} "
            f"(--compare-at {self.compare_at}; the paper's Fig 2 uses steps): each run's snapshot nearest to "
            f"the furthest {'epoch' if xcol == 'epoch' else 'step'} all of them reached "
            f"(iterations {', '.join(sorted({str(v) for v in df['last_iteration']}))})."
        )
        inputs = inputs_hash([self._run_inputs(d) for d in data], runs_df.astype(str))

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
                plots.plot_alpha_lines(
                    ax, table, hue="batch_size", x=xcol, y="median", hue_label="batch size",
                    xlabel="epoch (SGD steps / M)" if xcol == "epoch" else None,
                    title=f"median α over {'epochs' if xcol == 'epoch' else 'iterations'} per batch size: {label}"
                    f" ({_m_text(sub)})",
                )  # fmt: skip
                sizes = sorted(sub["batch_size"].unique())
                self._save(
                    fig, f"fig02_batch_size_{k + 1}.png",
                    f"Paper Fig 2. Median per-parameter α over "
                    f"{'epochs (SGD steps / M)' if xcol == 'epoch' else 'iterations (SGD steps, as the paper)'}"
                    f", one line per batch size "
                    f"({', '.join(map(str, sizes))}), for runs of {label} ({len(sub)} runs; runs with the same "
                    f"batch size, e.g. seeds, are averaged with ± one standard deviation; a single run carries "
                    f"the 95% interval of its median). Estimator {est}; "
                    f"M differs with the batch size (M = floor(n / b)): {_m_text(sub)}. "
                    f"{plots.degenerate_caption(self.include_sparse)} --compare-at {self.compare_at}.",
                    sec, f"α per batch size: {label}",
                )  # fmt: skip

            self._try(f"fig 2 ({label})", fig2, "batch-size", inputs)
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
                    title=f"median α at equal {self.compare_at} against batch size",
                )  # fmt: skip
                self._save(
                    fig, "alpha_vs_batch_size.png",
                    f"Median per-parameter α against batch size, one line per model configuration. "
                    f"{at_txt} Estimator {est}.",
                    sec, "α against batch size",
                )  # fmt: skip

            self._try("alpha vs batch size", figb, "alpha-vs-batch-size", inputs)
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
                        title=f"median α against {x}, lines per {other}: {label} ({_m_text(sub)})",
                    )  # fmt: skip
                self._save(
                    fig, f"fig06_depth_width_{k + 1}.png",
                    f"Paper Figs 6-7. Median per-parameter α ({at_txt}) against "
                    + " and ".join(f"{a} (lines per {'width' if a == 'depth' else 'depth'})" for a in panels)
                    + f", runs of {label} ({len(sub)} runs; {_m_text(sub)}; seeds averaged, ± one standard "
                    f"deviation; a single run carries the 95% interval of its median). Estimator {est}. "
                    f"{plots.degenerate_caption(self.include_sparse)}",
                    sec, f"α against depth/width: {label}",
                )  # fmt: skip

            self._try(f"figs 6-7 ({label})", fig6, "depth-width", inputs)
        self._omitted("Figs 6-7", groups)

    def _omitted(self, what: str, groups: list) -> None:
        if len(groups) > MAX_CONTEXT_FIGURES:
            rest = ", ".join(label for label, _ in groups[MAX_CONTEXT_FIGURES:])
            self.report.notes.append(
                f"{what}: only the {MAX_CONTEXT_FIGURES} largest groups are drawn; not drawn: {rest} "
                "(select them with --runs)"
            )


def _m_text(runs: pd.DataFrame) -> str:
    """``M = 100`` for runs of one M, else ``M = 100/50/25 for b = 50/100/200``."""
    if "n_minibatches" not in runs.columns:
        return "M unknown"
    pairs = sorted(
        {
            (int(b), int(m))
            for b, m in zip(runs["batch_size"], runs["n_minibatches"], strict=True)
            if pd.notna(m) and pd.notna(b)
        }
    )
    ms = sorted({m for _, m in pairs}, reverse=True)
    if len(ms) == 1:
        return f"M = {ms[0]}"
    return f"M = {'/'.join(str(m) for _, m in pairs)} for b = {'/'.join(str(b) for b, _ in pairs)}"
