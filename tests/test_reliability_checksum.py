"""Checksums: a flipped bit inside a compressed SGN chunk of a collected lake is found and named.

The lake is written by the real collector; the damage is one bit of a real chunk
file. Oracles: the stored ``zarr.json`` documents (plain JSON) and the bytes on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from lake_fixtures import RunSpec, chunk_path, write_lake
from test_check import run_cli
from test_reliability_kill import CONFIG, RUN

from sgnlake.schema.check import check_lake


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sgnlake.collect import collect

    lake = tmp_path_factory.mktemp("crc") / "lake"
    assert collect(lake, CONFIG, progress=False, threads=1).status == "complete"
    return lake


@pytest.fixture
def lake(collected: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "lake"
    shutil.copytree(collected, dst)
    return dst


def _codecs(path: Path) -> list[str]:
    return [c["name"] for c in json.loads((path / "zarr.json").read_text())["codecs"]]


def test_every_collected_array_ends_with_crc32c(collected: Path) -> None:
    arrays = [p.parent for p in (collected / "runs").rglob("zarr.json") if '"array"' in p.read_text()]
    # iteration, loss, accuracy, minibatch + param, sgn, grad, weight of 2 tensors
    assert len(arrays) == 4 + 4 * 2
    for a in arrays:
        assert _codecs(a)[-1] == "crc32c", a


def _flip_one_bit(chunk: Path) -> None:
    raw = bytearray(chunk.read_bytes())
    i = len(raw) // 2  # inside the compressed payload (the checksum is the last 4 bytes)
    raw[i] ^= 0x10
    chunk.write_bytes(bytes(raw))


def test_flipped_bit_in_sgn_chunk_is_reported_by_check_and_alpha(lake: Path, capsys) -> None:
    chunk = chunk_path(lake / "runs" / RUN / "fc1.weight" / "sgn", 2, 0, 0)
    assert chunk.is_file() and chunk.stat().st_size > 64
    _flip_one_bit(chunk)
    it2 = int(np.asarray(zarr.open_group(str(lake), mode="r")[f"runs/{RUN}/iteration"][2]))
    rep = check_lake(lake)
    (p,) = rep.problems
    assert (p.run, p.tensor, p.array, p.iteration) == (RUN, "fc1.weight", "sgn", it2)
    code, out, _ = run_cli(["check", str(lake), "--no-progress"], capsys)
    assert code == 1 and f"tensor 'fc1.weight', array 'sgn', iteration {it2}" in out
    code, out, err = run_cli(["alpha", str(lake), "--runs", RUN, "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"run {RUN!r}, tensor 'fc1.weight', array 'sgn', iteration {it2}" in err, err
    assert "checksum" in err, err
    code, out, err = run_cli(["alpha", str(lake), "--runs", RUN, "--no-progress", "--skip-corrupt"], capsys)
    assert code == 0 and "skipped 1 corrupt chunk(s)" in err, err


def test_old_lake_without_checksums_still_opens(tmp_path: Path, capsys) -> None:
    lake = tmp_path / "old"
    write_lake(str(lake), [RunSpec("r1")])  # arrays created with plain zarr, zstd only
    assert _codecs(lake / "runs" / "r1" / "fc1.weight" / "sgn") == ["bytes", "zstd"]
    assert check_lake(lake).ok
    code, _, err = run_cli(["alpha", str(lake), "--runs", "r1", "--no-progress"], capsys)
    assert code == 0, err
