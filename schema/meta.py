"""Lake metadata as frozen, validated dataclasses with ``to_dict`` / ``from_dict``.

These are the JSON documents stored in Zarr attributes. ``from_dict`` validates
field by field and raises :class:`~sgnlake.schema.errors.ValidationError` naming
the field; unknown keys are kept out (forward-compatible minor additions are
ignored), missing required keys are errors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, SchemaVersionError, ValidationError
from .names import SCHEMA_NAME, SCHEMA_VERSION, STATUSES, check_run_id

# ----------------------------------------------------------------------------- helpers


def _req(d: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ValidationError(f"{where}: missing field {key!r}")
    return _typed(d[key], key, types, where)


def _opt(d: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str, default=None):
    if d.get(key) is None:
        return default
    return _typed(d[key], key, types, where)


def _typed(value: Any, key: str, types: type | tuple[type, ...], where: str) -> Any:
    types_t = types if isinstance(types, tuple) else (types,)
    if bool in (type(value),) and bool not in types_t:
        raise ValidationError(f"{where}: field {key!r} must be {_tn(types_t)}, got {value!r}")
    if float in types_t and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types_t):
        raise ValidationError(f"{where}: field {key!r} must be {_tn(types_t)}, got {value!r}")
    return value


def _tn(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def _plain(value: Any) -> Any:
    """Convert tuples to lists recursively so ``to_dict`` is JSON-ready."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- lake


@dataclass(frozen=True)
class LakeMeta:
    """Root attributes: which schema and version the lake follows."""

    schema: str = SCHEMA_NAME
    version: int = SCHEMA_VERSION
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LakeMeta:
        where = "lake attrs"
        if not isinstance(d, Mapping):
            raise ValidationError(f"{where}: expected a mapping, got {type(d).__name__}")
        schema = _req(d, "schema", str, where)
        if schema != SCHEMA_NAME:
            raise ValidationError(f"{where}: schema is {schema!r}, expected {SCHEMA_NAME!r}")
        version = _req(d, "version", int, where)
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"lake schema version {version} is newer than this sgnlake supports "
                f"({SCHEMA_VERSION}): upgrade sgnlake (pip install -U sgnlake)"
            )
        if version < 1:
            raise ValidationError(f"{where}: schema version must be >= 1, got {version}")
        return cls(schema=schema, version=version, created=_opt(d, "created", str, where, ""))


