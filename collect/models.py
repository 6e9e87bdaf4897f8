"""Model registry: each model is one small decorated builder function.

A builder takes the input shape ``(C, H, W)`` and the number of classes as
keyword arguments ``input_shape`` and ``num_classes``, plus its own keyword
arguments (``depth``, ``width``, ``bias``...), and returns a
:class:`torch.nn.Module` mapping a batch ``(B, C, H, W)`` to logits ``(B, K)``.

Example
-------
>>> @register_model("tiny", cpu_engine="vmap")
... def tiny(*, input_shape, num_classes, width: int = 8) -> nn.Module:
...     return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.meta import TensorInfo

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Parameters
    ----------
    name : str
        Registry key (``--model``).
    builder : callable
        ``builder(*, input_shape, num_classes, **args) -> nn.Module``.
    cpu_engine : {"loop", "vmap"}
        Engine ``auto`` picks on CPU (on CUDA it always picks ``vmap``).
    description : str
        One line for ``--help``.
    """

    name: str
    builder: Builder
    cpu_engine: str = "loop"
    description: str = ""

    def arg_defaults(self) -> dict[str, Any]:
        """The builder's own keyword arguments and their defaults."""
        sig = inspect.signature(self.builder)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k not in ("input_shape", "num_classes") and p.kind is p.KEYWORD_ONLY
        }


#: Registered models by name.
MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, cpu_engine: str = "loop") -> Callable[[Builder], Builder]:
    """Decorator registering a model builder under ``name``.

    Parameters
    ----------
    name : str
        Name used by ``--model`` and stored in ``RunConfig.model``.
    cpu_engine : {"loop", "vmap"}
        The per-minibatch gradient engine ``auto`` uses on CPU.
    """
    if cpu_engine not in ("loop", "vmap"):
        raise ValueError(f"cpu_engine must be loop or vmap, got {cpu_engine!r}")

    def deco(fn: Builder) -> Builder:
        doc = (inspect.getdoc(fn) or "").splitlines()
        MODELS[name] = ModelSpec(name, fn, cpu_engine, doc[0] if doc else "")
        return fn

    return deco


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name``; :class:`ConfigError` naming the known ones if absent."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: use one of {', '.join(sorted(MODELS))}") from None


def resolve_model_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Complete ``args`` with the builder's defaults; reject unknown arguments.

    Returns
    -------
    dict
        Every argument of the builder (what is recorded in ``RunConfig.model_args``).
    """
    spec = model_spec(name)
    defaults = spec.arg_defaults()
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(f"model {name!r} has no argument {unknown[0]!r}: its arguments are {known}")
    out = dict(defaults)
    out.update(args)
    missing = [k for k, v in out.items() if v is inspect.Parameter.empty]
    if missing:
        raise ConfigError(f"model {name!r} needs argument {missing[0]!r}")
    return out


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    **args: Any,
) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        Registered name (see :data:`MODELS`).
    input_shape : tuple of int
        Shape ``(C, H, W)`` of one example.
    num_classes : int
        Number of output logits.
    **args
        The model's own arguments (``depth``, ``width``, ``bias``...).

    Returns
    -------
    torch.nn.Module
        Freshly initialised with the current torch RNG (seed it first).

    Raises
    ------
    ConfigError
        Unknown model or argument, or an invalid argument value.
    """
    spec = model_spec(name)
    full = resolve_model_args(name, args)
    return spec.builder(input_shape=tuple(input_shape), num_classes=int(num_classes), **full)


def tensor_table(model: nn.Module) -> tuple[TensorInfo, ...]:
    """The lake's tensor table of ``model``: one :class:`TensorInfo` per parameter tensor."""
    modules = dict(model.named_modules())
    out = []
    for pname, p in model.named_parameters():
        mod, _, kind = pname.rpartition(".")
        out.append(
            TensorInfo(
                name=pname,
                shape=tuple(int(s) for s in p.shape),
                kind=kind,
                module=mod,
                module_type=type(modules[mod]).__name__ if mod in modules else "",
            )
        )
    return tuple(out)


def n_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- models


def _positive(name: str, value: Any, model: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"model {model!r}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


class FCN(nn.Module):
    """Fully connected ReLU network as in the paper's code.

    ``depth`` linear layers: ``in -> width``, ``depth - 2`` times
    ``width -> width``, ``width -> classes``; ReLU between; input flattened.
    Parameters are named ``fc1.weight`` ... ``fc<depth>.weight``.
    """

    def __init__(self, in_features: int, num_classes: int, depth: int, width: int, bias: bool) -> None:
        super().__init__()
        sizes = [in_features] + [width] * (depth - 1) + [num_classes]
        self.depth = depth
        for i in range(depth):
            self.add_module(f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1], bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(self.depth):
            x = getattr(self, f"fc{i + 1}")(x)
            if i < self.depth - 1:
                x = torch.relu(x)
        return x


@register_model("fcn", cpu_engine="vmap")
def fcn(
    *, input_shape: tuple[int, ...], num_classes: int, depth: int = 3, width: int = 32, bias: bool = False
):
    """Fully connected ReLU net (paper's code): depth linear layers of width units, no biases by default."""
    _positive("depth", depth, "fcn", 2)
    _positive("width", width, "fcn")
    if not isinstance(bias, bool):
        raise ConfigError(f"model 'fcn': bias must be true or false, got {bias!r}")
    return FCN(math.prod(input_shape), num_classes, depth, width, bias)


class LeNet(nn.Module):
    """LeNet-5 as in the paper: conv 6 and 16 filters 5x5 (conv1 padded by 2), ReLU,
    max-pool 2 after each conv, then fc1 -> 84, ReLU, fc2 -> classes; with biases.
    On 1x28x28 inputs: 156 + 2416 + 33684 + 850 = 37,106 parameters."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        h2, w2 = ((h // 2) - 4) // 2, ((w // 2) - 4) // 2
        self.fc1 = nn.Linear(16 * h2 * w2, 84)
        self.fc2 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@register_model("lenet", cpu_engine="loop")
def lenet(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5 (paper): conv6-pool-conv16-pool-fc84-fc, ReLU, with biases (37,106 parameters on MNIST)."""
    if len(input_shape) != 3 or input_shape[1] < 12 or input_shape[2] < 12:
        raise ConfigError(f"model 'lenet' needs images (C, H, W) of at least 12x12, got {input_shape}")
    return LeNet(input_shape, num_classes)
