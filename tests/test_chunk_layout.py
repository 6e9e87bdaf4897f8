"""Chunk-key layouts: new runs use flat keys (``c.<i>.<j>...``); runs in Zarr's nested layout stay readable and resumable.

Oracles: the files on disk, plain ``zarr`` reads, and an uninterrupted run written in the
other layout (stored values must be bit-identical whatever the layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from collect_fixtures import read_run_arrays
from lake_fixtures import chunk_coords, chunk_path

from sgnlake.collect import collect
from sgnlake.schema import validate_lake
from sgnlake.schema.check import check_lake
from sgnlake.schema.names import MINIBATCH, PARAM

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NESTED = {"name": "default", "separator": "/"}


def _separators(lake: Path, rid: str) -> set[str]:
    g = zarr.open_group(str(lake), mode="r", path=f"runs/{rid}")
    return {a.metadata.chunk_key_encoding.separator for _, a in g.arrays()} | {
        a.metadata.chunk_key_encoding.separator for _, tg in g.groups() for _, a in tg.arrays()
    }


def _chunk_files(lake: Path, rid: str) -> list[Path]:
    return sorted(p for p in (lake / "runs" / rid).rglob("*") if p.is_file() and p.name != "zarr.json")


def test_new_run_has_flat_keys_and_resumes_an_old_nested_run(
    tmp_path: Path, tiny_config, monkeypatch
) -> None:
    lake = tmp_path / "lake"
    cfg_flat, cfg_old = tiny_config("flat"), tiny_config("old")
    collect(lake, cfg_flat, progress=False, threads=1)
    assert _separators(lake, "flat") == {"."}
    sgn = lake / "runs" / "flat" / "fc1.weight" / "sgn"
    assert chunk_path(sgn, 3, 0, 0) == sgn / "c.3.0.0" and (sgn / "c.3.0.0").is_file()
    assert not (sgn / "c").exists()  # no folder per snapshot
    assert {chunk_coords(p)[0] for p in _chunk_files(lake, "flat")} == {0, 1, 2, 3}

    # a run started before issue 11 (Zarr's nested keys), stopped after 2 snapshots ...
    with monkeypatch.context() as mp:
        mp.setattr("sgnlake.schema.codecs.CHUNK_KEY_ENCODING", NESTED)
        mp.setattr("sgnlake.collect.run_layout.CHUNK_KEY_ENCODING", NESTED)
        m = collect(lake, cfg_old, progress=False, threads=1, stop_after=2)
    assert m.committed == 2 and _separators(lake, "old") == {"/"}
    # ... is resumed by today's writer in its own layout
    m = collect(lake, cfg_old, progress=False, threads=1, resume=True)
    assert m.status == "complete" and m.committed == 4
    assert _separators(lake, "old") == {"/"}
    old_sgn = lake / "runs" / "old" / "fc1.weight" / "sgn"
    assert (
        chunk_path(old_sgn, 3, 0, 0) == old_sgn / "c" / "3" / "0" / "0"
        and chunk_path(old_sgn, 3, 0, 0).is_file()
    )
    assert not any(p.name.startswith("c.") for p in _chunk_files(lake, "old"))
    # the same values, bit for bit, whatever the layout
    got, want = read_run_arrays(lake, "old"), read_run_arrays(lake, "flat")
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert validate_lake(str(lake)).ok
    rep = check_lake(lake)
    assert rep.ok, [f.line() for f in rep.findings]
    # check reads every chunk of the data arrays (the index coordinates minibatch/param are not data)
    assert {r.run_id: r.chunks_checked for r in rep.runs} == {
        rid: len([p for p in _chunk_files(lake, rid) if not {MINIBATCH, PARAM} & set(p.parts)])
        for rid in ("flat", "old")
    }


def test_directly_encoded_chunks_equal_zarrs_bytes(tmp_path: Path, tiny_config, monkeypatch) -> None:
    """The writer's own zstd encoding stores exactly the bytes zarr's codec pipeline stores (edge chunks too)."""
    from sgnlake.collect import chunk_files
    from sgnlake.schema.meta import StorageSpec

    lake = tmp_path / "lake"
    storage = StorageSpec(param_chunk=1000)  # fc1.weight: 6 full chunks and a padded edge chunk
    calls = []
    real = chunk_files.encode_chunk
    monkeypatch.setattr(chunk_files, "encode_chunk", lambda *a: calls.append(a[1].shape) or real(*a))
    collect(lake, tiny_config("direct", storage=storage), progress=False, threads=1)
    assert (1, 10, 272) in calls and (1, 1000) in calls  # the edge chunk of fc1.weight's sgn, grad chunks
    monkeypatch.setattr(chunk_files, "direct_codec", lambda arr: None)
    collect(lake, tiny_config("zarr", storage=storage), progress=False, threads=1)
    files = {
        rid: {p.relative_to(lake / "runs" / rid): p.read_bytes() for p in _chunk_files(lake, rid)}
        for rid in ("direct", "zarr")
    }
    assert files["direct"].keys() == files["zarr"].keys() and len(files["zarr"]) > 40
    for key, raw in files["zarr"].items():
        assert files["direct"][key] == raw, key
    assert check_lake(lake).ok
