"""The one rule that names a run from its config (``sgnlake collect``, ``sgnlake sweep``, ``sgnlake demo``).

Pure Python (no torch): the sweep's grid expansion uses it where torch is absent.

The id lists, in this order, with ``-`` between parts:

- the model (``fcn``, ``lenet``);
- the dataset, when it is not the default (``mnist``, ``cifar10``);
- the model arguments (``depth`` as ``d``, ``width`` as ``w`` first, then the
  others sorted; booleans by name when true, nothing when false);
- ``n{n_train}`` when ``n_train`` is set;
- ``b{batch_size}``;
- ``lr{lr}`` when the learning rate is not the default (0.1);
- the optimizer when it is not plain SGD (``momentum``, ``adam``);
- a sweep's other grid axes (``every50``, ``kb10``, ``it600``; see :data:`ABBREV`);
- ``s{seed}``.

So ``fcn-d3-w32-b50-s0``, ``lenet-b150-lr0.05-s1``, ``fcn-mnist-d2-w16-n1000-b50-s0``.
The id depends only on the config (and, for a sweep, on which fields its grid
varies), never on the order of a file, so it is stable across reruns. Runs
stored under ids from older versions (``fcn-d3-w32-b50-lr0.1-s0``, the demo's
``lenet-b50``) keep their ids: the collector and the sweep find them by their
config (:func:`sgnlake.collect.config.compatible_run`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sgnlake.schema.defaults import field_default
from sgnlake.schema.meta import RunConfig

#: Short names of fields in run ids (others use their last path component without ``_``).
ABBREV = {
    "model_args.depth": "d",
    "model_args.width": "w",
    "batch_size": "b",
    "seed": "s",
    "lr": "lr",
    "epochs": "e",
    "iterations": "it",
    "n_train": "n",
    "schedule.every": "every",
    "storage.keepbits": "kb",
    "storage.dtype": "",
    "storage.codec": "",
    "dataset": "",
    "model": "",
    "partition": "",
    "optimizer": "",
}
#: Fields the id always accounts for (shown always, or when not the default).
CORE_FIELDS = ("model", "dataset", "model_args", "n_train", "batch_size", "lr", "optimizer", "seed")
#: Order of a sweep's other axes in the id (then the rest, sorted).
_AXIS_ORDER = ("epochs", "iterations")
_FIRST_ARGS = ("depth", "width")


def fmt_value(v: Any) -> str:
    """A config value as it appears in a run id (characters a run id cannot hold become ``_``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}".replace("+", "")
    if isinstance(v, list | tuple):
        return "+".join(fmt_value(x) for x in v) or "none"
    s = re.sub(r"[^A-Za-z0-9_.=+-]", "_", str(v))
    return s.replace("..", "_")


def _get(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for p in path.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def _is_core(path: str) -> bool:
    return path.split(".")[0] in CORE_FIELDS


def derive_run_id(config: RunConfig | Mapping[str, Any], axes: Iterable[str] = ()) -> str:
    """The run id of a config (see the module docstring for the rule).

    Parameters
    ----------
    config : RunConfig or mapping
        The run's fields (a mapping as :meth:`RunConfig.to_dict`, nested
        ``model_args``, ``schedule``, ``storage``; missing fields take the
        defaults). Model arguments are shown as given: callers that know the
        model registry complete them first (:func:`sgnlake.collect.config.default_run_id`).
    axes : iterable of str
        Field paths a sweep varies (``schedule.every``, ``storage.keepbits``):
        those outside :data:`CORE_FIELDS` are shown with their value.

    Returns
    -------
    str
    """
    d = config.to_dict() if isinstance(config, RunConfig) else config
    parts = [fmt_value(d.get("model", "run"))]
    dataset = d.get("dataset", field_default("dataset"))
    if dataset != field_default("dataset"):
        parts.append(fmt_value(dataset))
    args = dict(d.get("model_args") or {})
    for k in sorted(args, key=lambda k: (_FIRST_ARGS.index(k) if k in _FIRST_ARGS else len(_FIRST_ARGS), k)):
        v = args[k]
        if isinstance(v, bool):
            if v:
                parts.append(k)
        elif v is not None:
            parts.append(f"{ABBREV.get(f'model_args.{k}', k)}{fmt_value(v)}")
    if d.get("n_train") is not None:
        parts.append(f"n{fmt_value(d['n_train'])}")
    parts.append(f"b{fmt_value(d.get('batch_size', field_default('batch_size')))}")
    lr = d.get("lr", field_default("lr"))
    if lr != field_default("lr"):
        parts.append(f"lr{fmt_value(lr)}")
    optimizer = d.get("optimizer", field_default("optimizer"))
    if optimizer != field_default("optimizer"):
        parts.append(fmt_value(optimizer))
    other = sorted({a for a in axes if not _is_core(a)}, key=lambda a: (a not in _AXIS_ORDER, a))
    for axis in other:
        abbr = ABBREV.get(axis, axis.split(".")[-1].replace("_", ""))
        value = _get(d, axis)
        parts.append(f"{abbr}{fmt_value(field_default(axis) if value is None else value)}")
    parts.append(f"s{fmt_value(d.get('seed', field_default('seed')))}")
    return "-".join(parts)
