"""The HTML report of a lake: figures (PNG) and a self-contained ``index.html``.

This is the only part of the figure layer that talks to a
:class:`~sgnlake.analyze.lake.Lake`: it reads alpha (stored results are reused,
missing ones are computed), loss/accuracy snapshots and a few SGN samples, turns
them into labelled tables and hands those to :mod:`sgnlake.analyze.plots`.

Layout of the output folder::

    OUT/index.html                 run table, key numbers, every figure with a caption
    OUT/fig02_batch_size_*.png     figures across runs (drawn only when runs vary that axis)
    OUT/runs/<run_id>/*.png        figures of one run

Links in ``index.html`` are relative, so the folder can be moved, zipped or
opened straight from disk (no server).

Modules, by concern: :mod:`.options` (``--iterations``, ``--param``), :mod:`.kinds` (``--figures``),
:mod:`.cache` (figures reused when their inputs did not change),
:mod:`.estimator` (everything decided by the estimator's name), :mod:`.data`
(what is read from the lake and computed: run data, pooled values, stable fits,
groups of runs), :mod:`.figures` (each figure with its caption), :mod:`.html`
(``index.html``), :mod:`.result` (what was written) and :mod:`.build` (the entry
points). Title wrapping lives with the plots (:func:`sgnlake.analyze.plots.fit_titles`).
"""

from __future__ import annotations

from ..plots import fit_titles
from .build import build_report, write_report
from .data import CONTEXT_COLUMNS, POOLED_MAX_VALUES, key_numbers, load_runs
from .data import _varying_contexts as _varying_contexts  # re-exported (tests)
from .estimator import resolve_report_estimator
from .figures import MAX_CONTEXT_FIGURES, FigureBuilder
from .html import write_html
from .kinds import FIGURE_KINDS, select_figures
from .options import check_param, parse_iterations, parse_param, pick_iterations
from .result import FigureEntry, Report

__all__ = [
    "CONTEXT_COLUMNS",
    "FIGURE_KINDS",
    "MAX_CONTEXT_FIGURES",
    "POOLED_MAX_VALUES",
    "FigureBuilder",
    "FigureEntry",
    "Report",
    "build_report",
    "check_param",
    "fit_titles",
    "key_numbers",
    "load_runs",
    "parse_iterations",
    "parse_param",
    "pick_iterations",
    "resolve_report_estimator",
    "select_figures",
    "write_html",
    "write_report",
]
