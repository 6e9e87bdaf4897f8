"""Kernels of sgnlake.analyze.kernels against independent computations (numpy loops, scipy)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hst

from sgnlake.analyze import kernels as K
from sgnlake.analyze.validation import stable_rvs
from sgnlake.schema.errors import ConfigError

RNG_SEED = 1234


def _stable(alpha: float, shape: tuple[int, ...], seed: int = 0, beta: float = 0.0) -> np.ndarray:
    return st.levy_stable.rvs(alpha, beta, size=shape, random_state=seed)


# ----------------------------------------------------------------------------- choose_k1


@pytest.mark.parametrize(
    ("n", "paper", "simsekli", "sqrt"),
    [
        (1, (1, 1), (1, 1), (1, 1)),
        (2, (1, 2), (1, 2), (1, 2)),
        (8, (2, 4), (2, 4), (2, 4)),
        (16, (4, 4), (4, 4), (4, 4)),
        (33, (3, 11), (3, 11), (5, 6)),
        (50, (5, 10), (5, 10), (7, 7)),
        (97, (1, 97), (1, 97), (9, 10)),
        (100, (10, 10), (10, 10), (10, 10)),
        (125, (5, 25), (5, 25), (11, 11)),
        (1200, (30, 40), (30, 40), (34, 35)),
        (60000, (240, 250), (240, 250), (244, 245)),
    ],
)
def test_choose_k1_hand_checked(n, paper, simsekli, sqrt):
    assert K.choose_k1(n, "paper") == paper
    assert K.choose_k1(n, "simsekli") == simsekli
    assert K.choose_k1(n, "sqrt") == sqrt


def test_choose_k1_rules_match_reference_code():
    for n in range(1, 400):
        # the paper's code: divisors <= n/2 plus n, argmin of |d - sqrt(n)|
        cands = np.array([d for d in range(1, n // 2 + 1) if n % d == 0] + [n])
        paper = int(cands[np.argmin(np.abs(cands - np.sqrt(n)))])
        # Simsekli's loop
        m = 1
        for i in range(1, 1 + int(np.sqrt(n))):
            if n % i == 0:
                m = i
        s = int(np.floor(np.sqrt(n)))
        assert K.choose_k1(n, "paper") == (paper, n // paper)
        assert K.choose_k1(n, "simsekli") == (m, n // m)
        assert K.choose_k1(n, "sqrt") == (s, n // s)
    assert K.choose_k1(100, 7) == (7, 14)


@pytest.mark.parametrize(("n", "rule"), [(0, "sqrt"), (10, "median"), (10, 0), (10, 11)])
def test_choose_k1_rejects(n, rule):
    with pytest.raises(ConfigError):
        K.choose_k1(n, rule)


# ----------------------------------------------------------------------------- Mohammadi


def _mohammadi_ref(row: np.ndarray, k1: int) -> float:
    """Mohammadi for one parameter written with reduceat; exact zeros left out."""
    k2 = len(row) // k1
    x = np.asarray(row[: k1 * k2], dtype=np.float64)
    y = np.add.reduceat(x, np.arange(0, k1 * k2, k1))
    lx = np.log(np.abs(x[x != 0]))
    ly = np.log(np.abs(y[y != 0]))
    inv = (ly.mean() - lx.mean()) / math.log(k1)
    return 1.0 / inv


@pytest.mark.parametrize("rule", ["paper", "simsekli", "sqrt", 7])
def test_mohammadi_matches_reference(rule):
    x = _stable(1.4, (40, 1200), seed=1)
    x[3, 17] = 0.0  # a few exact zeros in an otherwise live parameter
    x[4, :5] = 0.0
    k1, _ = K.choose_k1(1200, rule)
    ref = np.array([_mohammadi_ref(r, k1) for r in x])
    np.testing.assert_allclose(K.mohammadi(x, rule), ref, rtol=1e-12)
    np.testing.assert_allclose(K.mohammadi_inv(x, rule), 1.0 / ref, rtol=1e-12)
    assert np.isfinite(K.mohammadi(x, rule)[[3, 4]]).all()


def test_mohammadi_float32_accumulates_in_float64():
    x32 = _stable(1.6, (4, 3, 100), seed=2).astype(np.float32)
    got = K.mohammadi(x32)
    assert got.dtype == np.float64 and got.shape == (4, 3)
    np.testing.assert_allclose(got, K.mohammadi(x32.astype(np.float64)), rtol=1e-12)


def test_mohammadi_dead_give_nan_and_are_counted():
    x = _stable(1.5, (6, 100), seed=3)
    x[0] = 0.0  # dead ReLU unit
    x[1] = 0.25  # constant
    x[2, :] = np.nan  # no finite sample at all
    x[3, :99] = np.inf
    x[3, 99] = 1.0  # a single finite sample: no spread, dead
    got = K.mohammadi(x)
    assert np.isnan(got[:4]).all() and np.isfinite(got[4:]).all()
    np.testing.assert_array_equal(K.count_nonfinite(x), [0, 0, 100, 99, 0, 0])
    np.testing.assert_array_equal(K.dead_mask(x), [True, True, True, True, False, False])
    assert np.isnan(K.hill(x)[:4]).all() and np.isfinite(K.hill(x)[4:]).all()
    assert np.isnan(K.mcculloch(x)[:4]).all() and np.isfinite(K.mcculloch(x)[4:]).all()
    assert np.isnan(got).sum() == 4


# ----------------------------------------------------------------------------- non-finite samples


def _inject_nonfinite(x: np.ndarray, seed: int, frac: float = 0.03) -> np.ndarray:
    """A copy of ``x`` with NaN, +inf and -inf at random positions (about ``frac`` of them)."""
    rng = np.random.default_rng(seed)
    y = x.copy()
    hit = rng.uniform(size=y.shape) < frac
    y[hit] = rng.choice([np.nan, np.inf, -np.inf], size=int(hit.sum()))
    return y


def _mohammadi_dropping_ref(row: np.ndarray, k1: int) -> float:
    """alpha of :func:`_mohammadi_dropping_inv` (+inf where the estimate of 1/alpha is <= 0)."""
    inv = _mohammadi_dropping_inv(row, k1)
    return 1.0 / inv if inv > 0 else (np.nan if np.isnan(inv) else np.inf)


def _mohammadi_dropping_inv(row: np.ndarray, k1: int) -> float:
    """One parameter, brute force: non-finite X and the K1 blocks holding one dropped, zeros left out."""
    k2 = len(row) // k1
    x = np.asarray(row[: k1 * k2], dtype=np.float64)
    fin = x[np.isfinite(x)]
    if fin.size < 2 or fin.max() == fin.min():
        return np.nan
    ys = [blk.sum() for blk in x.reshape(k2, k1) if np.isfinite(blk).all()]
    lx = [math.log(abs(v)) for v in fin if v != 0]
    ly = [math.log(abs(v)) for v in ys if v != 0]
    if not lx or not ly:
        return np.nan
    return (sum(ly) / len(ly) - sum(lx) / len(lx)) / math.log(k1)


@pytest.mark.parametrize("rule", ["paper", "sqrt", 7])
def test_mohammadi_drops_nonfinite_samples(rule):
    x = _inject_nonfinite(_stable(1.4, (60, 120), seed=11), seed=12)
    x[0, :] = np.nan
    x[1, 5:] = -np.inf  # five finite samples left
    x[2, ::2] = np.nan  # every block holds a NaN: no Y, no estimate
    k1, _ = K.choose_k1(120, rule)
    ref = np.array([_mohammadi_dropping_ref(r, k1) for r in x])
    got = K.mohammadi(x, rule)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.isnan(got[[0, 2]]).all() and np.isfinite(got[3:]).sum() >= 50
    np.testing.assert_array_equal(K.count_nonfinite(x), (~np.isfinite(x)).sum(axis=1))
    x32 = x.astype(np.float32)
    ref32 = [_mohammadi_dropping_ref(r, k1) for r in x32.astype(np.float64)]
    np.testing.assert_allclose(K.mohammadi(x32, rule), ref32, rtol=1e-12)


def test_nonfinite_samples_barely_move_alpha():
    """Dropping a few samples keeps the estimate of the parameter (not NaN, not averaged in)."""
    x = _stable(1.5, (200, 1200), seed=13)
    y = _inject_nonfinite(x, seed=14, frac=0.002)
    a, b = K.mohammadi(x), K.mohammadi(y)
    assert np.isfinite(b).all()
    assert np.median(np.abs(b - a)) < 0.02


def test_hill_drops_nonfinite_samples():
    x = _inject_nonfinite(_stable(1.5, (30, 250), seed=15), seed=16, frac=0.05)
    x[0] = np.inf
    x[1, 1:] = np.nan
    for k in (0.1, 20):
        ref = []
        for r in x:
            v = np.sort(np.abs(r[np.isfinite(r)]))[::-1]
            if v.size < 2:
                ref.append(np.nan)
                continue
            kk = int(math.floor(k * v.size)) if isinstance(k, float) else k
            kk = max(1, min(kk, v.size - 1))
            ref.append(1.0 / (np.mean(np.log(v[:kk])) - np.log(v[kk])))
        np.testing.assert_allclose(K.hill(x, k), ref, rtol=1e-12)


def test_mcculloch_and_gaussianity_drop_nonfinite_samples():
    x = _inject_nonfinite(_stable(1.3, (12, 300), seed=17), seed=18, frac=0.05)
    x[0, :295] = np.nan  # 5 finite samples: too few for the tests
    got = K.mcculloch(x)
    ref = np.array([st.levy_stable._fitstart(r[np.isfinite(r)]) for r in x])  # (alpha, beta, loc, scale)
    np.testing.assert_allclose(got, ref[:, [0, 1, 3, 2]], rtol=1e-6, atol=1e-9)
    p = K.gaussianity(x)
    assert np.isnan(p[0]).all()
    fin = [r[np.isfinite(r)] for r in x[1:]]
    np.testing.assert_allclose(p[1:, 0], [st.shapiro(v).pvalue for v in fin], rtol=1e-9)
    np.testing.assert_allclose(p[1:, 2], [st.normaltest(v).pvalue for v in fin], rtol=1e-9)
    np.testing.assert_allclose(
        p[1:, 1], [st.anderson(v, method="interpolate").pvalue for v in fin], rtol=1e-9
    )


def test_multivariate_drops_rows_with_nonfinite():
    x = _stable(1.5, (2, 120, 6), seed=19)
    x[0, 7, 2] = np.nan
    x[0, 50, 0] = np.inf
    k1, k2 = K.choose_k1(120, "simsekli")
    r = x[0]
    ok = np.isfinite(r).all(axis=1)
    blocks = r.reshape(k2, k1, 6)
    bok = ok.reshape(k2, k1).all(axis=1)
    ly = np.log(np.linalg.norm(blocks[bok].sum(axis=1), axis=1)).mean()
    lx = np.log(np.linalg.norm(r[ok], axis=1)).mean()
    got = K.multivariate(x, "simsekli")
    assert got[0] == pytest.approx(math.log(k1) / (ly - lx), rel=1e-12)
    assert got[1] == pytest.approx(_alpha_estimator_np(k1, x[1]), rel=1e-12)


def test_mohammadi_k1_one_is_nan():
    x = _stable(1.5, (3, 97), seed=4)  # prime: paper rule gives K1 = 1
    assert np.isnan(K.mohammadi(x, "paper")).all()
    assert np.isfinite(K.mohammadi(x, "sqrt")).all()


@settings(max_examples=25, deadline=None)
@given(
    k1=hst.integers(2, 9),
    k2=hst.integers(1, 12),
    cuts=hst.lists(hst.integers(1, 11), max_size=5),
    seed=hst.integers(0, 2**16),
)
def test_mohammadi_streaming_equals_whole(k1, k2, cuts, seed):
    rng = np.random.default_rng(seed)
    x = stable_rvs(1.3, (4, k1 * k2 + 3), rng)  # 3 trailing samples are left out
    x[0, 0] = 0.0
    x[3, rng.integers(0, k1 * k2, 2)] = [np.nan, np.inf]  # dropped with their blocks
    bounds = sorted({min(c, k2) * k1 for c in cuts} | {0, k1 * k2})
    parts = [K.mohammadi_chunk(x[:, a:b], k1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    got = K.mohammadi_finalize(K.mohammadi_combine(parts), k1)
    whole = K.mohammadi_finalize(K.mohammadi_chunk(x, k1, k2), k1)
    np.testing.assert_allclose(got, whole, rtol=1e-12)
    if k2 > 1:  # compare 1/alpha: alpha is +inf where the estimate of 1/alpha is <= 0
        inv = K.mohammadi_finalize(K.mohammadi_combine(parts), k1, inverse=True)
        ref = [_mohammadi_dropping_inv(r, k1) for r in x[:, : k1 * k2]]
        np.testing.assert_allclose(inv, ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(np.isinf(got), inv <= 0)


def test_mohammadi_chunk_requires_aligned_blocks():
    with pytest.raises(ValueError):
        K.mohammadi_chunk(np.ones((2, 7)), 3)


# ----------------------------------------------------------------------------- pooled / multivariate


def test_pooled_is_simsekli_flattening():
    x = _stable(1.3, (20, 30), seed=5)  # (minibatch, param)
    flat = x.reshape(-1)  # Simsekli: (grads - mean_grad).view(-1, 1)
    k1, _ = K.choose_k1(flat.size, "simsekli")
    assert K.pooled(x, "simsekli") == pytest.approx(_mohammadi_ref(flat, k1), rel=1e-12)
    stacked = np.stack([x, 2 * x[::-1]])  # (iteration, minibatch, param)
    got = K.pooled(stacked, "sqrt", axis=(1, 2))
    np.testing.assert_allclose(got, [K.pooled(stacked[0], "sqrt"), K.pooled(stacked[1], "sqrt")], rtol=1e-12)


def _alpha_estimator_np(m: int, X: np.ndarray) -> float:
    """Simsekli's utils.alpha_estimator in numpy, without the 2.2e-16 (no zero rows here)."""
    n = len(X) // m
    Y = np.sum(X.reshape(n, m, -1), axis=1)
    diff = (np.log(np.linalg.norm(Y, axis=1)).mean() - np.log(np.linalg.norm(X, axis=1)).mean()) / math.log(m)
    return 1 / diff


