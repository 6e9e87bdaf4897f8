"""The lake contract: layout, names, dims, attrs, codecs, versioning, validation.

Both stages depend on this package; it depends on neither (no torch, no xarray).

Layout (Zarr v3)::

    LAKE/                              attrs: sgnlake = LakeMeta
      runs/<run_id>/                   attrs: sgnlake_run = RunMeta
        iteration, loss, accuracy      (iteration,)
        minibatch                      (minibatch,) index coordinate (version 2)
        <tensor>/                      attrs: sgnlake_tensor = TensorInfo
          param   (param,)             index coordinate (version 2)
          sgn     (iteration, minibatch, param)
          grad    (iteration, param)
          weight  (iteration, param)
      results/<run_id>/<key>/          derived results (alpha, tests), own iteration coord
      checkpoints/<run_id>/            resume state (opaque bytes)

Version 2 adds self-describing metadata (CF attributes, coordinates, flat config
attributes): :mod:`sgnlake.schema.conventions`, docs/lake-format.md.
"""

from .errors import (
    ConfigError,
    CorruptChunkError,
    DivergedError,
    LakeError,
    LakeNotFoundError,
    LakeReadOnlyError,
    NotALakeError,
    RunExistsError,
    RunNotFoundError,
    SchemaVersionError,
    SgnlakeError,
    ValidationError,
)
from .lake import (
    lake_meta,
    now,
    open_lake_group,
    probe_lake,
    read_run_meta,
    run_group,
    run_ids,
    software_versions,
)
from .meta import LakeMeta, ResultMeta, RunConfig, RunMeta, Schedule, StorageSpec, TensorInfo
from .names import SCHEMA_NAME, SCHEMA_VERSION, check_run_id
from .validate import ValidationReport, validate_lake, validate_run

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "ConfigError",
    "CorruptChunkError",
    "DivergedError",
    "LakeError",
    "LakeMeta",
    "LakeNotFoundError",
    "LakeReadOnlyError",
    "NotALakeError",
    "ResultMeta",
    "RunConfig",
    "RunExistsError",
    "RunMeta",
    "RunNotFoundError",
    "Schedule",
    "SchemaVersionError",
    "SgnlakeError",
    "StorageSpec",
    "TensorInfo",
    "ValidationError",
    "ValidationReport",
    "check_run_id",
    "lake_meta",
    "now",
    "open_lake_group",
    "probe_lake",
    "read_run_meta",
    "run_group",
    "run_ids",
    "software_versions",
    "validate_lake",
    "validate_run",
]
