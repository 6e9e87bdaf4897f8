"""Sweep files: parsing and checking a grid spec, the shipped presets, ``--set`` overrides.

Pure Python (no torch): importable and testable where torch is absent.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sgnlake.schema import ConfigError, RunConfig, Schedule, StorageSpec

# ----------------------------------------------------------------------------- spec

#: Fields of the ``[base]`` table (RunConfig fields except ``run_id``, which comes from the template).
BASE_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "run_id")
SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(Schedule))
STORAGE_FIELDS = tuple(f.name for f in dataclasses.fields(StorageSpec))
_SUBTABLES = {"schedule": SCHEDULE_FIELDS, "storage": STORAGE_FIELDS}
TOP_LEVEL_KEYS = ("name", "description", "run_id", "base", "grid")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: base run fields, grid axes and the run-id template.

    Parameters
    ----------
    name : str
        Name of the sweep (the preset name, or the file stem).
    base : mapping
        RunConfig fields shared by all runs (nested ``model_args``, ``schedule``, ``storage``).
    grid : mapping of str to list
        Axis path (``batch_size``, ``model_args.depth``, ``schedule.every``) to its values,
        in file order.
    run_id : str or None
        Run-id template with ``{axis}`` fields; None derives ids from the grid axes.
    description : str
        Free text.
    source : str
        Where the spec came from (file path or ``preset:NAME``), for messages.
    """

    name: str
    base: Mapping[str, Any]
    grid: Mapping[str, tuple[Any, ...]]
    run_id: str | None = None
    description: str = ""
    source: str = ""


def _check_path(path: str, where: str) -> None:
    """Raise ConfigError unless ``path`` names a RunConfig field (or a sub-field)."""
    parts = path.split(".")
    head = parts[0]
    if head not in BASE_FIELDS:
        raise ConfigError(
            f"{where}: unknown field {head!r}: use one of {', '.join(BASE_FIELDS)} "
            "(model arguments go under model_args)"
        )
    if head in _SUBTABLES:
        if len(parts) != 2 or parts[1] not in _SUBTABLES[head]:
            raise ConfigError(
                f"{where}: unknown field {path!r}: {head} fields are {', '.join(_SUBTABLES[head])}"
            )
    elif head == "model_args":
        if len(parts) != 2 or not parts[1]:
            raise ConfigError(f"{where}: write model arguments as model_args.NAME, got {path!r}")
    elif len(parts) != 1:
        raise ConfigError(f"{where}: field {head!r} has no sub-fields, got {path!r}")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _set_path(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = d
    for p in parts[:-1]:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {} if child is None else dict(child)
            node[p] = child
        node = child
    node[parts[-1]] = value


def _get_path(d: Mapping[str, Any], path: str, default: Any = None) -> Any:
    node: Any = d
    for p in path.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return default
        node = node[p]
    return node


def _deepcopy_plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy_plain(v) if isinstance(v, Mapping) else v for k, v in d.items()}


def parse_spec(doc: Mapping[str, Any], *, name: str = "sweep", source: str = "") -> SweepSpec:
    """Validate a sweep document (the parsed TOML) and return a :class:`SweepSpec`.

    Raises
    ------
    ConfigError
        Unknown key or field, a grid value that is not a non-empty list, a bad template.
    """
    where = source or name
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}: a sweep file has {', '.join(TOP_LEVEL_KEYS)}")
    base = doc.get("base", {})
    grid = doc.get("grid", {})
    if not isinstance(base, Mapping):
        raise ConfigError(f"{where}: 'base' must be a table ([base])")
    if not isinstance(grid, Mapping):
        raise ConfigError(f"{where}: 'grid' must be a table ([grid])")
    if "run_id" in base:
        raise ConfigError(f"{where}: put run_id at the top of the file (a template), not in [base]")
    for key, value in base.items():
        if key not in _SUBTABLES and key != "model_args":
            _check_path(key, f"{where} [base]")
        else:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where} [base]: {key} must be a table, e.g. [base.{key}]")
            for sub in value:
                _check_path(f"{key}.{sub}", f"{where} [base]")
    flat_grid: dict[str, tuple[Any, ...]] = {}
    for path, values in _flatten(grid).items():
        _check_path(path, f"{where} [grid]")
        if not isinstance(values, list):
            raise ConfigError(
                f"{where} [grid]: {path} must be a list of values, e.g. {path} = [{values!r}] "
                "(put fixed values in [base])"
            )
        if not values:
            raise ConfigError(f"{where} [grid]: {path} is an empty list: give at least one value")
        flat_grid[path] = tuple(values)
    template = doc.get("run_id")
    if template is not None and not isinstance(template, str):
        raise ConfigError(f"{where}: run_id must be a string template like 'fcn-b{{batch_size}}'")
    sname = doc.get("name", name)
    if not isinstance(sname, str):
        raise ConfigError(f"{where}: name must be a string")
    desc = doc.get("description", "")
    spec = SweepSpec(
        name=sname,
        base=_deepcopy_plain(base),
        grid=flat_grid,
        run_id=template,
        description=str(desc),
        source=where,
    )
    if template is not None:
        for fname in _template_fields(template):
            _template_path(fname, spec)  # raises on unknown names
    return spec


