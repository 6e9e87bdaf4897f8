"""Synthetic validation: the CMS sampler against scipy, the error table and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st

from sgnlake.analyze import validation as V
from sgnlake.cli.app import main
from sgnlake.schema.errors import ConfigError


@pytest.mark.parametrize("alpha", [1.3, 1.8])
def test_cms_matches_scipy_levy_stable(alpha):
    ours = V.stable_rvs(alpha, 3000, np.random.default_rng(11))
    ref = st.levy_stable.rvs(alpha, 0.0, size=3000, random_state=12)
    assert st.ks_2samp(ours, ref).pvalue > 0.01
    # and a clearly different alpha is told apart at this size
    other = st.levy_stable.rvs(alpha - 0.6, 0.0, size=3000, random_state=13)
    assert st.ks_2samp(ours, other).pvalue < 1e-4


def test_cms_closed_forms():
    rng = np.random.default_rng(5)
    assert st.kstest(V.stable_rvs(2.0, 5000, rng), "norm", args=(0, np.sqrt(2))).pvalue > 0.01
    assert st.kstest(V.stable_rvs(1.0, 5000, rng, scale=3.0), "cauchy", args=(0, 3.0)).pvalue > 0.01
    assert V.stable_rvs(1.5, (4, 7), rng, dtype=np.float32).dtype == np.float32
    with pytest.raises(ConfigError):
        V.stable_rvs(2.5, 10, rng)


def test_error_stats_against_numpy():
    e = np.array([1.4, 1.6, np.nan, 2.2, 1.5])
    s = V.error_stats(e, 1.5)
    v = e[~np.isnan(e)]
    assert s["n_est"] == 4
    assert s["bias"] == pytest.approx(v.mean() - 1.5)
    assert s["std"] == pytest.approx(v.std())
    assert s["rmse"] == pytest.approx(np.sqrt(np.mean((v - 1.5) ** 2)))
    assert s["share_gt2"] == pytest.approx(0.25)
    assert s["rmse_inv"] == pytest.approx(np.sqrt(np.mean((1 / v - 1 / 1.5) ** 2)))
    assert s["alpha_of_mean_inv"] == pytest.approx(1 / np.mean(1 / v))
    assert V.error_stats(np.array([1.5, np.inf]), 1.5)["rmse"] == np.inf


def test_run_validation_rows_and_table():
    rows = V.run_validation(sizes=[400], alphas=[1.3, 1.9], n_params=60, seed=3)
    assert len(rows) == 2 * len(V.DEFAULT_ESTIMATORS)
    assert {r["estimator"] for r in rows} == {
        "mohammadi-k1_paper",
        "mohammadi-k1_simsekli",
        "mohammadi-k1_sqrt",
        f"hill-k_{V.kernels.DEFAULT_HILL_K}",
        "mcculloch",
    }
    for r in rows:
        assert set(r) == set(V.COLUMNS) and r["n_est"] == 60
    mc = [r for r in rows if r["estimator"] == "mcculloch"]
    assert all(abs(r["bias"]) < 0.1 and r["share_gt2"] == 0 for r in mc)
    # a cell's samples do not depend on the other cells requested
    again = V.run_validation(sizes=[400], alphas=[1.9], n_params=60, seed=3)
    assert again == [r for r in rows if r["alpha"] == 1.9]
    table = V.format_table(rows)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(rows) and lines[0].startswith("| estimator | n | alpha")


def test_cli_validate_estimators(tmp_path, capsys):
    out = tmp_path / "table.md"
    with pytest.raises(SystemExit) as ex:
        main(
            [
                "validate-estimators",
                "--sizes",
                "100",
                "--alphas",
                "1.5",
                "--n-params",
                "20",
                "--out",
                str(out),
            ]
        )
    assert ex.value.code == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    assert "| mohammadi-k1_paper | 100 | 1.5 | 20 |" in printed
    with pytest.raises(SystemExit) as ex:
        main(["validate-estimators", "--sizes", "10,x"])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --sizes") and "\n" not in err


def test_sparse_validation_finds_planted_parameters_and_recovers_the_median():
    from sgnlake.analyze.validation import SPARSE_COLUMNS, format_sparse_table, sparse_validation

    rows = sparse_validation(sizes=(100,), alphas=(1.3, 1.7), n_params=1500, share=0.15, seed=3)
    for r in rows:
        assert set(r) == set(SPARSE_COLUMNS)
        assert r["precision"] == 1.0 and r["recall"] >= 0.95, r
        # the planted parameters pull the median down; without the flagged ones it is the true-only median
        assert r["median_all"] < r["median_clean"] - 0.02
        assert abs(r["median_clean"] - r["median_true_only"]) < 0.01
        assert r["median_lo"] <= r["median_clean"] <= r["median_hi"]
        assert abs(r["median_clean"] - r["alpha"]) < 0.1  # the estimator's own bias at M = 100 only
    assert format_sparse_table(rows).count("\n") == 2 + len(rows)
