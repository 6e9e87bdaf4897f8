"""Study 3: alpha throughput of the per-parameter estimator against the raw read rate.

Writes a synthetic heavy-tailed lake (default 2 GB of float32 SGN, lossless zstd,
the collector's chunking) into the scratch folder, then measures side by side, in
one run and on the same arrays:

* direct read (the baseline): every ``sgn`` chunk file read with plain
  ``open().read()``, its crc32c verified and decoded with the array's codec
  (numcodecs), no Zarr and no Dask; on one thread and on a thread pool as large
  as the one ``compute_alpha`` runs its tasks on;
* raw read: every ``sgn`` chunk read and decompressed through the same Dask
  arrays the analysis uses (``Lake.sgn``), nothing computed;
* alpha: ``Lake.compute_alpha(force=True)`` (Mohammadi per parameter, results
  stored back in the lake), as ``sgnlake alpha`` runs it;
* kernel ceiling: the fused kernel alpha runs (``kernels.mohammadi_outputs``, every
  stored output) on the first snapshot's ``sgn`` already in memory (read with plain
  zarr, one array per result chunk, as alpha's tasks cut it), on a thread pool as
  large as alpha's: what alpha could reach if reading, writing and scheduling cost
  nothing (``alpha_over_kernel_ceiling``); its alphas are checked against the stored
  ones, bit for bit;

with Dask's threaded scheduler and with a 2-worker ``LocalCluster`` (``--workers 2``).
Throughput is parameter-snapshots per second (one parameter's M SGN samples at
one snapshot). Timings are interleaved, ``--repeat`` each, medians. Goal: alpha
>= 0.8 x the direct read rate with the same threads (``alpha_over_direct_read``).

    .venv/bin/python bench/alpha_throughput.py            # 2 GB, ~2 min
    .venv/bin/python bench/alpha_throughput.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import _common as C
import numpy as np

GOAL = 0.8


def _touch(block: np.ndarray) -> np.ndarray:
    """Keep one value of a chunk (forces read + decompress, computes nothing)."""
    return np.zeros((1,) * block.ndim, dtype=block.dtype)


def raw_read_seconds(location: str, run: str) -> float:
    """Seconds to read and decompress every committed ``sgn`` chunk of ``run`` on the active scheduler."""
    import dask

    from sgnlake.analyze import open_lake

    lake = open_lake(location)
    parts = []
    for info in lake.meta(run).tensors:
        x = lake.sgn(run, info.name).data
        parts.append(x.map_blocks(_touch, chunks=tuple((1,) * len(c) for c in x.chunks), dtype=x.dtype).sum())
    t0 = time.perf_counter()
    dask.compute(*parts)
    return time.perf_counter() - t0


def chunk_files(location: str, run: str) -> list[tuple[str, Any]]:
    """``(path, numcodecs codec)`` of every committed ``sgn`` chunk file of ``run`` (local lakes)."""
    import math
    import os

    import numcodecs
    import zarr

    g = zarr.open_group(location, mode="r")[f"runs/{run}"]
    out = []
    for _, tg in g.groups():
        arr = tg["sgn"]
        md = arr.metadata
        kinds = {type(c).__name__: c for c in md.codecs}
        codec: Any = None
        if "ZstdCodec" in kinds:
            codec = numcodecs.Zstd(level=kinds["ZstdCodec"].level, checksum=kinds["ZstdCodec"].checksum)
        elif "BloscCodec" in kinds:
            codec = numcodecs.Blosc()  # blosc frames describe themselves: any instance decodes them
        if "Crc32cCodec" in kinds:  # chunks end with a 4-byte crc32c: verified, as a reader does
            codec = _Crc32cThen(codec)
        grid = [math.ceil(s / c) for s, c in zip(arr.shape, md.chunks, strict=True)]
        for coords in np.ndindex(*grid):
            out.append((os.path.join(location, arr.path, md.encode_chunk_key(coords)), codec))
    return out


def _crc32c(data: Any) -> int:
    try:
        import google_crc32c

        return int(google_crc32c.value(data))
    except ImportError:  # numcodecs' CRC32C codec computes the same checksum
        import numcodecs

        return int.from_bytes(bytes(numcodecs.CRC32C().encode(bytes(data)))[-4:], "little")


class _Crc32cThen:
    """Verify and strip zarr's trailing crc32c (little-endian CRC-32C of the preceding bytes), then decode."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def decode(self, data: bytes) -> Any:
        buf = np.frombuffer(data, dtype=np.uint8)  # views, no copies of the chunk
        body, tail = buf[:-4], bytes(buf[-4:])
        if _crc32c(body) != int.from_bytes(tail, "little"):
            raise ValueError("crc32c checksum mismatch")
        return self.codec.decode(body) if self.codec is not None else body


