"""Grid expansion: the runs of a sweep (product of the grid lists over the base) and their ids.

Pure Python (no torch) unless model arguments are completed from the model registry
(the default of :func:`expand`, which imports the collector's models lazily).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

from sgnlake.collect.run_ids import derive_run_id, fmt_value
from sgnlake.schema import ConfigError, RunConfig, Schedule, ValidationError, check_run_id
from sgnlake.schema.defaults import field_default

from .spec import _FIELD, _MISSING, SweepSpec, _deepcopy_plain, _get_path, _set_path, _template_path


def format_run_id(spec: SweepSpec, config: Mapping[str, Any]) -> str:
    """Fill the spec's run-id template from one run's (nested) config fields."""
    assert spec.run_id is not None

    def field_value(m: re.Match[str]) -> str:
        path = _template_path(m.group(1), spec)
        value = _get_path(config, path, _MISSING)
        if value is _MISSING and not path.startswith("model_args."):
            value = field_default(path)
        if value is _MISSING or value is None:
            raise ConfigError(
                f"{spec.source or spec.name}: run_id template field {{{m.group(1)}}} has no value: "
                "set it in [base] or [grid]"
            )
        return fmt_value(value)

    return _FIELD.sub(field_value, spec.run_id)


# ----------------------------------------------------------------------------- expansion


def _as_config(d: Mapping[str, Any], where: str) -> RunConfig:
    # Schedule.from_dict reads a missing ``every`` as None, not the dataclass default: fill defaults first.
    d = {**d, "schedule": {**Schedule().to_dict(), **dict(d.get("schedule") or {})}}
    try:
        return RunConfig.from_dict(d)
    except (ValidationError, ConfigError) as e:
        msg = str(e).removeprefix("run config: ")
        raise ConfigError(f"{where}: {msg}") from None


#: Completes a model's arguments with its defaults: ``(model, args) -> all args``.
ArgResolver = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]


def registry_args(model: str, args: Mapping[str, Any]) -> Mapping[str, Any]:
    """The model registry's completion of ``args`` (imports torch)."""
    from sgnlake.collect.models import resolve_model_args

    return resolve_model_args(model, args)


def expand(spec: SweepSpec, *, resolve_args: ArgResolver | None = registry_args) -> list[RunConfig]:
    """The sweep's runs: the product of the grid lists over the base, in file order.

    Runs without a ``run_id`` template are named by the collector's rule
    (:func:`sgnlake.collect.run_ids.derive_run_id`, the grid axes outside its
    core fields added), so ``sgnlake collect`` with the same settings gives the same id.

    Parameters
    ----------
    spec : SweepSpec
        The parsed sweep.
    resolve_args : callable or None
        Completes model arguments with the model's defaults before naming, as
        ``sgnlake collect`` does (default: the model registry, which imports
        torch). None names runs by the model arguments as given (pure Python).

    Raises
    ------
    ConfigError
        A run's fields are invalid, or two runs get the same id.
    """
    axes = list(spec.grid)
    configs: list[RunConfig] = []
    seen: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(spec.grid[a] for a in axes)):
        values = dict(zip(axes, combo, strict=True))
        d = _deepcopy_plain(spec.base)
        for path, v in values.items():
            _set_path(d, path, v)
        where = spec.source or spec.name
        if "model" not in d:
            raise ConfigError(f'{where}: [base] needs model (e.g. model = "fcn")')
        if "batch_size" not in d:
            raise ConfigError(f"{where}: set batch_size in [base] or [grid]")
        if spec.run_id is not None:
            rid = format_run_id(spec, d)
        else:
            named = d
            if resolve_args is not None:
                named = {**d, "model_args": dict(resolve_args(d["model"], d.get("model_args") or {}))}
            rid = derive_run_id(named, axes)
        try:
            check_run_id(rid)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if rid in seen:
            raise ConfigError(
                f"{where}: runs {seen[rid]} and {values} both get run id {rid!r}: "
                "put every grid axis in the run_id template"
            )
        seen[rid] = values
        d["run_id"] = rid
        d.setdefault("lr", RunConfig.__dataclass_fields__["lr"].default)
        configs.append(_as_config(d, f"{where} run {rid}"))
    return configs
