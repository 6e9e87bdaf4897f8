"""``collect()``: train with plain SGD and write SGN snapshots into the lake."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sgnlake.schema.errors import ConfigError, DivergedError, LakeError, RunExistsError
from sgnlake.schema.lake import now, open_lake_group, probe_lake, read_run_meta, software_versions
from sgnlake.schema.lease import Lease, lease_ttl
from sgnlake.schema.meta import RunConfig, RunMeta
from sgnlake.schema.names import COMPLETE, FAILED, INTERRUPTED, RUN_ATTR, RUNNING, run_path

from . import checkpoint, rng
from .config import Plan, make_plan, resolve_config, resolve_device, resume_config
from .config import default_threads as cpu_threads
from .data import Dataset, load_dataset
from .device import MemoryBudget, full_float32, resolve_memory_budget, run_device_facts
from .device_alpha import ResultSink
from .engines import choose_engine, vmap_chunk
from .models import build_model, tensor_table
from .sampling import check_stored, plan_samples
from .snapshot import compute_snapshot, snapshot_device_bytes
from .staging import HostStaging, layout_of
from .writer import RunWriter

#: Snapshots in host memory at once (computed and waiting for, or being, written).
WRITER_SLOTS = 2
#: ``RunConfig.memory_budget_mb`` when none is given.
DEFAULT_MEMORY_BUDGET_MB: int = RunConfig.__dataclass_fields__["memory_budget_mb"].default


def stored_run_meta(
    location: str | os.PathLike[str], run_id: str, *, storage_options: Mapping[str, Any] | None = None
) -> RunMeta | None:
    """The metadata of run ``run_id`` in the lake at ``location``, or None if there is no such run."""
    root = probe_lake(location, storage_options=storage_options)
    if root is None or run_path(run_id) not in root:
        return None
    g = root[run_path(run_id)]
    return read_run_meta(g) if RUN_ATTR in g.attrs else None


def default_threads(device: torch.device, background: bool = True) -> int | None:
    """torch CPU threads :func:`collect` uses when none are asked for.

    On the CPU with the background writer: :func:`~sgnlake.collect.config.default_threads`
    (one CPU left for compression and writes). Otherwise torch's default (None).
    """
    if device.type != "cpu" or not background:
        return None
    return cpu_threads(1)


class _Training:
    """The SGD loop state of one run (model, optimizer, data on the device)."""

    def __init__(self, config: RunConfig, data: Dataset, plan: Plan, device: torch.device) -> None:
        self.config, self.plan, self.device = config, plan, device
        self.fingerprint = data.fingerprint
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)  # noqa: NPY002 - seed the global RNG user code may use
        random.seed(config.seed)
        model = build_model(
            config.model, input_shape=data.input_shape, num_classes=data.num_classes, **config.model_args
        )
        self.model = model.to(device)
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=0.0)
        self.x, self.y = data.tensors(str(device))
        self._order_epoch = -1
        self._order: torch.Tensor | None = None
        self._bad = torch.zeros((), dtype=torch.bool, device=device)
        self._check_every = 1 if device.type == "cpu" else 50

    def order(self, epoch: int) -> torch.Tensor:
        """Example order of ``epoch`` (a permutation seeded from (seed, epoch), or the data order)."""
        if epoch != self._order_epoch:
            n = self.plan.n_examples
            if self.config.shuffle:
                o = torch.randperm(n, generator=rng.generator(self.config.seed, rng.TRAIN_ORDER, epoch))
            else:
                o = torch.arange(n)
            self._order, self._order_epoch = o.to(self.device), epoch
        assert self._order is not None
        return self._order

    def step(self, t: int) -> None:
        """SGD update number ``t`` (from ``w_t`` to ``w_{t+1}``)."""
        b = self.config.batch_size
        epoch, pos = divmod(t, self.plan.steps_per_epoch)
        idx = self.order(epoch)[pos * b : (pos + 1) * b]
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
        loss.backward()
        self.optimizer.step()
        self._bad |= ~torch.isfinite(loss.detach())
        if (t + 1) % self._check_every == 0:
            self.check(t + 1)

    def check(self, t: int) -> None:
        """Raise :class:`DivergedError` if a training loss so far was not finite."""
        if bool(self._bad):
            raise DivergedError(
                f"run {self.config.run_id!r} diverged: non-finite training loss before iteration {t} "
                f"(lr {self.config.lr:g}): lower --lr"
            )


def collect(
    location: str | os.PathLike[str],
    config: RunConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    stop_after: int | None = None,
    download: bool = False,
    threads: int | None = None,
    background: bool = True,
    auto_budget: bool | None = None,
) -> RunMeta:
    """Train ``config`` with plain SGD and store its SGN snapshots in the lake at ``location``.

    Everything is validated (config, data, model, lake, run id) before anything
    is written. Snapshots are committed one at a time (see
    :mod:`sgnlake.collect.writer`); a checkpoint is saved with each. Training
    stops at the last planned snapshot (nothing after it would be recorded).

    Parameters
    ----------
    location : str or path
        Lake path or fsspec URL (created if absent).
    config : RunConfig
        The run. Missing model arguments take the model's defaults; with neither
        ``epochs`` nor ``iterations`` the run trains one epoch.
    resume : bool
        Continue run ``config.run_id`` from its last committed snapshot (start
        it if it does not exist). The stored config is used; ``config`` may
        differ only in ``device``, ``memory_budget_mb`` and ``data_dir``.
    progress : bool
        Show a progress bar on stderr.
    storage_options : mapping, optional
        fsspec options for URL locations.
    stop_after : int, optional
        Stop after this many snapshots in this call (status ``interrupted``;
        resume continues).
    download : bool
        Download a missing dataset with torchvision.
    threads : int, optional
        ``torch.set_num_threads`` for the duration of the call. Default on the
        CPU: one fewer than the available CPUs (see :func:`default_threads`).
    background : bool
        Write and compress in a background thread, overlapped with the next
        gradients (default); ``False`` writes synchronously.
    auto_budget : bool, optional
        On CUDA, size the vmap memory budget from the free device memory
        (:func:`~sgnlake.collect.device.resolve_memory_budget`: half of it, at
        most 16 GiB) instead of ``config.memory_budget_mb``. Default: when
        ``config.memory_budget_mb`` is the default (512). Ignored on the CPU.

    Returns
    -------
    RunMeta
        The run's final metadata (``status`` complete, or interrupted with ``stop_after``).
        ``extra`` records the vmap chunk and memory budget, the host buffers
        (pinned, asynchronous copies), the device name and the float32
        precision flags (TF32 is off for the whole call); each resume adds the
        same facts to ``extra['resumed']``.

    Raises
    ------
    ConfigError
        Invalid config, model, data or schedule (nothing written).
    RunExistsError
        The run exists and ``resume`` is False (nothing written).
    NotALakeError, SchemaVersionError
        ``location`` holds something else, or a newer lake (nothing written).
    DivergedError
        Non-finite loss or gradients: the run is marked ``failed``, earlier snapshots kept.
    LakeError
        Writing failed: the run is marked ``failed`` when possible.
    KeyboardInterrupt
        Ctrl-C: the run is marked ``interrupted``; resume with ``resume=True``.
    """
    loc = os.fspath(location)
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after must be >= 1, got {stop_after}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    # ---------------------------------------------------------------- validate, write nothing
    root_ro = probe_lake(loc, storage_options=storage_options)
    existing: RunMeta | None = None
    if root_ro is not None and run_path(config.run_id) in root_ro:
        g = root_ro[run_path(config.run_id)]
        if RUN_ATTR in g.attrs:
            existing = read_run_meta(g)
    if existing is not None and not resume:
        raise RunExistsError(
            f"run {config.run_id!r} already exists in {loc}: pass --resume to continue it, or pick another --run-id"
        )
    if existing is not None:
        cfg = resume_config(existing.config, config)
        if existing.status == COMPLETE:
            return existing
    else:
        cfg = resolve_config(config)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, n_train=cfg.n_train, download=download)
    plan = make_plan(cfg, data.n)
    old_threads = torch.get_num_threads()
    if threads is None:
        threads = default_threads(device, background)
    if threads is not None:
        torch.set_num_threads(threads)
    if auto_budget is None:
        auto_budget = cfg.memory_budget_mb == DEFAULT_MEMORY_BUDGET_MB
    try:
        with full_float32():
            return _collect(
                loc, cfg, existing, device, data, plan, storage_options, stop_after, progress, background,
                auto_budget,
            )  # fmt: skip
    finally:
        torch.set_num_threads(old_threads)


def _collect(
    loc: str,
    cfg: RunConfig,
    existing: RunMeta | None,
    device: torch.device,
    data: Dataset,
    plan: Plan,
    storage_options: Mapping[str, Any] | None,
    stop_after: int | None,
    progress: bool,
    background: bool,
    auto_budget: bool,
) -> RunMeta:
    """The part of :func:`collect` after validation that needs no lake yet, then the writing."""
    train = _Training(cfg, data, plan, device)
    tensors = tensor_table(train.model)
    if cfg.tensors:
        known = {t.name for t in tensors}
        unknown = [n for n in cfg.tensors if n not in known]
        if unknown:
            raise ConfigError(
                f"model {cfg.model!r} has no tensor {unknown[0]!r}: use some of {', '.join(sorted(known))}"
            )
        tensors = tuple(t for t in tensors if t.name in cfg.tensors)
    tensors, sample = plan_samples(tensors, cfg.seed, cfg.storage)
    if existing is not None:
        if existing.dataset_fingerprint and existing.dataset_fingerprint != data.fingerprint:
            raise ConfigError(
                f"cannot resume run {cfg.run_id!r}: the training data differ from those it was "
                "collected with (dataset fingerprint): use the same files"
            )
        if tuple(existing.planned_iterations) != plan.iterations or existing.tensors != tensors:
            raise ConfigError(f"cannot resume run {cfg.run_id!r}: its stored plan does not match its config")
        engine = existing.engine or choose_engine(cfg.engine, cfg.model, device)
    else:
        engine = choose_engine(cfg.engine, cfg.model, device)
    names = [t.name for t in tensors]
    n_grad = sum(t.numel for t in tensors)
    budget, chunk = budget_and_chunk(
        train.model,
        data.input_shape,
        cfg.batch_size,
        plan.n_minibatches,
        n_grad,
        engine=engine,
        device=device,
        configured_mb=cfg.memory_budget_mb,
        auto_budget=auto_budget,
        stored_extra=existing.extra if existing else None,
    )
    staging = HostStaging(device)
    staging.reserve(
        layout_of({t.name: t.n_stored for t in tensors}, plan.n_minibatches),
        WRITER_SLOTS if background else 1,
    )
    facts = {
        "vmap_chunk": chunk,
        **budget.to_dict(),
        "host_staging": staging.describe(),
        **run_device_facts(device),
    }
    # ------------------------------------------------------------ write
    root = open_lake_group(loc, mode="a", storage_options=storage_options)
    lease = acquire_run_lease(root, cfg.run_id)
    try:
        return _write(root, lease, cfg, existing, train, plan, tensors, names, engine, chunk, facts, device,
                      stop_after, progress, background, staging, sample)  # fmt: skip
    finally:
        lease.release()


def acquire_run_lease(root: Any, run_id: str) -> Lease:
    """Take the single-writer lease of run ``run_id`` (see :mod:`sgnlake.schema.lease`).

    Raises
    ------
    LeaseHeldError
        Another live collector writes this run (the message names it).
    """
    return Lease.acquire(
        root, run_path(run_id), {"command": "collect"}, ttl=lease_ttl(), what=f"run {run_id!r}"
    )


def _write(
    root: Any,
    lease: Lease,
    cfg: RunConfig,
    existing: RunMeta | None,
    train: _Training,
    plan: Plan,
    tensors: tuple[Any, ...],
    names: list[str],
    engine: str,
    chunk: int,
    facts: dict[str, Any],
    device: torch.device,
    stop_after: int | None,
    progress: bool,
    background: bool,
    staging: HostStaging,
    sample: Any = None,
) -> RunMeta:
    """Create or reopen the run (under ``lease``) and run the collection loop."""
    if existing is None:
        info = {
            "steps_per_epoch": plan.steps_per_epoch,
            "optimizer": "SGD(momentum=0)",
            "loss": "cross_entropy",
            "threads": torch.get_num_threads(),
            "train_last_batch": "partial (drop_last=False)",
            **facts,
        }
        meta = RunMeta(
            config=cfg,
            tensors=tensors,
            status=RUNNING,
            n_examples=plan.n_examples,
            n_minibatches=plan.n_minibatches,
            remainder=plan.remainder,
            planned_iterations=plan.iterations,
            total_steps=plan.total_steps,
            committed=0,
            engine=engine,
            device=str(device),
            dataset_fingerprint=train.fingerprint,
            software=software_versions(),
            created=now(),
            updated=now(),
            extra=info,
        )
        writer = RunWriter.create(root, meta, background=background, slots=WRITER_SLOTS, param_index=sample)
    else:
        writer = RunWriter.reopen(root, cfg.run_id, background=background, slots=WRITER_SLOTS)
        resumes = list(writer.meta.extra.get("resumed", []))
        resumes.append({"at_snapshot": writer.meta.committed, "time": now(), "device": str(device), **facts})
        writer.set_status(RUNNING, "", resumed=resumes, device_now=str(device))
        if sample is not None:
            check_stored(writer.group, tensors, sample)
    select = None if sample is None else {n: torch.as_tensor(i, device=device) for n, i in sample.items()}
    device_alpha = cfg.storage.store == "alpha"
    if device_alpha:
        open_sink = ResultSink.create if existing is None else ResultSink.reopen
        writer.result_sink = open_sink(root, writer.meta)
    writer.lease = lease
    try:
        return _loop(
            writer,
            train,
            plan,
            cfg,
            names,
            engine,
            chunk,
            stop_after,
            progress,
            staging,
            select,
            device_alpha,
        )
    finally:
        writer.close()


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

    Returns
    -------
    tuple of (MemoryBudget, int)
    """
    budget = resolve_memory_budget(
        device,
        configured_mb,
        explicit=not auto_budget,
        reserved_bytes=snapshot_device_bytes(n_minibatches, n_grad),
        free_bytes=free_bytes,
    )
    if engine != "vmap":
        return budget, 1
    model_device = next(model.parameters()).device
    chunk = vmap_chunk(model, input_shape, batch_size, n_grad, n_minibatches, budget.mb, model_device)
    first = (stored_extra or {}).get("vmap_chunk")
    if budget.source == "device" and isinstance(first, int) and first >= 1:
        chunk = min(chunk, first)
    return budget, chunk


