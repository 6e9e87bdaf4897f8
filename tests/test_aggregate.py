"""The one aggregate of alpha per group (sgnlake.analyze.aggregate) against numpy/pandas oracles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as hst
from hypothesis.extra import numpy as hnp

from sgnlake.analyze import aggregate as A
from sgnlake.analyze import summary


def _oracle_row(v: np.ndarray, q: tuple[float, float]) -> dict[str, float]:
    """The statistics of one snapshot's alphas, one value at a time (plain numpy on the used ones)."""
    used = v[~np.isnan(v)]
    if used.size == 0:
        nan = float("nan")
        return {"n": 0, "n_nan": v.size, "n_gt2": 0} | dict.fromkeys(
            ("median", "mean", "q_lo", "q_hi", "mean_inv", "alpha_from_mean_inv"), nan
        )
    with np.errstate(divide="ignore", invalid="ignore"):  # inf - inf between quantile neighbours
        mean_inv = float(np.mean(1.0 / used))
        q_lo, q_hi = float(np.quantile(used, q[0])), float(np.quantile(used, q[1]))
    return {
        "n": used.size,
        "n_nan": v.size - used.size,
        "n_gt2": int(np.sum(used > 2)),
        "median": float(np.median(used)),
        "mean": float(np.mean(used)),
        "q_lo": q_lo,
        "q_hi": q_hi,
        "mean_inv": mean_inv,
        "alpha_from_mean_inv": 1.0 / mean_inv if mean_inv else float("inf"),
    }


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=7),
        elements=hst.one_of(hst.floats(0.5, 3.0), hst.just(np.nan), hst.just(np.inf)),
    ),
    q=hst.tuples(hst.floats(0.0, 0.5), hst.floats(0.5, 1.0)),
)
def test_group_stats_against_numpy(values, q):
    counts = np.arange(values.size, dtype=np.int32).reshape(values.shape) % 3
    st = A.group_stats(values, q, counts)
    assert set(st) == set(A.STAT_COLUMNS)
    np.testing.assert_array_equal(st["n_params"], np.full(values.shape[0], values.shape[1]))
    np.testing.assert_array_equal(st["n_nonfinite_samples"], counts.sum(axis=1))
    for i, row in enumerate(values):
        for col, want in _oracle_row(row, q).items():
            np.testing.assert_allclose(st[col][i], want, rtol=1e-12, err_msg=col)


def test_group_stats_fixed_values():
    a = np.array([[1.2, np.nan, 2.5, 1.8], [np.nan, np.nan, np.nan, np.nan]])
    s = A.group_stats(a)
    assert s["median"][0] == pytest.approx(1.8) and np.isnan(s["median"][1])
    assert s["mean"][0] == pytest.approx((1.2 + 2.5 + 1.8) / 3)
    assert s["mean_inv"][0] == pytest.approx((1 / 1.2 + 1 / 2.5 + 1 / 1.8) / 3)
    assert s["alpha_from_mean_inv"][0] == pytest.approx(3 / (1 / 1.2 + 1 / 2.5 + 1 / 1.8))
    np.testing.assert_array_equal(s["n"], [3, 0])
    np.testing.assert_array_equal(s["n_nan"], [1, 4])
    np.testing.assert_array_equal(s["n_gt2"], [1, 0])
    assert "n_nonfinite_samples" not in s


def test_summary_uses_the_aggregate_columns():
    assert summary.STAT_COLUMNS is A.STAT_COLUMNS and summary.group_stats is A.group_stats
    assert summary.SUMMARY_COLUMNS[4 : 4 + len(A.STAT_COLUMNS)] == A.STAT_COLUMNS


def test_alpha_stats_with_nonfinite_counts_and_model_grouping(alpha_da):
    counts = xr.full_like(alpha_da, 2, dtype=np.int32)
    st = A.alpha_stats(alpha_da, "model", nonfinite=counts)
    assert list(st.columns) == ["iteration", "group", *A.STAT_COLUMNS]
    assert (st["group"] == "all").all() and (st["n_nonfinite_samples"] == 60).all()
    st_t = A.alpha_stats(alpha_da.T, None)  # any dim order
    pd.testing.assert_frame_equal(st_t, st.drop(columns="n_nonfinite_samples"))


def _long(alpha: xr.DataArray) -> pd.DataFrame:
    """One row per (iteration, param) with the module label."""
    return alpha.to_dataframe(name="alpha").reset_index()


