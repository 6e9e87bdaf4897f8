"""Experiment sweeps: grid configs in TOML, run ids, planning, size estimates, resumable running.

A sweep file has a ``[base]`` table of :class:`~sgnlake.schema.RunConfig` fields
(``schedule`` and ``storage`` as sub-tables, ``model_args`` as a table) and a
``[grid]`` table whose values are lists; the runs are the product of the grid
lists applied on top of the base::

    name = "my-grid"
    run_id = "fcn-d{depth}-b{batch_size}"   # optional; derived from the grid axes if absent

    [base]
    model = "fcn"
    lr = 0.1
    iterations = 600
    model_args = { width = 32 }
    schedule = { kind = "every", every = 100 }

    [grid]
    batch_size = [50, 100]
    model_args.depth = [2, 3]

Rerunning a sweep skips complete runs and resumes interrupted ones (the
collector's ``resume=True``); see :func:`run_sweep`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import itertools
import math
import multiprocessing
import os
import re
import signal
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sgnlake.schema import (
    ConfigError,
    RunConfig,
    Schedule,
    SgnlakeError,
    StorageSpec,
    ValidationError,
    check_run_id,
)
from sgnlake.schema.names import COMPLETE

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


# ----------------------------------------------------------------------------- run ids

#: Short names of axes in derived run ids (others use their last path component).
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
}
#: Order of axes in derived run ids (then other model args, then other fields, sorted; seed last).
_ID_ORDER = ("model", "dataset", "model_args.depth", "model_args.width")
_ID_AFTER_MODEL_ARGS = ("batch_size", "lr", "epochs", "iterations", "n_train")


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        s = f"{v:g}"
        return s.replace("+", "")
    if isinstance(v, list | tuple):
        return "+".join(_fmt_value(x) for x in v) or "none"
    s = re.sub(r"[^A-Za-z0-9_.=+-]", "_", str(v))
    return s.replace("..", "_")


def _id_axes(spec: SweepSpec) -> list[str]:
    axes = list(spec.grid)
    model_args = sorted(a for a in axes if a.startswith("model_args.") and a not in _ID_ORDER)
    rest = sorted(a for a in axes if a not in _ID_ORDER and a not in model_args)
    head = [a for a in _ID_ORDER if a in axes]
    mid = [a for a in _ID_AFTER_MODEL_ARGS if a in rest]
    tail = [a for a in rest if a not in _ID_AFTER_MODEL_ARGS and a != "seed"]
    return head + model_args + mid + tail


def derive_run_id(spec: SweepSpec, values: Mapping[str, Any]) -> str:
    """Run id from the model name, the grid axes and the seed, e.g. ``fcn-d3-w32-b50-s0``.

    The id depends only on the grid's axis names and this run's values (not on
    the order of the axes or values in the file), so it is stable across reruns.
    """
    model = values.get("model", spec.base.get("model", "run"))
    parts = [_fmt_value(model)]
    for axis in _id_axes(spec):
        if axis == "model":
            continue
        abbr = ABBREV.get(axis, axis.split(".")[-1].replace("_", ""))
        parts.append(f"{abbr}{_fmt_value(values[axis])}")
    seed = values.get("seed", spec.base.get("seed", 0))
    parts.append(f"s{_fmt_value(seed)}")
    return "-".join(parts)


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


def _default_value(path: str) -> Any:
    parts = path.split(".")
    if parts[0] in _SUBTABLES:
        cls = Schedule if parts[0] == "schedule" else StorageSpec
        f = cls.__dataclass_fields__[parts[1]]
    else:
        f = RunConfig.__dataclass_fields__[parts[0]]
    return f.default if f.default is not dataclasses.MISSING else None


_MISSING = object()


def format_run_id(spec: SweepSpec, config: Mapping[str, Any]) -> str:
    """Fill the spec's run-id template from one run's (nested) config fields."""
    assert spec.run_id is not None

    def field_value(m: re.Match[str]) -> str:
        path = _template_path(m.group(1), spec)
        value = _get_path(config, path, _MISSING)
        if value is _MISSING and not path.startswith("model_args."):
            value = _default_value(path)
        if value is _MISSING or value is None:
            raise ConfigError(
                f"{spec.source or spec.name}: run_id template field {{{m.group(1)}}} has no value: "
                "set it in [base] or [grid]"
            )
        return _fmt_value(value)

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


def expand(spec: SweepSpec) -> list[RunConfig]:
    """The sweep's runs: the product of the grid lists over the base, in file order.

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
        if spec.run_id is not None:
            rid = format_run_id(spec, d)
        else:
            rid = derive_run_id(spec, values)
        try:
            check_run_id(rid)
        except ConfigError as e:
            raise ConfigError(f"{spec.source or spec.name}: {e}") from None
        if rid in seen:
            raise ConfigError(
                f"{spec.source or spec.name}: runs {seen[rid]} and {values} both get run id {rid!r}: "
                "put every grid axis in the run_id template"
            )
        seen[rid] = values
        d["run_id"] = rid
        if "model" not in d:
            raise ConfigError(f'{spec.source or spec.name}: [base] needs model (e.g. model = "fcn")')
        if "batch_size" not in d:
            raise ConfigError(f"{spec.source or spec.name}: set batch_size in [base] or [grid]")
        d.setdefault("lr", RunConfig.__dataclass_fields__["lr"].default)
        configs.append(_as_config(d, f"{spec.source or spec.name} run {rid}"))
    return configs


