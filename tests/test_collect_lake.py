"""The collected lake: plain xarray/zarr reads, validation, commit protocol, failures."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
import zarr

from sgnlake.collect import collect
from sgnlake.collect.data import load_dataset
from sgnlake.collect.models import build_model
from sgnlake.collect.snapshot import partition
from sgnlake.collect.writer import RunWriter
from sgnlake.schema import (
    DivergedError,
    LakeError,
    RunExistsError,
    SchemaVersionError,
    read_run_meta,
    validate_lake,
)
from sgnlake.schema.meta import Schedule, StorageSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def open_tree(lake):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no consolidated metadata (arrays grow)
        return xr.open_datatree(str(lake), engine="zarr")


def test_plain_xarray_and_zarr_read_the_lake(collected_lake):
    lake, meta = collected_lake
    assert meta.status == "complete" and meta.committed == 4
    assert meta.n_minibatches == 10 and meta.remainder == 0 and meta.n_examples == 200
    assert meta.planned_iterations == (0, 10, 20, 30) and meta.engine == "vmap"
    assert meta.dataset_fingerprint == load_dataset("mnist5k", n_train=200).fingerprint
    tree = open_tree(lake)
    sgn = tree["runs/tiny/fc1.weight"]["sgn"]
    assert sgn.dims == ("iteration", "minibatch", "param") and sgn.shape == (4, 10, 8 * 784)
    assert not isinstance(sgn.variable._data, np.ndarray)  # lazy
    np.testing.assert_array_equal(sgn["iteration"].values, [0, 10, 20, 30])
    assert tree["runs/tiny/fc2.weight"]["grad"].dims == ("iteration", "param")
    assert tree["runs/tiny"]["loss"].dims == ("iteration",)
    z = zarr.open_group(str(lake), mode="r")
    arr = z["runs/tiny/fc1.weight/sgn"]
    assert arr.chunks == (1, 10, 8 * 784) and np.isnan(arr.fill_value)
    np.testing.assert_array_equal(sgn.values, arr[:])
    assert validate_lake(lake).ok


def test_stored_sgn_is_the_sgn_of_the_stored_weights(collected_lake):
    """Independent check: rebuild the model from stored weights, brute-force the minibatch gradients."""
    lake, meta = collected_lake
    z = zarr.open_group(str(lake), mode="r", path="runs/tiny")
    k, t = 2, int(z["iteration"][2])
    x, y = load_dataset("mnist5k", n_train=200).tensors()
    model = build_model("fcn", depth=2, width=8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(z[f"{name}/weight"][k]).reshape(p.shape))
    batches = partition(200, 20, seed=0, iteration=t)
    grads = {n: [] for n, _ in model.named_parameters()}
    losses = []
    for idx in batches:
        loss = F.cross_entropy(model(x[idx]), y[idx])
        losses.append(float(loss.detach()))
        for (n, _), g in zip(
            model.named_parameters(), torch.autograd.grad(loss, list(model.parameters())), strict=True
        ):
            grads[n].append(g.reshape(-1).double().numpy())
    for n, gs in grads.items():
        G = np.stack(gs)
        u = G - G.mean(0)
        np.testing.assert_allclose(z[f"{n}/sgn"][k], u, atol=2e-6 * np.abs(u).max())
        np.testing.assert_allclose(z[f"{n}/grad"][k], G.mean(0), atol=2e-6 * np.abs(u).max())
    assert z["loss"][k] == pytest.approx(np.mean(losses), rel=1e-6)


def test_whole_lake_opens_with_results_and_checkpoints(tmp_path, tiny_config):
    lake = tmp_path / "lake"
    collect(lake, tiny_config("a"), progress=False)
    root = zarr.open_group(str(lake), mode="r+")
    res = root.require_group("results/a/mohammadi/fc1.weight")
    res.create_array("alpha", shape=(4, 6272), dtype="float32", dimension_names=["iteration", "param"])
    root["results/a/mohammadi"].create_array("iteration", data=np.arange(4), dimension_names=["iteration"])
    tree = open_tree(lake)
    assert "checkpoints" in tree.children and "results" in tree.children
    assert list(tree["checkpoints/a"].children) == ["s000003"]
    assert tree["results/a/mohammadi/fc1.weight"]["alpha"].dims == ("iteration", "param")


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_storage_options_are_applied_and_recorded(tmp_path, tiny_config):
    lake = tmp_path / "lake"
    cfg = tiny_config("lossy", storage=StorageSpec(codec="blosc-zstd", keepbits=7, param_chunk=1000))
    meta = collect(lake, cfg, progress=False)
    z = zarr.open_group(str(lake), mode="r", path="runs/lossy")
    sgn = z["fc1.weight/sgn"]
    assert sgn.chunks == (1, 10, 1000) and z["fc2.weight/sgn"].chunks == (1, 10, 80)
    assert z["fc1.weight/grad"].chunks == (1, 1000)
    assert [type(f).__name__ for f in sgn.filters] == ["BitRound"]
    assert meta.config.storage.lossy and meta.config.storage.keepbits == 7
    vals = sgn[1]
    mant = vals.view(np.uint32) & np.uint32((1 << 23) - 1)
    assert np.all(mant & np.uint32((1 << (23 - 7)) - 1) == 0)  # 16 low mantissa bits dropped
    cfg16 = tiny_config("half", storage=StorageSpec(dtype="float16"))
    collect(lake, cfg16, progress=False)
    assert zarr.open_array(str(lake), path="runs/half/fc1.weight/sgn", mode="r").dtype == np.float16


def test_existing_run_is_refused_and_left_alone(collected_lake, tiny_config):
    lake, meta = collected_lake
    before = json.dumps(read_run_meta(zarr.open_group(str(lake), path="runs/tiny", mode="r")).to_dict())
    with pytest.raises(RunExistsError, match="--resume"):
        collect(lake, tiny_config("tiny"), progress=False)
    after = json.dumps(read_run_meta(zarr.open_group(str(lake), path="runs/tiny", mode="r")).to_dict())
    assert before == after


def test_validate_fails_on_missing_array_and_newer_schema(tmp_path, tiny_config):
    lake = tmp_path / "lake"
    collect(lake, tiny_config("v", iterations=10), progress=False)
    root = zarr.open_group(str(lake), mode="r+")
    del root["runs/v/fc2.weight/grad"]
    report = validate_lake(lake)
    assert not report.ok
    assert any("'fc2.weight' is missing array 'grad'" in p for p in report.problems)
    with pytest.raises(LakeError, match="missing array 'grad'"):
        report.raise_if_invalid()
    attrs = dict(root.attrs["sgnlake"])
    attrs["version"] = 99
    root.attrs["sgnlake"] = attrs
    with pytest.raises(SchemaVersionError, match="newer"):
        validate_lake(lake)


def test_readers_never_see_half_a_snapshot(tmp_path, tiny_config, monkeypatch, run_arrays):
    """A crash after the chunks of snapshot k are written but before the commit: invisible."""
    lake = tmp_path / "lake"
    calls = {"n": 0}
    real = RunWriter._write_checkpoint

    def crash_on_third(self, k, iteration, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk unplugged")
        return real(self, k, iteration, data)

    monkeypatch.setattr(RunWriter, "_write_checkpoint", crash_on_third)
    with pytest.raises(LakeError, match="writing snapshot 2 of run 'c' failed: OSError: disk unplugged"):
        collect(lake, tiny_config("c"), progress=False)
    meta = read_run_meta(zarr.open_group(str(lake), path="runs/c", mode="r"))
    assert meta.status == "failed" and "disk unplugged" in meta.reason and meta.committed == 2
    arrays = run_arrays(lake, "c")
    coords = ("minibatch", "param")  # index coordinates (no iteration dim)
    per_snapshot = [a for k, a in arrays.items() if k.rsplit("/", 1)[-1] not in coords]
    assert per_snapshot and all(a.shape[0] == 2 for a in per_snapshot)  # snapshot 2's chunks are not visible
    assert not np.isnan(arrays["fc1.weight/sgn"]).any()
    assert validate_lake(lake).ok


def test_divergence_marks_failed_and_keeps_earlier_snapshots(tmp_path, tiny_config):
    lake = tmp_path / "lake"
    with pytest.raises(DivergedError, match="non-finite") as e:
        collect(lake, tiny_config("d", lr=1e30), progress=False)
    assert "\n" not in str(e.value)
    meta = read_run_meta(zarr.open_group(str(lake), path="runs/d", mode="r"))
    assert meta.status == "failed" and "non-finite" in meta.reason
    assert meta.committed >= 1  # the snapshot at iteration 0 is kept
    z = zarr.open_array(str(lake), path="runs/d/fc1.weight/sgn", mode="r")
    assert z.shape[0] == meta.committed and np.isfinite(z[0]).all()


def _poison_gradients(monkeypatch, *, call: int, name: str, at: tuple[int, int], value: float) -> None:
    """Make the ``call``-th snapshot's loop engine return gradients with ``value`` at ``grads[name][at]``."""
    import sgnlake.collect.snapshot as snapshot_mod

    real = snapshot_mod.loop_gradients
    calls = []

    def poisoned(*args, **kwargs):
        res = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            res.grads[name][at] = value
        return res

    monkeypatch.setattr(snapshot_mod, "loop_gradients", poisoned)


