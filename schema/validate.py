"""Validate a lake against the contract, reading metadata and coordinates only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from .errors import SgnlakeError, ValidationError
from .lake import lake_meta, open_lake_group, read_run_meta, run_ids
from .meta import RunMeta
from .names import (
    ITERATION,
    MINIBATCH,
    PARAM,
    RUN_ARRAYS,
    RUN_ATTR,
    RUNS_GROUP,
    TENSOR_ARRAYS,
    run_path,
)


@dataclass
class ValidationReport:
    """Problems found in a lake; empty ``problems`` means valid."""

    location: str
    runs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Where a lake of schema version >= 2 lacks its self-describing metadata
    #: (:func:`convention_gaps`); readers do not need it, so these are not problems.
    conventions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_invalid(self) -> None:
        if self.problems:
            more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise ValidationError(f"invalid lake {self.location}: {self.problems[0]}{more}")


def _dims(arr: zarr.Array) -> tuple[str | None, ...] | None:
    names = arr.metadata.dimension_names if hasattr(arr.metadata, "dimension_names") else None
    return tuple(names) if names is not None else None


def validate_run(group: zarr.Group, meta: RunMeta) -> list[str]:
    """Problems with one run group (arrays, dims, shapes, commit marker)."""
    rid = meta.run_id
    problems: list[str] = []
    n_iter_min = meta.committed
    for name in RUN_ARRAYS:
        if name not in group:
            problems.append(f"run {rid!r}: missing array {name!r}")
            continue
        arr = group[name]
        if _dims(arr) != (ITERATION,):
            problems.append(f"run {rid!r}: array {name!r} has dims {_dims(arr)}, expected ('iteration',)")
        elif arr.shape[0] < n_iter_min:
            problems.append(
                f"run {rid!r}: array {name!r} has {arr.shape[0]} snapshots but {n_iter_min} are committed"
            )
    if ITERATION in group and meta.committed:
        its = np.asarray(group[ITERATION][: meta.committed])
        if np.any(np.diff(its) <= 0):
            problems.append(f"run {rid!r}: iteration values are not strictly increasing")
        planned = set(meta.planned_iterations)
        if planned and not set(its.tolist()) <= planned:
            problems.append(f"run {rid!r}: committed iterations are not in the planned schedule")
    if meta.committed > len(meta.planned_iterations):
        problems.append(f"run {rid!r}: {meta.committed} committed > {len(meta.planned_iterations)} planned")
    for t in meta.tensors:
        if t.name not in group:
            problems.append(f"run {rid!r}: missing tensor group {t.name!r}")
            continue
        tg = group[t.name]
        for aname, dims in TENSOR_ARRAYS.items():
            if aname not in tg:
                problems.append(f"run {rid!r}: tensor {t.name!r} is missing array {aname!r}")
                continue
            arr = tg[aname]
            if _dims(arr) != dims:
                problems.append(f"run {rid!r}: {t.name}/{aname} has dims {_dims(arr)}, expected {dims}")
                continue
            expect = {ITERATION: None, "minibatch": meta.n_minibatches, "param": t.n_stored}
            for d, n in zip(dims, arr.shape, strict=True):
                if expect[d] is not None and n != expect[d]:
                    problems.append(f"run {rid!r}: {t.name}/{aname} has {d}={n}, expected {expect[d]}")
            if arr.shape[0] < n_iter_min:
                problems.append(
                    f"run {rid!r}: {t.name}/{aname} has {arr.shape[0]} snapshots, {n_iter_min} committed"
                )
    return problems


def convention_gaps(group: zarr.Group, meta: RunMeta) -> list[str]:
    """Where a run lacks the schema-2 conventions (:mod:`sgnlake.schema.conventions`).

    Checks the ``minibatch`` and ``param`` index coordinates and the ``long_name`` /
    ``units`` attributes of every array of the run.
    """
    rid = meta.run_id
    gaps: list[str] = []

    def coord(g: zarr.Group, name: str, size: int, where: str) -> None:
        if name not in g or not isinstance(g[name], zarr.Array):
            gaps.append(f"run {rid!r}: {where} has no {name!r} coordinate")
        elif _dims(g[name]) != (name,) or g[name].shape != (size,):
            gaps.append(f"run {rid!r}: {where}/{name} is not a ({name}={size},) coordinate")

    def attrs(arr: zarr.Array, where: str) -> None:
        missing = [k for k in ("long_name", "units") if k not in arr.attrs]
        if missing:
            gaps.append(f"run {rid!r}: {where} has no {' / '.join(missing)} attribute")

    coord(group, MINIBATCH, meta.n_minibatches, "run group")
    for name in RUN_ARRAYS:
        if name in group:
            attrs(group[name], name)
    for t in meta.tensors:
        if t.name not in group:
            continue
        tg = group[t.name]
        coord(tg, PARAM, t.n_stored, t.name)
        for aname in TENSOR_ARRAYS:
            if aname in tg:
                attrs(tg[aname], f"{t.name}/{aname}")
                if list(tg[aname].attrs.get("tensor_shape", [])) != list(t.shape):
                    gaps.append(f"run {rid!r}: {t.name}/{aname} has no tensor_shape {list(t.shape)}")
    return gaps


def validate_lake(
    location: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> ValidationReport:
    """Check a lake against the contract.

    Reads the root and run attributes, every array's metadata and the
    ``iteration`` coordinates; no SGN chunk is read.

    Returns
    -------
    ValidationReport
        ``.ok`` is True when no problem was found; ``.problems`` lists one line
        per problem, naming run, tensor and array.

    Raises
    ------
    NotALakeError, SchemaVersionError
        The location is not a lake, or is of a newer schema version.
    """
    loc = os.fspath(location)
    root = open_lake_group(loc, mode="r", storage_options=storage_options)
    report = ValidationReport(location=loc)
    conventions = lake_meta(root).version >= 2
    if RUNS_GROUP not in root:
        report.problems.append(f"missing group {RUNS_GROUP!r}")
        return report
    runs = root[RUNS_GROUP]
    names = sorted(name for name, _ in runs.groups())
    report.runs = run_ids(root)
    for name in names:
        g = root[run_path(name)]
        if RUN_ATTR not in g.attrs:
            # Not a run (yet): a collector is creating it, or crashed while creating it
            # (the run attributes are written last). `sgnlake check` reports it.
            continue
        try:
            meta = read_run_meta(g)
        except SgnlakeError as e:
            report.problems.append(f"run {name!r}: {e}")
            continue
        if meta.run_id != name:
            report.problems.append(f"run {name!r}: attrs name run {meta.run_id!r}")
        try:
            report.problems.extend(validate_run(g, meta))
            if conventions:
                report.conventions.extend(convention_gaps(g, meta))
        except Exception as e:  # e.g. an array's zarr.json is not valid JSON
            first = str(e).splitlines()[0] if str(e) else ""
            report.problems.append(f"run {name!r}: metadata cannot be read ({type(e).__name__}: {first})")
    return report
