"""Study: seconds per SGN snapshot per engine for the ResNet and the vision transformer.

For each model (CIFAR-style ResNet-20 with BatchNorm; a small ViT) on random
CIFAR-shaped inputs, one snapshot (``compute_snapshot``: per-minibatch gradients of
``M`` minibatches of ``b`` examples, centring, host copy) is timed with the ``loop``
engine (one ``torch.autograd.grad`` per minibatch, the baseline) and the ``vmap``
engine (``torch.func``, BatchNorm buffers functional), in interleaved repeats;
the table gives the median seconds per snapshot and the ratio to the loop measured
in the same run. Every engine's SGN is checked against the loop's (max relative
difference), and the model's state and RNG are checked unchanged.

    .venv/bin/python bench/models.py                # CPU; ResNet-20 w16, ViT d64; ~minutes
    .venv/bin/python bench/models.py --device cuda  # on a GPU
    .venv/bin/python bench/models.py --smoke        # tiny widths, seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Table, median, parser, timed, write_report  # noqa: E402

from sgnlake.collect.models import build_model, n_parameters  # noqa: E402
from sgnlake.collect.probe import budget_and_chunk  # noqa: E402
from sgnlake.collect.snapshot import compute_snapshot  # noqa: E402

ENGINES = ("loop", "vmap")


def configs(smoke: bool) -> list[tuple[str, str, dict, tuple[int, ...], int, int]]:
    """(label, model, args, input shape, b, M) per row."""
    if smoke:
        return [
            ("resnet-8 w4", "resnet", {"depth": 8, "width": 4}, (3, 8, 8), 4, 3),
            ("vit d16", "vit", {"patch": 4, "dim": 16, "depth": 1, "heads": 2}, (3, 8, 8), 4, 3),
        ]
    return [
        ("resnet-20 w16", "resnet", {"depth": 20, "width": 16}, (3, 32, 32), 32, 8),
        ("resnet-20 w4", "resnet", {"depth": 20, "width": 4}, (3, 32, 32), 32, 8),
        ("vit d64", "vit", {"patch": 4, "dim": 64, "depth": 2, "heads": 4}, (3, 32, 32), 32, 8),
    ]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per engine (default 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    a = p.parse_args()
    repeats = 1 if a.smoke else a.repeats
    dev = torch.device(a.device)
    table = Table(
        ["model", "params", "b", "M", "engine", "vmap chunk", "s/snapshot", "x loop", "max rel diff"]
    )
    rows = []
    for label, name, args, shape, b, m in configs(a.smoke):
        torch.manual_seed(0)
        model = build_model(name, input_shape=shape, num_classes=10, **args).to(dev)
        x = torch.randn(b * m, *shape, device=dev)
        y = torch.randint(0, 10, (b * m,), device=dev)
        n_grad = n_parameters(model)
        chunks = {
            e: budget_and_chunk(
                model, shape, b, m, n_grad, engine=e, device=dev, configured_mb=512, auto_budget=False
            )[1]
            for e in ENGINES
        }
        before = {k: v.clone() for k, v in model.state_dict().items()}
        rng_before = torch.get_rng_state()

        def snap(engine: str, model=model, x=x, y=y, b=b, chunks=chunks):
            return compute_snapshot(
                model, x, y, index=0, iteration=0, batch_size=b, seed=0, partition_kind="fixed",
                engine=engine, chunk=chunks[engine],
            )  # fmt: skip

        ref = snap("loop")  # warm-up and the reference SGN
        diffs = {}
        for e in ENGINES:
            got = snap(e)
            diffs[e] = max(
                float((torch.as_tensor(got.sgn[n]) - torch.as_tensor(ref.sgn[n])).abs().max())
                / max(float(torch.as_tensor(ref.sgn[n]).abs().max()), 1e-30)
                for n in ref.sgn
            )
        times: dict[str, list[float]] = {e: [] for e in ENGINES}
        for _ in range(repeats):
            for e in ENGINES:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                s, _ = timed(lambda e=e: snap(e))
                times[e].append(s)
        unchanged = all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and torch.equal(
            torch.get_rng_state(), rng_before
        )
        base = median(times["loop"])
        for e in ENGINES:
            med = median(times[e])
            table.add(label, n_grad, b, m, e, chunks[e], med, base / med if med else float("nan"), diffs[e])
            rows.append(
                {
                    "model": label,
                    "engine": e,
                    "seconds": med,
                    "ratio_vs_loop": base / med if med else None,
                    "max_rel_diff_vs_loop": diffs[e],
                    "state_unchanged": unchanged,
                }
            )
    text = [
        f"Device: {dev}. Median of {repeats} interleaved repeat(s) of one snapshot; "
        "'x loop' is the loop's time over the engine's (same run).",
        table.markdown(),
    ]
    write_report(a, "models", "Study: SGN snapshot cost of ResNet and ViT per engine", text, {"rows": rows})


if __name__ == "__main__":
    main()
