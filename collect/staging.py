"""Host buffers of snapshots: allocated once per run, reused; device-to-host copies overlapped on CUDA.

A :class:`HostStaging` pool hands out :class:`HostBuffers` (one ``(M, numel)``
SGN buffer and two ``(numel,)`` buffers per tensor). On CUDA the buffers are
pinned and :meth:`HostStaging.stage` queues ``non_blocking`` copies on a side
stream, after the compute queued so far, and records an event: the call returns
at once, so the transfer of snapshot ``k`` runs while the next training steps
and the next snapshot's minibatch chunks are computed. Whoever reads the
buffers calls :meth:`HostBuffers.wait` first (the background writer does), and
gives them back with :meth:`HostStaging.give_back` when done; they are not
handed out again before that. On the CPU the same calls make plain copies,
``wait`` returns at once, and the buffers are reused the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: What the buffers hold: (tensor name, numel) in order, and M.
Layout = tuple[tuple[tuple[str, int], ...], int]


def layout_of(numels: Mapping[str, int], n_minibatches: int) -> Layout:
    """The :data:`Layout` of buffers for tensors ``numels`` (name -> numel) and ``M`` minibatches."""
    return tuple((str(n), int(p)) for n, p in numels.items()), int(n_minibatches)


@dataclass(eq=False)
class HostBuffers:
    """One snapshot's host buffers (float32 CPU tensors; pinned on CUDA).

    Attributes
    ----------
    sgn, grad, weight : dict of str to torch.Tensor
        ``(M, numel)``, ``(numel,)`` and ``(numel,)`` per tensor.
    layout : Layout
        What the buffers were allocated for.
    event : torch.cuda.Event or None
        Recorded after the copies of :meth:`HostStaging.stage` (CUDA only).
    """

    sgn: dict[str, torch.Tensor]
    grad: dict[str, torch.Tensor]
    weight: dict[str, torch.Tensor]
    layout: Layout
    event: Any = None
    _numpy: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def wait(self) -> None:
        """Block until the queued copies into these buffers are complete (no-op on the CPU)."""
        if self.event is not None:
            self.event.synchronize()

    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """Numpy views (no copy) of the buffers: ``{"sgn": {...}, "grad": {...}, "weight": {...}}``.

        Read them only after :meth:`wait`.
        """
        if not self._numpy:
            self._numpy = {
                kind: {n: t.numpy() for n, t in getattr(self, kind).items()}
                for kind in ("sgn", "grad", "weight")
            }
        return self._numpy

    def data_ptrs(self) -> list[int]:
        """Addresses of every buffer (to check reuse)."""
        return [t.data_ptr() for d in (self.sgn, self.grad, self.weight) for t in d.values()]


class HostStaging:
    """A pool of reusable host buffers for the snapshots of one run on ``device``.

    Parameters
    ----------
    device : torch.device or str
        The compute device. On CUDA the buffers are pinned (page-locked, unless
        ``pin`` is False or pinning fails) and copies run on a side stream.
    pin : bool, optional
        Override pinning (default: on CUDA only).
    """

    def __init__(self, device: torch.device | str, *, pin: bool | None = None) -> None:
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        self.pinned = self.is_cuda if pin is None else bool(pin)
        self._stream = torch.cuda.Stream(self.device) if self.is_cuda else None
        self._free: list[HostBuffers] = []
        self._lock = threading.Lock()
        #: Buffer sets allocated so far (each once; reuse keeps it at the number in flight).
        self.allocations = 0
        #: Why pinning was given up (pinned memory refused), else "".
        self.pin_failure = ""

    @property
    def overlapped(self) -> bool:
        """Whether :meth:`stage` returns before the copies are done (CUDA)."""
        return self.is_cuda

    def describe(self) -> dict[str, Any]:
        """The settings recorded in ``RunMeta.extra['host_staging']``."""
        d: dict[str, Any] = {
            "pinned": self.pinned,
            "async_copy": self.overlapped,
            "buffer_sets": self.allocations,
        }
        if self.pin_failure:
            d["pin_failure"] = self.pin_failure
        return d

    def _empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.pinned:
            try:
                return torch.empty(shape, dtype=torch.float32, pin_memory=True)
            except RuntimeError as e:  # page-locked memory refused: fall back to pageable memory
                self.pinned = False
                self.pin_failure = str(e).splitlines()[0] if str(e) else type(e).__name__
        return torch.empty(shape, dtype=torch.float32)

    def _allocate(self, layout: Layout) -> HostBuffers:
        tensors, m = layout
        bufs = HostBuffers(
            sgn={n: self._empty((m, p)) for n, p in tensors},
            grad={n: self._empty((p,)) for n, p in tensors},
            weight={n: self._empty((p,)) for n, p in tensors},
            layout=layout,
            event=torch.cuda.Event() if self.is_cuda else None,
        )
        self.allocations += 1
        return bufs

    def reserve(self, layout: Layout, count: int) -> None:
        """Allocate buffer sets up front so that ``count`` are available (no allocation mid-run)."""
        with self._lock:
            have = sum(1 for b in self._free if b.layout == layout)
            for _ in range(count - have):
                self._free.append(self._allocate(layout))

    def take(self, layout: Layout) -> HostBuffers:
        """A free buffer set for ``layout`` (allocated only when none is free)."""
        with self._lock:
            for i, b in enumerate(self._free):
                if b.layout == layout:
                    return self._free.pop(i)
            return self._allocate(layout)

    def give_back(self, bufs: HostBuffers) -> None:
        """Return ``bufs`` to the pool; only after every reader is done with them."""
        with self._lock:
            self._free.append(bufs)

    def stage(
        self,
        bufs: HostBuffers,
        sgn: Mapping[str, torch.Tensor] | None,
        grad: Mapping[str, torch.Tensor] | None,
        weight: Mapping[str, torch.Tensor],
    ) -> None:
        """Copy device tensors into ``bufs`` (on CUDA: queued after the current stream's work).

        The sources must not be modified by later work on the current stream
        (pass a copy of tensors that change, e.g. weights). On CUDA they are
        marked as used by the side stream (``record_stream``), so the caching
        allocator does not hand their memory out before the copies are done.
        ``sgn`` None: the SGN buffers are already filled (see
        :func:`sgnlake.collect.snapshot.centre` with ``out``); ``sgn`` and ``grad``
        None: they are filled later (the centring deferred to
        :meth:`sgnlake.collect.snapshot.Snapshot.wait`, CPU only).
        """
        pairs = (
            ([] if sgn is None else [(bufs.sgn[n], sgn[n]) for n in bufs.sgn])
            + ([] if grad is None else [(bufs.grad[n], grad[n]) for n in bufs.grad])
            + [(bufs.weight[n], weight[n]) for n in bufs.weight]
        )
        if self._stream is None:
            for dst, src in pairs:
                dst.copy_(src.reshape(dst.shape))
            return
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            for dst, src in pairs:
                dst.copy_(src.reshape(dst.shape), non_blocking=True)
                src.record_stream(self._stream)
            bufs.event.record(self._stream)
