"""Study 1: collector overhead -- lake writes vs the gradient engine alone, and vs the paper's method.

For LeNet and an FCN (784-64-64-64-10) on the embedded MNIST subset (b = 50,
M = 100), with the ``loop`` and ``vmap`` engines and torch at 1 thread (``--threads 1,2`` adds 2),
one snapshot is timed four ways, side by side in one run (blocks of
``--snapshots`` snapshots, interleaved, repeated ``--repeat`` times; medians, not best-of):

* **engine** (the baseline): the per-minibatch gradient engine alone
  (``loop_gradients`` / ``vmap_gradients`` on the same partition): nothing
  centred, copied or stored;
* **snapshot**: ``sgnlake.collect.snapshot.compute_snapshot`` (engine + float64
  mean + SGN in host buffers), nothing stored;
* **lake**: what the collector's loop does per snapshot: the same computation
  plus the resume checkpoint, submitted to the collector's background
  ``RunWriter`` (compression + Zarr writes + commit), with the lossless default
  and a lossy BitRound setting; the block ends when every write is committed;
* **paper's method**: what Simsekli et al.'s code does (``eval()`` in ``main.py``
  of github.com/umutsimsekli/sgd_tail_index, which the paper's estimator came
  from): one ``loss.backward()`` per minibatch, ``torch.cat`` of the flattened
  ``p.grad`` per minibatch moved to the CPU and kept in a Python list, then
  ``torch.cat(grads).view(-1, P)``, ``mean = grads.sum(0) / M`` in float32 and
  ``grads - mean``; in memory, nothing stored. Its SGN is checked against the
  SGN read back from the lake (same partition, same weights).

``overhead_vs_engine`` = lake (lossless default, steady state: time between the first and the last
commit of a block / (k - 1)) / engine, goal <= 1.10; ``overhead_vs_engine_block`` also counts filling
and draining the writer's pipeline once per block (``max(E, W) + min(E, W) / k``). Blocks span at
least ``BLOCK_ENGINE_S`` of engine time, so the FCN's 0.03 s snapshots come in blocks of dozens.

    .venv/bin/python bench/collector.py           # ~2-3 min on 2 idle cores
    .venv/bin/python bench/collector.py --smoke
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

OVERHEAD_GOAL = 1.10
PAPER_GOAL = 2.0
#: Engine seconds a timed block spans at least (``--snapshots 0``): the FCN's 0.03 s snapshots need
#: dozens per block, LeNet's 0.5-0.8 s ones only the minimum of 4.
BLOCK_ENGINE_S = 1.0

MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "LeNet": ("lenet", {}),
    "FCN 784-64-64-64-10": ("fcn", {"depth": 4, "width": 64}),
}


@dataclass
class Setup:
    """Model, data and helpers of one (model, engine) combination."""

    label: str
    model_name: str
    model_args: dict[str, Any]
    engine: str
    model: Any
    optimizer: Any
    x: Any
    y: Any
    names: list[str]
    chunk: int
    batch_size: int
    seed: int = 0
    staging: Any = None
    timings: dict[str, list[float]] = field(default_factory=dict)


def make_setup(label: str, engine: str, n_train: int, batch_size: int, budget_mb: int = 512) -> Setup:
    """Build the model (seeded), data tensors and vmap chunk as the collector does."""
    import torch

    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.engines import vmap_chunk
    from sgnlake.collect.models import build_model

    name, margs = MODELS[label]
    data = load_dataset("mnist5k", n_train=n_train)
    torch.manual_seed(0)
    model = build_model(name, input_shape=data.input_shape, num_classes=data.num_classes, **margs)
    x, y = data.tensors("cpu")
    names = [n for n, _ in model.named_parameters()]
    n_grad = sum(p.numel() for p in model.parameters())
    m = data.n // batch_size
    chunk = (
        vmap_chunk(model, data.input_shape, batch_size, n_grad, m, budget_mb, "cpu")
        if engine == "vmap"
        else 1
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    from sgnlake.collect.staging import HostStaging

    # the collector's reused host buffers (sgnlake.collect.runner): no fresh 10-100 MB per snapshot
    return Setup(
        label, name, margs, engine, model, opt, x, y, names, chunk, batch_size, staging=HostStaging("cpu")
    )


def snapshot(s: Setup, index: int) -> Any:
    """One snapshot at the current weights (iteration = index), as the collector computes it."""
    from sgnlake.collect.snapshot import compute_snapshot

    return compute_snapshot(
        s.model,
        s.x,
        s.y,
        index=index,
        iteration=index,
        batch_size=s.batch_size,
        seed=s.seed,
        names=s.names,
        partition_kind="permute",
        engine=s.engine,
        chunk=s.chunk,
        staging=s.staging,
    )


def engine_block(s: Setup, k: int) -> tuple[float, float]:
    """Wall and process-CPU seconds per snapshot of the gradient engine alone (same partitions, nothing
    centred or copied)."""
    from sgnlake.collect import rng
    from sgnlake.collect.device import full_float32
    from sgnlake.collect.engines import loop_gradients, vmap_gradients
    from sgnlake.collect.snapshot import partition

    n = int(s.x.shape[0])
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(k):
        batches = partition(n, s.batch_size, seed=s.seed, iteration=i, kind="permute")
        with rng.preserved_rng(), full_float32():
            if s.engine == "vmap":
                vmap_gradients(s.model, s.names, s.x, s.y, batches, s.chunk)
            else:
                loop_gradients(s.model, s.names, s.x, s.y, batches)
    return (time.perf_counter() - t0) / k, (time.process_time() - c0) / k


def bare_block(s: Setup, k: int) -> tuple[float, float]:
    """Wall and process-CPU seconds per snapshot of ``compute_snapshot``, nothing stored.

    ``wait()`` included: on the CPU the collector leaves the centring to the writer's
    thread (``Snapshot.wait``); here it runs in this thread, right after the gradients.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(k):
        snap = snapshot(s, i)
        snap.wait()
        snap.release()
    return (time.perf_counter() - t0) / k, (time.process_time() - c0) / k


