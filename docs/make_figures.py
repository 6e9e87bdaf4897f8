"""Regenerate ``docs/figures/*.png`` and the numbers quoted in ``docs/reproduction.md``.

Usage (from the repository root; about 10-15 minutes on 2 CPU cores)::

    python docs/make_figures.py [--work DIR] [--dpi 90]

Steps, each skipped or reused when already done (rerunning is cheap):

1. ``sgnlake sweep`` of the two small presets into ``WORK/fcn-small`` and
   ``WORK/lenet-small``, and of three seeds (0, 1, 2) of FCN d3-w32 and of LeNet
   into ``WORK/fcn-seeds`` and ``WORK/lenet-seeds`` (run-to-run spread);
2. ``sgnlake alpha`` on each lake (Mohammadi estimator, the paper's K1);
3. the report figures (:func:`sgnlake.analyze.report.build_report`, what
   ``sgnlake report`` runs) for the run subsets below, copied to ``docs/figures/``, and
   Figs 1 and 2 of reproduction.md drawn here (median and the paper's statistic, each
   with its 95% interval; ``--only-doc-figures`` draws only these);
4. the numbers behind the four findings (medians and the paper's mean with their 95%
   intervals, degenerate parameters left out and kept, counts) and the
   estimator's spread at each M (``sgnlake validate-estimators``), printed and
   written to ``WORK/numbers.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DOCS = Path(__file__).resolve().parent
FIGURES = DOCS / "figures"
SIZES = "25,33,50,100"  # M of the small presets: b = 200, 150, 100/50... on 5,000 examples


def cli(*args: str) -> None:
    """Run one ``sgnlake`` command (echoed), failing loudly."""
    cmd = [sys.executable, "-m", "sgnlake.cli", *args]
    print("$ sgnlake " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def collect(work: Path) -> dict[str, Path]:
    """Steps 1-2: the four lakes, collected and with alpha stored."""
    lakes = {name: work / name for name in ("fcn-small", "lenet-small", "fcn-seeds", "lenet-seeds")}
    cli("sweep", str(lakes["fcn-small"]), "--preset", "paper-fcn-small", "--no-progress")
    cli("sweep", str(lakes["lenet-small"]), "--preset", "paper-lenet-small", "--no-progress")
    seeds = ("--set", "grid.seed=[0, 1, 2]", "--no-progress")
    cli("sweep", str(lakes["fcn-seeds"]), "--preset", "paper-fcn-small", "--only", "fcn-d3-w32-*", *seeds)
    cli("sweep", str(lakes["lenet-seeds"]), "--preset", "paper-lenet-small", *seeds)
    for lake in lakes.values():
        cli("alpha", str(lake))
    return lakes


def typical_param(lake: object, run: str, tensor: str) -> str:
    """``TENSOR:INDEX`` of the parameter whose last-snapshot alpha is the tensor's median."""
    a = np.asarray(lake.alpha(run, tensor=tensor).isel(iteration=-1))  # type: ignore[attr-defined]
    ok = np.isfinite(a)
    idx = np.flatnonzero(ok)[np.argmin(np.abs(a[ok] - np.median(a[ok])))]
    return f"{tensor}:{int(idx)}"


def report(lake_path: Path, out: Path, dpi: int, **kwargs: object) -> dict[str, Path]:
    """Build a report; return its figures by relative path."""
    from sgnlake.analyze.report import build_report

    rep = build_report(str(lake_path), out, dpi=dpi, log=lambda m: print(m, flush=True), **kwargs)
    return {f.path: out / f.path for f in rep.figures}


def copy(figs: dict[str, Path], src: str, name: str) -> None:
    """Copy report figure ``src`` to ``docs/figures/name``."""
    if src not in figs:
        raise SystemExit(f"report did not draw {src}: drawn {sorted(figs)[:8]} ...")
    FIGURES.mkdir(exist_ok=True)
    shrink(figs[src], FIGURES / name)
    print(f"  {name} <- {src} ({(FIGURES / name).stat().st_size / 1e3:.0f} kB)")


