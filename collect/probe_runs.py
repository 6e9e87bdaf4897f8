"""The stored side of a probe's run: reading its metadata, checking a resume, failures while opening it.

Used by :class:`~sgnlake.collect.probe.Probe` (and through it by ``sgnlake collect``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import zarr

from sgnlake.schema.errors import ConfigError, LakeError
from sgnlake.schema.lake import connection_error, probe_lake, read_run_meta
from sgnlake.schema.meta import RunConfig, RunMeta
from sgnlake.schema.names import RUN_ATTR, run_path


def drop_failed_creation(root: zarr.Group, run_id: str) -> None:
    """Delete the group of a run whose creation failed (no run attributes), under the run's lease.

    Every creator holds the run's lease while it creates the group, and the caller
    holds it now: a group without run attributes is left by a creation that crashed
    or lost its store, on any host, and the same command run again replaces it.
    """
    path = run_path(run_id)
    if path in root and RUN_ATTR not in root[path].attrs:
        del root[path]


def opening_failed(run_id: str, e: BaseException, *, creating: bool) -> LakeError:
    """The one-line error of a storage failure while run ``run_id`` was created or reopened.

    An unreachable store (an outage) is said so; in every case the committed
    snapshots are untouched and the same command, run again, creates or resumes
    the run (a half-created run is replaced, see :func:`sgnlake.collect.runner.collect`).
    """
    down = connection_error(e)
    cause = down if down is not None else e
    text = str(cause).strip()
    first = f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__
    what = "creating" if creating else "resuming"
    why = f"the store could not be reached ({first})" if down is not None else first
    kept = "no snapshot was committed" if creating else "its committed snapshots are kept"
    return LakeError(
        f"{what} run {run_id!r} failed: {why}; {kept}; once the storage works again, run the same "
        "command again"
    )


def stored_run_meta(
    location: str | os.PathLike[str], run_id: str, *, storage_options: Mapping[str, Any] | None = None
) -> RunMeta | None:
    """The metadata of run ``run_id`` in the lake at ``location``, or None if there is no such run."""
    root = probe_lake(location, storage_options=storage_options)
    if root is None or run_path(run_id) not in root:
        return None
    g = root[run_path(run_id)]
    return read_run_meta(g) if RUN_ATTR in g.attrs else None


def check_same_probe_run(stored: RunMeta, cfg: RunConfig) -> None:
    """Raise ConfigError when a resumed probe run was taken with other settings (or by ``collect``)."""
    if stored.extra.get("source") != "probe":
        raise ConfigError(
            f"run {cfg.run_id!r} was collected by 'sgnlake collect': resume it with 'sgnlake collect "
            "--resume', or pick another run_id"
        )
    for f in ("model", "batch_size", "partition", "seed", "tensors", "dataset"):
        a, b = getattr(stored.config, f), getattr(cfg, f)
        if a != b:
            raise ConfigError(
                f"cannot resume run {cfg.run_id!r} with a different {f} ({a!r} stored, {b!r} given): "
                "use the same settings or pick another run_id"
            )
