"""Three questions a researcher asks of an SGN lake, answered with the sgnlake API.

1. How does the median tail index alpha of each layer evolve over training (one run)?
2. What does the SGN of one parameter look like against Gaussian and alpha-stable fits?
3. How does alpha depend on the batch size across runs?

Usage (after ``sgnlake demo``, which writes sgnlake-demo/lake)::

    python examples/alpha_questions.py [LAKE] [OUT_DIR]

Alpha is computed and stored in the lake if it is not there yet (``sgnlake alpha LAKE``
does the same from the shell). Figures go to OUT_DIR (default: the current folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from sgnlake.analyze import open_lake
from sgnlake.analyze.kernels import mcculloch


def layer_alpha_over_iterations(lake, run: str):
    """Median alpha per layer (module) at every snapshot of ``run``: a wide table."""
    s = lake.summary(run, by="module")  # long table: run_id, iteration, group (layer), median, ...
    return s.pivot(index="iteration", columns="group", values="median")


def sgn_with_fits(lake, run: str, tensor: str, index: int, iteration: int | None = None):
    """SGN samples of ``tensor[index]`` (flat index) at one snapshot, with Gaussian and stable fits."""
    if iteration is None:
        iteration = int(lake.iterations(run)[-1])
    x = lake.sgn(run, tensor, iterations=[iteration], params=[index]).values[0, :, 0].astype(np.float64)
    gauss = stats.norm.fit(x)  # (loc, scale)
    stable = np.asarray(mcculloch(x)).reshape(-1)[:4]  # alpha, beta, scale, loc (scipy S1)
    return x, gauss, stable, iteration


def alpha_against_batch_size(lake):
    """Median alpha over all parameters at each run's last snapshot, with its batch size."""
    s = lake.summary(by="model")  # one row per (run, iteration); config columns included
    last = s.sort_values("iteration").groupby("run_id").tail(1)
    return last[["run_id", "model", "batch_size", "iteration", "median"]].sort_values(["model", "batch_size"])


def main(lake_path: str = "sgnlake-demo/lake", out_dir: str = ".") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lake = open_lake(lake_path)
    lake.compute_alpha(progress=False)  # a no-op when alpha is already stored
    run = lake.run_ids[0]

    # 1. median alpha per layer over iterations, one run
    table = layer_alpha_over_iterations(lake, run)
    print(f"median alpha per layer, run {run}:\n{table.round(3)}\n")
    ax = table.plot(marker="o", title=f"{run}: median α per layer")
    ax.set_ylabel("median α")
    ax.figure.savefig(out / "layer_alpha.png", dpi=80)
    plt.close(ax.figure)

    # 2. one parameter's SGN against Gaussian and alpha-stable fits
    tensors = lake.tensors(run)
    tensor = tensors.index[0]
    x, (mu, sigma), (alpha, beta, scale, loc), it = sgn_with_fits(lake, run, tensor, 0)
    print(f"{tensor}[0] at iteration {it}: Gaussian mu={mu:.3g} sigma={sigma:.3g}; "
          f"stable alpha={alpha:.2f} beta={beta:.2f} scale={scale:.3g} loc={loc:.3g}")  # fmt: skip
    fig, ax = plt.subplots()
    ax.hist(x, bins=30, density=True, alpha=0.5, label="SGN")
    grid = np.linspace(x.min(), x.max(), 100)
    ax.plot(grid, stats.norm.pdf(grid, mu, sigma), label="Gaussian fit")
    ax.plot(
        grid,
        stats.levy_stable.pdf(grid, alpha, beta, loc=loc, scale=scale),
        label=f"stable fit α={alpha:.2f}",
    )
    ax.legend()
    fig.savefig(out / "sgn_fits.png", dpi=80)
    plt.close(fig)

    # 3. alpha against batch size across runs
    by_b = alpha_against_batch_size(lake)
    print(f"\nmedian alpha at the last snapshot against batch size:\n{by_b.to_string(index=False)}")
    fig, ax = plt.subplots()
    for model, g in by_b.groupby("model"):
        ax.plot(g["batch_size"], g["median"], marker="o", label=model)
    ax.set_xlabel("batch size")
    ax.set_ylabel("median α (last snapshot)")
    ax.legend()
    fig.savefig(out / "alpha_vs_batch_size.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main(*sys.argv[1:3])