def shrink(src: Path, dst: Path, limit: int = 150_000) -> None:
    """Save ``src`` as a 256-colour PNG (plots lose nothing visible), scaled down if still over ``limit``."""
    from PIL import Image

    with Image.open(src) as im:
        rgb = im.convert("RGB")
    scale = 1.0
    while True:
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        img = rgb if scale == 1.0 else rgb.resize(size, Image.Resampling.LANCZOS)
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(dst, optimize=True)
        if dst.stat().st_size <= limit or scale < 0.5:
            return
        scale *= 0.85


def figures(lakes: dict[str, Path], work: Path, dpi: int) -> None:
    """Step 3: draw the reports and copy the figures used in reproduction.md."""
    from sgnlake.analyze import open_lake

    seeds = open_lake(str(lakes["fcn-seeds"]))
    param = typical_param(seeds, "fcn-d3-w32-b50-s0", "fc2.weight")
    f = report(lakes["fcn-seeds"], work / "report-fcn-seeds", dpi, param=param, iterations=[50, 300, 600])
    run = "runs/fcn-d3-w32-b50-s0"
    copy(f, f"{run}/fig03_sgn_gaussian.png", "fig03_05_fcn_sgn_gaussian.png")
    copy(f, f"{run}/fig08_sgn_stable.png", "fig08_09_fcn_sgn_stable.png")
    copy(f, f"{run}/pooled_vs_param.png", "pooled_vs_param_fcn.png")
    copy(f, f"{run}/fig13_layers.png", "fcn_layers_b50.png")

    f = report(lakes["fcn-small"], work / "report-fcn", dpi, pooled=False)
    for src in sorted(p for p in f if p.startswith("fig06_depth_width_")):
        b = _title_batch(work / "report-fcn" / "index.html", src)
        copy(f, src, f"fig06_07_fcn_depth_width_b{b}.png")
    copy(f, "alpha_vs_batch_size.png", "fcn_alpha_vs_batch_size.png")

    f = report(lakes["lenet-small"], work / "report-lenet", dpi, iterations=[10, 150, 300])
    copy(f, "runs/lenet-b50-s0/fig10_alpha_hist.png", "fig10_12_lenet_alpha_hist_b50.png")
    for b in (50, 150, 200):
        copy(f, f"runs/lenet-b{b}-s0/fig13_layers.png", f"fig13_15_lenet_layers_b{b}.png")
    copy(f, "runs/lenet-b50-s0/fig16_alpha_hist_layers.png", "fig16_lenet_alpha_hist_layers_b50.png")
    copy(f, "runs/lenet-b50-s0/pooled_vs_param.png", "pooled_vs_param_lenet.png")

    f = report(lakes["lenet-seeds"], work / "report-lenet-seeds", dpi, pooled=False)
    copy(f, "fig02_batch_size_1.png", "lenet_batch_size_seeds.png")


