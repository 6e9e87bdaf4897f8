"""Shared helpers of the benchmark scripts: arguments, tables, result files, timing,
memory sampling and a fast synthetic-lake writer.

Every study script imports this module (``bench/`` is on ``sys.path`` when a script
runs as ``python bench/<study>.py``). Nothing here is part of the ``sgnlake`` package.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "bench" / "work"  # gitignored scratch space

# ----------------------------------------------------------------------------- arguments


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every study takes.

    ``--smoke`` runs tiny sizes (seconds) and, unless ``--results-dir`` is given,
    writes its table to ``bench/work/`` instead of ``bench/results/``.
    """
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds; for CI")
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where to write <study>.md (default bench/results, or bench/work with --smoke)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch folder for lakes (default bench/work; deleted afterwards unless --keep)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch lakes")
    p.add_argument(
        "--json", type=Path, default=None, help="also write the headline numbers to this JSON file"
    )
    return p


def results_dir(args: argparse.Namespace) -> Path:
    """The folder a study writes its markdown table to."""
    if args.results_dir is not None:
        return Path(args.results_dir)
    return WORK / "smoke" if args.smoke else RESULTS


def scratch(args: argparse.Namespace, name: str) -> Path:
    """A fresh scratch folder ``<workdir>/<name>`` (removed first if present)."""
    base = Path(args.workdir) if args.workdir is not None else WORK
    path = base / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def cleanup(args: argparse.Namespace, *paths: Path) -> None:
    """Delete scratch folders unless ``--keep``."""
    if args.keep:
        return
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


def free_gb(path: Path) -> float:
    """Free disk space (GB) of the filesystem holding ``path`` (or its nearest parent)."""
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free / 1e9


def check_disk(path: Path, need_gb: float, margin_gb: float = 5.0) -> None:
    """Exit with a one-line message if ``path`` lacks ``need_gb`` + margin free space."""
    free = free_gb(path)
    if free < need_gb + margin_gb:
        sys.exit(
            f"error: {path} has {free:.1f} GB free, this study needs {need_gb:.1f} GB "
            f"(+{margin_gb:.0f} GB margin): pass --workdir on a larger disk or smaller sizes"
        )


# ----------------------------------------------------------------------------- tables


def fmt(value: Any, digits: int = 3) -> str:
    """Format a table cell: floats to ``digits`` significant figures, NaN as ``n/a``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return "n/a"
        if v == 0:
            return "0"
        if abs(v) < 1e-3:
            return f"{v:.{max(digits - 1, 0)}e}"
        mag = math.floor(math.log10(abs(v)))
        if mag >= digits - 1:
            return f"{v:,.0f}"
        return f"{v:.{max(digits - 1 - mag, 0)}f}"
    return str(value)


@dataclass
class Table:
    """A markdown table built row by row."""

    headers: Sequence[str]
    rows: list[list[Any]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.headers)} columns")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        head = "| " + " | ".join(self.headers) + " |"
        sep = "|" + "|".join("---" for _ in self.headers) + "|"
        body = ["| " + " | ".join(fmt(c) for c in row) + " |" for row in self.rows]
        return "\n".join([head, sep, *body])


def machine_line() -> str:
    """One line describing the machine, its load and the library versions."""
    import importlib.metadata as md

    vers = []
    for name in ("numpy", "zarr", "numcodecs", "dask", "torch", "scipy"):
        try:
            vers.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            pass
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load avg {load} "
        f"(1/5/15 min), Python {platform.python_version()}, {', '.join(vers)}"
    )


def write_report(
    args: argparse.Namespace,
    study: str,
    title: str,
    sections: Iterable[str],
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Print a study's markdown and write it to ``<results dir>/<study>.md``.

    The file starts with the title, the command that produced it, the date and
    the machine line (so noisy numbers carry their context). With ``--json``,
    ``metrics`` (the headline numbers) are written there too.
    """
    cmd = ".venv/bin/python " + " ".join(shlex.quote(a) for a in [f"bench/{study}.py", *sys.argv[1:]])
    head = [
        f"# {title}",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()}  ",
        f"Machine: {machine_line()}",
        "",
    ]
    if args.smoke:
        head.insert(2, "**Smoke run (tiny sizes): the numbers mean nothing.**\n")
    text = "\n".join(head) + "\n" + "\n\n".join(s.strip("\n") for s in sections) + "\n"
    out = results_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{study}.md"
    path.write_text(text)
    if args.json is not None:
        import json

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_jsonable(metrics or {}), indent=1))
    print(text)
    print(f"written: {path}")
    return path


