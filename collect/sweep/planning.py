"""Sweep planning: each run's size and schedule from its config, before anything runs.

The model is built on torch's ``meta`` device (no memory, no RNG); torch is imported
only when a plan is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sgnlake.collect.data import dataset_info
from sgnlake.schema import ConfigError, RunConfig, StorageSpec

# ----------------------------------------------------------------------------- planning

#: Bytes per snapshot of the run-level arrays: iteration int64, loss and accuracy float64.
RUN_ARRAY_BYTES = 8 + 8 + 8
GB = 1e9


@dataclass(frozen=True)
class RunPlan:
    """What one run will write, known before it runs.

    Parameters
    ----------
    config : RunConfig
        The run's configuration.
    n_examples : int
        Training examples n used.
    n_minibatches : int
        M = floor(n / b), SGN samples per parameter and snapshot.
    total_steps : int
        SGD updates.
    steps_per_epoch : int
        Updates per epoch.
    iterations : tuple of int
        Snapshot iterations.
    tensors : tuple of (str, int)
        Stored tensors and their number of parameters.
    """

    config: RunConfig
    n_examples: int
    n_minibatches: int
    total_steps: int
    steps_per_epoch: int
    iterations: tuple[int, ...]
    tensors: tuple[tuple[str, int], ...]

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def n_snapshots(self) -> int:
        return len(self.iterations)

    @property
    def n_params(self) -> int:
        return sum(n for _, n in self.tensors)

    @property
    def n_stored(self) -> int:
        """Parameters whose SGN is stored (all, or a ``param_sample``; none for ``store='alpha'`` alone)."""
        st = self.config.storage
        if not st.sampled:
            return self.n_params
        from sgnlake.collect.sampling import sample_size

        value = st.param_sample if st.param_sample is not None else 0
        return sum(sample_size(value, n) for _, n in self.tensors)

    @property
    def itemsize(self) -> int:
        return 2 if self.config.storage.dtype == "float16" else 4

    @property
    def sgn_bytes(self) -> int:
        """Uncompressed bytes of every tensor's ``sgn`` array."""
        return self.n_snapshots * self.n_minibatches * self.n_stored * self.itemsize

    @property
    def grad_weight_bytes(self) -> int:
        """Uncompressed bytes of the ``grad`` and ``weight`` arrays (and of device results, ``store='alpha'``)."""
        device = 12 * self.n_snapshots * self.n_params if self.config.storage.store == "alpha" else 0
        return 2 * self.n_snapshots * self.n_stored * self.itemsize + device

    @property
    def run_array_bytes(self) -> int:
        """Uncompressed bytes of ``iteration``, ``loss`` and ``accuracy``."""
        return self.n_snapshots * RUN_ARRAY_BYTES

    @property
    def total_bytes(self) -> int:
        """Uncompressed bytes the run writes (checkpoints not counted)."""
        return self.sgn_bytes + self.grad_weight_bytes + self.run_array_bytes

    @property
    def cost(self) -> float:
        """Relative compute cost (gradient evaluations x parameters), for scheduling."""
        return float(self.n_params) * (
            self.total_steps * self.config.batch_size + self.n_snapshots * self.n_examples
        )


def dataset_size(config: RunConfig) -> int:
    """Training examples a run uses: the dataset's size capped by ``n_train``."""
    try:
        full = dataset_info(config.dataset).n_train
    except ConfigError as e:
        raise ConfigError(f"run {config.run_id}: {e}") from None
    if config.n_train is not None and config.n_train > full:
        raise ConfigError(
            f"run {config.run_id}: --n-train {config.n_train} exceeds the {full} examples of {config.dataset!r}"
        )
    return config.n_train or full


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """SGD updates per epoch (the last, smaller batch of an epoch counts as a step)."""
    return max(1, math.ceil(n_examples / batch_size))


_TENSOR_CACHE: dict[tuple[Any, ...], tuple[tuple[str, int], ...]] = {}


def model_tensors(config: RunConfig) -> tuple[tuple[str, int], ...]:
    """(name, numel) of every parameter tensor of the run's model, in ``named_parameters()`` order."""
    key = (config.model, repr(sorted(config.model_args.items())), config.dataset)
    if key not in _TENSOR_CACHE:
        _TENSOR_CACHE[key] = _model_tensors(config)
    return _TENSOR_CACHE[key]


def _model_tensors(config: RunConfig) -> tuple[tuple[str, int], ...]:
    """Build the model on torch's ``meta`` device (no memory, no RNG use) and list its tensors."""
    import torch

    from sgnlake.collect.models import build_model

    info = dataset_info(config.dataset)
    with torch.device("meta"):
        model = build_model(
            config.model,
            input_shape=info.input_shape,
            num_classes=info.num_classes,
            **dict(config.model_args),
        )
    return tuple((name, int(p.numel())) for name, p in model.named_parameters())


