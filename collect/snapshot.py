"""One SGN snapshot: per-minibatch gradients at fixed weights, full gradient, SGN.

At training iteration ``t`` the ``n`` examples are cut into ``M = floor(n / b)``
minibatches (a permutation seeded from ``(seed, t)``, or the data order); the
remaining ``n - M*b`` are left out. With ``g_j`` the gradient of minibatch
``j``'s mean loss, the full gradient is ``g = mean_j g_j`` (accumulated in
float64) and the SGN is ``U_j = g_j - g`` (computed in float64, stored float32).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sgnlake.schema.errors import ConfigError, DivergedError

from . import rng
from .device import full_float32
from .engines import LossFn, loop_gradients, vmap_gradients
from .models import preserved_buffers
from .staging import HostBuffers, HostStaging, layout_of

#: Bytes of the float64 temporaries of one centring block on CUDA (bounds device memory).
_CENTRE_BYTES = 64 * 2**20
#: Bytes of the float64 block on the CPU: small enough to stay in the core's L2 cache, so each
#: column block is read once from memory and written once (measured in ``bench/collect_snapshot.py``).
_CENTRE_CACHE_BYTES = 2**20
#: Narrowest CPU block (columns); see :func:`centre`.
_MIN_BLOCK = 64


@dataclass
class Snapshot:
    """The host-side result of one snapshot, ready to be written.

    Attributes
    ----------
    index : int
        Position along the ``iteration`` dimension (0-based snapshot number).
    iteration : int
        Training step ``t`` (weights after ``t`` SGD updates).
    loss, accuracy : float
        Mean loss and accuracy over the ``M*b`` examples used, at ``w_t``.
    sgn : dict of str to numpy.ndarray
        ``(M, numel)`` float32 SGN per tensor.
    grad, weight : dict of str to numpy.ndarray
        ``(numel,)`` float32 full gradient and weights per tensor.
    checkpoint : bytes or None
        Resume state at this snapshot (see :mod:`sgnlake.collect.checkpoint`).

    Notes
    -----
    A snapshot computed with a :class:`~sgnlake.collect.staging.HostStaging`
    pool holds views of that pool's buffers: its arrays are valid after
    :meth:`wait` (the device-to-host copy may still run when it is returned)
    and until :meth:`release`. Without a pool both are no-ops.
    """

    index: int
    iteration: int
    loss: float
    accuracy: float
    sgn: dict[str, np.ndarray]
    grad: dict[str, np.ndarray]
    weight: dict[str, np.ndarray]
    checkpoint: bytes | None = None
    #: Per tensor ``{alpha, n_nonfinite}`` computed on the device (``--store alpha``), else None.
    results: dict[str, dict[str, np.ndarray]] | None = None
    _buffers: HostBuffers | None = field(default=None, repr=False)
    _pool: HostStaging | None = field(default=None, repr=False)
    _pending: _Centring | None = field(default=None, repr=False)
    _failed: DivergedError | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes of the float arrays (SGN + grad + weight)."""
        return sum(a.nbytes for d in (self.sgn, self.grad, self.weight) for a in d.values())

    def wait(self) -> None:
        """Block until the arrays hold their values (the device-to-host copy is done).

        For a snapshot whose centring was deferred (see :func:`compute_snapshot`), the
        SGN and full gradient are computed here, in the calling thread (the collector's
        background writer), and their finiteness is checked.

        Raises
        ------
        DivergedError
            A gradient of a deferred snapshot is not finite (raised again by later calls).
        """
        if self._failed is not None:
            raise self._failed
        pending, self._pending = self._pending, None
        if pending is not None and self._buffers is not None:
            try:
                pending.run(self._buffers)
            except DivergedError as e:
                self._failed = e
                raise
        if self._buffers is not None:
            self._buffers.wait()

    def release(self) -> None:
        """Give the host buffers back to their pool (after the last read); idempotent."""
        bufs, pool = self._buffers, self._pool
        self._pool = self._pending = None
        if bufs is not None and pool is not None:
            pool.give_back(bufs)


