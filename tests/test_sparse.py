"""Degenerate (sparse) parameters, the stored 1/alpha, the paper's mean and the median interval.

Oracles: Python loops over ``set()`` of the samples, the paper's ``alpha_estimator``
written out in numpy (log(|x| + eps) means, ``1/diff`` kept negative), plain Zarr reads
of the stored SGN, and repeated draws from a law with a known median.
"""

from __future__ import annotations

import math

import dask.array
import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from lake_fixtures import RunSpec, read_sgn_plain, write_lake

from sgnlake.analyze import aggregate as A
from sgnlake.analyze import estimators as E
from sgnlake.analyze import kernels as K
from sgnlake.analyze import open_lake
from sgnlake.analyze.stored import stored_meta

EPS = np.spacing(1)


def _paper_inv(row: np.ndarray, m: int) -> float:
    """1/alpha of the authors' ``alpha_estimator(m, X)`` for one parameter (1-D X), in numpy."""
    x = np.asarray(row, dtype=np.float64)
    n = len(x) // m
    y = x[: n * m].reshape(n, m).sum(axis=1)
    return (np.log(np.abs(y) + EPS).mean() - np.log(np.abs(x[: n * m]) + EPS).mean()) / math.log(m)


def _planted(rng: np.random.Generator, p: int, m: int, n_sparse: int) -> tuple[np.ndarray, np.ndarray]:
    """Cauchy SGN with ``n_sparse`` planted edge-pixel parameters (constant but for 1-4 samples)."""
    x = rng.standard_cauchy((p, m))
    planted = rng.choice(p, n_sparse, replace=False)
    for j in planted:
        row = np.full(m, -rng.uniform(0.01, 0.1))
        hits = rng.choice(m, rng.integers(1, 5), replace=False)
        row[hits] = rng.standard_cauchy(len(hits)) * 10
        x[j] = row
    truth = np.zeros(p, dtype=bool)
    truth[planted] = True
    return x, truth


# ---------------------------------------------------------------------------- kernels


def test_sparse_kernels_against_python_loops():
    rng = np.random.default_rng(0)
    x, truth = _planted(rng, 60, 40, 12)
    x[0] = 0.0  # dead: not sparse, no distinct value
    x[1, :5] = np.nan  # non-finite samples are left out
    x[2] = 3.0  # dead (constant)
    x[3, ::2] = 0.0  # half zero: 20 distinct of 40 finite -> not sparse (20 >= 0.5 * 40)
    x[4, :21] = 0.0  # 19 distinct non-zero of 40 -> sparse
    nd = K.n_distinct(x)
    share = K.max_share(x)
    sp = K.sparse_mask(x)
    for i, row in enumerate(x):
        fin = row[np.isfinite(row)]
        assert nd[i] == len({v for v in fin if v != 0})
        a = np.abs(fin)
        assert share[i] == pytest.approx(a.max() / a.sum()) if a.sum() > 0 else np.isnan(share[i])
        dead = len(set(fin)) < 2
        assert sp[i] == (not dead and nd[i] < 0.5 * len(fin))
    rest = ~np.isin(np.arange(60), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(sp[rest], truth[rest])  # planted found, Cauchy rows not flagged
    assert sp[4] and not sp[3] and not sp[0] and not sp[2]
    outs = K.sparse_outputs(x)
    np.testing.assert_array_equal(outs["n_distinct"], nd)
    np.testing.assert_array_equal(outs["sparse"], sp.astype(np.int8))
    assert outs["n_distinct"].dtype == np.int32 and outs["sparse"].dtype == np.int8


def _sparse_oracle(row: np.ndarray) -> tuple[int, np.float32, int]:
    """(n_distinct, max_share as stored, sparse) of one parameter by Python sets and numpy's own sum."""
    fin = row[np.isfinite(row)]
    nd = len({float(v) for v in fin if v != 0})
    a = np.abs(fin)
    share = np.float32(a.max() / a.sum(dtype=np.float64)) if a.sum() > 0 else np.float32(np.nan)
    dead = len(set(fin.tolist())) < 2
    return nd, share, int(not dead and nd < 0.5 * len(fin))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [5, 7, 40, 37, 129, 300])