# ----------------------------------------------------------------------------- planning

#: Training-set sizes of the known datasets (``n_train`` caps them).
DATASET_SIZES = {"mnist5k": 5000, "mnist": 60000, "fashionmnist": 60000, "cifar10": 50000}
#: Input shape (channels, height, width) of the known datasets.
DATASET_SHAPES = {
    "mnist5k": (1, 28, 28),
    "mnist": (1, 28, 28),
    "fashionmnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
#: Bytes per snapshot of the run-level arrays: iteration int64, loss and accuracy float64.
RUN_ARRAY_BYTES = 8 + 8 + 8
GB = 1e9


@dataclass(frozen=True)
class RunPlan:
    """What one run will write, known before it runs.

    Parameters
    ----------
    config : RunConfig
        The run's configuration.
    n_examples : int
        Training examples n used.
    n_minibatches : int
        M = floor(n / b), SGN samples per parameter and snapshot.
    total_steps : int
        SGD updates.
    steps_per_epoch : int
        Updates per epoch.
    iterations : tuple of int
        Snapshot iterations.
    tensors : tuple of (str, int)
        Stored tensors and their number of parameters.
    """

    config: RunConfig
    n_examples: int
    n_minibatches: int
    total_steps: int
    steps_per_epoch: int
    iterations: tuple[int, ...]
    tensors: tuple[tuple[str, int], ...]

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def n_snapshots(self) -> int:
        return len(self.iterations)

    @property
    def n_params(self) -> int:
        return sum(n for _, n in self.tensors)

    @property
    def itemsize(self) -> int:
        return 2 if self.config.storage.dtype == "float16" else 4

    @property
    def sgn_bytes(self) -> int:
        """Uncompressed bytes of every tensor's ``sgn`` array."""
        return self.n_snapshots * self.n_minibatches * self.n_params * self.itemsize

    @property
    def grad_weight_bytes(self) -> int:
        """Uncompressed bytes of the ``grad`` and ``weight`` arrays."""
        return 2 * self.n_snapshots * self.n_params * self.itemsize

    @property
    def run_array_bytes(self) -> int:
        """Uncompressed bytes of ``iteration``, ``loss`` and ``accuracy``."""
        return self.n_snapshots * RUN_ARRAY_BYTES

    @property
    def total_bytes(self) -> int:
        """Uncompressed bytes the run writes (checkpoints not counted)."""
        return self.sgn_bytes + self.grad_weight_bytes + self.run_array_bytes

    @property
    def cost(self) -> float:
        """Relative compute cost (gradient evaluations x parameters), for scheduling."""
        return float(self.n_params) * (
            self.total_steps * self.config.batch_size + self.n_snapshots * self.n_examples
        )


def dataset_size(config: RunConfig) -> int:
    """Training examples a run uses: the dataset's size capped by ``n_train``."""
    try:
        full = DATASET_SIZES[config.dataset]
    except KeyError:
        raise ConfigError(
            f"run {config.run_id}: unknown dataset {config.dataset!r}: use one of {', '.join(DATASET_SIZES)}"
        ) from None
    if config.n_train is not None and config.n_train > full:
        raise ConfigError(
            f"run {config.run_id}: --n-train {config.n_train} exceeds the {full} examples of {config.dataset!r}"
        )
    return config.n_train or full


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """SGD updates per epoch (the last, smaller batch of an epoch counts as a step)."""
    return max(1, math.ceil(n_examples / batch_size))


_TENSOR_CACHE: dict[tuple[Any, ...], tuple[tuple[str, int], ...]] = {}


def model_tensors(config: RunConfig) -> tuple[tuple[str, int], ...]:
    """(name, numel) of every parameter tensor of the run's model, in ``named_parameters()`` order."""
    key = (config.model, repr(sorted(config.model_args.items())), config.dataset)
    if key not in _TENSOR_CACHE:
        _TENSOR_CACHE[key] = _model_tensors(config)
    return _TENSOR_CACHE[key]


def _model_tensors(config: RunConfig) -> tuple[tuple[str, int], ...]:
    """Build the model on torch's ``meta`` device (no memory, no RNG use) and list its tensors."""
    import torch

    from sgnlake.collect.models import build_model

    shape = DATASET_SHAPES.get(config.dataset, (1, 28, 28))
    with torch.device("meta"):
        model = build_model(config.model, input_shape=shape, num_classes=10, **dict(config.model_args))
    return tuple((name, int(p.numel())) for name, p in model.named_parameters())


def plan_run(config: RunConfig) -> RunPlan:
    """Resolve a run's size and schedule without running it (and without reading its data).

    Follows the collector's rules (:mod:`sgnlake.collect.config`): missing model
    arguments take their defaults, neither ``epochs`` nor ``iterations`` means one
    epoch, an epoch is ``ceil(n / b)`` steps, M = ``floor(n / b)``.
    """
    from sgnlake.collect.config import resolve_config

    resolved = resolve_config(config)
    n = dataset_size(resolved)
    b = resolved.batch_size
    if b > n:
        raise ConfigError(f"run {config.run_id}: batch size {b} exceeds the {n} training examples")
    spe = steps_per_epoch(n, b)
    total = resolved.iterations if resolved.iterations is not None else (resolved.epochs or 1) * spe
    its = tuple(resolved.schedule.iterations(total, spe))
    tensors = model_tensors(resolved)
    if resolved.tensors:
        known = {name for name, _ in tensors}
        bad = [t for t in resolved.tensors if t not in known]
        if bad:
            raise ConfigError(
                f"run {config.run_id}: unknown tensor {bad[0]!r}: the model has {', '.join(sorted(known))}"
            )
        tensors = tuple(t for t in tensors if t[0] in resolved.tensors)
    return RunPlan(
        config=config,
        n_examples=n,
        n_minibatches=n // b,
        total_steps=total,
        steps_per_epoch=spe,
        iterations=its,
        tensors=tensors,
    )


def plan(configs: Sequence[RunConfig]) -> list[RunPlan]:
    """Plan every run of a sweep."""
    return [plan_run(c) for c in configs]


def fmt_bytes(n: float) -> str:
    """Bytes with a unit (B, kB, MB, GB, TB; powers of 1000)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def expected_ratio(storage: StorageSpec) -> tuple[float, float]:
    """Range of the expected compression ratio (uncompressed / on disk) for a storage spec.

    Measured on the small presets (mnist5k, zstd level 3 — level 1, the default, stores ~2.5% more; LeNet b=150 and FCN
    d3-w32 b=100): lossless 1.24x and 1.52x (FCN inputs include always-blank
    border pixels, whose weights get exactly zero SGN); BitRound keepbits 10
    1.85x / 2.19x; keepbits 7 2.41x / 2.79x; ``float16`` 1.24x / 1.49x on top
    of its halved size. Heavy-tailed SGN without zeros compresses less
    (design.md: zstd 1.07x), so the low ends are rounded down.
    """
    if storage.codec == "none":
        return (1.0, 1.0)
    kb = storage.keepbits
    if kb is None or kb > 15:
        return (1.1, 1.55)
    if kb <= 7:
        return (2.3, 2.8)
    if kb <= 10:
        return (1.8, 2.2)
    return (1.3, 1.8)


def format_plan(plans: Sequence[RunPlan], *, max_rows: int | None = None) -> str:
    """The ``--dry-run`` text: one line per run, the total, and what bounds it."""
    lines = [
        f"{'run':<28} {'snapshots':>9} {'M':>6} {'params':>9} {'steps':>7} {'uncompressed':>13}",
    ]
    shown = plans if max_rows is None or len(plans) <= max_rows else plans[:max_rows]
    for p in shown:
        lines.append(
            f"{p.run_id:<28} {p.n_snapshots:>9} {p.n_minibatches:>6} {p.n_params:>9} "
            f"{p.total_steps:>7} {fmt_bytes(p.total_bytes):>13}"
        )
    if len(shown) < len(plans):
        lines.append(f"... {len(plans) - len(shown)} more runs")
    total = sum(p.total_bytes for p in plans)
    sgn = sum(p.sgn_bytes for p in plans)
    lo = sum(p.total_bytes / expected_ratio(p.config.storage)[1] for p in plans)
    hi = sum(p.total_bytes / expected_ratio(p.config.storage)[0] for p in plans)
    snaps = sum(p.n_snapshots for p in plans)
    lines.append(
        f"total: {len(plans)} runs, {snaps} snapshots, {total / GB:.3f} GB uncompressed "
        f"({sgn / GB:.3f} GB of it SGN), about {lo / GB:.3f}-{hi / GB:.3f} GB on disk "
        "(+ one checkpoint per run)"
    )
    empty = [p for p in plans if p.n_snapshots == 0]
    if empty:
        lines.append(
            f"warning: {len(empty)} runs take no snapshot (e.g. {empty[0].run_id}: "
            f"{empty[0].total_steps} steps, {empty[0].steps_per_epoch} per epoch): "
            "lower --every or train longer"
        )
    lines.append(
        "size per run = snapshots x (M x params + 2 x params) x bytes per value "
        "(4 for float32, 2 for float16); what bounds it:"
    )
    lines.append(
        "  snapshots: the schedule (--every N / --set schedule.every=N, schedule.kind=logspace) "
        "- size is linear in the number of snapshots"
    )
    lines.append(
        "  M = floor(n_train / batch): --n-train N (or --set n_train=N) shrinks M and the size linearly"
    )
    lines.append(
        "  params: --tensors fc3.weight,fc3.bias stores only those tensors (size linear in their parameters)"
    )
    lines.append(
        "  codec: lossless zstd gives 1.1-1.55x on SGN; lossy --keepbits 10 ~1.8-2.2x, "
        "--keepbits 7 ~2.3-2.8x, --dtype float16 2x uncompressed and ~2.5-3x on disk "
        "(recorded per run; check alpha before relying on it)"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- running

DONE, RESUMED, SKIPPED, FAILED, INTERRUPTED = "done", "resumed", "skipped", "failed", "interrupted"
NOT_STARTED = "not started"


@dataclass
class RunOutcome:
    """What happened to one run of a sweep.

    Parameters
    ----------
    run_id : str
        The run.
    action : {"done", "resumed", "skipped", "failed", "interrupted", "not started"}
        ``done``: collected from scratch; ``resumed``: continued from its last
        committed snapshot; ``skipped``: already complete; ``failed``: raised
        (``message`` says why); ``interrupted``: stopped by Ctrl-C;
        ``not started``: the sweep was interrupted before it.
    seconds : float
        Wall time spent on it.
    bytes_written : int
        Growth of the run's group on the store (compressed bytes).
    message : str
        One-line reason for ``failed`` / ``skipped``.
    """

    run_id: str
    action: str
    seconds: float = 0.0
    bytes_written: int = 0
    message: str = ""


@dataclass
class SweepSummary:
    """Outcomes of a sweep invocation."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False  # Ctrl-C ended the sweep early

    def ids(self, *actions: str) -> list[str]:
        """Run ids whose action is one of ``actions``."""
        return [o.run_id for o in self.outcomes if o.action in actions]

    @property
    def n_done(self) -> int:
        return len(self.ids(DONE, RESUMED))

    @property
    def n_failed(self) -> int:
        return len(self.ids(FAILED))

    @property
    def interrupted(self) -> bool:
        return self.stopped or bool(self.ids(INTERRUPTED, NOT_STARTED))

    @property
    def bytes_written(self) -> int:
        return sum(o.bytes_written for o in self.outcomes)

    def format(self) -> str:
        """The end-of-sweep summary (several lines; failures one line each)."""
        n = len(self.outcomes)
        resumed = len(self.ids(RESUMED))
        line = (
            f"sweep: {n} runs: {self.n_done} done ({resumed} resumed), {len(self.ids(SKIPPED))} skipped "
            f"(complete), {self.n_failed} failed"
        )
        if self.interrupted:
            line += f", {len(self.ids(INTERRUPTED))} interrupted, {len(self.ids(NOT_STARTED))} not started"
        line += f"; {fmt_bytes(self.bytes_written)} written in {_fmt_seconds(self.seconds)}"
        lines = [line]
        for o in self.outcomes:
            if o.action == FAILED:
                lines.append(f"  failed {o.run_id}: {o.message}")
        if self.n_failed or self.interrupted:
            lines.append("  rerun the same command to retry: complete runs are skipped, the others resume")
        return "\n".join(lines)


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def stored_bytes(
    location: str | os.PathLike[str], run_id: str, storage_options: Mapping[str, Any] | None = None
) -> int:
    """Bytes stored under ``runs/<run_id>`` (0 if absent); local paths or fsspec URLs."""
    from sgnlake.schema.names import run_path
    from sgnlake.schema.store import is_url, local_path

    loc = os.fspath(location)
    if is_url(loc):
        import fsspec

        fs, root = fsspec.core.url_to_fs(loc, **dict(storage_options or {}))
        path = f"{root.rstrip('/')}/{run_path(run_id)}"
        try:
            return int(fs.du(path, total=True))
        except FileNotFoundError:
            return 0
    folder = Path(local_path(loc)) / run_path(run_id)
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def existing_runs(
    location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """RunMeta of every run already in the lake (empty if there is no lake yet); writes nothing."""
    from sgnlake.schema import NotALakeError, open_lake_group, read_run_meta, run_group, run_ids
    from sgnlake.schema.store import is_url, local_path

    loc = os.fspath(location)
    if not is_url(loc) and not os.path.exists(local_path(loc)):
        return {}
    try:
        root = open_lake_group(loc, mode="r", storage_options=storage_options)
    except NotALakeError:
        if not is_url(loc) and os.path.isdir(local_path(loc)) and not os.listdir(local_path(loc)):
            return {}
        if is_url(loc):
            return {}
        raise
    return {rid: read_run_meta(run_group(root, rid)) for rid in run_ids(root)}


def config_conflict(p: RunPlan, meta: Any) -> str | None:
    """Why an existing run (its RunMeta) is not the planned run, or None if it is.

    Uses the collector's rule for resuming: after resolving defaults, the configs
    may differ only in ``device``, ``memory_budget_mb`` and ``data_dir``.
    """
    from sgnlake.collect.config import resolve_config
    from sgnlake.collect.runner import RESUME_MAY_DIFFER

    have, want = meta.config.to_dict(), resolve_config(p.config).to_dict()
    for key, value in have.items():
        if key not in RESUME_MAY_DIFFER and want.get(key) != value:
            return f"{key} is {value!r} in the lake, {want.get(key)!r} in the sweep"
    return None


def is_complete(meta: Any) -> bool:
    """True when a run is complete: status complete and every planned snapshot committed."""
    return meta.status == COMPLETE and meta.committed >= len(meta.planned_iterations)


def _uses_gpu(configs: Sequence[RunConfig]) -> bool:
    devices = {c.device for c in configs}
    if any(d.startswith("cuda") for d in devices):
        return True
    if "auto" in devices:
        import torch

        return bool(torch.cuda.is_available())
    return False


_IN_WORKER = False  # set in sweep worker processes


def _run_one(
    location: str,
    config: dict[str, Any],
    resume: bool,
    progress: bool,
    storage_options: Mapping[str, Any] | None,
    collect_kwargs: Mapping[str, Any],
) -> RunOutcome:
    """Collect one run (in this process or a worker); never raises except on Ctrl-C."""
    if _IN_WORKER:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops this run
    try:
        return _collect_one(location, config, resume, progress, storage_options, collect_kwargs)
    finally:
        if _IN_WORKER:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # an idle worker ignores it


def _worker_init() -> None:
    """Worker processes ignore Ctrl-C except while running a run (no tracebacks from idle workers)."""
    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _collect_one(
    location: str,
    config: dict[str, Any],
    resume: bool,
    progress: bool,
    storage_options: Mapping[str, Any] | None,
    collect_kwargs: Mapping[str, Any],
) -> RunOutcome:
    from sgnlake.collect import collect

    cfg = RunConfig.from_dict(config)
    t0 = time.perf_counter()
    before = stored_bytes(location, cfg.run_id, storage_options)
    try:
        collect(
            location,
            cfg,
            resume=resume,
            progress=progress,
            storage_options=dict(storage_options) if storage_options else None,
            **dict(collect_kwargs),
        )
    except KeyboardInterrupt:
        return RunOutcome(
            cfg.run_id,
            INTERRUPTED,
            time.perf_counter() - t0,
            max(0, stored_bytes(location, cfg.run_id, storage_options) - before),
        )
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the sweep
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        name = "" if isinstance(e, SgnlakeError) else f"{type(e).__name__}: "
        return RunOutcome(
            cfg.run_id,
            FAILED,
            time.perf_counter() - t0,
            max(0, stored_bytes(location, cfg.run_id, storage_options) - before),
            f"{name}{msg}",
        )
    after = stored_bytes(location, cfg.run_id, storage_options)
    return RunOutcome(
        cfg.run_id, RESUMED if resume else DONE, time.perf_counter() - t0, max(0, after - before)
    )


def _stop_workers(pool: cf.ProcessPoolExecutor, futures: list[cf.Future], grace: float = 3.0) -> None:
    """Stop the runs still going after a Ctrl-C.

    From a terminal, Ctrl-C reaches the workers too and each marks its run
    interrupted; runs still going after ``grace`` seconds (the signal went to
    this process only, or a queued run started) get a SIGINT forwarded to the
    pool's worker processes, until every future is done.
    """
    while True:
        pending = [f for f in futures if not f.done()]
        if not pending:
            return
        done, _ = cf.wait(pending, timeout=grace)
        if len(done) == len(pending):
            return
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGINT)


def default_threads(jobs: int) -> int:
    """Torch threads per CPU run: the cores per job minus one for the collector's writer thread, >= 1.

    Oversubscribing the cores is what hurts: on the 2-core development machine
    (shared, load ~10-15) the LeNet preset took 27 min with torch's default of
    2 threads and 1.2 min with 1 thread (busy-waiting OpenMP threads).
    """
    return max(1, (os.cpu_count() or 1) // max(1, jobs) - 1)


def run_sweep(
    location: str | os.PathLike[str],
    plans: Sequence[RunPlan],
    *,
    jobs: int = 1,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    collect_kwargs: Mapping[str, Any] | None = None,
    threads: int | None = None,
    echo: Callable[[str], None] | None = print,
) -> SweepSummary:
    """Run (or skip, or resume) every planned run into one lake.

    A run already complete in the lake is skipped; a run present but not
    complete (interrupted, crashed, failed) is resumed from its last committed
    snapshot with the collector's ``resume=True``. A run whose stored config
    disagrees with the plan is reported as failed and left untouched. A failed
    run does not stop the sweep and is not retried within the same invocation
    (a deterministic failure such as divergence would only fail again); rerunning
    the sweep retries it by resuming.

    Parameters
    ----------
    location : str or path
        Lake path or fsspec URL (created if missing).
    plans : sequence of RunPlan
        From :func:`plan`.
    jobs : int
        Worker processes on CPU, each running whole runs (different runs write
        different groups of the lake). Runs on a GPU go one after another.
    progress : bool
        Show the collector's progress bars (only with one job).
    storage_options : mapping, optional
        fsspec options for URL lakes.
    collect_kwargs : mapping, optional
        Extra keyword arguments for :func:`sgnlake.collect.collect`.
    threads : int, optional
        Torch threads per CPU run; default :func:`default_threads`.
    echo : callable or None
        Receives one line per run as it finishes.

    Returns
    -------
    SweepSummary
    """
    from sgnlake.schema import open_lake_group

    say = echo or (lambda _s: None)
    loc = os.fspath(location)
    t0 = time.perf_counter()
    summary = SweepSummary()
    existing = existing_runs(loc, storage_options)
    todo: list[tuple[RunPlan, bool]] = []
    for p in plans:
        meta = existing.get(p.run_id)
        if meta is None:
            todo.append((p, False))
            continue
        conflict = config_conflict(p, meta)
        if conflict:
            summary.outcomes.append(
                RunOutcome(
                    p.run_id,
                    FAILED,
                    message=f"a run {p.run_id!r} with another config is in the lake ({conflict}): "
                    "use another lake or a run_id template",
                )
            )
            say(f"failed   {p.run_id}: exists with another config ({conflict})")
        elif is_complete(meta):
            summary.outcomes.append(RunOutcome(p.run_id, SKIPPED, message="complete"))
            say(f"skipped  {p.run_id} (complete, {meta.committed} snapshots)")
        else:
            todo.append((p, True))
    if todo:
        open_lake_group(loc, mode="a", storage_options=storage_options)  # create once, before workers
    kwargs = dict(collect_kwargs or {})
    gpu = bool(todo) and _uses_gpu([p.config for p, _ in todo])
    if jobs > 1 and gpu:
        say("runs use a GPU: running them one after another (--jobs ignored)")
        jobs = 1
    jobs = max(1, min(jobs, len(todo)))
    if threads is not None:
        kwargs["threads"] = threads
    elif not gpu:
        kwargs["threads"] = default_threads(jobs)

    def record(o: RunOutcome) -> None:
        summary.outcomes.append(o)
        extra = f": {o.message}" if o.message else ""
        say(f"{o.action:<8} {o.run_id} in {_fmt_seconds(o.seconds)}, {fmt_bytes(o.bytes_written)}{extra}")

    if jobs == 1:
        for p, resume in todo:
            say(f"{'resume' if resume else 'collect'}  {p.run_id}")
            o = _run_one(loc, p.config.to_dict(), resume, progress, storage_options, kwargs)
            record(o)
            if o.action == INTERRUPTED:
                summary.stopped = True
                done = {x.run_id for x in summary.outcomes}
                summary.outcomes.extend(
                    RunOutcome(q.run_id, NOT_STARTED) for q, _ in todo if q.run_id not in done
                )
                break
    else:
        ordered = sorted(todo, key=lambda t: -t[0].cost)  # longest first balances the workers
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {
                pool.submit(_run_one, loc, p.config.to_dict(), resume, False, storage_options, kwargs): p
                for p, resume in ordered
            }
            say(f"running {len(futures)} runs in {jobs} processes ({kwargs['threads']} torch threads each)")
            try:
                for fut in cf.as_completed(futures):
                    try:
                        record(fut.result())
                    except BaseException as e:  # noqa: BLE001 - a crashed worker
                        if isinstance(e, KeyboardInterrupt):
                            raise
                        record(RunOutcome(futures[fut].run_id, FAILED, message=f"worker died: {e}"))
            except KeyboardInterrupt:
                summary.stopped = True
                for fut in futures:
                    fut.cancel()
                _stop_workers(pool, list(futures))
                pool.shutdown(wait=True, cancel_futures=True)
                seen = {o.run_id for o in summary.outcomes}
                for fut, p in futures.items():
                    if p.run_id in seen:
                        continue
                    outcome = RunOutcome(p.run_id, NOT_STARTED if fut.cancelled() else INTERRUPTED)
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        outcome = fut.result()
                    summary.outcomes.append(outcome)
    summary.seconds = time.perf_counter() - t0
    order = {p.run_id: i for i, p in enumerate(plans)}
    summary.outcomes.sort(key=lambda o: order.get(o.run_id, len(order)))
    return summary


def prepare_data(configs: Sequence[RunConfig], *, download: bool = False) -> None:
    """Check (and with ``download`` fetch) every dataset the sweep needs, once, before any run."""
    from sgnlake.collect.data import load_dataset

    seen: set[tuple[str, str | None]] = set()
    for c in configs:
        key = (c.dataset, c.data_dir)
        if c.dataset == "mnist5k" or key in seen:
            continue
        seen.add(key)
        load_dataset(c.dataset, data_dir=c.data_dir, n_train=1, download=download)
