"""Models too big to store whole: ``--param-sample`` and ``--store alpha``.

Oracles: a full run with the same seed read with plain zarr (the sampled run's
stored values must be its columns at the recorded flat indices), NumPy kernels
(:mod:`sgnlake.analyze.kernels`) for the alpha computed on the device.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
import zarr
from collect_fixtures import TINY, read_run_arrays

from sgnlake.analyze import kernels, open_lake
from sgnlake.cli.app import main
from sgnlake.collect import collect
from sgnlake.collect.device_alpha import mohammadi_torch
from sgnlake.collect.sampling import parse_param_sample, sample_indices, sample_size
from sgnlake.schema import ConfigError, validate_lake
from sgnlake.schema.meta import RunConfig, StorageSpec
from sgnlake.schema.store import stored_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Wider than TINY so that a quarter of fc1.weight (784 x 32) spans several chunks.
CFG = {**TINY, "model_args": {"depth": 2, "width": 32}, "storage": StorageSpec(param_chunk=2048)}
FRACTION = 0.25


def _run(lake, run_id: str, **storage) -> None:
    spec = dataclasses.replace(CFG["storage"], **storage)
    collect(lake, RunConfig(run_id=run_id, **{**CFG, "storage": spec}), progress=False, threads=1)


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """One lake with the full run, the sampled run and the device-alpha runs (same seed, same training)."""
    lake = tmp_path_factory.mktemp("sample") / "lake"
    _run(lake, "full")
    _run(lake, "sampled", param_sample=FRACTION)
    _run(lake, "alpha", store="alpha", param_sample=50)
    _run(lake, "alpha-only", store="alpha")
    return lake


# ------------------------------------------------------------------ choosing the sample


def test_parse_param_sample():
    assert parse_param_sample("0.0025") == 0.0025
    assert parse_param_sample("1000") == 1000 and isinstance(parse_param_sample("1000"), int)
    assert parse_param_sample("0.5%") == 0.005
    assert parse_param_sample(None) is None
    for bad in ("abc", "1.5", "-3", "0.0"):
        with pytest.raises(ConfigError):
            parse_param_sample(bad)


def test_sample_indices_resnet18_size_tensor():
    """A ResNet-18-size tensor at 0.0025: round(f * numel) sorted distinct indices, seeded, fast."""
    numel = 2_359_296  # layer4 conv weight (512, 512, 3, 3)
    t0 = time.perf_counter()
    idx = sample_indices(7, "layer4.1.conv2.weight", numel, 0.0025)
    assert time.perf_counter() - t0 < 5
    assert len(idx) == sample_size(0.0025, numel) == round(0.0025 * numel)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0) and 0 <= idx[0] and idx[-1] < numel
    np.testing.assert_array_equal(idx, sample_indices(7, "layer4.1.conv2.weight", numel, 0.0025))
    assert not np.array_equal(idx, sample_indices(8, "layer4.1.conv2.weight", numel, 0.0025))
    assert not np.array_equal(idx, sample_indices(7, "layer4.0.conv2.weight", numel, 0.0025))
    # spread over the tensor (no bias to one end): each quarter holds about a quarter
    counts = np.histogram(idx, bins=4, range=(0, numel))[0]
    assert np.all(np.abs(counts / len(idx) - 0.25) < 0.03)
    assert sample_size(10, 5) == 5 and sample_size(1e-9, 100) == 1


# ------------------------------------------------------------------ the sampled run


def test_sampled_run_stores_the_full_runs_columns(lakes):
    """Plain zarr: each sampled array equals the full run's array at the recorded flat indices."""
    full, samp = read_run_arrays(lakes, "full"), read_run_arrays(lakes, "sampled")
    tensors = [k.rsplit("/", 1)[0] for k in full if k.endswith("/sgn")]
    assert tensors
    for t in tensors:
        idx = samp[f"{t}/param"]
        numel = full[f"{t}/grad"].shape[1]
        assert len(idx) == sample_size(FRACTION, numel) < numel or numel < 4
        for a in ("sgn", "grad", "weight"):
            np.testing.assert_array_equal(samp[f"{t}/{a}"], full[f"{t}/{a}"][..., idx], err_msg=f"{t}/{a}")
    for a in ("iteration", "loss", "accuracy"):
        np.testing.assert_array_equal(samp[a], full[a])
    assert validate_lake(lakes).ok


def test_sampled_lake_size_is_proportional(lakes):
    full = stored_bytes(str(lakes), "runs/full")
    samp = stored_bytes(str(lakes), "runs/sampled")
    assert 0.6 * FRACTION < samp / full < 1.4 * FRACTION, (samp, full)


