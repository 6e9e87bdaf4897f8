"""Study 5: alpha over a lake several times larger than a Dask worker's memory limit.

Writes a synthetic lake (default 2 GB of float32 SGN) and runs
``Lake.compute_alpha`` on a ``LocalCluster`` whose workers have a memory limit
(default 400 MiB each, so the lake is >= 4x one worker's limit and larger than
all workers together), sampling the resident memory of every process (psutil,
every 50 ms). Reports the peak RSS of each process, whether the computation
finished, worker restarts, bytes spilled to disk and memory warnings in the
worker logs, and checks the stored alpha against numpy on a sample of chunks.

    .venv/bin/python bench/out_of_core.py            # 2 GB lake, 2 x 400 MiB workers
    .venv/bin/python bench/out_of_core.py --smoke
"""

from __future__ import annotations

import re
import time
from typing import Any

import _common as C
import numpy as np

MEMORY_WORDS = re.compile(r"memory|spill|restart|pause|exceeded|killed", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """``"400MiB"`` -> bytes (dask's parser)."""
    from dask.utils import parse_bytes as pb

    return int(pb(text))


def _spill_stats(dask_worker: Any) -> dict[str, float]:
    """Bytes a worker spilled to disk, and its memory limit (runs on the worker)."""
    data = dask_worker.data
    out = {"memory_limit": float(dask_worker.memory_manager.memory_limit or 0)}
    total = getattr(data, "spilled_total", None)
    if total is not None:
        out["spilled_bytes"] = float(getattr(total, "disk", 0) or 0)
    else:
        out["spilled_bytes"] = float("nan")
    return out


def check_against_numpy(location: str, run: str, n_chunks: int = 4) -> float:
    """Largest |alpha_stored - alpha_numpy| / max(1, |alpha_numpy|) over a few (snapshot, tensor) slabs."""
    import zarr

    from sgnlake.analyze import kernels

    root = zarr.open_group(location, mode="r")
    meta = root[f"runs/{run}"].attrs["sgnlake_run"]
    worst = 0.0
    key = next(iter(root[f"results/{run}"].group_keys()))
    gen = root[f"results/{run}/{key}"].attrs.get("sgnlake_generation")  # the published generation
    data = f"results/{run}/{key}" if gen is None else f"results/{run}/{key}/{gen}"
    for t in meta["tensors"][:n_chunks]:
        sgn = np.asarray(root[f"runs/{run}/{t['name']}/sgn"][0])  # (M, P)
        want = kernels.mohammadi(sgn.T, kernels.DEFAULT_K1)
        got = np.asarray(root[f"{data}/{t['name']}/alpha"][0])
        both = np.isfinite(want) & np.isfinite(got)
        if not np.array_equal(np.isfinite(want), np.isfinite(got)):
            return float("inf")
        if both.any():
            rel = np.abs(want[both] - got[both]) / np.maximum(1.0, np.abs(want[both]))
            worst = max(worst, float(np.max(rel)))
    return worst


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--size-gb", type=float, default=2.0, help="uncompressed SGN size of the lake")
    p.add_argument("--memory-limit", default="400MiB", help="memory limit of each Dask worker")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    args = p.parse_args()
    if args.smoke:
        args.workers, args.memory_limit = 1, "1GiB"
    limit = parse_bytes(args.memory_limit)

    from sgnlake.analyze import dask_client, open_lake

    work = C.scratch(args, "out_of_core")
    C.check_disk(work, args.size_gb * 1.1)
    try:
        if args.smoke:
            lake = C.write_synthetic_lake(
                work / "lake", n_snapshots=2, tensors=C.SMOKE_TENSORS, n_minibatches=40
            )
        else:
            lake = C.write_synthetic_lake(work / "lake", target_gb=args.size_gb)
        loc = str(lake.path)
        ok, error, restarts, logs_hits, spilled = False, "", 0, [], float("nan")
        sampler = C.MemorySampler(interval=0.05)
        t0 = time.perf_counter()
        with sampler, dask_client(workers=args.workers, memory_limit=args.memory_limit, echo=None) as client:
            start_workers = set(client.scheduler_info()["workers"])
            t0 = time.perf_counter()
            try:
                open_lake(loc).compute_alpha(force=True, progress=False)
                ok = True
            except Exception as e:  # a KilledWorker etc. is the result being measured
                error = f"{type(e).__name__}: {e}".splitlines()[0]
            seconds = time.perf_counter() - t0
            end_workers = set(client.scheduler_info()["workers"])
            restarts = len(end_workers - start_workers)
            stats = client.run(_spill_stats)
            spilled = sum(s["spilled_bytes"] for s in stats.values())
            for addr, lines in client.get_worker_logs().items():
                for level, msg in lines:
                    if level in ("WARNING", "ERROR", "CRITICAL") and MEMORY_WORDS.search(msg):
                        logs_hits.append(f"{addr}: {msg.splitlines()[0][:160]}")
        max_err = check_against_numpy(loc, lake.run_id) if ok else float("nan")
    finally:
        C.cleanup(args, work)

    ratio = lake.sgn_bytes / limit
    t = C.Table(["process", "pid", "peak RSS (MB)", "peak / worker limit"])
    for pid, (label, peak) in sorted(sampler.peaks.items(), key=lambda kv: -kv[1][1]):
        if peak < 20e6:  # skip tiny helper processes (resource tracker)
            continue
        t.add(label, pid, peak / 1e6, peak / limit)
    summary = C.Table(["quantity", "value"])
    summary.add("lake (uncompressed SGN, GB)", lake.sgn_bytes / 1e9)
    summary.add("lake on disk (GB)", lake.stored_bytes / 1e9)
    summary.add("workers x memory limit", f"{args.workers} x {args.memory_limit}")
    summary.add("lake / one worker's limit", ratio)
    summary.add("lake / all workers' limits", ratio / args.workers)
    summary.add("finished", ok)
    summary.add("error", error or "none")
    summary.add("alpha seconds", seconds)
    summary.add("alpha throughput (MB/s of SGN)", lake.sgn_bytes / seconds / 1e6)
    summary.add("worker restarts", restarts)
    summary.add("bytes spilled to disk", spilled)
    summary.add("memory warnings/errors in worker logs", len(logs_hits))
    summary.add("peak RSS, all processes together (MB)", sampler.total_peak / 1e6)
    summary.add("max rel. diff alpha vs numpy (sampled chunks)", max_err)
    summary.add("psutil samples", sampler.samples)
    sections = [
        summary.markdown(),
        "Peak resident memory per process (psutil, sampled every 50 ms):",
        t.markdown(),
    ]
    if logs_hits:
        sections.append(
            "Memory-related worker log lines:\n\n" + "\n".join(f"- `{h}`" for h in logs_hits[:20])
        )
    verdict = (
        f"Goal: finish over a lake >= 4x a worker's memory limit without spilling failures: "
        f"{'met' if ok and ratio >= 4 and restarts == 0 else 'NOT met'} "
        f"(lake = {ratio:.1f}x one worker's limit, finished = {ok}, restarts = {restarts})."
    )
    sections.insert(0, verdict)
    C.write_report(
        args,
        "out_of_core",
        "Study 5: out-of-core alpha on a memory-limited Dask cluster",
        sections,
        {
            "finished": ok,
            "error": error,
            "lake_over_limit": ratio,
            "restarts": restarts,
            "spilled_bytes": spilled,
            "max_err_vs_numpy": max_err,
            "peak_rss": {str(pid): {"label": lab, "bytes": pk} for pid, (lab, pk) in sampler.peaks.items()},
            "worker_warnings": logs_hits,
        },
    )


if __name__ == "__main__":
    main()