def direct_read_seconds(files: list[tuple[str, Any]], threads: int) -> float:
    """Seconds to read every chunk file with ``open().read()`` and decode it (numcodecs), on ``threads``."""
    from concurrent.futures import ThreadPoolExecutor

    def one(job: tuple[str, Any]) -> int:
        path, codec = job
        with open(path, "rb") as f:
            data = f.read()
        raw = codec.decode(data) if codec is not None else data
        return np.frombuffer(raw, dtype=np.float32).size

    t0 = time.perf_counter()
    if threads <= 1:
        for job in files:
            one(job)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, files, chunksize=4))
    return time.perf_counter() - t0


def alpha_seconds(location: str, estimator: str = "mohammadi") -> tuple[float, Any]:
    """Seconds of ``compute_alpha(force=True)`` over the whole lake (results written back)."""
    from sgnlake.analyze import open_lake

    lake = open_lake(location)
    t0 = time.perf_counter()
    rep = lake.compute_alpha(estimator=estimator, force=True, progress=False)
    return time.perf_counter() - t0, rep


def alpha_threads() -> int:
    """Threads ``compute_alpha`` runs its tasks on with the threaded scheduler (its own pool's size)."""
    import os

    import dask

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def warm_up() -> None:
    """Run raw read and alpha once on a tiny lake (imports, worker start-up) on the active scheduler."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="sgnlake-warm-") as tmp:
        lake = C.write_synthetic_lake(
            Path(tmp) / "lake", n_snapshots=1, tensors=C.SMOKE_TENSORS, n_minibatches=40
        )
        raw_read_seconds(str(lake.path), lake.run_id)
        alpha_seconds(str(lake.path))


def snapshot_regions(location: str, run: str, it: int = 0) -> list[np.ndarray]:
    """Snapshot ``it``'s ``sgn`` of every tensor, one (1, M, p) array per result chunk, read with plain zarr."""
    import zarr

    from sgnlake.analyze.stored import result_chunk

    g = zarr.open_group(location, mode="r")[f"runs/{run}"]
    out = []
    for _, tg in sorted(g.groups()):
        arr = tg["sgn"]
        numel = arr.shape[2]
        rc = result_chunk(arr.chunks[2], numel)
        out += [np.asarray(arr[it : it + 1, :, lo : min(lo + rc, numel)]) for lo in range(0, numel, rc)]
    return out


def kernel_seconds(regions: list[np.ndarray], threads: int) -> tuple[float, list[Any]]:
    """Seconds of the fused Mohammadi kernel with every stored output over in-memory ``regions`` on
    ``threads`` (each region in the stored (1, M, p) layout, viewed as (1, p, M) as alpha's tasks do)."""
    from concurrent.futures import ThreadPoolExecutor

    from sgnlake.analyze import kernels

    k1, k2 = kernels.choose_k1(regions[0].shape[1], kernels.DEFAULT_K1)

    def one(block: np.ndarray) -> Any:
        return kernels.mohammadi_outputs(np.moveaxis(block, 1, -1), k1, k2)

    t0 = time.perf_counter()
    if threads <= 1:
        res = [one(b) for b in regions]
    else:
        with ThreadPoolExecutor(threads) as pool:
            res = list(pool.map(one, regions))
    return time.perf_counter() - t0, res


