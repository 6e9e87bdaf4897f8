"""Study 2: codecs -- compression ratio, write and read speed, and the effect on alpha.

Collects a real run with the collector (default: LeNet, b = 50, the embedded
MNIST subset, snapshots at iterations 0, 100, 200, 300; lossless zstd), then
re-encodes its SGN with each codec into its own lake (same chunking, plain
Zarr writes through ``sgnlake.schema.codecs``), and for each codec measures:

* compression ratio (float32 SGN bytes / stored ``sgn`` bytes),
* write and read MB/s (of float32 SGN: the information rate, also for float16),
* the alpha error: Mohammadi alpha per parameter (``Lake.compute_alpha``) on the
  lossy lake against the lossless one, median and 99th percentile of
  ``|alpha_lossy - alpha_lossless|`` over every parameter and snapshot, and
  parameters that become NaN (e.g. SGN flushed to zero by float16).

For scale, the estimator's own sampling spread at the same M is measured on
synthetic alpha-stable samples.

    .venv/bin/python bench/storage.py          # ~2 min
    .venv/bin/python bench/storage.py --smoke
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

#: A lossy setting is acceptable when its p99 alpha error is at most this and no parameter turns NaN.
ALPHA_TOL = 0.01


def codec_specs() -> dict[str, Any]:
    """The studied codecs, lossless first (the reference)."""
    from sgnlake.schema.meta import StorageSpec

    specs = {
        "zstd (lossless, default)": StorageSpec(),
        "blosc-zstd + shuffle (lossless)": StorageSpec(codec="blosc-zstd"),
    }
    for kb in (12, 10, 8, 6):
        specs[f"BitRound {kb} + blosc-zstd bitshuffle"] = StorageSpec(codec="blosc-zstd", keepbits=kb)
    specs["float16 + zstd"] = StorageSpec(dtype="float16")
    return specs


def collect_run(location: Path, smoke: bool) -> tuple[str, float]:
    """Collect the reference run with the collector (lossless); return its id and seconds."""
    from sgnlake.collect import collect
    from sgnlake.schema.meta import RunConfig, Schedule

    if smoke:
        cfg = RunConfig(
            run_id="fcn-smoke",
            model="fcn",
            model_args={"depth": 2, "width": 16},
            n_train=400,
            batch_size=20,
            iterations=2,
            schedule=Schedule(kind="every", every=1, include_start=True),
        )
    else:
        cfg = RunConfig(
            run_id="lenet-b50",
            model="lenet",
            batch_size=50,
            iterations=300,
            schedule=Schedule(kind="every", every=100, include_start=True),
        )
    t0 = time.perf_counter()
    collect(str(location), cfg, progress=False)
    return cfg.run_id, time.perf_counter() - t0


def load_sgn(location: Path, run: str) -> tuple[Any, dict[str, np.ndarray]]:
    """The run's metadata and its committed float32 SGN per tensor ``(S, M, P)`` (plain Zarr)."""
    import zarr

    from sgnlake.schema.meta import RunMeta

    g = zarr.open_group(str(location), mode="r")[f"runs/{run}"]
    meta = RunMeta.from_dict(g.attrs["sgnlake_run"])
    n = meta.committed
    return meta, {t.name: np.asarray(g[t.name]["sgn"][:n]) for t in meta.tensors}


def write_copy(src: Path, run: str, meta: Any, sgn: dict[str, np.ndarray], dst: Path, spec: Any) -> float:
    """Write the run into a new lake at ``dst`` with storage ``spec``; return seconds spent on ``sgn`` writes."""
    import dataclasses

    import zarr

    from sgnlake.schema import codecs
    from sgnlake.schema.meta import LakeMeta

    s_root = zarr.open_group(str(src), mode="r")[f"runs/{run}"]
    n = meta.committed
    new_meta = meta.replace(config=dataclasses.replace(meta.config, storage=spec))
    root = zarr.open_group(str(dst), mode="w", zarr_format=3, attributes={"sgnlake": LakeMeta().to_dict()})
    g = root.create_group("runs").create_group(run)
    for name in ("iteration", "loss", "accuracy"):
        a = s_root[name]
        g.create_array(name, data=np.asarray(a[:n]), dimension_names=["iteration"])
    kw = codecs.array_kwargs(spec)
    dtype = np.dtype(spec.dtype)
    seconds = 0.0
    for t in meta.tensors:
        tg = g.create_group(t.name, attributes={"sgnlake_tensor": t.to_dict()})
        pc = min(spec.param_chunk, t.numel)
        x = sgn[t.name]
        arr = tg.create_array(
            "sgn",
            shape=x.shape,
            chunks=(1, x.shape[1], pc),
            dimension_names=["iteration", "minibatch", "param"],
            **kw,
        )
        t0 = time.perf_counter()
        for i in range(n):
            arr[i] = x[i].astype(dtype, copy=False)
        seconds += time.perf_counter() - t0
        for name in ("grad", "weight"):
            tg.create_array(
                name,
                data=np.asarray(s_root[t.name][name][:n]).astype(dtype),
                chunks=(1, pc),
                dimension_names=["iteration", "param"],
                **{k: v for k, v in kw.items() if k != "dtype"},
            )
    g.attrs["sgnlake_run"] = new_meta.to_dict()
    return seconds


