"""Study 8: one ``RunWriter.commit`` of a real snapshot, by chunk-key layout (where a commit's time goes).

One FCN 784-64-64-64-10 (and LeNet) snapshot at M = 100 (b = 50, the embedded
digits) is computed once; then ``--snapshots`` copies of it (index 0, 1, ...)
are committed synchronously (``RunWriter(background=False)``, checkpoint
included, lossless default) into a fresh run, once per variant, the variants
interleaved ``--repeat`` times, medians of the per-commit wall and process-CPU
seconds:

* ``nested, zarr``: Zarr's default chunk keys ``c/<snapshot>/<m>/<p>`` (lakes written
  before issue 11; every snapshot's chunks need new folders), chunks encoded and
  written by Zarr's codec pipeline (the writer before issue 11);
* ``flat, zarr``: ``c.<snapshot>.<m>.<p>`` in the array's folder (the collector's
  layout since issue 11, :data:`sgnlake.schema.codecs.CHUNK_KEY_ENCODING`);
* ``flat, direct``: the writer today: zstd chunks encoded with numcodecs in the
  writer's threads and stored as they are (same bytes as Zarr's);
* ``flat, none``: codec ``none`` (Zarr's path): the write path without compression.

    .venv/bin/python bench/commit.py            # ~1 min
    .venv/bin/python bench/commit.py --smoke
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _common as C
import collector as CL

LAYOUTS = {
    "nested": {"name": "default", "separator": "/"},
    "flat": {"name": "default", "separator": "."},
}


@contextmanager
def layout(enc: dict[str, str], direct: bool = True) -> Any:
    """Create arrays with chunk-key encoding ``enc`` (and the direct zstd path or not) while inside."""
    from sgnlake.collect import writer
    from sgnlake.schema import codecs

    saved = codecs.CHUNK_KEY_ENCODING, writer.CHUNK_KEY_ENCODING, writer._direct_codec
    codecs.CHUNK_KEY_ENCODING = writer.CHUNK_KEY_ENCODING = enc
    if not direct:
        writer._direct_codec = lambda arr: None
    try:
        yield
    finally:
        codecs.CHUNK_KEY_ENCODING, writer.CHUNK_KEY_ENCODING, writer._direct_codec = saved


class _Snap:
    """A precomputed snapshot under another index (the writer's SnapshotLike)."""

    def __init__(self, index: int, snap: Any, ckpt: bytes) -> None:
        self.index, self.iteration, self.loss, self.accuracy = index, index, 0.5, 0.5
        self.sgn, self.grad, self.weight, self.checkpoint = snap.sgn, snap.grad, snap.weight, ckpt


def block(s: Any, snap: Any, ckpt: bytes, k: int, storage: Any, loc: Path, run_id: str) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``k`` synchronous commits into a new run."""
    from sgnlake.collect.writer import RunWriter
    from sgnlake.schema.lake import open_lake_group

    root = open_lake_group(str(loc), mode="a")
    writer = RunWriter.create(root, CL.run_meta(s, k, storage, run_id), background=False)
    walls, cpus = [], []
    for i in range(k):
        t0, c0 = time.perf_counter(), time.process_time()
        writer.commit(_Snap(i, snap, ckpt))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    writer.close()
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--snapshots", type=int, default=6, help="commits per timed block")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (median reported)")
    p.add_argument("--models", default=",".join(CL.MODELS), help="comma list of models")
    args = p.parse_args()
    if args.smoke:
        args.snapshots, args.repeat, args.models = 2, 1, "FCN 784-64-64-64-10"

    import torch

    from sgnlake.collect import checkpoint
    from sgnlake.schema.meta import StorageSpec

    torch.set_num_threads(1)
    variants = {
        "nested, zarr": (LAYOUTS["nested"], StorageSpec(), False),
        "flat, zarr": (LAYOUTS["flat"], StorageSpec(), False),
        "flat, direct": (LAYOUTS["flat"], StorageSpec(), True),
        "flat, none": (LAYOUTS["flat"], StorageSpec(codec="none"), False),
    }
    work = C.scratch(args, "commit")
    table = C.Table(
        ["model", "MB/snapshot", *(f"{v} wall (ms)" for v in variants), *(f"{v} CPU (ms)" for v in variants),
         "flat / nested (CPU)", "direct / zarr (CPU)", "today / before (CPU)"]
    )
    metrics: dict[str, Any] = {}
    n = 0
    for label in args.models.split(","):
        s = CL.make_setup(label, "vmap", 500 if args.smoke else 5000, 50)
        snap = CL.snapshot(s, 0)
        ckpt = checkpoint.capture(s.model, s.optimizer, step=0, snapshot=0)
        mb = sum(a.nbytes for d in (snap.sgn, snap.grad, snap.weight) for a in d.values()) / 1e6
        res: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for r in range(args.repeat):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))  # no fixed position
            for v in order:
                enc, storage, direct = variants[v]
                n += 1
                with layout(enc, direct):
                    res[v].append(block(s, snap, ckpt, args.snapshots, storage, work / f"l{n}", "r"))
                C.cleanup(args, work / f"l{n}")
        wall = {v: statistics.median(w for w, _ in r) for v, r in res.items()}
        cpu = {v: statistics.median(c for _, c in r) for v, r in res.items()}
        ratios = {
            "flat_over_nested": cpu["flat, zarr"] / cpu["nested, zarr"],
            "direct_over_zarr": cpu["flat, direct"] / cpu["flat, zarr"],
            "today_over_before": cpu["flat, direct"] / cpu["nested, zarr"],
        }
        table.add(label, mb, *(1e3 * wall[v] for v in variants), *(1e3 * cpu[v] for v in variants), *ratios.values())
        metrics[s.model_name] = {"mb": mb, "wall_s": wall, "cpu_s": cpu, **ratios}
        snap.release()
    C.cleanup(args, work)
    C.write_report(
        args,
        "commit",
        "Study 8: one RunWriter.commit by chunk-key layout",
        [
            f"{args.snapshots} synchronous commits per block (checkpoint included, lossless default unless "
            f"noted), {args.repeat} interleaved repeats (order reversed every other), medians; torch 1 thread.",
            table.markdown(),
        ],
        metrics,
    )


if __name__ == "__main__":
    main()
