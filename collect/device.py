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


def _matmul_precision() -> str:
    return str(torch.get_float32_matmul_precision())


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and cuDNN convolutions inside the block; restored afterwards.

    With TF32 a float32 convolution or matmul on Ampere and later GPUs keeps 10
    mantissa bits, and the SGN misses float32 tolerance against the CPU. The
    flags are process-global (other threads see them while the block runs).
    """
    prec = _matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        # the matmul flag is derived from the float32 matmul precision: restoring the
        # precision restores it exactly ("medium" too, which allow_tf32=True would not)
        torch.set_float32_matmul_precision(prec)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


def precision_flags() -> dict[str, Any]:
    """The global settings that decide float32 results on CUDA, as recorded in ``RunMeta.extra``."""
    return {
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": _matmul_precision(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def device_name(device: torch.device | str) -> str:
    """A readable name of the device: the GPU model on CUDA, else the device type."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    return dev.type


def run_device_facts(device: torch.device | str) -> dict[str, Any]:
    """``device_name`` and ``precision`` flags recorded for a run (and for each resume)."""
    return {"device_name": device_name(device), "precision": precision_flags()}