# ----------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class TensorInfo:
    """One parameter tensor of the model, as in ``model.named_parameters()``.

    Parameters
    ----------
    name : str
        Parameter name (``fc1.weight``); also the tensor group's name.
    shape : tuple of int
        Shape of the tensor; the ``param`` dimension is its C-order flattening.
    kind : str
        ``weight`` or ``bias`` (or another suffix of the name).
    module : str
        Name of the owning module (``fc1``); the paper's "layer".
    module_type : str
        Class of the owning module (``Linear``, ``Conv2d``).
    stored : int or None
        Parameters stored along ``param`` when only a seeded sample of the
        tensor is kept (``--param-sample``; their flat indices are the tensor
        group's ``param`` array); None: all ``numel``.
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    module: str
    module_type: str = ""
    stored: int | None = None

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape))

    @property
    def n_stored(self) -> int:
        """Length of the stored ``param`` axis: ``stored`` when sampled, else ``numel``."""
        return self.numel if self.stored is None else int(self.stored)

    def to_dict(self) -> dict[str, Any]:
        d = _plain(dataclasses.asdict(self))
        if self.stored is None:
            del d["stored"]  # unsampled tensors keep the attributes of older lakes
        d["numel"] = self.numel
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorInfo:
        where = f"tensor {d.get('name', '?')!r}" if isinstance(d, Mapping) else "tensor"
        if not isinstance(d, Mapping):
            raise ValidationError(f"{where}: expected a mapping")
        shape = _req(d, "shape", (list, tuple), where)
        if not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValidationError(f"{where}: shape must be positive integers, got {shape!r}")
        return cls(
            name=_req(d, "name", str, where),
            shape=tuple(shape),
            kind=_req(d, "kind", str, where),
            module=_req(d, "module", str, where),
            module_type=_opt(d, "module_type", str, where, ""),
            stored=_opt(d, "stored", int, where, None),
        )


# ----------------------------------------------------------------------------- storage

DTYPES = ("float32", "float16")
CODECS = ("zstd", "blosc-zstd", "none")
#: Compression level of each codec when none is given. zstd -5 (zstd's fast mode), by the rule of
#: ``bench/codecs.py`` (issue 11; bench/README.md study 11): the fastest zstd level whose ratio is
#: >= 1.15 + margin on every measured LeNet/FCN SGN. No level from -1 down meets it: trained LeNet SGN
#: (2,000 steps) stores x1.09 at -5 (x1.16 at level 1, 3x slower), the FCN x1.51, ResNet-20 and
#: ViT x1.00 at every negative level; so the default changes only for a level that meets the rule,
#: and stays -5 (-7..-50 encode 1.1-1.6x faster for up to 1.20x the bytes). blosc's levels start at 0.
DEFAULT_LEVELS = {"zstd": -5, "blosc-zstd": 1, "none": 1}
#: Valid levels per codec (inclusive; zstd: its negative "fast" levels up to 22; blosc: 0..9).
LEVEL_RANGES = {"zstd": (-131072, 22), "blosc-zstd": (0, 9), "none": (-131072, 22)}
#: What a run stores per snapshot: the SGN (of all parameters, or a ``param_sample``), or the
#: per-parameter Mohammadi alpha computed on the device plus an optional SGN sample.
STORE_MODES = ("sgn", "alpha")


def check_param_sample(value: Any) -> float | int | None:
    """Validate a ``param_sample``: a fraction in (0, 1] (float), a count >= 0 (int), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"--param-sample must be a fraction (0.0025) or a count (1000), got {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and 0 < value <= 1):
        raise ConfigError(f"--param-sample fraction {value!r} out of range: use 0 < FRACTION <= 1")
    if isinstance(value, int) and value < 0:
        raise ConfigError(f"--param-sample count {value} is negative: use N >= 0")
    return value


