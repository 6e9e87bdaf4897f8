"""``collect()``: train a registered model and write SGN snapshots into the lake.

The snapshots are taken by a :class:`~sgnlake.collect.probe.Probe` (engine,
writer, commit protocol, resume, lake layout); this module owns the training:
model, optimizer, data order, checkpoints, progress and the run's status.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sgnlake.schema.errors import ConfigError, DivergedError, LakeError, RunExistsError
from sgnlake.schema.lake import connection_error
from sgnlake.schema.meta import RunConfig, RunMeta
from sgnlake.schema.names import COMPLETE, FAILED, INTERRUPTED

from . import checkpoint, rng
from .config import (
    Plan,
    make_optimizer,
    make_plan,
    optimizer_label,
    resolve_config,
    resolve_device,
    resume_config,
    resume_differences,
)
from .config import default_threads as cpu_threads
from .data import Dataset, load_dataset
from .device import full_float32
from .models import build_model
from .probe import DEFAULT_MEMORY_BUDGET_MB, WRITER_SLOTS, Probe, budget_and_chunk, stored_run_meta

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "WRITER_SLOTS",
    "budget_and_chunk",
    "collect",
    "default_threads",
    "stored_run_meta",
]


def default_threads(device: torch.device, background: bool = True) -> int | None:
    """torch CPU threads :func:`collect` uses when none are asked for.

    On the CPU with the background writer: :func:`~sgnlake.collect.config.default_threads`
    (one CPU left for compression and writes). Otherwise torch's default (None).
    """
    if device.type != "cpu" or not background:
        return None
    return cpu_threads(1)


class _Training:
    """The training loop state of one run (model, optimizer, data on the device)."""

    def __init__(self, config: RunConfig, data: Dataset, plan: Plan, device: torch.device) -> None:
        self.config, self.plan, self.device = config, plan, device
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)  # noqa: NPY002 - seed the global RNG user code may use
        random.seed(config.seed)
        model = build_model(
            config.model, input_shape=data.input_shape, num_classes=data.num_classes, **config.model_args
        )
        self.model = model.to(device)
        self.model.train()
        self.optimizer = make_optimizer(config, self.model.parameters())
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
        """Update number ``t`` (from ``w_t`` to ``w_{t+1}``) of the run's optimizer."""
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
    """Train ``config`` with its optimizer (plain SGD by default) and store its SGN snapshots at ``location``.

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
        differ only in ``device``, ``memory_budget_mb`` and ``data_dir``. A run
        of the same config that was created but has no committed snapshot (its
        creation failed) is continued without it.
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
    existing = stored_run_meta(loc, config.run_id, storage_options=storage_options)
    if existing is not None and not resume and _unfinished_creation(existing, config):
        resume = True  # the same command again after its creation failed (e.g. a storage outage)
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


def _unfinished_creation(stored: RunMeta, config: RunConfig) -> bool:
    """Whether ``stored`` is ``config``'s run, created but left without a committed snapshot.

    That is what a ``collect`` that failed while creating the run leaves (the store
    went away after the run's attributes were written): running the same command
    again continues it instead of refusing with "already exists". Its lease still
    keeps a live collector of the run exclusive.
    """
    return (
        stored.committed == 0 and stored.status != COMPLETE and not resume_differences(stored.config, config)
    )


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
    """The part of :func:`collect` after validation: the training state, its probe, the loop."""
    train = _Training(cfg, data, plan, device)
    info = {
        "steps_per_epoch": plan.steps_per_epoch,
        "optimizer": optimizer_label(cfg),
        "loss": "cross_entropy",
        "train_last_batch": "partial (drop_last=False)",
    }
    probe = Probe.for_run(
        loc,
        cfg,
        train.model,
        train.x,
        train.y,
        existing=existing,
        fingerprint=data.fingerprint,
        planned=plan.iterations,
        info=info,
        loss_fn=F.cross_entropy,
        storage_options=storage_options,
        background=background,
        auto_budget=auto_budget,
        input_shape=data.input_shape,
    )
    try:
        return _loop(probe, train, plan, cfg, stop_after, progress)
    finally:
        probe.shutdown()  # the writer stopped and the run's lease released on every exit path


def _first_divergence(writer: Any, e: DivergedError) -> DivergedError:
    """The divergence to report: a snapshot's non-finite gradient found by the writer, else ``e``.

    On the CPU a snapshot's centring and finiteness check run in the writer thread
    (:meth:`sgnlake.collect.snapshot.Snapshot.wait`) while training goes on, so a later
    training step may fail first; the snapshot's gradient was non-finite earlier.
    """
    try:
        writer.drain()
    except DivergedError as w:
        return w
    except BaseException:  # noqa: BLE001 - a write failure is recorded by the abort that follows
        return e
    return e


def _loop(
    probe: Probe, train: _Training, plan: Plan, cfg: RunConfig, stop_after: int | None, progress: bool
) -> RunMeta:
    from tqdm.auto import tqdm

    writer = probe.writer
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
        text = f"snapshots {writer.meta.committed}/{len(its)}"
        if writer.bytes_stored:  # nothing stored yet: no size, no ratio (not "0.0 MB xnan")
            ratio = writer.bytes_raw / writer.bytes_stored
            text += f" {writer.bytes_stored / 1e6:.1f} MB x{ratio:.2f}"
        bar.set_postfix_str(text, refresh=False)

    def capture(index: int) -> bytes:
        return checkpoint.capture(train.model, train.optimizer, step=t, snapshot=index)

    try:
        try:
            while k < len(its):
                if its[k] == t:
                    train.check(t)
                    probe.snapshot(t, checkpoint=capture)
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
            first = _first_divergence(writer, e)
            probe.abort(FAILED, str(first))
            if first is e:
                raise
            raise first from None
        except KeyboardInterrupt as e:
            why = getattr(e, "reason", "interrupted by the user")  # SIGTERM: "terminated (SIGTERM)"
            probe.abort(
                INTERRUPTED,
                f"{why} at iteration {t}: resume with --resume --run-id {cfg.run_id}",
            )
            raise
        except BaseException as e:
            probe.abort(FAILED, f"{type(e).__name__}: {e}".replace("\n", " "), drain=False)
            if isinstance(e, LakeError) and connection_error(e) is not None:  # an outage: say how to go on
                raise LakeError(
                    f"{e}: the store could not be reached; the committed snapshots are kept: once the "
                    f"storage works again, continue with --resume --run-id {cfg.run_id}"
                ) from e
            raise
        postfix()
        timing = {**probe.timing(), "snapshots_this_call": k - k0}
        timing["host_buffer_sets"] = probe.staging.allocations
        if k == len(its):
            return probe.finish(COMPLETE, "", last_call=timing)
        return probe.finish(
            INTERRUPTED,
            f"stopped after {k - k0} snapshots (stop_after): resume with --resume",
            last_call=timing,
        )
    finally:
        bar.close()
