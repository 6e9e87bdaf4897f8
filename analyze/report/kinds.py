"""The report's figure kinds: the names ``--figures`` selects (exact names or globs).

Kept free of heavy imports: the CLI builds its help text from :data:`FIGURE_KINDS`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from sgnlake.schema.errors import ConfigError

#: Figure kind -> (what it shows, the paper's figure numbers it also answers to).
FIGURE_KINDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "alpha": ("α over iterations, one run (Fig 1)", (1,)),
    "layers": ("median α per layer over iterations (Figs 13-15)", (13, 14, 15)),
    "alpha-hist": ("α distribution over parameters (Figs 10-12)", (10, 11, 12)),
    "alpha-hist-layers": ("α distribution per layer (Fig 16)", (16,)),
    "alpha-map": ("α maps laid out like the weights", ()),
    "sgn": ("one parameter's SGN against Gaussian and stable fits (Figs 3-5, 8-9)", (3, 4, 5, 8, 9)),
    "pooled": ("per-parameter vs pooled α (reads all SGN)", ()),
    "batch-size": ("α over iterations per batch size, across runs (Fig 2)", (2,)),
    "alpha-vs-batch-size": ("α at the last snapshot against batch size, across runs", ()),
    "depth-width": ("α against depth and width, across runs (Figs 6-7)", (6, 7)),
}


def _aliases(kind: str) -> list[str]:
    return [kind, *(f"fig{n}" for n in FIGURE_KINDS[kind][1])]


def select_figures(patterns: Iterable[str] | None) -> frozenset[str] | None:
    """The figure kinds that ``patterns`` select (``None``: all).

    A pattern is a kind name, a glob of names (``alpha*``) or a paper figure
    number (``fig2``, ``fig02``). A pattern that selects nothing is a
    :class:`ConfigError` naming the kinds.
    """
    if patterns is None:
        return None
    chosen: set[str] = set()
    for raw in patterns:
        pat = re.sub(r"^fig0*(\d)", r"fig\1", raw.strip().lower())
        hit = {k for k in FIGURE_KINDS if any(fnmatch.fnmatchcase(a, pat) for a in _aliases(k))}
        if not hit:
            raise ConfigError(
                f"--figures {raw!r} matches no figure kind: use one of {', '.join(FIGURE_KINDS)} "
                "(globs and paper numbers like fig2 work too)"
            )
        chosen |= hit
    return frozenset(chosen)


def kinds_help() -> str:
    """The kinds as ``name, name, ...`` for a help text."""
    return ", ".join(FIGURE_KINDS)
