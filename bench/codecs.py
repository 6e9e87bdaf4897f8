"""Study 11: which lossless codec for the default -- ratio and speed on real SGN.

The lossless default must keep a compression ratio >= 1.15 on real SGN while the
writer keeps up with the gradient engine (issue 11). This study computes one real
snapshot per model as the collector does (embedded MNIST subset, b = 50, M = 100,
after ``--steps`` SGD steps from the seeded initialisation), cuts each tensor's SGN
into the lake's chunks (all minibatches x ``param_chunk`` parameters) and encodes
and decodes every chunk with each candidate codec (numcodecs, one thread), in
interleaved repeats; it reports the ratio and the median encode / decode rate of
float32 SGN bytes. Every codec must give back the same bits (checked).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import _common as C
import collector as CL
import numpy as np


def candidates() -> dict[str, Any]:
    """The codecs compared: zstd levels, lz4, blosc with byte or bit shuffle."""
    from numcodecs import LZ4, Blosc, Zstd

    return {
        "zstd -5 (default)": Zstd(level=-5),
        "zstd -1": Zstd(level=-1),
        "zstd 1": Zstd(level=1),
        "lz4": LZ4(),
        "blosc lz4 + shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
        "blosc lz4 + bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
        "blosc lz4 c1 + shuffle": Blosc("lz4", 1, Blosc.SHUFFLE),
        "blosc zstd 1 + shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
    }


def chunks_of(sgn: dict[str, np.ndarray], param_chunk: int) -> list[np.ndarray]:
    """The lake's SGN chunks of one snapshot: (M, param_chunk) C-contiguous pieces of every tensor."""
    out = []
    for a in sgn.values():
        flat = a.reshape(a.shape[0], -1)
        for s in range(0, flat.shape[1], param_chunk):
            out.append(np.ascontiguousarray(flat[:, s : s + param_chunk]))
    return out


def measure(pieces: list[np.ndarray], codecs: dict[str, Any], repeat: int) -> dict[str, dict[str, float]]:
    """Ratio and median encode / decode MB/s of every codec over ``pieces`` (interleaved repeats)."""
    raw = sum(p.nbytes for p in pieces)
    enc_t: dict[str, list[float]] = {k: [] for k in codecs}
    dec_t: dict[str, list[float]] = {k: [] for k in codecs}
    stored: dict[str, int] = {}
    for r in range(repeat):
        order = list(codecs) if r % 2 == 0 else list(reversed(codecs))
        for k in order:
            c = codecs[k]
            t0 = time.perf_counter()
            enc = [c.encode(p) for p in pieces]
            enc_t[k].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dec = [c.decode(e) for e in enc]
            dec_t[k].append(time.perf_counter() - t0)
            stored[k] = sum(len(e) for e in enc)
            for p, d in zip(pieces, dec, strict=True):  # lossless: the same bits back
                if np.frombuffer(d, dtype=np.uint32).tobytes() != p.view(np.uint32).tobytes():
                    raise AssertionError(f"{k} did not give back the same bits")
    return {
        k: {
            "ratio": raw / stored[k],
            "encode_mb_s": raw / statistics.median(enc_t[k]) / 1e6,
            "decode_mb_s": raw / statistics.median(dec_t[k]) / 1e6,
        }
        for k in codecs
    }


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--repeat", type=int, default=5, help="interleaved repeats (median reported)")
    p.add_argument("--steps", type=int, default=50, help="SGD steps before the snapshot (trained SGN)")
    p.add_argument("--models", default=",".join(CL.MODELS), help="comma list of models")
    args = p.parse_args()
    if args.smoke:
        args.repeat, args.steps, args.models = 1, 2, "FCN 784-64-64-64-10"

    import numcodecs
    import torch

    from sgnlake.schema.meta import StorageSpec

    torch.set_num_threads(1)
    numcodecs.blosc.set_nthreads(1)
    codecs = candidates()
    param_chunk = StorageSpec().param_chunk
    table = C.Table(["model", "codec", "ratio", "encode MB/s", "decode MB/s", "ratio >= 1.15"])
    metrics: dict[str, Any] = {}
    for label in args.models.split(","):
        s = CL.make_setup(label, "vmap", 500 if args.smoke else 5000, 50)
        gen = torch.Generator().manual_seed(0)
        for _ in range(
            args.steps
        ):  # plain SGD on random minibatches: SGN of a model that has trained a little
            idx = torch.randint(0, s.x.shape[0], (s.batch_size,), generator=gen)
            s.optimizer.zero_grad()
            torch.nn.functional.cross_entropy(s.model(s.x[idx]), s.y[idx]).backward()
            s.optimizer.step()
        snap = CL.snapshot(s, args.steps)
        snap.wait()
        pieces = chunks_of(snap.sgn, param_chunk)
        res = measure(pieces, codecs, args.repeat)
        snap.release()
        for k, v in res.items():
            table.add(
                label,
                k,
                v["ratio"],
                v["encode_mb_s"],
                v["decode_mb_s"],
                "yes" if v["ratio"] >= 1.15 else "no",
            )
        metrics[CL.MODELS[label][0]] = res
    intro = (
        f"One real snapshot per model after {args.steps} SGD steps (lr 0.1, b = 50, M = {5000 // 50 if not args.smoke else 10}), "
        f"SGN cut into the lake's chunks (M x {param_chunk} parameters), each codec through numcodecs on one thread "
        f"(blosc set to 1 thread); {args.repeat} interleaved repeats, medians. MB/s are of float32 SGN bytes. "
        "The lake adds a crc32c (4 bytes) to each chunk whatever the codec."
    )
    C.write_report(
        args,
        "codecs",
        "Study 11: lossless codec for the default (real SGN)",
        [intro, table.markdown()],
        metrics,
    )


if __name__ == "__main__":
    main()
