"""Resuming: after stop_after, after SIGKILL, after a crash mid-commit; equal to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr
from collect_fixtures import TINY, read_run_arrays

from sgnlake.collect import collect
from sgnlake.schema import ConfigError, read_run_meta, validate_lake
from sgnlake.schema.meta import RunConfig, Schedule

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Shuffled training, permuted partitions, 13 snapshots: every RNG path is exercised.
LONG = {"iterations": 120, "schedule": Schedule(kind="every", every=10, include_start=True)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (the oracle for every resumed run)."""
    lake = tmp_path_factory.mktemp("ref") / "lake"
    collect(lake, RunConfig(run_id="ref", **{**TINY, **LONG}), progress=False, threads=1)
    return read_run_arrays(lake, "ref")


def assert_same_arrays(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def meta_of(lake, rid):
    return read_run_meta(zarr.open_group(str(lake), path=f"runs/{rid}", mode="r"))


def test_resume_after_stop_after_equals_uninterrupted(tmp_path, tiny_config, reference, run_arrays):
    lake = tmp_path / "lake"
    cfg = tiny_config("r", **LONG)
    m = collect(lake, cfg, progress=False, stop_after=3)
    assert m.status == "interrupted" and m.committed == 3 and "--resume" in m.reason
    m = collect(lake, cfg, progress=False, resume=True, stop_after=4)
    assert m.committed == 7
    m = collect(lake, cfg, progress=False, resume=True)
    assert m.status == "complete" and m.committed == 13 and len(m.extra["resumed"]) == 2
    assert_same_arrays(run_arrays(lake, "r"), reference)
    assert list(zarr.open_group(str(lake), path="checkpoints/r", mode="r").group_keys()) == ["s000012"]
    # a complete run resumes to itself without writing
    again = collect(lake, cfg, progress=False, resume=True)
    assert again.updated == m.updated


def test_resume_truncates_an_uncommitted_tail(tmp_path, tiny_config, reference, run_arrays):
    """Simulate a crash after the arrays grew but before `committed` was bumped."""
    lake = tmp_path / "lake"
    cfg = tiny_config("t", **LONG)
    collect(lake, cfg, progress=False, stop_after=5)
    root = zarr.open_group(str(lake), mode="r+")
    for name in run_arrays(lake, "t"):
        z = root[f"runs/t/{name}"]
        if z.metadata.dimension_names[0] != "iteration":
            continue  # index coordinates (minibatch, param) do not grow with snapshots
        z.resize((7, *z.shape[1:]))  # two snapshots of garbage beyond the commit marker
        z[5:] = np.full((2, *z.shape[1:]), 99, dtype=z.dtype)
    # and a stray chunk written through a view at index 7
    sgn = root["runs/t/fc2.weight/sgn"]
    from zarr.core.array import AsyncArray

    view = zarr.Array(
        AsyncArray(
            metadata=sgn.metadata.update_shape((8, *sgn.shape[1:])),
            store_path=sgn._async_array.store_path,
            config=sgn._async_array.config,
        )
    )
    view[7] = np.full(sgn.shape[1:], 77, dtype=np.float32)
    assert meta_of(lake, "t").committed == 5 and validate_lake(lake).ok
    m = collect(lake, cfg, progress=False, resume=True)
    assert m.committed == 13
    assert_same_arrays(run_arrays(lake, "t"), reference)


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, tiny_config, reference, run_arrays):
    lake = tmp_path / "lake"
    # The child paces its commits (50 ms each) so that it is surely killed mid-run.
    script = textwrap.dedent(
        f"""
        import time, torch
        torch.set_num_threads(1)
        from sgnlake.collect import collect, writer
        from sgnlake.schema.meta import RunConfig, Schedule
        real = writer.RunWriter.commit
        def slow(self, snap):
            time.sleep(0.05)
            real(self, snap)
        writer.RunWriter.commit = slow
        cfg = RunConfig(run_id="k", model="fcn", model_args={{"depth": 2, "width": 8}}, n_train=200,
                        batch_size=20, iterations=120, device="cpu",
                        schedule=Schedule(kind="every", every=10, include_start=True))
        collect({str(lake)!r}, cfg, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        committed = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                committed = meta_of(lake, "k").committed
            except Exception:  # noqa: BLE001 - the lake may not exist yet
                committed = 0
            if committed >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the child finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    meta = meta_of(lake, "k")
    assert meta.status == "running" and 3 <= meta.committed < 13
    m = collect(lake, tiny_config("k", **LONG), progress=False, resume=True)
    assert m.status == "complete" and m.committed == 13
    assert_same_arrays(run_arrays(lake, "k"), reference)


def test_resume_refuses_a_different_config(tmp_path, tiny_config):
    lake = tmp_path / "lake"
    collect(lake, tiny_config("c", **LONG), progress=False, stop_after=1)
    with pytest.raises(ConfigError, match="different batch_size"):
        collect(lake, tiny_config("c", **{**LONG, "batch_size": 40}), progress=False, resume=True)
    assert meta_of(lake, "c").committed == 1
    # resume of an absent run starts it
    m = collect(lake, tiny_config("fresh", iterations=10), progress=False, resume=True)
    assert m.status == "complete"


def test_resume_after_the_default_level_changed_keeps_the_runs_codec(
    tmp_path, tiny_config, reference, run_arrays, monkeypatch
):
    """A run collected with zstd -5 resumes after a later sgnlake changed the default level.

    The config that names no level (so gets the new default) is the same run; the run keeps its
    stored level, and every chunk, before and after the resume, holds exactly the bytes of
    numcodecs' zstd at the run's level (+ the 4-byte CRC), not the new default's."""
    import numcodecs

    from sgnlake.schema import meta as schema_meta
    from sgnlake.schema.meta import StorageSpec

    lake = tmp_path / "lake"
    collect(lake, tiny_config("lv", storage=StorageSpec(level=-5), **LONG), progress=False, stop_after=3)
    monkeypatch.setitem(schema_meta.DEFAULT_LEVELS, "zstd", -50)  # the default changed since
    given = tiny_config("lv", **LONG)
    assert given.storage.level == -50
    m = collect(lake, given, progress=False, resume=True)
    assert m.status == "complete" and m.committed == 13 and m.config.storage.level == -5
    assert meta_of(lake, "lv").config.storage.level == -5
    assert_same_arrays(run_arrays(lake, "lv"), reference)
    # the chunks on disk: zstd -5 (the run's codec), before and after the resume
    sgn = zarr.open_array(str(lake), path="runs/lv/fc1.weight/sgn", mode="r")
    assert [c.to_dict()["configuration"].get("level") for c in sgn.metadata.codecs[1:2]] == [-5]
    folder = lake / "runs" / "lv" / "fc1.weight" / "sgn"
    differs = False
    for i in range(m.committed):
        for j in range(sgn.cdata_shape[2]):
            key = sgn.metadata.encode_chunk_key((i, 0, j))
            raw = (folder / key).read_bytes()
            values = np.ascontiguousarray(sgn[i : i + 1, :, j * sgn.chunks[2] : (j + 1) * sgn.chunks[2]])
            assert raw[:-4] == numcodecs.Zstd(level=-5).encode(values.tobytes()), (i, j)
            differs |= raw[:-4] != numcodecs.Zstd(level=-50).encode(values.tobytes())
    assert differs  # the two levels give different bytes on this SGN (the check above can fail)


def test_only_a_default_level_is_not_a_storage_difference(tiny_config, monkeypatch):
    """The resume rule: a level the config did not choose is the stored run's; any other storage change is not."""
    from sgnlake.collect.config import resolve_config, resume_differences
    from sgnlake.schema import meta as schema_meta
    from sgnlake.schema.meta import StorageSpec

    stored = resolve_config(tiny_config("lv", storage=StorageSpec(level=-5)))  # as the collector stores it
    monkeypatch.setitem(schema_meta.DEFAULT_LEVELS, "zstd", -50)
    assert resume_differences(stored, tiny_config("lv")) == []
    for other in (StorageSpec(level=3), StorageSpec(keepbits=10), StorageSpec(codec="blosc-zstd")):
        (diff,) = resume_differences(stored, tiny_config("lv", storage=other))
        assert diff[0] == "storage" and diff[1]["level"] == -5
    # the same for runs stored under the new default and asked with an explicit old level
    assert resume_differences(resolve_config(tiny_config("lv")), stored)[0][0] == "storage"
