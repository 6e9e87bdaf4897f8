"""Resolving a :class:`~sgnlake.schema.meta.RunConfig` into a concrete plan, before anything is written."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.meta import DEFAULT_BETAS, DEFAULT_LEVELS, DEFAULT_MOMENTUM, OPTIMIZERS, RunConfig

from .data import dataset_info, default_data_dir
from .models import resolve_model_args
from .run_ids import derive_run_id

#: Config fields that may differ when resuming (they do not change what is computed).
RESUME_MAY_DIFFER = ("device", "memory_budget_mb", "data_dir")


def default_run_id(config: RunConfig | Mapping[str, Any], axes: Iterable[str] = ()) -> str:
    """The run id of a config by the one naming rule (:func:`sgnlake.collect.run_ids.derive_run_id`),
    with the model arguments completed from the model registry first (what ``collect`` stores).

    Parameters
    ----------
    config : RunConfig or mapping
        The run's fields (a mapping needs at least ``model``).
    axes : iterable of str
        A sweep's varied field paths (see :func:`~sgnlake.collect.run_ids.derive_run_id`).
    """
    d = dict(config.to_dict() if isinstance(config, RunConfig) else config)
    d["model_args"] = resolve_model_args(d["model"], d.get("model_args") or {})
    return derive_run_id(d, axes)


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware where the OS tells, e.g. in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(jobs: int = 1) -> int:
    """torch CPU threads of one collecting process when ``jobs`` collect side by side.

    The available CPUs (:func:`available_cpus`) shared by the jobs, minus one
    for each job's background writer thread, at most torch's default and at
    least 1. Oversubscribing the cores is what hurts: on a shared 2-core machine
    torch at 2 threads was 5-20x slower than at 1 (``bench/collect_snapshot.py``),
    and the LeNet preset took 27 min instead of 1.2 min (busy-waiting OpenMP threads).
    """
    return max(1, min(torch.get_num_threads(), available_cpus() // max(1, jobs) - 1))


def resume_differences(stored: RunConfig, given: RunConfig) -> list[tuple[str, Any, Any]]:
    """The fields where ``given`` (resolved) is not the stored run: ``(field, stored, given)``.

    The one resume rule (collector, sweep and CLI): after completing ``given``
    with :func:`resolve_config`, every field but ``run_id`` and
    :data:`RESUME_MAY_DIFFER` must be equal. A storage spec whose only
    difference is a compression level ``given`` did not choose (its codec's
    default) is equal (:func:`default_level_only`): a run collected under an
    older default level is the same run, and keeps its own level.
    """
    a, b = stored.to_dict(), resolve_config(given).to_dict()
    if default_level_only(a.get("storage"), b.get("storage")):
        b["storage"] = a["storage"]
    skip = {"run_id", *RESUME_MAY_DIFFER}
    return [(k, a[k], b.get(k)) for k in a if k not in skip and a[k] != b.get(k)]


def default_level_only(stored: Any, given: Any) -> bool:
    """Whether two storage specs (``StorageSpec.to_dict()``) differ only in ``given``'s default level.

    The compression level changes how chunks are encoded, never a stored value, and
    ``StorageSpec`` fills in :data:`~sgnlake.schema.meta.DEFAULT_LEVELS` when a config
    names none: so when the default level changes (issue 11), a config naming no level
    still resumes the runs collected under the old one. A level chosen other than the
    default is a difference.
    """
    if not isinstance(stored, Mapping) or not isinstance(given, Mapping) or stored == given:
        return False
    codec = given.get("codec")
    return given.get("level") == DEFAULT_LEVELS.get(codec) and dict(stored) == {
        **given,
        "level": stored.get("level"),
    }


def resume_config(
    stored: RunConfig, given: RunConfig, *, explicit: Collection[str] | None = None
) -> RunConfig:
    """The config a resumed run continues with.

    Parameters
    ----------
    stored : RunConfig
        The run's stored config.
    given : RunConfig
        What was asked now.
    explicit : collection of str, optional
        The fields that were asked for (the CLI's options given on the command
        line): the others take the stored values, and given model arguments
        update the stored ones. None: every field of ``given`` was asked for.

    Returns
    -------
    RunConfig
        The stored config with ``device``, ``memory_budget_mb`` and (when
        given) ``data_dir`` of ``given``.

    Raises
    ------
    ConfigError
        A field other than those may differ (:func:`resume_differences`).
    """
    if explicit is not None:
        keep = {
            f.name: getattr(stored, f.name)
            for f in dataclasses.fields(RunConfig)
            if f.name not in explicit and f.name != "run_id"
        }
        if "model_args" in explicit:
            keep["model_args"] = {**dict(stored.model_args), **dict(given.model_args)}
        given = dataclasses.replace(given, **keep)
    diffs = resume_differences(stored, given)
    if diffs:
        k, have, _ = diffs[0]
        raise ConfigError(
            f"cannot resume run {stored.run_id!r} with a different {k} "
            f"({have!r} stored): drop the option or pick another --run-id"
        )
    cfg = dataclasses.replace(stored, device=given.device, memory_budget_mb=given.memory_budget_mb)
    if given.data_dir is not None:
        cfg = dataclasses.replace(cfg, data_dir=given.data_dir)
    return cfg


def compatible_run(config: RunConfig, stored: Mapping[str, Any]) -> str | None:
    """The id of a stored run that is ``config`` under another id (e.g. an id of an older sgnlake).

    Parameters
    ----------
    config : RunConfig
        The run asked for.
    stored : mapping of str to RunMeta
        The lake's runs by id.

    Returns
    -------
    str or None
        ``config.run_id`` if it is stored, else the first (sorted) run whose
        config passes :func:`resume_differences`, else None.
    """
    if config.run_id in stored:
        return config.run_id
    for rid in sorted(stored):
        if not resume_differences(stored[rid].config, config):
            return rid
    return None


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; check that the device exists."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available: use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPUs)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {device!r} is not available: use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


def resolve_config(config: RunConfig) -> RunConfig:
    """Complete a config: model arguments with defaults, the data folder, one of epochs/iterations.

    Raises
    ------
    ConfigError
        Unknown model, dataset or model argument; both ``epochs`` and ``iterations`` set.
    """
    dataset_info(config.dataset)  # raises on an unknown dataset
    args = resolve_model_args(config.model, config.model_args)
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if config.lr is None:
        raise ConfigError("--lr is needed to train: give a positive learning rate")
    hyper: dict[str, Any] = {}
    if config.optimizer == "momentum" and config.momentum is None:
        hyper["momentum"] = DEFAULT_MOMENTUM
    if config.optimizer == "adam" and config.betas is None:
        hyper["betas"] = DEFAULT_BETAS
    if config.epochs is not None and config.iterations is not None:
        raise ConfigError("give --epochs or --iterations, not both")
    epochs = config.epochs if config.epochs is not None or config.iterations is not None else 1
    data_dir = config.data_dir
    if config.dataset != "mnist5k" and data_dir is None:
        data_dir = default_data_dir()
    return dataclasses.replace(config, model_args=args, epochs=epochs, data_dir=data_dir, **hyper)


def make_optimizer(config: RunConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The torch optimizer of a resolved config: ``sgd`` (no momentum), ``momentum`` (heavy ball), ``adam``."""
    lr, wd = float(config.lr or 0.0), config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=wd)
    if config.optimizer == "momentum":
        m = DEFAULT_MOMENTUM if config.momentum is None else config.momentum
        return torch.optim.SGD(params, lr=lr, momentum=m, weight_decay=wd)
    if config.optimizer == "adam":
        betas = DEFAULT_BETAS if config.betas is None else config.betas
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=wd)
    raise ConfigError(f"unknown optimizer {config.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")


