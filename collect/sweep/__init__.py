"""Experiment sweeps: grid configs in TOML, run ids, planning, size estimates, resumable running.

A sweep file has a ``[base]`` table of :class:`~sgnlake.schema.RunConfig` fields
(``schedule`` and ``storage`` as sub-tables, ``model_args`` as a table) and a
``[grid]`` table whose values are lists; the runs are the product of the grid
lists applied on top of the base::

    name = "my-grid"
    run_id = "fcn-d{depth}-b{batch_size}"   # optional; derived from the grid axes if absent

    [base]
    model = "fcn"
    lr = 0.1
    iterations = 600
    model_args = { width = 32 }
    schedule = { kind = "every", every = 100 }

    [grid]
    batch_size = [50, 100]
    model_args.depth = [2, 3]

Rerunning a sweep skips complete runs and resumes interrupted ones (the
collector's ``resume=True``); see :func:`run_sweep`.

Modules: :mod:`.spec` (parsing, presets, ``--set`` overrides) and :mod:`.grid`
(expansion and run ids) are pure Python; :mod:`.planning` (sizes, the model on
torch's meta device) and :mod:`.execution` (process pool, signals, skip/resume)
import torch only when they run.
"""

from .execution import (
    DONE,
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    RESUMED,
    SKIPPED,
    RunOutcome,
    SweepSummary,
    adopt_stored_ids,
    config_conflict,
    existing_runs,
    is_complete,
    prepare_data,
    run_sweep,
    stored_bytes,
)
from .grid import expand, format_run_id, registry_args
from .planning import (
    GB,
    RUN_ARRAY_BYTES,
    RunPlan,
    dataset_size,
    expected_ratio,
    fmt_bytes,
    format_plan,
    model_tensors,
    plan,
    plan_run,
    steps_per_epoch,
)
from .spec import (
    BASE_FIELDS,
    SCHEDULE_FIELDS,
    STORAGE_FIELDS,
    TOP_LEVEL_KEYS,
    SweepSpec,
    load_preset,
    load_spec,
    loads_spec,
    parse_spec,
    parse_value,
    preset_description,
    preset_names,
    preset_text,
    with_overrides,
)

__all__ = [
    "BASE_FIELDS",
    "DONE",
    "FAILED",
    "GB",
    "INTERRUPTED",
    "NOT_STARTED",
    "RESUMED",
    "RUN_ARRAY_BYTES",
    "SCHEDULE_FIELDS",
    "SKIPPED",
    "STORAGE_FIELDS",
    "TOP_LEVEL_KEYS",
    "RunOutcome",
    "RunPlan",
    "SweepSpec",
    "SweepSummary",
    "adopt_stored_ids",
    "config_conflict",
    "dataset_size",
    "existing_runs",
    "expand",
    "expected_ratio",
    "fmt_bytes",
    "format_plan",
    "format_run_id",
    "is_complete",
    "load_preset",
    "load_spec",
    "loads_spec",
    "model_tensors",
    "parse_spec",
    "parse_value",
    "plan",
    "plan_run",
    "prepare_data",
    "preset_description",
    "preset_names",
    "preset_text",
    "registry_args",
    "run_sweep",
    "steps_per_epoch",
    "stored_bytes",
    "with_overrides",
]