def _jsonable(value: Any) -> Any:
    """Numpy scalars to Python, non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return (seconds, result)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence (NaN if empty)."""
    return float(statistics.median(xs)) if xs else float("nan")


# ----------------------------------------------------------------------------- memory


class MemorySampler:
    """Sample the resident memory of this process and all its descendants.

    A background thread polls :mod:`psutil` every ``interval`` seconds and keeps
    each process's peak RSS, so worker processes of a Dask ``LocalCluster`` are
    covered as they come and go. Use as a context manager.
    """

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self.total_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _label(self, proc: Any) -> str:
        try:
            cmd = proc.cmdline()
        except Exception:
            return "?"
        text = " ".join(cmd)
        if proc.pid == os.getpid():
            return "main (client + scheduler)"
        if "spawn_main" in text or "multiprocessing" in text or "forkserver" in text:
            return "dask worker process"
        return os.path.basename(cmd[0]) if cmd else "?"

    def _sample(self) -> None:
        ps = self._psutil
        me = ps.Process()
        procs = [me]
        try:
            procs += me.children(recursive=True)
        except ps.Error:
            pass
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except ps.Error:
                continue
            total += rss
            label, peak = self.peaks.get(p.pid, (None, 0))
            if label is None:
                label = self._label(p)
            if rss > peak:
                peak = rss
            self.peaks[p.pid] = (label, peak)
        self.total_peak = max(self.total_peak, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# ----------------------------------------------------------------------------- synthetic lakes

#: An FCN-like model (784-512-512-10 with biases): 0.67 M parameters.
SYNTH_TENSORS: tuple[tuple[str, tuple[int, ...], str, str, str], ...] = (
    ("fc1.weight", (512, 784), "weight", "fc1", "Linear"),
    ("fc1.bias", (512,), "bias", "fc1", "Linear"),
    ("fc2.weight", (512, 512), "weight", "fc2", "Linear"),
    ("fc2.bias", (512,), "bias", "fc2", "Linear"),
    ("fc3.weight", (10, 512), "weight", "fc3", "Linear"),
    ("fc3.bias", (10,), "bias", "fc3", "Linear"),
)

#: A tiny model for smoke runs.
SMOKE_TENSORS: tuple[tuple[str, tuple[int, ...], str, str, str], ...] = (
    ("fc1.weight", (64, 32), "weight", "fc1", "Linear"),
    ("fc1.bias", (64,), "bias", "fc1", "Linear"),
    ("fc2.weight", (10, 64), "weight", "fc2", "Linear"),
)


def stable_rvs(alpha: np.ndarray, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Symmetric alpha-stable samples (Chambers-Mallows-Stuck), ``alpha`` broadcast on the last axis."""
    v = rng.uniform(-np.pi / 2, np.pi / 2, size)
    w = rng.exponential(1.0, size)
    a = np.broadcast_to(alpha, size)
    return np.sin(a * v) / np.cos(v) ** (1.0 / a) * (np.cos((1.0 - a) * v) / w) ** ((1.0 - a) / a)


#: Image pixels closer than this to the border are zero in every training image, as the
#: border of MNIST digits is: their fc1 gradients are exactly zero in every minibatch, so
#: their SGN is exactly zero. Chosen so the default lossless codec stores the synthetic FCN
#: lake's SGN at x1.2-1.3, as it stores real FCN/LeNet SGN (x1.2-1.5).
DEAD_BORDER = 3


def dead_inputs(n_in: int) -> np.ndarray:
    """Which inputs of a first layer are zero in every training example (bool, ``(n_in,)``).

    Inputs are the pixels of a square image (``n_in = s * s``, e.g. 784 for MNIST): those
    within :data:`DEAD_BORDER` pixels of an edge. Otherwise, positions on a line scaled to
    28 pixels, with the same rule at both ends.
    """
    side = math.isqrt(n_in)
    if side * side == n_in:
        r, c = np.divmod(np.arange(n_in), side)
        d = np.minimum.reduce([r, c, side - 1 - r, side - 1 - c]).astype(np.float64)
    else:
        k = np.arange(n_in, dtype=np.float64)
        d = np.minimum(k, n_in - 1 - k) * 28.0 / max(n_in, 1)
    return d < DEAD_BORDER


@dataclass
class SynthLake:
    """What :func:`write_synthetic_lake` wrote."""

    path: Path
    run_id: str
    n_snapshots: int
    n_minibatches: int
    n_params: int
    sgn_bytes: int  # uncompressed float32 bytes of all sgn arrays
    stored_bytes: int  # bytes on disk of the whole lake
    write_s: float
    sgn_stored_bytes: int = 0  # bytes on disk of the sgn arrays

    @property
    def param_snapshots(self) -> int:
        return self.n_params * self.n_snapshots

    @property
    def sgn_ratio(self) -> float:
        """Compression ratio of the SGN: float32 bytes / stored bytes of the ``sgn`` arrays."""
        return self.sgn_bytes / self.sgn_stored_bytes if self.sgn_stored_bytes else float("nan")


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def write_synthetic_lake(
    path: Path,
    *,
    target_gb: float | None = None,
    n_snapshots: int | None = None,
    tensors: Sequence[tuple[str, tuple[int, ...], str, str, str]] = SYNTH_TENSORS,
    n_minibatches: int = 100,
    storage: Any = None,
    run_id: str = "synth",
    seed: int = 0,
    pool_params: int = 65536,
) -> SynthLake:
    """Write a lake with one run of heavy-tailed SGN, following the lake contract.

    Fast enough for multi-GB lakes on 2 cores: a pool of ``pool_params`` columns of
    centred symmetric alpha-stable samples (alpha uniform in [1.2, 1.95] per column)
    is drawn once; each snapshot x tensor slab takes a random circular window of
    pool columns times a random scale, so every chunk holds distinct values (chunks
    are compressed independently). The first layer's weights see an image whose
    border is always zero (:func:`dead_inputs`, 38% of fc1's inputs): those
    parameters' per-minibatch gradients, hence their SGN, are exactly zero, as for
    real FCN SGN on MNIST. With that the SGN compresses like real SGN: x1.28 with the
    default lossless codec (``SynthLake.sgn_ratio``; the alpha-stable columns alone do
    not compress, x0.98). Every other parameter is centred alpha-stable with its pool
    column's alpha. One slab is in memory at a time.

    Parameters
    ----------
    path : Path
        New lake location.
    target_gb : float, optional
        Uncompressed size of all ``sgn`` arrays; sets the number of snapshots.
    n_snapshots : int, optional
        Number of snapshots (overrides ``target_gb``).
    tensors : sequence
        ``(name, shape, kind, module, module_type)`` of each parameter tensor.
    n_minibatches : int
        M, SGN samples per parameter and snapshot.
    storage : StorageSpec, optional
        Codec and chunking (default lossless zstd, 8192 parameters per chunk).
    """
    import zarr

    from sgnlake.schema import codecs
    from sgnlake.schema.meta import LakeMeta, RunConfig, RunMeta, Schedule, StorageSpec, TensorInfo

    storage = storage or StorageSpec()
    infos = tuple(
        TensorInfo(name=n, shape=tuple(s), kind=k, module=m, module_type=t) for n, s, k, m, t in tensors
    )
    n_params = sum(t.numel for t in infos)
    per_snapshot = n_params * n_minibatches * 4
    if n_snapshots is None:
        if target_gb is None:
            raise ValueError("give target_gb or n_snapshots")
        n_snapshots = max(1, math.ceil(target_gb * 1e9 / per_snapshot))
    batch = 50
    iterations = [100 * (i + 1) for i in range(n_snapshots)]
    config = RunConfig(
        run_id=run_id,
        model="fcn",
        model_args={"depth": len(tensors) // 2, "width": 512, "bias": True},
        dataset="mnist5k",
        n_train=n_minibatches * batch,
        batch_size=batch,
        lr=0.1,
        seed=seed,
        iterations=iterations[-1],
        schedule=Schedule(kind="at", every=None, at=tuple(iterations)),
        engine="loop",
        device="cpu",
        storage=storage,
    )
    meta = RunMeta(
        config=config,
        tensors=infos,
        status="running",
        n_examples=n_minibatches * batch,
        n_minibatches=n_minibatches,
        remainder=0,
        planned_iterations=tuple(iterations),
        total_steps=iterations[-1],
        committed=0,
        engine="loop",
        device="cpu",
        extra={"synthetic": "bench/_common.py write_synthetic_lake"},
    )
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(1.2, 1.95, pool_params)
    pool = stable_rvs(alpha, (n_minibatches, pool_params), rng)
    pool = (pool - pool.mean(axis=0, keepdims=True)).astype(np.float32)

    # the first layer's weights see the image: border pixels are always zero (see dead_inputs)
    first = infos[0]
    first_weight = first.name if first.kind == "weight" and len(first.shape) == 2 else None
    dead = dead_inputs(first.shape[1]) if first_weight else np.zeros(0, bool)

    t0 = time.perf_counter()
    root = zarr.open_group(str(path), mode="w", zarr_format=3, attributes={"sgnlake": LakeMeta().to_dict()})
    runs = root.create_group("runs")
    g = runs.create_group(run_id, attributes={"sgnlake_run": meta.to_dict()})
    g.create_array("iteration", data=np.asarray(iterations, np.int64), dimension_names=["iteration"])
    for name in ("loss", "accuracy"):
        g.create_array(
            name,
            data=rng.uniform(0.1, 1.0, n_snapshots),
            fill_value=np.nan,
            dimension_names=["iteration"],
        )
    kw = codecs.array_kwargs(storage)
    arrays = []
    for info in infos:
        tg = g.create_group(info.name, attributes={"sgnlake_tensor": info.to_dict()})
        p = info.numel
        pc = min(storage.param_chunk, p)
        sgn = tg.create_array(
            "sgn",
            shape=(n_snapshots, n_minibatches, p),
            chunks=(1, n_minibatches, pc),
            dimension_names=["iteration", "minibatch", "param"],
            **kw,
        )
        grad = tg.create_array(
            "grad", shape=(n_snapshots, p), chunks=(1, pc), dimension_names=["iteration", "param"], **kw
        )
        weight = tg.create_array(
            "weight", shape=(n_snapshots, p), chunks=(1, pc), dimension_names=["iteration", "param"], **kw
        )
        arrays.append((info, sgn, grad, weight))
    for i in range(n_snapshots):
        for info, sgn, grad, weight in arrays:
            p = info.numel
            cols = (int(rng.integers(pool_params)) + np.arange(p)) % pool_params
            scale = np.float32(10 ** rng.uniform(-4, -2))
            slab = pool[:, cols] * scale
            if info.name == first_weight:  # (M, out * in): zero the dead input columns
                slab.reshape(n_minibatches, *info.shape)[:, :, dead] = 0
            sgn[i] = slab
            grad[i] = rng.normal(0, 1e-3, p).astype(np.float32)
            weight[i] = rng.normal(0, 0.05, p).astype(np.float32)
        meta = meta.replace(committed=i + 1)
        g.attrs["sgnlake_run"] = meta.to_dict()
    meta = meta.replace(status="complete")
    g.attrs["sgnlake_run"] = meta.to_dict()
    write_s = time.perf_counter() - t0
    return SynthLake(
        path=Path(path),
        run_id=run_id,
        n_snapshots=n_snapshots,
        n_minibatches=n_minibatches,
        n_params=n_params,
        sgn_bytes=per_snapshot * n_snapshots,
        stored_bytes=dir_bytes(Path(path)),
        write_s=write_s,
        sgn_stored_bytes=sum(dir_bytes(Path(path) / "runs" / run_id / i.name / "sgn") for i in infos),
    )


def drop_page_cache_hint() -> str:
    """A sentence on why read rates here are from the page cache."""
    return (
        "The lake fits in the page cache (RAM is larger than the lake), so read rates are "
        "decompression + zarr overhead, not disk speed; both sides of every ratio read the same way."
    )