def doc_figures(lakes: dict[str, Path], work: Path, dpi: int) -> None:
    """Figs 1 and 2 of reproduction.md: the median and the paper's statistic, each with its 95% interval.

    Degenerate parameters are left out (the summaries' default); the same statistic with them
    kept is drawn dashed grey beside it.
    """
    from sgnlake.analyze import open_lake, plots

    lake = open_lake(str(lakes["fcn-seeds"]))
    run = "fcn-d3-w32-b50-s0"
    out = lake.summary(run, by="model")
    kept = lake.summary(run, by="model", include_sparse=True)
    m = int(lake.meta(run).n_minibatches)
    fig, axes = plots.new_figure(1, 2, size=(14.0, 4.8))
    for ax, stat, what in zip(
        axes, ("median", "paper_mean"), ("median α", "the paper's mean α"), strict=True
    ):
        plots.plot_alpha_over_iterations(
            ax, out, center=stat, secondary=None, band=stat == "median", m=m,
            title=f"Fig 1, {run} (b = 50, M = {m}): {what} over parameters",
        )  # fmt: skip
        ax.plot(kept["iteration"], kept[stat], ls="--", color="0.4", lw=1, label=f"{what}, degenerate kept")
        for i, seed in enumerate(("fcn-d3-w32-b50-s1", "fcn-d3-w32-b50-s2")):
            other = lake.summary(seed, by="model").sort_values("iteration")
            ax.plot(
                other["iteration"], other[stat], color="tab:blue", lw=0.7, alpha=0.5,
                label="seeds 1, 2 (same configuration)" if i == 0 else None,
            )  # fmt: skip
        ax.legend(loc="upper right" if stat == "median" else "best", fontsize=8)
    _save_doc(fig, work, "fig01_fcn_alpha_iterations.png", dpi)

    table = lake.summary(by="model")
    bm = _bm(table)
    fig, axes = plots.new_figure(1, 2, size=(14.0, 4.8))
    for ax, stat, what in zip(axes, ("median", "paper_mean"), ("median α", "paper's mean α"), strict=True):
        plots.plot_alpha_by_batch_size(
            ax, table[table.seed == 0], y=stat,
            title=f"Fig 2, FCN d3-w32, degenerate parameters left out: {what} per batch size (M = "
            + "/".join(str(mm) for _, mm in bm) + " for b = " + "/".join(str(b) for b, _ in bm) + ")",
        )  # fmt: skip
        color = {ln.get_label(): ln.get_color() for ln in ax.get_lines()}
        for (b, _seed), sub in table[table.seed != 0].groupby(["batch_size", "seed"]):
            sub = sub.sort_values("iteration")
            ax.plot(sub["iteration"], sub[stat], color=color[f"batch size = {b}"], lw=0.7, alpha=0.6)
        ax.set_ylabel(f"{what} over parameters")
        ax.legend(
            fontsize=8, loc="best", title="seed 0 with 95% intervals; seeds 1, 2 thin", title_fontsize=8
        )
    _save_doc(fig, work, "fig02_fcn_batch_size_seeds.png", dpi)


def _save_doc(fig: object, work: Path, name: str, dpi: int) -> None:
    from sgnlake.analyze import plots

    path = work / name
    plots.fit_titles(fig)
    plots.save_figure(fig, path, dpi=dpi)
    FIGURES.mkdir(exist_ok=True)
    shrink(path, FIGURES / name)
    print(f"  {name} ({(FIGURES / name).stat().st_size / 1e3:.0f} kB)")


def _title_batch(index: Path, src: str) -> str:
    """The batch size in the caption of figure ``src`` of a report page."""
    import re

    text = index.read_text(encoding="utf-8")
    m = re.search(re.escape(src) + r'" alt="[^"]*?batch_size=(\d+)', text)
    return m.group(1) if m else src.split("_")[-1].split(".")[0]


# ----------------------------------------------------------------------------- numbers


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3f}"


def _ci(row: pd.Series, stat: str = "median") -> str:
    """``1.575 [1.564, 1.586]``: a statistic with its 95% interval (``no interval`` where withheld)."""
    lo, hi = row.get(f"{stat}_lo", np.nan), row.get(f"{stat}_hi", np.nan)
    ci = f"[{_fmt(lo)}, {_fmt(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "(no interval)"
    return f"{_fmt(row[stat])} {ci}"


def _below(a: pd.Series, b: pd.Series, stat: str = "median") -> bool:
    """``a``'s 95% interval lies entirely below ``b``'s."""
    return bool(a[f"{stat}_hi"] < b[f"{stat}_lo"])


