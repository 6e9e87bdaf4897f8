"""Atomic creation of a run's group: the claim that makes two collectors of one run id exclusive.

This module does not import torch.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from sgnlake.schema.errors import RunExistsError
from sgnlake.schema.lake import now
from sgnlake.schema.names import CLAIM_ATTR, RUN_ATTR, run_path


def _claim_alive(claim: Mapping[str, Any]) -> bool:
    """Whether the collector that wrote ``claim`` may still be running (unknown on other hosts: True)."""
    if claim.get("host") != socket.gethostname():
        return True
    if claim.get("pid") == os.getpid():  # an earlier, failed attempt of this process
        return False
    try:
        os.kill(int(claim.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def claim_run(root: zarr.Group, run_id: str) -> None:
    """Atomically create the group of run ``run_id``, or raise if another collector holds it.

    The group's ``zarr.json`` is written with ``set_if_not_exists`` (an exclusive
    create on local disks) holding a unique claim token, then read back: only
    the collector whose token is there proceeds. A group left by a creation that
    crashed on this host (its process is gone), or one without a claim, is
    removed and claimed again.

    Raises
    ------
    RunExistsError
        The run exists, or another collector is creating it.
    """
    path = run_path(run_id)
    sp = root.store_path / path / "zarr.json"
    proto = default_buffer_prototype()
    token = uuid.uuid4().hex
    claim = {"token": token, "host": socket.gethostname(), "pid": os.getpid(), "time": now()}
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {CLAIM_ATTR: claim}}
    for _ in range(3):
        sync(sp.set_if_not_exists(proto.buffer.from_bytes(json.dumps(doc).encode())))
        raw = sync(sp.get(prototype=proto))
        try:
            attrs = json.loads(raw.to_bytes()).get("attributes", {}) if raw is not None else {}
        except ValueError:
            attrs = {}
        held = attrs.get(CLAIM_ATTR) if isinstance(attrs.get(CLAIM_ATTR), Mapping) else None
        if held is not None and held.get("token") == token:
            return
        if RUN_ATTR in attrs:
            raise RunExistsError(
                f"run {run_id!r} already exists: pass --resume to continue it, or pick another --run-id"
            )
        if held is not None and _claim_alive(held):
            raise RunExistsError(
                f"run {run_id!r} is being created by another collector (pid {held.get('pid')} on "
                f"{held.get('host')} since {held.get('time')}): wait for it and pass --resume, or pick "
                f"another --run-id (if no collector is running, delete {path} in the lake)"
            )
        if path in root:  # a crashed creation: remove it and claim again
            del root[path]
    raise RunExistsError(f"run {run_id!r} is being created by another collector: pick another --run-id")
