"""Lazy lake access: opening and selecting read metadata only; values equal plain Zarr reads."""

from __future__ import annotations

import json
import os

import dask
import numpy as np
import pytest
import zarr
from lake_fixtures import RunSpec, read_sgn_plain, write_lake
from zarr.storage import LocalStore

from sgnlake.analyze import SelectionError, open_lake
from sgnlake.schema.errors import NotALakeError, RunNotFoundError, SchemaVersionError, SgnlakeError

SPECS = [
    RunSpec("fcn-b50", committed=3, dead={"fc1.weight": [3, 5]}, batch_size=50, seed=0),
    RunSpec("fcn-b100", batch_size=100, seed=1, n_minibatches=40),
    RunSpec("fcn-m20", batch_size=100, seed=2, n_minibatches=20, iterations=(0, 100, 200, 300)),
    RunSpec(
        "wide",
        tensors=(("fc1.weight", (16, 12), "weight", "fc1", "Linear"),),
        width=16,
        seed=3,
        iterations=(50, 150),
    ),
]


@pytest.fixture(scope="module")
def lake_path(tmp_path_factory) -> str:
    return write_lake(str(tmp_path_factory.mktemp("lake") / "lake"), SPECS)


def _raising_scheduler(*args, **kwargs):
    raise AssertionError("a Dask computation ran, but only metadata may be read")


@pytest.fixture
def chunk_reads(monkeypatch) -> list[str]:
    """Keys of every data chunk read through a LocalStore (zarr.json reads excluded)."""
    reads: list[str] = []
    orig = LocalStore.get

    async def get(self, key, prototype=None, byte_range=None):
        if not key.endswith("zarr.json"):
            reads.append(key)
        return await orig(self, key, prototype, byte_range)

    monkeypatch.setattr(LocalStore, "get", get)
    return reads


def test_open_and_select_read_no_data_chunk(lake_path, chunk_reads):
    with dask.config.set(scheduler=_raising_scheduler):
        lake = open_lake(lake_path)
        assert not chunk_reads  # the root's metadata only
        runs = lake.runs
        lake.tensors("fcn-b50")
        x = lake.sgn(
            "fcn-b50", "fc1.weight", iterations=[100, 200], params=[1, 5, 7], minibatches=slice(0, 9)
        )
        lake.sgn("fcn-b50", "fc1.weight", iterations=slice(0, 100))
        lake.grad("fcn-b50", "fc2.weight", params=slice(2, 8))
        lake.weight("fcn-b100", "fc1.bias")
        lake.sgn_runs(["fcn-b50", "fcn-b100"], "fc1.weight", iterations=[0, 100])
        lake.snapshots("fcn-b50")
        a = lake.alpha("fcn-b50", k1=5)  # a lazy computation: builds a graph only
        # mean/std build graphs too; nothing may run
        graph = (x.mean() + a.std()).data
    assert len(runs) == len(SPECS) and a.shape == (3, 131) and graph.ndim == 0
    data = [k for k in chunk_reads if "/sgn/" in k or "/grad/" in k or "/weight/" in k]
    assert data == []
    # only the small coordinate arrays were read (iteration, and loss/accuracy for snapshots())
    assert {k.rsplit("/", 3)[-3] for k in chunk_reads} <= {"iteration", "loss", "accuracy"}


def test_sgn_equals_plain_zarr_and_uses_committed_only(lake_path):
    lake = open_lake(lake_path)
    full, its = read_sgn_plain(lake_path, "fcn-b50", "fc1.weight")
    assert full.shape == (3, 40, 96)  # 4 allocated, 3 committed
    x = lake.sgn("fcn-b50", "fc1.weight")
    assert x.dims == ("iteration", "minibatch", "param") and x.shape == full.shape
    np.testing.assert_array_equal(x.values, full)
    np.testing.assert_array_equal(x["iteration"].values, [0, 100, 200])
    assert x.attrs["shape"] == [8, 12] and x.attrs["run_id"] == "fcn-b50" and x.attrs["module"] == "fc1"
    sel = lake.sgn("fcn-b50", "fc1.weight", iterations=[200, 0], params=[95, 3, 4], minibatches=[1, 39])
    np.testing.assert_array_equal(sel.values, full[[2, 0]][:, [1, 39]][:, :, [95, 3, 4]])
    np.testing.assert_array_equal(sel["param"].values, [95, 3, 4])
    rng = lake.sgn("fcn-b50", "fc1.weight", iterations=slice(50, 200), params=slice(10, 40))
    np.testing.assert_array_equal(rng.values, full[1:3, :, 10:40])
    np.testing.assert_array_equal(rng["iteration"].values, [100, 200])
    one = lake.sgn("fcn-b50", "fc1.weight", iterations=100)
    assert one.sizes["iteration"] == 1


def test_grad_weight_snapshots_equal_plain_zarr(lake_path):
    lake = open_lake(lake_path)
    g = zarr.open_group(lake_path, mode="r")["runs/fcn-b50"]
    np.testing.assert_array_equal(lake.grad("fcn-b50", "fc2.weight").values, g["fc2.weight/grad"][:3])
    np.testing.assert_array_equal(
        lake.weight("fcn-b50", "fc1.bias", params=[0, 7]).values, g["fc1.bias/weight"][:3][:, [0, 7]]
    )
    snap = lake.snapshots("fcn-b50")
    np.testing.assert_array_equal(snap["loss"].values, g["loss"][:3])
    np.testing.assert_array_equal(snap["accuracy"].values, g["accuracy"][:3])
    np.testing.assert_array_equal(snap["iteration"].values, [0, 100, 200])


