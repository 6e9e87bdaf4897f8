"""Study 7: cost of the crc32c checksum on SGN chunks, on write and on read.

Every array sgnlake creates ends its codec chain with Zarr's ``crc32c`` codec
(``sgnlake.schema.codecs.checksum``). This study writes the same heavy-tailed
float32 SGN (alpha-stable samples, the collector's chunking: one snapshot x all
minibatches x ``param_chunk`` parameters) into two local Zarr arrays, the default
codec chain with and without the checksum, in interleaved repeats, and reads them
back; it reports medians and the ratio with/without. It also checks that both
arrays return the same values and that the checksum finds a flipped bit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sgnlake.schema.codecs import compressors  # noqa: E402
from sgnlake.schema.meta import StorageSpec  # noqa: E402


def make_sgn(n: int, m: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(1.2, 2.0, p)
    return (1e-3 * C.stable_rvs(alpha, (n, m, p), rng)).astype(np.float32)


def create(path: Path, shape: tuple[int, int, int], chunk: int, with_crc: bool) -> zarr.Array:
    codecs = compressors(StorageSpec())
    if not with_crc:
        codecs = [c for c in codecs if type(c).__name__ != "Crc32cCodec"]
    return zarr.create_array(
        str(path), shape=shape, chunks=(1, shape[1], chunk), dtype="float32", compressors=codecs,
        fill_value=np.nan, overwrite=True,
    )  # fmt: skip


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--repeat", type=int, default=5, help="interleaved write/read repeats (median reported)")
    args = p.parse_args()
    n, m, params, chunk = (16, 100, 32768, 16384) if not args.smoke else (2, 20, 4096, 2048)
    if args.smoke:
        args.repeat = 2
    work = C.scratch(args, "checksum")
    sgn = make_sgn(n, m, params)
    raw = sgn.nbytes
    times: dict[tuple[bool, str], list[float]] = {
        (c, k): [] for c in (False, True) for k in ("write", "read")
    }
    sizes: dict[bool, int] = {}
    try:
        for r in range(args.repeat):
            for with_crc in (False, True) if r % 2 == 0 else (True, False):  # interleaved, alternating order
                path = work / f"{'crc' if with_crc else 'plain'}.zarr"
                arr = create(path, sgn.shape, chunk, with_crc)
                dt, _ = C.timed(lambda arr=arr: arr.__setitem__(slice(None), sgn))
                times[(with_crc, "write")].append(dt)
                back = zarr.open_array(str(path), mode="r")
                dt, got = C.timed(lambda back=back: back[:])
                times[(with_crc, "read")].append(dt)
                assert np.array_equal(got, sgn), "the array read back differs"
                sizes[with_crc] = C.dir_bytes(path)
        # a flipped bit in one chunk: found with the checksum (ValueError), silent or not without
        found = {}
        for with_crc in (False, True):
            path = work / f"{'crc' if with_crc else 'plain'}.zarr"
            f = next(q for q in sorted((path / "c").rglob("*")) if q.is_file())
            b = bytearray(f.read_bytes())
            b[len(b) // 2] ^= 0x10
            f.write_bytes(bytes(b))
            try:
                got = zarr.open_array(str(path), mode="r")[0]
                found[with_crc] = "silently changed" if not np.array_equal(got, sgn[0]) else "unchanged"
            except Exception as e:  # noqa: BLE001 - any decoding error means "detected"
                found[with_crc] = f"detected ({type(e).__name__})"
    finally:
        C.cleanup(args, work)
    med = {k: C.median(v) for k, v in times.items()}
    t = C.Table(["codec chain", "write MB/s", "read MB/s", "stored bytes", "flipped bit"])
    for with_crc in (False, True):
        t.add(
            "zstd(1) + crc32c" if with_crc else "zstd(1)",
            raw / med[(with_crc, "write")] / 1e6,
            raw / med[(with_crc, "read")] / 1e6,
            sizes[with_crc],
            found[with_crc],
        )
    wr = med[(True, "write")] / med[(False, "write")]
    rd = med[(True, "read")] / med[(False, "read")]
    summary = (
        f"{n} snapshots x {m} minibatches x {params} parameters of float32 SGN ({raw / 1e6:.0f} MB raw), "
        f"chunks of 1 x {m} x {chunk}; medians of {args.repeat} interleaved repeats. Time with the "
        f"checksum / without: **write x{wr:.3f}, read x{rd:.3f}**; stored bytes +"
        f"{(sizes[True] - sizes[False]) / sizes[False] * 100:.3f}% (4 bytes a chunk)."
    )
    metrics = {
        "write_ratio": wr,
        "read_ratio": rd,
        "sizes": {str(k): v for k, v in sizes.items()},
        "flipped": {str(k): v for k, v in found.items()},
        "raw_bytes": raw,
    }
    C.write_report(
        args, "checksum", "Study 7: cost of the crc32c chunk checksum", [t.markdown(), summary], metrics
    )


if __name__ == "__main__":
    main()