def kernel_matches_stored(location: str, run: str, results: list[Any]) -> bool:
    """The in-memory kernel's alphas of snapshot 0 equal the ones alpha stored, bit for bit (plain zarr reads)."""
    import zarr

    from sgnlake.analyze.results import result_key
    from sgnlake.analyze.stored import GENERATION_ATTR

    kg = zarr.open_group(location, mode="r")[f"results/{run}/{result_key('mohammadi')}"]
    dg = kg[kg.attrs[GENERATION_ATTR]]
    stored = np.concatenate([np.asarray(tg["alpha"][0]) for _, tg in sorted(dg.groups())])
    mine = np.concatenate([r[0].reshape(-1) for r in results])
    return stored.shape == mine.shape and bool(np.array_equal(stored.view(np.int64), mine.view(np.int64)))


def measure(location: str, run: str, workers: int, repeat: int, memory_limit: Any = "auto") -> dict[str, Any]:
    """Interleaved read, kernel and alpha timings (``repeat`` each) on threads (0) or a local cluster.

    ``kernel`` times the fused kernel on snapshot 0 held in memory (``kernel_params`` parameters)
    on alpha's threads; ``kernel_matches_stored``: its alphas equal the stored ones.
    """
    from sgnlake.analyze import dask_client

    out: dict[str, Any] = {"raw": [], "alpha": [], "direct1": [], "direct": [], "kernel": []}
    files = chunk_files(location, run)
    threads = alpha_threads()
    regions = snapshot_regions(location, run)
    out["kernel_params"] = sum(r.shape[2] for r in regions)
    with dask_client(workers=workers or None, memory_limit=memory_limit, echo=None):
        warm_up()
        raw_read_seconds(location, run)  # page cache
        for _ in range(repeat):
            out["direct1"].append(direct_read_seconds(files, 1))
            out["direct"].append(direct_read_seconds(files, threads))
            out["raw"].append(raw_read_seconds(location, run))
            seconds, res = kernel_seconds(regions, threads)
            out["kernel"].append(seconds)
            out["alpha"].append(alpha_seconds(location)[0])
    out["kernel_matches_stored"] = kernel_matches_stored(location, run, res)
    return out