def test_sparse_outputs_in_the_stored_layout_equal_python_sets(dtype, m):
    """Rows or the stored (minibatch, param) layout, NaN/inf/+-0/ties: exact counts, max_share bit for bit."""
    rng = np.random.default_rng(m)
    x, _ = _planted(rng, 700, m, 90)
    x[rng.random(x.shape) < 0.1] = 0.0
    x[rng.random(x.shape) < 0.03] = -0.0
    x[:50] = np.round(x[:50] * 2) / 2  # many ties
    x[50:60][rng.random((10, m)) < 0.2] = np.nan
    x[60:65][rng.random((5, m)) < 0.2] = np.inf
    x[65], x[66], x[67] = np.nan, 0.0, -2.0
    x = x.astype(dtype)
    want = [_sparse_oracle(r) for r in x]
    stored = np.moveaxis(np.ascontiguousarray(x.T)[None], 1, -1)  # (1, p, M) view of (1, M, p)
    for view in (x, stored):
        got = K.sparse_outputs(view)
        np.testing.assert_array_equal(got["n_distinct"].reshape(-1), [w[0] for w in want])
        np.testing.assert_array_equal(got["max_share"].reshape(-1), np.array([w[1] for w in want]))
        np.testing.assert_array_equal(got["sparse"].reshape(-1), [w[2] for w in want])
    if m >= 4:  # the fused kernel shares its statistics with the classification: same values
        for rule in ("paper", "sqrt"):
            k1, k2 = K.choose_k1(m, rule)
            _, _, ext = K.mohammadi_outputs(stored, k1, k2)
            for name, arr in K.sparse_outputs(x).items():
                np.testing.assert_array_equal(ext[name].reshape(-1), arr, err_msg=f"{name} {rule}")


@pytest.mark.parametrize("n", [1, 5, 8, 9, 100, 127, 128, 129, 1200, 4096])
def test_pairwise_abs_sum_is_numpys_row_sum(n):
    """The column-wise sum behind max_share adds in numpy's pairwise order: equal bit for bit."""
    rng = np.random.default_rng(n)
    x = np.abs(rng.standard_cauchy((300, n))).astype(np.float32)
    want = x.sum(axis=-1, dtype=np.float64)
    np.testing.assert_array_equal(K._pairwise_abs_sum(np.ascontiguousarray(x.T)), want)
    np.testing.assert_array_equal(K._pairwise_abs_sum(x.T.astype(np.float64)), want)


def test_inv_alpha_is_the_papers_formula_negatives_kept():
    rng = np.random.default_rng(1)
    x = rng.standard_cauchy((400, 16)) * 1e-3
    x[:300] = rng.uniform(-1, 1, (300, 16))  # light tails, M = 16: some estimates of 1/alpha < 0
    est = E.get("mohammadi")
    params = est.plan((16,), ("minibatch",), est.resolve())
    alpha, bad, extras = K.mohammadi_outputs(x, **params)
    ref = np.array([_paper_inv(r, params["k1"]) for r in x])
    np.testing.assert_allclose(extras["inv_alpha"], ref, rtol=1e-9)
    np.testing.assert_allclose(E.get("mohammadi_inv").kernel(x), ref, rtol=1e-9)
    neg = ref < 0
    assert neg.sum() >= 3, "the test needs negative estimates"
    assert (extras["inv_alpha"][neg] < 0).all()
    assert alpha[neg].tolist() == [np.inf] * int(neg.sum())
    np.testing.assert_allclose(alpha[~neg], 1 / ref[~neg], rtol=1e-9)
    assert (bad == 0).all()