def optimizer_label(config: RunConfig) -> str:
    """How the run's optimizer is described in ``RunMeta.extra['optimizer']`` (``SGD(momentum=0)``...)."""
    wd = f", weight_decay={config.weight_decay:g}" if config.weight_decay else ""
    if config.optimizer == "momentum":
        m = DEFAULT_MOMENTUM if config.momentum is None else config.momentum
        return f"SGD(momentum={m:g}{wd})"
    if config.optimizer == "adam":
        b1, b2 = DEFAULT_BETAS if config.betas is None else config.betas
        return f"Adam(betas=({b1:g}, {b2:g}){wd})"
    return f"SGD(momentum=0{wd})"


@dataclass(frozen=True)
class Plan:
    """The concrete shape of a run.

    Attributes
    ----------
    n_examples : int
        Training examples n.
    n_minibatches, remainder : int
        ``M = floor(n / b)`` SGN minibatches per snapshot and the ``n - M*b`` left out.
    steps_per_epoch : int
        ``ceil(n / b)`` SGD steps per epoch (the last minibatch of an epoch may be smaller,
        as torch's ``DataLoader`` with ``drop_last=False``).
    total_steps : int
        SGD updates of the whole run.
    iterations : tuple of int
        Planned snapshot iterations.
    """

    n_examples: int
    n_minibatches: int
    remainder: int
    steps_per_epoch: int
    total_steps: int
    iterations: tuple[int, ...]


def make_plan(config: RunConfig, n_examples: int) -> Plan:
    """The :class:`Plan` of a resolved config on ``n_examples`` training examples.

    Raises
    ------
    ConfigError
        Batch larger than the data, or a schedule that takes no snapshot.
    """
    b = config.batch_size
    if b > n_examples:
        raise ConfigError(
            f"--batch-size {b} exceeds the {n_examples} training examples of {config.dataset!r}: "
            "use a smaller batch"
        )
    m = n_examples // b
    spe = math.ceil(n_examples / b)
    total = config.iterations if config.iterations is not None else (config.epochs or 1) * spe
    sched = config.schedule
    beyond = sorted(t for t in (sched.at or ()) if t > total) if sched.kind == "at" else []
    if beyond:
        raise ConfigError(
            f"--at {beyond[0]} is beyond the run's last step {total}: use steps 0..{total}, or train "
            "longer (--iterations/--epochs)"
        )
    its = tuple(sched.iterations(total, spe))
    if not its:
        raise ConfigError(
            f"the schedule takes no snapshot in {total} training steps: lower --every, use --at, or train longer"
        )
    return Plan(n_examples, m, n_examples - m * b, spe, total, its)