def _check_finite(means: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise :class:`DivergedError` naming the first tensor whose float64 mean gradient is not finite.

    A non-finite gradient always gives a non-finite float64 mean (float32 sums cannot
    overflow it): checking the ``(P,)`` means is enough, with one device sync for all tensors.
    """
    names = list(means)
    finite = torch.stack([torch.isfinite(means[n]).all() for n in names]).tolist() if names else []
    for n, ok in zip(names, finite, strict=True):
        if not ok:
            raise DivergedError(f"non-finite gradient of {n} at iteration {iteration}: lower --lr")


@dataclass
class _Centring:
    """The centring of a snapshot's gradients into its host buffers, left to whoever waits for it.

    ``grads`` are the engine's fresh ``(M, P)`` CPU tensors (owned by the snapshot:
    nothing else writes them); :meth:`run` computes exactly what :func:`compute_snapshot`
    computes in place (:func:`centre` into the SGN buffers, the float32 mean into the
    gradient buffers) and then the same finiteness check.
    """

    grads: dict[str, torch.Tensor]
    iteration: int

    def run(self, bufs: HostBuffers) -> None:
        means = {n: centre(g, out=bufs.sgn[n]) for n, g in self.grads.items()}
        self.grads = {}
        _check_finite(means, self.iteration)
        for n, mu in means.items():
            bufs.grad[n].copy_(mu)


def n_minibatches(n: int, batch_size: int) -> tuple[int, int]:
    """``(M, remainder)`` with ``M = floor(n / b)`` and ``remainder = n - M*b``."""
    if batch_size > n:
        raise ConfigError(f"--batch-size {batch_size} exceeds the {n} training examples: use a smaller batch")
    m = n // batch_size
    return m, n - m * batch_size


def partition(n: int, batch_size: int, *, seed: int, iteration: int, kind: str = "permute") -> torch.Tensor:
    """Example indices of the ``M`` minibatches of the snapshot at ``iteration``.

    Parameters
    ----------
    n, batch_size : int
        Number of examples and minibatch size ``b``.
    seed, iteration : int
        ``permute`` draws ``torch.randperm(n)`` from a CPU generator seeded from
        ``(seed, iteration)`` (the global RNGs are not touched).
    kind : {"permute", "fixed"}
        ``fixed`` uses the data order (the paper's code).

    Returns
    -------
    torch.Tensor
        ``(M, b)`` int64 indices on the CPU; the last ``n - M*b`` examples of the
        order are left out.
    """
    m, _ = n_minibatches(n, batch_size)
    if kind == "fixed":
        order = torch.arange(n)
    elif kind == "permute":
        order = torch.randperm(n, generator=rng.generator(seed, rng.PARTITION, iteration))
    else:
        raise ConfigError(f"unknown partition {kind!r}: use permute or fixed")
    return order[: m * batch_size].view(m, batch_size)


def centre(grads: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Turn ``(M, P)`` float32 gradients into SGN; return the float64 mean ``(P,)``.

    The mean is accumulated in float64 and ``g_j - g`` is formed in float64
    before rounding to float32, so the stored SGN sums to ~0 over minibatches.
    The SGN is written to ``out`` (an ``(M, P)`` float32 tensor on the same
    device, e.g. a host buffer) or, by default, over ``grads`` in place.

    On the CPU the work runs in column blocks that fit the L2 cache, through
    one reused float64 temporary: each value is read from memory once (mean
    and subtraction from the cached block) and written once. Blocks are at
    least 64 columns wide (the last one absorbs the remainder), where torch's
    column sums take the same path as over the whole array: the result is
    bit-identical to ``(g.double() - g.sum(0, dtype=float64) / M).float()``
    (checked in ``tests/test_collect_snapshot.py``). On other devices (CUDA)
    the mean is one reduction and blocks only bound the temporary memory.
    """
    m, p = grads.shape
    if out is None:
        out = grads
    if grads.device.type != "cpu" or p == 0:
        mean = grads.sum(0, dtype=torch.float64) / m
        step = max(1, _CENTRE_BYTES // max(1, 8 * m))
        for s in range(0, p, step):
            e = min(p, s + step)
            out[:, s:e] = (grads[:, s:e].to(torch.float64) - mean[s:e]).to(torch.float32)
        return mean
    step = max(_MIN_BLOCK, _CENTRE_CACHE_BYTES // max(1, 8 * m) // _MIN_BLOCK * _MIN_BLOCK)
    mean = torch.empty(p, dtype=torch.float64)
    tmp = torch.empty((m, min(p, 2 * step)), dtype=torch.float64)
    s = 0
    while s < p:
        e = p if p - s < 2 * step else s + step
        t, mu = tmp[:, : e - s], mean[s:e]
        t.copy_(grads[:, s:e])
        torch.sum(t, 0, out=mu)
        mu.div_(m)
        t.sub_(mu)
        out[:, s:e].copy_(t)
        s = e
    return mean


def snapshot_device_bytes(n_minibatches: int, n_params: int, *, deferred: int = 0) -> int:
    """Device bytes a snapshot holds besides its vmap calls (for the memory budget).

    The float32 ``(M, P)`` gradients of this snapshot and of the previous one
    (its copy to the host may still run), and the float64 centring temporaries;
    plus, on the CPU, ``deferred`` more ``(M, P)`` float32 sets: the raw gradients
    of snapshots queued for the writer whose centring is deferred to it (see
    ``defer_centring`` of :func:`compute_snapshot`; each is held until the writer
    centres it, see :func:`deferred_sets`).
    """
    return (2 + int(deferred)) * 4 * int(n_minibatches) * int(n_params) + 3 * _CENTRE_BYTES


def deferred_sets(device: torch.device | str, slots: int, *, whole_sgn: bool, device_alpha: bool) -> int:
    """How many queued snapshots may hold raw ``(M, P)`` gradients awaiting the writer's centring.

    The centring is deferred only on the CPU, with the whole SGN kept and no
    ``device_alpha`` (see :func:`compute_snapshot`); then every writer slot but the
    one of the snapshot being computed may hold a queued, not yet centred snapshot.
    """
    if torch.device(device).type != "cpu" or not whole_sgn or device_alpha:
        return 0
    return max(0, int(slots) - 1)


def compute_snapshot(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    index: int,
    iteration: int,
    batch_size: int,
    seed: int,
    names: Sequence[str] | None = None,
    partition_kind: str = "permute",
    engine: str = "loop",
    chunk: int = 1,
    staging: HostStaging | None = None,
    loss_fn: LossFn | None = None,
    select: Mapping[str, torch.Tensor] | None = None,
    device_alpha: bool = False,
    defer_centring: bool | None = None,
) -> Snapshot:
    """Compute one snapshot at the model's current weights.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its weights, buffers (BatchNorm statistics), ``.grad``, mode
        and every global RNG state are left as they were. Gradients are taken in
        train mode: a BatchNorm layer normalises each minibatch with that
        minibatch's own statistics.
    x, y : torch.Tensor
        All training inputs and labels on the compute device.
    index, iteration : int
        Snapshot number and training step ``t``.
    batch_size, seed : int
        Minibatch size ``b`` and run seed (partition generator).
    names : sequence of str, optional
        Tensors to compute (default: all parameters).
    partition_kind : {"permute", "fixed"}
        See :func:`partition`.
    engine : {"loop", "vmap"}
        Per-minibatch gradient engine; ``chunk`` minibatches per vmap call.
    staging : HostStaging, optional
        Pool of reusable host buffers. With it, the copy to the host is only
        queued on CUDA (call :meth:`Snapshot.wait` before reading, and
        :meth:`Snapshot.release` after). Without it the snapshot owns fresh
        buffers and is complete when returned.
    loss_fn : callable, optional
        ``loss_fn(model(xb), yb)``, the mean loss of a minibatch (default:
        cross-entropy). Accuracy is NaN unless the outputs are class logits of
        integer labels.
    select : mapping of str to torch.Tensor, optional
        Flat indices (int64, on the device) of the parameters of each tensor whose
        SGN, gradient and weight are kept (``--param-sample``, see
        :mod:`sgnlake.collect.sampling`); default all.
    device_alpha : bool
        Also compute the Mohammadi alpha of every parameter from the full SGN on
        the device (:mod:`sgnlake.collect.device_alpha`) into :attr:`Snapshot.results`.
    defer_centring : bool, optional
        Leave the centring (SGN, full gradient) and the gradients' finiteness check to
        :meth:`Snapshot.wait`, which the collector's background writer calls in its own
        thread: the caller gets the snapshot right after the gradients. Only on the CPU,
        with a ``staging`` pool, the whole SGN kept and no ``device_alpha`` (otherwise
        ignored). Default: exactly then. The values are bit-identical either way; a
        non-finite gradient then raises :class:`DivergedError` from :meth:`Snapshot.wait`.

    Returns
    -------
    Snapshot

    Raises
    ------
    DivergedError
        A loss or gradient is not finite (a gradient: from :meth:`Snapshot.wait` when the
        centring is deferred).

    Notes
    -----
    The gradients are computed with TF32 off (:func:`~sgnlake.collect.device.full_float32`).
    """
    if names is None:
        names = [n for n, _ in model.named_parameters()]
    batches = partition(x.shape[0], batch_size, seed=seed, iteration=iteration, kind=partition_kind)
    batches = batches.to(x.device)
    was_training = model.training
    with rng.preserved_rng(), full_float32(), preserved_buffers(model):
        model.train()
        try:
            if engine == "vmap":
                res = vmap_gradients(model, names, x, y, batches, chunk, loss_fn)
            elif engine == "loop":
                res = loop_gradients(model, names, x, y, batches, loss_fn)
            else:
                raise ConfigError(f"unknown engine {engine!r}: use loop or vmap")
        finally:
            model.train(was_training)
    m = batches.shape[0]
    loss = float(res.losses.to(torch.float64).mean())
    if not np.isfinite(loss):
        raise DivergedError(f"non-finite loss at iteration {iteration}: lower --lr")
    params = dict(model.named_parameters())
    own = staging is None
    pool = HostStaging(x.device, pin=False) if own else staging
    sizes = {n: res.grads[n].shape[1] if select is None else int(select[n].numel()) for n in names}
    bufs = pool.take(layout_of(sizes, m))
    # on the CPU the SGN is centred straight into the host buffers (no second pass to copy it),
    # unless only a sample of it is kept or it is reduced on the device first
    direct = not pool.overlapped and select is None and not device_alpha
    defer = direct and not own if defer_centring is None else bool(defer_centring) and direct
    grad, weight = {}, {}
    results = None
    pending = None
    try:
        if defer:  # the weights now (the next training step changes them), the centring when waited for
            pool.stage(bufs, None, None, {n: params[n].detach() for n in names})  # CPU: copied at once
            pending = _Centring({n: res.grads[n] for n in names}, iteration)
        else:
            means = {n: centre(res.grads[n], out=bufs.sgn[n] if direct else None) for n in names}
            _check_finite(means, iteration)
            for n in names:
                grad[n] = means[n].to(torch.float32)
                # a copy: the next training step changes the weights while the copy to the host may still run
                weight[n] = params[n].detach().reshape(-1).to(torch.float32, copy=True)
        sgn = res.grads
        if device_alpha:
            from .device_alpha import device_results

            results = device_results({n: sgn[n] for n in names})
        if select is not None:  # per-column centring: selecting after it equals selecting before
            sgn = {n: sgn[n][:, select[n]] for n in names}
            grad = {n: grad[n][select[n]] for n in names}
            weight = {n: weight[n][select[n]] for n in names}
        if pending is None:
            pool.stage(bufs, None if direct else sgn, grad, weight)
    except BaseException:
        pool.give_back(bufs)
        raise
    arrays = bufs.arrays()
    snap = Snapshot(
        index=index,
        iteration=iteration,
        loss=loss,
        accuracy=float(res.correct) / (m * batch_size) if res.classifier else float("nan"),
        sgn=arrays["sgn"],
        grad=arrays["grad"],
        weight=arrays["weight"],
        results=results,
        _buffers=bufs,
        _pool=None if own else pool,
        _pending=pending,
    )
    if own:
        snap.wait()
    return snap