def test_non_finite_snapshot_gradient_found_by_the_writer_fails_the_run(tmp_path, tiny_config, monkeypatch):
    """The writer thread centres and checks each snapshot: a non-finite gradient in snapshot 2 stops the run
    with the snapshot's own message (not a later training loss), snapshots 0 and 1 committed, 2 not."""
    _poison_gradients(monkeypatch, call=3, name="fc2.weight", at=(0, 0), value=float("inf"))
    lake = tmp_path / "lake"
    msg = "non-finite gradient of fc2.weight at iteration 20: lower --lr"
    with pytest.raises(DivergedError) as e:
        collect(lake, tiny_config("g", engine="loop"), progress=False, threads=1)
    assert str(e.value) == msg
    meta = read_run_meta(zarr.open_group(str(lake), path="runs/g", mode="r"))
    assert (meta.status, meta.reason, meta.committed) == ("failed", msg, 2)
    z = zarr.open_array(str(lake), path="runs/g/fc2.weight/sgn", mode="r")
    assert z.shape[0] == 2 and np.isfinite(z[:]).all()


def test_probe_whose_last_snapshot_diverges_ends_failed(tmp_path, monkeypatch):
    """A Probe's last snapshot with a non-finite gradient (found by the writer thread, after the user's
    loop ended) still leaves the run failed with the snapshot's message, earlier snapshots committed."""
    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.models import build_model
    from sgnlake.collect.probe import Probe

    x, y = load_dataset("mnist5k", n_train=100).tensors()
    torch.manual_seed(0)
    model = build_model("fcn", depth=2, width=8)
    _poison_gradients(monkeypatch, call=2, name="fc1.weight", at=(1, 2), value=float("nan"))
    msg = "non-finite gradient of fc1.weight at iteration 5: lower --lr"
    with pytest.raises(DivergedError, match=f"^{msg}$"):
        with Probe(tmp_path, run_id="p", model=model, data=(x, y), batch_size=20, engine="loop") as p:
            p.snapshot(0)
            p.snapshot(5)
    meta = read_run_meta(zarr.open_group(str(tmp_path), path="runs/p", mode="r"))
    assert (meta.status, meta.committed) == ("failed", 1) and msg in meta.reason