def _loop(
    writer: RunWriter,
    train: _Training,
    plan: Plan,
    cfg: RunConfig,
    names: list[str],
    engine: str,
    chunk: int,
    stop_after: int | None,
    progress: bool,
    staging: HostStaging | None = None,
    select: Mapping[str, torch.Tensor] | None = None,
    device_alpha: bool = False,
) -> RunMeta:
    from tqdm.auto import tqdm

    its = plan.iterations
    k = writer.meta.committed
    t = 0
    state = writer.read_checkpoint()
    if state is not None:
        st = checkpoint.load(state)
        if int(st["snapshot"]) != k - 1 or int(st["step"]) != its[k - 1]:
            raise LakeError(
                f"checkpoint of run {cfg.run_id!r} does not match snapshot {k - 1}: start a new run id"
            )
        t = checkpoint.restore(st, train.model, train.optimizer)
    k0 = k
    compute_s = 0.0
    bar = tqdm(
        total=its[-1],
        initial=t,
        desc=cfg.run_id,
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        leave=True,
    )

    def postfix() -> None:
        ratio = writer.bytes_raw / writer.bytes_stored if writer.bytes_stored else float("nan")
        bar.set_postfix_str(
            f"snapshots {writer.meta.committed}/{len(its)} {writer.bytes_stored / 1e6:.1f} MB x{ratio:.2f}",
            refresh=False,
        )

    try:
        try:
            while k < len(its):
                if its[k] == t:
                    train.check(t)
                    writer.acquire()
                    snap = None
                    try:
                        t0 = time.perf_counter()
                        snap = compute_snapshot(
                            train.model,
                            train.x,
                            train.y,
                            index=k,
                            iteration=t,
                            batch_size=cfg.batch_size,
                            seed=cfg.seed,
                            names=names,
                            partition_kind=cfg.partition,
                            engine=engine,
                            chunk=chunk,
                            staging=staging,
                            select=select,
                            device_alpha=device_alpha,
                        )
                        snap.checkpoint = checkpoint.capture(train.model, train.optimizer, step=t, snapshot=k)
                        compute_s += time.perf_counter() - t0
                    except BaseException:
                        if snap is not None:
                            snap.release()
                        writer.release()
                        raise
                    writer.submit(snap)
                    k += 1
                    postfix()
                    if stop_after is not None and k - k0 >= stop_after:
                        break
                    continue
                train.step(t)
                t += 1
                bar.update(1)
            writer.drain()
        except DivergedError as e:
            _finish_quietly(writer, FAILED, str(e))
            raise
        except KeyboardInterrupt as e:
            why = getattr(e, "reason", "interrupted by the user")
            _finish_quietly(
                writer,
                INTERRUPTED,
                f"{why} at iteration {t}: resume with --resume --run-id {cfg.run_id}",
            )
            raise
        except BaseException as e:
            _finish_quietly(writer, FAILED, f"{type(e).__name__}: {e}".replace("\n", " "), drain=False)
            raise
        postfix()
        timing = {
            "compute_seconds": round(compute_s, 4),
            "write_seconds": round(sum(writer.write_seconds), 4),
            "snapshots_this_call": k - k0,
        }
        if staging is not None:
            timing["host_buffer_sets"] = staging.allocations
        if k == len(its):
            return writer.set_status(COMPLETE, "", last_call=timing)
        return writer.set_status(
            INTERRUPTED,
            f"stopped after {k - k0} snapshots (stop_after): resume with --resume",
            last_call=timing,
        )
    finally:
        bar.close()


def _finish_quietly(writer: RunWriter, status: str, reason: str, *, drain: bool = True) -> None:
    """Commit what was queued (unless ``drain`` is False) and record ``status``; never raise."""
    if drain:
        try:
            writer.drain()
        except BaseException as e:  # noqa: BLE001 - the first error is what the caller raises
            if status != FAILED:
                status, reason = FAILED, f"{reason}; then writing failed: {e}"
    try:
        writer.set_status(status, reason)
    except BaseException:  # noqa: BLE001, S110 - the lake may be unwritable; committed data stay valid
        pass
