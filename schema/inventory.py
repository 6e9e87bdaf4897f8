"""The table of runs in a lake (``sgnlake ls``); reads metadata and store sizes only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .lake import open_lake_group, read_run_meta, run_damage, scan_runs
from .meta import RunMeta
from .names import run_path
from .run_table import run_row as table_row
from .run_table import sort_runs
from .store import stored_bytes

#: Bytes per value of the computed (uncompressed) SGN, grad and weight: float32.
RAW_ITEMSIZE = 4


def raw_bytes(meta: RunMeta, snapshots: int | None = None) -> int:
    """Uncompressed float32 bytes of SGN + grad + weight of ``snapshots`` (default: committed) snapshots."""
    n = meta.committed if snapshots is None else snapshots
    per = sum((meta.n_minibatches + 2) * t.n_stored for t in meta.tensors)
    return n * per * RAW_ITEMSIZE


def run_row(meta: RunMeta, stored: int) -> dict[str, Any]:
    """One ``ls`` row (JSON-ready): the run-table row with nested ``model_args`` and
    ``storage``, plus ``stored_bytes``, ``uncompressed_bytes`` and ``ratio``."""
    raw = raw_bytes(meta)
    return {
        **table_row(meta, nested=True),
        "stored_bytes": stored,
        "uncompressed_bytes": raw,
        "ratio": (raw / stored) if stored and raw else None,
    }


def list_runs(
    location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Describe every run of a lake.

    Returns
    -------
    list of dict
        One row per run (sorted by config, then id; damaged runs last): ``run_id``, ``model``, ``dataset``,
        ``batch_size``, ``committed``, ``planned``, ``status``, ``stored_bytes``
        (all keys under ``runs/<run_id>/`` in the store), ``uncompressed_bytes``
        (float32 SGN + grad + weight of the committed snapshots), ``ratio``
        (uncompressed / stored) and more. A run whose metadata is damaged gets a row
        with ``status`` ``damaged`` and ``damage`` (one line naming the run and file);
        the other runs are listed as usual.

    Raises
    ------
    NotALakeError, SchemaVersionError
        ``location`` is not a lake this sgnlake can read.
    """
    root = open_lake_group(os.fspath(location), mode="r", storage_options=storage_options)
    rows = []
    ok, damaged = scan_runs(root)
    metas = {}
    for rid in ok:
        group = root[run_path(rid)]
        meta = read_run_meta(group)
        damage = run_damage(group, meta)
        if damage is not None:
            damaged[rid] = damage
            continue
        metas[rid] = meta
        rows.append(run_row(meta, stored_bytes(root.store, run_path(rid))))
    rows += [damaged_row(rid, msg) for rid, msg in damaged.items()]
    # the one order of runs: by config, then naturally by id; damaged runs last
    order = {rid: i for i, rid in enumerate(sort_runs({**metas, **dict.fromkeys(damaged)}))}
    return sorted(rows, key=lambda r: order[r["run_id"]])


def damaged_row(run_id: str, damage: str) -> dict[str, Any]:
    """The ``ls`` row of a run whose metadata is damaged (see :func:`list_runs`)."""
    return {
        "run_id": run_id,
        "model": "?",
        "dataset": "?",
        "batch_size": "?",
        "committed": "?",
        "planned": "?",
        "status": "damaged",
        "stored_bytes": None,
        "ratio": None,
        "damage": damage,
    }


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`list_runs` rows."""
    head = ("run", "model", "dataset", "batch", "snapshots", "status", "size", "ratio")
    body = [
        (
            r["run_id"],
            r["model"],
            r["dataset"],
            str(r["batch_size"]),
            f"{r['committed']}/{r['planned']}",
            r["status"],
            "-" if r["stored_bytes"] is None else _human(r["stored_bytes"]),
            f"{r['ratio']:.2f}" if r["ratio"] else "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    right = {3, 4, 6, 7}

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(head), *(fmt(b) for b in body)])