#: Largest ``--seed`` (torch, numpy and Python all take a 63-bit seed).
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class StorageSpec:
    """How SGN arrays are stored.

    Parameters
    ----------
    dtype : {"float32", "float16"}
        Stored dtype of ``sgn``, ``grad`` and ``weight``. ``float16`` is lossy.
    codec : {"zstd", "blosc-zstd", "none"}
        Lossless compressor (``blosc-zstd`` adds a byte/bit shuffle).
    level : int, optional
        Compression level; default :data:`DEFAULT_LEVELS` of the codec (zstd -5:
        a fast level, because writing must hide behind gradient computation;
        chosen by measurement in ``bench/codecs.py``, issue 11). A run keeps
        the level it was collected with when resumed under another default.
    keepbits : int or None
        If set, BitRound the float32 mantissa to this many bits before
        compression (lossy; 1..23).
    param_chunk : int
        Parameters per ``sgn`` chunk (a chunk holds all minibatches of one
        snapshot for this many parameters).
    param_sample : float, int or None
        Store only a seeded random subset of each tensor's parameters: a
        fraction (float in (0, 1]) or a count per tensor (int). None: all.
        See docs/big-models.md.
    store : {"sgn", "alpha"}
        ``alpha``: compute the per-parameter Mohammadi alpha (default K1 rule)
        on the device at snapshot time and store it as a result; SGN, grad and
        weight are stored only for ``param_sample`` (none without it).
    """

    dtype: str = "float32"
    codec: str = "zstd"
    level: int | None = None
    keepbits: int | None = None
    param_chunk: int = 8192
    param_sample: float | int | None = None
    store: str = "sgn"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown storage dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.codec not in CODECS:
            raise ConfigError(f"unknown codec {self.codec!r}: use one of {', '.join(CODECS)}")
        if self.level is None:
            object.__setattr__(self, "level", DEFAULT_LEVELS[self.codec])
        lo, hi = LEVEL_RANGES[self.codec]
        if not lo <= self.level <= hi:
            raise ConfigError(f"--level {self.level} out of range for {self.codec}: use {lo}..{hi}")
        if self.keepbits is not None:
            if not 1 <= self.keepbits <= 23:
                raise ConfigError(f"--keepbits {self.keepbits} out of range: use 1..23")
            if self.dtype != "float32":
                raise ConfigError("--keepbits applies to float32 storage: drop --dtype float16")
        if self.param_chunk < 1:
            raise ConfigError(f"param_chunk must be >= 1, got {self.param_chunk}")
        check_param_sample(self.param_sample)
        if self.store not in STORE_MODES:
            raise ConfigError(f"unknown --store {self.store!r}: use one of {', '.join(STORE_MODES)}")

    @property
    def lossy(self) -> bool:
        return self.keepbits is not None or self.dtype != "float32"

    @property
    def sampled(self) -> bool:
        """True when not every parameter's SGN is stored (``param_sample`` or ``store='alpha'``)."""
        return self.param_sample is not None or self.store != "sgn"

    def to_dict(self) -> dict[str, Any]:
        d = _plain(dataclasses.asdict(self))
        d["lossy"] = self.lossy
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StorageSpec:
        where = "storage"
        try:
            return cls(
                dtype=_opt(d, "dtype", str, where, "float32"),
                codec=_opt(d, "codec", str, where, "zstd"),
                level=_opt(d, "level", int, where, None),
                keepbits=_opt(d, "keepbits", int, where, None),
                param_chunk=_opt(d, "param_chunk", int, where, 8192),
                param_sample=check_param_sample(d.get("param_sample")),
                store=_opt(d, "store", str, where, "sgn"),
            )
        except ConfigError as e:
            raise ValidationError(f"{where}: {e}") from None


# ----------------------------------------------------------------------------- run config