def test_multivariate_matches_simsekli():
    x = _stable(1.5, (2, 120, 6), seed=6)
    k1, _ = K.choose_k1(120, "simsekli")
    got = K.multivariate(x, "simsekli")
    np.testing.assert_allclose(got, [_alpha_estimator_np(k1, r) for r in x], rtol=1e-12)
    x[1] = 0.0
    assert np.isnan(K.multivariate(x)[1])


# ----------------------------------------------------------------------------- Hill


@pytest.mark.parametrize("k", [1, 25, 0.1, None])
def test_hill_matches_sorted_reference(k):
    x = _stable(1.5, (30, 250), seed=7)
    kk = K.hill_k(250, k)
    ref = []
    for r in x:
        s = np.sort(np.abs(r))[::-1]
        ref.append(1.0 / (np.mean(np.log(s[:kk])) - np.log(s[kk])))
    np.testing.assert_allclose(K.hill(x, k), ref, rtol=1e-12)


def test_hill_recovers_pareto_tail_and_does_not_clip():
    rng = np.random.default_rng(RNG_SEED)
    x = rng.pareto(1.5, size=(50, 20000)) + 1.0  # P(X > x) = x^-1.5 exactly
    assert np.median(K.hill(x, 0.1)) == pytest.approx(1.5, abs=0.03)
    g = rng.normal(size=(50, 2000))
    assert (K.hill(g) > 2).all()  # Gaussian tails: flagged, not clipped
    with pytest.raises(ConfigError):
        K.hill(x, 1.5)


