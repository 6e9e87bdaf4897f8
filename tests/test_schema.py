"""The lake contract: metadata round trips, schedules, names, codecs, lake opening, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from sgnlake.schema import (
    ConfigError,
    LakeMeta,
    NotALakeError,
    RunConfig,
    RunMeta,
    Schedule,
    SchemaVersionError,
    StorageSpec,
    TensorInfo,
    ValidationError,
    check_run_id,
    open_lake_group,
    run_ids,
    validate_lake,
)
from sgnlake.schema.codecs import array_kwargs
from sgnlake.schema.names import SCHEMA_VERSION
from sgnlake.schema.store import parse_storage_options


def make_meta(**changes) -> RunMeta:
    cfg = RunConfig(
        run_id="fcn-b50",
        model="fcn",
        model_args={"depth": 3, "width": 32, "bias": False},
        batch_size=50,
        schedule=Schedule(kind="at", every=None, at=(0, 100, 500)),
        storage=StorageSpec(keepbits=10),
        tensors=("fc1.weight",),
    )
    fields = {
        "config": cfg,
        "tensors": (TensorInfo("fc1.weight", (32, 784), "weight", "fc1", "Linear"),),
        "status": "running",
        "n_examples": 5000,
        "n_minibatches": 100,
        "remainder": 0,
        "planned_iterations": (0, 100, 500),
        "total_steps": 500,
        "committed": 2,
        "extra": {"k": [1, 2]},
    }
    fields.update(changes)
    return RunMeta(**fields)


def test_run_meta_round_trips_through_json():
    meta = make_meta()
    d = json.loads(json.dumps(meta.to_dict()))
    assert RunMeta.from_dict(d) == meta
    assert d["tensors"][0]["numel"] == 32 * 784
    assert d["config"]["storage"]["lossy"] is True
    assert meta.tensor("fc1.weight").numel == 25088


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("status"), "missing field 'status'"),
        (lambda d: d.update(n_minibatches="100"), "'n_minibatches' must be int"),
        (lambda d: d["config"].update(batch_size=True), "'batch_size' must be int"),
        (lambda d: d["tensors"][0].update(shape=[32, 0]), "positive integers"),
        (lambda d: d.update(status="paused"), "status 'paused' unknown"),
    ],
)
def test_run_meta_from_dict_names_the_bad_field(mutate, needle):
    d = make_meta().to_dict()
    mutate(d)
    with pytest.raises(ValidationError, match=needle):
        RunMeta.from_dict(d)


def test_schedules():
    assert Schedule(every=100).iterations(350) == [100, 200, 300]
    assert Schedule(every=100, include_start=True).iterations(200) == [0, 100, 200]
    assert Schedule(kind="at", every=None, at=(500, 0, 100, 9999)).iterations(1000) == [0, 100, 500]
    assert Schedule(kind="logspace", every=None, count=4).iterations(1000) == [1, 10, 100, 1000]
    # the paper's code: every 100th step of each epoch (epochs of 250 steps)
    assert Schedule(every=100, per_epoch=True).iterations(500, steps_per_epoch=250) == [100, 200, 350, 450]
    for bad in (dict(every=0), dict(kind="at", at=()), dict(kind="logspace", count=0), dict(kind="weekly")):
        with pytest.raises(ConfigError):
            Schedule(**bad)


def test_run_config_checks():
    for bad in (
        dict(lr=0.0),
        dict(lr=float("nan")),
        dict(batch_size=0),
        dict(partition="random"),
        dict(engine="jit"),
        dict(epochs=0),
        dict(n_train=0),
    ):
        with pytest.raises(ConfigError):
            RunConfig(run_id="x", model="fcn", **bad)
    with pytest.raises(ConfigError, match="keepbits"):
        StorageSpec(keepbits=24)
    with pytest.raises(ConfigError, match="float32"):
        StorageSpec(keepbits=8, dtype="float16")


@pytest.mark.parametrize("rid", ["lenet-b50", "fcn_d3.w32=x+1", "0abc"])
def test_good_run_ids(rid):
    assert check_run_id(rid) == rid


@pytest.mark.parametrize("rid", ["", "-x", "a/b", "a..b", "a b", "x" * 129, ".hidden"])
def test_bad_run_ids(rid):
    with pytest.raises(ConfigError, match="invalid run id"):
        check_run_id(rid)


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_codecs_follow_the_storage_spec():
    kw = array_kwargs(StorageSpec())
    assert kw["dtype"] == np.float32 and np.isnan(kw["fill_value"]) and kw["filters"] == []
    assert type(kw["compressors"][0]).__name__ == "ZstdCodec"
    lossy = array_kwargs(StorageSpec(codec="blosc-zstd", keepbits=7))
    assert type(lossy["filters"][0]).__name__ == "BitRound"
    assert lossy["compressors"][0].shuffle.name == "bitshuffle"
    # no compressor: only the crc32c checksum, which ends every chain
    none = array_kwargs(StorageSpec(codec="none"))["compressors"]
    assert [type(c).__name__ for c in none] == ["Crc32cCodec"]
    for spec in (StorageSpec(), StorageSpec(codec="blosc-zstd", keepbits=7)):
        assert type(array_kwargs(spec)["compressors"][-1]).__name__ == "Crc32cCodec"
    assert array_kwargs(StorageSpec(dtype="float16"))["dtype"] == np.float16


def test_storage_options_parse():
    got = parse_storage_options(["anon=true", "client_kwargs.endpoint_url=http://h:9000", "retries=3"])
    assert got == {"anon": True, "client_kwargs": {"endpoint_url": "http://h:9000"}, "retries": 3}


def test_open_lake_group(tmp_path):
    lake = tmp_path / "lake"
    with pytest.raises(NotALakeError, match="no lake at"):
        open_lake_group(lake)
    root = open_lake_group(lake, mode="a")
    assert LakeMeta.from_dict(root.attrs["sgnlake"]).version == SCHEMA_VERSION and "runs" in root
    assert run_ids(open_lake_group(lake)) == [] and validate_lake(lake).ok
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("x")
    with pytest.raises(NotALakeError, match="not an sgnlake lake"):
        open_lake_group(tmp_path / "other")
    with pytest.raises(NotALakeError, match="non-empty directory"):
        open_lake_group(tmp_path / "other", mode="a")
    zarr.open_group(str(tmp_path / "plain"), mode="w").create_group("x")
    with pytest.raises(NotALakeError, match="no 'sgnlake' attribute"):
        open_lake_group(tmp_path / "plain")
    newer = dict(root.attrs["sgnlake"], version=SCHEMA_VERSION + 1)
    root.attrs["sgnlake"] = newer
    with pytest.raises(SchemaVersionError, match="upgrade sgnlake"):
        open_lake_group(lake)


def test_validate_lake_finds_contract_breaks(tmp_path):
    """A hand-written lake (plain zarr): valid, then broken in the ways validation must catch."""
    lake = tmp_path / "lake"
    root = open_lake_group(lake, mode="a")
    meta = make_meta(planned_iterations=(0, 100, 500), committed=2)
    g = root.create_group("runs/fcn-b50")
    g.create_array("iteration", data=np.array([0, 100, 500], dtype="int64"), dimension_names=["iteration"])
    for name in ("loss", "accuracy"):
        g.create_array(name, data=np.zeros(3), dimension_names=["iteration"])
    tg = g.create_group("fc1.weight")
    tg.create_array(
        "sgn",
        shape=(3, 100, 25088),
        chunks=(1, 100, 8192),
        dtype="float32",
        dimension_names=["iteration", "minibatch", "param"],
    )
    for name in ("grad", "weight"):
        tg.create_array(name, shape=(3, 25088), dtype="float32", dimension_names=["iteration", "param"])
    g.attrs["sgnlake_run"] = meta.to_dict()
    assert validate_lake(lake).ok
    g.attrs["sgnlake_run"] = make_meta(n_minibatches=99).to_dict()
    assert any("minibatch=100, expected 99" in p for p in validate_lake(lake).problems)
    g.attrs["sgnlake_run"] = make_meta(committed=4, planned_iterations=(0, 100, 500, 900)).to_dict()
    assert any("4 are committed" in p for p in validate_lake(lake).problems)
    g.attrs["sgnlake_run"] = meta.to_dict()
    g["iteration"][1] = 0
    assert any("not strictly increasing" in p for p in validate_lake(lake).problems)


def test_default_level_follows_the_codec():
    """zstd defaults to its fast level -5, blosc to 1; an explicit level is kept; out of range is refused."""
    assert StorageSpec().level == -5 and StorageSpec(codec="blosc-zstd").level == 1
    assert StorageSpec(level=3).level == 3
    assert StorageSpec.from_dict({"codec": "zstd"}).level == -5
    assert StorageSpec.from_dict(StorageSpec(level=1).to_dict()).level == 1  # stored lakes keep theirs
    with pytest.raises(ConfigError, match="out of range for blosc-zstd"):
        StorageSpec(codec="blosc-zstd", level=-1)
    assert StorageSpec(level=-131072).level == -131072  # zstd's fastest "fast" level
    with pytest.raises(ConfigError, match=r"--level 23 out of range for zstd: use -131072\.\.22"):
        StorageSpec(level=23)


def test_run_table_columns_come_from_the_run_config_fields():
    import dataclasses

    from sgnlake.schema.run_table import CONFIG_COLUMNS, HIDDEN_FIELDS, config_columns, run_row

    # Compatible with the columns typed by hand before they were derived.
    assert CONFIG_COLUMNS == (
        "model",
        "depth",
        "width",
        "bias",
        "dataset",
        "n_train",
        "batch_size",
        "lr",
        "optimizer",
        "weight_decay",
        "seed",
        "shuffle",
        "partition",
        "n_minibatches",
        "dtype",
        "keepbits",
    )
    # Every RunConfig field has a column unless it is listed as hidden; nested ones expand.
    cols = config_columns()
    storage = [f.name for f in dataclasses.fields(StorageSpec)]
    for f in dataclasses.fields(RunConfig):
        if f.name == "model_args":
            assert {"depth", "width", "bias"} <= set(cols)
        elif f.name == "storage":
            assert set(storage) <= set(cols)
        else:
            assert (f.name in cols) != (f.name in HIDDEN_FIELDS), f.name
    meta = make_meta()
    flat, nested = run_row(meta), run_row(meta, nested=True)
    assert list(flat)[: len(cols)] == list(cols)
    assert (flat["depth"], flat["width"], flat["keepbits"], flat["param_chunk"]) == (3, 32, 10, 8192)
    assert nested["model_args"] == {"depth": 3, "width": 32, "bias": False}
    assert nested["storage"] == meta.config.storage.to_dict()
    json.dumps(nested)  # JSON-ready


def test_stored_bytes_counts_what_is_on_disk(tmp_path):
    import os

    from sgnlake.schema.names import run_path
    from sgnlake.schema.store import key_sizes, list_keys, stored_bytes

    try:
        from .lake_fixtures import RunSpec, write_lake
    except ImportError:
        from lake_fixtures import RunSpec, write_lake

    lake = write_lake(str(tmp_path / "lake"), [RunSpec("r1"), RunSpec("r10", seed=2)])
    folder = tmp_path / "lake" / "runs" / "r1"
    on_disk = {
        os.path.relpath(os.path.join(d, f), tmp_path / "lake"): os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(folder)
        for f in files
    }
    assert stored_bytes(lake, run_path("r1")) == sum(on_disk.values()) > 0  # r10 is not under runs/r1/
    store = open_lake_group(lake).store
    assert stored_bytes(store, run_path("r1")) == sum(on_disk.values())
    assert key_sizes(store, run_path("r1")) == on_disk
    assert list_keys(store, run_path("r1")) == sorted(on_disk)
    some = sorted(on_disk)[:2]
    assert stored_bytes(store, keys=[*some, "runs/r1/absent/c/0"]) == sum(on_disk[k] for k in some)
    assert stored_bytes(lake, run_path("nope")) == 0
    assert stored_bytes(str(tmp_path / "no-lake"), run_path("r1")) == 0
    assert not (tmp_path / "no-lake").exists()  # measuring creates nothing


def test_is_empty_probes_a_location_without_creating_it(tmp_path):
    from sgnlake.schema.store import exists, is_empty

    try:
        from .lake_fixtures import write_lake
    except ImportError:
        from lake_fixtures import write_lake

    assert is_empty(str(tmp_path / "new")) and not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert is_empty(str(tmp_path / "empty"))
    lake = write_lake(str(tmp_path / "lake"))
    assert not is_empty(lake) and not is_empty(lake, "runs/r1") and is_empty(lake, "runs/r2")
    store = open_lake_group(lake).store
    assert exists(store, "zarr.json") and not exists(store, "runs/r2/zarr.json")