def test_param_coordinate_and_alpha_equal_full_runs(lakes):
    """The reader's param coord is the flat index; alpha of the sample = alpha of the full run there."""
    lake = open_lake(lakes)
    m = lake.meta("sampled").n_minibatches
    for t in lake.meta("sampled").tensors:
        idx = lake.param_index("sampled", t.name)
        assert t.stored == len(idx)
        x = lake.sgn("sampled", t.name)
        np.testing.assert_array_equal(x["param"].values, idx)
        np.testing.assert_array_equal(lake.weight("sampled", t.name, params=[0])["param"].values, idx[:1])
        assert x.shape[1] == m
    a_full = lake.alpha("full").compute()
    a_samp = lake.alpha("sampled").compute()
    assert a_samp.sizes["param"] == sum(t.n_stored for t in lake.meta("sampled").tensors)
    for t in lake.meta("sampled").tensors:
        f = a_full.where(a_full["tensor"] == t.name, drop=True)
        s = a_samp.where(a_samp["tensor"] == t.name, drop=True)
        np.testing.assert_array_equal(s["index"].values, lake.param_index("sampled", t.name))
        want = f.values[:, s["index"].values]
        np.testing.assert_array_equal(s.values, want)
        # and both equal the NumPy kernel on plain-zarr SGN
        raw = zarr.open_group(str(lakes), mode="r")[f"runs/sampled/{t.name}/sgn"][:]
        np.testing.assert_allclose(s.values, kernels.mohammadi(np.moveaxis(raw, 1, -1)), rtol=1e-12)
    summ = lake.summary("sampled", by="tensor")
    assert set(summ["group"]) == {t.name for t in lake.meta("sampled").tensors}


def test_compute_alpha_stores_sampled_results(tmp_path, lakes):
    import shutil

    lake_dir = tmp_path / "copy"
    shutil.copytree(lakes, lake_dir)
    lake = open_lake(lake_dir)
    lake.compute_alpha("sampled", progress=False)
    got = lake.alpha("sampled").compute()
    assert got.attrs["n_stored"] == lake.meta("sampled").committed
    want = open_lake(lakes).alpha("sampled").compute()
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got["index"].values, want["index"].values)


def test_sampled_run_resumes_identically(tmp_path, lakes):
    lake = tmp_path / "lake"
    cfg = RunConfig(
        run_id="sampled", **{**CFG, "storage": dataclasses.replace(CFG["storage"], param_sample=FRACTION)}
    )
    collect(lake, cfg, progress=False, threads=1, stop_after=2)
    collect(lake, cfg, progress=False, threads=1, resume=True)
    got, want = read_run_arrays(lake, "sampled"), read_run_arrays(lakes, "sampled")
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


# ------------------------------------------------------------------ alpha on the device


