"""Defaults of :class:`~sgnlake.schema.meta.RunConfig` fields by path (``lr``, ``schedule.every``).

The dataclasses are the one home of the defaults: the CLI's help texts and the
run-id rule read them here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .meta import RunConfig, Schedule, StorageSpec

_SUBTABLES: dict[str, type] = {"schedule": Schedule, "storage": StorageSpec}


def field_default(path: str) -> Any:
    """The default of a RunConfig field path (``batch_size``, ``storage.level``); None if it has none.

    Raises
    ------
    KeyError
        ``path`` names no field.
    """
    parts = path.split(".")
    cls = _SUBTABLES.get(parts[0])
    if cls is not None and len(parts) == 2:
        f = cls.__dataclass_fields__[parts[1]]
    elif len(parts) == 1:
        f = RunConfig.__dataclass_fields__[parts[0]]
    else:
        raise KeyError(path)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
