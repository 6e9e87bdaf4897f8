"""Figure functions: each draws the data it was given (checked against numpy/pandas/scipy)."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle, StepPatch
from scipy import stats as sps

from sgnlake.analyze import plots
from sgnlake.analyze.aggregate import alpha_stats


def _legend_lines(ax) -> dict[str, Line2D]:
    """Map legend label -> data line (unwrapping errorbar containers)."""
    handles, labels = ax.get_legend_handles_labels()
    out = {}
    for h, lab in zip(handles, labels, strict=True):
        if isinstance(h, ErrorbarContainer):
            h = h.lines[0]
        out[lab] = h
    return out


def _long(alpha: xr.DataArray) -> pd.DataFrame:
    """One row per (iteration, param) with the module label."""
    return alpha.to_dataframe(name="alpha").reset_index()


def test_alpha_over_iterations_draws_median_band_and_inverse_mean(alpha_da):
    st = alpha_stats(alpha_da)
    fig, ax = plots.new_figure()
    plots.plot_alpha_over_iterations(ax, st, title="run r1")
    lines = _legend_lines(ax)
    v = alpha_da.values
    np.testing.assert_allclose(lines["median over parameters"].get_ydata(), np.nanmedian(v, 1))
    inv = lines["1 / mean(1/α) over parameters"]
    np.testing.assert_allclose(inv.get_ydata(), 1 / np.nanmean(1 / v, 1))
    assert inv.get_linestyle() == "--"
    np.testing.assert_array_equal(lines["median over parameters"].get_xdata(), [0, 100, 200, 300, 400])
    assert "α = 2 (Gaussian)" in lines
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1
    assert ax.get_title() == "run r1"
    assert "iteration" in ax.get_xlabel() and "α" in ax.get_ylabel()
    note = " ".join(t.get_text() for t in ax.texts)
    assert "dead (no estimate): 0–2 per snapshot, last 1" in note


def test_alpha_over_iterations_leaves_out_infinite_mean(alpha_da):
    a = alpha_da.copy()
    a[2, 4] = np.inf  # an estimate of 1/alpha <= 0
    st = alpha_stats(a)
    assert np.isinf(st["mean"].iloc[2])
    fig, ax = plots.new_figure()
    plots.plot_alpha_over_iterations(ax, st, secondary="mean")
    mean = _legend_lines(ax)["mean over parameters"]
    np.testing.assert_array_equal(mean.get_xdata(), [0, 100, 300, 400])
    assert "mean infinite at 1 snapshot(s)" in ax.texts[0].get_text()


def test_alpha_by_batch_size_averages_runs():
    rng = np.random.default_rng(1)
    rows = [
        {"run_id": f"b{b}s{s}", "batch_size": b, "iteration": t, "median": rng.uniform(1, 2)}
        for b in (200, 50, 100)
        for s in (0, 1)
        for t in (100, 200, 300)
    ]
    table = pd.DataFrame(rows)
    fig, ax = plots.new_figure()
    plots.plot_alpha_by_batch_size(ax, table)
    lines = _legend_lines(ax)
    labels = [lab for lab in lines if lab.startswith("batch size")]
    assert [lab.split(" (")[0] for lab in labels] == [
        "batch size = 50",
        "batch size = 100",
        "batch size = 200",
    ]
    exp = table.groupby(["batch_size", "iteration"])["median"].mean()
    for lab in labels:
        b = int(lab.split("=")[1].split()[0])
        np.testing.assert_allclose(lines[lab].get_ydata(), exp.loc[b].to_numpy())
    assert "batch size" in ax.get_title()


def test_alpha_by_layer_one_line_per_module(alpha_da):
    st = alpha_stats(alpha_da, by="module")
    fig, ax = plots.new_figure()
    plots.plot_alpha_by_layer(ax, st, y="mean")
    lines = _legend_lines(ax)
    assert [k for k in lines if k.startswith("layer")] == ["layer = fc1", "layer = fc2"]
    exp = _long(alpha_da).groupby(["module", "iteration"])["alpha"].mean()
    np.testing.assert_allclose(lines["layer = fc2"].get_ydata(), exp.loc["fc2"].to_numpy())


def test_alpha_vs_depth_lines_per_width():
    rows = []
    rng = np.random.default_rng(2)
    for d in (2, 3, 4):
        for w in (16, 32):
            rows.append({"depth": d, "width": w, "median": rng.uniform(1, 2)})
    table = pd.DataFrame(rows)
    fig, ax = plots.new_figure()
    plots.plot_alpha_vs_config(ax, table, x="depth", hue="width")
    lines = _legend_lines(ax)
    for w in (16, 32):
        ln = lines[f"width = {w}"]
        sub = table[table.width == w].sort_values("depth")
        np.testing.assert_array_equal(ln.get_xdata(), sub["depth"])
        np.testing.assert_allclose(ln.get_ydata(), sub["median"])
    assert "depth" in ax.get_xlabel() and list(ax.get_xticks()) == [2, 3, 4]
    fig, ax = plots.new_figure()
    plots.plot_alpha_vs_config(ax, table, x="width")
    (ln,) = [v for k, v in _legend_lines(ax).items() if k.startswith("all runs")]
    np.testing.assert_allclose(ln.get_ydata(), table.groupby("width")["median"].mean())


def test_alpha_histogram_counts_nan_and_outside():
    rng = np.random.default_rng(3)
    v = rng.uniform(1.0, 2.2, 500)
    v[:7] = np.nan
    v[7:9] = 9.0  # beyond the 0..4 cap
    v[9] = np.inf  # an estimate of 1/alpha <= 0: outside, not dead
    fig, ax = plots.new_figure()
    plots.plot_alpha_histogram(ax, v, title="iteration 100")
    (sp,) = [p for p in ax.patches if isinstance(p, StepPatch)]
    counts, edges, _ = sp.get_data()
    fin = v[np.isfinite(v)]
    exp, _ = np.histogram(fin, bins=edges)
    np.testing.assert_array_equal(counts, exp)
    assert edges[0] <= 0.5 and edges[-1] == 4.0 and counts.sum() == 500 - 7 - 3
    note = ax.texts[0].get_text()
    assert "500 parameters" in note and "dead (NaN): 7" in note and "outside [0.5, 4]: 3" in note
    labels = ax.get_legend_handles_labels()[1]
    assert f"median {np.median(v[~np.isnan(v)]):.3f}" in labels
    assert ax.get_ylabel() == "number of parameters"


def test_alpha_histograms_by_group_densities(alpha_da):
    v = alpha_da.isel(iteration=1).values
    fig, ax = plots.new_figure()
    plots.plot_alpha_histograms_by_group(ax, v, alpha_da["module"].values, title="per layer")
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert len(steps) == 2
    for sp, mod in zip(steps, ["fc1", "fc2"], strict=True):
        dens, edges, _ = sp.get_data()
        sub = v[alpha_da["module"].values == mod]
        exp, _ = np.histogram(sub[np.isfinite(sub)], bins=edges, density=True)
        np.testing.assert_allclose(dens, exp)
        assert sp.get_label().startswith(mod)
    assert "dead 2" in steps[0].get_label()


def test_alpha_histogram_leaves_degenerate_parameters_out_by_default():
    rng = np.random.default_rng(4)
    v = rng.uniform(1.3, 2.1, 400)
    sparse = np.zeros(400, dtype=np.int8)
    sparse[:60] = 1  # planted degenerate parameters: estimate pulled to 1
    v[:60] = rng.uniform(0.99, 1.01, 60)
    sparse[60:70] = -1  # unknown: taken as not degenerate
    v[70] = np.nan
    edges = np.linspace(0.5, 2.5, 41)
    fig, ax = plots.new_figure()
    plots.plot_alpha_histogram(ax, v, title="t", bins=edges, sparse=sparse)
    (step,) = [p for p in ax.patches if isinstance(p, StepPatch)]
    exp, _ = np.histogram(v[60:][np.isfinite(v[60:])], bins=edges)
    np.testing.assert_array_equal(step.get_data()[0], exp)
    assert "degenerate (left out): 60" in ax.texts[0].get_text()
    assert f"median {np.nanmedian(v[60:]):.3f}" in ax.get_legend_handles_labels()[1]
    # kept: the degenerate ones stacked on top, and in the median
    fig, ax = plots.new_figure()
    plots.plot_alpha_histogram(ax, v, title="t", bins=edges, sparse=sparse, include_sparse=True)
    base, top = [p for p in ax.patches if isinstance(p, StepPatch)]
    all_counts, _ = np.histogram(v[np.isfinite(v)], bins=edges)
    np.testing.assert_array_equal(top.get_data()[0], all_counts)
    np.testing.assert_array_equal(top.get_data()[2], exp)  # baseline: the others
    assert "degenerate (kept, grey): 60" in ax.texts[0].get_text()
    assert f"median {np.nanmedian(v):.3f}" in ax.get_legend_handles_labels()[1]
    assert "left out" in plots.degenerate_caption(False) and "kept" in plots.degenerate_caption(True)
    with pytest.raises(ValueError, match="sparse has 3 values"):
        plots.plot_alpha_histogram(ax, v, title="t", sparse=sparse[:3])


def test_alpha_histograms_by_group_leave_degenerate_out(alpha_da):
    v = alpha_da.isel(iteration=0).values
    mods = alpha_da["module"].values
    sparse = np.zeros(v.size, dtype=np.int8)
    sparse[:5] = 1  # five fc1 parameters
    edges = np.linspace(0.5, 2.5, 21)
    for keep in (False, True):
        fig, ax = plots.new_figure()
        plots.plot_alpha_histograms_by_group(
            ax, v, mods, title="per layer", bins=edges, sparse=sparse, include_sparse=keep
        )
        fc1 = [p for p in ax.patches if isinstance(p, StepPatch)][0]
        sub = v[:20] if keep else v[5:20]
        exp, _ = np.histogram(sub, bins=edges, density=True)
        np.testing.assert_allclose(fc1.get_data()[0], exp)
        assert f"median {np.median(sub):.2f}" in fc1.get_label() and "degenerate 5" in fc1.get_label()


@pytest.mark.parametrize("shape", [(4, 3, 2, 5), (6, 7), (9,), (2, 3, 4)])
def test_alpha_map_image_layout(shape):
    n = int(np.prod(shape))
    flat = np.arange(n, dtype=float)
    img = plots.alpha_map_image(flat, shape)
    w = flat.reshape(shape)
    if len(shape) == 4:
        o, i, kh, kw = shape
        assert img.shape == (o * kh, i * kw)
        for a in range(o):
            for b in range(i):
                np.testing.assert_array_equal(img[a * kh : (a + 1) * kh, b * kw : (b + 1) * kw], w[a, b])
    elif len(shape) == 2:
        np.testing.assert_array_equal(img, w)
    elif len(shape) == 1:
        np.testing.assert_array_equal(img, w[None, :])
    else:
        np.testing.assert_array_equal(img, w.reshape(shape[0], -1))


def test_plot_alpha_map_colorbar_and_nan():
    rng = np.random.default_rng(4)
    v = rng.uniform(0.8, 2.4, 6 * 2 * 3 * 3)
    v[5] = np.nan
    fig, ax = plots.new_figure()
    plots.plot_alpha_map(ax, v, (6, 2, 3, 3), title="conv1.weight")
    (im,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    arr = im.get_array()
    assert arr.shape == (18, 6) and int(np.ma.count_masked(arr)) == 1
    np.testing.assert_array_equal(np.sort(arr.compressed()), np.sort(v[np.isfinite(v)]))
    assert arr.mask[1, 2]  # flat index 5 = (out 0, in 0, row 1, col 2)
    assert arr[4, 3] == v.reshape(6, 2, 3, 3)[1, 1, 1, 0]
    assert im.get_clim() == (1.0, 2.0)
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "α"
    assert "dead (grey): 1" in ax.get_title()


def test_sgn_gaussian_panels_match_scipy():
    rng = np.random.default_rng(5)
    x = rng.standard_t(2.0, 200)
    fig, axes = plots.new_figure(3, 1)
    plots.plot_sgn_gaussian_panels(axes, x, title="fc1.weight[3] @ t=100")
    a, b, c = axes
    heights = np.array([p.get_height() for p in a.patches if isinstance(p, Rectangle)])
    edges = plots._sgn_edges(x)
    exp, _ = np.histogram(x, bins=edges, density=True)
    np.testing.assert_allclose(heights, exp)
    (gauss,) = [ln for ln in a.lines if ln.get_label().startswith("Gaussian fit")]
    np.testing.assert_allclose(gauss.get_ydata(), sps.norm.pdf(gauss.get_xdata(), x.mean(), x.std()))
    assert "histogram" in a.get_title() and a.get_xlabel() == plots.SGN_LABEL
    assert b.get_yscale() == "log"
    dots = b.lines[0]
    np.testing.assert_allclose(dots.get_ydata(), exp[exp > 0])
    pts, line = c.lines[0], c.lines[1]
    np.testing.assert_allclose(pts.get_ydata(), np.sort(x))
    slope, intercept = np.polyfit(pts.get_xdata(), np.sort(x), 1)
    np.testing.assert_allclose(line.get_ydata(), slope * pts.get_xdata() + intercept, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        pts.get_xdata(), sps.norm.ppf(np.sort(sps.mstats.plotting_positions(x, 0.3175, 0.3175))), atol=1e-2
    )
    assert "QQ" in c.get_title()


@pytest.mark.parametrize("log", [False, True])
def test_sgn_stable_fit_draws_levy_stable_pdf(log):
    rng = np.random.default_rng(6)
    x = sps.levy_stable.rvs(1.5, 0.0, loc=0.0, scale=1.0, size=300, random_state=rng)
    params = (1.5, 0.1, 1.1, 0.05)
    fig, ax = plots.new_figure()
    plots.plot_sgn_stable_fit(ax, x, params, title="fit", log=log, grid_points=41)
    lines = _legend_lines(ax)
    (stable,) = [v for k, v in lines.items() if k.startswith("α-stable")]
    (gauss,) = [v for k, v in lines.items() if k.startswith("Gaussian")]
    gx = stable.get_xdata()
    assert len(gx) == 41 and gx[0] == x.min() and gx[-1] == x.max()
    np.testing.assert_allclose(
        stable.get_ydata(), sps.levy_stable.pdf(gx, 1.5, 0.1, loc=0.05, scale=1.1), rtol=1e-6
    )
    np.testing.assert_allclose(gauss.get_ydata(), sps.norm.pdf(gx, x.mean(), x.std()))
    assert ax.get_yscale() == ("log" if log else "linear")


def test_param_vs_pooled_same_color_solid_and_dashed(alpha_da):
    st = alpha_stats(alpha_da, by="module")
    pooled = pd.DataFrame(
        {
            "iteration": [0, 100, 200, 300, 400] * 2,
            "group": ["fc1"] * 5 + ["fc2"] * 5,
            "alpha": np.linspace(1, 2, 10),
        }
    )
    pooled.loc[7, "alpha"] = 250.0  # one huge pooled estimate must not flatten the other lines
    fig, ax = plots.new_figure()
    plots.plot_param_vs_pooled(ax, st, pooled)
    lines = {ln.get_label(): ln for ln in ax.lines}
    per, poo = lines["fc2: per-parameter median"], lines["fc2: pooled"]
    assert per.get_color() == poo.get_color() and poo.get_linestyle() == "--"
    np.testing.assert_allclose(poo.get_ydata(), pooled["alpha"].to_numpy()[5:])
    np.testing.assert_allclose(per.get_ydata(), st[st.group == "fc2"]["median"])
    assert len([k for k in lines if k.startswith("fc")]) == 4
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["fc1", "fc2", "per-parameter median", "pooled", "α = 2 (Gaussian)"]
    assert ax.get_ylim()[1] == plots.ALPHA_AXIS_CAP
    assert "1 point(s) above α = 4 not shown (max 250)" in ax.texts[0].get_text()


def test_save_figure_writes_png(tmp_path, alpha_da):
    fig, ax = plots.new_figure(size=(4, 3))
    plots.plot_alpha_over_iterations(ax, alpha_stats(alpha_da))
    path = plots.save_figure(fig, tmp_path / "a.png", dpi=50)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[:2] == (150, 200)


def test_long_titles_are_wrapped_inside_the_png(tmp_path):
    label = "fcn depth=3 width=32 bias=False dataset=mnist5k n_train=5000 lr=0.1 shuffle=True"
    fig, axes = plots.new_figure(1, 2, squeeze=False)
    axes[0, 0].set_title(f"median α over iterations per batch size: {label}")
    axes[0, 1].set_title("short")
    assert plots.fit_titles(fig) == 1
    assert "\n" in axes[0, 0].get_title() and axes[0, 1].get_title() == "short"
    assert axes[0, 0].get_title().replace("\n", " ") == f"median α over iterations per batch size: {label}"
    plots.save_figure(fig, tmp_path / "t.png", dpi=40)  # runs the layout as saving does
    renderer = fig.canvas.get_renderer()
    left, right = (t.get_window_extent(renderer) for t in (axes[0, 0].title, axes[0, 1].title))
    width = fig.get_figwidth() * fig.dpi
    assert 0 <= left.x0 and left.x1 <= right.x0 and right.x1 <= width  # inside, no overlap