def findings(lakes: dict[str, Path]) -> str:
    """The four findings with 95% intervals (degenerate parameters left out; kept beside)."""
    from sgnlake.analyze import open_lake

    def summ(name: str, by: str = "model", kept: bool = False) -> pd.DataFrame:
        return open_lake(str(lakes[name])).summary(by=by, include_sparse=kept)

    out = ["## Findings with 95% intervals (degenerate parameters left out; 'kept' = with them)\n"]
    # F1
    out.append("### F1 alpha over iterations: first vs last snapshot\n")
    out.append(
        "| lake | runs | median: last interval below first | paper's mean: below / intervals at both ends |"
    )
    out.append("|---|---|---|---|")
    for name in ("fcn-small", "fcn-seeds", "lenet-small", "lenet-seeds"):
        s = summ(name).sort_values("iteration").groupby("run_id")
        first, last = s.first(), s.last()
        med = sum(_below(last.loc[r], first.loc[r]) for r in first.index)
        both = [
            r
            for r in first.index
            if np.isfinite(first.loc[r, "paper_mean_lo"]) and np.isfinite(last.loc[r, "paper_mean_lo"])
        ]
        pm = sum(_below(last.loc[r], first.loc[r], "paper_mean") for r in both)
        out.append(f"| {name} | {len(first)} | {med} | {pm} / {len(both)} |")
    out.append("")
    for name in ("fcn-seeds", "lenet-seeds"):
        s, k = summ(name), summ(name, kept=True)
        out.append(
            f"{name}, per run: first -> last snapshot, median [95%] (kept) ; paper's mean [95%] (kept)\n"
        )
        for r, g in s.groupby("run_id"):
            g = g.sort_values("iteration")
            kg = k[k.run_id == r].sort_values("iteration")
            f, la, kf, kl = g.iloc[0], g.iloc[-1], kg.iloc[0], kg.iloc[-1]
            out.append(
                f"- {r} (M={int(f.n_minibatches)}), t={int(f.iteration)} -> {int(la.iteration)}: median {_ci(f)} -> {_ci(la)} "
                f"(kept {_fmt(kf['median'])} -> {_fmt(kl['median'])}); paper's mean {_ci(f, 'paper_mean')} -> "
                f"{_ci(la, 'paper_mean')} (kept {_fmt(kf['paper_mean'])} -> {_fmt(kl['paper_mean'])}); "
                f"paper's mean has an interval at {int(g['paper_mean_lo'].notna().sum())} of {len(g)} snapshots"
            )
        out.append("")
    # F2
    for name, its in (("fcn-seeds", [100, 300, 600]), ("lenet-seeds", [70])):
        s, k = summ(name), summ(name, kept=True)
        out.append(
            f"### F2 batch size, {name}: seed 0 median [95%] / paper's mean [95%]; mean +- sd over seeds; kept\n"
        )
        for it in its:
            cells = []
            for b, m in _bm(s):
                sel = s[(s.iteration == it) & (s.batch_size == b)]
                ksel = k[(k.iteration == it) & (k.batch_size == b)]
                if sel.empty:
                    continue
                r0 = sel[sel.seed == 0].iloc[0]
                cells.append(
                    f"b={b} (M={m}): {_ci(r0)} / {_ci(r0, 'paper_mean')}; seeds {sel['median'].mean():.3f} +- "
                    f"{sel['median'].std(ddof=1):.3f}; kept {ksel['median'].mean():.3f}"
                )
            out.append(f"- t={it}: " + " | ".join(cells))
        out.append("")
    s = summ("fcn-small")
    last = s[s.iteration == s.iteration.max()].set_index(["depth", "width", "batch_size"])
    pairs = [(d, w) for d, w, b in last.index if b == 50]
    sig = {k: 0 for k in ("50<200", "200<50", "50<100", "100<50", "100<200", "200<100")}
    for d, w in pairs:
        for a, b in ((50, 200), (50, 100), (100, 200)):
            sig[f"{a}<{b}"] += _below(last.loc[(d, w, a)], last.loc[(d, w, b)])
            sig[f"{b}<{a}"] += _below(last.loc[(d, w, b)], last.loc[(d, w, a)])
    out.append(
        f"fcn-small at t={int(s.iteration.max())}, {len(pairs)} (depth, width): median intervals disjoint with "
        + ", ".join(f"b{k} in {v}" for k, v in sig.items())
        + "\n"
    )
    # F3
    out.append("### F3 LeNet per layer, last snapshot: median [95%] (kept)\n")
    s, k = summ("lenet-seeds", "module"), summ("lenet-seeds", "module", kept=True)
    for r, g in s.groupby("run_id"):
        t = g.iteration.max()
        rows = g[g.iteration == t].set_index("group")
        krows = k[(k.run_id == r) & (k.iteration == t)].set_index("group")
        out.append(
            f"- {r} t={t}: "
            + "; ".join(f"{m} {_ci(rows.loc[m])} ({_fmt(krows.loc[m, 'median'])})" for m in rows.index)
        )
    s = summ("lenet-small", "module")
    n = conv_above = conv_above_sig = 0
    for (_, _), g in s.groupby(["run_id", "iteration"]):
        rows = g.set_index("group")
        n += 1
        conv_above += rows.loc[["conv1", "conv2"], "median"].min() > rows.loc[["fc1", "fc2"], "median"].max()
        conv_above_sig += (
            rows.loc[["conv1", "conv2"], "median_lo"].min() > rows.loc[["fc1", "fc2"], "median_hi"].max()
        )
    out.append(
        f"\nlenet-small, all {n} snapshots: both conv medians above both linear in {conv_above}; "
        f"with disjoint intervals (lowest conv interval above highest linear) in {conv_above_sig}\n"
    )
    # F4
    out.append("### F4 depth and width, fcn-small at the last snapshot: median [95%] (kept)\n")
    s, k = summ("fcn-small"), summ("fcn-small", kept=True)
    t = s.iteration.max()
    lt = s[s.iteration == t].set_index(["batch_size", "depth", "width"])
    kt = k[k.iteration == t].set_index(["batch_size", "depth", "width"])
    for b in sorted(lt.index.get_level_values(0).unique()):
        sub = lt.loc[b]
        ds, ws = (
            sorted(sub.index.get_level_values(0).unique()),
            sorted(sub.index.get_level_values(1).unique()),
        )
        out.append(
            f"- b={b}: "
            + "; ".join(
                f"d{d}w{w} {_ci(sub.loc[(d, w)])} ({_fmt(kt.loc[(b, d, w), 'median'])})"
                for d in ds
                for w in ws
            )
        )
        deep_up = sum(_below(sub.loc[(ds[0], w)], sub.loc[(ds[-1], w)]) for w in ws)
        deep_dn = sum(_below(sub.loc[(ds[-1], w)], sub.loc[(ds[0], w)]) for w in ws)
        wide_up = sum(_below(sub.loc[(d, ws[0])], sub.loc[(d, ws[-1])]) for d in ds)
        wide_dn = sum(_below(sub.loc[(d, ws[-1])], sub.loc[(d, ws[0])]) for d in ds)
        out.append(
            f"  deepest significantly above shallowest in {deep_up} of {len(ws)} widths, below in {deep_dn}; "
            f"widest above narrowest in {wide_up} of {len(ds)} depths, below in {wide_dn}"
        )
    out.append("")
    return "\n".join(out) + "\n"


