"""How a probe computes: the vmap memory budget and chunk, the engine, the tensors it stores.

Used by :class:`~sgnlake.collect.probe.Probe` (and through it by ``sgnlake collect``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.meta import TensorInfo

from . import rng
from .device import MemoryBudget, resolve_memory_budget
from .engines import choose_engine, vmap_chunk
from .models import MODELS, preserved_buffers, tensor_table
from .snapshot import snapshot_device_bytes


def budget_and_chunk(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int,
    n_minibatches: int,
    n_grad: int,
    *,
    engine: str,
    device: torch.device | str,
    configured_mb: int,
    auto_budget: bool,
    stored_extra: Mapping[str, Any] | None = None,
    free_bytes: int | None = None,
    deferred: int = 0,
) -> tuple[MemoryBudget, int]:
    """The vmap memory budget of a run and its chunk (minibatches per call; 1 for the loop engine).

    Parameters
    ----------
    model : torch.nn.Module
        The model (on the device it computes on; used to count activations).
    input_shape : tuple of int
        Shape of one example.
    batch_size, n_minibatches, n_grad : int
        ``b``, ``M`` and the number of parameters whose SGN is computed.
    engine : {"loop", "vmap"}
        The resolved engine.
    device : torch.device or str
        The compute device (CUDA: the budget may come from its free memory).
    configured_mb, auto_budget
        ``RunConfig.memory_budget_mb`` and whether it is replaced on CUDA
        (see :func:`~sgnlake.collect.device.resolve_memory_budget`).
    stored_extra : mapping, optional
        ``RunMeta.extra`` of the run being resumed: with a budget read from
        the device, the chunk the run started with is kept when it still fits,
        so that the batched calls are the same as before.
    free_bytes : int, optional
        Free device memory (default: read from the device).
    deferred : int
        Raw ``(M, P)`` gradient sets held by queued snapshots whose centring is
        deferred to the writer (CPU, :func:`~sgnlake.collect.snapshot.deferred_sets`):
        on the CPU the vmap calls get the configured budget less these bytes, so
        that calls and queued gradients together stay within it.

    Returns
    -------
    tuple of (MemoryBudget, int)
    """
    budget = resolve_memory_budget(
        device,
        configured_mb,
        explicit=not auto_budget,
        reserved_bytes=snapshot_device_bytes(n_minibatches, n_grad, deferred=deferred),
        free_bytes=free_bytes,
    )
    if engine != "vmap":
        return budget, 1
    calls_mb = budget.mb
    if budget.source == "config" and deferred:  # from free memory they are already reserved
        queued = snapshot_device_bytes(n_minibatches, n_grad, deferred=deferred) - snapshot_device_bytes(
            n_minibatches, n_grad
        )
        calls_mb = max(1, budget.mb - -(-queued // 2**20))
    model_device = next(model.parameters()).device
    with rng.preserved_rng(), preserved_buffers(model):  # its forward pass counts activations
        chunk = vmap_chunk(model, input_shape, batch_size, n_grad, n_minibatches, calls_mb, model_device)
    first = (stored_extra or {}).get("vmap_chunk")
    if budget.source == "device" and isinstance(first, int) and first >= 1:
        chunk = min(chunk, first)
    return budget, chunk


def resolve_engine(engine: str, model_name: str, device: torch.device | str) -> str:
    """``loop`` or ``vmap``: a registered model by :func:`~sgnlake.collect.engines.choose_engine`;
    ``auto`` for any other model is ``loop`` (it runs whatever the forward pass does; ``vmap``
    needs a forward pass that ``torch.func`` can batch, so it is asked for explicitly)."""
    if engine == "auto" and model_name not in MODELS:
        return "loop"
    return choose_engine(engine, model_name, device)


def select_tensors(model: nn.Module, wanted: Sequence[str], model_name: str) -> tuple[TensorInfo, ...]:
    """The tensor table of ``model`` restricted to ``wanted`` (all when empty); ConfigError on unknown names."""
    tensors = tuple(t for t in tensor_table(model) if _trainable(model, t.name))
    if not wanted:
        return tensors
    known = {t.name for t in tensors}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(
            f"model {model_name!r} has no tensor {unknown[0]!r}: use some of {', '.join(sorted(known))}"
        )
    return tuple(t for t in tensors if t.name in wanted)


def _trainable(model: nn.Module, name: str) -> bool:
    return dict(model.named_parameters())[name].requires_grad
