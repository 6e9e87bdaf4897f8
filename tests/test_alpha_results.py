"""Stored alpha results: values against brute-force numpy on plain Zarr reads, reuse, growth, crashes."""

from __future__ import annotations

import shutil

import dask
import dask.array
import dask.threaded
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from lake_fixtures import (
    RunSpec,
    grow_run,
    mohammadi_oracle,
    plain_attrs,
    published,
    read_sgn_plain,
    write_lake,
)

from sgnlake.analyze import dask_client, open_lake
from sgnlake.analyze import results as results_mod
from sgnlake.schema.errors import ConfigError, LakeError

TENSORS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
DEAD = {"fc1.weight": [3, 5], "fc2.bias": [1]}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    return write_lake(
        str(tmp_path_factory.mktemp("template") / "lake"),
        [RunSpec("a", committed=3, dead=DEAD), RunSpec("b", seed=1, batch_size=100)],
    )


@pytest.fixture
def lake_path(template, tmp_path) -> str:
    """A fresh copy of the template lake for each test (tests write results into it)."""
    return shutil.copytree(template, tmp_path / "lake").as_posix()


class CountingScheduler:
    """Dask's threaded scheduler, counting the graphs it runs."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return dask.threaded.get(*args, **kwargs)


def _raise(*args, **kwargs):
    raise AssertionError("nothing should be computed")


def _oracle(path: str, run: str, tensor: str, k1: int) -> np.ndarray:
    x, _ = read_sgn_plain(path, run, tensor)
    return mohammadi_oracle(x, k1, axis=1)


def _key(estimator: str = "mohammadi", **settings) -> str:
    return results_mod.result_key(estimator, **settings)


def test_stored_alpha_equals_brute_force_and_kernel(lake_path):
    from sgnlake.analyze import kernels

    lake = open_lake(lake_path)
    report = lake.compute_alpha(k1=5, progress=False)
    key = _key(k1=5)
    assert [r.action for r in report.runs] == ["computed", "computed"]
    assert [r.snapshots for r in report.runs] == [3, 4] and report.runs[0].params == 131
    raw = zarr.open_group(lake_path, mode="r")
    for run in ("a", "b"):
        for t in TENSORS:
            x, its = read_sgn_plain(lake_path, run, t)
            expected = mohammadi_oracle(x, 5, axis=1)
            np.testing.assert_allclose(kernels.mohammadi(np.moveaxis(x, 1, -1), 5), expected, rtol=1e-10)
            stored = raw[f"{published(lake_path, run, key)}/{t}/alpha"][:]
            np.testing.assert_allclose(stored, expected, rtol=1e-10)
            got = lake.alpha(run, k1=5, tensor=t)
            assert got.attrs["n_stored"] == len(its)
            np.testing.assert_allclose(got.values, expected, rtol=1e-10)
        np.testing.assert_array_equal(raw[f"{published(lake_path, run, key)}/iteration"][:], its)
    # dead parameters are NaN, counted at the last snapshot
    a = lake.alpha("a", k1=5)
    assert np.isnan(a.sel(param=a["tensor"] == "fc1.weight").values[:, [3, 5]]).all()
    assert report.runs[0].dead_last == 3 and report.runs[1].dead_last == 0
    last = a.isel(iteration=-1).values
    assert report.runs[0].median_alpha_last == pytest.approx(np.nanmedian(last))
    meta = plain_attrs(lake_path, f"results/a/{key}")["sgnlake_result"]
    assert meta["estimator"] == "mohammadi" and meta["n_iterations"] == 3 and meta["run_id"] == "a"
    assert meta["settings"] == {"k1": 5} and meta["created"]


@pytest.mark.parametrize(("rule", "k1"), [("paper", 5), ("sqrt", 6), ("simsekli", 5)])
def test_k1_rules_follow_the_published_choices(lake_path, rule, k1):
    # M = 40: divisors <= 20 closest to sqrt(40) = 6.32 -> 5 (paper); largest divisor <= 6 -> 5
    # (Simsekli); floor(sqrt(40)) = 6 (sqrt, first 36 samples)
    lake = open_lake(lake_path)
    got = lake.alpha("b", k1=rule, tensor="fc1.weight").values
    np.testing.assert_allclose(got, _oracle(lake_path, "b", "fc1.weight", k1), rtol=1e-10)


def test_lazy_alpha_stores_nothing(lake_path):
    lake = open_lake(lake_path)
    a = lake.alpha("a", k1=5)
    assert a.attrs["n_stored"] == 0 and a.chunks is not None
    assert a.dims == ("iteration", "param") and a.shape == (3, 131)
    expected = np.concatenate([_oracle(lake_path, "a", t, 5) for t in TENSORS], axis=1)
    np.testing.assert_allclose(a.values, expected, rtol=1e-10)
    assert "results" not in zarr.open_group(lake_path, mode="r")


def test_alpha_coords_and_tensor_selection(lake_path):
    lake = open_lake(lake_path)
    lake.compute_alpha(runs="a", k1=5, progress=False)
    a = lake.alpha("a", k1=5)
    assert list(a["param"].values) == list(range(131))
    assert list(pd.unique(a["tensor"].values)) == list(TENSORS)
    assert list(a["module"].values[[0, 96, 104, 128]]) == ["fc1", "fc1", "fc2", "fc2"]
    assert list(a["kind"].values[[0, 96]]) == ["weight", "bias"]
    assert list(a["index"].values[96:104]) == list(range(8))
    one = lake.alpha("a", k1=5, tensor="fc2.weight")
    assert one.shape == (3, 24) and set(one["tensor"].values) == {"fc2.weight"}
    np.testing.assert_array_equal(one.values, a.values[:, 104:128])


def test_second_call_computes_nothing_and_force_recomputes(lake_path):
    lake = open_lake(lake_path)
    lake.compute_alpha(k1=5, progress=False)
    key = _key(k1=5)
    created = plain_attrs(lake_path, f"results/a/{key}")["sgnlake_result"]["created"]
    with dask.config.set(scheduler=_raise):
        again = lake.compute_alpha(k1=5, progress=False)
    assert [r.action for r in again.runs] == ["up-to-date", "up-to-date"] and again.computed == 0
    assert plain_attrs(lake_path, f"results/a/{key}")["sgnlake_result"]["created"] == created
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        forced = lake.compute_alpha(runs=["a"], k1=5, force=True, progress=False)
    assert counter.calls >= 1 and forced.runs[0].action == "computed" and forced.computed == 3
    np.testing.assert_allclose(
        lake.alpha("a", k1=5, tensor="fc1.bias").values, _oracle(lake_path, "a", "fc1.bias", 5), rtol=1e-10
    )
    # other settings are another result, computed separately
    other = lake.compute_alpha(runs="a", k1=4, progress=False)
    assert other.runs[0].action == "computed" and other.key != key
    assert set(lake.stored_results()["key"]) == {key, other.key}


def test_grown_run_gets_only_new_snapshots(lake_path):
    lake = open_lake(lake_path)
    lake.compute_alpha(runs="b", k1=5, progress=False)
    key = _key(k1=5)
    before = zarr.open_group(lake_path, mode="r")[f"{published(lake_path, 'b', key)}/fc1.weight/alpha"][:]
    grow_run(lake_path, "b", [400, 500])
    lazy = open_lake(lake_path).alpha("b", k1=5)  # stored prefix + lazily computed rest
    assert lazy.attrs["n_stored"] == 4 and list(lazy["iteration"].values) == [0, 100, 200, 300, 400, 500]
    np.testing.assert_allclose(
        lazy.sel(param=lazy["tensor"] == "fc1.weight").values, _oracle(lake_path, "b", "fc1.weight", 5)
    )
    rep = lake.compute_alpha(runs="b", k1=5, progress=False)
    assert rep.runs[0].action == "appended" and rep.runs[0].computed == 2 and rep.runs[0].snapshots == 6
    raw = zarr.open_group(lake_path, mode="r")[published(lake_path, "b", key)]
    np.testing.assert_array_equal(raw["iteration"][:], [0, 100, 200, 300, 400, 500])
    after = raw["fc1.weight/alpha"][:]
    np.testing.assert_array_equal(after[:4], before)
    np.testing.assert_allclose(after, _oracle(lake_path, "b", "fc1.weight", 5), rtol=1e-10)
    assert plain_attrs(lake_path, f"results/b/{key}")["sgnlake_result"]["n_iterations"] == 6


def test_crashed_computation_is_never_taken_as_finished(lake_path, monkeypatch):
    lake = open_lake(lake_path)

    def crash(obj, progress, label=""):
        raise RuntimeError("killed")

    monkeypatch.setattr(results_mod, "run_graph", crash)
    with pytest.raises(RuntimeError):
        lake.compute_alpha(runs="a", k1=5, progress=False)
    table = lake.stored_results()
    assert list(table["finished"]) == [False] and "sgnlake_result" not in plain_attrs(
        lake_path, f"results/a/{_key(k1=5)}"
    )
    assert lake.alpha("a", k1=5).attrs["n_stored"] == 0  # not mistaken for a stored result
    monkeypatch.undo()
    rep = lake.compute_alpha(runs="a", k1=5, progress=False)
    assert rep.runs[0].action == "computed" and bool(lake.stored_results()["finished"].all())
    # a crash while appending leaves the published (shorter) result as it was: complete, valid
    lake.compute_alpha(runs="b", k1=5, progress=False)
    grow_run(lake_path, "b", [400])
    monkeypatch.setattr(results_mod, "run_graph", crash)
    with pytest.raises(RuntimeError):
        lake.compute_alpha(runs="b", k1=5, progress=False)
    assert plain_attrs(lake_path, f"results/b/{_key(k1=5)}")["sgnlake_result"]["n_iterations"] == 4
    monkeypatch.undo()
    lazy = open_lake(lake_path).alpha("b", k1=5)
    assert lazy.attrs["n_stored"] == 4
    np.testing.assert_allclose(
        lazy.sel(param=lazy["tensor"] == "fc1.weight").values,
        _oracle(lake_path, "b", "fc1.weight", 5),
        rtol=1e-10,
    )


def test_results_readable_by_plain_xarray(lake_path):
    lake = open_lake(lake_path)
    lake.compute_alpha(k1=5, progress=False)
    lake.compute_alpha(estimator="mcculloch", progress=False)
    key = _key(k1=5)
    dt = xr.open_datatree(lake_path, engine="zarr", consolidated=False)
    node = dt[f"{published(lake_path, 'a', key)}/fc1.weight"]
    assert node["alpha"].dims == ("iteration", "param")
    np.testing.assert_array_equal(node["iteration"].values, [0, 100, 200])
    np.testing.assert_allclose(node["alpha"].values, _oracle(lake_path, "a", "fc1.weight", 5), rtol=1e-10)
    ds = xr.open_zarr(lake_path, group=f"{published(lake_path, 'b', key)}/fc2.bias", consolidated=False)
    np.testing.assert_allclose(ds["alpha"].values, _oracle(lake_path, "b", "fc2.bias", 5), rtol=1e-10)
    mc = dt[f"{published(lake_path, 'a', _key('mcculloch'))}/fc2.weight"]
    assert {"alpha", "beta", "scale", "loc"} <= set(mc.data_vars)


def test_mcculloch_outputs_equal_kernel(lake_path):
    from sgnlake.analyze import kernels

    lake = open_lake(lake_path)
    lake.compute_alpha(runs="b", estimator="mcculloch", progress=False)
    ds = lake.result("b", estimator="mcculloch", tensor="fc1.weight")
    assert ds.attrs["n_stored"] == 4
    x, _ = read_sgn_plain(lake_path, "b", "fc1.weight")
    expected = kernels.mcculloch(np.moveaxis(x, 1, -1))
    for i, name in enumerate(kernels.STABLE_PARAMS):
        np.testing.assert_allclose(ds[name].values, expected[..., i], rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(
        lake.alpha("b", estimator="mcculloch", tensor="fc1.weight").values, expected[..., 0], rtol=1e-10
    )


def test_hill_equals_order_statistics_oracle(lake_path):
    lake = open_lake(lake_path)
    lake.compute_alpha(runs="a", estimator="hill", k=8, progress=False)
    got = lake.alpha("a", estimator="hill", k=8, tensor="fc1.weight")
    assert got.attrs["n_stored"] == 3
    x, _ = read_sgn_plain(lake_path, "a", "fc1.weight")
    s = -np.sort(-np.abs(np.moveaxis(x.astype(np.float64), 1, -1)), axis=-1)  # descending
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = 1.0 / (np.log(s[..., :8]).mean(axis=-1) - np.log(s[..., 8]))
    expected[np.all(x == 0, axis=1)] = np.nan
    np.testing.assert_allclose(got.values, expected, rtol=1e-10, equal_nan=True)


def test_summary_matches_pandas(lake_path):
    lake = open_lake(lake_path)
    lake.compute_alpha(k1=5, progress=False)
    from sgnlake.analyze.summary import SUMMARY_COLUMNS

    for by in ("module", "tensor", "model"):
        s = lake.summary(by=by, k1=5)
        assert list(s.columns) == list(SUMMARY_COLUMNS)
        for run in ("a", "b"):
            ds = lake.result(run, k1=5)[["alpha", "inv_alpha", "sparse"]].load()
            long = ds.to_dataframe()[
                ["alpha", "inv_alpha", "sparse", "tensor", "module", "kind"]
            ].reset_index()
            assert (long["sparse"] == 0).all()  # stable samples: no degenerate parameter
            long["g"] = "all" if by == "model" else long[by]
            fin = long[long["alpha"].notna()]
            grp = fin.groupby(["iteration", "g"])["alpha"]
            got = s[s["run_id"] == run].set_index(["iteration", "group"])
            assert len(got) == len(long.groupby(["iteration", "g"]))
            np.testing.assert_allclose(got.loc[grp.median().index, "median"], grp.median())
            np.testing.assert_allclose(got.loc[grp.mean().index, "mean"], grp.mean())
            # mean_inv: mean of the stored estimate of 1/alpha (negative estimates included)
            inv = fin["inv_alpha"].groupby([fin["iteration"], fin["g"]]).mean()
            np.testing.assert_allclose(got.loc[inv.index, "mean_inv"], inv)
            paper = (1.0 / fin["inv_alpha"]).groupby([fin["iteration"], fin["g"]]).mean()
            np.testing.assert_allclose(got.loc[paper.index, "paper_mean"], paper)
            pos = fin["inv_alpha"] > 0
            np.testing.assert_allclose(fin["alpha"][pos], 1.0 / fin["inv_alpha"][pos], rtol=1e-12)
            np.testing.assert_allclose(got.loc[inv.index, "alpha_from_mean_inv"], 1.0 / inv)
            counts = long.groupby(["iteration", "g"])["alpha"]
            assert (got.loc[counts.size().index, "n_nan"] == counts.apply(lambda v: v.isna().sum())).all()
            assert (got.loc[grp.size().index, "n"] == grp.size()).all()
            assert (got.loc[grp.size().index, "n_gt2"] == grp.apply(lambda v: (v > 2).sum())).all()
            assert set(got["batch_size"]) == {50 if run == "a" else 100}
    per_module = lake.summary(runs="a", k1=5, iterations=[100])
    assert list(per_module["group"]) == ["fc1", "fc2"] and set(per_module["iteration"]) == {100}
    assert list(per_module["n_nan"]) == [2, 1] and list(per_module["n_params"]) == [104, 27]
    with pytest.raises(ConfigError):
        lake.summary(by="layer")


def test_local_cluster_gives_the_threaded_numbers(lake_path):
    lake = open_lake(lake_path)
    threaded = lake.alpha("b", k1=5).values
    with dask_client(workers=2, processes=False, echo=None) as client:
        assert client is not None
        rep = lake.compute_alpha(runs="b", k1=5, progress=False)
        stored = lake.alpha("b", k1=5).values
    assert rep.runs[0].action == "computed"
    np.testing.assert_array_equal(stored, threaded)


def test_read_only_bad_estimator_bad_settings(lake_path, monkeypatch):
    ro = open_lake(lake_path, read_only=True)
    with pytest.raises(LakeError, match="read-only") as e:
        ro.compute_alpha(k1=5, progress=False)
    assert "\n" not in str(e.value)
    lake = open_lake(lake_path)
    with pytest.raises(ConfigError, match="unknown estimator"):
        lake.compute_alpha(estimator="nope")
    with pytest.raises(ConfigError):
        lake.compute_alpha(k1="golden", progress=False)
    # a store that refuses writes (read-only mount, bucket without write permission)
    from zarr.storage import LocalStore

    async def refuse(self, key, value, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(LocalStore, "set", refuse)
    with pytest.raises(LakeError, match="read-only") as e:
        open_lake(lake_path).compute_alpha(k1=5, progress=False)
    assert "\n" not in str(e.value)


def test_really_collected_lake(collected_lake, tmp_path):
    """A lake written by the real collector (tiny FCN, M = 10): stored alpha equals the brute force."""
    src, meta = collected_lake
    path = shutil.copytree(src, tmp_path / "lake").as_posix()
    lake = open_lake(path)
    rep = lake.compute_alpha(k1=2, progress=False)
    assert rep.runs[0].action == "computed" and rep.runs[0].snapshots == meta.committed
    a = lake.alpha("tiny", k1=2)
    assert a.attrs["n_stored"] == meta.committed
    assert a.sizes["param"] == sum(t.numel for t in meta.tensors)
    for t in meta.tensors:
        x, its = read_sgn_plain(path, "tiny", t.name)
        assert x.shape == (meta.committed, meta.n_minibatches, t.numel)
        np.testing.assert_allclose(
            a.sel(param=a["tensor"] == t.name).values, mohammadi_oracle(x, 2), rtol=1e-9, equal_nan=True
        )
        np.testing.assert_array_equal(a["iteration"].values, its)
    s = lake.summary(by="module", k1=2)
    assert set(s["group"]) == {t.module for t in meta.tensors} and set(s["batch_size"]) == {20}


def test_run_collected_again_under_same_id_is_recomputed(lake_path):
    lake = open_lake(lake_path)
    lake.compute_alpha(runs="a", k1=5, progress=False)
    g = zarr.open_group(lake_path, mode="r+")["runs/a"]
    doc = dict(g.attrs["sgnlake_run"])
    doc["created"] = "2030-01-01T00:00:00+00:00"  # same id and iterations, a new run
    g.attrs["sgnlake_run"] = doc
    assert lake.compute_alpha(runs="a", k1=5, progress=False).runs[0].action == "computed"
    meta = plain_attrs(lake_path, f"results/a/{_key(k1=5)}")["sgnlake_result"]
    assert meta["run_created"] == "2030-01-01T00:00:00+00:00"


def _dropping_oracle(x: np.ndarray, k1: int) -> np.ndarray:
    """Mohammadi per parameter of ``x`` (iteration, minibatch, param), brute force with explicit loops:
    non-finite samples leave the X mean, K1 blocks holding one leave the Y mean, zeros are left out."""
    out = np.full((x.shape[0], x.shape[2]), np.nan)
    k2 = x.shape[1] // k1
    for i in range(x.shape[0]):
        for p in range(x.shape[2]):
            v = x[i, : k1 * k2, p].astype(np.float64)
            fin = v[np.isfinite(v)]
            if fin.size < 2 or fin.min() == fin.max():
                continue
            ys = [b.sum() for b in v.reshape(k2, k1) if np.isfinite(b).all()]
            lx = np.log(np.abs(fin[fin != 0]))
            ly = np.log(np.abs([y for y in ys if y != 0]))
            if lx.size and ly.size:
                inv = (ly.mean() - lx.mean()) / np.log(k1)
                out[i, p] = 1.0 / inv if inv > 0 else np.inf
    return out


def test_nonfinite_samples_are_dropped_counted_and_summarised(lake_path):
    g = zarr.open_group(lake_path, mode="r+")
    rng = np.random.default_rng(7)
    sgn = g["runs/b/fc1.weight/sgn"]
    x = sgn[:]
    hit = rng.uniform(size=x.shape) < 0.01
    x[hit] = rng.choice([np.nan, np.inf, -np.inf], size=int(hit.sum()))
    x[2, :, 11] = np.nan  # no finite sample: dead at iteration 200
    sgn[:] = x
    bias = g["runs/b/fc2.bias/sgn"]
    y = bias[:]
    y[0, 3, 1] = np.inf
    bias[:] = y
    lake = open_lake(lake_path)
    rep = lake.compute_alpha(runs="b", k1=5, progress=False)
    n_bad = int((~np.isfinite(x)).sum()) + 1
    assert rep.runs[0].nonfinite_samples == n_bad and rep.runs[0].dead_last == 0
    ds = lake.result("b", k1=5)
    a = ds["alpha"]
    np.testing.assert_allclose(
        a.sel(param=a["tensor"] == "fc1.weight").values, _dropping_oracle(x, 5), rtol=1e-9, equal_nan=True
    )
    got = a.sel(param=a["tensor"] == "fc1.weight").values
    assert np.isnan(got[2, 11]) and not np.isnan(np.delete(got, 11, axis=1)).any()  # +inf: 1/alpha <= 0
    counts = ds["n_nonfinite"].sel(param=ds["tensor"] == "fc1.weight").values
    np.testing.assert_array_equal(counts, (~np.isfinite(x)).sum(axis=1))
    raw = zarr.open_group(lake_path, mode="r")[
        f"{published(lake_path, 'b', _key(k1=5))}/fc2.bias/n_nonfinite"
    ][:]
    np.testing.assert_array_equal(raw[:, 1], [1, 0, 0, 0])
    s = lake.summary(runs="b", by="tensor", k1=5).set_index(["iteration", "group"])
    per_it = (~np.isfinite(x)).sum(axis=(1, 2))
    its = lake.iterations("b")
    np.testing.assert_array_equal(s.xs("fc1.weight", level="group")["n_nonfinite_samples"], per_it)
    assert s.loc[(its[2], "fc1.weight"), "n_nan"] == 1 and s.loc[(its[1], "fc1.weight"), "n_nan"] == 0
    assert s.loc[(its[0], "fc2.bias"), "n_nonfinite_samples"] == 1
    assert s.xs("fc1.bias", level="group")["n_nonfinite_samples"].sum() == 0
    # lazily (nothing stored) the same numbers
    lazy = lake.summary(runs="b", by="model", k1="paper")
    np.testing.assert_array_equal(lazy["n_nonfinite_samples"], per_it + np.array([1, 0, 0, 0]))


@pytest.mark.parametrize("returned", [True, False])
def test_nonfinite_total_of_an_appended_run_counts_every_row(lake_path, monkeypatch, returned):
    """The reported non-finite samples: the stored rows' counts plus the new rows' (as the fused tasks
    counted them, or read back when the graph returned nothing), against a count of the plain SGN."""

    def poison(it_lo: int, seed: int) -> None:
        sgn = zarr.open_group(lake_path, mode="r+")["runs/b/fc1.weight/sgn"]
        x = sgn[:]
        rng = np.random.default_rng(seed)
        hit = (rng.uniform(size=x.shape) < 0.02) & (np.arange(x.shape[0]) >= it_lo)[:, None, None]
        x[hit] = np.inf
        sgn[:] = x

    poison(0, 1)
    lake = open_lake(lake_path)
    lake.compute_alpha(runs="b", k1=5, progress=False)
    grow_run(lake_path, "b", [400, 500])
    poison(4, 2)
    if not returned:
        real = results_mod.run_graph
        monkeypatch.setattr(results_mod, "run_graph", lambda *a, **k: real(*a, **k) and None)
    rep = open_lake(lake_path).compute_alpha(runs="b", k1=5, progress=False)
    assert rep.runs[0].action == "appended"
    g = zarr.open_group(lake_path, mode="r")["runs/b"]
    want = sum(int((~np.isfinite(tg["sgn"][:])).sum()) for _, tg in g.groups())
    assert want > 0 and rep.runs[0].nonfinite_samples == want
    fresh = open_lake(lake_path).compute_alpha(runs="b", k1=5, force=True, progress=False)
    assert fresh.runs[0].action == "computed" and fresh.runs[0].nonfinite_samples == want


# ----------------------------------------------------------------------------- fused == general


@hst.composite
def fused_cases(draw):
    """A tensor's SGN layout (snapshots, M, params, sgn chunk, result chunk) and a Dask chunking."""
    n_it = draw(hst.integers(1, 3))
    m = draw(hst.sampled_from([12, 20, 25, 30]))
    numel = draw(hst.integers(1, 40))
    pc = draw(hst.integers(1, numel))
    rc = min(numel, pc * draw(hst.integers(1, 4)))
    chunks = []
    for n in (n_it, m, numel):
        cuts = draw(hst.lists(hst.integers(1, n - 1), max_size=3)) if n > 1 else []
        edges = sorted({0, n, *cuts})
        chunks.append(tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True)))
    return {
        "shape": (n_it, m, numel),
        "pc": pc,
        "rc": rc,
        "chunks": tuple(chunks),
        "estimator": draw(hst.sampled_from(["mohammadi", "mohammadi_inv"])),
        "k1": draw(hst.sampled_from(["paper", "sqrt", 3])),
        "seed": draw(hst.integers(0, 2**16)),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=fused_cases())