def numbers(lakes: dict[str, Path], work: Path) -> str:
    """Step 4: the tables behind the findings, as markdown."""
    from sgnlake.analyze import open_lake

    out: list[str] = [findings(lakes)]
    fcn = open_lake(str(lakes["fcn-small"])).summary(by="model")
    fcn_l = open_lake(str(lakes["fcn-small"])).summary(by="tensor")
    lenet = open_lake(str(lakes["lenet-small"])).summary(by="model")
    lenet_m = open_lake(str(lakes["lenet-small"])).summary(by="module")
    fseeds = open_lake(str(lakes["fcn-seeds"])).summary(by="model")
    lseeds = open_lake(str(lakes["lenet-seeds"])).summary(by="model")
    lseeds_m = open_lake(str(lakes["lenet-seeds"])).summary(by="module")

    # F1: alpha over iterations, first vs last snapshot of every run
    out.append("### F1 alpha over iterations (median over all parameters; first -> last snapshot)\n")
    out.append("| lake | runs | last < first | median first | median last | mean 1/alpha first | last |")
    out.append("|---|---|---|---|---|---|---|")
    for name, s in (
        ("fcn-small", fcn),
        ("lenet-small", lenet),
        ("fcn-seeds", fseeds),
        ("lenet-seeds", lseeds),
    ):
        g = s.sort_values("iteration").groupby("run_id")
        first, last = g.first(), g.last()
        down = int((last["median"] < first["median"]).sum())
        out.append(
            f"| {name} | {len(first)} | {down} | {_fmt(first['median'].mean())} | "
            f"{_fmt(last['median'].mean())} | {_fmt(first['mean_inv'].mean())} | {_fmt(last['mean_inv'].mean())} |"
        )
    out.append("")

    # F2: batch size, FCN at the last snapshot (t = 600 for every run)
    last = fcn[fcn.iteration == fcn.iteration.max()]
    piv = last.pivot_table(index=["depth", "width"], columns="batch_size", values="median")
    out.append("### F2 batch size: FCN median alpha at t=600 (M = 100, 50, 25 for b = 50, 100, 200)\n")
    out.append("| depth | width | b=50 | b=100 | b=200 |")
    out.append("|---|---|---|---|---|")
    for (d, w), row in piv.iterrows():
        out.append(f"| {d} | {w} | {_fmt(row[50])} | {_fmt(row[100])} | {_fmt(row[200])} |")
    out.append(
        f"\nb=50 < b=200 in {int((piv[50] < piv[200]).sum())} of {len(piv)}; "
        f"b=50 < b=100 in {int((piv[50] < piv[100]).sum())}; b=100 < b=200 in {int((piv[100] < piv[200]).sum())}\n"
    )
    out.append(_seed_table(fseeds, "FCN d3-w32", [600, 300, 100]))
    common = int(lseeds.groupby("run_id").iteration.max().min())
    out.append(_seed_table(lseeds, "LeNet", [common, "last"]))

    out.append(_m_matched_grid(lakes["fcn-small"], 600))
    out.append(_m_matched(lakes["fcn-seeds"], [100, 600]))
    out.append(_m_matched(lakes["lenet-seeds"], [common]))

    # F3: conv vs linear layers (LeNet), per module at the last snapshot
    out.append("### F3 LeNet per layer (module): median alpha at the last snapshot, seeds 0-2 mean +- sd\n")
    lm = lseeds_m.sort_values("iteration").groupby(["run_id", "group"]).last().reset_index()
    tab = lm.groupby(["batch_size", "group"])["median"].agg(["mean", "std"]).unstack("group")
    groups = list(tab["mean"].columns)
    out.append("| b | " + " | ".join(groups) + " |")
    out.append("|---|" + "---|" * len(groups))
    for b, row in tab.iterrows():
        out.append(
            f"| {b} | " + " | ".join(f"{row['mean'][g]:.3f} +- {row['std'][g]:.3f}" for g in groups) + " |"
        )
    snaps = lenet_m.pivot_table(index=["run_id", "iteration"], columns="group", values="median")
    conv_hi = (snaps[["conv1", "conv2"]].min(axis=1) > snaps[["fc1", "fc2"]].max(axis=1)).sum()
    conv_mean = (snaps[["conv1", "conv2"]].mean(axis=1) > snaps[["fc1", "fc2"]].mean(axis=1)).sum()
    out.append(
        f"\nlenet-small, all {len(snaps)} snapshots of 3 runs: both conv medians above both linear ones in "
        f"{int(conv_hi)}; mean of conv medians above mean of linear in {int(conv_mean)}\n"
    )

    # F4: depth and width, FCN at t=600
    out.append("### F4 depth and width: FCN median alpha at t=600\n")
    for b in (50, 100, 200):
        p = last[last.batch_size == b].pivot_table(index="depth", columns="width", values="median")
        dec_d = sum(p.loc[p.index.max(), w] < p.loc[p.index.min(), w] for w in p.columns)
        dec_w = sum(p.loc[d, p.columns.max()] < p.loc[d, p.columns.min()] for d in p.index)
        out.append(
            f"b={b}: "
            + "; ".join(f"d{d}: " + ", ".join(f"w{w} {p.loc[d, w]:.3f}" for w in p.columns) for d in p.index)
        )
        out.append(
            f"  deepest < shallowest in {dec_d} of {len(p.columns)} widths; "
            f"widest < narrowest in {dec_w} of {len(p.index)} depths\n"
        )

    # Layer composition of the FCN medians (fc1 dominates the parameter count)
    out.append("### FCN per tensor at t=600, b=50 (median alpha; share of alpha in [0.98, 1.02])\n")
    tl = fcn_l[(fcn_l.iteration == 600) & (fcn_l.batch_size == 50) & (fcn_l.width == 32)]
    for _, r in tl.sort_values(["depth", "group"]).iterrows():
        out.append(f"- d{r.depth} {r.group}: median {r['median']:.3f}, n {r.n}, dead {r.n_nan}")
    out.append("")
    out.append(_pooled(lakes["fcn-small"], "fcn-d3-w32-b50-s0"))
    out.append(_pooled(lakes["lenet-small"], "lenet-b50-s0"))
    out.append(_spike_share(lakes["fcn-small"], "fcn-d3-w32-b50-s0"))
    out.append(_spike_share(lakes["lenet-small"], "lenet-b50-s0"))

    # Estimator spread at the M of the small presets
    val = work / "validate.md"
    cli("validate-estimators", "--sizes", SIZES, "--alphas", "1.3,1.5,1.7,1.9", "--n-params", "500",
        "--seed", "0", "--out", str(val))  # fmt: skip
    rows = [r for r in val.read_text().splitlines() if r.startswith("| mohammadi-k1_paper")]
    out.append("### Estimator spread (sgnlake validate-estimators, mohammadi k1=paper, 500 parameters)\n")
    out.append(val.read_text().splitlines()[0])
    out.append(val.read_text().splitlines()[1])
    out.extend(rows)
    return "\n".join(out) + "\n"


