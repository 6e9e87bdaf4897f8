"""Device facts and settings of a run: the vmap memory budget, float32 precision, what is recorded.

The budget functions take the device and the free device memory as arguments,
so their logic is the same (and unit-tested) without a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: Fraction of the free device memory one vmap call may use when no budget is given.
DEVICE_BUDGET_FRACTION = 0.5
#: Upper bound of that automatic budget (MiB): a shared GPU keeps room for others.
DEVICE_BUDGET_CAP_MB = 16384

MIB = 2**20


@dataclass(frozen=True)
class MemoryBudget:
    """The memory one batched (vmap) gradient call may use.

    Attributes
    ----------
    mb : int
        The budget in MiB.
    source : str
        ``"device"`` (read from the free device memory) or ``"config"``
        (``RunConfig.memory_budget_mb``: given explicitly, or not on CUDA).
    free_mb : int or None
        Free device memory (MiB) when it was read, else None.
    """

    mb: int
    source: str
    free_mb: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields recorded in ``RunMeta.extra``."""
        return {
            "memory_budget_mb": self.mb,
            "memory_budget_source": self.source,
            "device_free_mb": self.free_mb,
        }


def budget_from_free(
    free_bytes: int,
    reserved_bytes: int = 0,
    *,
    fraction: float = DEVICE_BUDGET_FRACTION,
    cap_mb: int = DEVICE_BUDGET_CAP_MB,
) -> int:
    """The vmap budget (MiB) from free device memory: ``fraction`` of what is left, at most ``cap_mb``.

    Parameters
    ----------
    free_bytes : int
        Free device memory (``torch.cuda.mem_get_info()[0]``).
    reserved_bytes : int
        Device memory the snapshot needs besides the vmap call (its gradient
        buffers, see :func:`sgnlake.collect.snapshot.snapshot_device_bytes`);
        subtracted first.
    fraction, cap_mb : float, int
        Share of the remaining memory and the upper bound.

    Returns
    -------
    int
        At least 1 (a tiny budget gives one minibatch per call).
    """
    left = max(0, int(free_bytes) - int(reserved_bytes))
    return int(max(1, min(cap_mb, int(fraction * left) // MIB)))


def resolve_memory_budget(
    device: torch.device | str,
    configured_mb: int,
    *,
    explicit: bool,
    reserved_bytes: int = 0,
    free_bytes: int | None = None,
) -> MemoryBudget:
    """The budget of a run: from the device on CUDA unless one was given explicitly.

    Parameters
    ----------
    device : torch.device or str
        The compute device.
    configured_mb : int
        ``RunConfig.memory_budget_mb``: used on the CPU (and MPS) and whenever ``explicit``.
    explicit : bool
        The user gave ``--memory-budget-mb`` (or ``collect(auto_budget=False)``).
    reserved_bytes : int
        See :func:`budget_from_free`.
    free_bytes : int, optional
        Free device memory; read with ``torch.cuda.mem_get_info`` when None (CUDA only).

    Returns
    -------
    MemoryBudget
    """
    dev = torch.device(device)
    if explicit or dev.type != "cuda":
        return MemoryBudget(int(configured_mb), "config")
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(dev)
    return MemoryBudget(budget_from_free(free_bytes, reserved_bytes), "device", int(free_bytes) // MIB)


#: Nodes of torch's per-backend float32 precision settings (torch >= 2.9; "" is the generic one),
#: each with the node its "none" defers to (cuda.matmul, cudnn.conv and cudnn.rnn share the "cuda" node,
#: which is ``torch.backends.cudnn.fp32_precision``).
_FP32_PARENT = {
    "": None,
    "cudnn": "",
    "mkldnn": "",
    "cuda.matmul": "cudnn",
    "cudnn.conv": "cudnn",
    "cudnn.rnn": "cudnn",
    "mkldnn.matmul": "mkldnn",
    "mkldnn.conv": "mkldnn",
    "mkldnn.rnn": "mkldnn",
}
_FP32_NODES = tuple(_FP32_PARENT)
#: The operations that must compute in full float32 ("ieee") inside :func:`full_float32`.
_IEEE_NODES = ("cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn")


def _fp32_node(path: str) -> Any:
    """``torch.backends.<path>`` when it has ``fp32_precision`` (the torch >= 2.9 API), else None."""
    node: Any = torch.backends
    for part in filter(None, path.split(".")):
        node = getattr(node, part, None)
        if node is None:
            return None
    try:
        node.fp32_precision  # noqa: B018 - probing the attribute
    except (AttributeError, RuntimeError):
        return None
    return node


def _fp32_api() -> bool:
    """Whether torch has the per-backend ``fp32_precision`` settings."""
    return _fp32_node("cuda.matmul") is not None


def _effective(path: str) -> str:
    """The float32 precision the operations of node ``path`` use ("none" defers to the parent node)."""
    node_path: str | None = path
    while node_path is not None:
        node = _fp32_node(node_path)
        value = str(node.fp32_precision) if node is not None else "none"
        if value != "none":
            return value
        node_path = _FP32_PARENT.get(node_path)
    return "ieee"


def _matmul_precision() -> str | None:
    """``torch.get_float32_matmul_precision()``, or None when torch refuses (mixed legacy/new settings)."""
    try:
        return str(torch.get_float32_matmul_precision())
    except RuntimeError:
        return None


def _cudnn_allow_tf32() -> bool | None:
    """The legacy ``torch.backends.cudnn.allow_tf32``, or None when torch refuses (mixed settings)."""
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        return None


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """TF32 (and bfloat16) off for matmuls and convolutions inside the block; restored afterwards.

    With TF32 a float32 convolution or matmul on Ampere and later GPUs keeps 10
    mantissa bits, and the SGN misses float32 tolerance against the CPU. Inside
    the block the float32 matmul precision is ``"highest"`` and
    ``torch.backends.cudnn.allow_tf32`` is False, set with the legacy setters,
    which on torch >= 2.9 also set the per-backend ``fp32_precision`` settings
    consistently (cuBLAS raises when the two disagree); an operation that would
    still resolve to TF32 or bfloat16 (through a generic or backend-wide
    setting) is set to ``"ieee"``. On exit the legacy settings and then every
    per-backend one are put back as they were. The settings are
    process-global: other threads see them while the block runs.
    """
    new_api = _fp32_api()
    saved = [(node, node.fp32_precision) for node in map(_fp32_node, _FP32_NODES) if node is not None]
    prec, cudnn_tf32 = _matmul_precision(), _cudnn_allow_tf32()
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
        if new_api:
            for path in _IEEE_NODES:
                node = _fp32_node(path)
                if node is not None and _effective(path) != "ieee":
                    node.fp32_precision = "ieee"
        yield
    finally:
        if prec is not None:
            torch.set_float32_matmul_precision(prec)
        if cudnn_tf32 is not None:
            torch.backends.cudnn.allow_tf32 = cudnn_tf32
        for node, value in saved:
            node.fp32_precision = value


def precision_flags() -> dict[str, Any]:
    """The global settings that decide float32 results, as recorded in ``RunMeta.extra``.

    ``matmul_allow_tf32`` and ``cudnn_allow_tf32``: whether CUDA matmuls and
    cuDNN convolutions may use TF32 (torch's legacy flags; on torch >= 2.9
    derived from the per-backend settings, also listed as ``fp32_precision``,
    since the legacy getters raise once both APIs were used).
    Older torch: ``float32_matmul_precision`` instead of ``fp32_precision`` (on
    torch >= 2.9 that legacy value does not follow the per-backend settings).
    """
    new_api = _fp32_api()
    flags: dict[str, Any] = {}
    if new_api:
        flags["matmul_allow_tf32"] = _effective("cuda.matmul") == "tf32"
        flags["cudnn_allow_tf32"] = _effective("cudnn.conv") == "tf32"
    else:
        flags["matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
        flags["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    flags["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    flags["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
    if new_api:
        flags["fp32_precision"] = {
            path or "generic": str(node.fp32_precision)
            for path, node in zip(_FP32_NODES, map(_fp32_node, _FP32_NODES), strict=True)
            if node is not None
        }
    else:
        flags["float32_matmul_precision"] = _matmul_precision()
    return flags


def device_name(device: torch.device | str) -> str:
    """A readable name of the device: the GPU model on CUDA, else the device type."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    return dev.type


def run_device_facts(device: torch.device | str) -> dict[str, Any]:
    """``device_name`` and ``precision`` flags recorded for a run (and for each resume)."""
    return {"device_name": device_name(device), "precision": precision_flags()}