# ----------------------------------------------------------------------------- McCulloch


@pytest.mark.parametrize(("alpha", "beta"), [(1.5, 0.0), (1.1, 0.6), (1.9, -0.3), (0.8, 1.0), (2.0, 0.0)])
def test_mcculloch_equals_scipy_fitstart(alpha, beta):
    x = _stable(alpha, (25, 400), seed=8, beta=beta)
    got = K.mcculloch(x)
    ref = np.array([st.levy_stable._fitstart(r) for r in x])  # (alpha, beta, loc, scale)
    np.testing.assert_allclose(got, ref[:, [0, 1, 3, 2]], rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- Gaussianity


def test_gaussianity_matches_scipy():
    rng = np.random.default_rng(RNG_SEED)
    x = np.concatenate([rng.normal(size=(15, 300)), rng.standard_t(3, size=(15, 300))])
    got = K.gaussianity(x.astype(np.float32))
    xf = x.astype(np.float32).astype(np.float64)
    sw = [st.shapiro(r).pvalue for r in xf]
    ad = [st.anderson(r, method="interpolate").pvalue for r in xf]
    k2 = st.normaltest(xf, axis=-1).pvalue
    z = (xf - xf.mean(-1, keepdims=True)) / xf.std(-1, ddof=1, keepdims=True)
    ks = st.kstest(z, "norm", axis=-1, method="asymp").pvalue
    np.testing.assert_allclose(got, np.stack([sw, ad, k2, ks], axis=-1), rtol=1e-9, atol=1e-12)
    dead = K.gaussianity(np.zeros((2, 50)))
    assert np.isnan(dead).all()


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(RNG_SEED)
    p = np.concatenate([rng.uniform(size=200), rng.uniform(0, 0.002, size=40)])
    for q in (0.01, 0.05, 0.2):
        np.testing.assert_array_equal(K.benjamini_hochberg(p, q), st.false_discovery_control(p) <= q)
    p2 = p.copy()
    p2[:10] = np.nan  # NaN: not tested, not counted
    keep = ~np.isnan(p2)
    got = K.benjamini_hochberg(p2, 0.05)
    assert not got[~keep].any()
    np.testing.assert_array_equal(got[keep], st.false_discovery_control(p2[keep]) <= 0.05)
    per_row = K.benjamini_hochberg(np.stack([p, p[::-1]]), 0.05, axis=1)
    np.testing.assert_array_equal(per_row[1], (st.false_discovery_control(p) <= 0.05)[::-1])


def test_gaussianity_summary_fractions():
    rng = np.random.default_rng(RNG_SEED)
    x = np.concatenate([rng.normal(size=(60, 400)), rng.standard_cauchy(size=(40, 400)), np.zeros((5, 400))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = K.gaussianity_summary(K.gaussianity(x), q=0.05)
    assert s["n_tested"].tolist() == [100.0] * 4
    # the 40 Cauchy parameters reject in every test; Gaussian ones rarely do
    assert ((s["fraction"] >= 0.38) & (s["fraction"] <= 0.45)).all()
    np.testing.assert_allclose(s["fraction"], s["n_rejected"] / 100)


# ----------------------------------------------------------------------------- summaries and recovery


@settings(max_examples=40, deadline=None)
@given(
    m=hst.integers(4, 60),
    p=hst.integers(1, 6),
    rule=hst.sampled_from(["paper", "sqrt", "simsekli", 2, 3]),
    seed=hst.integers(0, 2**16),
    f32=hst.booleans(),
)
def test_mohammadi_counted_is_the_kernel_and_its_count(m, p, rule, seed, f32):
    """The fused path's kernel: exactly mohammadi(_inv) and count_nonfinite, NaN/inf included."""
    rng = np.random.default_rng(seed)
    x = _inject_nonfinite(rng.standard_cauchy((p, m)), seed, frac=0.1)
    x[0, : m // 2] = 0.0
    if f32:
        x = x.astype(np.float32)
    k1, k2 = K.choose_k1(m, rule if isinstance(rule, str) else min(rule, m))
    for inverse, ref in ((False, K.mohammadi), (True, K.mohammadi_inv)):
        est, bad = K.mohammadi_counted(x, k1, k2, inverse=inverse)
        np.testing.assert_array_equal(est, ref(x, k1))
        np.testing.assert_array_equal(bad, np.count_nonzero(~np.isfinite(x), axis=-1))
        # a strided view (the stored layout) gives the same values: NaN/inf where they were, and at most
        # an ulp of summation order apart (numpy's pairwise/SIMD sums depend on the memory layout)
        est_t, bad_t = K.mohammadi_counted(np.ascontiguousarray(x.T).T, k1, k2, inverse=inverse)
        np.testing.assert_allclose(est_t, est, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(bad_t, bad)


@pytest.mark.parametrize("alpha", [1.2, 1.5, 1.8])
def test_synthetic_recovery_n1200(alpha):
    x = stable_rvs(alpha, (300, 1200), np.random.default_rng(int(alpha * 10)), dtype=np.float32)
    assert np.median(K.mohammadi(x)) == pytest.approx(alpha, abs=0.04)
    assert 1.0 / np.mean(K.mohammadi_inv(x)) == pytest.approx(alpha, abs=0.03)
    assert np.median(K.mcculloch(x)[:, 0]) == pytest.approx(alpha, abs=0.02)
    assert K.pooled(x) == pytest.approx(alpha, abs=0.03)


@pytest.mark.parametrize("f32", [True, False])
def test_all_zero_rows_take_the_masked_paths_values(f32):
    """All-zero parameters (dead units, border pixels) skip the masked redo: same statistics, same outputs."""
    rng = np.random.default_rng(7)
    m, p = 100, 700
    x = rng.standard_cauchy((m, p))  # the stored (M, P) layout
    dead = rng.random(p) < 0.4
    x[:, dead] = 0.0
    x[::3, np.flatnonzero(dead)[::2]] = -0.0  # signed zeros are zeros too
    x[:, 5] = np.where(rng.random(m) < 0.5, 0.0, x[:, 5])  # zeros but not all: still the masked path
    x[7, 6] = np.nan
    x = x.astype(np.float32 if f32 else np.float64)
    view = np.moveaxis(x[None], 1, -1)  # (1, P, M), as the fused path hands it over
    k1, k2 = K.choose_k1(m, "paper")
    stats = K.mohammadi_chunk(view, k1, k2)[0]
    redo = dead.copy()
    redo[[5, 6]] = True  # the rows the masked path computes (zeros or a non-finite sample)
    masked = K._mohammadi_chunk_masked(np.ascontiguousarray(x.T[redo], dtype=np.float64), k1, k2)
    # sums and counts bit for bit; min and max equal as numbers (the sign of zero is not read)
    np.testing.assert_array_equal(stats[redo, :5].view(np.int64), masked[:, :5].view(np.int64))
    np.testing.assert_array_equal(stats[redo, 5:], masked[:, 5:])
    alpha, bad, extras = K.mohammadi_outputs(view, k1, k2)
    assert np.isnan(alpha[0, dead]).all() and (bad[0, dead] == 0).all()
    assert (extras["n_distinct"][0, dead] == 0).all() and (extras["sparse"][0, dead] == 0).all()
    assert np.isnan(extras["max_share"][0, dead]).all()
    # the live parameters' outputs do not depend on the dead ones beside them
    live = np.flatnonzero(~dead)
    a2, b2, e2 = K.mohammadi_outputs(np.moveaxis(np.ascontiguousarray(x[:, live])[None], 1, -1), k1, k2)
    np.testing.assert_array_equal(alpha[:, live], a2)
    np.testing.assert_array_equal(bad[:, live], b2)
    for name, v in e2.items():
        np.testing.assert_array_equal(extras[name][:, live], v)
