"""xarray/Dask wrappers of sgnlake.analyze.estimators: numpy == dask, streaming, registry."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from sgnlake.analyze import estimators as E
from sgnlake.analyze import kernels as K
from sgnlake.analyze import strategies as S
from sgnlake.analyze.validation import stable_rvs
from sgnlake.schema.errors import ConfigError
from sgnlake.schema.names import check_run_id

SHAPE = (3, 60, 11)  # (iteration, minibatch, param)


def _sgn(shape=SHAPE, alpha=1.4, seed=0) -> xr.DataArray:
    x = stable_rvs(alpha, shape, np.random.default_rng(seed), dtype=np.float32)
    x[1, :, 4] = 0.0  # a dead parameter
    if shape == SHAPE:  # dropped samples
        x[0, 5, 2], x[2, 30, 7], x[1, 59, 9], x[1, 0, 9] = np.nan, np.inf, -np.inf, np.nan
    return xr.DataArray(
        x,
        dims=("iteration", "minibatch", "param"),
        coords={"iteration": [0, 100, 200][: shape[0]], "param": np.arange(shape[2])},
        name="sgn",
    )


def _chunking(draw, sizes):
    out = []
    for n in sizes:
        cuts = draw(hst.lists(hst.integers(1, n - 1), max_size=4)) if n > 1 else []
        edges = sorted({0, n, *cuts})
        out.append(tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True)))
    return tuple(out)


@hst.composite
def chunkings(draw):
    return _chunking(draw, SHAPE)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chunkings(), rule=hst.sampled_from(["paper", "sqrt", 7]))
def test_mohammadi_dask_equals_numpy_any_chunking(chunks, rule):
    da = _sgn()
    ref = E.estimate(da, "mohammadi", k1=rule)
    lazy = E.estimate(da.chunk(dict(zip(da.dims, chunks, strict=True))), "mohammadi", k1=rule)
    assert lazy.chunks is not None
    got = lazy.compute()
    assert got.dims == ("iteration", "param")
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12)
    np.testing.assert_array_equal(got["param"].values, da["param"].values)
    assert np.isnan(got.values[1, 4])
    assert np.isfinite(got.values[[0, 2, 1], [2, 7, 9]]).all()  # non-finite samples dropped, not NaN


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=chunkings(),
    name=hst.sampled_from(["mohammadi_inv", "hill", "mcculloch", "gaussianity", "pooled", "multivariate"]),
)
def test_other_estimators_dask_equals_numpy(chunks, name):
    da = _sgn()
    ref = E.estimate(da, name)
    got = E.estimate(da.chunk(dict(zip(da.dims, chunks, strict=True))), name).compute()
    assert got.dims == ref.dims
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12, atol=1e-300)


def test_estimate_matches_kernels_and_labels():
    da = _sgn()
    x = da.transpose("iteration", "param", "minibatch").values
    a = E.estimate(da)
    np.testing.assert_array_equal(a.values, K.mohammadi(x, E.DEFAULT_K1))
    assert a.name == "alpha"
    assert a.attrs["result_key"] == f"mohammadi-k1_{E.DEFAULT_K1}"
    assert (a.attrs["k1"], a.attrs["k2"]) == K.choose_k1(60, E.DEFAULT_K1)
    fit = E.estimate(da, "mcculloch")
    assert fit.dims == ("iteration", "param", "stable_param")
    assert list(fit["stable_param"].values) == ["alpha", "beta", "scale", "loc"]
    np.testing.assert_array_equal(fit.values, K.mcculloch(x))
    p = E.estimate(da, "gaussianity")
    assert list(p["test"].values) == ["shapiro", "anderson", "dagostino", "ks"]
    h = E.estimate(da, "hill", k=5)
    np.testing.assert_array_equal(h.values, K.hill(x, 5))
    pooled = E.estimate(da, "pooled", k1="simsekli")
    assert pooled.dims == ("iteration",)
    assert pooled.values[0] == pytest.approx(K.pooled(da.values[0], "simsekli"), rel=1e-12)
    mv = E.estimate(da, "multivariate", dim=("minibatch", "param"))
    np.testing.assert_allclose(mv.values, K.multivariate(da.values), rtol=1e-12)


def test_mohammadi_streams_without_one_chunk(monkeypatch):
    da = _sgn((2, 120, 5))
    seen: list[int] = []
    real = K.mohammadi_chunk

    def spy(block, k1, k2=None):
        seen.append(block.shape[-1])
        return real(block, k1, k2)

    monkeypatch.setattr(K, "mohammadi_chunk", spy)
    with dask.config.set(scheduler="synchronous"):
        got = E.estimate(da.chunk({"minibatch": 25}), "mohammadi", k1="paper").compute()
    k1, _ = K.choose_k1(120, "paper")
    assert seen and max(seen) < 120  # never the whole minibatch dim at once
    assert all(n % k1 == 0 for n in seen)
    np.testing.assert_allclose(
        got.values, K.mohammadi(da.transpose(..., "minibatch").values, "paper"), rtol=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(
    k1=hst.integers(1, 9),
    k2=hst.integers(1, 30),
    cuts=hst.lists(hst.integers(1, 300), max_size=6),
)
def test_aligned_chunks(k1, k2, cuts):
    total = k1 * k2
    edges = sorted({0, total, *(c % total for c in cuts)})
    chunks = tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a)
    got = S.aligned_chunks(chunks, k1)
    assert sum(got) == total and all(c > 0 and c % k1 == 0 for c in got)


def test_settings_registry_and_keys():
    assert set(E.ESTIMATORS) >= {"mohammadi", "mohammadi_inv", "hill", "mcculloch", "gaussianity", "pooled"}
    assert E.ESTIMATORS["mohammadi"].defaults == {"k1": E.DEFAULT_K1}
    assert E.result_key("mohammadi", k1="sqrt") == "mohammadi-k1_sqrt"
    assert E.result_key("mohammadi", k1="30") == "mohammadi-k1_30"
    assert E.result_key("hill") == f"hill-k_{K.DEFAULT_HILL_K}"
    assert E.result_key("hill", k="0.05") == "hill-k_0.05"
    assert E.result_key("mcculloch") == "mcculloch"
    for name, spec in E.ESTIMATORS.items():
        check_run_id(E.result_key(name, **spec.defaults))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda da: E.estimate(da, "levy"), "unknown estimator"),
        (lambda da: E.estimate(da, "hill", k1="sqrt"), "unknown setting"),
        (lambda da: E.estimate(da, "mohammadi", k1="median"), "unknown k1"),
        (lambda da: E.estimate(da, "mohammadi", k1=1), "too small"),
        (lambda da: E.estimate(da, "hill", k=2.5), "Hill k"),
        (lambda da: E.estimate(da, dim="sample"), "not in the data"),
        (lambda da: E.estimate(da.isel(minibatch=slice(0, 59)), k1="paper"), "prime"),
    ],
)
def test_estimate_errors_are_one_line(call, match):
    with pytest.raises(ConfigError, match=match) as info:
        call(_sgn())
    assert "\n" not in str(info.value)


def test_registry_owns_per_parameter_and_alpha():
    assert E.per_parameter_estimators() == ["mohammadi", "mohammadi_inv", "hill", "mcculloch", "gaussianity"]
    assert E.alpha_estimators() == ["mohammadi", "hill", "mcculloch"]
    assert E.check_estimator("hill") is E.ESTIMATORS["hill"]
    with pytest.raises(ConfigError, match="per-snapshot estimator 'pooled'"):
        E.check_estimator("pooled")
    with pytest.raises(ConfigError, match="unknown estimator 'levy'"):
        E.check_estimator("levy")
    with pytest.raises(ConfigError, match="gives no per-parameter alpha"):
        E.check_estimator("mohammadi_inv", alpha=True)
    assert E.ESTIMATORS["pooled"].default_dims == ("minibatch", "param")
    assert [n for n, e in E.ESTIMATORS.items() if e.fused is not None] == ["mohammadi", "mohammadi_inv"]
    assert {n: e.pooled for n, e in E.ESTIMATORS.items() if e.pooled} == {"mohammadi": "pooled"}
    assert all(E.ESTIMATORS[e.pooled].per_parameter is False for e in E.ESTIMATORS.values() if e.pooled)


def test_alpha_fn_matches_kernels():
    x = np.moveaxis(_sgn().values, 1, -1)
    np.testing.assert_array_equal(E.get("mohammadi").alpha_fn(k1="sqrt")(x), K.mohammadi(x, "sqrt"))
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(E.get("mohammadi_inv").alpha_fn()(x), 1.0 / K.mohammadi_inv(x))
    np.testing.assert_array_equal(E.get("hill").alpha_fn(k=5)(x), K.hill(x, 5))
    np.testing.assert_array_equal(E.get("mcculloch").alpha_fn()(x), K.mcculloch(x)[..., 0])
    for name in ("gaussianity", "pooled"):
        with pytest.raises(ConfigError, match="no per-parameter alpha"):
            E.get(name).alpha_fn()


@pytest.mark.parametrize(
    ("estimator", "options", "expected"),
    [
        ("mohammadi", {"--k1": " 30 ", "--hill-k": None}, {"k1": 30}),
        ("mohammadi_inv", {"--k1": "sqrt"}, {"k1": "sqrt"}),
        ("hill", {"--k1": None, "--hill-k": "10.0"}, {"k": 10}),
        ("hill", {"--hill-k": "0.05"}, {"k": 0.05}),
        ("mcculloch", {"--k1": None, "--hill-k": None}, {}),
    ],
)
def test_settings_from_options(estimator, options, expected):
    got = E.settings_from_options(estimator, options)
    assert got == expected and type(got.get("k")) is type(expected.get("k"))


@pytest.mark.parametrize(
    ("estimator", "options", "match"),
    [
        ("hill", {"--k1": "5"}, "--k1 applies to the mohammadi and mohammadi_inv estimator, not 'hill'"),
        ("mohammadi", {"--hill-k": "5"}, "--hill-k applies to the hill estimator"),
        ("hill", {"--hill-k": "lots"}, "--hill-k 'lots': Hill k"),
        ("mohammadi", {"--k1": "1"}, "--k1 '1': k1 = 1 is too small"),
    ],
)
def test_settings_from_options_errors_name_the_option(estimator, options, match):
    with pytest.raises(ConfigError, match=match) as info:
        E.settings_from_options(estimator, options)
    assert "\n" not in str(info.value)
