"""Study 7: the background writer fed at GPU rate, against the codec + file-write limit, per core count.

One real LeNet snapshot (b = 50) is computed once at ``M`` minibatches (1200 by
default: 60,000 examples, the embedded digits tiled, 178 MB of SGN; ``--smoke``:
M = 20) and saved. Then, for 1, 2 and all cores (each in a child process pinned
to that many cores with ``sched_setaffinity``, Zarr's thread pool sized to
match), interleaved ``--repeat`` times, medians:

* **writer**: ``--snapshots`` copies of it (index 0, 1, ...) are submitted to
  the collector's background :class:`~sgnlake.collect.writer.RunWriter` as fast
  as it accepts them (nothing else runs: the writer is the only limit), with
  the default lossless storage (and the resume checkpoint); MB/s of float32
  input (SGN + grad + weight) until the last commit; process CPU seconds per MB;
* **limit**: the same chunks (same shape, same codec) encoded with numcodecs in a
  thread pool of that many threads and each written to its own file with plain
  ``open``/``write``: what compression + the file system cost, with no Zarr.

``writer / limit`` (CPU per MB) is the writer's overhead; ``scaling`` = MB/s at
n cores / MB/s at 1 core (goal >= 0.8 x n). ``GIL share`` = 1 - (CPU seconds /
(wall seconds x cores)) of the writer where cores > 1 is not reported: the CPU
share shows how busy the cores were.

    .venv/bin/python bench/writer.py            # ~1-2 min (a one-time M = 1200 snapshot)
    .venv/bin/python bench/writer.py --smoke
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

GOAL_CPU = 1.3
GOAL_SCALING = 0.8


def make_snapshot(m: int, path: Path, device: str = "cpu") -> None:
    """Compute one LeNet snapshot at ``M = m`` (b = 50) after a few SGD steps on ``device``; save it (``.npz``)."""
    import torch
    import torch.nn.functional as F

    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.engines import vmap_chunk
    from sgnlake.collect.models import build_model
    from sgnlake.collect.snapshot import compute_snapshot

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    b = 50
    data = load_dataset("mnist5k")
    x, y = data.tensors(device)
    reps = -(-(m * b) // x.shape[0])
    x, y = x.repeat(reps, 1, 1, 1)[: m * b], y.repeat(reps)[: m * b]
    torch.manual_seed(0)
    model = build_model("lenet", input_shape=data.input_shape, num_classes=data.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for i in range(20):
        idx = (torch.arange(i * b, (i + 1) * b) % x.shape[0]).to(device)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    n_grad = sum(p.numel() for p in model.parameters())
    chunk = vmap_chunk(model, data.input_shape, b, n_grad, m, 2048, device)
    s = compute_snapshot(model, x, y, index=0, iteration=20, batch_size=b, seed=0, engine="vmap", chunk=chunk)
    arrays = {f"sgn/{n}": a for n, a in s.sgn.items()}
    arrays.update({f"grad/{n}": a for n, a in s.grad.items()})
    arrays.update({f"weight/{n}": a for n, a in s.weight.items()})
    np.savez(path, **arrays)


class _Snap:
    """A precomputed snapshot under another index (the writer's SnapshotLike)."""

    def __init__(self, index: int, sgn: dict, grad: dict, weight: dict, ckpt: bytes) -> None:
        self.index, self.iteration, self.loss, self.accuracy = index, index, 0.5, 0.5
        self.sgn, self.grad, self.weight, self.checkpoint = sgn, grad, weight, ckpt


def _load(path: Path) -> tuple[dict, dict, dict]:
    z = np.load(path)
    out: tuple[dict, dict, dict] = ({}, {}, {})
    for key in z.files:
        kind, name = key.split("/", 1)
        out[("sgn", "grad", "weight").index(kind)][name] = np.ascontiguousarray(z[key])
    return out


def child(args: Any) -> None:
    """Run in a process pinned to ``args.cores`` cores: print the writer and limit results as JSON."""
    import zarr

    cores = args.cores
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    zarr.config.set({"threading.max_workers": cores})
    import numcodecs

    from sgnlake.collect.models import build_model, tensor_table
    from sgnlake.collect.writer import RunWriter
    from sgnlake.schema.codecs import compressors
    from sgnlake.schema.lake import now, open_lake_group, software_versions
    from sgnlake.schema.meta import RunConfig, RunMeta, Schedule, StorageSpec

    sgn, grad, weight = _load(args.snapshot)
    spec = StorageSpec()
    m = next(iter(sgn.values())).shape[0]
    k = args.snapshots
    mb = sum(a.nbytes for d in (sgn, grad, weight) for a in d.values()) / 1e6
    ckpt = os.urandom(4 * sum(a.size for a in weight.values()) * 2)  # weights + momentum-sized state
    tensors = tensor_table(build_model("lenet"))
    cfg = RunConfig(
        run_id="w",
        model="lenet",
        n_train=m * 50,
        batch_size=50,
        iterations=k,
        schedule=Schedule(kind="at", every=None, at=tuple(range(k))),
        engine="vmap",
        device="cpu",
        storage=spec,
    )
    meta = RunMeta(
        config=cfg,
        tensors=tensors,
        status="running",
        n_examples=m * 50,
        n_minibatches=m,
        remainder=0,
        planned_iterations=tuple(range(k)),
        total_steps=k,
        engine="vmap",
        device="cpu",
        software=software_versions(),
        created=now(),
        updated=now(),
    )
    loc = Path(args.lake)
    writer = RunWriter.create(open_lake_group(str(loc), mode="a"), meta, background=True, slots=2)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(k):
            writer.acquire()
            writer.submit(_Snap(i, sgn, grad, weight, ckpt))
        writer.drain()
        w_wall, w_cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        writer.close()
    stored, raw = writer.bytes_stored, writer.bytes_raw

    # the limit: same chunks, numcodecs in a pool of `cores` threads, one plain file each
    from sgnlake.collect.chunk_files import crc32c as _crc32c

    chain = compressors(spec)  # the compressor, then the crc32c checksum
    names = [type(c).__name__ for c in chain]
    nc = numcodecs.Zstd(level=spec.level) if "ZstdCodec" in names else None
    crc = "Crc32cCodec" in names
    pc = spec.param_chunk
    chunks = [a[:, s : s + pc] for a in sgn.values() for s in range(0, a.shape[1], pc)]
    chunks += [a[s : s + pc] for d in (grad, weight) for a in d.values() for s in range(0, a.size, pc)]
    folder = loc.parent / (loc.name + "-raw")

    def put(job: tuple[int, int, np.ndarray]) -> int:
        i, j, a = job
        data = np.ascontiguousarray(a)
        enc = bytes(nc.encode(data)) if nc is not None else data.tobytes()
        if crc:  # the same 4-byte little-endian crc32c zarr appends
            enc += _crc32c(enc).to_bytes(4, "little")
        with open(folder / f"{i}.{j}", "wb") as f:
            f.write(enc)
        return len(enc)

    folder.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(cores) as pool:
        for i in range(k):
            list(pool.map(put, [(i, j, a) for j, a in enumerate(chunks)]))
            with open(folder / f"ckpt{i}", "wb") as f:
                f.write(ckpt)
    l_wall, l_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        json.dumps(
            {
                "cores": cores,
                "mb_per_snapshot": mb,
                "writer_mb_s": k * mb / w_wall,
                "writer_cpu_s_per_mb": w_cpu / (k * mb),
                "limit_mb_s": k * mb / l_wall,
                "limit_cpu_s_per_mb": l_cpu / (k * mb),
                "ratio": raw / max(stored, 1),
            }
        )
    )


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--m", type=int, default=1200, help="minibatches of the LeNet snapshot")
    p.add_argument("--snapshots", type=int, default=4, help="snapshots written per timed block")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (median reported)")
    p.add_argument("--cores", default=None, help="comma list of core counts (default 1, 2, all)")
    p.add_argument("--device", default="cpu", help="where the snapshot is computed once (cpu, cuda)")
    p.add_argument("--child", action="store_true", help=argparse_hidden())
    p.add_argument("--snapshot", type=Path, default=None, help=argparse_hidden())
    p.add_argument("--lake", type=Path, default=None, help=argparse_hidden())
    p.add_argument("--ncores", dest="cores_n", type=int, default=1, help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        args.cores = args.cores_n
        child(args)
        return
    if args.smoke:
        args.m, args.snapshots, args.repeat = 20, 2, 1
    n_all = len(os.sched_getaffinity(0))
    cores = sorted({int(c) for c in args.cores.split(",")} if args.cores else {1, min(2, n_all), n_all})
    work = C.scratch(args, "writer")
    snap_file = work / "snapshot.npz"
    t0 = time.perf_counter()
    make_snapshot(args.m, snap_file, args.device)
    made = time.perf_counter() - t0
    res: dict[int, list[dict]] = {c: [] for c in cores}
    run = 0
    try:
        for _ in range(args.repeat):
            for c in cores:
                run += 1
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--snapshot",
                    str(snap_file),
                    "--lake",
                    str(work / f"lake{run}"),
                    "--ncores",
                    str(c),
                    "--snapshots",
                    str(args.snapshots),
                ]
                out = subprocess.run(
                    cmd, check=True, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")
                )
                res[c].append(json.loads(out.stdout.strip().splitlines()[-1]))
                C.cleanup(args, work / f"lake{run}", work / f"lake{run}-raw")
    finally:
        C.cleanup(args, work)

    def med(c: int, key: str) -> float:
        return statistics.median(r[key] for r in res[c])

    t = C.Table(
        [
            "cores",
            "writer MB/s",
            "limit MB/s",
            "writer / limit (MB/s)",
            "writer CPU s/MB",
            "limit CPU s/MB",
            f"CPU writer / limit (goal <= {GOAL_CPU})",
            "scaling (writer MB/s / 1 core)",
            f"goal >= {GOAL_SCALING} x cores",
        ]
    )
    base = med(cores[0], "writer_mb_s")
    rows = {}
    for c in cores:
        sc = med(c, "writer_mb_s") / base
        cpu_ratio = med(c, "writer_cpu_s_per_mb") / med(c, "limit_cpu_s_per_mb")
        t.add(
            c,
            med(c, "writer_mb_s"),
            med(c, "limit_mb_s"),
            med(c, "writer_mb_s") / med(c, "limit_mb_s"),
            med(c, "writer_cpu_s_per_mb"),
            med(c, "limit_cpu_s_per_mb"),
            cpu_ratio,
            sc,
            "yes" if sc >= GOAL_SCALING * c / cores[0] else "no",
        )
        rows[str(c)] = {
            "writer_mb_s": med(c, "writer_mb_s"),
            "limit_mb_s": med(c, "limit_mb_s"),
            "cpu_writer_over_limit": cpu_ratio,
            "scaling": sc,
        }
    mb = res[cores[0]][0]["mb_per_snapshot"]
    ratio = res[cores[0]][0]["ratio"]
    C.write_report(
        args,
        "writer",
        "Study 7: the writer at GPU rate",
        [
            f"One real LeNet snapshot, b = 50, M = {args.m} ({mb:.1f} MB of float32 per snapshot, computed once "
            f"in {made:.1f} s), written {args.snapshots} times per block, {args.repeat} interleaved repetitions, "
            f"medians. Default lossless storage (zstd level {_level()}): compression ratio x{ratio:.3f} on this "
            "SGN. Each core count runs in its own process pinned to that many cores.",
            t.markdown(),
        ],
        {"m": args.m, "mb_per_snapshot": mb, "compression_ratio": ratio, "cores": rows},
    )


def _level() -> int:
    from sgnlake.schema.meta import StorageSpec

    return int(StorageSpec().level)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