def run_meta(s: Setup, k: int, storage: Any, run_id: str) -> Any:
    """A RunMeta for ``k`` snapshots of ``s`` with ``storage`` (as ``collect`` builds it)."""
    from sgnlake.collect.models import tensor_table
    from sgnlake.schema.lake import now, software_versions
    from sgnlake.schema.meta import RunConfig, RunMeta, Schedule

    n = int(s.x.shape[0])
    m = n // s.batch_size
    cfg = RunConfig(
        run_id=run_id,
        model=s.model_name,
        model_args=s.model_args,
        n_train=n,
        batch_size=s.batch_size,
        iterations=max(k - 1, 1),
        schedule=Schedule(kind="at", every=None, at=tuple(range(k))),
        engine=s.engine,
        device="cpu",
        storage=storage,
    )
    return RunMeta(
        config=cfg,
        tensors=tensor_table(s.model),
        status="running",
        n_examples=n,
        n_minibatches=m,
        remainder=n - m * s.batch_size,
        planned_iterations=tuple(range(k)),
        total_steps=max(k - 1, 1),
        engine=s.engine,
        device="cpu",
        software=software_versions(),
        created=now(),
        updated=now(),
    )


def lake_block(
    s: Setup, k: int, storage: Any, location: Path, run_id: str
) -> tuple[float, float, float, float]:
    """Per snapshot with the collector's background writer: wall seconds of the block, steady-state wall
    seconds, the writer's busy seconds, and process-CPU seconds (compute + writer).

    Mirrors ``sgnlake.collect.runner._loop``: acquire a slot, compute, capture the
    checkpoint, submit; the block ends when every snapshot is committed. The block's
    time includes filling the pipeline (the first snapshot's gradients, with nothing to
    write yet) and draining it (the last commit, with no gradients left to hide it
    behind): ``max(E, W) + min(E, W) / k`` for engine seconds E and writer seconds W.
    The steady state is the time between the first and the last commit divided by
    ``k - 1``: what each further snapshot of a long run costs, ``max(E, W)``.
    """
    from sgnlake.collect import checkpoint
    from sgnlake.collect.writer import RunWriter
    from sgnlake.schema.lake import open_lake_group

    root = open_lake_group(str(location), mode="a")
    writer = RunWriter.create(root, run_meta(s, k, storage, run_id), background=True)
    committed: list[float] = []
    commit = writer.commit

    def timed_commit(snap: Any) -> None:  # the writer thread calls this instance attribute
        commit(snap)
        committed.append(time.perf_counter())

    writer.commit = timed_commit  # type: ignore[method-assign]
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(k):
            writer.acquire()
            snap = snapshot(s, i)
            snap.checkpoint = checkpoint.capture(s.model, s.optimizer, step=i, snapshot=i)
            writer.submit(snap)
        writer.drain()
        per, cpu = (time.perf_counter() - t0) / k, (time.process_time() - c0) / k
    finally:
        writer.close()
    steady = (committed[-1] - committed[0]) / (k - 1) if k > 1 else per
    return per, steady, sum(writer.write_seconds) / k, cpu