def _seed_table(s: pd.DataFrame, label: str, its: list) -> str:
    lines = [f"### F2 {label}, seeds 0-2: median alpha mean +- sd over seeds\n"]
    lines.append("| iteration | " + " | ".join(f"b={b} (M={m})" for b, m in _bm(s)) + " |")
    lines.append("|---|" + "---|" * len(_bm(s)))
    for it in its:
        if it == "last":
            sel = s.sort_values("iteration").groupby("run_id").last().reset_index()
            label_it = "last (3 epochs)"
        else:
            sel = s[s.iteration == it]
            label_it = str(it)
        g = sel.groupby("batch_size")["median"].agg(["mean", "std", "count"])
        cells = [
            f"{g.loc[b, 'mean']:.3f} +- {g.loc[b, 'std']:.3f} ({int(g.loc[b, 'count'])})"
            if b in g.index
            else "-"
            for b, _ in _bm(s)
        ]
        lines.append(f"| {label_it} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _block_median(lake: object, run: str, it: int, m: int = 25, kept: bool = False) -> float:
    """Mean over disjoint blocks of ``m`` minibatches of the median per-parameter alpha (all tensors).

    Degenerate parameters (:func:`sgnlake.analyze.kernels.sparse_mask` of each block's ``m``
    samples) are left out unless ``kept``, like the summaries.
    """
    from sgnlake.analyze.kernels import mohammadi, sparse_mask

    x = [np.asarray(lake.sgn(run, t, iterations=it))[0] for t in lake.tensors(run).index]  # type: ignore[attr-defined]
    sgn = np.concatenate(x, axis=1)  # (M, all params)
    blocks = [sgn[k : k + m] for k in range(0, sgn.shape[0] - m + 1, m)]
    meds = []
    for b in blocks:
        a = mohammadi(b.T, k1="paper")
        if not kept:
            a = np.where(sparse_mask(b.T), np.nan, a)
        meds.append(np.nanmedian(a))
    return float(np.mean(meds))


def _m_matched_grid(lake_path: Path, it: int, m: int = 25) -> str:
    """Batch-size ordering of the M-matched medians in every (depth, width) of the FCN grid."""
    from sgnlake.analyze import open_lake

    lake = open_lake(str(lake_path))
    runs = lake.runs
    runs = runs.assign(
        mm=[_block_median(lake, r, it, m) for r in runs.index],
        mk=[_block_median(lake, r, it, m, kept=True) for r in runs.index],
    )
    out = [f"### F2 control, {lake_path.name} at t={it}, blocks of M={m}: b=50/100/200\n"]
    for col, what in (("mm", "degenerate left out"), ("mk", "degenerate kept")):
        piv = runs.pivot_table(index=["depth", "width"], columns="batch_size", values=col)
        rows = "; ".join(f"d{d}w{w}: " + "/".join(f"{v:.3f}" for v in r) for (d, w), r in piv.iterrows())
        mono = int(((piv[50] < piv[100]) & (piv[100] < piv[200])).sum())
        out.append(
            f"{what}: {rows}\n\nb=50 < b=200 in {int((piv[50] < piv[200]).sum())} of {len(piv)}; "
            f"b=50 < b=100 < b=200 in {mono} of {len(piv)}\n"
        )
    return "\n".join(out)


def _m_matched(lake_path: Path, its: list[int], m: int = 25) -> str:
    """Median alpha with every run's M cut to ``m``: the mean over disjoint blocks of ``m`` minibatches.

    Removes the estimator's M-dependent bias from the batch-size comparison
    (b=50 has M=100 samples per parameter, b=200 only 25). Degenerate parameters left out
    (kept: in brackets).
    """
    from sgnlake.analyze import open_lake

    lake = open_lake(str(lake_path))
    runs = lake.runs
    lines = [
        f"### F2 control, {lake_path.name}: median alpha from blocks of M={m} minibatches, mean +- sd over seeds "
        "(degenerate kept)\n"
    ]
    lines.append("| iteration | " + " | ".join(f"b={b}" for b in sorted(runs.batch_size.unique())) + " |")
    lines.append("|---|" + "---|" * runs.batch_size.nunique())
    for it in its:
        vals: dict[int, list[float]] = {}
        kept: dict[int, list[float]] = {}
        for run, row in runs.iterrows():
            vals.setdefault(int(row.batch_size), []).append(_block_median(lake, run, it, m))
            kept.setdefault(int(row.batch_size), []).append(_block_median(lake, run, it, m, kept=True))
        cells = [
            f"{np.mean(v):.3f} +- {np.std(v, ddof=1):.3f} ({np.mean(kept[b]):.3f})"
            for b, v in sorted(vals.items())
        ]
        lines.append(f"| {it} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _bm(s: pd.DataFrame) -> list[tuple[int, int]]:
    return sorted({(int(b), int(m)) for b, m in zip(s.batch_size, s.n_minibatches, strict=True)})


def _pooled(lake_path: Path, run: str) -> str:
    """Per tensor at the last snapshot: median per-parameter alpha vs one pooled alpha (Simsekli et al.)."""
    from sgnlake.analyze import open_lake
    from sgnlake.analyze.kernels import pooled

    lake = open_lake(str(lake_path))
    last = int(lake.iterations(run)[-1])
    med = lake.summary(run, by="tensor", iterations=[last]).set_index("group")[
        "median"
    ]  # degenerate left out
    parts = []
    for t in lake.tensors(run).index:
        x = np.asarray(lake.sgn(run, t, iterations=last))[0]  # (minibatch, param)
        parts.append(f"{t} {med[t]:.2f} vs {pooled(x, 'paper'):.2f}")
    return (
        f"{run} at t={last}, per-parameter median (degenerate left out) vs pooled alpha: "
        + "; ".join(parts)
        + "\n"
    )


def _spike_share(lake_path: Path, run: str) -> str:
    """Share of per-parameter alphas within 0.02 of 1 at the last snapshot, per tensor."""
    from sgnlake.analyze import open_lake

    lake = open_lake(str(lake_path))
    parts = []
    for t in lake.tensors(run).index:
        a = np.asarray(lake.alpha(run, tensor=t).isel(iteration=-1))
        a = a[np.isfinite(a)]
        parts.append(f"{t} {np.mean(np.abs(a - 1) <= 0.02):.1%}")
    return f"{run}, last snapshot, share of alpha in [0.98, 1.02]: " + ", ".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("sgnlake-reproduction"), help="Lakes and reports.")
    ap.add_argument("--dpi", type=int, default=90, help="Resolution of the copied PNGs.")
    ap.add_argument("--no-figures", action="store_true", help="Only collect and print the numbers.")
    ap.add_argument(
        "--only-doc-figures", action="store_true",
        help="Of the figures, draw only Figs 1 and 2 of reproduction.md (not the reports).",
    )  # fmt: skip
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    lakes = collect(args.work)
    if not args.no_figures:
        if not args.only_doc_figures:
            figures(lakes, args.work, args.dpi)
        doc_figures(lakes, args.work, args.dpi)
    text = numbers(lakes, args.work)
    (args.work / "numbers.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