def test_alpha_stats_match_pandas(alpha_da):
    st = A.alpha_stats(alpha_da, by="module")
    assert list(st.columns) == list(A.STATS_COLUMNS)
    assert len(st) == 2 * 5 and list(pd.unique(st["group"])) == ["fc1", "fc2"]
    g = _long(alpha_da).groupby(["iteration", "module"])["alpha"]
    exp = pd.DataFrame(
        {
            "median": g.median(),
            "mean": g.mean(),
            "q_lo": g.quantile(0.25),
            "q_hi": g.quantile(0.75),
            "n_params": g.size(),
            "n": g.count(),
            "n_nan": g.apply(lambda s: s.isna().sum()),
            "n_gt2": g.apply(lambda s: (s > 2).sum()),
            "mean_inv": g.apply(lambda s: (1 / s).mean()),
        }
    )
    got = st.set_index(["iteration", "group"]).sort_index()
    exp = exp.sort_index()
    for col in exp.columns:
        np.testing.assert_allclose(got[col].to_numpy(float), exp[col].to_numpy(float), rtol=1e-12)
    np.testing.assert_allclose(got["alpha_from_mean_inv"], 1 / exp["mean_inv"])
    assert got.loc[(100, "fc1"), "n_nan"] == 2 and got.loc[(400, "fc2"), "n_nan"] == 1
    allst = A.alpha_stats(alpha_da)
    assert set(allst["group"]) == {"all"} and (allst["n_params"] == 30).all()
    np.testing.assert_allclose(allst["median"], np.nanmedian(alpha_da.values, axis=1))


def test_alpha_stats_all_nan_group_gives_nan_not_error():
    da = xr.DataArray(np.full((2, 3), np.nan), dims=("iteration", "param"), coords={"iteration": [1, 2]})
    st = A.alpha_stats(da)
    assert st["median"].isna().all() and (st["n_nan"] == 3).all()


# ---------------------------------------------------------------------------- the paper's statistic's interval


def test_paper_mean_interval_is_the_normal_interval_when_the_check_passes():
    x = np.array(
        [[1.0, 2.0, 3.0, 4.0, 5.0] * 4, [1.0] * 19 + [50.0], [np.nan, 1.0, 2.0, np.inf] + [1.0] * 16]
    )
    lo, hi = A.paper_mean_interval(x)
    row = x[0]
    half = 1.959963984540054 * np.std(row, ddof=1) / np.sqrt(row.size)  # scipy-free oracle
    assert lo[0] == pytest.approx(row.mean() - half) and hi[0] == pytest.approx(row.mean() + half)
    # one value carries (49 - 2.45)^2 / sum = 95% of the squared deviations: no interval
    assert np.isnan(lo[1]) and np.isnan(hi[1])
    assert np.isnan(lo[2]) and np.isnan(hi[2])  # an infinite 1/inv_alpha (estimate exactly 0)


@pytest.mark.parametrize("n", [301, 3001])
def test_paper_mean_interval_covers_95_percent_with_finite_variance(n):
    """inv_alpha ~ N(0.6, 0.08): 1/inv_alpha has a finite variance (0 is 7.5 sd away).

    The true paper's mean, E[1/X], by numerical integration against the normal density."""
    rng = np.random.default_rng(7)
    grid = np.linspace(0.6 - 7 * 0.08, 0.6 + 7 * 0.08, 200_001)  # density < 1e-10 beyond
    dens = np.exp(-0.5 * ((grid - 0.6) / 0.08) ** 2) / (0.08 * np.sqrt(2 * np.pi))
    true = float(np.sum(dens / grid) * (grid[1] - grid[0]))
    reps = 4000 if n < 1000 else 1500
    inv = rng.normal(0.6, 0.08, (reps, n))
    inv[:, :5] = np.nan  # no estimate: left out
    st = A.group_stats(1 / inv, inv=inv)
    given = np.isfinite(st["paper_mean_lo"])
    assert given.mean() >= 0.85
    cover = np.mean((st["paper_mean_lo"][given] <= true) & (true <= st["paper_mean_hi"][given]))
    assert 0.935 <= cover <= 0.965, cover
    np.testing.assert_allclose(st["paper_mean"], np.nanmean(1 / inv, axis=1), rtol=1e-12)


def test_paper_mean_interval_refused_when_estimates_of_inv_alpha_reach_zero():
    """inv_alpha ~ N(0.5, 0.25) has density at 0: 1/inv_alpha has Cauchy-like tails and no mean.

    The normal interval would be garbage (its coverage of any fixed value is low); it is withheld."""
    rng = np.random.default_rng(8)
    inv = rng.normal(0.5, 0.25, (400, 3001))
    st = A.group_stats(1 / inv, inv=inv)
    assert np.mean(np.isfinite(st["paper_mean_lo"])) <= 0.05
    assert np.isfinite(st["paper_mean"]).all()  # the statistic itself is still given