def read_seconds(location: Path, run: str, meta: Any) -> float:
    """Seconds to read every committed ``sgn`` snapshot back into memory (plain Zarr)."""
    import zarr

    g = zarr.open_group(str(location), mode="r")[f"runs/{run}"]
    t0 = time.perf_counter()
    for t in meta.tensors:
        arr = g[t.name]["sgn"]
        for i in range(meta.committed):
            arr[i]
    return time.perf_counter() - t0


def sgn_bytes_stored(location: Path, run: str, meta: Any) -> int:
    """Bytes on disk of the run's ``sgn`` arrays."""
    return sum(C.dir_bytes(location / "runs" / run / t.name / "sgn") for t in meta.tensors)


def alphas(location: Path, run: str) -> np.ndarray:
    """Mohammadi alpha ``(iteration, param)`` over all tensors, computed and stored by the analysis stage."""
    from sgnlake.analyze import open_lake

    lake = open_lake(str(location))
    lake.compute_alpha(progress=False)
    return np.asarray(lake.alpha(run).values)


def spec_text(spec: Any) -> str:
    """``StorageSpec(...)`` with the non-default fields of ``spec``."""
    fields = [f"codec={spec.codec!r}"]
    if spec.keepbits is not None:
        fields.append(f"keepbits={spec.keepbits}")
    if spec.dtype != "float32":
        fields.append(f"dtype={spec.dtype!r}")
    return f"StorageSpec({', '.join(fields)})"


def cli_text(spec: Any) -> str:
    """The ``sgnlake collect`` options selecting ``spec``."""
    opts = [f"--codec {spec.codec}"]
    if spec.keepbits is not None:
        opts.append(f"--keepbits {spec.keepbits}")
    if spec.dtype != "float32":
        opts.append(f"--dtype {spec.dtype}")
    return " ".join(opts)


def alpha_errors(ref: np.ndarray, a: np.ndarray) -> dict[str, float]:
    """Differences between lossy alpha ``a`` and lossless ``ref`` (same shape).

    ``*_tail``: over parameters whose lossless alpha is finite and <= 2 (heavy-tailed);
    ``*_all``: over all parameters finite in both; ``dinv``: on 1/alpha; ``nan_new``:
    finite -> NaN (dead, e.g. flushed to zero); ``inf_new``: finite -> +-inf.
    """

    def q(x: np.ndarray, pct: float) -> float:
        return float(np.percentile(x, pct)) if x.size else float("nan")

    both = np.isfinite(a) & np.isfinite(ref)
    tail = both & (ref <= 2)
    d_all = np.abs(a[both] - ref[both])
    d_tail = np.abs(a[tail] - ref[tail])
    with np.errstate(divide="ignore"):
        inv_ok = ~np.isnan(a) & ~np.isnan(ref)
        d_inv = np.abs(1 / a[inv_ok] - 1 / ref[inv_ok])
    return {
        "median_dalpha_tail": q(d_tail, 50),
        "p99_dalpha_tail": q(d_tail, 99),
        "max_dalpha_tail": float(d_tail.max()) if d_tail.size else float("nan"),
        "p99_dalpha_all": q(d_all, 99),
        "max_dalpha_all": float(d_all.max()) if d_all.size else float("nan"),
        "p99_dinv_all": q(d_inv, 99),
        "nan_new": int(np.sum(~np.isnan(ref) & np.isnan(a))),
        "inf_new": int(np.sum(np.isfinite(ref) & np.isinf(a))),
        "n": int(both.sum()),
        "n_tail": int(tail.sum()),
    }


