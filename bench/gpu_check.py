"""GPU check of the collector: CUDA SGN against the CPU loop engine, and snapshot throughput.

Run on a CUDA machine through ``bench/gpu_check.sh`` (< 5 minutes). Three parts:

1. **Correctness** (small model, float32 tolerance). An FCN 784-32-32-10 and LeNet
   on the first ``--check-n`` embedded digits (b = 50): the snapshot SGN and full
   gradient computed on the device with the ``loop`` and ``vmap`` engines are
   compared with the CPU ``loop`` engine at the same weights (initialised on the
   CPU, copied to the device). Reported: max |error| and max |error| / max |CPU
   value| per model and engine; PASS when the relative error <= ``--tol``.
2. **The collector end to end on the device**: ``sgnlake.collect.collect`` of a
   short run on the device and on the CPU (loop engine) into scratch lakes; the
   stored SGN of the first snapshot (iteration 0, identical weights) is compared
   the same way. Later snapshots drift apart as training on two devices rounds
   differently; their difference is reported, not judged.
3. **Throughput at full-MNIST size**: 60,000 images (the embedded 5,000 digits
   tiled, written as MNIST IDX files so the collector reads them as ``mnist``),
   b = 50, M = 1200, for LeNet and an FCN 784-64-64-64-10:
   * *bare vmap* / *bare loop*: the per-minibatch gradients alone
     (``sgnlake.collect.engines``), on the device, nothing copied or stored; the
     vmap chunk is sized from ``torch.cuda.mem_get_info`` (a quarter of free memory);
   * *snapshot*: ``compute_snapshot`` (gradients, full gradient, SGN, copy to host)
     with the collector's own budget and chunk (on CUDA: half the free device memory,
     at most 16 GiB, ``sgnlake.collect.device.resolve_memory_budget``), copied
     synchronously into fresh pageable host memory;
   * *staged*: the same with the collector's pinned host buffers
     (``sgnlake.collect.staging.HostStaging``): seconds until ``compute_snapshot``
     returns (the device-to-host copy still in flight on a side stream) and until the
     copy is done; *overlap*: a staged snapshot followed at once by the next
     snapshot's bare vmap gradients, against the two one after the other (the copy
     hidden behind the compute gives a ratio < 1);
   * *collect*: ``collect()`` of ``--snapshots`` consecutive snapshots into a local
     lake (lossless zstd, background writer): wall seconds per snapshot, and the
     budget, chunk and host buffers it recorded in ``RunMeta.extra``.

Snapshots run with TF32 off (``sgnlake.collect.device.full_float32``); the device facts
show the global flags before and inside that setting.

On a machine without CUDA it stops with a one-line error. ``--device cpu --smoke``
runs all three parts at tiny sizes on the CPU (CI runs it so the script cannot rot).

    bash bench/gpu_check.sh                  # on a CUDA machine; writes bench/results/gpu_check.md
    .venv/bin/python bench/gpu_check.py --device cpu --smoke
"""

from __future__ import annotations

import copy
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

#: Models of the correctness check and of the throughput table.
CHECK_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "FCN 784-32-32-10": ("fcn", {"depth": 3, "width": 32}),
    "LeNet": ("lenet", {}),
}
SPEED_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "FCN 784-64-64-64-10": ("fcn", {"depth": 4, "width": 64}),
    "LeNet": ("lenet", {}),
}


def parse_args():
    p = C.parser(__doc__)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (with --smoke for CI)")
    p.add_argument("--tol", type=float, default=1e-4, help="max relative error of the SGN (default 1e-4)")
    p.add_argument("--check-n", type=int, default=None, help="examples of the correctness check (2000)")
    p.add_argument("--n", type=int, default=None, help="examples of the throughput part (60000)")
    p.add_argument("--batch-size", type=int, default=50, help="b (default 50: M = n / 50)")
    p.add_argument("--snapshots", type=int, default=None, help="snapshots per collect() timing (4)")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats of the bare parts (3)")
    args = p.parse_args()
    args.check_n = args.check_n or (200 if args.smoke else 2000)
    args.n = args.n or (300 if args.smoke else 60000)
    args.snapshots = args.snapshots or (2 if args.smoke else 4)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    if args.smoke:
        args.batch_size = min(args.batch_size, 50)
    return args


