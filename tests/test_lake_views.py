"""Cross-run views against per-run reads; runs in natural config order; ``repr``; ``run_ids`` style."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from lake_fixtures import RunSpec, write_lake

from sgnlake.analyze import open_lake
from sgnlake.analyze.selection import SelectionError
from sgnlake.schema.run_table import natural_key, run_sort_key

BATCHES = (200, 50, 100)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("views") / "lake"
    specs = [RunSpec(f"fcn-b{b}", batch_size=b, seed=i, n_minibatches=30) for i, b in enumerate(BATCHES)]
    specs.append(RunSpec("fcn-b50-late", batch_size=50, seed=7, n_minibatches=30, iterations=(100, 200, 400)))
    return write_lake(str(path), specs)


def test_runs_sort_naturally_by_config(grid: str) -> None:
    lake = open_lake(grid)
    ids = list(lake.run_ids)
    assert ids == ["fcn-b50", "fcn-b50-late", "fcn-b100", "fcn-b200"]
    assert list(lake.runs.index) == ids
    assert lake.select_runs("fcn-b*") == ids
    assert natural_key("b50") < natural_key("b100") < natural_key("b200")
    assert sorted(["b200", "b50", "b100"], key=natural_key) == ["b50", "b100", "b200"]
    assert run_sort_key(lake.meta("fcn-b50")) < run_sort_key(lake.meta("fcn-b100"))


def test_ls_lists_runs_in_the_same_order(grid: str) -> None:
    from sgnlake.schema.inventory import list_runs

    assert [r["run_id"] for r in list_runs(grid)] == list(open_lake(grid).run_ids)


def test_run_ids_is_a_property_and_calling_it_warns(grid: str) -> None:
    lake = open_lake(grid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = list(lake.run_ids)
    with pytest.warns(DeprecationWarning, match="property"):
        assert lake.run_ids() == ids


def test_select_runs_by_config(grid: str) -> None:
    lake = open_lake(grid)
    assert lake.select_runs(batch_size=[50, 100]) == ["fcn-b50", "fcn-b50-late", "fcn-b100"]
    assert lake.select_runs(batch_size=50, seed=1) == ["fcn-b50"]
    assert lake.select_runs("fcn-b5*", seed=[7, 2]) == ["fcn-b50-late"]
    with pytest.raises(SelectionError, match="config columns"):
        lake.select_runs(colour="red")
    with pytest.raises(SelectionError, match="no run has batch_size=7"):
        lake.select_runs(batch_size=7)


def test_alpha_runs_equals_per_run_reads(grid: str) -> None:
    lake = open_lake(grid)
    view = lake.alpha_runs(batch_size=[100, 200], k1=5)
    assert view.dims == ("run", "iteration", "param")
    assert list(view["run"].values) == ["fcn-b100", "fcn-b200"]
    assert list(view["batch_size"].values) == [100, 200]
    assert "depth" in view.coords and "lr" in view.coords
    got = view.compute()
    for r in ("fcn-b100", "fcn-b200"):
        one = lake.alpha(r, k1=5).compute()
        np.testing.assert_array_equal(got.sel(run=r).values, one.values)
        np.testing.assert_array_equal(got["tensor"].values, one["tensor"].values)
    by_b = got.swap_dims(run="batch_size").sel(batch_size=200)
    np.testing.assert_array_equal(by_b.values, lake.alpha("fcn-b200", k1=5).values)


def test_alpha_runs_outer_joins_iterations_and_selects_params(grid: str) -> None:
    lake = open_lake(grid)
    view = lake.alpha_runs(["fcn-b50", "fcn-b50-late"], tensor="fc1.weight", params=[(0, 0), (7, 11)], k1=5)
    assert list(view["iteration"].values) == [0, 100, 200, 300, 400]
    assert view.sizes["param"] == 2
    late = view.sel(run="fcn-b50-late")
    assert np.isnan(late.sel(iteration=0).values).all() and np.isnan(late.sel(iteration=300).values).all()
    ref = lake.alpha("fcn-b50-late", tensor="fc1.weight", k1=5).isel(param=[0, 95])
    np.testing.assert_array_equal(late.sel(iteration=[100, 200, 400]).values, ref.values)
    pairs = lake.alpha_runs("fcn-b50", params=[("fc2.bias", 1), ("fc1.weight", (0, 1))], k1=5)
    full = lake.alpha("fcn-b50", k1=5)
    offset = int(np.flatnonzero(full["tensor"].values == "fc2.bias")[0])
    np.testing.assert_array_equal(pairs.isel(run=0).values, full.isel(param=[offset + 1, 1]).values)


def test_summary_runs_equals_summary(grid: str) -> None:
    lake = open_lake(grid)
    ds = lake.summary_runs(batch_size=[50, 200], k1=5)
    df = lake.summary(["fcn-b50", "fcn-b50-late", "fcn-b200"], k1=5)
    assert list(ds["run"].values) == ["fcn-b50", "fcn-b50-late", "fcn-b200"]
    assert list(ds["batch_size"].values) == [50, 50, 200]
    for row in df.itertuples():
        got = ds["median"].sel(run=row.run_id, iteration=row.iteration, group=row.group).item()
        assert got == pytest.approx(row.median, nan_ok=True)
    assert isinstance(ds, xr.Dataset)


def test_repr_says_what_is_in_the_lake(grid: str) -> None:
    text = repr(open_lake(grid))
    assert "4 run(s)" in text and "fcn-b100" in text and "b=100" in text
    assert "committed snapshot(s)" in text and "stored result(s)" in text
    assert text.index("fcn-b50:") < text.index("fcn-b100:") < text.index("fcn-b200:")


def test_empty_lake_repr(tmp_path: Path) -> None:
    path = write_lake(str(tmp_path / "e"), [])
    assert "0 run(s)" in repr(open_lake(path))
