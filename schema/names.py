"""Names of the lake contract: schema id, groups, arrays, dimensions, attrs."""

from __future__ import annotations

import re

from .errors import ConfigError

SCHEMA_NAME = "sgnlake.lake"
#: Version of the lake layout. Readers refuse lakes with a newer version.
#: 1: the layout; 2: self-describing conventions (:mod:`sgnlake.schema.conventions`:
#: CF attributes, ``minibatch`` / ``param`` coordinates, flat config attributes,
#: internal attributes prefixed ``_sgnlake``). Version-1 lakes stay readable.
SCHEMA_VERSION = 2
#: Prefix of the software's internal bookkeeping attributes (not part of the documented view).
INTERNAL_PREFIX = "_sgnlake"

#: Root group attribute holding :class:`~sgnlake.schema.meta.LakeMeta`.
LAKE_ATTR = "sgnlake"
#: Run group attribute holding :class:`~sgnlake.schema.meta.RunMeta`.
RUN_ATTR = "sgnlake_run"
#: Tensor group attribute holding :class:`~sgnlake.schema.meta.TensorInfo`.
TENSOR_ATTR = "sgnlake_tensor"
#: Attribute on derived-result arrays holding :class:`~sgnlake.schema.meta.ResultMeta`.
RESULT_ATTR = "sgnlake_result"
#: Result key-group attribute naming its published generation (a child group ``gen-<id>``);
#: written in the same object write as :data:`RESULT_ATTR` (see ``sgnlake.analyze.stored``).
GENERATION_ATTR = "sgnlake_generation"
#: Name prefix of a result's generation groups.
GENERATION_PREFIX = "gen-"
#: Run group attribute naming the collector that created the group (``token``, ``host``,
#: ``pid``, ``time``); written atomically with the group before anything else of the run,
#: so that of two collectors creating one run id only one proceeds. Internal: dropped
#: when the run attributes are written.
CLAIM_ATTR = f"{INTERNAL_PREFIX}_claim"
#: The claim attribute's name in schema version 1.
LEGACY_CLAIM_ATTR = "sgnlake_claim"

RUNS_GROUP = "runs"
#: Derived results (alpha, tests), outside the run tree so that their own
#: ``iteration`` coordinate never conflicts with a run that grows later:
#: ``results/<run_id>/<key>/`` with ``iteration`` and one group per tensor.
RESULTS_GROUP = "results"
#: Resume checkpoints (model, optimizer, RNG state as opaque bytes), one group per run:
#: ``checkpoints/<run_id>/``.
CHECKPOINTS_GROUP = "checkpoints"

# Dimensions
ITERATION = "iteration"
MINIBATCH = "minibatch"
PARAM = "param"

# Run-level arrays, dims (iteration,)
ITERATION_ARRAY = ITERATION
LOSS = "loss"
ACCURACY = "accuracy"
RUN_ARRAYS = (ITERATION_ARRAY, LOSS, ACCURACY)
#: Index coordinates (schema version >= 2): ``minibatch`` in each run group,
#: ``param`` in each tensor group of a run.
RUN_COORDS = (MINIBATCH,)
TENSOR_COORDS = (PARAM,)

# Tensor-level arrays
SGN = "sgn"  # (iteration, minibatch, param)
GRAD = "grad"  # (iteration, param)
WEIGHT = "weight"  # (iteration, param)
TENSOR_ARRAYS = {SGN: (ITERATION, MINIBATCH, PARAM), GRAD: (ITERATION, PARAM), WEIGHT: (ITERATION, PARAM)}

# Run status values
RUNNING = "running"
COMPLETE = "complete"
INTERRUPTED = "interrupted"
FAILED = "failed"
STATUSES = (RUNNING, COMPLETE, INTERRUPTED, FAILED)

#: Names a run id may not take: Zarr's metadata documents (a run named so would overwrite one).
RESERVED_NAMES = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can name a run group, else raise :class:`ConfigError`.

    Run ids start with a letter or digit and use only letters, digits and ``_.=+-``
    (at most 128 characters; no control character, no trailing newline, no ``..``,
    not ``zarr.json``), so they are valid Zarr node names and file names on every store.
    """
    # fullmatch: ``$`` of ``match`` would accept a trailing newline
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(
            f"invalid run id {run_id!r}: use 1-128 letters, digits and '_.=+-', "
            "starting with a letter or digit"
        )
    if run_id.lower() in RESERVED_NAMES:
        raise ConfigError(f"invalid run id {run_id!r}: the name is reserved by Zarr, pick another --run-id")
    return run_id


def run_path(run_id: str) -> str:
    """Path of a run group inside the lake."""
    return f"{RUNS_GROUP}/{run_id}"


def tensor_path(run_id: str, tensor: str) -> str:
    """Path of a tensor group inside the lake."""
    return f"{RUNS_GROUP}/{run_id}/{tensor}"


def results_path(run_id: str, key: str, tensor: str | None = None) -> str:
    """Path of a derived-result group (``key`` names estimator + settings)."""
    base = f"{RESULTS_GROUP}/{run_id}/{key}"
    return base if tensor is None else f"{base}/{tensor}"


def checkpoint_path(run_id: str) -> str:
    """Path of a run's resume-checkpoint group."""
    return f"{CHECKPOINTS_GROUP}/{run_id}"
