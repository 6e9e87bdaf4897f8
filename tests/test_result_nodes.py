"""Result generations created in one call (analyze.stored.create_nodes) store what per-node Zarr calls store."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from lake_fixtures import write_lake

from sgnlake.analyze import open_lake
from sgnlake.analyze.stored import (
    array_metadata,
    create_nodes,
    group_metadata,
    read_rows_and_sums,
    stored_sum,
)
from sgnlake.schema.codecs import default_compressors
from sgnlake.schema.names import RESULTS_GROUP

ARRAYS = {
    "iteration": {
        "shape": (7,),
        "dtype": "int64",
        "dimension_names": ["iteration"],
        "attributes": {"units": "step"},
    },
    "t/alpha": {"shape": (7, 1000), "chunks": (1, 512), "dtype": "float64", "fill_value": np.nan},
    "t/max_share": {
        "shape": (7, 1000),
        "chunks": (1, 512),
        "dtype": np.dtype("float32"),
        "fill_value": np.nan,
    },
    "t/n_nonfinite": {"shape": (7, 1000), "chunks": (1, 512), "dtype": np.dtype("int32"), "fill_value": -1},
    "t/sparse": {"shape": (7, 1000), "chunks": (1, 512), "dtype": np.dtype("int8"), "fill_value": -1},
    "u/alpha": {"shape": (7, 3), "chunks": (1, 3), "dtype": "float32", "fill_value": np.nan},
}
GROUPS = {"t": {"sgnlake_tensor": {"name": "t", "shape": [10, 100]}, "kind": "weight"}, "u": {}}


def _documents(root: str) -> dict[str, bytes]:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def _kwargs(spec: dict) -> dict:
    kw = {"compressors": default_compressors(), **spec}
    if len(kw["shape"]) == 2:
        kw.setdefault("dimension_names", ["iteration", "param"])
    return kw


def test_create_nodes_writes_the_documents_of_per_node_calls(tmp_path):
    # oracle: plain zarr, one create_group / create_array call per node
    ref = zarr.open_group(tmp_path / "ref", mode="w").create_group("results/r/k/gen-1")
    for name, attrs in GROUPS.items():
        ref.create_group(name, attributes=attrs)
    for path, spec in ARRAYS.items():
        ref.create_array(path, **_kwargs(spec))

    mine = zarr.open_group(tmp_path / "mine", mode="w").create_group("results/r/k/gen-1")
    nodes = {name: group_metadata(attrs) for name, attrs in GROUPS.items()}
    nodes.update({path: array_metadata(**_kwargs(spec)) for path, spec in ARRAYS.items()})
    made = create_nodes(mine, nodes)

    assert _documents(str(tmp_path / "mine")) == _documents(str(tmp_path / "ref"))
    assert set(made) == set(nodes)
    assert isinstance(made["t"], zarr.Group) and isinstance(made["t/alpha"], zarr.Array)
    made["t/n_nonfinite"][2:3, 0:512] = np.arange(512, dtype=np.int32)[None]
    back = zarr.open_group(tmp_path / "mine", mode="r")["results/r/k/gen-1/t/n_nonfinite"]
    np.testing.assert_array_equal(back[2, :512], np.arange(512))
    assert back[0, 0] == -1


def test_create_nodes_refuses_an_existing_node(tmp_path):
    g = zarr.open_group(tmp_path / "lake", mode="w")
    g.create_array("a", shape=(2,), dtype="int64")
    before = _documents(str(tmp_path / "lake"))
    with pytest.raises(zarr.errors.ContainsArrayError):
        create_nodes(g, {"a": array_metadata(shape=(3,), dtype="float32")})
    assert _documents(str(tmp_path / "lake")) == before


def test_compute_alpha_generation_documents_match_per_node_creation(tmp_path):
    """Every document of a computed generation equals the one plain zarr writes for its node."""
    path = tmp_path / "lake"
    write_lake(str(path))
    lake = open_lake(str(path))
    lake.compute_alpha(progress=False)
    base = zarr.open_group(path, mode="r")[RESULTS_GROUP]
    checked = 0
    for run, rg in base.groups():
        for key, kg in rg.groups():
            gen = kg.attrs["sgnlake_generation"]
            dg = kg[gen]
            ref = zarr.open_group(tmp_path / f"ref-{run}-{key}", mode="w")
            for tname, tg in dg.groups():
                ref.create_group(tname, attributes=tg.attrs.asdict())
                for aname, arr in tg.arrays():
                    ref.create_array(f"{tname}/{aname}", **_stored_kwargs(arr))
                    checked += 1
            ref.create_array("iteration", **_stored_kwargs(dg["iteration"]))
            mine = {
                k: v
                for k, v in _documents(str(path / RESULTS_GROUP / run / key / gen)).items()
                if k.endswith("zarr.json")
            }
            theirs = _documents(str(tmp_path / f"ref-{run}-{key}"))
            theirs.pop("zarr.json")  # the reference's root group: ours is the generation created apart
            mine.pop("zarr.json")
            assert mine == theirs
    assert checked >= 6


def _stored_kwargs(arr: zarr.Array) -> dict:
    md = arr.metadata
    return {
        "shape": arr.shape,
        "chunks": arr.chunks,
        "dtype": arr.dtype,
        "fill_value": md.fill_value,
        "dimension_names": list(md.dimension_names),
        "attributes": arr.attrs.asdict(),
        "compressors": default_compressors(),
    }


@pytest.mark.parametrize("block_elements,concurrency", [(1 << 22, 4), (7, 1), (25, 3)])
def test_read_rows_and_sums_equal_numpy(tmp_path, block_elements, concurrency):
    rng = np.random.default_rng(0)
    g = zarr.open_group(tmp_path / "lake", mode="w")
    counts = [rng.integers(0, 1000, size=(9, w), dtype=np.int32) for w in (5, 13, 1)]
    floats = [rng.standard_normal((9, w)) for w in (5, 13)]
    carr = [g.create_array(f"c{i}", data=c, chunks=(2, 4)) for i, c in enumerate(counts)]
    farr = [g.create_array(f"f{i}", data=f, chunks=(1, 3)) for i, f in enumerate(floats)]
    reads = [(farr[0], 8), (farr[1], 0), (carr[1], 4)]
    rows, sums = read_rows_and_sums(reads, carr, 6, block_elements=block_elements, concurrency=concurrency)
    np.testing.assert_array_equal(rows[0], floats[0][8])
    np.testing.assert_array_equal(rows[1], floats[1][0])
    np.testing.assert_array_equal(rows[2], counts[1][4])
    assert sums == [int(c[:6].sum(dtype=np.int64)) for c in counts]
    assert stored_sum(carr[1], 9, block_elements=13) == int(counts[1].sum())