def paper_block(s: Setup, k: int) -> tuple[float, np.ndarray]:
    """Seconds per snapshot with Simsekli et al.'s in-memory method; returns the last SGN ``(M, P)``.

    As ``eval()`` in ``main.py`` of github.com/umutsimsekli/sgd_tail_index (with
    ``utils.get_grads``): per minibatch ``zero_grad``, forward, ``backward()``,
    ``torch.cat`` of every ``p.grad.view(-1)``, ``.cpu()``, appended to a list;
    then ``torch.cat(grads).view(-1, P)``, ``grads.sum(0) / M`` and the
    difference, in float32. Our partition replaces their fixed data loader order.
    """
    import torch
    import torch.nn.functional as F

    from sgnlake.collect.snapshot import partition

    model = s.model
    sgn = np.empty(0)
    t0 = time.perf_counter()
    for i in range(k):
        batches = partition(int(s.x.shape[0]), s.batch_size, seed=s.seed, iteration=i, kind="permute")
        grads = []
        for j in range(batches.shape[0]):
            idx = batches[j]
            s.optimizer.zero_grad()
            loss = F.cross_entropy(model(s.x[idx]), s.y[idx])
            loss.backward()
            grads.append(torch.cat([p.grad.view(-1) for p in model.parameters() if p.requires_grad]).cpu())
        p = len(grads[0])
        g = torch.cat(grads).view(-1, p)
        mean_grad = g.sum(0) / batches.shape[0]
        sgn = (g - mean_grad).numpy()
    per = (time.perf_counter() - t0) / k
    model.zero_grad(set_to_none=True)
    return per, sgn


