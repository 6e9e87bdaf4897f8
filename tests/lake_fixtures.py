"""A synthetic-lake writer using plain Zarr, following the lake contract exactly.

Independent of the collector: arrays are created with ``zarr.create_array`` and
filled with symmetric alpha-stable samples (Chambers-Mallows-Stuck in numpy) whose
tail index is known per parameter; only the attribute documents come from the
schema's dataclasses (they *are* the contract). Used by the analysis tests and by
the throughput benchmark (``write_lake`` streams one snapshot x tensor slab at a
time, so a lake of any size is written in bounded memory).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs as zc

from sgnlake.schema.meta import LakeMeta, RunConfig, RunMeta, Schedule, StorageSpec, TensorInfo

#: A small FCN-like model: (name, shape, kind, module, module_type).
SMALL_TENSORS: tuple[tuple[str, tuple[int, ...], str, str, str], ...] = (
    ("fc1.weight", (8, 12), "weight", "fc1", "Linear"),
    ("fc1.bias", (8,), "bias", "fc1", "Linear"),
    ("fc2.weight", (3, 8), "weight", "fc2", "Linear"),
    ("fc2.bias", (3,), "bias", "fc2", "Linear"),
)


@dataclass
class RunSpec:
    """What a synthetic run looks like.

    Parameters
    ----------
    run_id : str
        Name of the run.
    tensors : sequence of (name, shape, kind, module, module_type)
        Parameter tensors.
    n_minibatches : int
        M, the SGN samples per parameter and snapshot.
    iterations : sequence of int
        Iterations of the *allocated* snapshots (arrays have this length).
    committed : int or None
        Commit marker (None: all allocated snapshots). Snapshots past it are
        written with an obviously wrong constant so a reader that uses them fails.
    alpha_range : (float, float)
        Per-parameter tail indices are drawn uniformly from this range.
    dead : dict
        ``{tensor: [flat indices]}`` whose SGN is exactly zero (dead units).
    param_chunk : int
        Parameters per ``sgn`` chunk.
    batch_size, depth, width, lr, seed, model, status
        Recorded run configuration.
    chunk_separator : {"/", "."}
        Chunk-key separator of every array: ``"/"`` is Zarr's default nested
        ``c/<i>/<j>/...`` (lakes written before issue 11), ``"."`` the collector's flat
        ``c.<i>.<j>...``.
    """

    run_id: str
    tensors: Sequence[tuple[str, tuple[int, ...], str, str, str]] = SMALL_TENSORS
    n_minibatches: int = 40
    iterations: Sequence[int] = (0, 100, 200, 300)
    committed: int | None = None
    alpha_range: tuple[float, float] = (1.2, 1.95)
    dead: dict[str, list[int]] = field(default_factory=dict)
    param_chunk: int = 32
    batch_size: int = 50
    depth: int = 2
    width: int = 8
    lr: float = 0.1
    seed: int = 0
    model: str = "fcn"
    status: str = "complete"
    chunk_separator: str = "/"

    @property
    def n_committed(self) -> int:
        return len(self.iterations) if self.committed is None else self.committed


def stable_rvs(alpha: np.ndarray, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Symmetric alpha-stable samples (Chambers-Mallows-Stuck), ``alpha`` broadcast on the last axis."""
    v = rng.uniform(-np.pi / 2, np.pi / 2, size)
    w = rng.exponential(1.0, size)
    a = np.broadcast_to(alpha, size)
    x = np.sin(a * v) / np.cos(v) ** (1.0 / a) * (np.cos((1.0 - a) * v) / w) ** ((1.0 - a) / a)
    return x


def tensor_infos(spec: RunSpec) -> tuple[TensorInfo, ...]:
    """The spec's tensors as :class:`TensorInfo`."""
    return tuple(
        TensorInfo(name=n, shape=tuple(s), kind=k, module=m, module_type=mt)
        for n, s, k, m, mt in spec.tensors
    )


def run_meta(spec: RunSpec) -> RunMeta:
    """The run attributes document of a synthetic run."""
    its = [int(t) for t in spec.iterations]
    remainder = 7
    config = RunConfig(
        run_id=spec.run_id,
        model=spec.model,
        model_args={"depth": spec.depth, "width": spec.width, "bias": True},
        dataset="mnist5k",
        n_train=spec.n_minibatches * spec.batch_size + remainder,
        batch_size=spec.batch_size,
        lr=spec.lr,
        seed=spec.seed,
        iterations=max(its[-1], 1),
        shuffle=True,
        partition="permute",
        schedule=Schedule(kind="at", every=None, at=tuple(its)),
        engine="loop",
        device="cpu",
        storage=StorageSpec(codec="zstd", param_chunk=spec.param_chunk),
    )
    return RunMeta(
        config=config,
        tensors=tensor_infos(spec),
        status=spec.status,
        n_examples=spec.n_minibatches * spec.batch_size + remainder,
        n_minibatches=spec.n_minibatches,
        remainder=remainder,
        planned_iterations=tuple(its),
        total_steps=max(its[-1], 1),
        committed=spec.n_committed,
        engine="loop",
        device="cpu",
        created="2025-01-01T00:00:00+00:00",
    )


