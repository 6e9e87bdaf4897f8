"""Shared, generic fixtures. Stage-specific helpers live in ``tests/<name>_fixtures.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from collect_fixtures import TINY, read_run_arrays

from sgnlake.schema.meta import RunConfig


@pytest.fixture
def tiny_config() -> Callable[..., RunConfig]:
    """Factory of tiny CPU run configs (see ``collect_fixtures.TINY``): ``tiny_config("rid", batch_size=40)``."""

    def make(run_id: str = "tiny", **overrides: Any) -> RunConfig:
        return RunConfig(run_id=run_id, **{**TINY, **overrides})

    return make


@pytest.fixture
def run_arrays() -> Callable[[str | Path, str], dict[str, np.ndarray]]:
    """``run_arrays(lake, run_id)``: every array of a run read with plain zarr."""
    return read_run_arrays


@pytest.fixture(scope="session")
def collected_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A lake with one complete tiny FCN run ``tiny`` (snapshots at 0, 10, 20, 30), collected once.

    Returns ``(lake_path, run_meta)``; treat it as read-only.
    """
    pytest.importorskip("torch")
    from sgnlake.collect import collect

    lake = tmp_path_factory.mktemp("collected") / "lake"
    meta = collect(lake, RunConfig(run_id="tiny", **TINY), progress=False, threads=1)
    return lake, meta


@pytest.fixture
def one_torch_thread():
    """Run a test with ``torch.set_num_threads(1)`` (restored after).

    On a shared 2-core machine torch's intra-op threads fight other processes
    and tiny models get 10-50x slower; one thread keeps tests fast and stable.
    """
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def alpha_da() -> xr.DataArray:
    """Alpha (iteration, param) for two modules with NaNs and values above 2."""
    rng = np.random.default_rng(0)
    n_it, n_p = 5, 30
    vals = rng.uniform(0.9, 2.3, (n_it, n_p))
    vals[1, [0, 3]] = np.nan
    vals[4, 25] = np.nan
    modules = np.array(["fc1"] * 20 + ["fc2"] * 10, dtype=object)
    return xr.DataArray(
        vals,
        dims=("iteration", "param"),
        coords={"iteration": [0, 100, 200, 300, 400], "module": ("param", modules)},
    )