def fail(message: str) -> None:
    """Exit with status 2 and a one-line ``error: ...`` on stderr."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def require_device(name: str):
    """The torch device, or exit (status 2) with a one-line error when CUDA is absent."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        fail(f"unknown --device {name!r}: use cuda, cuda:N or cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda or "none (a CPU-only build)"
            fail(
                f"CUDA is not available (torch {torch.__version__}, CUDA build {built}, "
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): run this on "
                "a machine with an NVIDIA GPU and a CUDA build of torch, or use --device cpu --smoke"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            fail(f"{name} does not exist ({torch.cuda.device_count()} GPUs): pick another --device")
    elif dev.type != "cpu":
        fail(f"unsupported --device {name!r}: use cuda, cuda:N or cpu")
    return dev


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def rel_err(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |got - ref|, that / max |ref|) in float64."""
    d = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return d, d / scale if scale > 0 else d


def device_facts(dev) -> list[str]:
    """Lines about the device and the precision settings that matter for float32 SGN."""
    import torch

    lines = [f"torch {torch.__version__}, device {dev}"]
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        free, total = torch.cuda.mem_get_info(dev)
        lines.append(
            f"{p.name}, {p.multi_processor_count} SMs, {total / 2**30:.0f} GiB ({free / 2**30:.0f} GiB free), "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        )
        lines.append(
            f"TF32 by default here: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN conv "
            f"{torch.backends.cudnn.allow_tf32}; float32 matmul precision {torch.get_float32_matmul_precision()!r}"
        )
    from sgnlake.collect.device import full_float32, precision_flags, resolve_memory_budget

    with full_float32():
        inside = precision_flags()
    lines.append(
        "inside sgnlake snapshots and collect(): " + ", ".join(f"{k} {v}" for k, v in inside.items())
    )
    budget = resolve_memory_budget(dev, 512, explicit=False)
    lines.append(
        f"automatic vmap budget (before any snapshot buffer): {budget.mb} MiB ({budget.source}"
        + (f", {budget.free_mb} MiB free)" if budget.free_mb is not None else ")")
    )
    return lines


# ----------------------------------------------------------------------------- 1. correctness


def check_engines(args, dev) -> tuple[C.Table, list[dict[str, Any]]]:
    """Device loop/vmap snapshot vs the CPU loop engine at the same weights."""
    import torch

    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.engines import vmap_chunk
    from sgnlake.collect.models import build_model
    from sgnlake.collect.snapshot import compute_snapshot

    data = load_dataset("mnist5k", n_train=args.check_n)
    x_cpu, y_cpu = data.tensors("cpu")
    x_dev, y_dev = data.tensors(str(dev))
    b = args.batch_size if args.check_n >= 4 * args.batch_size else max(1, args.check_n // 10)
    table = C.Table(
        ["model", "engine", "M", "max abs err SGN", "max rel err SGN", "max rel err grad", "result"]
    )
    rows = []
    for label, (name, margs) in CHECK_MODELS.items():
        torch.manual_seed(0)
        cpu_model = build_model(name, input_shape=data.input_shape, **margs)
        dev_model = copy.deepcopy(cpu_model).to(dev)
        kw = {"index": 0, "iteration": 7, "batch_size": b, "seed": 3}
        ref = compute_snapshot(cpu_model, x_cpu, y_cpu, engine="loop", **kw)
        n_grad = sum(p.numel() for p in dev_model.parameters())
        m = args.check_n // b
        chunk = vmap_chunk(dev_model, data.input_shape, b, n_grad, m, 512, dev)
        for engine in ("loop", "vmap"):
            got = compute_snapshot(dev_model, x_dev, y_dev, engine=engine, chunk=chunk, **kw)
            a_sgn = max(rel_err(got.sgn[t], ref.sgn[t])[0] for t in ref.sgn)
            r_sgn = max(rel_err(got.sgn[t], ref.sgn[t])[1] for t in ref.sgn)
            r_grad = max(rel_err(got.grad[t], ref.grad[t])[1] for t in ref.grad)
            ok = r_sgn <= args.tol and r_grad <= args.tol
            table.add(label, engine, m, a_sgn, r_sgn, r_grad, "PASS" if ok else "FAIL")
            rows.append(
                {"model": label, "engine": engine, "abs": a_sgn, "rel": r_sgn, "rel_grad": r_grad, "ok": ok}
            )
    return table, rows


def tf32_control(args, dev) -> dict[str, Any]:
    """LeNet per-minibatch gradients on the device with TF32 allowed vs with ``full_float32``.

    Not judged: it shows whether TF32 changes the results on this GPU (Ampere and later:
    errors well above ``--tol``), i.e. whether part 1 would catch TF32 left on.
    """
    import torch

    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.device import full_float32
    from sgnlake.collect.engines import vmap_gradients
    from sgnlake.collect.models import build_model
    from sgnlake.collect.snapshot import partition

    data = load_dataset("mnist5k", n_train=args.check_n)
    x, y = data.tensors(str(dev))
    b = args.batch_size if args.check_n >= 4 * args.batch_size else max(1, args.check_n // 10)
    torch.manual_seed(0)
    model = build_model("lenet", input_shape=data.input_shape).to(dev)
    names = [n for n, _ in model.named_parameters()]
    batches = partition(data.n, b, seed=3, iteration=7).to(dev)
    m = batches.shape[0]
    with full_float32():
        ref = vmap_gradients(model, names, x, y, batches, m)
    prec, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
        got = vmap_gradients(model, names, x, y, batches, m)
    finally:
        torch.set_float32_matmul_precision(prec)
        torch.backends.cudnn.allow_tf32 = cudnn
    rel = max(rel_err(got.grads[n].cpu().numpy(), ref.grads[n].cpu().numpy())[1] for n in names)
    return {"model": "LeNet", "M": m, "rel_err_tf32_on": rel, "exceeds_tol": rel > args.tol}


def check_collector(args, dev, work: Path) -> tuple[C.Table, list[dict[str, Any]]]:
    """collect() on the device vs on the CPU (loop): stored SGN at iteration 0 and later."""
    import zarr

    from sgnlake.collect import collect
    from sgnlake.schema import RunConfig, Schedule

    n = args.check_n
    b = args.batch_size if n >= 4 * args.batch_size else max(1, n // 10)
    steps = 2 if args.smoke else 20
    table = C.Table(
        ["model", "device engine", "iteration", "max abs err SGN", "max rel err SGN", "judged", "result"]
    )
    rows = []
    for label, (name, margs) in CHECK_MODELS.items():
        cfgs = {}
        for where, device, engine in (("cpu", "cpu", "loop"), ("dev", str(dev), "auto")):
            cfg = RunConfig(
                run_id=f"{name}-{where}",
                model=name,
                model_args=margs,
                n_train=n,
                batch_size=b,
                iterations=steps,
                schedule=Schedule(kind="every", every=steps, include_start=True),
                engine=engine,
                device=device,
            )
            meta = collect(work / f"check-{where}", cfg, progress=False)
            cfgs[where] = meta
        g_cpu = zarr.open_group(str(work / "check-cpu"), mode="r")[f"runs/{name}-cpu"]
        g_dev = zarr.open_group(str(work / "check-dev"), mode="r")[f"runs/{name}-dev"]
        its = np.asarray(g_cpu["iteration"][:])
        for i, it in enumerate(its):
            errs = [
                rel_err(np.asarray(g_dev[t.name]["sgn"][i]), np.asarray(g_cpu[t.name]["sgn"][i]))
                for t in cfgs["cpu"].tensors
            ]
            a, r = max(e[0] for e in errs), max(e[1] for e in errs)
            judged = i == 0
            ok = r <= args.tol if judged else None
            table.add(
                label, cfgs["dev"].engine, int(it), a, r, "yes" if judged else "no (training drift)",
                ("PASS" if ok else "FAIL") if judged else "-",
            )  # fmt: skip
            rows.append({"model": label, "iteration": int(it), "abs": a, "rel": r, "ok": ok})
    return table, rows


# ----------------------------------------------------------------------------- 3. throughput


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write MNIST IDX training files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    with open(folder / "train-images-idx3-ubyte", "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + np.array([n, h, w], dtype=">u4").tobytes())
        f.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    with open(folder / "train-labels-idx1-ubyte", "wb") as f:
        f.write(bytes([0, 0, 0x08, 1]) + np.array([n], dtype=">u4").tobytes())
        f.write(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())


def full_mnist(n: int, folder: Path) -> None:
    """``n`` images: the embedded 5,000 digits tiled (each copy shifted by one pixel, so not identical)."""
    from sgnlake.data import path as data_path

    with np.load(data_path()) as z:
        imgs, labs = z["images"], z["labels"]
    reps = -(-n // len(labs))
    tiles = [np.roll(imgs, shift=k % 3 - 1, axis=2) if k else imgs for k in range(reps)]
    write_idx(folder, np.concatenate(tiles)[:n], np.tile(labs, reps)[:n])


def timed_median(fn, dev, repeat: int) -> float:
    fn()
    sync(dev)  # warm-up (kernels, allocator)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        ts.append(time.perf_counter() - t0)
    return C.median(ts)


def staged_timings(snapshot_fn, next_fn, dev, repeat: int) -> dict[str, float]:
    """Medians: a staged snapshot's return and copy-done seconds; staged + next compute vs sequential.

    ``snapshot_fn()`` returns a :class:`~sgnlake.collect.snapshot.Snapshot` whose copy
    may be in flight; ``next_fn()`` is the next compute (bare vmap gradients).
    """
    rets, dones, overlaps, seqs = [], [], [], []
    for i in range(repeat + 1):  # the first is a warm-up
        sync(dev)
        t0 = time.perf_counter()
        snap = snapshot_fn()
        t1 = time.perf_counter()
        snap.wait()
        t2 = time.perf_counter()
        snap.release()
        next_fn()
        sync(dev)
        t3 = time.perf_counter()  # sequential: snapshot with its copy, then the next compute
        snap = snapshot_fn()
        t4 = time.perf_counter()
        next_fn()
        snap.wait()
        sync(dev)
        t5 = time.perf_counter()  # overlapped: the next compute queued while the copy runs
        snap.release()
        if i:
            rets.append(t1 - t0)
            dones.append(t2 - t0)
            seqs.append(t3 - t0)
            overlaps.append(t5 - t4 + (t1 - t0))
    return {
        "staged_return_s": C.median(rets),
        "staged_done_s": C.median(dones),
        "sequential_s": C.median(seqs),
        "overlapped_s": C.median(overlaps),
    }


def throughput(args, dev, work: Path) -> tuple[C.Table, list[dict[str, Any]]]:
    import torch

    from sgnlake.collect import collect
    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.device import resolve_memory_budget
    from sgnlake.collect.engines import loop_gradients, vmap_chunk, vmap_gradients
    from sgnlake.collect.models import build_model
    from sgnlake.collect.snapshot import compute_snapshot, partition, snapshot_device_bytes
    from sgnlake.collect.staging import HostStaging
    from sgnlake.schema import RunConfig, Schedule

    data_dir = work / "mnist"
    full_mnist(args.n, data_dir)
    data = load_dataset("mnist", data_dir=str(data_dir))
    x, y = data.tensors(str(dev))
    b = args.batch_size
    m = data.n // b
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        budget_mb = int(free / 4 / 2**20)
    else:
        budget_mb = 512
    table = C.Table(
        ["model", "params", "M", "vmap chunk (1/4 free)", "bare vmap s", "bare loop s",
         "collector budget MiB", "collector chunk", "snapshot s", "staged: returns s", "staged: copy done s",
         "overlap / sequential", "collect s/snapshot", "of which compute", "write (overlapped)",
         "SGN MB/snapshot", "collect MB/s", "collect / bare vmap", "host buffers"]
    )  # fmt: skip
    rows = []
    for label, (name, margs) in SPEED_MODELS.items():
        torch.manual_seed(0)
        model = build_model(name, input_shape=data.input_shape, **margs).to(dev)
        names = [n for n, _ in model.named_parameters()]
        p = sum(q.numel() for q in model.parameters())
        batches = partition(data.n, b, seed=0, iteration=0).to(dev)
        chunk = vmap_chunk(model, data.input_shape, b, p, m, budget_mb, dev)
        coll_budget = resolve_memory_budget(
            dev, 512, explicit=False, reserved_bytes=snapshot_device_bytes(m, p)
        )
        coll_chunk = vmap_chunk(model, data.input_shape, b, p, m, coll_budget.mb, dev)
        t_vmap = timed_median(partial(vmap_gradients, model, names, x, y, batches, chunk), dev, args.repeat)
        t_loop = timed_median(partial(loop_gradients, model, names, x, y, batches), dev, 1)
        kw = {"index": 0, "iteration": 0, "batch_size": b, "seed": 0, "engine": "vmap", "chunk": coll_chunk}
        t_snap = timed_median(partial(compute_snapshot, model, x, y, **kw), dev, args.repeat)
        staging = HostStaging(dev)
        st = staged_timings(
            partial(compute_snapshot, model, x, y, staging=staging, **kw),
            partial(vmap_gradients, model, names, x, y, batches, coll_chunk),
            dev,
            args.repeat,
        )
        st["staging"] = staging.describe()
        del model, batches, staging
        k = args.snapshots
        cfg = RunConfig(
            run_id=f"speed-{name}",
            model=name,
            model_args=margs,
            dataset="mnist",
            data_dir=str(data_dir),
            batch_size=b,
            iterations=k,
            schedule=Schedule(kind="every", every=1),
            engine="vmap",
            device=str(dev),
        )
        t0 = time.perf_counter()
        meta = collect(work / "speed", cfg, progress=False)
        t_coll = (time.perf_counter() - t0) / k
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        mb = m * p * 4 / 1e6
        ex = meta.extra
        hs = dict(ex.get("host_staging", {}))
        row = {
            "model": label, "params": p, "M": m, "chunk": chunk, "bare_vmap_s": t_vmap, "bare_loop_s": t_loop,
            "collector_budget_mb": ex.get("memory_budget_mb"), "collector_budget_source": ex.get("memory_budget_source"),
            "collector_chunk": ex.get("vmap_chunk"), "snapshot_chunk": coll_chunk, "snapshot_s": t_snap, **st,
            "collect_s": t_coll, "sgn_mb": mb, "collect_mb_s": mb / t_coll, "ratio": t_coll / t_vmap,
            "timing": dict(ex.get("last_call", {})), "host_staging": hs, "precision": dict(ex.get("precision", {})),
        }  # fmt: skip
        rows.append(row)
        timing = row["timing"]
        buffers = ("pinned" if hs.get("pinned") else "pageable") + (
            ", async" if hs.get("async_copy") else ", sync"
        )
        table.add(
            label, p, m, chunk, t_vmap, t_loop, row["collector_budget_mb"], row["collector_chunk"], t_snap,
            st["staged_return_s"], st["staged_done_s"], st["overlapped_s"] / st["sequential_s"], t_coll,
            timing.get("compute_seconds", float("nan")) / k, timing.get("write_seconds", float("nan")) / k,
            mb, mb / t_coll, t_coll / t_vmap, buffers,
        )  # fmt: skip
    return table, rows


def main() -> None:
    args = parse_args()
    dev = require_device(args.device)
    import torch

    if dev.type == "cpu" and args.smoke:
        torch.set_num_threads(1)
    work = C.scratch(args, "gpu_check")
    t_start = time.perf_counter()
    try:
        facts = device_facts(dev)
        print("\n".join(facts), flush=True)
        t1, r1 = check_engines(args, dev)
        print(t1.markdown(), flush=True)
        ctl = tf32_control(args, dev)
        ctl_line = (
            f"Control (not judged): LeNet per-minibatch gradients on {dev} with TF32 allowed differ from "
            f"TF32 off by max rel err {ctl['rel_err_tf32_on']:.3g} "
            f"({'above' if ctl['exceeds_tol'] else 'within'} the tolerance; above is expected on Ampere and "
            "later GPUs, where TF32 left on would fail part 1)."
        )
        print(ctl_line, flush=True)
        t2, r2 = check_collector(args, dev, work)
        print(t2.markdown(), flush=True)
        t3, r3 = throughput(args, dev, work)
        print(t3.markdown(), flush=True)
    finally:
        C.cleanup(args, work)
    ok = all(r["ok"] for r in r1) and all(r["ok"] for r in r2 if r["ok"] is not None)
    sections = [
        "\n".join(f"- {f}" for f in facts),
        f"## 1. Snapshot on {dev} vs the CPU loop engine (same weights, tolerance {args.tol:g} relative)\n\n"
        + t1.markdown()
        + "\n\n"
        + ctl_line,
        f"## 2. collect() on {dev} vs on the CPU (stored SGN)\n\n" + t2.markdown(),
        f"## 3. Throughput, n = {args.n:,}, b = {args.batch_size} (seconds per snapshot, medians)\n\n"
        + t3.markdown()
        + "\n\n*bare*: per-minibatch gradients only, on the device. *snapshot*: gradients + full gradient"
        " + SGN + copy to fresh pageable host memory. *staged*: the same into the collector's reused"
        " (pinned on CUDA) host buffers, the copy on a side stream: seconds until the call returns and until"
        " the copy is done. *overlap / sequential*: a staged snapshot then the next snapshot's bare vmap"
        " compute, with the copy overlapping that compute vs after it (< 1: the copy is hidden; ~1 on the"
        " CPU, where copies are synchronous). *collect*: `collect()` wall time / snapshots (setup included: data, model,"
        " lake), lossless zstd, background writer, checkpoints included; *of which compute* and *write* are"
        " the collector's own per-snapshot seconds (`RunMeta.extra['last_call']`), the write running in a"
        " background thread while the next snapshot is computed.",
        f"Correctness: **{'PASS' if ok else 'FAIL'}**; total {time.perf_counter() - t_start:.0f} s.",
    ]
    C.write_report(
        args, "gpu_check", "GPU check: CUDA SGN vs CPU, snapshot throughput", sections,
        {"ok": ok, "engines": r1, "tf32_control": ctl, "collector": r2, "throughput": r3, "device": str(dev)},
    )  # fmt: skip
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