def estimator_spread(m: int, n: int = 20000) -> float:
    """Sampling spread of Mohammadi alpha at alpha = 1.5 with ``m`` samples.

    Half the 16-84 percentile range (a robust standard deviation: at small ``m`` a few
    estimates with 1/alpha near 0 are huge and would dominate a plain std).
    """
    from sgnlake.analyze import kernels

    rng = np.random.default_rng(7)
    x = C.stable_rvs(np.full(n, 1.5), (m, n), rng).T
    a = kernels.mohammadi(x, kernels.DEFAULT_K1)
    lo, hi = np.percentile(a[~np.isnan(a)], [16, 84])
    return float(hi - lo) / 2


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--repeat", type=int, default=2, help="write/read timings per codec (best reported)")
    args = p.parse_args()
    if args.smoke:
        args.repeat = 1
    work = C.scratch(args, "storage")
    try:
        src = work / "lossless"
        run, collect_s = collect_run(src, args.smoke)
        meta, sgn = load_sgn(src, run)
        raw = sum(x.nbytes for x in sgn.values())
        rows = []
        ref_alpha = None
        specs = codec_specs()
        if args.smoke:  # one of each kind: lossless reference, BitRound, float16
            specs = {k: v for k, v in specs.items() if "default" in k or "BitRound 8" in k or "float16" in k}
        for i, (label, spec) in enumerate(specs.items()):
            writes, reads = [], []
            for r in range(args.repeat):
                dst = work / f"codec{i}_{r}"
                writes.append(write_copy(src, run, meta, sgn, dst, spec))
                reads.append(read_seconds(dst, run, meta))
                if r < args.repeat - 1:
                    C.cleanup(args, dst)
            stored = sgn_bytes_stored(dst, run, meta)
            a = alphas(dst, run)
            if ref_alpha is None:
                ref_alpha = a
            rows.append(
                {
                    "codec": label,
                    "spec": spec,
                    "ratio": raw / stored,
                    "write_mbs": raw / min(writes) / 1e6,
                    "read_mbs": raw / min(reads) / 1e6,
                    **alpha_errors(ref_alpha, a),
                }
            )
            C.cleanup(args, dst)
        spread = estimator_spread(meta.n_minibatches)
    finally:
        C.cleanup(args, work)

    t = C.Table(
        [
            "codec",
            "lossy",
            "compression ratio",
            "write MB/s",
            "read MB/s",
            "median abs(d alpha), alpha <= 2",
            "p99 abs(d alpha), alpha <= 2",
            "p99 abs(d 1/alpha), all",
            "p99 abs(d alpha), all",
            "turned NaN",
            "turned +-inf",
        ]
    )
    for r in rows:
        t.add(
            r["codec"],
            r["spec"].lossy,
            r["ratio"],
            r["write_mbs"],
            r["read_mbs"],
            r["median_dalpha_tail"],
            r["p99_dalpha_tail"],
            r["p99_dinv_all"],
            r["p99_dalpha_all"],
            r["nan_new"],
            r["inf_new"],
        )
    ok = [r for r in rows if r["spec"].lossy and r["p99_dalpha_tail"] <= ALPHA_TOL and r["nan_new"] == 0]
    best = max(ok, key=lambda r: r["ratio"]) if ok else None
    lossless = rows[0]
    if best is not None:
        spec = best["spec"]
        rec = (
            f"Recommended lossy setting: **{best['codec']}** (`{spec_text(spec)}`, "
            f"`sgnlake collect {cli_text(spec)}`): compression "
            f"x{best['ratio']:.2f} vs x{lossless['ratio']:.2f} lossless; alpha error on the heavy-tailed "
            f"parameters (lossless alpha <= 2): median {C.fmt(best['median_dalpha_tail'])}, p99 "
            f"{C.fmt(best['p99_dalpha_tail'])}; 1/alpha p99 {C.fmt(best['p99_dinv_all'])} over all; no "
            f"parameter turned NaN. It is the highest-compression setting with p99 <= {ALPHA_TOL} there. "
            f"For scale, the estimator's own sampling spread at M = {meta.n_minibatches} is "
            f"{spread:.3f} (half the 16-84% range of alpha at alpha = 1.5), {spread / max(best['p99_dalpha_tail'], 1e-12):.0f}x "
            "that p99 error."
        )
    else:
        rec = f"No lossy setting kept the p99 alpha error (alpha <= 2) <= {ALPHA_TOL} without NaNs."
    why = (
        "Large |d alpha| occur only where the lossless alpha is well above 2 (light tails: 1/alpha near "
        "0, so alpha = 1/(1/alpha) amplifies any change, and a 1/alpha crossing 0 turns alpha into "
        "+inf -- the `turned +-inf` column); the Y block sums of centred SGN also cancel, which "
        "magnifies rounding. On 1/alpha (the quantity to average) the error stays small for every "
        "BitRound setting. float16 flushes SGN below 6e-8 to zero: those parameters become dead (NaN)."
    )
    default = (
        "Default: keep lossless zstd. Lossless codecs gain little on heavy-tailed float32 SGN, but the "
        "lake's purpose is the tails, lossy storage cannot be undone, and BitRound is stored as the "
        "`numcodecs.bitround` codec that non-numcodecs Zarr readers cannot decode; offer the "
        "recommended setting as an opt-in for large sweeps where storage is the bottleneck."
    )
    C.write_report(
        args,
        "storage",
        "Study 2: storage codecs and their effect on alpha",
        [
            f"Run: `{run}` ({meta.config.model}, b = {meta.config.batch_size}, M = {meta.n_minibatches}, "
            f"{meta.committed} snapshots at iterations {list(meta.planned_iterations)}, "
            f"{sum(t.numel for t in meta.tensors):,} parameters; collected in {collect_s:.0f} s), "
            f"{raw / 1e6:.1f} MB of float32 SGN. alpha: Mohammadi (default K1 rule), "
            f"over {rows[0]['n']:,} parameter-snapshots. MB/s are of float32 SGN bytes, best of {args.repeat}.",
            t.markdown(),
            rec,
            why,
            default,
            "Timings on a 2-core machine shared with other engineers (+-30%); the lake is in the page "
            "cache, so MB/s measure codec + Zarr cost, not disk.",
        ],
        {
            "run": run,
            "estimator_spread": spread,
            "recommended": best["codec"] if best else None,
            "codecs": [
                {k: v for k, v in r.items() if k != "spec"} | {"lossy": r["spec"].lossy} for r in rows
            ],
        },
    )


if __name__ == "__main__":
    main()
