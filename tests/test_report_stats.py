"""Report statistics: comparison at equal steps or epochs, the stable QQ-plot, boundary fits, --compare-at."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.stats as sps

from sgnlake.analyze import plots
from sgnlake.analyze.report.data import _RunData, cross_run_tables


def _run(run: str, b: int, m: int, its: list[int]) -> _RunData:
    stats = pd.DataFrame(
        {"iteration": its, "median": np.linspace(1.9, 1.3, len(its)), "mean": 1.5, "paper_mean": 1.4}
    )
    stats["median_lo"], stats["median_hi"] = stats["median"] - 0.05, stats["median"] + 0.05
    meta = SimpleNamespace(n_minibatches=m, config=SimpleNamespace(batch_size=b))
    return _RunData(run, meta, None, stats, None, None, None, None, [])


def test_cross_run_tables_compare_at_equal_steps_or_epochs():
    a = _run("b50", 50, 100, list(range(0, 700, 100)))  # 6 epochs of 100 steps
    b = _run("b200", 200, 25, list(range(0, 175, 25)))  # 6 epochs of 25 steps
    runs_df = pd.DataFrame({"batch_size": [50, 200]}, index=["b50", "b200"])
    steps, long = cross_run_tables([a, b], runs_df, "steps")
    assert list(steps["last_iteration"]) == [100, 150]  # furthest common step: 150 (b50's nearest: 100)
    epochs, _ = cross_run_tables([a, b], runs_df, "epochs")
    assert list(epochs["last_iteration"]) == [600, 150] and list(epochs["epoch"]) == [6.0, 6.0]
    assert (epochs["median_hi"] - epochs["median_lo"]).round(6).eq(0.1).all()
    np.testing.assert_allclose(long.loc[long.run_id == "b200", "epoch"], np.arange(7))
    with pytest.raises(ValueError):
        cross_run_tables([a, b], runs_df, "minutes")


def test_stable_fit_at_boundary():
    assert plots.stable_fit_at_boundary((2.0, -1.0, 1.0, 0.0))
    assert plots.stable_fit_at_boundary((0.5, 0.0, 1.0, 0.0))
    assert plots.stable_fit_at_boundary((1.4, 1.0, 1.0, 0.0))
    assert not plots.stable_fit_at_boundary((1.4, 0.2, 1.0, 0.0))


def test_stable_qq_points_follow_the_diagonal_for_stable_samples():
    x = sps.levy_stable.rvs(1.5, 0.0, scale=2.0, size=400, random_state=np.random.default_rng(0))
    fig, ax = plots.new_figure()
    plots.plot_sgn_stable_qq(ax, x, (1.5, 0.0, 2.0, 0.0), title="qq", n_quantiles=15)
    theo, emp = ax.lines[0].get_data()
    assert len(theo) == 15
    assert np.median(np.abs(emp - theo)) < 0.5  # scale 2: quantiles within a quarter scale
    assert np.corrcoef(theo, emp)[0, 1] > 0.97


def test_plot_alpha_over_iterations_prints_m_and_draws_the_interval():
    st = pd.DataFrame(
        {
            "iteration": [0, 100],
            "median": [1.8, 1.5],
            "median_lo": [1.7, 1.4],
            "median_hi": [1.9, 1.6],
            "q_lo": [1.5, 1.2],
            "q_hi": [2.0, 1.8],
            "alpha_from_mean_inv": [1.7, 1.4],
            "n_params": 10,
            "n_nan": [0, 1],
            "n_gt2": [1, 0],
            "n_sparse": [2, 3],
        }
    )
    fig, ax = plots.new_figure()
    plots.plot_alpha_over_iterations(ax, st, m=33)
    text = " ".join(t.get_text() for t in ax.texts)
    assert "M = 33 (< 100" in text and "\ndegenerate (left out): last 3" in text
    labels = ax.get_legend_handles_labels()[1]
    assert "95% interval of the median" in labels


def test_report_histograms_leave_degenerate_parameters_out_unless_asked(tmp_path):
    """Planted degenerate fc1 weights: the run data carries their flags and the captions say which."""
    import zarr
    from lake_fixtures import RunSpec, write_lake

    from sgnlake.analyze import open_lake
    from sgnlake.analyze.report import build_report, load_runs

    path = write_lake(str(tmp_path / "lake"), [RunSpec("a", n_minibatches=40)])
    sgn = zarr.open_group(path, mode="r+")["runs/a/fc1.weight/sgn"]
    x = np.asarray(sgn[:])
    x[:, :, :6] = -0.05  # constant but for one big sample
    x[:, 3, :6] = 7.0
    sgn[:] = x
    lake = open_lake(path)
    data, _ = load_runs(
        lake, ["a"], estimator="mohammadi", settings={}, requested=None, store=False, force=False,
        notes=[], log=lambda m: None,
    )  # fmt: skip
    d = data["a"]
    want = lake.result("a")["sparse"].sel(iteration=d.chosen).values
    np.testing.assert_array_equal(d.sparse.values, want)
    fc1 = (d.alpha["tensor"].values == "fc1.weight") & (d.alpha["index"].values < 6)
    assert (d.sparse.values[:, fc1] == 1).all()
    for keep, word in ((False, "counted in the notes and left out"), (True, "kept in the statistics")):
        rep = build_report(
            path, tmp_path / f"r{keep}", figures=["alpha-hist", "alpha-hist-layers"], store=False,
            include_sparse=keep, log=lambda m: None,
        )  # fmt: skip
        caps = {f.path.split("/")[-1]: f.caption for f in rep.figures}
        assert word in caps["fig10_alpha_hist.png"] and word in caps["fig16_alpha_hist_layers.png"]
        # the run's note gives the median with and without them (Done when #1)
        out_, kept = (lake.summary("a", by="model", include_sparse=k).iloc[-1] for k in (False, True))
        assert out_["median"] != kept["median"] and int(out_["n_sparse"]) >= 6
        row = rep.key_numbers.set_index("run").loc["a"]
        assert row["median α (last)"] == pytest.approx((kept if keep else out_)["median"])
        (note,) = [n for n in rep.notes if n.startswith("run a:") and "degenerate" in n]
        assert f"{int(out_['n_sparse'])} of {int(out_['n_params'])} parameters are degenerate" in note
        assert f"without them {out_['median']:.3f}" in note and f"with them {kept['median']:.3f}" in note
        assert "spike at α ≈ 1" in note


def test_paper_mean_drawn_with_its_interval_where_given():
    st = pd.DataFrame(
        {
            "iteration": [0, 100, 200],
            "paper_mean": [2.4, 1.9, 7.5],
            "paper_mean_lo": [2.2, 1.8, np.nan],  # t=200: interval withheld (1/alpha near 0)
            "paper_mean_hi": [2.6, 2.0, np.nan],
            "n_params": 10,
            "n_nan": [0, 0, 0],
            "n_gt2": [0, 0, 0],
        }
    )
    fig, ax = plots.new_figure()
    plots.plot_alpha_over_iterations(ax, st, center="paper_mean", secondary=None, band=False, m=100)
    (bars,) = [c for c in ax.containers if hasattr(c, "has_yerr")]
    segs = bars.lines[2][0].get_segments()
    assert len(segs) == 2
    np.testing.assert_allclose([s[:, 1] for s in segs], [[2.2, 2.6], [1.8, 2.0]])
    assert "no 95% interval at 1 snapshot(s)" in ax.texts[0].get_text()
    labels = ax.get_legend_handles_labels()[1]
    assert plots.STAT_LABELS["paper_mean"] in labels and any("paper's mean" in x for x in labels[1:])
    fig, ax = plots.new_figure()
    table = st.assign(batch_size=50)
    plots.plot_alpha_by_batch_size(ax, table, y="paper_mean")
    (bars,) = [c for c in ax.containers if hasattr(c, "has_yerr")]
    assert len(bars.lines[2][0].get_segments()) == 2


def test_m_text_for_cross_run_titles():
    from sgnlake.analyze.report.figures import _m_text

    runs = pd.DataFrame({"batch_size": [200, 50, 100, 50], "n_minibatches": [25, 100, 50, 100]})
    assert _m_text(runs) == "M = 100/50/25 for b = 50/100/200"
    assert _m_text(runs[runs.batch_size == 50]) == "M = 100"
    assert _m_text(runs[["batch_size"]]) == "M unknown"
