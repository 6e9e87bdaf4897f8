"""The report page: ``index.html`` with the run table, notes, errors and each figure with its caption."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .data import _RunData
from .estimator import _settings_text
from .result import FigureEntry, Report


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


def write_html(
    rep: Report,
    ids: list[str],
    data: dict[str, _RunData],
    location: str,
    *,
    estimator: str,
    settings: Mapping[str, Any],
    requested: Sequence[int] | None,
    stored_note: str,
) -> None:
    """Write ``rep.index``: the run table (``rep.key_numbers``), notes, errors and every figure with its caption.

    Cross-run figures come first, then each run of ``ids`` with its
    configuration line and figures; links are relative to the report folder.
    """
    e = html.escape
    est = _settings_text(estimator, settings)
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
    if stored_note:
        lines.append(f'<p class="note">{e(stored_note)}</p>')
    if requested:
        lines.append(
            f"<p>Requested iterations {e(', '.join(map(str, requested)))}; each run shows its "
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