def loads_spec(text: str, *, name: str = "sweep", source: str = "") -> SweepSpec:
    """Parse a sweep from TOML text; a syntax error becomes a one-line :class:`ConfigError`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source or name}: invalid TOML ({e}): fix the file") from None
    return parse_spec(doc, name=name, source=source)


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read a sweep file.

    Parameters
    ----------
    path : str or path
        A TOML file with ``[base]`` and ``[grid]`` tables.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no sweep file {p}: check the path (or use --preset)") from None
    except OSError as e:
        raise ConfigError(f"cannot read sweep file {p}: {e.strerror}") from None
    return loads_spec(text, name=p.stem, source=str(p))


# ----------------------------------------------------------------------------- presets


def preset_names() -> list[str]:
    """Names of the shipped presets (``collect/presets/*.toml``)."""
    folder = resources.files("sgnlake.collect") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML text of preset ``name`` (copy it to make your own grid)."""
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}: use one of {', '.join(preset_names())}")
    return (resources.files("sgnlake.collect") / "presets" / f"{name}.toml").read_text(encoding="utf-8")


def load_preset(name: str) -> SweepSpec:
    """Parse preset ``name``."""
    return loads_spec(preset_text(name), name=name, source=f"preset {name}")


def preset_description(name: str) -> str:
    """The preset's ``description`` line."""
    return load_preset(name).description


# ----------------------------------------------------------------------------- overrides


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML value (``50``, ``0.1``, ``true``, ``[1, 2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def with_overrides(spec: SweepSpec, items: Iterable[str | tuple[str, Any]]) -> SweepSpec:
    """Return ``spec`` with ``key=value`` overrides applied.

    ``grid.PATH=[...]`` replaces (or adds) a grid axis. ``PATH=value`` sets a
    base field; if ``PATH`` is a grid axis it becomes that single value (the
    axis stays, so derived run ids keep their form).
    """
    base = _deepcopy_plain(spec.base)
    grid = dict(spec.grid)
    for item in items:
        if isinstance(item, tuple):
            key, value = item
        else:
            if "=" not in item:
                raise ConfigError(f"bad --set {item!r}: use PATH=VALUE, e.g. --set schedule.every=500")
            key, raw = item.split("=", 1)
            value = parse_value(raw.strip())
        key = key.strip()
        if key.startswith("grid."):
            path = key[len("grid.") :]
            _check_path(path, "--set")
            if not isinstance(value, list) or not value:
                raise ConfigError(f"--set {key}: a grid axis needs a non-empty list, e.g. {key}=[1, 2]")
            grid[path] = tuple(value)
            continue
        _check_path(key, "--set")
        if key in grid:
            grid[key] = (value,)
        else:
            _set_path(base, key, value)
    return dataclasses.replace(spec, base=base, grid=grid)


# ----------------------------------------------------------------------------- run-id templates

_FIELD = re.compile(r"\{([^{}]*)\}")


def _template_fields(template: str) -> list[str]:
    return _FIELD.findall(template)


def _template_path(name: str, spec: SweepSpec) -> str:
    """Config path of template field ``{name}``: a RunConfig path, or a bare model argument."""
    name = name.strip()
    where = spec.source or spec.name
    if "." in name or name in BASE_FIELDS:
        _check_path(name, f"{where} run_id template")
        return name
    path = f"model_args.{name}"
    if path in spec.grid or _get_path(spec.base, path, _MISSING) is not _MISSING:
        return path
    raise ConfigError(
        f"{where}: run_id template field {{{name}}} is not a config field or model argument: "
        "use e.g. {batch_size}, {depth}, {schedule.every}"
    )


_MISSING = object()
