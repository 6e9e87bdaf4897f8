"""A run's resume checkpoints (``sgnlake.collect.run_checkpoints``): written directly after the first, old ones removed.

Oracles: the files on disk (the same set as zarr writes for the first checkpoint), and plain
zarr reading a checkpoint back. No torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr
from lake_fixtures import create_lake

from sgnlake.collect.run_checkpoints import CHECKPOINT_ARRAY, RunCheckpoints, checkpoint_name
from sgnlake.schema.names import checkpoint_path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_direct_checkpoints_match_zarrs_layout_and_old_ones_vanish(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    root = create_lake(str(lake))
    cps = RunCheckpoints(root, "r")
    folder = lake / checkpoint_path("r")
    first = None
    for k in range(4):
        data = bytes([k + 1]) * (1000 + k)  # not all zero (the fill value: zarr would store no chunk)
        cps.write(k, 10 * k, data)
        if k == 0:  # through zarr: the layout every later one must have
            first = _files(folder / checkpoint_name(0))
        else:
            assert _files(folder / checkpoint_name(k)) == first
        if k == 2:  # something unexpected in an old checkpoint: removed all the same
            (folder / checkpoint_name(1) / CHECKPOINT_ARRAY / "stray").write_bytes(b"x")
        if k >= 1:
            cps.delete_old(str(lake), k)
        assert sorted(os.listdir(folder)) == [checkpoint_name(k), "zarr.json"]  # the run's checkpoint group
        plain = zarr.open_array(
            str(lake), path=f"{checkpoint_path('r')}/{checkpoint_name(k)}/{CHECKPOINT_ARRAY}"
        )
        assert np.asarray(plain[:]).tobytes() == data
        assert cps.read(k + 1) == data  # its sha256 checked
