"""Helpers for collector tests: the tiny run settings and a plain-zarr reader of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from sgnlake.schema.meta import Schedule

#: A tiny, fast run: FCN depth 2 width 8 on the first 200 embedded digits, b=20 (M=10),
#: 30 SGD steps, snapshots at 0, 10, 20, 30.
TINY = {
    "model": "fcn",
    "model_args": {"depth": 2, "width": 8},
    "n_train": 200,
    "batch_size": 20,
    "lr": 0.1,
    "iterations": 30,
    "schedule": Schedule(kind="every", every=10, include_start=True),
    "device": "cpu",
}


def read_run_arrays(lake: str | Path, run_id: str) -> dict[str, np.ndarray]:
    """Every array of ``runs/<run_id>`` read with plain zarr, by path relative to the run."""
    g = zarr.open_group(str(lake), mode="r", path=f"runs/{run_id}")
    out: dict[str, np.ndarray] = {}

    def walk(node: zarr.Group, prefix: str) -> None:
        for name, child in node.members():
            if isinstance(child, zarr.Array):
                out[prefix + name] = child[...]
            else:
                walk(child, prefix + name + "/")

    walk(g, "")
    return out
