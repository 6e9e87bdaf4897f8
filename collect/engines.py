"""Per-minibatch gradient engines: ``loop`` (one backward per minibatch) and ``vmap``.

Both return the gradient of the mean loss of each minibatch (cross-entropy
unless a ``loss_fn`` is given), at the model's current weights, for the selected parameter tensors, flattened in
C order: a ``(M, numel)`` float32 tensor per tensor name, plus the per-minibatch
losses and the number of correct predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sgnlake.schema.errors import ConfigError

from .models import model_spec

ENGINES = ("loop", "vmap")

#: ``loss_fn(output, target) -> scalar mean loss over the batch``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def n_correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions of a classifier (``argmax`` of ``(B, K)`` logits equals integer labels ``(B,)``).

    0 for outputs that are not such logits (:func:`is_classifier` tells).
    """
    if not is_classifier(out, y):
        return torch.zeros((), dtype=torch.int64, device=out.device)
    return (out.detach().argmax(1) == y).sum()


def is_classifier(out: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``out`` are ``(B, K)`` logits of integer labels ``y`` of shape ``(B,)`` (accuracy is defined)."""
    return out.ndim == 2 and y.ndim == 1 and not y.is_floating_point() and not y.is_complex()


@dataclass
class MinibatchGradients:
    """Per-minibatch results of one snapshot (all on the compute device).

    Attributes
    ----------
    grads : dict of str to torch.Tensor
        ``(M, numel)`` float32 gradient of each minibatch's mean loss, per tensor.
    losses : torch.Tensor
        ``(M,)`` mean loss of each minibatch.
    correct : torch.Tensor
        Number of correctly classified examples over all minibatches (int64 scalar).
    classifier : bool
        Whether the outputs are class logits of integer labels (else ``correct`` is 0
        and the accuracy is undefined).
    """

    grads: dict[str, torch.Tensor]
    losses: torch.Tensor
    correct: torch.Tensor
    classifier: bool = True


def choose_engine(engine: str, model_name: str, device: torch.device | str) -> str:
    """Resolve ``auto``: ``vmap`` on CUDA; on CPU the model's registered ``cpu_engine``.

    design.md measured vmap 4-5x faster than the loop for FCNs on CPU and no gain
    for LeNet on CPU; on a GPU batching the minibatches is what pays.
    """
    if engine in ENGINES:
        return engine
    if engine != "auto":
        raise ConfigError(f"unknown engine {engine!r}: use auto, loop or vmap")
    if torch.device(device).type == "cuda":
        return "vmap"
    return model_spec(model_name).cpu_engine


def activation_numel(model: nn.Module, example_shape: Sequence[int], device: torch.device | str) -> int:
    """Number of activation values one example produces (sum of all module outputs)."""
    total = [0]

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *example_shape), device=device))
    finally:
        for h in handles:
            h.remove()
    return max(total[0], 1) + int(torch.Size(example_shape).numel())


#: Activation bytes one vmap call may hold on the CPU. Measured (``bench/collect_snapshot.py``, 1 torch
#: thread, b = 50, M = 100): LeNet (5.7 MB of activations per minibatch) runs alike at 8-20 minibatches
#: per call and 1.7x slower in one call of 100, whose temporaries spill out of the caches; the FCN
#: 784-64x3-10 (0.8 MB) is fastest in one call of all 100 (17-25% slower at 50 or 85), where it
#: equals a plain ``torch.func`` vmap. 128 MiB gives LeNet 5 calls of 20 and the FCN one call.
CPU_CALL_ACTIVATION_BYTES = 128 * 2**20


def vmap_chunk(
    model: nn.Module,
    example_shape: Sequence[int],
    batch_size: int,
    n_grad_params: int,
    n_minibatches: int,
    memory_budget_mb: int,
    device: torch.device | str,
) -> int:
    """Minibatches per vmap call: within ``memory_budget_mb``, and on the CPU at its measured optimum.

    Estimate per minibatch: 4 bytes x (4 x activations of its ``b`` examples,
    forward and backward, plus elementwise temporaries, + 2 x the gradient size).
    On the CPU the activations of one call are also capped at
    :data:`CPU_CALL_ACTIVATION_BYTES`, where larger calls run slower (speed, not
    memory); the choice is deterministic, so a resumed run batches as before.
    """
    act = activation_numel(model, example_shape, device)
    act_bytes = 4 * 4 * batch_size * act
    per_mb = act_bytes + 4 * 2 * n_grad_params
    chunk = min(n_minibatches, (memory_budget_mb * 2**20) // per_mb)
    if torch.device(device).type == "cpu":
        chunk = min(chunk, CPU_CALL_ACTIVATION_BYTES // act_bytes)
    chunk = max(1, chunk)
    # equal calls: M = 100 at a cap of 85 runs as 2 x 50, not 85 + a slow small remainder
    calls = -(-n_minibatches // chunk)
    return int(max(1, -(-n_minibatches // calls)))


def _check_names(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    for n in names:
        if n not in params:
            raise ConfigError(f"model has no parameter tensor {n!r}: use one of {', '.join(params)}")
    return params


def loop_gradients(
    model: nn.Module,
    names: Sequence[str],
    x: torch.Tensor,
    y: torch.Tensor,
    batches: torch.Tensor,
    loss_fn: LossFn | None = None,
) -> MinibatchGradients:
    """One forward/backward (``torch.autograd.grad``) per minibatch.

    Parameters
    ----------
    model : torch.nn.Module
        The model at the snapshot weights (not modified; ``.grad`` untouched).
    names : sequence of str
        Parameter tensors to differentiate.
    x, y : torch.Tensor
        All training inputs and labels on the compute device.
    batches : torch.Tensor
        ``(M, b)`` example indices of each minibatch.
    loss_fn : callable, optional
        ``loss_fn(model(xb), yb)``: the minibatch's mean loss (default: cross-entropy).

    Notes
    -----
    In train mode a BatchNorm layer normalises each minibatch with that
    minibatch's statistics and updates its running buffers in place: callers
    that must leave the model as it was restore them
    (:func:`~sgnlake.collect.models.preserved_buffers`).
    """
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    params = _check_names(model, names)
    sel = [params[n] for n in names]
    m = batches.shape[0]
    dev = x.device
    grads = {n: torch.empty((m, params[n].numel()), dtype=torch.float32, device=dev) for n in names}
    losses = torch.empty(m, dtype=torch.float32, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    classifier = True
    for j in range(m):
        idx = batches[j]
        xb, yb = x[idx], y[idx]
        out = model(xb)
        loss = loss_fn(out, yb)
        gs = torch.autograd.grad(loss, sel)
        for n, g in zip(names, gs, strict=True):
            grads[n][j] = g.reshape(-1)
        losses[j] = loss.detach()
        classifier = is_classifier(out, yb)
        correct += n_correct(out, yb)
    return MinibatchGradients(grads, losses, correct, classifier)


def vmap_gradients(
    model: nn.Module,
    names: Sequence[str],
    x: torch.Tensor,
    y: torch.Tensor,
    batches: torch.Tensor,
    chunk: int,
    loss_fn: LossFn | None = None,
) -> MinibatchGradients:
    """Per-minibatch gradients with ``torch.func`` (``functional_call`` + ``grad`` + ``vmap``).

    ``chunk`` minibatches are batched per call (see :func:`vmap_chunk`).
    Arguments as :func:`loop_gradients`.

    Buffers (BatchNorm running statistics) are functional: each minibatch of a
    call gets its own copy, which a train-mode forward pass may update; the
    model's own buffers are not touched. Gradients equal the loop engine's.
    """
    from torch.func import functional_call, grad, vmap

    user_loss = F.cross_entropy if loss_fn is None else loss_fn
    params = _check_names(model, names)
    sel = {n: params[n].detach() for n in names}
    rest = {n: p.detach() for n, p in params.items() if n not in sel}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    classifier = [True]

    def loss_of(
        p: dict[str, torch.Tensor], bufs: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor
    ):
        out = functional_call(model, {**p, **rest, **bufs}, (xb,))
        loss = user_loss(out, yb)
        classifier[0] = is_classifier(out, yb)
        return loss, (loss.detach(), n_correct(out, yb))

    vfn = vmap(grad(loss_of, has_aux=True), in_dims=(None, 0, 0, 0), randomness="different")

    def fn(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor):
        c = xb.shape[0]
        bufs = {n: b.unsqueeze(0).expand(c, *b.shape).clone() for n, b in buffers.items()}
        return vfn(p, bufs, xb, yb)

    m = batches.shape[0]
    chunk = max(1, min(chunk, m))
    if chunk >= m:  # one call: its outputs are the result, no copy
        gs, (ls, cs) = fn(sel, x[batches], y[batches])
        return MinibatchGradients({n: gs[n].reshape(m, -1) for n in names}, ls, cs.sum(), classifier[0])
    dev = x.device
    grads = {n: torch.empty((m, params[n].numel()), dtype=torch.float32, device=dev) for n in names}
    losses = torch.empty(m, dtype=torch.float32, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    for start in range(0, m, chunk):
        idx = batches[start : start + chunk]
        gs, (ls, cs) = fn(sel, x[idx], y[idx])
        stop = start + idx.shape[0]
        for n in names:
            grads[n][start:stop] = gs[n].reshape(idx.shape[0], -1)
        losses[start:stop] = ls
        correct += cs.sum()
    return MinibatchGradients(grads, losses, correct, classifier[0])
