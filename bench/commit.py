"""Study 8: one ``RunWriter.commit`` of a real snapshot: where a commit's CPU goes, against the limit.

One FCN 784-64-64-64-10 (and LeNet) snapshot at M = 100 (b = 50, the embedded
digits) is computed once; then ``--snapshots`` copies of it (index 0, 1, ...)
are committed synchronously (``RunWriter(background=False)``, checkpoint
included, lossless default) into a fresh run, once per variant, the variants
interleaved ``--repeat`` times, medians of the per-commit wall and process-CPU
seconds:

* ``zarr store``: every key through zarr's store (``LocalStore.set``: a thread hop, mkdir,
  temp file + rename per key; ``AsyncArray.resize`` per array; zarr's checkpoint calls);
  chunks encoded by the writer (numcodecs zstd + CRC-32C, joined into one buffer): the
  writer before this pass, and still the path for non-local stores;
* ``local files``: the writer today on a local disk: chunks encoded and written with
  plain ``os.write`` in the writer's threads (no temp file: uncommitted chunks are
  invisible), the grown ``zarr.json`` documents written atomically from cached documents;
* ``local, none``: the same with codec ``none`` (no compression);
* ``limit``: the same chunks encoded with numcodecs (same codec, same threads) and each
  written to a new file with plain ``open``/``write``; nothing else.

A second table splits today's commit into its stages (``RunWriter.stage_cpu``; every commit
but a block's first, which creates the checkpoint array through zarr), with a
``plain-file floor`` row: the stages besides the chunks (checkpoint, metadata, attributes, old
checkpoints) done for the same documents with the fewest plain file calls that keep each
document replaced atomically (:func:`floor_stages`), timed in the ``limit`` blocks.

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


@contextmanager
def store_path(local: bool) -> Any:
    """Write through plain local files (the writer today) or, with ``local`` False, zarr's store calls."""
    from sgnlake.collect import chunk_files

    saved = chunk_files.local_root
    if not local:
        chunk_files.local_root = lambda store: None
    try:
        yield
    finally:
        chunk_files.local_root = saved


class _Snap:
    """A precomputed snapshot under another index (the writer's SnapshotLike)."""

    def __init__(self, index: int, snap: Any, ckpt: bytes) -> None:
        self.index, self.iteration, self.loss, self.accuracy = index, index, 0.5, 0.5
        self.sgn, self.grad, self.weight, self.checkpoint = snap.sgn, snap.grad, snap.weight, ckpt


def block(
    s: Any, snap: Any, ckpt: bytes, k: int, storage: Any, loc: Path, run_id: str
) -> tuple[float, float, dict[str, float], list[bytes]]:
    """Median wall and process-CPU seconds of ``k`` synchronous commits into a new run; CPU per stage.

    Also returns the documents a commit rewrites (every array's ``zarr.json``, then the run
    group's), as stored at the end, for :func:`floor_stages`.
    """
    from sgnlake.collect.writer import RunWriter
    from sgnlake.schema.lake import open_lake_group
    from sgnlake.schema.names import run_path

    root = open_lake_group(str(loc), mode="a")
    writer = RunWriter.create(root, CL.run_meta(s, k, storage, run_id), background=False)
    walls, cpus = [], []
    for i in range(k):
        t0, c0 = time.perf_counter(), time.process_time()
        writer.commit(_Snap(i, snap, ckpt))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if i == 0 and k > 1:  # stages of the steady state: the first commit creates the checkpoint via zarr
            writer.stage_cpu.clear()
    writer.close()
    paths = [a.path for a in writer._arrays.values()] + [run_path(run_id)]
    docs = [(loc / p / "zarr.json").read_bytes() for p in paths]
    stages = {n: v / max(k - 1, 1) for n, v in writer.stage_cpu.items()}
    return statistics.median(walls), statistics.median(cpus), stages, docs


def floor_stages(docs: list[bytes], ckpt: bytes, k: int, loc: Path) -> dict[str, float]:
    """Process CPU per commit of the stages besides the chunks done with the fewest plain file calls.

    The same documents and checkpoint as a commit (``docs`` from :func:`block`; pieces of similar
    size stand in for the checkpoint's two documents), each document replaced atomically (temporary
    file + rename, as the writer must), the checkpoint's sha256, folders and three files, the
    previous checkpoint unlinked; nothing else. Means of ``k`` commits.
    """
    import hashlib
    import os

    arrays = [loc / f"a{i}" for i in range(len(docs) - 1)]
    for a in [*arrays, loc / "run", loc / "ck"]:
        a.mkdir(parents=True)
    for a, d in zip([*arrays, loc / "run"], docs, strict=True):
        (a / "zarr.json").write_bytes(d)

    def replace(path: Path, data: bytes) -> None:
        tmp = f"{path}.t"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.write(fd, data)
        os.close(fd)
        os.replace(tmp, path)

    def ckpt_files(i: int) -> tuple[list[Path], list[Path]]:
        folder = loc / "ck" / f"s{i}"
        dirs = [folder, folder / "state", folder / "state" / "c"]
        return dirs, [folder / "zarr.json", folder / "state" / "zarr.json", folder / "state" / "c" / "0"]

    out = {"checkpoint": 0.0, "metadata": 0.0, "attributes": 0.0, "old checkpoints": 0.0}
    for i in range(k):
        c0 = time.process_time()
        hashlib.sha256(ckpt).hexdigest()
        dirs, files = ckpt_files(i)
        for d in dirs:
            os.mkdir(d)
        replace(files[0], docs[-1][:60])
        replace(files[1], docs[0])
        with open(files[2], "wb") as f:
            f.write(ckpt)
        c1 = time.process_time()
        for a, d in zip(arrays, docs, strict=False):
            replace(a / "zarr.json", d)
        c2 = time.process_time()
        replace(loc / "run" / "zarr.json", docs[-1])
        c3 = time.process_time()
        if i:
            dirs, files = ckpt_files(i - 1)
            for f in files:
                os.unlink(f)
            for d in reversed(dirs):
                os.rmdir(d)
        c4 = time.process_time()
        for name, t in zip(out, (c1 - c0, c2 - c1, c3 - c2, c4 - c3), strict=True):
            out[name] += t / k
    return out