def kernel_ceiling(n_params: int, m: int, repeat: int = 5) -> tuple[dict[str, float], dict[str, float]]:
    """In-memory single-thread rates (param-snapshots/s) of the Mohammadi chunk kernel, and the fused kernels.

    ``contiguous``: samples on the last, contiguous axis; ``lake layout``: an (M, P) block
    viewed as (P, M), as a stored ``sgn`` chunk reaches the kernel. Second dict: the fused
    per-chunk kernel on the lake layout without (``mohammadi_counted``: alpha and the
    non-finite counts) and with every stored output (``mohammadi_outputs``: also inv_alpha and
    issue 13's n_distinct, max_share, sparse), timed interleaved (thread CPU time, medians).
    """
    from sgnlake.analyze import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_cauchy((m, n_params)).astype(np.float32)
    x[:, : n_params // 20] = np.where(
        rng.random((m, n_params // 20)) < 0.7, 0, x[:, : n_params // 20]
    )  # sparse
    k1, k2 = kernels.choose_k1(m, kernels.DEFAULT_K1)
    cont = np.ascontiguousarray(x.T)
    res = {}
    for name, arr in (("contiguous (P, M)", cont), ("lake layout (M, P) viewed as (P, M)", x.T)):
        best = min(C.timed(lambda a=arr: kernels.mohammadi_chunk(a, k1, k2))[0] for _ in range(repeat))
        res[name] = n_params / best
    view = np.moveaxis(x[None], 1, -1)
    fused: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(repeat):
        for key, fn in (("without", kernels.mohammadi_counted), ("with", kernels.mohammadi_outputs)):
            t0 = time.thread_time()
            fn(view, k1, k2)
            fused[key].append(time.thread_time() - t0)
    fk = {k: statistics.median(v) for k, v in fused.items()}
    return res, {
        "kernel_s": fk["without"],
        "kernel_with_outputs_s": fk["with"],
        "ratio": fk["with"] / fk["without"],
    }


def run_study(
    args: argparse.Namespace, size_gb: float, workers_list: list[int]
) -> tuple[C.SynthLake, dict[int, dict[str, list[float]]]]:
    """Write a lake of ``size_gb`` and measure every mode in ``workers_list``; the lake is deleted after."""
    work = C.scratch(args, f"alpha_throughput_{size_gb:g}gb")
    C.check_disk(work, size_gb * 1.1)
    try:
        if args.smoke:
            lake = C.write_synthetic_lake(
                work / "lake", n_snapshots=3, tensors=C.SMOKE_TENSORS, n_minibatches=40
            )
        else:
            lake = C.write_synthetic_lake(work / "lake", target_gb=size_gb)
        res = {w: measure(str(lake.path), lake.run_id, w, args.repeat) for w in workers_list}
    finally:
        C.cleanup(args, work)
    return lake, res


def rate_rows(
    table: C.Table, lake: C.SynthLake, res: dict[int, dict[str, list[float]]], size_label: str = ""
) -> None:
    """Add one row per mode: median rates and ratios."""
    import statistics

    for w, t in res.items():
        raw, alpha = statistics.median(t["raw"]), statistics.median(t["alpha"])
        d1, dn = statistics.median(t["direct1"]), statistics.median(t["direct"])
        ratio = dn / alpha
        ceiling = kernel_rate(t)
        mode = "threads" if not w else f"--workers {w}"
        cells = [
            mode,
            lake.sgn_bytes / d1 / 1e6,
            lake.sgn_bytes / dn / 1e6,
            lake.sgn_bytes / raw / 1e6,
            ceiling * lake.n_minibatches * 4 / 1e6,
            lake.param_snapshots / alpha / 1e6,
            lake.sgn_bytes / alpha / 1e6,
            raw / alpha,
            ratio,
            lake.param_snapshots / alpha / ceiling,
            "yes" if ratio >= GOAL else "no",
        ]
        table.add(*([size_label] if size_label else []), *cells)


def kernel_rate(t: dict[str, Any]) -> float:
    """Parameter-snapshots per second of the in-memory fused kernel on alpha's threads (median)."""
    return t["kernel_params"] / statistics.median(t["kernel"])


RATE_HEADERS = [
    "scheduler",
    "direct read 1 thread (MB/s)",
    "direct read, alpha's threads (MB/s)",
    "Dask raw read (MB/s)",
    "kernel ceiling, alpha's threads (MB/s)",
    "alpha (M param-snap/s)",
    "alpha (MB/s)",
    "alpha / Dask raw read",
    "alpha / direct read",
    "alpha / kernel ceiling",
    f"goal >= {GOAL}",
]


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--size-gb", type=float, default=2.0, help="uncompressed SGN size of the lake (default 2)")
    p.add_argument("--workers", default="0,2", help="comma list: 0 = threads, N = LocalCluster of N workers")
    p.add_argument("--repeat", type=int, default=3, help="interleaved timings per mode (median reported)")
    args = p.parse_args()
    if args.smoke:  # threads only: the LocalCluster path is smoke-tested by out_of_core.py
        args.repeat, args.workers = 1, "0"
    workers = [int(w) for w in args.workers.split(",")]
    lake, res = run_study(args, args.size_gb, workers)

    t = C.Table(RATE_HEADERS)
    rate_rows(t, lake, res)
    lake_line = (
        f"Lake: {lake.sgn_bytes / 1e9:.2f} GB float32 SGN (SGN stored at x{lake.sgn_ratio:.2f} by the default "
        f"lossless codec, 38% of fc1 = border pixels exactly zero; whole lake {lake.stored_bytes / 1e9:.2f} GB "
        f"stored), {lake.n_snapshots} snapshots x {lake.n_params:,} "
        f"parameters x M = {lake.n_minibatches}, chunks (1, M, 8192); written in {lake.write_s:.1f} s. "
        f"Medians of {args.repeat} interleaved timings per cell; all timings (s): "
        + "; ".join(
            f"{'threads' if not w else f'workers {w}'}: raw {', '.join(f'{x:.2f}' for x in v['raw'])} / "
            f"alpha {', '.join(f'{x:.2f}' for x in v['alpha'])} / kernel on snapshot 0 "
            f"{', '.join(f'{x:.3f}' for x in v['kernel'])}"
            for w, v in res.items()
        )
        + "."
    )
    n_kernel = 16384 if not args.smoke else 512
    ceiling, outputs = kernel_ceiling(n_kernel, lake.n_minibatches)
    tk = C.Table(["Mohammadi kernel input (in memory, 1 thread)", "M param-snap/s", "MB/s"])
    for name, rate in ceiling.items():
        tk.add(name, rate / 1e6, rate * lake.n_minibatches * 4 / 1e6)
    to = C.Table(
        ["fused kernel, lake layout (1 thread, CPU s, median)", "without outputs", "with outputs", "ratio"]
    )
    to.add(
        f"{n_kernel:,} params x M = {lake.n_minibatches} (5% sparse)",
        outputs["kernel_s"],
        outputs["kernel_with_outputs_s"],
        outputs["ratio"],
    )
    C.write_report(
        args,
        "alpha_throughput",
        "Study 3: alpha throughput vs raw read rate",
        [
            lake_line,
            t.markdown(),
            "Kernel ceiling: the fused kernel alpha runs (`kernels.mohammadi_outputs`, every stored output) "
            "on snapshot 0's SGN already in memory (one array per result chunk, read with plain zarr), on "
            "a thread pool as large as alpha's, timed interleaved with the rest: alpha's rate if reading, "
            "decoding, writing the results and scheduling cost nothing. Its alphas equal the stored ones "
            f"bit for bit: {all(v['kernel_matches_stored'] for v in res.values())}.",
            "Compute ceiling of the estimator kernel (`sgnlake.analyze.kernels.mohammadi_chunk`), "
            "one thread, data already in memory:",
            tk.markdown(),
            "Cost of issue 13's stored outputs (inv_alpha, n_distinct, max_share, sparse) in the fused "
            "kernel (`mohammadi_outputs` vs `mohammadi_counted`, interleaved):",
            to.markdown(),
            C.drop_page_cache_hint()
            + " The machine has 2 cores shared with other engineers: absolute rates drift by tens of "
            "percent between runs; the ratio is measured side by side.",
        ],
        {
            "sgn_bytes": lake.sgn_bytes,
            "sgn_ratio": lake.sgn_ratio,
            "param_snapshots": lake.param_snapshots,
            "modes": {
                ("threads" if not w else f"workers{w}"): {
                    "raw_s": v["raw"],
                    "alpha_s": v["alpha"],
                    "direct1_s": v["direct1"],
                    "direct_s": v["direct"],
                    "ratio": statistics.median(v["raw"]) / statistics.median(v["alpha"]),
                    "alpha_over_direct_read": statistics.median(v["direct"]) / statistics.median(v["alpha"]),
                    "kernel_s": v["kernel"],
                    "kernel_params": v["kernel_params"],
                    "alpha_over_kernel_ceiling": lake.param_snapshots
                    / statistics.median(v["alpha"])
                    / kernel_rate(v),
                    "kernel_matches_stored": v["kernel_matches_stored"],
                }
                for w, v in res.items()
            },
            "alpha_over_direct_read": statistics.median(res[workers[0]]["direct"])
            / statistics.median(res[workers[0]]["alpha"]),
            "alpha_over_kernel_ceiling": lake.param_snapshots
            / statistics.median(res[workers[0]]["alpha"])
            / kernel_rate(res[workers[0]]),
            "kernel_rates": ceiling,
            "kernel_outputs": outputs,
            "threads": alpha_threads(),
        },
    )


if __name__ == "__main__":
    main()
