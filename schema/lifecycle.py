"""Deleting runs and repairing a lake: ``sgnlake rm`` and ``sgnlake check --fix``.

Every deletion goes through :func:`sgnlake.schema.store.delete_prefix` (local
folders and object stores alike). A run is deleted with its derived results
(``results/<run>``) and its resume checkpoint (``checkpoints/<run>``); the run
group's own ``zarr.json`` goes first, so readers stop seeing the run at once and
an interrupted deletion leaves only orphans that ``check --fix`` removes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import zarr

from .errors import LakeError, RunNotFoundError
from .lake import open_lake_group, read_run_meta, run_ids
from .lease import Lease, current_owner, describe_owner, lease_ttl
from .names import (
    CHECKPOINTS_GROUP,
    RESULT_ATTR,
    RESULTS_GROUP,
    RUN_ATTR,
    RUNNING,
    RUNS_GROUP,
    check_run_id,
    checkpoint_path,
    run_path,
)
from .store import delete_key, delete_prefix, exists


class RunBusyError(LakeError):
    """A collector holds the run (it is being written): it cannot be deleted now."""


def _children(root: zarr.Group, group: str) -> list[str]:
    if group not in root:
        return []
    node = root[group]
    return sorted(name for name, _ in node.groups()) if isinstance(node, zarr.Group) else []


def run_holder(root: zarr.Group, run_id: str, *, force: bool = False) -> str | None:
    """Why run ``run_id`` must not be deleted now (a line for messages), or None.

    A collector holds its run's lease (:mod:`sgnlake.schema.lease`) while it
    writes: a live lease always refuses. Without a live lease, a run whose status
    is still ``running`` (or a group without run attributes) was left by a
    collector that crashed or an older sgnlake: refused unless ``force``.
    """
    owner = current_owner(root, run_path(run_id), ttl=lease_ttl())
    if owner is not None:
        return f"a collector is writing it ({describe_owner(owner)}): wait for it to finish"
    path = run_path(run_id)
    if force or path not in root:
        return None
    g = root[path]
    if RUN_ATTR not in g.attrs:
        return "its group has no run attributes (a collector is creating it, or crashed doing so); " + _FORCE
    meta = read_run_meta(g)
    if meta.status == RUNNING:
        return (
            f"its status is running ({meta.committed} snapshot(s) committed) but no collector holds it; "
            + _FORCE
        )


_FORCE = "if no collector is running, pass --force"


def run_parts(root: zarr.Group, run_id: str) -> list[str]:
    """The lake paths that belong to run ``run_id`` and exist: run group, results, checkpoint."""
    parts = [run_path(run_id), f"{RESULTS_GROUP}/{run_id}", checkpoint_path(run_id)]
    return [p for p in parts if p in root]


def remove_runs(
    location: str | os.PathLike[str],
    runs: Sequence[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> list[str]:
    """Delete runs with their results and checkpoints; return the removed lake paths.

    Parameters
    ----------
    location : str or path
        The lake.
    runs : sequence of str
        Run ids (a run, or what is left of one: orphan results or checkpoint).
    force : bool
        Delete a run whose status says ``running`` although no collector holds its
        lease (a crashed collector). A live lease always refuses.
    dry_run : bool
        Only return what would be removed.

    Raises
    ------
    RunNotFoundError
        Nothing of a run is in the lake (nothing is deleted).
    RunBusyError
        A collector holds one of the runs, or (without ``force``) one looks unfinished;
        nothing is deleted.
    LeaseHeldError
        A collector took a run's lease between the check and the deletion.
    """
    root = open_lake_group(
        os.fspath(location), mode="r" if dry_run else "r+", storage_options=storage_options
    )
    plan: list[str] = []
    for rid in dict.fromkeys(runs):
        check_run_id(rid)
        parts = run_parts(root, rid)
        if not parts:
            known = run_ids(root)
            hint = f"runs: {', '.join(known[:10])}" if known else "the lake has no runs"
            raise RunNotFoundError(f"no run {rid!r} in the lake ({hint})")
        holder = run_holder(root, rid, force=force)
        if holder is not None:
            raise RunBusyError(f"run {rid!r} cannot be deleted now: {holder}")
        plan.extend(parts)
    if not dry_run:
        store = root.store
        for rid in dict.fromkeys(runs):
            # hold the run's lease while deleting, so that no collector starts writing it meanwhile
            lease = Lease.acquire(root, run_path(rid), {"command": "rm"}, lease_ttl(), what=f"run {rid!r}")
            try:
                for path in run_parts(root, rid):
                    if path.startswith(RUNS_GROUP + "/") and exists(store, f"{path}/zarr.json"):
                        delete_key(store, f"{path}/zarr.json")  # the run vanishes for readers first
                    delete_prefix(store, path)
            finally:
                lease.release()
    return plan


@dataclass
class FixReport:
    """What :func:`fix_lake` removed (or would remove), one line per lake path with the reason."""

    removed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"removed {path}: {why}" for path, why in self.removed]


def fix_plan(root: zarr.Group) -> list[tuple[str, str]]:
    """``(path, reason)`` of every orphan and unfinished result in an opened lake.

    - ``results/<run>`` and ``checkpoints/<run>`` of a run that has no group under
      ``runs/`` (orphans, e.g. left by deleting a run by hand);
    - a stored result without its ``sgnlake_result`` attribute (its computation
      stopped before it finished; readers ignore it and recompute), unless a live
      lease on it says it is being computed.
    """
    present = set(_children(root, RUNS_GROUP))
    plan: list[tuple[str, str]] = []
    for group, what in ((RESULTS_GROUP, "results"), (CHECKPOINTS_GROUP, "checkpoint")):
        for run in _children(root, group):
            if run not in present:
                plan.append((f"{group}/{run}", f"orphan {what} (no run {run!r} in the lake)"))
    for run in _children(root, RESULTS_GROUP):
        if run not in present:
            continue
        for key in _children(root, f"{RESULTS_GROUP}/{run}"):
            node = root[f"{RESULTS_GROUP}/{run}/{key}"]
            path = f"{RESULTS_GROUP}/{run}/{key}"
            if RESULT_ATTR not in node.attrs and current_owner(root, path, ttl=lease_ttl()) is None:
                plan.append((f"{RESULTS_GROUP}/{run}/{key}", "unfinished result (its computation stopped)"))
    return plan


def fix_lake(
    location: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> FixReport:
    """Remove orphan results and checkpoints and unfinished results (:func:`fix_plan`).

    Do not run it while results are being computed into the lake: a result in
    progress is unfinished too. Committed snapshots are never touched.
    """
    root = open_lake_group(
        os.fspath(location), mode="r" if dry_run else "r+", storage_options=storage_options
    )
    plan = fix_plan(root)
    if not dry_run:
        for path, _ in plan:
            delete_prefix(root.store, path)
    return FixReport(removed=plan)
