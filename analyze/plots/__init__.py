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
to write it as PNG. :func:`fit_titles` wraps titles wider than their axes.

Modules: :mod:`.style` (labels, line styles, Agg figures, colours),
:mod:`.titles` (title wrapping), :mod:`.stats` (alpha statistics per
iteration), :mod:`.alpha_lines` (Figs 1, 2, 6-7, 13-15, pooled),
:mod:`.distributions` (Figs 10-12, 16), :mod:`.maps` (alpha maps) and
:mod:`.sgn` (Figs 3-5, 8-9). Every public name is importable from here.
"""

from __future__ import annotations

from ..aggregate import STATS_COLUMNS, alpha_stats  # the one aggregate, re-exported
from .alpha_lines import (
    STAT_LABELS,
    plot_alpha_by_batch_size,
    plot_alpha_by_layer,
    plot_alpha_lines,
    plot_alpha_over_iterations,
    plot_alpha_vs_config,
    plot_param_vs_pooled,
)
from .distributions import (
    degenerate_caption,
    histogram_edges,
    plot_alpha_histogram,
    plot_alpha_histograms_by_group,
)
from .maps import alpha_map_image, plot_alpha_map
from .sgn import (
    _sgn_edges as _sgn_edges,  # re-exported (tests)
)
from .sgn import (
    gaussian_fit,
    plot_sgn_gaussian_panels,
    plot_sgn_histogram,
    plot_sgn_log_density,
    plot_sgn_qq,
    plot_sgn_stable_fit,
    plot_sgn_stable_qq,
    stable_fit_at_boundary,
)
from .style import (
    ALPHA_AXIS_CAP,
    ALPHA_LABEL,
    DENSITY_LABEL,
    ITERATION_LABEL,
    SGN_LABEL,
    new_figure,
    save_figure,
)
from .titles import fit_titles

__all__ = [
    "ALPHA_AXIS_CAP",
    "ALPHA_LABEL",
    "DENSITY_LABEL",
    "ITERATION_LABEL",
    "SGN_LABEL",
    "STATS_COLUMNS",
    "STAT_LABELS",
    "alpha_map_image",
    "alpha_stats",
    "degenerate_caption",
    "fit_titles",
    "gaussian_fit",
    "histogram_edges",
    "new_figure",
    "plot_alpha_by_batch_size",
    "plot_alpha_by_layer",
    "plot_alpha_histogram",
    "plot_alpha_histograms_by_group",
    "plot_alpha_lines",
    "plot_alpha_map",
    "plot_alpha_over_iterations",
    "plot_alpha_vs_config",
    "plot_param_vs_pooled",
    "plot_sgn_gaussian_panels",
    "plot_sgn_histogram",
    "plot_sgn_log_density",
    "plot_sgn_qq",
    "plot_sgn_stable_fit",
    "plot_sgn_stable_qq",
    "stable_fit_at_boundary",
    "save_figure",
]