def test_a_constant_sample_gives_alpha_one():
    """Why the spike: an (almost) constant sample has log|Y| = log(K1 c), so 1/alpha -> 1."""
    x = np.full((1, 100), -0.02)
    x[0, 7] = 3.0
    assert K.mohammadi(x)[0] == pytest.approx(1.0, abs=0.15)
    assert K.sparse_mask(x)[0]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=hst.lists(hst.integers(1, 39), max_size=3),
    pcuts=hst.lists(hst.integers(1, 29), max_size=2),
    seed=hst.integers(0, 2**16),
)
def test_extras_dask_equal_numpy_for_any_chunking(cuts, pcuts, seed):
    rng = np.random.default_rng(seed)
    x, _ = _planted(rng, 30, 40, 8)
    x = np.stack([x.T, x.T[::-1]]).astype(np.float32)  # (iteration, minibatch, param)
    x[0, :3, 5] = np.nan

    def chunks(n, c):
        e = sorted({0, n, *c})
        return tuple(b - a for a, b in zip(e[:-1], e[1:], strict=True))

    da = xr.DataArray(
        dask.array.from_array(x, chunks=(1, chunks(40, cuts), chunks(30, pcuts))),
        dims=("iteration", "minibatch", "param"),
    )
    got = E.estimate_extras(da, "mohammadi", k1="sqrt")
    k1, k2 = K.choose_k1(40, "sqrt")
    alpha, _, want = K.mohammadi_outputs(np.moveaxis(x, 1, -1), k1, k2)
    assert set(got) == set(want) == {e.name for e in E.get("mohammadi").extras}
    for name, arr in got.items():
        assert arr.dtype == want[name].dtype, name
        if name == "inv_alpha":  # float64 sums in another memory order: within an ulp
            np.testing.assert_allclose(arr.values, want[name], rtol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(arr.values, want[name], err_msg=name)
    np.testing.assert_allclose(E.estimate(da, "mohammadi", k1="sqrt").values, alpha, rtol=1e-12)


# ---------------------------------------------------------------------------- aggregate


def test_group_stats_sparse_and_paper_mean():
    alpha = np.array([[1.5, 1.0, np.nan, 2.5, np.inf, 1.2]])
    inv = np.array([[1 / 1.5, 1.0, np.nan, 0.4, -0.5, 1 / 1.2]])
    sparse = np.array([[0, 1, 0, 0, 0, -1]])  # -1: unknown, taken as not sparse
    st = A.group_stats(alpha, inv=inv, sparse=sparse)
    used = [0, 3, 4, 5]
    assert st["n"][0] == 4 and st["n_sparse"][0] == 1 and st["n_nan"][0] == 1
    assert st["median"][0] == pytest.approx(np.median(alpha[0, used]))
    assert st["mean_inv"][0] == pytest.approx(np.mean(inv[0, used]))
    assert st["paper_mean"][0] == pytest.approx(np.mean(1 / inv[0, used]))  # -2 included
    both = A.group_stats(alpha, inv=inv, sparse=sparse, include_sparse=True)
    assert both["n"][0] == 5 and both["median"][0] == pytest.approx(np.median(alpha[0, [0, 1, 3, 4, 5]]))
    old = A.group_stats(alpha)  # no inv_alpha stored: paper_mean NaN
    assert np.isnan(old["paper_mean"][0]) and old["n_sparse"][0] == 0


def test_median_interval_covers_95_percent():
    """Over 4000 repeated draws of 301 Pareto-like alphas the 95% interval holds the true median ~95%."""
    rng = np.random.default_rng(5)
    draws = 1.0 + rng.standard_exponential((4000, 301))  # median 1 + ln 2
    draws[:, :20] = np.nan  # NaN left out
    lo, hi = A.median_interval(draws)
    cover = np.mean((lo <= 1 + math.log(2)) & (1 + math.log(2) <= hi))
    assert 0.935 <= cover <= 0.975, cover
    st = A.group_stats(draws[:3])
    np.testing.assert_array_equal(st["median_lo"], lo[:3])


def test_mean_inv_interval_covers_95_percent():
    rng = np.random.default_rng(6)
    inv = rng.normal(0.7, 0.2, (4000, 200))
    st = A.group_stats(1 / inv, inv=inv)
    cover = np.mean((st["mean_inv_lo"] <= 0.7) & (0.7 <= st["mean_inv_hi"]))
    assert 0.935 <= cover <= 0.965, cover


# ---------------------------------------------------------------------------- through the lake


@pytest.fixture
def sparse_lake(tmp_path) -> str:
    path = write_lake(str(tmp_path / "lake"), [RunSpec("a", n_minibatches=40)])
    root = zarr.open_group(path, mode="r+")
    sgn = root["runs/a/fc1.weight/sgn"]
    x = np.asarray(sgn[:])
    x[:, :, :6] = -0.05  # planted edge pixels: constant but for one big sample
    x[:, 3, :6] = 7.0
    sgn[:] = x
    return path


def test_stored_outputs_fused_equal_lazy_and_paper_mean_on_stored_sgn(sparse_lake):
    lake = open_lake(sparse_lake)
    lazy = lake.result("a").compute()
    rep = lake.compute_alpha(runs="a", progress=False)
    stored = lake.result("a")
    last = lake.summary("a", by="model").iloc[-1]
    assert rep.runs[0].sparse_last == last["n_sparse"] == 6
    assert rep.runs[0].median_alpha_last == pytest.approx(last["median"], rel=1e-12)
    assert stored.attrs["n_stored"] == 4
    np.testing.assert_allclose(stored["inv_alpha"].values, lazy["inv_alpha"].values, rtol=1e-12)
    for name in ("n_distinct", "max_share", "sparse"):
        np.testing.assert_array_equal(stored[name].values, lazy[name].values, err_msg=name)
    a, inv = stored["alpha"].values, stored["inv_alpha"].values
    np.testing.assert_allclose(a[inv > 0], 1 / inv[inv > 0], rtol=1e-12)
    assert (inv <= 0).any() and np.isposinf(a[inv <= 0]).all()  # negatives kept in inv_alpha only
    first = stored.isel(param=stored["tensor"] == "fc1.weight")
    assert (first["sparse"].values[:, :6] == 1).all() and first["sparse"].values[:, 6:].sum() == 0
    # the paper's mean from the stored SGN, with the paper's formula
    x, _ = read_sgn_plain(sparse_lake, "a", "fc1.weight")
    k1 = lazy.attrs.get("k1") or K.choose_k1(x.shape[1], "paper")[0]
    inv = np.array([[_paper_inv(x[i, :, j], k1) for j in range(x.shape[2])] for i in range(x.shape[0])])
    s_all = lake.summary("a", by="tensor", include_sparse=True)
    row = s_all[s_all.group == "fc1.weight"]
    np.testing.assert_allclose(row["paper_mean"].values, np.mean(1 / inv, axis=1), rtol=1e-6)
    s = lake.summary("a", by="tensor")
    row = s[s.group == "fc1.weight"]
    assert (row["n_sparse"] == 6).all()
    np.testing.assert_allclose(row["paper_mean"].values, np.mean(1 / inv[:, 6:], axis=1), rtol=1e-6)
    alpha = np.where(inv > 0, 1 / inv, np.inf)  # sgnlake's alpha: +inf where the estimate of 1/alpha <= 0
    np.testing.assert_allclose(row["median"].values, np.median(alpha[:, 6:], axis=1), rtol=1e-6)
    np.testing.assert_allclose(
        s_all[s_all.group == "fc1.weight"]["median"], np.median(alpha, axis=1), rtol=1e-6
    )


def test_result_without_extras_is_recomputed(sparse_lake):
    """A result stored before inv_alpha/sparse existed is not taken as up to date (recomputed)."""
    lake = open_lake(sparse_lake)
    lake.compute_alpha(runs="a", progress=False)
    key = lake.result("a").attrs["key"]
    kg = zarr.open_group(sparse_lake, mode="r+")[f"results/a/{key}"]
    gen = kg.attrs.get("sgnlake_generation")  # the published generation (i12), or none (older lakes)
    del (kg[gen] if gen else kg)["fc1.weight"]["inv_alpha"]  # as written before inv_alpha existed
    lake = open_lake(sparse_lake)
    assert stored_meta(lake, "a", key) is None
    assert lake.result("a").attrs["n_stored"] == 0  # read: computed lazily from the SGN
    rep = lake.compute_alpha(runs="a", progress=False)
    assert rep.runs[0].action == "computed"
    g, _ = stored_meta(open_lake(sparse_lake), "a", key)
    assert "inv_alpha" in g["fc1.weight"]