SCHEDULE_KINDS = ("every", "at", "logspace")
#: Optimizers of ``sgnlake collect`` (``user``: a :class:`~sgnlake.collect.probe.Probe` in the user's loop).
OPTIMIZERS = ("sgd", "momentum", "adam")
#: Default hyperparameters: heavy-ball momentum of ``momentum``; Adam's betas.
DEFAULT_MOMENTUM = 0.9
DEFAULT_BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class Schedule:
    """When snapshots are taken: after every ``every`` steps, at explicit steps, or log-spaced.

    Iteration ``t`` means the weights reached after ``t`` SGD updates (``t = 0``
    is the initialisation). ``every`` takes ``t = every, 2*every, ...``
    (and ``t = 0`` when ``include_start``); ``logspace`` takes ``count``
    distinct integer steps log-spaced between 1 and the last step.
    """

    kind: str = "every"
    every: int | None = 100
    at: tuple[int, ...] = ()
    count: int | None = None
    include_start: bool = False
    per_epoch: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ConfigError(f"unknown schedule {self.kind!r}: use one of {', '.join(SCHEDULE_KINDS)}")
        if self.kind == "every" and (self.every is None or self.every < 1):
            raise ConfigError(f"--every must be a positive number of steps, got {self.every}")
        if self.kind == "at" and (not self.at or any(t < 0 for t in self.at)):
            raise ConfigError("--at needs a list of non-negative iterations, e.g. --at 0,100,500")
        if self.kind == "logspace" and (self.count is None or self.count < 1):
            raise ConfigError(f"--logspace needs a positive count, got {self.count}")

    def iterations(self, total_steps: int, steps_per_epoch: int | None = None) -> list[int]:
        """Return the sorted snapshot iterations for a run of ``total_steps`` updates.

        With ``per_epoch`` (the paper's code), ``every`` counts steps within each
        epoch: snapshots at ``e*steps_per_epoch + k*every`` for ``k >= 1``.
        """
        out: set[int] = set()
        if self.include_start:
            out.add(0)
        if self.kind == "every":
            assert self.every is not None
            if self.per_epoch and steps_per_epoch:
                for start in range(0, total_steps, steps_per_epoch):
                    k = self.every
                    while k <= steps_per_epoch and start + k <= total_steps:
                        out.add(start + k)
                        k += self.every
            else:
                out.update(range(self.every, total_steps + 1, self.every))
        elif self.kind == "at":
            out.update(t for t in self.at if t <= total_steps)
        else:
            assert self.count is not None
            if total_steps >= 1:
                n = self.count
                pts = (
                    [round(total_steps ** (i / max(n - 1, 1))) for i in range(n)] if n > 1 else [total_steps]
                )
                out.update(int(p) for p in pts)
        return sorted(out)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schedule:
        where = "schedule"
        try:
            return cls(
                kind=_opt(d, "kind", str, where, "every"),
                every=_opt(d, "every", int, where, None) if "every" in d else Schedule.every,
                at=tuple(_opt(d, "at", (list, tuple), where, ())),
                count=_opt(d, "count", int, where, None),
                include_start=_opt(d, "include_start", bool, where, False),
                per_epoch=_opt(d, "per_epoch", bool, where, False),
            )
        except ConfigError as e:
            raise ValidationError(f"{where}: {e}") from None


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a collection run (what a user asks for).

    Parameters
    ----------
    run_id : str
        Name of the run group.
    model : str
        Registered model name (``fcn``, ``lenet``, ...).
    model_args : mapping
        Model keyword arguments (``depth``, ``width``, ``bias``).
    dataset : str
        ``mnist5k`` (embedded default), ``mnist``, ``fashionmnist``, ``cifar10``.
    data_dir : str or None
        Folder with the dataset's standard files (or where to download them).
    n_train : int or None
        Use only the first ``n_train`` training examples (None: all).
    batch_size : int
        SGD minibatch size b; also the size of the SGN minibatches.
    lr : float or None
        Learning rate (None: not known, a probe in the user's own loop without an optimizer).
    optimizer : {"sgd", "momentum", "adam", "user"}
        The update rule: plain SGD (the paper's), SGD with heavy-ball momentum, Adam;
        ``user`` for a probe in the user's own loop. Old lakes without it read as ``sgd``.
        The SGN definition does not depend on it.
    momentum : float or None
        Momentum of ``momentum`` (default 0.9 after resolution); None for the others.
    betas : tuple of two floats or None
        Adam's ``(beta1, beta2)`` (default (0.9, 0.999) after resolution); None for the others.
    weight_decay : float
        L2 weight decay added by the optimizer (torch's ``weight_decay``; 0: none).
    seed : int
        Seed of model initialisation, data order and snapshot partitions.
    epochs, iterations : int or None
        Length of training (exactly one is set after resolution).
    shuffle : bool
        Reshuffle the training data each epoch (usual SGD). ``False`` is the
        paper's code (fixed order).
    partition : {"permute", "fixed"}
        Snapshot minibatch partition: a fresh seeded permutation per snapshot,
        or the data order (the paper's code).
    schedule : Schedule
        When to take snapshots.
    engine : {"auto", "loop", "vmap"}
        Per-minibatch gradient engine.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
    storage : StorageSpec
        Dtype, codec and chunking of stored arrays.
    tensors : tuple of str
        Only store these parameter tensors (empty: all).
    memory_budget_mb : int
        Memory budget for batched gradient computation.
    """

    run_id: str
    model: str
    model_args: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "mnist5k"
    data_dir: str | None = None
    n_train: int | None = None
    batch_size: int = 50
    lr: float | None = 0.1
    optimizer: str = "sgd"
    momentum: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float = 0.0
    seed: int = 0
    epochs: int | None = None
    iterations: int | None = None
    shuffle: bool = True
    partition: str = "permute"
    schedule: Schedule = field(default_factory=Schedule)
    engine: str = "auto"
    device: str = "auto"
    storage: StorageSpec = field(default_factory=StorageSpec)
    tensors: tuple[str, ...] = ()
    memory_budget_mb: int = 512

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed {self.seed} out of range: use 0..{MAX_SEED}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not (
            isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0
        ):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        self._check_optimizer()
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError(f"--iterations must be >= 1, got {self.iterations}")
        if self.n_train is not None and self.n_train < 1:
            raise ConfigError(f"--n-train must be >= 1, got {self.n_train}")
        if self.partition not in ("permute", "fixed"):
            raise ConfigError(f"unknown partition {self.partition!r}: use permute or fixed")
        if self.engine not in ("auto", "loop", "vmap"):
            raise ConfigError(f"unknown engine {self.engine!r}: use auto, loop or vmap")
        if self.memory_budget_mb < 1:
            raise ConfigError(f"--memory-budget-mb must be >= 1, got {self.memory_budget_mb}")

    def _check_optimizer(self) -> None:
        if self.optimizer not in (*OPTIMIZERS, "user"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.momentum is not None:
            if self.optimizer != "momentum":
                raise ConfigError(
                    "--momentum applies to --optimizer momentum: drop it or change the optimizer"
                )
            if not 0 <= self.momentum < 1:
                raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.betas is not None:
            if self.optimizer != "adam":
                raise ConfigError("--betas applies to --optimizer adam: drop it or change the optimizer")
            if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
                raise ConfigError(f"--betas must be two numbers in [0, 1), e.g. 0.9,0.999, got {self.betas}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["schedule"] = self.schedule.to_dict()
        d["storage"] = self.storage.to_dict()
        d["model_args"] = dict(self.model_args)
        return _plain(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        where = "run config"
        if not isinstance(d, Mapping):
            raise ValidationError(f"{where}: expected a mapping")
        try:
            return cls(
                run_id=_req(d, "run_id", str, where),
                model=_req(d, "model", str, where),
                model_args=dict(_opt(d, "model_args", Mapping, where, {})),
                dataset=_opt(d, "dataset", str, where, "mnist5k"),
                data_dir=_opt(d, "data_dir", str, where, None),
                n_train=_opt(d, "n_train", int, where, None),
                batch_size=_req(d, "batch_size", int, where),
                lr=_opt(d, "lr", float, where, None) if "lr" in d else _req(d, "lr", float, where),
                optimizer=_opt(d, "optimizer", str, where, "sgd"),
                momentum=_opt(d, "momentum", float, where, None),
                betas=_betas(_opt(d, "betas", (list, tuple), where, None)),
                weight_decay=_opt(d, "weight_decay", float, where, 0.0),
                seed=_opt(d, "seed", int, where, 0),
                epochs=_opt(d, "epochs", int, where, None),
                iterations=_opt(d, "iterations", int, where, None),
                shuffle=_opt(d, "shuffle", bool, where, True),
                partition=_opt(d, "partition", str, where, "permute"),
                schedule=Schedule.from_dict(_opt(d, "schedule", Mapping, where, {})),
                engine=_opt(d, "engine", str, where, "auto"),
                device=_opt(d, "device", str, where, "auto"),
                storage=StorageSpec.from_dict(_opt(d, "storage", Mapping, where, {})),
                tensors=tuple(_opt(d, "tensors", (list, tuple), where, ())),
                memory_budget_mb=_opt(d, "memory_budget_mb", int, where, 512),
            )
        except ConfigError as e:
            raise ValidationError(f"{where}: {e}") from None


def _betas(v: Sequence[Any] | None) -> tuple[float, float] | None:
    if v is None:
        return None
    if len(v) != 2 or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in v):
        raise ValidationError(f"run config: field 'betas' must be two numbers, got {v!r}")
    return (float(v[0]), float(v[1]))


# ----------------------------------------------------------------------------- run meta


@dataclass(frozen=True)
class RunMeta:
    """The run group's attributes: config, resolved facts, tensor table, status.

    ``committed`` is the commit marker: the number of snapshots whose arrays are
    completely written. Readers use the first ``committed`` entries along
    ``iteration``; anything beyond is an unfinished write.
    """

    config: RunConfig
    tensors: tuple[TensorInfo, ...]
    status: str
    n_examples: int
    n_minibatches: int
    remainder: int
    planned_iterations: tuple[int, ...]
    total_steps: int
    committed: int = 0
    engine: str = ""
    device: str = ""
    dataset_fingerprint: str = ""
    software: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    reason: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValidationError(f"run status {self.status!r} unknown: expected one of {STATUSES}")

    @property
    def run_id(self) -> str:
        return self.config.run_id

    def tensor(self, name: str) -> TensorInfo:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def replace(self, **changes: Any) -> RunMeta:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["config"] = self.config.to_dict()
        d["tensors"] = [t.to_dict() for t in self.tensors]
        d["software"] = dict(self.software)
        d["extra"] = dict(self.extra)
        return _plain(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunMeta:
        where = "run attrs"
        if not isinstance(d, Mapping):
            raise ValidationError(f"{where}: expected a mapping")
        tensors = _req(d, "tensors", (list, tuple), where)
        planned = _req(d, "planned_iterations", (list, tuple), where)
        return cls(
            config=RunConfig.from_dict(_req(d, "config", Mapping, where)),
            tensors=tuple(TensorInfo.from_dict(t) for t in tensors),
            status=_req(d, "status", str, where),
            n_examples=_req(d, "n_examples", int, where),
            n_minibatches=_req(d, "n_minibatches", int, where),
            remainder=_req(d, "remainder", int, where),
            planned_iterations=tuple(int(t) for t in planned),
            total_steps=_req(d, "total_steps", int, where),
            committed=_opt(d, "committed", int, where, 0),
            engine=_opt(d, "engine", str, where, ""),
            device=_opt(d, "device", str, where, ""),
            dataset_fingerprint=_opt(d, "dataset_fingerprint", str, where, ""),
            software=dict(_opt(d, "software", Mapping, where, {})),
            created=_opt(d, "created", str, where, ""),
            updated=_opt(d, "updated", str, where, ""),
            reason=_opt(d, "reason", str, where, ""),
            extra=dict(_opt(d, "extra", Mapping, where, {})),
        )


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ResultMeta:
    """Attributes of a derived result (estimator name, settings, provenance)."""

    estimator: str
    settings: Mapping[str, Any]
    run_id: str
    n_iterations: int
    source: str = "sgn"
    created: str = ""
    software: Mapping[str, str] = field(default_factory=dict)
    #: ``RunMeta.created`` of the run the result was computed from: a run deleted and
    #: collected again under the same id (same iterations, new data) is told apart.
    run_created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _plain(
            {
                "estimator": self.estimator,
                "settings": dict(self.settings),
                "run_id": self.run_id,
                "n_iterations": self.n_iterations,
                "source": self.source,
                "created": self.created,
                "software": dict(self.software),
                "run_created": self.run_created,
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResultMeta:
        where = "result attrs"
        return cls(
            estimator=_req(d, "estimator", str, where),
            settings=dict(_req(d, "settings", Mapping, where)),
            run_id=_req(d, "run_id", str, where),
            n_iterations=_req(d, "n_iterations", int, where),
            source=_opt(d, "source", str, where, "sgn"),
            created=_opt(d, "created", str, where, ""),
            software=dict(_opt(d, "software", Mapping, where, {})),
            run_created=_opt(d, "run_created", str, where, ""),
        )


def as_int_tuple(values: Sequence[Any]) -> tuple[int, ...]:
    """Convert a sequence to a tuple of ints (used by parsers)."""
    return tuple(int(v) for v in values)