def test_ctrl_c_marks_interrupted(tmp_path, tiny_config, monkeypatch):
    from sgnlake.collect import runner

    lake = tmp_path / "lake"
    real = runner._Training.step

    def step(self, t):
        if t == 15:
            raise KeyboardInterrupt
        return real(self, t)

    monkeypatch.setattr(runner._Training, "step", step)
    with pytest.raises(KeyboardInterrupt):
        collect(lake, tiny_config("i"), progress=False)
    meta = read_run_meta(zarr.open_group(str(lake), path="runs/i", mode="r"))
    assert meta.status == "interrupted" and meta.committed == 2 and "--resume" in meta.reason


def test_schedule_and_minibatch_bookkeeping(tmp_path, tiny_config):
    lake = tmp_path / "lake"
    meta = collect(
        lake,
        tiny_config(
            "r",
            n_train=130,
            batch_size=20,
            iterations=None,
            epochs=2,
            schedule=Schedule(kind="logspace", every=None, count=3),
        ),
        progress=False,
    )
    assert meta.n_minibatches == 6 and meta.remainder == 10 and meta.n_minibatches == math.floor(130 / 20)
    assert meta.total_steps == 14  # 2 epochs of ceil(130 / 20) steps
    assert meta.planned_iterations == (1, 4, 14) and meta.committed == 3
    z = zarr.open_group(str(lake), mode="r", path="runs/r")
    assert z["fc1.weight/sgn"].shape == (3, 6, 6272)


def test_lake_probe_and_typed_not_found_errors(tmp_path, tiny_config):
    """No lake yet (missing path, empty folder) is a typed LakeNotFoundError; the probe answers None."""
    from sgnlake.schema import LakeNotFoundError, NotALakeError, open_lake_group, probe_lake

    missing, empty, other = tmp_path / "missing", tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    (other / "notes.txt").write_text("x")
    for where in (missing, empty):
        with pytest.raises(LakeNotFoundError):
            open_lake_group(where, mode="r")
        assert probe_lake(where) is None
    assert not missing.exists() and list(empty.iterdir()) == []  # the probe writes nothing
    with pytest.raises(NotALakeError) as e:
        probe_lake(other)
    assert not isinstance(e.value, LakeNotFoundError)
    lake = tmp_path / "lake"
    collect(lake, tiny_config("r1"), progress=False)
    root = probe_lake(lake)
    assert root is not None and root.store.read_only and "r1" in zarr.open_group(lake, mode="r")["runs"]
    assert probe_lake("memory://i10-no-such-lake") is None  # fsspec URL with nothing there
