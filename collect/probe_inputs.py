"""What a :class:`~sgnlake.collect.probe.Probe` reads from and records about the user's objects.

The data as two tensors on the model's device, its fingerprint, the model's
parameter table, the optimizer's class and hyperparameters, a loss function's name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sgnlake.schema.errors import ConfigError

from . import rng
from .data import fingerprint as data_fingerprint


def as_tensors(data: Any, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """All examples of ``data`` as two tensors ``(x, y)`` on ``device``.

    Parameters
    ----------
    data : tuple of two tensors or arrays, or an indexable dataset
        ``(X, y)`` with the examples along the first axis, or anything with
        ``len()`` whose item ``i`` is an ``(x_i, y_i)`` pair (e.g. a
        ``torch.utils.data.Dataset``). A dataset is read once, in index order,
        with every global RNG restored afterwards (random transforms are drawn
        once: the probe's examples are fixed).

    Raises
    ------
    ConfigError
        Not a pair of equally long tensors, nor a dataset of pairs.
    """
    if isinstance(data, tuple | list) and len(data) == 2 and all(_array_like(a) for a in data):
        x, y = (torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a for a in data)
    else:
        try:
            n = len(data)
        except TypeError:
            raise ConfigError(
                f"probe data must be a pair (X, y) of tensors or an indexable dataset of (x, y) pairs, "
                f"got {type(data).__name__}"
            ) from None
        if n == 0:
            raise ConfigError("probe data is empty: give at least one minibatch of examples")
        xs, ys = [], []
        with rng.preserved_rng(), torch.no_grad():
            for i in range(n):
                item = data[i]
                if not (isinstance(item, tuple | list) and len(item) == 2):
                    raise ConfigError(
                        f"probe data item {i} is a {type(item).__name__}, not an (x, y) pair: "
                        "give a dataset whose items are (input, target)"
                    )
                xs.append(torch.as_tensor(item[0]))
                ys.append(torch.as_tensor(item[1]))
        x, y = torch.stack(xs), torch.stack(ys)
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ConfigError(
            f"probe data: X and y must hold the same number of examples along their first axis, "
            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x.detach().to(device), y.detach().to(device)


def _array_like(a: Any) -> bool:
    return isinstance(a, torch.Tensor | np.ndarray)


def tensors_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """``sha256:`` digest of shape, dtype and bytes of the inputs and targets (as the datasets')."""
    return data_fingerprint(x.detach().cpu().contiguous().numpy(), y.detach().cpu().contiguous().numpy())


def parameter_table(model: nn.Module) -> list[dict[str, Any]]:
    """Every parameter of ``model``: name, shape, numel, dtype, requires_grad (for the run attributes)."""
    return [
        {
            "name": n,
            "shape": [int(s) for s in p.shape],
            "numel": int(p.numel()),
            "dtype": str(p.dtype).removeprefix("torch."),
            "requires_grad": bool(p.requires_grad),
        }
        for n, p in model.named_parameters()
    ]


def describe_optimizer(optimizer: torch.optim.Optimizer | None) -> dict[str, Any] | None:
    """Class and hyperparameters (first parameter group, plain values) of ``optimizer``."""
    if optimizer is None:
        return None
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    hyper = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in group.items()
        if k != "params" and isinstance(v, int | float | bool | str | tuple | type(None))
    }
    return {"class": type(optimizer).__name__, **hyper}


def callable_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{mod}.{name}" if mod else str(name)
