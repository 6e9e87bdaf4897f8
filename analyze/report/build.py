"""The report's entry points: check the input, then load, draw and write the page."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sgnlake.schema.errors import ConfigError

from .cache import FigureCache
from .data import COMPARE_AT, DEFAULT_COMPARE_AT, key_numbers, load_runs
from .estimator import resolve_report_estimator
from .figures import FigureBuilder
from .html import write_html
from .kinds import FIGURE_KINDS, select_figures
from .options import _check_iterations, check_param, parse_param
from .result import Report


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
    figures: Sequence[str] | None = None,
    reuse: bool = True,
    compare_at: str = DEFAULT_COMPARE_AT,
    include_sparse: bool = False,
    skip_corrupt: bool = False,
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
    figures : sequence of str, optional
        Figure kinds to draw (names, globs or paper numbers such as ``fig2``;
        see :data:`.kinds.FIGURE_KINDS`); default all.
    reuse : bool
        Reuse a figure already in ``out_dir`` whose inputs (hash in the
        ``.png.json`` beside it) did not change, instead of drawing it again.
    compare_at : {"steps", "epochs"}
        Runs of different batch size, depth or width are compared at equal SGD steps (the
        paper's Fig 2, default) or equal epochs (see :func:`.data.cross_run_tables`).
    include_sparse : bool
        Keep degenerate parameters (the ``sparse`` result) in medians and means.
    skip_corrupt : bool
        Read SGN chunks that are missing or cannot be decoded as NaN and count them
        (a note in the report), instead of stopping with an error naming the chunk.

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
    from ..lake import open_lake

    if log is None:

        def log(msg: str) -> None:
            print(msg, file=sys.stderr)

    # validate everything before OUT is created: a bad input leaves no trace
    settings = resolve_report_estimator(estimator, settings or {})
    if compare_at not in COMPARE_AT:
        raise ConfigError(f"unknown --compare-at {compare_at!r}: use one of {', '.join(COMPARE_AT)}")
    chosen_param = parse_param(param)
    kinds = select_figures(figures)
    requested = _check_iterations(iterations)
    location = getattr(lake, "location", None)
    if isinstance(lake, str | os.PathLike):
        location = os.fspath(lake)
        lake = open_lake(location, storage_options=storage_options, skip_corrupt=skip_corrupt)
    elif skip_corrupt:
        lake.skip_corrupt = True
    _check_out_outside(out_dir, location)
    ids = lake.select_runs(runs)
    if chosen_param is not None:
        check_param(lake, ids, chosen_param)
    runs_df = lake.runs
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    report = Report(index=out / "index.html", out_dir=out, skipped_runs=dict(lake.skipped_runs))
    data, stored_note = load_runs(
        lake, ids, estimator=estimator, settings=settings, requested=requested,
        store=store, force=force, notes=report.notes, log=log, include_sparse=include_sparse,
    )  # fmt: skip
    common = {
        "estimator": estimator,
        "settings": settings,
        "dpi": dpi,
        "param": chosen_param,
        "pooled": pooled,
        "skip_corrupt": skip_corrupt,
        "compare_at": compare_at,
        "include_sparse": include_sparse,
    }
    cache = FigureCache(out, common) if reuse else None
    builder = FigureBuilder(
        lake, out, report, estimator=estimator, settings=settings, dpi=dpi,
        param=chosen_param, pooled=pooled, log=log, figures=kinds, cache=cache,
        compare_at=compare_at, include_sparse=include_sparse,
    )  # fmt: skip
    for r in ids:
        if r in data:
            log(f"report: figures of {r}")
            builder.run_figures(data[r])
    builder.cross_run_figures([data[r] for r in ids if r in data], runs_df)
    if builder.not_selected:
        report.notes.append(
            f"Not drawn (--figures): {', '.join(k for k in FIGURE_KINDS if k in builder.not_selected)}."
        )
    report.reused = builder.reused
    if builder.reused:
        log(f"report: {builder.reused} figure(s) unchanged since the last report in {out}, reused")
    report.key_numbers = key_numbers(ids, data, runs_df)
    if lake.corrupt_chunks:
        keys = sorted(set(lake.corrupt_chunks))
        more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
        report.notes.append(
            f"skipped {len(keys)} missing or corrupt chunk(s), read as NaN (--skip-corrupt): {keys[0]}{more}"
        )
    write_html(
        report, ids, data, location or str(lake), estimator=estimator, settings=settings,
        requested=requested, stored_note=stored_note,
    )  # fmt: skip
    return report


def _check_out_outside(out_dir: str | os.PathLike[str], location: str | None) -> None:
    """Refuse an output folder inside (or equal to) a local lake: only sgnlake writes under a lake."""
    from sgnlake.schema.store import is_url, local_path

    if location is None or is_url(location):
        return
    lake_dir = Path(local_path(location)).resolve()
    out = Path(out_dir).resolve()
    if out == lake_dir or lake_dir in out.parents:
        raise ConfigError(
            f"--out {out_dir} is inside the lake {location}: only sgnlake writes under a lake; "
            "choose a folder outside it"
        )


def write_report(lake: Any, out_dir: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Like :func:`build_report` but return only the path of ``index.html``."""
    return build_report(lake, out_dir, **kwargs).index