def lake_sgn(location: Path, run_id: str, names: list[str], index: int) -> np.ndarray:
    """The stored SGN of snapshot ``index``, all tensors concatenated ``(M, P)`` (plain Zarr)."""
    import zarr

    g = zarr.open_group(str(location), mode="r")[f"runs/{run_id}"]
    return np.concatenate([np.asarray(g[n]["sgn"][index]) for n in names], axis=1)


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument(
        "--snapshots",
        type=int,
        default=0,
        help=f"snapshots per timed block (0: enough for {BLOCK_ENGINE_S} s of engine time, at least 4)",
    )
    p.add_argument("--repeat", type=int, default=2, help="interleaved repetitions (median reported)")
    p.add_argument(
        "--threads",
        default="1",
        help="comma list of torch thread counts (1: the second core is left to the writer; try 1,2)",
    )
    p.add_argument("--keepbits", type=int, default=8, help="BitRound keepbits of the lossy codec")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of models")
    p.add_argument("--n-train", type=int, default=5000, help="examples (M = n / 50)")
    args = p.parse_args()
    if args.smoke:
        args.snapshots, args.repeat, args.threads, args.n_train = 1, 1, "1", 500
        args.models = "FCN 784-64-64-64-10"

    import torch

    from sgnlake.collect.engines import choose_engine
    from sgnlake.schema.meta import StorageSpec

    lossless = f"zstd {StorageSpec().level} (lossless default)"
    codecs = {
        lossless: StorageSpec(),
        f"BitRound {args.keepbits} + blosc-zstd": StorageSpec(codec="blosc-zstd", keepbits=args.keepbits),
    }
    work = C.scratch(args, "collector")
    if not args.smoke:  # every block's lake stays until the end (see below): ~5 GB for the FCN's long blocks
        C.check_disk(work, 6.0 * args.repeat / 3)
    main_t = C.Table(
        [
            "model",
            "engine",
            "threads",
            "engine alone (s/snap)",
            "snapshot (s/snap)",
            "snapshots per block",
            *(f"lake {c} (s/snap)" for c in codecs),
            f"lake {lossless}, steady (s/snap)",
            "snapshot / engine",
            *(f"lake {c} / engine" for c in codecs),
            f"lake {lossless}, steady / engine",
            f"goal <= {OVERHEAD_GOAL} (steady)",
            "writer busy (s/snap)",
            "CPU engine (s/snap)",
            "CPU snapshot (s/snap)",
            "CPU lake (s/snap)",
            "CPU centring (snapshot - engine)",
            "CPU writer (lake - snapshot)",
        ]
    )
    paper_t = C.Table(
        [
            "model",
            "engine",
            "threads",
            "paper's method (s/snap)",
            "lake (s/snap)",
            "paper / lake",
            f"goal >= {PAPER_GOAL}x",
            "max abs(SGN diff) / max abs(SGN)",
        ]
    )
    old_threads = torch.get_num_threads()
    run_no = 0
    metrics: dict[str, Any] = {"rows": [], "load_before": os.getloadavg()}
    try:
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            for label in args.models.split(","):
                for engine in ("loop", "vmap"):
                    s = make_setup(label, engine, args.n_train, 50)
                    warm = snapshot(s, 0)  # warm-up
                    warm.wait()
                    warm.release()
                    k = args.snapshots or max(4, math.ceil(BLOCK_ENGINE_S / engine_block(s, 2)[0]))
                    times: dict[str, list[float]] = {
                        "engine": [],
                        "bare": [],
                        "paper": [],
                        "steady": [],
                        **{c: [] for c in codecs},
                    }
                    cpus: dict[str, list[float]] = {"engine": [], "bare": [], "lake": []}
                    busy: list[float] = []
                    worst = 0.0
                    for _ in range(args.repeat):
                        wall, cpu = engine_block(s, k)
                        times["engine"].append(wall)
                        cpus["engine"].append(cpu)
                        wall, cpu = bare_block(s, k)
                        times["bare"].append(wall)
                        cpus["bare"].append(cpu)
                        for c, spec in codecs.items():
                            run_no += 1
                            loc = work / f"lake{run_no}"
                            per, steady, wb, cpu = lake_block(s, k, spec, loc, "bench")
                            times[c].append(per)
                            if spec.keepbits is None:
                                times["steady"].append(steady)
                                busy.append(wb)
                                cpus["lake"].append(cpu)
                                paper_per, paper_sgn = paper_block(s, k)
                                times["paper"].append(paper_per)
                                stored = lake_sgn(loc, "bench", s.names, k - 1)
                                scale = float(np.max(np.abs(paper_sgn))) or 1.0
                                worst = max(worst, float(np.max(np.abs(stored - paper_sgn))) / scale)
                            # the lakes are deleted at the end, not here: deleting ~1 GB of fresh files
                            # costs kernel time in the next blocks' writes (2x on ext4 with discard)
                    med = {key: statistics.median(v) for key, v in times.items()}
                    cpu_med = {key: statistics.median(v) for key, v in cpus.items()}
                    ratios = [med[c] / med["engine"] for c in codecs]
                    steady = med["steady"] / med["engine"]
                    main_t.add(
                        label,
                        engine,
                        threads,
                        med["engine"],
                        med["bare"],
                        k,
                        *(med[c] for c in codecs),
                        med["steady"],
                        med["bare"] / med["engine"],
                        *ratios,
                        steady,
                        "yes" if steady <= OVERHEAD_GOAL else "no",
                        statistics.median(busy),
                        *(cpu_med[c] for c in ("engine", "bare", "lake")),
                        cpu_med["bare"] - cpu_med["engine"],
                        cpu_med["lake"] - cpu_med["bare"],
                    )
                    speed = med["paper"] / med[lossless]
                    row = {
                        "model": label,
                        "engine": engine,
                        "threads": threads,
                        "engine_s": med["engine"],
                        "bare_s": med["bare"],
                        "lake_s": med[lossless],
                        "lake_steady_s": med["steady"],
                        "snapshots_per_block": k,
                        "engine_cpu_s": cpu_med["engine"],
                        "bare_cpu_s": cpu_med["bare"],
                        "lake_cpu_s": cpu_med["lake"],
                        "snapshot_over_engine": med["bare"] / med["engine"],
                        "overhead_vs_engine": steady,
                        "overhead_vs_engine_block": ratios[0],
                        "ratios": dict(zip(codecs, ratios, strict=True)),
                        "paper_s": med["paper"],
                        "speedup_vs_paper": speed,
                        "sgn_rel_diff_vs_paper": worst,
                    }
                    metrics["rows"].append(row)
                    # headline per model: its CPU engine (sgnlake's `auto`) at the first thread count
                    key = MODELS[label][0]
                    if engine == choose_engine("auto", key, "cpu") and key not in metrics:
                        metrics[key] = row
                    paper_t.add(
                        label,
                        engine,
                        threads,
                        med["paper"],
                        med[lossless],
                        speed,
                        "yes" if speed >= PAPER_GOAL else "no",
                        worst,
                    )
    finally:
        torch.set_num_threads(old_threads)
        C.cleanup(args, work)
    metrics["load_after"] = os.getloadavg()
    C.write_report(
        args,
        "collector",
        "Study 1: collector overhead",
        [
            f"Embedded MNIST subset, n = {args.n_train}, b = 50 (M = {args.n_train // 50}); blocks of "
            f"{args.snapshots or f'at least {BLOCK_ENGINE_S} s of engine time (at least 4)'} "
            f"snapshots, {args.repeat} interleaved repetitions, medians. Load average before / after: "
            f"{metrics['load_before'][0]:.1f} / {metrics['load_after'][0]:.1f}. Baseline `engine` = the "
            "per-minibatch gradient engine alone (nothing centred, copied or stored). `lake` = the collector's "
            "compute + background `RunWriter` until committed (the block includes the final drain, so the "
            "last write is never hidden, and the first snapshot's gradients, with nothing to write yet: "
            "max(E, W) + min(E, W) / k for engine seconds E, writer seconds W and k snapshots per block). "
            "`steady` = time from the first to the last commit / (k - 1): what each further snapshot of a "
            "long run costs, max(E, W); the goal and `overhead_vs_engine` use it. `writer busy` = the writer thread's seconds per snapshot, which "
            "overlaps the next snapshot's gradients. `CPU` columns: process CPU seconds per snapshot (all "
            "threads): `centring` = snapshot - engine (the float64 mean, SGN into the host buffers: in the "
            "collector it runs in the writer's thread, `Snapshot.wait`), `writer` = lake - snapshot (encode, "
            "files, metadata, checkpoint), which can only hide behind the gradients when a core is free for it.",
            main_t.markdown(),
            "Against the paper's method (Simsekli et al.'s `eval()`: one backward per minibatch, `torch.cat` "
            "of the flattened gradients in memory, float32 mean subtracted; nothing stored); the SGN of the "
            "last snapshot from both is compared (same partition, same weights).",
            paper_t.markdown(),
            "Machine: 2 cores shared with other engineers; expect +-30% on absolute times, ratios are side by "
            f"side. Process id {os.getpid()}.",
        ],
        metrics,
    )


if __name__ == "__main__":
    main()
