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

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
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


# ----------------------------------------------------------------------------- ResNet (CIFAR style)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with a parameter-free shortcut (He et al.'s option A: when the
    shape changes, the input subsampled by the stride and zero-padded to the new channels)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, c_out - c_in
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        s = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            s = torch.nn.functional.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return torch.relu(self.bn2(self.conv2(h)) + s)


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, section 4.2): a 3x3 stem, three stages of ``n`` basic
    blocks at widths ``w, 2w, 4w`` (stride 2 between stages), global average pooling, a linear head.
    ``depth = 6n + 2`` (ResNet-20: n = 3, w = 16: 269,722 parameters on CIFAR-10)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, blocks: int, width: int) -> None:
        super().__init__()
        c = input_shape[0]
        self.conv1 = nn.Conv2d(c, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        c_in = width
        for stage in range(3):
            c_out = width * 2**stage
            for i in range(blocks):
                layers.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(h.mean((2, 3)))


@register_model("resnet", cpu_engine="loop")
def resnet(*, input_shape: tuple[int, ...], num_classes: int, depth: int = 20, width: int = 16) -> nn.Module:
    """CIFAR-style ResNet with BatchNorm (depth 6n+2; ResNet-20 by default; width of the first stage)."""
    _positive("depth", depth, "resnet", 8)
    _positive("width", width, "resnet")
    if (depth - 2) % 6:
        raise ConfigError(f"model 'resnet': depth must be 6n + 2 (8, 14, 20, 32, 44, 56...), got {depth}")
    if len(input_shape) != 3:
        raise ConfigError(f"model 'resnet' needs images (C, H, W), got {input_shape}")
    return ResNet(input_shape, num_classes, (depth - 2) // 6, width)


# ----------------------------------------------------------------------------- vision transformer


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: multi-head self-attention and a GELU MLP, each residual."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """Vision transformer classifier (Dosovitskiy et al. 2021): non-overlapping ``patch`` x ``patch``
    patches embedded linearly, a class token and learned position embeddings, ``depth`` pre-norm
    encoder blocks, a final LayerNorm and a linear head on the class token. Attention is written
    out (no fused kernel), so ``torch.func`` differentiates it per minibatch."""

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, patch: int, dim: int, depth: int, heads: int
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.patch = patch
        n = (h // patch) * (w // patch)
        self.embed = nn.Conv2d(c, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, 2 * dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])


@register_model("vit", cpu_engine="vmap")
def vit(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    patch: int = 7,
    dim: int = 32,
    depth: int = 2,
    heads: int = 2,
) -> nn.Module:
    """Small vision transformer: patch embedding, class token, depth pre-norm blocks of dim units."""
    for name, v in (("patch", patch), ("dim", dim), ("depth", depth), ("heads", heads)):
        _positive(name, v, "vit")
    if dim % heads:
        raise ConfigError(f"model 'vit': dim {dim} must be a multiple of heads {heads}")
    if len(input_shape) != 3 or input_shape[1] % patch or input_shape[2] % patch:
        raise ConfigError(f"model 'vit': image size {input_shape} must be a multiple of patch {patch}")
    return ViT(input_shape, num_classes, patch, dim, depth, heads)


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``model`` (BatchNorm running statistics and counters) on exit.

    A forward pass in train mode updates BatchNorm's running mean, variance and
    ``num_batches_tracked`` in place; a snapshot must leave them as they were.
    """
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)