def create_lake(path: str) -> zarr.Group:
    """Create an empty lake root (root attrs + ``runs/``) with plain Zarr."""
    root = zarr.open_group(path, mode="w", zarr_format=3, attributes={"sgnlake": LakeMeta().to_dict()})
    root.create_group("runs")
    return root


def _float_array(group: zarr.Group, name: str, shape, chunks, dims, sep: str = "/") -> zarr.Array:
    return group.create_array(
        name,
        shape=shape,
        chunks=chunks,
        dtype="float32",
        fill_value=np.nan,
        compressors=[zc.ZstdCodec(level=1)],
        dimension_names=dims,
        chunk_key_encoding={"name": "default", "separator": sep},
    )


def param_alphas(spec: RunSpec) -> dict[str, np.ndarray]:
    """The true per-parameter tail index of every tensor (deterministic in the seed)."""
    rng = np.random.default_rng([spec.seed, 12345])
    lo, hi = spec.alpha_range
    return {n: rng.uniform(lo, hi, math.prod(s)) for n, s, *_ in spec.tensors}


def write_run(root: zarr.Group, spec: RunSpec) -> RunMeta:
    """Write one synthetic run into an opened lake root; return its metadata."""
    meta = run_meta(spec)
    g = root.create_group(f"runs/{spec.run_id}")
    n_alloc, m = len(spec.iterations), spec.n_minibatches
    keys = {"name": "default", "separator": spec.chunk_separator}
    it = g.create_array(
        "iteration", shape=(n_alloc,), dtype="int64", dimension_names=["iteration"], chunk_key_encoding=keys
    )
    it[:] = np.asarray(spec.iterations, dtype=np.int64)
    rng = np.random.default_rng(spec.seed)
    for name in ("loss", "accuracy"):
        a = g.create_array(
            name,
            shape=(n_alloc,),
            dtype="float64",
            fill_value=np.nan,
            dimension_names=["iteration"],
            chunk_key_encoding=keys,
        )
        a[:] = rng.uniform(0.1, 1.0, n_alloc)
    alphas = param_alphas(spec)
    for info in meta.tensors:
        tg = g.create_group(info.name, attributes={"sgnlake_tensor": info.to_dict()})
        p, pc = info.numel, min(spec.param_chunk, info.numel)
        sep = spec.chunk_separator
        sgn = _float_array(tg, "sgn", (n_alloc, m, p), (1, m, pc), ["iteration", "minibatch", "param"], sep)
        grad = _float_array(tg, "grad", (n_alloc, p), (1, pc), ["iteration", "param"], sep)
        weight = _float_array(tg, "weight", (n_alloc, p), (1, pc), ["iteration", "param"], sep)
        dead = np.asarray(spec.dead.get(info.name, []), dtype=int)
        for i in range(n_alloc):
            if i >= spec.n_committed:  # an unfinished write: garbage a reader must not use
                sgn[i] = np.full((m, p), 1e30, np.float32)
                continue
            x = stable_rvs(alphas[info.name], (m, p), rng)
            x = (x - x.mean(axis=0, keepdims=True)).astype(np.float32)
            x[:, dead] = 0.0
            sgn[i] = x
            grad[i] = rng.normal(size=p).astype(np.float32)
            weight[i] = rng.normal(size=p).astype(np.float32)
    g.attrs["sgnlake_run"] = meta.to_dict()
    return meta


def write_lake(path: str, runs: Iterable[RunSpec] | None = None) -> str:
    """Create a lake at ``path`` holding ``runs`` (default: one small run ``r1``); return the path."""
    root = create_lake(path)
    for spec in runs if runs is not None else [RunSpec("r1")]:
        write_run(root, spec)
    return str(path)