def limit_block(snap: Any, k: int, param_chunk: int, loc: Path) -> tuple[float, float]:
    """Median wall and process-CPU seconds of encoding one snapshot's chunks and writing each to a new file."""
    import numcodecs
    import numpy as np

    from sgnlake.collect.chunk_files import copier as _copier
    from sgnlake.schema.meta import StorageSpec

    codec = numcodecs.Zstd(level=StorageSpec().level)
    arrays = [a for d in (snap.sgn, snap.grad, snap.weight) for a in d.values()]
    parts = [a[..., c : c + param_chunk] for a in arrays for c in range(0, a.shape[-1], param_chunk)]
    loc.mkdir(parents=True, exist_ok=True)
    pool = _copier()  # the writer's threads

    def one(args: tuple[int, int, Any]) -> None:
        i, j, part = args
        data = codec.encode(np.ascontiguousarray(part))
        with open(loc / f"{i}.{j}", "wb") as f:
            f.write(data)

    walls, cpus = [], []
    for i in range(k):
        t0, c0 = time.perf_counter(), time.process_time()
        list(pool.map(one, [(i, j, p) for j, p in enumerate(parts)]))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
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
        "zarr store": (False, StorageSpec()),
        "local files": (True, StorageSpec()),
        "local, none": (True, StorageSpec(codec="none")),
        "limit": (None, StorageSpec()),
    }
    work = C.scratch(args, "commit")
    table = C.Table(
        [
            "model",
            "MB/snapshot",
            *(f"{v} wall (ms)" for v in variants),
            *(f"{v} CPU (ms)" for v in variants),
            "local / zarr store (CPU)",
            "local / limit (CPU)",
        ]
    )
    stage_names = ["wait", "chunks", "checkpoint", "metadata", "attributes", "old checkpoints", "statistics"]
    stages_t = C.Table(["model", "variant", *(f"{n} (ms)" for n in stage_names), "sum (ms)"])
    metrics: dict[str, Any] = {}
    n = 0
    for label in args.models.split(","):
        s = CL.make_setup(label, "vmap", 500 if args.smoke else 5000, 50)
        snap = CL.snapshot(s, 0)
        snap.wait()
        ckpt = checkpoint.capture(s.model, s.optimizer, step=0, snapshot=0)
        mb = sum(a.nbytes for d in (snap.sgn, snap.grad, snap.weight) for a in d.values()) / 1e6
        res: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        stages: dict[str, list[dict[str, float]]] = {v: [] for v in [*variants, "plain-file floor"]}
        docs: list[bytes] = []
        for r in range(args.repeat):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))  # no fixed position
            for v in order:
                local, storage = variants[v]
                n += 1
                if local is None:
                    res[v].append(limit_block(snap, args.snapshots, storage.param_chunk, work / f"l{n}"))
                    if docs:  # the documents of this model's last commit block
                        stages["plain-file floor"].append(
                            floor_stages(docs, ckpt, args.snapshots, work / f"f{n}")
                        )
                else:
                    with store_path(local):
                        wall, cpu, st, docs = block(
                            s, snap, ckpt, args.snapshots, storage, work / f"l{n}", "r"
                        )
                    res[v].append((wall, cpu))
                    stages[v].append(st)
                # scratch lakes are deleted at the end: deleting fresh files between timed blocks costs
                # kernel time in the next block's writes (up to 2x a commit's CPU on ext4 with discard)
        wall = {v: statistics.median(w for w, _ in r) for v, r in res.items()}
        cpu = {v: statistics.median(c for _, c in r) for v, r in res.items()}
        ratios = {
            "local_over_zarr_store": cpu["local files"] / cpu["zarr store"],
            "local_over_limit": cpu["local files"] / cpu["limit"],
        }
        table.add(
            label, mb, *(1e3 * wall[v] for v in variants), *(1e3 * cpu[v] for v in variants), *ratios.values()
        )
        stage_med = {}
        for v in ("zarr store", "local files", "plain-file floor"):
            if not stages[v]:
                continue
            med = {st: statistics.median(d.get(st, 0.0) for d in stages[v]) for st in stage_names}
            stage_med[v] = med
            stages_t.add(label, v, *(1e3 * med[st] for st in stage_names), 1e3 * sum(med.values()))
        metrics[s.model_name] = {"mb": mb, "wall_s": wall, "cpu_s": cpu, "stage_cpu_s": stage_med, **ratios}
        snap.release()
    C.cleanup(args, work)
    C.write_report(
        args,
        "commit",
        "Study 8: one RunWriter.commit, zarr's store calls vs plain local files, against the limit",
        [
            f"{args.snapshots} synchronous commits per block (checkpoint included, lossless default zstd "
            f"{StorageSpec().level} unless noted), {args.repeat} interleaved repeats (order reversed every "
            "other), medians; torch 1 thread; the writer's thread pool on every core of the process.",
            table.markdown(),
            "Process CPU per commit stage (`RunWriter.stage_cpu`, medians of the blocks' means over all "
            "commits but the first; `chunks` = "
            "encode + write of every chunk, `metadata` = growing every array's `zarr.json`; `plain-file floor`: the same documents and "
            "checkpoint with the fewest plain file calls, atomic replacement kept):",
            stages_t.markdown(),
        ],
        metrics,
    )


if __name__ == "__main__":
    main()
