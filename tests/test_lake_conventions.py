"""Schema version 2: a lake explains itself to plain xarray; version-1 lakes stay readable.

Oracles: plain ``xarray.open_datatree`` / plain zarr and numpy (``np.unravel_index``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from lake_fixtures import read_sgn_plain, write_lake

from sgnlake.schema.conventions import GRADIENT_UNITS, ravel_param, unravel_param
from sgnlake.schema.names import SCHEMA_VERSION


def _tree(lake: Path) -> xr.DataTree:
    return xr.open_datatree(str(lake), engine="zarr", consolidated=False)


def test_plain_datatree_explains_the_lake(collected_lake) -> None:
    lake, meta = collected_lake
    tree = _tree(lake)
    assert tree.attrs["sgnlake"]["version"] == SCHEMA_VERSION == 2
    run = tree["runs/tiny"]
    assert run.attrs["batch_size"] == 20 and run.attrs["depth"] == 2 and run.attrs["model"] == "fcn"
    assert run.attrs["lr"] == pytest.approx(0.1) and run.attrs["seed"] == 0
    assert run["loss"].attrs["long_name"] == "training loss" and run["loss"].attrs["units"] == "1"
    assert run["accuracy"].attrs["units"] == "1"
    assert run["iteration"].attrs["long_name"] == "SGD iteration"
    m = meta.n_minibatches
    np.testing.assert_array_equal(run["minibatch"].values, np.arange(m))
    for t in meta.tensors:
        ds = tree[f"runs/tiny/{t.name}"].to_dataset()
        np.testing.assert_array_equal(ds["param"].values, np.arange(t.numel))
        assert "minibatch" in ds.coords and ds["minibatch"].size == m  # inherited from the run group
        assert ds.attrs["tensor_shape"] == list(t.shape)
        sgn = ds["sgn"]
        assert sgn.dims == ("iteration", "minibatch", "param")
        assert sgn.attrs["units"] == GRADIENT_UNITS == "loss per unit of parameter"
        assert sgn.attrs["long_name"] == "stochastic gradient noise"
        assert sgn.attrs["tensor_shape"] == list(t.shape) and sgn.attrs["tensor"] == t.name
        assert ds["grad"].attrs["units"] == GRADIENT_UNITS and "long_name" in ds["weight"].attrs
        np.testing.assert_array_equal(sgn["iteration"].values, [0, 10, 20, 30])


def test_internal_attributes_are_namespaced_and_hidden(collected_lake) -> None:
    from sgnlake.analyze import open_lake

    lake, _ = collected_lake
    documented = {"sgnlake", "sgnlake_run", "sgnlake_tensor", "sgnlake_result", "sgnlake_checkpoint"}

    def keys(tree: xr.DataTree) -> list[str]:
        out = []
        for node in tree.subtree:
            out += list(node.attrs) + [k for v in node.variables.values() for k in v.attrs]
        return out

    plain = keys(_tree(lake))
    assert not [k for k in plain if "claim" in k]  # the creation claim is gone once the run exists
    assert not [k for k in plain if k.startswith("sgnlake") and k not in documented]  # others: _sgnlake*
    assert not [k for k in keys(open_lake(lake).datatree()) if k.startswith("_")]


def test_checkpoints_stay_out_of_the_ordered_view(collected_lake) -> None:
    from sgnlake.analyze import open_lake

    lake, meta = collected_lake
    tree = open_lake(lake).datatree()
    assert list(tree.children) == ["runs"]
    assert list(tree["runs/tiny"].children) == [t.name for t in meta.tensors]
    np.testing.assert_array_equal(
        tree["runs/tiny"][meta.tensors[0].name]["sgn"].values,
        _tree(lake)[f"runs/tiny/{meta.tensors[0].name}"]["sgn"].values,
    )


def _downgrade_to_v1(lake: Path) -> None:
    """Make ``lake`` look written by schema version 1: version attr, no coordinates, no array attrs."""
    root_json = lake / "zarr.json"
    doc = json.loads(root_json.read_text())
    doc["attributes"]["sgnlake"]["version"] = 1
    root_json.write_text(json.dumps(doc))
    for coord in list(lake.rglob("minibatch")) + list(lake.rglob("param")):
        shutil.rmtree(coord)
    for zj in lake.rglob("zarr.json"):
        doc = json.loads(zj.read_text())
        attrs = doc.get("attributes", {})
        keep = {k: v for k, v in attrs.items() if k.startswith("sgnlake")}
        if keep != attrs:
            doc["attributes"] = keep
            zj.write_text(json.dumps(doc))


def test_version_1_lake_stays_readable(collected_lake, tmp_path: Path) -> None:
    from sgnlake.analyze import open_lake
    from sgnlake.schema.check import check_lake
    from sgnlake.schema.validate import validate_lake

    lake, meta = collected_lake
    old = tmp_path / "old"
    shutil.copytree(lake, old)
    _downgrade_to_v1(old)
    assert not list(old.rglob("param")) and "units" not in (old / "runs/tiny/loss/zarr.json").read_text()
    t = meta.tensors[0].name
    new, old_lake = open_lake(lake), open_lake(old)
    np.testing.assert_array_equal(old_lake.sgn("tiny", t).values, new.sgn("tiny", t).values)
    np.testing.assert_array_equal(old_lake.sgn("tiny", t)["param"].values, np.arange(meta.tensors[0].numel))
    rep = validate_lake(old)
    assert rep.ok and rep.conventions == []
    assert validate_lake(lake).conventions == []
    assert check_lake(old, read_data=False).ok
    assert "1 run(s)" in repr(old_lake)
    _tree(old)  # plain xarray still opens it


def test_unravel_and_ravel_match_numpy() -> None:
    shape = (120, 784)
    assert unravel_param(2369, shape) == (3, 17) == tuple(int(i) for i in np.unravel_index(2369, shape))
    flat = np.array([0, 5, 94079])
    rows, cols = unravel_param(flat, shape)
    np.testing.assert_array_equal(ravel_param(list(zip(rows, cols, strict=True)), shape), flat)
    with pytest.raises(ValueError, match="out of range"):
        ravel_param((120, 0), shape)
    with pytest.raises(ValueError, match="2 ints"):
        ravel_param((1, 2, 3), shape)


def test_params_by_index_tuple(tmp_path: Path) -> None:
    from sgnlake.analyze import open_lake
    from sgnlake.analyze.selection import SelectionError

    path = write_lake(str(tmp_path / "lake"))
    lake = open_lake(path)
    plain, _ = read_sgn_plain(path, "r1", "fc1.weight")  # shape (8, 12)
    one = lake.sgn("r1", "fc1.weight", params=(3, 5))
    np.testing.assert_array_equal(one.values[..., 0], plain[:, :, 3 * 12 + 5])
    many = lake.grad("r1", "fc1.weight", params=[(0, 1), (7, 11)])
    np.testing.assert_array_equal(many["param"].values, [1, 95])
    pair = lake.weight("r1", "fc1.weight", params=("fc1.weight", (2, 2)))
    assert pair["param"].values.tolist() == [26]
    assert lake.unravel_param("r1", "fc1.weight", 26) == (2, 2)
    with pytest.raises(SelectionError, match="out of range"):
        lake.sgn("r1", "fc1.weight", params=(8, 0))
