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


#: Short column headers of the run table (the full name is the header's tooltip), so the
#: table fits a 1280-px screen without horizontal scrolling.
SHORT_HEADERS = {
    "batch size": "batch",
    "parameters": "params",
    "snapshots": "snaps",
    "first iteration": "first it",
    "last iteration": "last it",
    "loss (last)": "loss",
    "accuracy (last)": "acc",
    "median α (first)": "α first",
    "median α (last)": "α last",
    "dead (no α), last": "dead",
    "α > 2, last": "α>2",
    "degenerate (sparse), last": "sparse",
    "median α 95% interval (last)": "α last 95%",
    "paper's mean α (last)": "mean α",
    "non-finite SGN samples (all snapshots)": "non-finite",
}

#: Per-run sections start open when the report has at most this many runs.
OPEN_RUNS = 2

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
.table-wrap{max-width:100%;max-height:75vh;overflow:auto;margin:0.5em 0}
table{border-collapse:collapse;font-size:0.75em}
th,td{border:1px solid #ccc;padding:2px 3px;text-align:right;white-space:nowrap}
thead th{background:#f0f0f0;position:sticky;top:0;z-index:1;white-space:normal;vertical-align:bottom}
td:first-child,th:first-child{text-align:left}
table.meta{font-size:0.85em}table.meta th{text-align:left;position:static}
.hidden{display:none}
details.run{border-top:1px solid #ddd;margin:0.4em 0}
details.run>summary{cursor:pointer;padding:0.3em 0}
details.run>summary h2{display:inline;font-size:1.25em;margin:0}
figure{margin:1.2em 0;border-top:1px solid #eee;padding-top:0.6em}
figure img{max-width:100%;height:auto}figcaption{font-size:0.9em;max-width:60em}
.note{color:#7a5b00}.error{color:#b00020}code{background:#f5f5f5}
#run-filter{font-size:1em;padding:2px 6px;width:22em}
"""

#: Vanilla JS: filter runs (table rows and sections) by a case-insensitive substring or
#: /regex/, expand/collapse the run sections, and open a section when its link is followed.
_JS = """
(function(){
  var box=document.getElementById('run-filter');
  function match(q,id){
    if(!q) return true;
    if(q.length>2&&q[0]==='/'&&q[q.length-1]==='/'){try{return new RegExp(q.slice(1,-1),'i').test(id);}catch(e){return true;}}
    return id.toLowerCase().indexOf(q.toLowerCase())>=0;
  }
  function apply(){
    var q=box.value.trim(),n=0;
    document.querySelectorAll('[data-run]').forEach(function(el){
      var ok=match(q,el.getAttribute('data-run'));
      el.classList.toggle('hidden',!ok);
      if(ok&&el.tagName==='TR') n++;
    });
    document.getElementById('run-count').textContent=n;
  }
  box.addEventListener('input',apply);
  function all(open){document.querySelectorAll('details.run').forEach(function(d){d.open=open;});}
  document.getElementById('expand-all').addEventListener('click',function(){all(true);});
  document.getElementById('collapse-all').addEventListener('click',function(){all(false);});
  function openHash(){
    var el=location.hash&&document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if(el&&el.tagName==='DETAILS') el.open=true;
  }
  window.addEventListener('hashchange',openHash);openHash();apply();
})();
"""


def model_text(model: str, args: Mapping[str, Any]) -> str:
    """A model and its arguments for a caption: ``lenet (default args)``, ``fcn (depth=3, width=32)``."""
    if not args:
        return f"{model} (default args)"
    return f"{model} ({', '.join(f'{k}={v}' for k, v in args.items())})"


def _settings_cell(settings: Any) -> str:
    if isinstance(settings, Mapping):
        return ", ".join(f"{k} = {v}" for k, v in settings.items()) or "none"
    return _fmt(settings)


def _meta_table(stored: Mapping[str, Any]) -> str:
    """The stored result's metadata as a small two-column table (no raw dict)."""
    e = html.escape
    rows = []
    for k in ("estimator", "settings", "key", "source", "created"):
        if k in stored:
            v = _settings_cell(stored[k]) if k == "settings" else _fmt(stored[k])
            rows.append(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>")
    if not rows:
        return ""
    return f'<table class="meta"><caption>Result metadata</caption>{"".join(rows)}</table>'


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

    Cross-run figures come first, then each run of ``ids`` in a collapsible
    section with its configuration line and figures; a text box filters the
    runs (table rows and sections). Links are relative to the report folder;
    the page needs no network.
    """
    e = html.escape
    est = _settings_text(estimator, settings)
    stored = next((d.alpha.attrs for d in data.values() if d.alpha.attrs), {})
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sgnlake report: {e(str(location))}</title>",
        f"<style>{_CSS}</style></head><body>",
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
        lines.append(_meta_table(stored))
    if stored_note:
        lines.append(f'<p class="note">{e(stored_note)}</p>')
    if rep.reused:
        lines.append(
            f"<p>{rep.reused} figure(s) were reused from the previous report in this folder: their inputs "
            "(hash beside each PNG) did not change.</p>"
        )
    if requested:
        lines.append(
            f"<p>Requested iterations {e(', '.join(map(str, requested)))}; each run shows its "
            "nearest committed snapshots (negative values count from the last).</p>"
        )
    else:
        lines.append(
            "<p>Distributions are shown at each run's first, middle and last committed snapshot.</p>"
        )
    lines.append('<h2 id="runs">Runs</h2>')
    lines.append(
        '<p><label>Filter runs: <input id="run-filter" type="search" '
        'placeholder="part of a run id, or /regex/"></label> '
        f'<span id="run-count">{len(ids)}</span> shown · '
        '<button type="button" id="expand-all">expand all</button> '
        '<button type="button" id="collapse-all">collapse all</button></p>'
    )
    lines.append(_html_table(rep.key_numbers))
    lines.append('<p><a href="#cross">Figures across runs</a> · ' + " · ".join(
        f'<a href="#run-{e(r)}" data-run="{e(r)}">{e(r)}</a>' for r in ids) + "</p>")  # fmt: skip
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
    is_open = " open" if len(ids) <= OPEN_RUNS else ""
    for r in ids:
        lines.append(
            f'<details class="run" id="run-{e(r)}" data-run="{e(r)}"{is_open}>'
            f"<summary><h2>Run {e(r)}</h2></summary>"
        )
        d = data.get(r)
        lines += [f'<p class="note">{e(n)}</p>' for n in rep.notes if n.startswith(f"run {r}:")]
        if d is not None:
            cfg = d.meta.config
            m = d.meta
            lines.append(
                f"<p>{e(model_text(cfg.model, dict(cfg.model_args)))} on {e(cfg.dataset)}: "
                f"n = {m.n_examples} examples, batch size {cfg.batch_size}, M = {m.n_minibatches} minibatches "
                f"per snapshot (remainder {m.remainder} left out), lr {cfg.lr}, seed {cfg.seed}; status "
                f"{e(m.status)}, {m.committed} of {len(m.planned_iterations)} planned snapshots committed "
                f"(iterations {d.stats['iteration'].min()}..{d.stats['iteration'].max()}). "
                f"Snapshots shown in distributions: {e(', '.join(map(str, d.chosen)))}.</p>"
            )
            lines += [_html_figure(f) for f in rep.figures if f.section == f"run:{r}"]
        lines.append("</details>")
    lines.append(f"<script>{_JS}</script>")
    lines.append("</body></html>")
    rep.index.write_text("\n".join(lines), encoding="utf-8")


def _html_table(df: pd.DataFrame | None) -> str:
    """The run table; with several runs, columns equal in every run are one line above it."""
    if df is None or df.empty:
        return "<p>No runs.</p>"
    e = html.escape
    common = ""
    if len(df) > 1:
        same = [c for c in df.columns if c != "run" and df[c].map(_fmt).nunique() == 1]
        if same:
            common = (
                "<p>All runs: "
                + " · ".join(f"{e(str(c))} <b>{e(_fmt(df[c].iloc[0]))}</b>" for c in same)
                + "</p>"
            )
            df = df.drop(columns=same)
    head = "".join(
        f'<th title="{e(str(c), quote=True)}">{e(SHORT_HEADERS.get(str(c), str(c)))}</th>' for c in df.columns
    )
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
        body.append(f'<tr data-run="{e(str(row["run"]))}">' + "".join(cells) + "</tr>")
    return common + (
        f'<div class="table-wrap"><table id="run-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _html_figure(f: FigureEntry) -> str:
    e = html.escape
    src = e(f.path, quote=True)
    return (
        f'<figure><a href="{src}"><img src="{src}" alt="{e(f.title or f.path, quote=True)}" loading="lazy"></a>'
        f"<figcaption>{e(f.caption)}</figcaption></figure>"
    )
