"""Time one collector snapshot on the CPU: compute vs write, bytes and compression ratio.

For LeNet (b=50) and an FCN (depth 3, width 32, b=50) on the embedded mnist5k
(n=5000, M=100), each engine and torch thread count runs ``collect()`` with a
snapshot after every SGD step (``--snapshots`` of them, after one warm-up run),
once with the background writer and once writing synchronously. Printed per row:

* compute: gradients + SGN + checkpoint per snapshot (main thread);
* write: compression + Zarr writes + commit per snapshot (writer thread);
* wall/snap: end-to-end time per snapshot with the background writer;
* sync/snap: the same with synchronous writes (compute + write, no overlap);
* write share: write / (compute + write);
* MB/snap stored and the ratio float32 bytes / stored bytes (zstd, lossless).

    .venv/bin/python bench/collect_snapshot.py             # ~1-2 min on 2 idle cores
    .venv/bin/python bench/collect_snapshot.py --snapshots 3 --threads 1
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from sgnlake.collect import collect, list_runs
from sgnlake.schema.meta import RunConfig, Schedule

MODELS = {"lenet": ("lenet", {}), "fcn-d3-w32": ("fcn", {"depth": 3, "width": 32})}


def run(lake: Path, rid: str, model: str, args: dict, engine: str, n: int, threads: int, background: bool):
    cfg = RunConfig(
        run_id=rid,
        model=model,
        model_args=args,
        batch_size=50,
        iterations=n,
        engine=engine,
        device="cpu",
        schedule=Schedule(kind="every", every=1),
    )
    t0 = time.perf_counter()
    meta = collect(lake, cfg, progress=False, threads=threads, background=background)
    return meta, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snapshots", type=int, default=5, help="timed snapshots per row (default 5)")
    p.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated (default 1,2)")
    p.add_argument("--models", default="lenet,fcn-d3-w32", help="models (default lenet,fcn-d3-w32)")
    a = p.parse_args()
    n = a.snapshots
    work = Path(tempfile.mkdtemp(prefix="sgnlake-bench-"))
    head = (
        "model",
        "engine",
        "thr",
        "compute s",
        "write s",
        "wall/snap",
        "sync/snap",
        "write share",
        "MB/snap",
        "ratio",
    )
    print(" | ".join(head))
    try:
        for name in a.models.split(","):
            model, args = MODELS[name]
            for engine in ("loop", "vmap"):
                for threads in (int(t) for t in a.threads.split(",")):
                    lake = work / f"{name}-{engine}-{threads}"
                    run(lake, "warmup", model, args, engine, 1, threads, True)
                    meta, wall = run(lake, "bg", model, args, engine, n, threads, True)
                    _, wall_sync = run(lake, "sync", model, args, engine, n, threads, False)
                    t = meta.extra["last_call"]
                    comp, wr = t["compute_seconds"] / n, t["write_seconds"] / n
                    row = next(r for r in list_runs(lake) if r["run_id"] == "bg")
                    print(
                        " | ".join(
                            [
                                name,
                                engine,
                                str(threads),
                                f"{comp:.3f}",
                                f"{wr:.3f}",
                                f"{wall / n:.3f}",
                                f"{wall_sync / n:.3f}",
                                f"{wr / (comp + wr):.0%}",
                                f"{row['stored_bytes'] / n / 1e6:.2f}",
                                f"{row['ratio']:.2f}",
                            ]
                        ),
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
