"""Study 11: which lossless codec for the default -- ratio and speed on real SGN.

The lossless default must keep a compression ratio >= 1.15 on real SGN while the
writer keeps up with the gradient engine (issue 11). This study computes real
snapshots as the collector does (``compute_snapshot`` on the embedded MNIST digits)
at several training stages (``--steps``: SGD steps from the seeded initialisation)
of LeNet and the FCN (b = 50, M = 100, the collector's setups) and of ResNet-20 and
a small ViT (``bench/models.py``'s architectures, on the same digits: b = 32, M = 20),
cuts each tensor's SGN into the lake's chunks (all minibatches x ``param_chunk``
parameters) and encodes and decodes every chunk with each candidate codec
(numcodecs, one thread), in interleaved repeats; it reports the ratio and the median
encode / decode rate of float32 SGN bytes. Every codec must give back the same bits
(checked).

The rule that picks the default zstd level (:func:`choose_level`): the fastest zstd
level (median encode rate relative to the current default, same run) whose ratio is
>= 1.15 + margin on every measured SGN of the rule's models (``--rule-models``), where
the margin is the largest change of one level's ratio across the training stages of
one model (how far a model's SGN moved while it trained), rounded up to 0.01.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import _common as C
import collector as CL
import numpy as np

#: The ratio the lossless default must keep on real SGN (issue 11).
FLOOR = 1.15
#: zstd levels compared (negative: zstd's fast mode; numcodecs passes them through).
ZSTD_LEVELS = (1, -1, -5, -7, -10, -15, -20, -30, -50)
#: Models beyond the collector's two: (json key, model, args, b, M), on the embedded digits.
EXTRA_MODELS: dict[str, tuple[str, str, dict[str, Any], int, int]] = {
    "ResNet-20 w16": ("resnet", "resnet", {"depth": 20, "width": 16}, 32, 20),
    "ViT d64": ("vit", "vit", {"patch": 4, "dim": 64, "depth": 2, "heads": 4}, 32, 20),
}


def zstd_label(level: int) -> str:
    """Row label of a zstd level; the current default (``StorageSpec``) is marked."""
    from sgnlake.schema.meta import DEFAULT_LEVELS

    return f"zstd {level}" + (" (default)" if level == DEFAULT_LEVELS["zstd"] else "")


def candidates() -> dict[str, Any]:
    """The codecs compared: zstd levels (:data:`ZSTD_LEVELS`), lz4, blosc with byte or bit shuffle."""
    from numcodecs import LZ4, Blosc, Zstd

    out: dict[str, Any] = {zstd_label(lv): Zstd(level=lv) for lv in ZSTD_LEVELS}
    out.update(
        {
            "lz4": LZ4(),
            "blosc lz4 + shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
            "blosc lz4 + bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
            "blosc lz4 c1 + shuffle": Blosc("lz4", 1, Blosc.SHUFFLE),
            "blosc zstd 1 + shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
        }
    )
    return out


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


def choose_level(
    results: dict[str, dict[int, dict[str, dict[str, float]]]], rule_models: list[str], floor: float = FLOOR
) -> dict[str, Any]:
    """Apply the default-level rule to measured results.

    Parameters
    ----------
    results : dict
        ``{model key: {step: {codec label: {"ratio", "encode_mb_s", ...}}}}`` as measured.
    rule_models : list of str
        Model keys whose SGN the rule covers (the others are reported only).
    floor : float
        The ratio the default must keep (:data:`FLOOR`).

    Returns
    -------
    dict
        ``margin`` (largest change of one zstd level's ratio across one model's stages, rounded up
        to 0.01), ``threshold`` (floor + margin), per level its ``min_ratio`` over the rule's SGN,
        ``min_ratio_all`` over every SGN, ``speed_vs_default`` (median over SGN of its encode rate
        over the default's, same run), ``max_bytes_vs_default`` (largest stored size over the default's)
        and ``passes``; ``level``: the fastest passing level (None if none passes), and ``default``: the
        level the rule makes the default (``level``, or the current default when none passes: the
        default changes only for a level that meets the rule).
    """
    from sgnlake.schema.meta import DEFAULT_LEVELS

    default = zstd_label(DEFAULT_LEVELS["zstd"])
    spread = 0.0
    for m in rule_models:
        for lv in ZSTD_LEVELS:
            ratios = [stage[zstd_label(lv)]["ratio"] for stage in results[m].values()]
            spread = max(spread, max(ratios) - min(ratios))
    margin = math.ceil(round(spread * 100, 6)) / 100
    threshold = floor + margin
    levels: dict[int, dict[str, Any]] = {}
    for lv in ZSTD_LEVELS:
        k = zstd_label(lv)
        rule = [s[k]["ratio"] for m in rule_models for s in results[m].values()]
        every = [s[k]["ratio"] for m in results for s in results[m].values()]
        speed = [
            s[k]["encode_mb_s"] / s[default]["encode_mb_s"] for m in results for s in results[m].values()
        ]
        more = [s[default]["ratio"] / s[k]["ratio"] for m in results for s in results[m].values()]
        levels[lv] = {
            "min_ratio": min(rule),
            "min_ratio_all": min(every),
            "speed_vs_default": statistics.median(speed),
            "max_bytes_vs_default": max(more),
            "passes": min(rule) >= threshold,
        }
    passing = [lv for lv in ZSTD_LEVELS if levels[lv]["passes"]]
    level = max(passing, key=lambda lv: levels[lv]["speed_vs_default"]) if passing else None
    return {
        "floor": floor,
        "spread": spread,
        "margin": margin,
        "threshold": threshold,
        "levels": levels,
        "level": level,
        "default": DEFAULT_LEVELS["zstd"] if level is None else level,
    }


def train(s: Any, steps: int, gen: Any) -> None:
    """``steps`` plain SGD steps on random minibatches (the model trains a little)."""
    import torch

    s.model.train()
    for _ in range(steps):
        idx = torch.randint(0, s.x.shape[0], (s.batch_size,), generator=gen)
        s.optimizer.zero_grad()
        torch.nn.functional.cross_entropy(s.model(s.x[idx]), s.y[idx]).backward()
        s.optimizer.step()


def extra_setup(label: str, smoke: bool) -> Any:
    """A :class:`collector.Setup` for ResNet / ViT on the embedded digits, with the model's CPU engine."""
    import torch

    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.models import build_model, model_spec
    from sgnlake.collect.staging import HostStaging

    _key, name, margs, b, m = EXTRA_MODELS[label]
    if smoke:
        margs = (
            {"depth": 8, "width": 4} if name == "resnet" else {"patch": 7, "dim": 16, "depth": 1, "heads": 2}
        )
        b, m = 4, 3
    data = load_dataset("mnist5k", n_train=b * m)
    torch.manual_seed(0)
    model = build_model(name, input_shape=data.input_shape, num_classes=data.num_classes, **margs)
    x, y = data.tensors("cpu")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    names = [n for n, _ in model.named_parameters()]
    return CL.Setup(
        label, name, margs, model_spec(name).cpu_engine, model, opt, x, y, names, 1, b,
        staging=HostStaging("cpu"),
    )  # fmt: skip


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--repeat", type=int, default=5, help="interleaved repeats (median reported)")
    p.add_argument(
        "--steps",
        default="0,50,500,2000",
        help="comma list: SGD steps before each snapshot (training stages)",
    )
    p.add_argument(
        "--extra-steps", default="0,50,200", help="the same for ResNet / ViT (their steps cost more)"
    )
    p.add_argument("--models", default=",".join([*CL.MODELS, *EXTRA_MODELS]), help="comma list of models")
    p.add_argument(
        "--rule-models",
        default="lenet,fcn",
        help="model keys the default-level rule covers (the others: reported)",
    )
    args = p.parse_args()
    if args.smoke:
        args.repeat, args.steps, args.extra_steps, args.models = (
            1,
            "0,2",
            "0,1",
            "FCN 784-64-64-64-10,ViT d64",
        )
        args.rule_models = "fcn"

    import numcodecs
    import torch

    from sgnlake.schema.meta import DEFAULT_LEVELS, StorageSpec

    torch.set_num_threads(1)
    numcodecs.blosc.set_nthreads(1)
    codecs = candidates()
    param_chunk = StorageSpec().param_chunk
    stages = {
        label: sorted(
            {int(x) for x in (args.extra_steps if label in EXTRA_MODELS else args.steps).split(",")}
        )
        for label in args.models.split(",")
    }
    table = C.Table(["model", "step", "codec", "ratio", "encode MB/s", "decode MB/s", "ratio >= 1.15"])
    results: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    shapes: dict[str, str] = {}
    zeros: dict[str, dict[int, float]] = {}  # share of SGN values that are exactly 0 (what the codecs find)
    for label in args.models.split(","):
        if label in EXTRA_MODELS:
            s, key = extra_setup(label, args.smoke), EXTRA_MODELS[label][0]
        else:
            s, key = CL.make_setup(label, "vmap", 500 if args.smoke else 5000, 50), CL.MODELS[label][0]
        n_mb = s.x.shape[0] // s.batch_size
        n_par = sum(q.numel() for q in s.model.parameters())
        shapes[label] = (
            f"b = {s.batch_size}, M = {n_mb}, {n_par:,} parameters, steps {', '.join(map(str, stages[label]))}"
        )
        gen = torch.Generator().manual_seed(0)
        done = 0
        results[key] = {}
        zeros[key] = {}
        for step in stages[label]:
            train(s, step - done, gen)
            done = step
            snap = CL.snapshot(s, step)
            snap.wait()
            pieces = chunks_of(snap.sgn, param_chunk)
            zeros[key][step] = sum(int(np.count_nonzero(q == 0)) for q in pieces) / sum(
                q.size for q in pieces
            )
            res = measure(pieces, codecs, args.repeat)
            snap.release()
            results[key][step] = res
            for k, v in res.items():
                table.add(
                    label,
                    step,
                    k,
                    v["ratio"],
                    v["encode_mb_s"],
                    v["decode_mb_s"],
                    "yes" if v["ratio"] >= FLOOR else "no",
                )
    rule_models = [m for m in args.rule_models.split(",") if m in results]
    rule = choose_level(results, rule_models)
    summary = C.Table(
        [
            "zstd level",
            f"min ratio ({', '.join(rule_models)})",
            "min ratio (every SGN)",
            "encode rate / default's (median)",
            "stored bytes / default's (max)",
            f"ratio >= {rule['threshold']:.2f}",
        ]
    )
    for lv, v in rule["levels"].items():
        summary.add(
            zstd_label(lv),
            v["min_ratio"],
            v["min_ratio_all"],
            v["speed_vs_default"],
            v["max_bytes_vs_default"],
            v["passes"],
        )
    default = zstd_label(DEFAULT_LEVELS["zstd"])
    zero_table = C.Table(["model", "step", "SGN values exactly 0", f"ratio, {default}", "ratio, zstd 1"])
    for m, v in results.items():
        for st, r in v.items():
            zero_table.add(m, st, zeros[m][st], r[default]["ratio"], r[zstd_label(1)]["ratio"])
    pick = (
        f"no zstd level, so the default stays zstd {rule['default']} (it changes only for a level that meets the rule)"
        if rule["level"] is None
        else f"**zstd {rule['level']}** (current default: zstd {DEFAULT_LEVELS['zstd']})"
    )
    verdict = (
        f"Rule: the fastest zstd level whose ratio is >= {FLOOR} + margin on every measured SGN of "
        f"{', '.join(rule_models)} (every stage); margin = the largest change of one level's ratio across one "
        f"model's training stages ({rule['spread']:.3f}, rounded up: {rule['margin']:.2f}), so threshold "
        f"{rule['threshold']:.2f}. It picks {pick}."
    )
    intro = (
        f"Real snapshots (`compute_snapshot`, embedded MNIST digits, lr 0.1 SGD from the seeded initialisation) "
        f"of each model after several training steps ({'; '.join(f'{k}: {v}' for k, v in shapes.items())}); "
        f"SGN cut into the lake's chunks (M x {param_chunk} parameters), each codec through numcodecs on one thread "
        f"(blosc set to 1 thread); {args.repeat} interleaved repeats, medians. MB/s are of float32 SGN bytes; "
        "every codec gave back the same bits (checked). The lake adds a crc32c (4 bytes) to each chunk whatever the codec."
    )
    metrics: dict[str, Any] = {
        "sgn": {m: {str(st): r for st, r in v.items()} for m, v in results.items()},
        "zero_share": {m: {str(st): z for st, z in v.items()} for m, v in zeros.items()},
        "rule": {**rule, "levels": {str(k): v for k, v in rule["levels"].items()}, "models": rule_models},
        "default_level": DEFAULT_LEVELS["zstd"],
    }
    C.write_report(
        args,
        "codecs",
        "Study 11: lossless codec for the default (real SGN)",
        [
            intro,
            verdict,
            summary.markdown(),
            "The ratio goes with the share of SGN values that are exactly 0 (weights of inputs that are 0 in "
            "every image, dead ReLU units); SGN without them (ResNet, ViT) does not compress at negative levels.",
            zero_table.markdown(),
            table.markdown(),
        ],
        metrics,
    )


if __name__ == "__main__":
    main()
