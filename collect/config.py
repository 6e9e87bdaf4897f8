"""Resolving a :class:`~sgnlake.schema.meta.RunConfig` into a concrete plan, before anything is written."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.meta import RunConfig

from .data import DATASETS, default_data_dir
from .models import resolve_model_args

_ABBREV = {"depth": "d", "width": "w"}


def derive_run_id(
    model: str,
    model_args: Mapping[str, Any] | None = None,
    *,
    dataset: str = "mnist5k",
    batch_size: int = 50,
    lr: float = 0.1,
    seed: int = 0,
    n_train: int | None = None,
) -> str:
    """A readable run id from the defining settings, e.g. ``lenet-b50-lr0.1-s0``
    or ``fcn-d3-w32-b100-lr0.1-s0``.

    Model arguments appear in sorted order (``depth`` as ``d``, ``width`` as
    ``w``, booleans by name when true); a dataset other than ``mnist5k`` and
    ``n_train`` are included.
    """
    parts = [model]
    for k in sorted(model_args or {}, key=lambda k: (k not in _ABBREV, k)):
        v = (model_args or {})[k]
        if isinstance(v, bool):
            if v:
                parts.append(k)
        elif v is not None:
            parts.append(f"{_ABBREV.get(k, k)}{v}")
    if dataset != "mnist5k":
        parts.append(dataset)
    if n_train is not None:
        parts.append(f"n{n_train}")
    parts += [f"b{batch_size}", f"lr{lr:g}", f"s{seed}"]
    return "-".join(str(p) for p in parts)


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
    if config.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {config.dataset!r}: use one of {', '.join(DATASETS)}")
    args = resolve_model_args(config.model, config.model_args)
    if config.epochs is not None and config.iterations is not None:
        raise ConfigError("give --epochs or --iterations, not both")
    epochs = config.epochs if config.epochs is not None or config.iterations is not None else 1
    data_dir = config.data_dir
    if config.dataset != "mnist5k" and data_dir is None:
        data_dir = default_data_dir()
    return dataclasses.replace(config, model_args=args, epochs=epochs, data_dir=data_dir)


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
    its = tuple(config.schedule.iterations(total, spe))
    if not its:
        raise ConfigError(
            f"the schedule takes no snapshot in {total} training steps: lower --every, use --at, or train longer"
        )
    return Plan(n_examples, m, n_examples - m * b, spe, total, its)
