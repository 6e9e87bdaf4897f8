"""Regeneration of a report: skip figures whose inputs did not change.

Beside every PNG the report writes ``<name>.png.json``: the content hash of the
figure's inputs (the run's alpha and summaries, its metadata, the estimator
settings, dpi, --param, the figure code's version), its caption and the notes
drawing it gave. A later report into the same folder with the same hash reuses
the PNG and its caption instead of drawing (and reading SGN) again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .result import FigureEntry

#: Bump when what a figure draws or says changes without its inputs changing.
FIGURES_VERSION = 3
SIDECAR = ".json"


def _digest(h: Any, obj: Any) -> None:
    """Feed ``obj`` (arrays, tables, plain values) into the hash ``h``."""
    if isinstance(obj, np.ndarray):
        h.update(str((obj.dtype.str, obj.shape)).encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, pd.DataFrame | pd.Series):
        h.update(obj.to_json(orient="split", date_format="iso", default_handler=str).encode())
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for x in obj:
            _digest(h, x)
        h.update(b"]")
    else:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())


def inputs_hash(*parts: Any) -> str:
    """sha256 of the parts (numpy arrays, pandas tables, JSON-able values), hex."""
    h = hashlib.sha256()
    _digest(h, [FIGURES_VERSION, *parts])
    return h.hexdigest()


def run_inputs(d: Any) -> str:
    """Hash of what the figures of one run are drawn from (:class:`.data._RunData`)."""
    return inputs_hash(
        d.run,
        d.meta.to_dict(),
        np.asarray(d.alpha.values),
        np.asarray(d.alpha["iteration"].values),
        d.stats,
        d.by_module,
        d.by_tensor,
        d.tensors.astype(str),
        list(d.chosen),
        None if getattr(d, "sparse", None) is None else np.asarray(d.sparse.values),
    )


class FigureCache:
    """The sidecars of the PNGs in a report folder, by figure job.

    Parameters
    ----------
    out_dir : Path
        The report folder (read for existing sidecars).
    common : mapping
        Inputs shared by every figure (estimator, settings, dpi, param, ...).
    """

    def __init__(self, out_dir: Path, common: Mapping[str, Any]) -> None:
        self.out = out_dir
        self.common = inputs_hash(dict(common))
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        for side in out_dir.rglob(f"*.png{SIDECAR}"):
            try:
                rec = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and "job" in rec:
                self.jobs.setdefault(rec["job"], []).append(rec)

    def key(self, job: str, inputs: str) -> str:
        """The hash a job's figures must carry to be reused."""
        return inputs_hash(self.common, job, inputs)

    def lookup(self, job: str, key: str) -> tuple[list[FigureEntry], list[str]] | None:
        """The figures (and notes) of ``job`` stored with hash ``key``, if all their PNGs are there."""
        recs = self.jobs.get(job)
        if not recs or any(r.get("inputs") != key for r in recs):
            return None
        if not all((self.out / r["path"]).is_file() for r in recs):
            return None
        recs = sorted(recs, key=lambda r: r.get("order", 0))
        entries = [FigureEntry(r["path"], r["caption"], r["section"], r.get("title", "")) for r in recs]
        return entries, list(recs[0].get("notes", []))

    def record(self, job: str, key: str, entries: Iterable[FigureEntry], notes: list[str]) -> None:
        """Write the sidecar of each PNG ``job`` just drew."""
        recs = []
        for i, f in enumerate(entries):
            rec = {"job": job, "inputs": key, "order": i, "notes": notes, **asdict(f)}
            (self.out / f"{f.path}{SIDECAR}").write_text(json.dumps(rec, indent=1), encoding="utf-8")
            recs.append(rec)
        self.jobs[job] = recs