def test_fused_path_equals_general_lazy_path(case):
    """The fused per-chunk tasks write what estimate + count_nonfinite compute lazily, NaN/inf included.

    Counts and NaN/inf positions must agree exactly, and so must the estimates when the
    minibatch dim is one Dask chunk (both paths run kernels.mohammadi_chunk/_finalize on
    whole rows). With minibatch split the lazy path streams: partial sums of the K1-aligned
    pieces are combined, which changes the order of the float64 sums of at most M = 30
    logs; the estimates then agree to rtol 1e-12 (observed: 1 ulp).
    """
    from sgnlake.analyze import estimators as E
    from sgnlake.analyze.fused import FusedTarget, tensor_tasks
    from sgnlake.analyze.lake import ChunkReader

    n_it, m, numel = case["shape"]
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_cauchy(case["shape"]).astype(np.float32)
    hit = rng.uniform(size=x.shape)
    x[hit < 0.03] = np.nan
    x[(hit >= 0.03) & (hit < 0.05)] = np.inf
    x[(hit >= 0.05) & (hit < 0.06)] = -np.inf
    x[:, :, 0] = 0.0  # a dead parameter
    if numel > 1:
        x[0, : m // 2, 1] = 0.0  # exact zeros left out of the log means
    store = zarr.storage.MemoryStore()
    root = zarr.open_group(store, mode="w")
    sgn = root.create_array("sgn", shape=x.shape, chunks=(1, m, case["pc"]), dtype="float32")
    sgn[:] = x
    out = root.create_array(
        "est", shape=(n_it, numel), chunks=(1, case["rc"]), dtype="float64", fill_value=-7.0
    )
    counts = root.create_array(
        "cnt", shape=(n_it, numel), chunks=(1, case["rc"]), dtype="int32", fill_value=-1
    )
    spec = E.get(case["estimator"])
    params = spec.plan((m,), ("minibatch",), spec.resolve(k1=case["k1"]))
    reader = ChunkReader(sgn, "r", "t", "sgn", np.arange(n_it), False, [])
    tasks = tensor_tasks(FusedTarget(reader, out, counts, spec.fused, params, case["pc"]), 0, n_it)
    assert tasks is not None and len(tasks) == n_it * -(-numel // case["rc"])
    totals = dask.compute(*tasks, scheduler="synchronous")

    lazy = xr.DataArray(
        dask.array.from_array(x, chunks=case["chunks"]), dims=("iteration", "minibatch", "param")
    )
    want = E.estimate(lazy, case["estimator"], k1=case["k1"])
    assert (want.attrs["k1"], want.attrs["k2"]) == (params["k1"], params["k2"])
    want_counts = E.count_nonfinite(lazy).values
    got = out[:]
    np.testing.assert_array_equal(counts[:], want_counts)
    assert sum(totals) == int(want_counts.sum()) == int((~np.isfinite(x)).sum())
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want.values))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want.values))
    # The same kernel on the same values; sums over blocks of different widths (fused: result chunks,
    # lazy: Dask chunks) may round differently by an ulp (SIMD pairwise summation), never more.
    np.testing.assert_allclose(got, want.values, rtol=1e-12, atol=0)
    assert np.isnan(got[:, 0]).all()


def test_compute_alpha_takes_the_fused_path_and_matches_lazy(lake_path, monkeypatch):
    """compute_alpha stores through the fused tasks for Mohammadi; the stored values are the lazy ones."""
    from sgnlake.analyze import fused

    used = []
    real = fused.tensor_tasks
    monkeypatch.setattr(fused, "tensor_tasks", lambda *a: used.append(1) or real(*a))
    lake = open_lake(lake_path)
    lazy = lake.result("a", k1="sqrt").compute()
    lake.compute_alpha(runs="a", k1="sqrt", progress=False)
    assert len(used) == len(TENSORS)
    stored = lake.result("a", k1="sqrt")
    assert stored.attrs["n_stored"] == 3
    np.testing.assert_array_equal(stored["n_nonfinite"].values, lazy["n_nonfinite"].values)
    np.testing.assert_allclose(stored["alpha"].values, lazy["alpha"].values, rtol=1e-12)