def test_runs_and_tensor_tables(lake_path):
    lake = open_lake(lake_path)
    runs = lake.runs
    assert list(runs.index) == ["fcn-b50", "fcn-m20", "fcn-b100", "wide"]  # by config: width, n_train, batch
    for s in SPECS:
        row = runs.loc[s.run_id]
        assert row["batch_size"] == s.batch_size and row["seed"] == s.seed
        assert row["width"] == s.width and row["depth"] == s.depth and row["model"] == s.model
        assert row["committed"] == s.n_committed and row["planned"] == len(s.iterations)
        assert row["n_minibatches"] == s.n_minibatches
        assert row["n_params"] == sum(int(np.prod(t[1])) for t in s.tensors)
    for col in ("dataset", "n_train", "lr", "epochs", "iterations", "shuffle", "partition", "engine"):
        assert col in runs.columns
    for col in ("device", "dtype", "keepbits", "status"):
        assert col in runs.columns
    t = lake.tensors("fcn-b50")
    assert list(t.index) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert list(t["numel"]) == [96, 8, 24, 3] and list(t["offset"]) == [0, 96, 104, 128]
    assert list(t["module"]) == ["fc1", "fc1", "fc2", "fc2"]
    assert lake.meta("fcn-b50").committed == 3


def test_sgn_runs_concatenates_with_config_coords(lake_path):
    lake = open_lake(lake_path)
    x = lake.sgn_runs("fcn-b*", "fc2.weight", iterations=[0, 100, 200])
    assert x.dims == ("run", "iteration", "minibatch", "param") and x.shape == (2, 3, 40, 24)
    assert list(x["run"].values) == ["fcn-b50", "fcn-b100"]  # natural config order
    assert list(x["batch_size"].values) == [50, 100] and list(x["seed"].values) == [0, 1]
    a, _ = read_sgn_plain(lake_path, "fcn-b100", "fc2.weight")
    np.testing.assert_array_equal(x.sel(run="fcn-b100").values, a[:3])


@pytest.mark.parametrize(
    ("runs", "kwargs", "needle"),
    [
        (["fcn-b50", "fcn-b100"], {}, "different snapshot iterations"),  # 3 vs 4 committed
        (["fcn-b50", "fcn-m20"], {"iterations": [0]}, "minibatches"),
        (["fcn-b50", "wide"], {}, "shape"),
    ],
)
def test_sgn_runs_mismatch_is_one_line(lake_path, runs, kwargs, needle):
    lake = open_lake(lake_path)
    with pytest.raises(SelectionError) as e:
        lake.sgn_runs(runs, "fc1.weight", **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_sgn_runs_with_common_minibatches(lake_path):
    lake = open_lake(lake_path)
    x = lake.sgn_runs(["fcn-b50", "fcn-m20"], "fc1.bias", iterations=[0, 100], minibatches=slice(0, 20))
    assert x.shape == (2, 2, 20, 8)


def test_selection_errors_are_one_line(lake_path):
    lake = open_lake(lake_path)
    cases = [
        lambda: lake.sgn("fcn-b50", "fc1.weight", iterations=[100, 300]),  # 300 is not committed
        lambda: lake.sgn("fcn-b50", "fc1.weight", iterations=slice(1000, 2000)),
        lambda: lake.sgn("fcn-b50", "fc1.weight", params=[96]),
        lambda: lake.sgn("fcn-b50", "fc1.weight", minibatches=[-1]),
        lambda: lake.sgn("fcn-b50", "conv1.weight"),
        lambda: lake.sgn("nope", "fc1.weight"),
        lambda: lake.select_runs("zz*"),
    ]
    for case in cases:
        with pytest.raises(SgnlakeError) as e:
            case()
        assert "\n" not in str(e.value) and len(str(e.value)) < 300
    with pytest.raises(SelectionError, match="iteration 300"):
        cases[0]()
    with pytest.raises(RunNotFoundError, match="nope"):
        cases[5]()


def test_not_a_lake_newer_schema(tmp_path):
    with pytest.raises(NotALakeError):
        open_lake(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotALakeError):
        open_lake(tmp_path / "empty")
    zarr.open_group(str(tmp_path / "plain"), mode="w", attributes={"other": 1})
    with pytest.raises(NotALakeError):
        open_lake(tmp_path / "plain")
    path = write_lake(str(tmp_path / "new"), [])
    doc = json.loads((tmp_path / "new" / "zarr.json").read_text())
    doc["attributes"]["sgnlake"]["version"] = 99
    (tmp_path / "new" / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(SchemaVersionError) as e:
        open_lake(path)
    assert "\n" not in str(e.value)


def test_empty_lake(tmp_path):
    lake = open_lake(write_lake(str(tmp_path / "l"), []))
    assert lake.runs.empty and lake.run_ids == []
    with pytest.raises(RunNotFoundError, match="no runs"):
        lake.select_runs(None)


def test_fsspec_url_with_storage_options(tmp_path):
    """A memory:// URL goes through fsspec (FsspecStore) and storage_options reach it."""
    pytest.importorskip("fsspec")
    url = f"memory://sgnlake-test-{os.getpid()}/lake"
    write_lake(url, [RunSpec("r1", iterations=(0, 100))])
    lake = open_lake(url, storage_options={})
    assert type(lake.root.store).__name__ == "FsspecStore"
    x = lake.sgn("r1", "fc2.bias")
    y = zarr.open_group(url, mode="r")["runs/r1/fc2.bias/sgn"][:]
    np.testing.assert_array_equal(x.values, y)
    lake_f = open_lake(f"file://{write_lake(str(tmp_path / 'f'), [RunSpec('r2')])}")
    assert lake_f.run_ids == ["r2"]