def _heavy(m: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(1.5, size=(m, p)).astype(np.float32)
    x[:, 0] = 0.0  # dead
    x[:, 1] = 3.0  # constant
    x[::7, 2] = 0.0  # zeros left out
    x[3, 3] = np.nan  # non-finite samples
    x[5, 4] = np.inf
    x[:, 5] = np.nan
    x[m - 1, 6] = np.nan  # a sample past K1*K2 for some M
    return x


@pytest.mark.parametrize("m", [100, 50, 10, 97, 7])
def test_mohammadi_torch_equals_numpy_kernel(m):
    x = _heavy(m, 300, seed=m)
    a, n = mohammadi_torch(torch.from_numpy(x))
    k1, k2 = kernels.choose_k1(m, "paper")
    want_a, want_n = kernels.mohammadi_counted(x.T, k1, k2)
    np.testing.assert_allclose(a.numpy(), want_a, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(np.isnan(a.numpy()), np.isnan(want_a))
    np.testing.assert_array_equal(n.numpy(), want_n)
    assert n.dtype == torch.int32 and a.dtype == torch.float64


def test_store_alpha_results_equal_full_runs_alpha(lakes):
    """Device results (all parameters) = the NumPy alpha of the full run's SGN, read as a stored result."""
    lake = open_lake(lakes)
    full = lake.result("full").compute()
    dev = lake.result("alpha")
    assert dev.attrs["n_stored"] == lake.meta("alpha").committed  # read, not computed from the sample
    dev = dev.compute()
    np.testing.assert_array_equal(dev["index"].values, full["index"].values)
    np.testing.assert_allclose(dev["alpha"].values, full["alpha"].values, rtol=1e-10)
    np.testing.assert_array_equal(np.isnan(dev["alpha"].values), np.isnan(full["alpha"].values))
    np.testing.assert_array_equal(dev["n_nonfinite"].values, full["n_nonfinite"].values)
    # the SGN sample is kept beside them
    for t in lake.meta("alpha").tensors:
        assert lake.sgn("alpha", t.name).sizes["param"] == min(50, t.numel)
    # without --param-sample no SGN at all, the results all the same
    only = lake.result("alpha-only").compute()
    np.testing.assert_allclose(only["alpha"].values, full["alpha"].values, rtol=1e-10)
    assert all(t.n_stored == 0 for t in lake.meta("alpha-only").tensors)
    assert validate_lake(lakes).ok
    s = lake.summary(["full", "alpha"], by="module")
    a, b = (s[s["run_id"] == r].drop(columns=["run_id"]).reset_index(drop=True) for r in ("full", "alpha"))
    np.testing.assert_allclose(a["median"].to_numpy(float), b["median"].to_numpy(float), rtol=1e-9)


def test_store_alpha_compute_alpha_is_up_to_date(tmp_path, lakes):
    import shutil

    lake_dir = tmp_path / "copy"
    shutil.copytree(lakes, lake_dir)
    rep = open_lake(lake_dir).compute_alpha(["alpha", "alpha-only"], progress=False)
    assert [r.action for r in rep.runs] == ["up-to-date", "up-to-date"]
    # forced: device results are kept (the lake lacks the SGN they came from), the SGN run is recomputed
    before = open_lake(lake_dir).result("alpha").compute()
    rep = open_lake(lake_dir).compute_alpha(["alpha", "alpha-only", "full"], force=True, progress=False)
    assert [r.action for r in rep.runs] == ["up-to-date", "up-to-date", "computed"]
    after = open_lake(lake_dir).result("alpha").compute()
    np.testing.assert_array_equal(after["alpha"].values, before["alpha"].values)


def test_store_alpha_resumes_identically(tmp_path, lakes):
    lake = tmp_path / "lake"
    spec = dataclasses.replace(CFG["storage"], store="alpha", param_sample=50)
    cfg = RunConfig(run_id="alpha", **{**CFG, "storage": spec})
    collect(lake, cfg, progress=False, threads=1, stop_after=2)
    collect(lake, cfg, progress=False, threads=1, resume=True)
    got = open_lake(lake).result("alpha").compute()
    want = open_lake(lakes).result("alpha").compute()
    np.testing.assert_array_equal(got["alpha"].values, want["alpha"].values)


# ------------------------------------------------------------------ command line


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0), capsys.readouterr().err


def test_cli_param_sample_and_store(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    args = ["collect", lake, "--n-train", "100", "--batch-size", "20", "--iterations", "10", "--every", "10"]
    args += ["--depth", "2", "--width", "8", "--device", "cpu", "--no-progress", "--threads", "1"]
    code, err = _cli(capsys, [*args, "--param-sample", "0.5", "--store", "alpha", "--run-id", "r"])
    assert code == 0, err
    meta = open_lake(lake).meta("r")
    assert meta.config.storage.param_sample == 0.5 and meta.config.storage.store == "alpha"
    code, err = _cli(capsys, [*args, "--param-sample", "lots", "--run-id", "bad"])
    assert code == 2 and "--param-sample" in err and len(err.strip().splitlines()) == 1
    code, err = _cli(capsys, [*args, "--store", "everything", "--run-id", "bad"])
    assert code == 2 and "--store" in err
    assert "bad" not in open_lake(lake).run_ids


def test_alpha_map_draws_only_sampled_entries():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sgnlake.analyze.plots import plot_alpha_map

    fig, ax = plt.subplots()
    idx = np.array([0, 5, 11])
    plot_alpha_map(ax, np.array([1.5, np.nan, 1.9]), (3, 4), title="t", index=idx)
    grey, top = (np.ma.asarray(im.get_array()) for im in ax.get_images())
    want_kept = np.zeros(12, bool)
    want_kept[idx] = True
    np.testing.assert_array_equal(~np.ma.getmaskarray(grey).ravel(), want_kept)  # grey under kept only
    vals = np.ma.filled(top.astype(float), np.nan).ravel()
    assert vals[0] == 1.5 and vals[11] == 1.9 and np.isnan(np.delete(vals, [0, 11])).all()
    assert "dead (grey): 1" in ax.get_title() and "3 sampled" in ax.get_title()
    plt.close(fig)