def plan_run(config: RunConfig) -> RunPlan:
    """Resolve a run's size and schedule without running it (and without reading its data).

    Follows the collector's rules (:mod:`sgnlake.collect.config`): missing model
    arguments take their defaults, neither ``epochs`` nor ``iterations`` means one
    epoch, an epoch is ``ceil(n / b)`` steps, M = ``floor(n / b)``.
    """
    from sgnlake.collect.config import resolve_config

    resolved = resolve_config(config)
    n = dataset_size(resolved)
    b = resolved.batch_size
    if b > n:
        raise ConfigError(f"run {config.run_id}: batch size {b} exceeds the {n} training examples")
    spe = steps_per_epoch(n, b)
    total = resolved.iterations if resolved.iterations is not None else (resolved.epochs or 1) * spe
    its = tuple(resolved.schedule.iterations(total, spe))
    tensors = model_tensors(resolved)
    if resolved.tensors:
        known = {name for name, _ in tensors}
        bad = [t for t in resolved.tensors if t not in known]
        if bad:
            raise ConfigError(
                f"run {config.run_id}: unknown tensor {bad[0]!r}: the model has {', '.join(sorted(known))}"
            )
        tensors = tuple(t for t in tensors if t[0] in resolved.tensors)
    return RunPlan(
        config=config,
        n_examples=n,
        n_minibatches=n // b,
        total_steps=total,
        steps_per_epoch=spe,
        iterations=its,
        tensors=tensors,
    )


def plan(configs: Sequence[RunConfig]) -> list[RunPlan]:
    """Plan every run of a sweep."""
    return [plan_run(c) for c in configs]


def fmt_bytes(n: float) -> str:
    """Bytes with a unit (B, kB, MB, GB, TB; powers of 1000)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def expected_ratio(storage: StorageSpec) -> tuple[float, float]:
    """Range of the expected compression ratio (uncompressed / on disk) for a storage spec.

    Measured on the small presets (mnist5k, zstd level 3 — level 1, the default, stores ~2.5% more; LeNet b=150 and FCN
    d3-w32 b=100): lossless 1.24x and 1.52x (FCN inputs include always-blank
    border pixels, whose weights get exactly zero SGN); BitRound keepbits 10
    1.85x / 2.19x; keepbits 7 2.41x / 2.79x; ``float16`` 1.24x / 1.49x on top
    of its halved size. Heavy-tailed SGN without zeros compresses less
    (design.md: zstd 1.07x), so the low ends are rounded down.
    """
    if storage.codec == "none":
        return (1.0, 1.0)
    kb = storage.keepbits
    if kb is None or kb > 15:
        return (1.1, 1.55)
    if kb <= 7:
        return (2.3, 2.8)
    if kb <= 10:
        return (1.8, 2.2)
    return (1.3, 1.8)


def format_plan(plans: Sequence[RunPlan], *, max_rows: int | None = None) -> str:
    """The ``--dry-run`` text: one line per run, the total, and what bounds it."""
    lines = [
        f"{'run':<28} {'snapshots':>9} {'M':>6} {'params':>9} {'steps':>7} {'uncompressed':>13}",
    ]
    shown = plans if max_rows is None or len(plans) <= max_rows else plans[:max_rows]
    for p in shown:
        lines.append(
            f"{p.run_id:<28} {p.n_snapshots:>9} {p.n_minibatches:>6} {p.n_params:>9} "
            f"{p.total_steps:>7} {fmt_bytes(p.total_bytes):>13}"
        )
    if len(shown) < len(plans):
        lines.append(f"... {len(plans) - len(shown)} more runs")
    total = sum(p.total_bytes for p in plans)
    sgn = sum(p.sgn_bytes for p in plans)
    lo = sum(p.total_bytes / expected_ratio(p.config.storage)[1] for p in plans)
    hi = sum(p.total_bytes / expected_ratio(p.config.storage)[0] for p in plans)
    snaps = sum(p.n_snapshots for p in plans)
    lines.append(
        f"total: {len(plans)} runs, {snaps} snapshots, {total / GB:.3f} GB uncompressed "
        f"({sgn / GB:.3f} GB of it SGN), about {lo / GB:.3f}-{hi / GB:.3f} GB on disk "
        "(+ one checkpoint per run)"
    )
    empty = [p for p in plans if p.n_snapshots == 0]
    if empty:
        lines.append(
            f"warning: {len(empty)} runs take no snapshot (e.g. {empty[0].run_id}: "
            f"{empty[0].total_steps} steps, {empty[0].steps_per_epoch} per epoch): "
            "lower --every or train longer"
        )
    lines.append(
        "size per run = snapshots x (M x params + 2 x params) x bytes per value "
        "(4 for float32, 2 for float16); what bounds it:"
    )
    lines.append(
        "  snapshots: the schedule (--every N / --set schedule.every=N, schedule.kind=logspace) "
        "- size is linear in the number of snapshots"
    )
    lines.append(
        "  M = floor(n_train / batch): --n-train N (or --set n_train=N) shrinks M and the size linearly"
    )
    lines.append(
        "  params: --tensors fc3.weight,fc3.bias stores only those tensors (size linear in their parameters)"
    )
    lines.append(
        "  codec: lossless zstd gives 1.1-1.55x on SGN; lossy --keepbits 10 ~1.8-2.2x, "
        "--keepbits 7 ~2.3-2.8x, --dtype float16 2x uncompressed and ~2.5-3x on disk "
        "(recorded per run; check alpha before relying on it)"
    )
    return "\n".join(lines)
