"""Titles that fit their figure: long axes titles and suptitles wrapped onto more lines."""

from __future__ import annotations

import textwrap
from typing import Any


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
        A figure with constrained layout (:func:`~sgnlake.analyze.plots.new_figure`).

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
