"""What :func:`~sgnlake.analyze.report.build_report` wrote: the figures with their captions, notes, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


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
    reused : int
        Figures reused from an earlier report in the same folder (inputs unchanged).
    skipped_runs : dict
        Runs left out because their metadata is damaged (``{run id: one line}``).
    """

    index: Path
    out_dir: Path
    figures: list[FigureEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    key_numbers: pd.DataFrame | None = None
    reused: int = 0
    skipped_runs: dict[str, str] = field(default_factory=dict)
