"""The probe: SGN snapshots of any PyTorch model, from inside the user's own training loop.

>>> probe = Probe("lake/", run_id="mine", model=model, loss_fn=loss_fn, data=(X, y), batch_size=50)
>>> for step in range(T):
...     ...  # the user's own training step, any optimizer
...     if step % 100 == 0:
...         probe.snapshot(step)  # SGN of every minibatch at the model's current weights
>>> probe.close()

A snapshot at step ``t`` cuts the ``n`` examples of ``data`` into ``M = floor(n/b)``
minibatches (``partition="fixed"``: minibatch ``j`` holds examples ``j*b .. (j+1)*b - 1``
in data order; ``"permute"``: a permutation seeded from ``(seed, t)``), takes the
gradient ``g_j`` of ``loss_fn(model(x_j), y_j)`` for each, and stores ``U_j = g_j - mean_j g_j``
(see :mod:`sgnlake.collect.snapshot`). The gradients are taken in train mode: a
BatchNorm layer normalises each minibatch with that minibatch's own statistics
(the noise of the gradient the user's train-mode step would take on it).

The model is read, never changed: weights, ``.grad``, train/eval mode, buffers
(BatchNorm running statistics and counters) and every global RNG (torch CPU and
CUDA, numpy, python ``random``) are as they were after each snapshot, so the
training trajectory is bit-identical with and without the probe.

``sgnlake collect`` takes its snapshots through this class: the engine choice,
background writer, commit protocol, resume and lake layout are the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sgnlake.schema.errors import ConfigError, LakeError, RunExistsError, SgnlakeError
from sgnlake.schema.lake import (
    now,
    open_lake_group,
    software_versions,
)
from sgnlake.schema.lease import Lease, lease_ttl
from sgnlake.schema.meta import RunConfig, RunMeta, StorageSpec
from sgnlake.schema.names import COMPLETE, FAILED, INTERRUPTED, RUNNING, run_path

from .device import run_device_facts
from .device_alpha import ResultSink
from .engines import LossFn
from .models import n_parameters
from .probe_inputs import as_tensors, callable_name, describe_optimizer, parameter_table, tensors_fingerprint
from .probe_plan import budget_and_chunk, resolve_engine, select_tensors
from .probe_runs import check_same_probe_run, drop_failed_creation, opening_failed, stored_run_meta
from .sampling import check_stored, plan_samples
from .snapshot import compute_snapshot, deferred_sets, n_minibatches
from .staging import HostStaging, layout_of
from .writer import RunWriter

__all__ = [  # budget_and_chunk, resolve_engine, select_tensors, stored_run_meta: re-exported (probe_plan, probe_runs)
    "DEFAULT_MEMORY_BUDGET_MB",
    "USER_DATASET",
    "WRITER_SLOTS",
    "CheckpointFn",
    "Probe",
    "budget_and_chunk",
    "resolve_engine",
    "select_tensors",
    "stored_run_meta",
]

#: Snapshots in host memory at once (computed and waiting for, or being, written).
WRITER_SLOTS = 2
#: ``RunConfig.memory_budget_mb`` when none is given.
DEFAULT_MEMORY_BUDGET_MB: int = RunConfig.__dataclass_fields__["memory_budget_mb"].default
#: ``RunConfig.dataset`` of data handed to a :class:`Probe`.
USER_DATASET = "user"

#: ``checkpoint(snapshot_index) -> bytes``: resume state stored with a snapshot.
CheckpointFn = Callable[[int], bytes]


# ----------------------------------------------------------------------------- the probe


class Probe:
    """Store SGN snapshots of ``model`` at its current weights, from any training loop.

    Parameters
    ----------
    location : str or path
        Lake path or fsspec URL (created if absent).
    run_id : str
        Name of the run in the lake.
    model : torch.nn.Module
        The model being trained (read, never changed).
    data : pair of tensors/arrays, or indexable dataset of (x, y) pairs
        The examples whose minibatch gradients define the SGN (see :func:`as_tensors`);
        moved once to the model's device.
    batch_size : int
        Minibatch size ``b`` of the SGN.
    loss_fn : callable, optional
        ``loss_fn(model(x_batch), y_batch)`` returning the mean loss over the batch
        (default: cross-entropy).
    partition : {"permute", "fixed"}
        ``permute``: a fresh permutation per snapshot, seeded from ``(seed, step)``;
        ``fixed``: minibatch ``j`` holds examples ``j*b .. (j+1)*b - 1``.
    seed : int
        Seed of the ``permute`` partitions (no global RNG is drawn from).
    engine : {"auto", "loop", "vmap"}
        Per-minibatch gradient engine (``auto``: ``loop`` for models outside the registry).
    tensors : sequence of str
        Only store these parameter tensors (default: every parameter that requires grad).
    storage : StorageSpec, optional
        Dtype, codec and chunking of the stored arrays; ``param_sample`` and
        ``store="alpha"`` for models too big to store whole (as ``collect``).
    memory_budget_mb : int
        Memory budget of one vmap call.
    optimizer : torch.optim.Optimizer, optional
        Only recorded (class, hyperparameters, ``lr`` in the run config).
    resume : bool
        Append to run ``run_id`` if it exists (its data, batch size, partition, seed
        and tensors must match); snapshots then continue after its last committed step.
    background : bool
        Compress and write in a background thread while training continues.
    storage_options : mapping, optional
        fsspec options for URL locations.
    dataset : str
        Name recorded as the run's dataset.

    Notes
    -----
    Snapshot steps must increase. :meth:`close` (or leaving a ``with`` block)
    waits for the writes and marks the run complete; an exception in the
    ``with`` block marks it failed (``KeyboardInterrupt``: interrupted) with
    the committed snapshots kept. The run's attributes record the model class,
    its parameter table, the loss and optimizer, and a fingerprint of the data.
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        run_id: str,
        model: nn.Module,
        data: Any,
        batch_size: int = RunConfig.__dataclass_fields__["batch_size"].default,
        loss_fn: LossFn | None = None,
        partition: str = RunConfig.__dataclass_fields__["partition"].default,
        seed: int = 0,
        engine: str = "auto",
        tensors: Sequence[str] = (),
        storage: StorageSpec | None = None,
        memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
        optimizer: torch.optim.Optimizer | None = None,
        resume: bool = False,
        background: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        dataset: str = USER_DATASET,
    ) -> None:
        loc = os.fspath(location)
        params = list(model.parameters())
        if not params:
            raise ConfigError(f"model {type(model).__name__} has no parameters: nothing to probe")
        device = params[0].device
        opt = describe_optimizer(optimizer)
        cfg = RunConfig(
            run_id=run_id,
            model=type(model).__name__,
            dataset=dataset,
            batch_size=batch_size,
            lr=float(opt["lr"]) if opt and isinstance(opt.get("lr"), int | float) else None,
            seed=seed,
            partition=partition,
            engine=engine,
            device=str(device),
            storage=storage or StorageSpec(),
            tensors=tuple(tensors),
            memory_budget_mb=memory_budget_mb,
            optimizer="user",
        )
        existing = stored_run_meta(loc, run_id, storage_options=storage_options)
        if existing is not None and not resume:
            raise RunExistsError(
                f"run {run_id!r} already exists in {loc}: pass resume=True to append to it, or pick another run_id"
            )
        x, y = as_tensors(data, device)
        n_minibatches(x.shape[0], batch_size)  # raises when the batch exceeds the data
        if existing is not None:
            check_same_probe_run(existing, cfg)
        info = {
            "source": "probe",
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "n_parameters": n_parameters(model),
            "parameter_table": parameter_table(model),
            "loss": callable_name(loss_fn) if loss_fn is not None else "cross_entropy",
            "optimizer": opt if opt is not None else "not given",
            "data": {
                "x_shape": list(x.shape),
                "x_dtype": str(x.dtype).removeprefix("torch."),
                "y_shape": list(y.shape),
                "y_dtype": str(y.dtype).removeprefix("torch."),
            },
            "schedule": "probe.snapshot(step) calls",
        }
        self._setup(
            loc,
            cfg,
            model,
            x,
            y,
            existing=existing,
            fingerprint=tensors_fingerprint(x, y),
            planned=None,
            info=info,
            loss_fn=loss_fn,
            storage_options=storage_options,
            background=background,
            auto_budget=memory_budget_mb == DEFAULT_MEMORY_BUDGET_MB,
        )

    @classmethod
    def for_run(
        cls,
        location: str,
        config: RunConfig,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        existing: RunMeta | None,
        fingerprint: str,
        planned: Sequence[int],
        info: Mapping[str, Any],
        loss_fn: LossFn | None = None,
        storage_options: Mapping[str, Any] | None = None,
        background: bool = True,
        auto_budget: bool = False,
        input_shape: tuple[int, ...] | None = None,
    ) -> Probe:
        """The probe of a planned run (``sgnlake collect``): ``config`` resolved, snapshots at ``planned``.

        ``existing`` is the stored run being resumed (None: create it). Everything
        is checked before the lake is written. ``info`` goes into ``RunMeta.extra``.
        """
        self = cls.__new__(cls)
        self._setup(
            location,
            config,
            model,
            x,
            y,
            existing=existing,
            fingerprint=fingerprint,
            planned=tuple(planned),
            info=info,
            loss_fn=loss_fn,
            storage_options=storage_options,
            background=background,
            auto_budget=auto_budget,
            input_shape=input_shape,
        )
        return self

    def _setup(
        self,
        loc: str,
        cfg: RunConfig,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        existing: RunMeta | None,
        fingerprint: str,
        planned: tuple[int, ...] | None,
        info: Mapping[str, Any],
        loss_fn: LossFn | None,
        storage_options: Mapping[str, Any] | None,
        background: bool,
        auto_budget: bool,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.model, self.x, self.y, self.config, self.loss_fn = model, x, y, cfg, loss_fn
        self._planned = planned
        self._closed = False
        self._finished = False
        self.compute_seconds = 0.0
        device = x.device
        tensors = select_tensors(model, cfg.tensors, cfg.model)
        tensors, sample = plan_samples(tensors, cfg.seed, cfg.storage)  # --param-sample
        m, remainder = n_minibatches(x.shape[0], cfg.batch_size)
        if existing is not None:
            if existing.dataset_fingerprint and existing.dataset_fingerprint != fingerprint:
                raise ConfigError(
                    f"cannot resume run {cfg.run_id!r}: the training data differ from those it was "
                    "collected with (dataset fingerprint): use the same files"
                )
            same_plan = planned is None or tuple(existing.planned_iterations) == planned
            if not same_plan or existing.tensors != tensors:
                raise ConfigError(
                    f"cannot resume run {cfg.run_id!r}: its stored plan does not match its config"
                )
            engine = existing.engine or resolve_engine(cfg.engine, cfg.model, device)
        else:
            engine = resolve_engine(cfg.engine, cfg.model, device)
        self.engine = engine
        self.names = [t.name for t in tensors]
        n_grad = sum(t.numel for t in tensors)
        budget, self.chunk = budget_and_chunk(
            model,
            tuple(input_shape or x.shape[1:]),
            cfg.batch_size,
            m,
            n_grad,
            engine=engine,
            device=device,
            configured_mb=cfg.memory_budget_mb,
            auto_budget=auto_budget,
            stored_extra=existing.extra if existing else None,
            deferred=deferred_sets(
                device,
                WRITER_SLOTS if background else 1,
                whole_sgn=sample is None,
                device_alpha=cfg.storage.store == "alpha",
            ),
        )
        self.staging = HostStaging(device)
        self.staging.reserve(
            layout_of({t.name: t.n_stored for t in tensors}, m), WRITER_SLOTS if background else 1
        )
        facts = {
            "vmap_chunk": self.chunk,
            **budget.to_dict(),
            "host_staging": self.staging.describe(),
            **run_device_facts(device),
        }
        # ------------------------------------------------------------ write
        root = open_lake_group(loc, mode="a", storage_options=storage_options)
        lease = Lease.acquire(  # one live writer per run (LeaseHeldError names the other)
            root, run_path(cfg.run_id), {"command": "collect"}, ttl=lease_ttl(), what=f"run {cfg.run_id!r}"
        )
        try:
            if existing is None:
                drop_failed_creation(root, cfg.run_id)
                meta = RunMeta(
                    config=cfg,
                    tensors=tensors,
                    status=RUNNING,
                    n_examples=int(x.shape[0]),
                    n_minibatches=m,
                    remainder=remainder,
                    planned_iterations=planned or (),
                    total_steps=max(planned) if planned else 0,
                    committed=0,
                    engine=engine,
                    device=str(device),
                    dataset_fingerprint=fingerprint,
                    software=software_versions(),
                    created=now(),
                    updated=now(),
                    extra={**info, "threads": torch.get_num_threads(), **facts},
                )
                self.writer = RunWriter.create(
                    root, meta, background=background, slots=WRITER_SLOTS, param_index=sample
                )
            else:
                self.writer = RunWriter.reopen(root, cfg.run_id, background=background, slots=WRITER_SLOTS)
                resumes = list(self.writer.meta.extra.get("resumed", []))
                resumes.append(
                    {"at_snapshot": self.writer.meta.committed, "time": now(), "device": str(device), **facts}
                )
                self.writer.set_status(RUNNING, "", resumed=resumes, device_now=str(device))
                if sample is not None:
                    check_stored(self.writer.group, tensors, sample)
                if planned is None:  # a step announced but never committed is forgotten
                    its = tuple(self.writer.meta.planned_iterations[: self.writer.meta.committed])
                    self.writer.update_meta(planned_iterations=its, total_steps=its[-1] if its else 0)
        except SgnlakeError:
            lease.release()
            raise
        except Exception as e:  # the storage failed while the run was created (outage, read-only)
            lease.release()
            raise opening_failed(cfg.run_id, e, creating=existing is None) from None
        except BaseException:
            lease.release()
            raise
        self.writer.lease = lease
        self.select = (
            None if sample is None else {n: torch.as_tensor(i, device=device) for n, i in sample.items()}
        )
        self.device_alpha = cfg.storage.store == "alpha"  # --store alpha
        if self.device_alpha:
            open_sink = ResultSink.create if existing is None else ResultSink.reopen
            self.writer.result_sink = open_sink(root, self.writer.meta)
        self._next = self.writer.meta.committed
        self._steps = list(self.writer.meta.planned_iterations[: self._next])

    # ------------------------------------------------------------------ snapshots

    @property
    def meta(self) -> RunMeta:
        """The run's metadata as last written."""
        return self.writer.meta

    @property
    def n_snapshots(self) -> int:
        """Snapshots taken (committed, or computed and being written)."""
        return self._next

    def snapshot(self, step: int, *, checkpoint: CheckpointFn | None = None) -> None:
        """Compute and store the SGN of every minibatch at the model's current weights.

        Parameters
        ----------
        step : int
            The training step the weights belong to (recorded as ``iteration``);
            larger than the previous snapshot's.
        checkpoint : callable, optional
            ``checkpoint(snapshot_index) -> bytes``: resume state stored with the
            snapshot (``sgnlake collect`` stores model, optimizer and RNG states).

        Raises
        ------
        ConfigError
            ``step`` does not follow the previous one (or is not the planned one).
        DivergedError
            A loss or gradient is not finite (nothing is stored for this step). On
            the CPU the centring and the gradients' finiteness check are deferred to
            the writer thread, so a non-finite gradient of this step is raised by the
            next :meth:`snapshot` or by :meth:`finish` / :meth:`close` (nothing is
            stored for its step).
        LakeError
            Writing an earlier snapshot failed.
        """
        if self._closed or self._finished:
            raise LakeError(
                f"probe of run {self.config.run_id!r} is closed: open a new Probe with resume=True"
            )
        step = int(step)
        k = self._next
        if self._planned is not None:
            if k >= len(self._planned) or self._planned[k] != step:
                raise ConfigError(f"snapshot {k} of run {self.config.run_id!r} is not planned at step {step}")
        elif self._steps and step <= self._steps[-1]:
            raise ConfigError(
                f"probe.snapshot({step}) after step {self._steps[-1]}: snapshot steps must increase"
            )
        before = self.writer.meta
        if self._planned is None:  # announce the step before its commit (committed <= planned always)
            self.writer.update_meta(planned_iterations=(*self._steps, step), total_steps=step)
        self.writer.acquire()
        snap = None
        try:
            t0 = time.perf_counter()
            snap = compute_snapshot(
                self.model,
                self.x,
                self.y,
                index=k,
                iteration=step,
                batch_size=self.config.batch_size,
                seed=self.config.seed,
                names=self.names,
                partition_kind=self.config.partition,
                engine=self.engine,
                chunk=self.chunk,
                staging=self.staging,
                loss_fn=self.loss_fn,
                select=self.select,
                device_alpha=self.device_alpha,
            )
            if checkpoint is not None:
                snap.checkpoint = checkpoint(k)
            self.compute_seconds += time.perf_counter() - t0
        except BaseException:
            if snap is not None:
                snap.release()
            self.writer.release()
            if self._planned is None:
                self.writer.update_meta(
                    planned_iterations=before.planned_iterations, total_steps=before.total_steps
                )
            raise
        self.writer.submit(snap)
        self._steps.append(step)
        self._next += 1

    # ------------------------------------------------------------------ ending

    def timing(self) -> dict[str, Any]:
        """Seconds spent computing and writing snapshots in this session."""
        return {
            "compute_seconds": round(self.compute_seconds, 4),
            "write_seconds": round(sum(self.writer.write_seconds), 4),
        }

    def finish(self, status: str = COMPLETE, reason: str = "", **extra: Any) -> RunMeta:
        """Wait until every snapshot is committed, then record ``status`` (raises a writer error)."""
        self.writer.drain()
        self._finished = True
        return self.writer.set_status(status, reason, **extra)

    def abort(self, status: str, reason: str, *, drain: bool = True) -> None:
        """Commit what was queued (unless ``drain`` is False) and record ``status``; never raise."""
        self._finished = True
        if drain:
            try:
                self.writer.drain()
            except BaseException as e:  # noqa: BLE001 - the first error is what the caller raises
                if status != FAILED:
                    status, reason = FAILED, f"{reason}; then writing failed: {e}"
        try:
            self.writer.set_status(status, reason)
        except BaseException:  # noqa: BLE001, S110 - the lake may be unwritable; committed data stay valid
            pass

    def close(self) -> RunMeta:
        """Commit every snapshot, mark the run complete (unless already ended) and stop the writer."""
        if self._closed:
            return self.writer.meta
        try:
            if not self._finished:
                self.finish(COMPLETE, "", last_call=self.timing())
        finally:
            self.shutdown()
        return self.writer.meta

    def shutdown(self) -> None:
        """Stop the writer and give up the run's single-writer lease (idempotent); record no status.

        The run is then free for the next collector. :meth:`close` and leaving a ``with``
        block end with it; :func:`sgnlake.collect.runner.collect`, which records the run's
        status itself, calls it on every exit path.
        """
        self._closed = True
        self.writer.close()
        if self.writer.lease is not None:
            self.writer.lease.release()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: Any) -> None:
        if kind is None:
            self.close()
            return
        if not self._finished:
            if issubclass(kind, KeyboardInterrupt):
                self.abort(INTERRUPTED, "interrupted by the user: append with Probe(..., resume=True)")
            else:
                self.abort(FAILED, f"{kind.__name__}: {err}".replace("\n", " "))
        self.shutdown()
