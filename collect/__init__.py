"""The collector: train (plain SGD, momentum or Adam) and store per-parameter SGN in the lake.

This is the only sgnlake package that imports torch. The public API is loaded
lazily, so torch-free modules of the package (sweep specs, run ids) import
without it:

- :func:`collect` (``sgnlake collect``): train and write snapshots;
- :class:`~sgnlake.collect.probe.Probe`: SGN snapshots of any model from the user's own
  training loop (``collect`` takes its snapshots through it);
- :func:`~sgnlake.collect.models.build_model`, :data:`MODELS`,
  :func:`~sgnlake.collect.models.register_model`: the model registry;
- :func:`~sgnlake.collect.data.load_dataset`: training data;
- :func:`~sgnlake.collect.run_ids.derive_run_id`: the one naming rule of runs
  (:func:`~sgnlake.collect.config.default_run_id` completes model arguments first);
- :func:`~sgnlake.schema.inventory.list_runs`: the ``sgnlake ls`` table (re-exported;
  it lives in the stage-neutral :mod:`sgnlake.schema`).
"""

from __future__ import annotations

import importlib
from typing import Any

from sgnlake.schema.inventory import list_runs as list_runs

_LAZY = {
    "collect": "runner",
    "Probe": "probe",
    "stored_run_meta": "runner",
    "build_model": "models",
    "register_model": "models",
    "tensor_table": "models",
    "MODELS": "models",
    "load_dataset": "data",
    "Dataset": "data",
    "derive_run_id": "run_ids",
    "default_run_id": "config",
    "compute_snapshot": "snapshot",
    "Snapshot": "snapshot",
}

__all__ = sorted([*_LAZY, "list_runs"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
