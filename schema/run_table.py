"""The run table: one row per run, its config columns derived from the :class:`RunConfig` fields.

``Lake.runs`` (flat columns, for pandas), ``sgnlake ls --json`` (nested
``model_args`` and ``storage``, JSON-ready) and the config coordinates of
per-run results all come from :func:`run_row`, so a new ``RunConfig`` field
appears in each of them without further edits.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from typing import Any

from .meta import RunConfig, RunMeta, StorageSpec

#: RunConfig fields that say where inputs were or how to schedule the work, not what
#: the run is: no column.
HIDDEN_FIELDS = frozenset({"data_dir", "schedule", "tensors", "memory_budget_mb"})
#: Model arguments that always have a column (None for models without them), right after
#: ``model``; other model arguments become columns at the end of the flat row.
MODEL_ARG_COLUMNS = ("depth", "width", "bias")
#: Config columns that do not change the stored SGN values (the run's name, its length,
#: how it was computed, lossless storage choices, which parameters are kept): not what
#: results are grouped by.
NOT_GROUPING = frozenset(
    {"run_id", "epochs", "iterations", "engine", "device", "codec", "level", "param_chunk"}
    | {"param_sample", "store"}
    # the optimizer's own hyperparameters are None for the other optimizers (and betas a pair):
    # runs are grouped by ``optimizer`` and ``weight_decay``; these stay run-table columns
    | {"momentum", "betas"}
)
#: Expanded by the flat row into these columns (nested rows keep one mapping).
_NESTED = {"model_args": MODEL_ARG_COLUMNS, "storage": tuple(f.name for f in dataclasses.fields(StorageSpec))}
#: Columns describing a run's state (from its metadata, not its config).
STATE_COLUMNS = (
    "status",
    "committed",
    "planned",
    "total_steps",
    "n_examples",
    "n_minibatches",
    "remainder",
    "n_tensors",
    "n_params",
    "created",
    "updated",
    "reason",
)


@functools.cache
def config_columns() -> tuple[str, ...]:
    """Flat config columns of the run table, in :class:`RunConfig` field order."""
    out: list[str] = []
    for f in dataclasses.fields(RunConfig):
        if f.name in HIDDEN_FIELDS:
            continue
        out.extend(_NESTED.get(f.name, (f.name,)))
    return tuple(out)


def _grouping_columns() -> tuple[str, ...]:
    cols = [c for c in config_columns() if c not in NOT_GROUPING]
    # the number of SGN minibatches (n_train // batch_size) is what the estimators see
    first_storage = next(i for i, c in enumerate(cols) if c in _NESTED["storage"])
    cols.insert(first_storage, "n_minibatches")
    return tuple(cols)


#: Columns copied onto per-run results (``sgn_runs`` coords, summary columns): what
#: figures group and colour by.
CONFIG_COLUMNS = _grouping_columns()


def _config_values(meta: RunMeta, *, nested: bool) -> dict[str, Any]:
    c = meta.config
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name in HIDDEN_FIELDS:
            continue
        value = getattr(c, f.name)
        if f.name == "engine":
            value = meta.engine or value  # what ran ("auto" resolved)
        elif f.name == "device":
            value = meta.device or value
        if f.name == "model_args":
            args = dict(value)
            if nested:
                row[f.name] = args
            else:
                row.update({k: args.pop(k, None) for k in MODEL_ARG_COLUMNS})
                extra = args
        elif dataclasses.is_dataclass(value):
            if nested:
                row[f.name] = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
            else:
                row.update({k: getattr(value, k) for k in _NESTED[f.name]})
        else:
            row[f.name] = list(value) if isinstance(value, tuple) else value
    for k, v in extra.items():  # other model arguments, e.g. channels
        row.setdefault(k, v)
    return row


def _state_values(meta: RunMeta) -> dict[str, Any]:
    values = {
        "status": meta.status,
        "committed": meta.committed,
        "planned": len(meta.planned_iterations),
        "total_steps": meta.total_steps,
        "n_examples": meta.n_examples,
        "n_minibatches": meta.n_minibatches,
        "remainder": meta.remainder,
        "n_tensors": len(meta.tensors),
        "n_params": sum(t.numel for t in meta.tensors),
        "created": meta.created,
        "updated": meta.updated,
        "reason": meta.reason,
    }
    return {k: values[k] for k in STATE_COLUMNS}


def run_row(meta: RunMeta, *, nested: bool = False) -> dict[str, Any]:
    """One row of the run table: ``run_id``, config columns, then :data:`STATE_COLUMNS`.

    Parameters
    ----------
    meta : RunMeta
        The run's metadata.
    nested : bool
        Keep ``model_args`` and ``storage`` as one mapping each (JSON rows of
        ``sgnlake ls``) instead of one column per argument (``Lake.runs``).

    Returns
    -------
    dict
        Flat: ``run_id``, :func:`config_columns`, the state columns, then any
        model arguments other than :data:`MODEL_ARG_COLUMNS`.
    """
    values = _config_values(meta, nested=nested)
    columns = set(config_columns())
    config = {k: v for k, v in values.items() if nested or k in columns}
    extra = {k: v for k, v in values.items() if k not in config}
    return {**config, **_state_values(meta), **extra}


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key of a string with its digit runs compared as numbers (``b50 < b100 < b200``)."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in _DIGITS.split(str(text)) if p != "")


def _value_key(value: Any) -> tuple[Any, ...]:
    if value is None:
        return (2,)
    if isinstance(value, bool | int | float):
        return (0, float(value), "")
    return (1, 0.0, natural_key(value))


def run_sort_key(meta: RunMeta | None, run_id: str | None = None) -> tuple[Any, ...]:
    """The one order of runs (``ls``, the report, the API): by config, then naturally by id.

    Runs compare by :data:`CONFIG_COLUMNS` in order (model, depth, width, ...,
    batch size, lr, seed, ...), numbers as numbers, then by :func:`natural_key` of
    the run id. A run whose metadata cannot be read (``meta`` None) sorts after
    the others, by its id.
    """
    rid = run_id if run_id is not None else (meta.run_id if meta is not None else "")
    if meta is None:
        return (1, (), natural_key(rid))
    row = run_row(meta)
    return (0, tuple(_value_key(row.get(k)) for k in CONFIG_COLUMNS), natural_key(rid))


def sort_runs(metas: Mapping[str, RunMeta | None]) -> list[str]:
    """Run ids of ``{run_id: meta}`` in :func:`run_sort_key` order."""
    return sorted(metas, key=lambda r: run_sort_key(metas[r], r))
