"""Study 6: how the cost of study 3 (alpha over a lake) grows with the lake size.

For each size (default 1, 2 and 4 GB of float32 SGN) a synthetic lake is written,
its raw read time and ``compute_alpha`` time are measured as in
``bench/alpha_throughput.py`` (threaded scheduler by default), and the lake is
deleted before the next one. Reports the times, the rates, and the exponent of
a power-law fit ``time ~ size^k`` (k = 1: linear).

    .venv/bin/python bench/scaling.py                  # 1, 2, 4 GB (~3 min)
    .venv/bin/python bench/scaling.py --sizes 1,2      # fewer points
    .venv/bin/python bench/scaling.py --smoke
"""

from __future__ import annotations

import math

import _common as C
import numpy as np
from alpha_throughput import measure


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--sizes", default="1,2,4", help="comma list of lake sizes in GB")
    p.add_argument("--workers", type=int, default=0, help="0 = threads, N = LocalCluster of N workers")
    p.add_argument("--repeat", type=int, default=1, help="timings per size (best is reported)")
    args = p.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    if args.smoke:
        sizes = [1.0, 2.0]
    work = C.scratch(args, "scaling")
    C.check_disk(work, max(sizes) * 1.1)

    rows = []
    for size in sizes:
        path = work / f"lake_{size:g}gb"
        try:
            if args.smoke:
                lake = C.write_synthetic_lake(
                    path, n_snapshots=int(size) * 2, tensors=C.SMOKE_TENSORS, n_minibatches=40
                )
            else:
                lake = C.write_synthetic_lake(path, target_gb=size)
            res = measure(str(lake.path), lake.run_id, args.workers, args.repeat)
        finally:
            C.cleanup(args, path)
        rows.append((size, lake, min(res["raw"]), min(res["alpha"])))
    C.cleanup(args, work)

    t = C.Table(
        [
            "lake (GB)",
            "snapshots",
            "param-snapshots (M)",
            "raw read (s)",
            "alpha (s)",
            "alpha (M param-snap/s)",
            "alpha / raw rate",
            "alpha s per GB",
        ]
    )
    for _size, lake, raw, alpha in rows:
        gb = lake.sgn_bytes / 1e9
        t.add(
            f"{gb:.2f}",
            lake.n_snapshots,
            lake.param_snapshots / 1e6,
            raw,
            alpha,
            lake.param_snapshots / alpha / 1e6,
            raw / alpha,
            alpha / gb,
        )
    x = np.log([r[1].sgn_bytes for r in rows])
    k_alpha = float(np.polyfit(x, np.log([r[3] for r in rows]), 1)[0]) if len(rows) > 1 else math.nan
    k_raw = float(np.polyfit(x, np.log([r[2] for r in rows]), 1)[0]) if len(rows) > 1 else math.nan
    mode = "threaded scheduler" if not args.workers else f"LocalCluster of {args.workers} workers"
    verdict = (
        f"Power-law fit time ~ size^k over {len(rows)} sizes ({mode}): alpha k = {k_alpha:.2f}, "
        f"raw read k = {k_raw:.2f} (k = 1 is linear: constant cost per GB)."
    )
    C.write_report(
        args,
        "scaling",
        "Study 6: alpha cost against lake size",
        [
            verdict,
            t.markdown(),
            C.drop_page_cache_hint()
            + " Each size is one timing on a 2-core machine shared with other engineers: "
            "expect +-20% per point.",
        ],
        {
            "sizes_bytes": [r[1].sgn_bytes for r in rows],
            "raw_s": [r[2] for r in rows],
            "alpha_s": [r[3] for r in rows],
            "k_alpha": k_alpha,
            "k_raw": k_raw,
        },
    )


if __name__ == "__main__":
    main()