def grow_run(path: str, run_id: str, new_iterations: Sequence[int], seed: int = 99) -> None:
    """Append committed snapshots to a run, as a collector that resumed would (plain Zarr)."""
    root = zarr.open_group(path, mode="r+")
    g = root[f"runs/{run_id}"]
    meta = RunMeta.from_dict(g.attrs["sgnlake_run"])
    n0, k = meta.committed, len(new_iterations)
    rng = np.random.default_rng(seed)
    g["iteration"].resize((n0 + k,))
    g["iteration"][n0:] = np.asarray(new_iterations, dtype=np.int64)
    for name in ("loss", "accuracy"):
        g[name].resize((n0 + k,))
        g[name][n0:] = rng.uniform(0.1, 1.0, k)
    for info in meta.tensors:
        tg = g[info.name]
        for aname in ("sgn", "grad", "weight"):
            arr = tg[aname]
            arr.resize((n0 + k, *arr.shape[1:]))
            arr[n0:] = rng.standard_cauchy((k, *arr.shape[1:])).astype(np.float32)
    planned = tuple(sorted({*meta.planned_iterations, *map(int, new_iterations)}))
    new = meta.replace(committed=n0 + k, planned_iterations=planned)
    g.attrs["sgnlake_run"] = new.to_dict()


def read_sgn_plain(path: str, run_id: str, tensor: str) -> tuple[np.ndarray, np.ndarray]:
    """The committed SGN of one tensor and its iterations, read with plain Zarr (a test oracle)."""
    root = zarr.open_group(path, mode="r")
    g = root[f"runs/{run_id}"]
    n = int(g.attrs["sgnlake_run"]["committed"])
    return np.asarray(g[tensor]["sgn"][:n]), np.asarray(g["iteration"][:n])


def mohammadi_oracle(x: np.ndarray, k1: int, axis: int = 1) -> np.ndarray:
    """Mohammadi et al. (2015) on ``axis`` with an explicit block size ``k1`` (brute force, float64).

    ``1/alpha = (mean_i log|Y_i| - mean_j log|X_j|) / log k1`` with ``Y_i`` the sums of
    consecutive blocks of ``k1`` samples; the first ``k1 * (K // k1)`` samples are used.
    Parameters whose samples are all zero give NaN; an estimate of 1/alpha <= 0 (few,
    light-tailed samples) gives +inf, as documented for the sgnlake kernel.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    k2 = x.shape[-1] // k1
    x = x[..., : k1 * k2]
    y = x.reshape(*x.shape[:-1], k2, k1).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (np.log(np.abs(y)).mean(axis=-1) - np.log(np.abs(x)).mean(axis=-1)) / np.log(k1)
        out = np.where(inv > 0, 1.0 / inv, np.inf)
    out[np.all(x == 0, axis=-1)] = np.nan
    return out


def plain_attrs(path: str, node: str) -> dict[str, Any]:
    """Attributes of a node read with plain Zarr."""
    return dict(zarr.open_group(path, mode="r")[node].attrs)


def published(path: str, run: str, key: str) -> str:
    """Path of the published data group of result ``key`` of ``run``, read with plain Zarr.

    The key group's ``sgnlake_generation`` attribute names the generation; a result
    written before generations keeps its arrays in the key group itself.
    """
    base = f"results/{run}/{key}"
    gen = plain_attrs(path, base).get("sgnlake_generation")
    return base if gen is None else f"{base}/{gen}"


# ----------------------------------------------------------------------------- chunk keys (either layout)


def chunk_key(array_dir: str | Path, *index: int) -> str:
    """Key (relative to the array) of chunk ``index`` of the Zarr array in folder ``array_dir``.

    Asks the array's own metadata, so it is right for the nested (``c/2/0/0``) and
    the flat (``c.2.0.0``) chunk-key layouts alike.
    """
    return zarr.open_array(str(array_dir), mode="r").metadata.encode_chunk_key(tuple(index))


def chunk_path(array_dir: str | Path, *index: int) -> Path:
    """File of chunk ``index`` of the Zarr array in folder ``array_dir`` (see :func:`chunk_key`)."""
    return Path(array_dir) / chunk_key(array_dir, *index)


def chunk_coords(path: str | Path) -> tuple[int, ...]:
    """Chunk coordinates of the chunk file ``path``, decoded with its array's chunk-key encoding."""
    p = Path(path)
    for d in p.parents:
        if (d / "zarr.json").is_file():
            enc = zarr.open_array(str(d), mode="r").metadata.chunk_key_encoding
            key, sep = p.relative_to(d).as_posix(), enc.separator
            if enc.name == "default":
                key = key[2:] if key != "c" else ""
            return tuple(int(x) for x in key.split(sep)) if key else ()
    raise ValueError(f"{p} is not inside a Zarr array")


def chunk_pattern(array_path: str, index: int) -> str:
    """Regex for the store keys of the chunks of snapshot ``index`` of the array at ``array_path``.

    ``array_path`` is the array's key prefix in the store (``runs/r/fc1.weight/sgn``, not a
    regex); the pattern matches both layouts (``.../c/2/...`` and ``.../c.2....``).
    """
    return rf"{re.escape(array_path)}/c[./]{index}(?:[./]|$)"
