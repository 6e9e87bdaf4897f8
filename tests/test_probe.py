"""The probe in a user's own loop: SGN equal to a brute-force autograd loop, trajectory untouched."""
# ruff: noqa: NPY002 - the global legacy numpy RNG is what a user loop uses and the probe must preserve

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
import zarr
from collect_fixtures import read_run_arrays
from torch import nn

from sgnlake.collect import Probe
from sgnlake.schema.errors import ConfigError, RunExistsError
from sgnlake.schema.names import COMPLETE, FAILED
from sgnlake.schema.validate import validate_lake


class UserNet(nn.Module):
    """A model the registry does not know: conv + BatchNorm + (optional) dropout + linear."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


class UserData(torch.utils.data.Dataset):
    """An indexable dataset of (x, y) pairs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def smoothed_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The user's own loss: label-smoothed cross-entropy plus a small logit penalty (a batch mean)."""
    return nn.functional.cross_entropy(out, y, label_smoothing=0.1) + 1e-3 * (out**2).mean()


def _data(n: int = 26):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def brute_force_sgn(model: nn.Module, x, y, batches, loss_fn):
    """Per-minibatch torch.autograd.grad on a copy in train mode; SGN = g_j - mean_j g_j (float64)."""
    m = copy.deepcopy(model).train()
    params = dict(m.named_parameters())
    rows = {n: [] for n in params}
    for idx in batches:
        gs = torch.autograd.grad(loss_fn(m(x[idx]), y[idx]), list(params.values()))
        for n, g in zip(params, gs, strict=True):
            rows[n].append(g.reshape(-1).double())
    out = {}
    for n, r in rows.items():
        g = torch.stack(r)
        out[n] = ((g - g.mean(0)).float().numpy(), g.mean(0).float().numpy())
    return out


def user_loop(steps, *, probe=None, snap_at=(), oracle=None, x=None, y=None, dropout=0.0):
    """A hand-written training loop with Adam (and numpy/python RNG use) as a user would write it."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = UserNet(dropout)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xs, ys = (x, y) if x is not None else _data()
    for step in range(steps):
        if step in snap_at:
            if oracle is not None:
                oracle[step] = copy.deepcopy(model)
            if probe is not None:
                probe.snapshot(step)
        idx = torch.as_tensor(np.random.choice(len(xs), 8, replace=False))
        random.random()
        opt.zero_grad()
        loss = smoothed_loss(model(xs[idx]), ys[idx])
        loss.backward()
        opt.step()
    return model, opt


def test_probe_sgn_equals_a_brute_force_autograd_loop_in_a_user_adam_loop(tmp_path):
    x, y = _data()
    snaps = (0, 3, 7)
    oracle: dict[int, nn.Module] = {}
    torch.manual_seed(0)
    np.random.seed(0)
    model = UserNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with Probe(
        tmp_path / "lake",
        run_id="mine",
        model=model,
        loss_fn=smoothed_loss,
        data=UserData(x, y),
        batch_size=5,
        partition="fixed",
        optimizer=opt,
    ) as probe:
        for step in range(9):
            if step in snaps:
                oracle[step] = copy.deepcopy(model)
                probe.snapshot(step)
            idx = torch.as_tensor(np.random.choice(len(x), 8, replace=False))
            opt.zero_grad()
            smoothed_loss(model(x[idx]), y[idx]).backward()
            opt.step()
    arrays = read_run_arrays(tmp_path / "lake", "mine")
    assert arrays["iteration"].tolist() == list(snaps)
    batches = torch.arange(25).view(5, 5)  # fixed partition, the 26th example left out
    for k, step in enumerate(snaps):
        want = brute_force_sgn(oracle[step], x, y, batches, smoothed_loss)
        for name, (sgn, grad) in want.items():
            np.testing.assert_allclose(arrays[f"{name}/sgn"][k], sgn, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(arrays[f"{name}/grad"][k], grad, rtol=1e-4, atol=1e-6)
            w = dict(oracle[step].named_parameters())[name].detach().reshape(-1).numpy()
            np.testing.assert_array_equal(arrays[f"{name}/weight"][k], w)
    g = zarr.open_group(str(tmp_path / "lake"), mode="r", path="runs/mine")
    meta = g.attrs["sgnlake_run"]
    assert meta["status"] == COMPLETE and meta["committed"] == 3
    assert meta["planned_iterations"] == list(snaps)
    assert meta["config"]["model"] == "UserNet" and meta["config"]["optimizer"] == "user"
    assert meta["config"]["lr"] == 0.01 and extra_optimizer(meta) == ("Adam", [0.9, 0.999])
    assert meta["n_minibatches"] == 5 and meta["remainder"] == 1
    extra = meta["extra"]
    assert extra["model_class"].endswith("UserNet") and extra["loss"].endswith("smoothed_loss")
    assert [p["name"] for p in extra["parameter_table"]] == [n for n, _ in UserNet().named_parameters()]
    assert meta["dataset_fingerprint"].startswith("sha256:")
    assert validate_lake(tmp_path / "lake").ok


def extra_optimizer(meta):
    o = meta["extra"]["optimizer"]
    return o["class"], o["betas"]


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_the_training_trajectory_is_bit_identical_with_and_without_the_probe(tmp_path, engine):
    x, y = _data()
    ref_model, ref_opt = user_loop(8, x=x, y=y, dropout=0.3)
    ref_rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = UserNet(0.3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    probe = Probe(
        tmp_path / "lake", run_id="traj", model=model, loss_fn=smoothed_loss, data=(x, y),
        batch_size=4, partition="permute", seed=5, engine=engine,
    )  # fmt: skip
    for step in range(8):
        if step in (0, 2, 5):
            model.eval() if step == 2 else None  # the probe keeps the user's mode
            probe.snapshot(step)
            assert not model.training if step == 2 else model.training
            model.train()
        idx = torch.as_tensor(np.random.choice(len(x), 8, replace=False))
        random.random()
        opt.zero_grad()
        loss = smoothed_loss(model(x[idx]), y[idx])
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        if step == 5:  # between backward and step: .grad must survive the probe
            probe.snapshot(6)
            assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
        opt.step()
    probe.close()
    for (n, a), b in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), n  # weights and BatchNorm buffers
    sa, sb = opt.state_dict()["state"], ref_opt.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert torch.equal(torch.get_rng_state(), ref_rng[0])
    assert np.array_equal(np.random.get_state()[1], ref_rng[1])
    assert random.getstate() == ref_rng[2]
    assert read_run_arrays(tmp_path / "lake", "traj")["iteration"].tolist() == [0, 2, 5, 6]


def test_a_tensor_pair_and_a_dataset_give_the_same_run(tmp_path):
    x, y = _data(20)
    torch.manual_seed(0)
    model = UserNet()
    for rid, data in (("pair", (x, y)), ("ds", UserData(x, y)), ("np", (x.numpy(), y.numpy()))):
        with Probe(tmp_path, run_id=rid, model=model, data=data, batch_size=4, seed=3) as p:
            p.snapshot(10)
    a, b, c = (read_run_arrays(tmp_path, r) for r in ("pair", "ds", "np"))
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k])
    attrs = [
        zarr.open_group(str(tmp_path), mode="r", path=f"runs/{r}").attrs["sgnlake_run"]
        for r in ("pair", "ds")
    ]
    assert attrs[0]["dataset_fingerprint"] == attrs[1]["dataset_fingerprint"]
    assert 0.0 <= a["accuracy"][0] <= 1.0  # cross-entropy by default: a classifier


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_a_regression_loss_has_no_accuracy(tmp_path, engine):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    x, y = torch.randn(12, 3), torch.randn(12, 2)
    with Probe(tmp_path, run_id="reg", model=model, loss_fn=nn.functional.mse_loss, data=(x, y), batch_size=3,
               partition="fixed", engine=engine) as p:  # fmt: skip
        p.snapshot(0)
    arrays = read_run_arrays(tmp_path, "reg")
    assert np.isnan(arrays["accuracy"][0])
    rows = []
    for j in range(4):
        idx = slice(3 * j, 3 * j + 3)
        gs = torch.autograd.grad(nn.functional.mse_loss(model(x[idx]), y[idx]), list(model.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in gs]).double())
    g = torch.stack(rows)
    got = np.concatenate([arrays[f"{n}/sgn"][0] for n, _ in model.named_parameters()], axis=1)
    np.testing.assert_allclose(got, (g - g.mean(0)).float().numpy(), rtol=1e-5, atol=1e-7)


def test_probe_resume_appends_and_bad_use_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    model = UserNet()
    x, y = _data(16)
    kw = {"run_id": "r", "model": model, "data": (x, y), "batch_size": 4}
    with Probe(tmp_path, **kw) as p:
        p.snapshot(1)
        p.snapshot(4)
        with pytest.raises(ConfigError, match="must increase"):
            p.snapshot(4)
    with pytest.raises(RunExistsError, match="resume=True"):
        Probe(tmp_path, **kw)
    with pytest.raises(ConfigError, match="different batch_size"):
        Probe(tmp_path, **{**kw, "batch_size": 2}, resume=True)
    with pytest.raises(ConfigError, match="dataset fingerprint"):
        Probe(tmp_path, **{**kw, "data": (x + 1, y)}, resume=True)
    with Probe(tmp_path, **kw, resume=True) as p:
        with pytest.raises(ConfigError, match="must increase"):
            p.snapshot(3)
        p.snapshot(9)
    meta = zarr.open_group(str(tmp_path), mode="r", path="runs/r").attrs["sgnlake_run"]
    assert meta["committed"] == 3 and meta["planned_iterations"] == [1, 4, 9] and meta["status"] == COMPLETE
    assert len(meta["extra"]["resumed"]) == 1
    assert validate_lake(tmp_path).ok
    with pytest.raises(ConfigError, match="exceeds"):
        Probe(tmp_path, **{**kw, "run_id": "big", "batch_size": 17})
    with pytest.raises(ConfigError, match=r"\(x, y\) pair"):
        Probe(tmp_path, **{**kw, "run_id": "bad", "data": [1, 2, 3]})


def test_an_error_in_the_with_block_marks_the_run_failed_and_keeps_its_snapshots(tmp_path):
    torch.manual_seed(0)
    model = UserNet()
    with pytest.raises(RuntimeError, match="boom"):
        with Probe(tmp_path, run_id="f", model=model, data=_data(12), batch_size=4) as p:
            p.snapshot(0)
            raise RuntimeError("boom")
    meta = zarr.open_group(str(tmp_path), mode="r", path="runs/f").attrs["sgnlake_run"]
    assert meta["status"] == FAILED and meta["committed"] == 1 and "boom" in meta["reason"]


def test_a_probe_with_a_parameter_sample_stores_the_full_runs_sgn_at_those_indices(tmp_path):
    from sgnlake.schema.meta import StorageSpec

    torch.manual_seed(0)
    model = UserNet()
    x, y = _data(16)
    kw = {"model": model, "data": (x, y), "batch_size": 4, "loss_fn": smoothed_loss}
    with Probe(tmp_path, run_id="full", **kw) as p:
        p.snapshot(0)
    with Probe(tmp_path, run_id="part", storage=StorageSpec(param_sample=5), **kw) as p:
        p.snapshot(0)
    full, part = read_run_arrays(tmp_path, "full"), read_run_arrays(tmp_path, "part")
    for name, _ in model.named_parameters():
        idx = part[f"{name}/param"]  # the original flat indices
        assert len(idx) == min(5, full[f"{name}/sgn"].shape[-1])
        np.testing.assert_array_equal(part[f"{name}/sgn"][0], full[f"{name}/sgn"][0][:, idx])


def test_cpu_vmap_chunk_leaves_room_for_the_deferred_raw_gradients():
    """On the CPU each queued snapshot holds its raw (M, P) float32 gradients until the writer centres
    them: the vmap calls get the configured budget less those bytes, and together stay within it."""
    from sgnlake.collect.models import build_model
    from sgnlake.collect.probe import WRITER_SLOTS, budget_and_chunk
    from sgnlake.collect.snapshot import deferred_sets

    mib = 2**20
    model = build_model("fcn", depth=2, width=8)  # fc1 784->8, fc2 8->10, no biases
    n_grad, m, b, budget_mb = 784 * 8 + 8 * 10, 100, 20, 10
    # per minibatch: 4 bytes x (4 x b x activations (784 + 8 + 10) + 2 x gradient size)
    per_mb = 4 * (4 * b * (784 + 8 + 10) + 2 * n_grad)
    raw_set = 4 * m * n_grad
    kw = {"engine": "vmap", "device": "cpu", "configured_mb": budget_mb, "auto_budget": False}
    deferred = deferred_sets("cpu", WRITER_SLOTS, whole_sgn=True, device_alpha=False)
    assert deferred == WRITER_SLOTS - 1 == 1
    budget0, chunk0 = budget_and_chunk(model, (1, 28, 28), b, m, n_grad, **kw)
    budget1, chunk1 = budget_and_chunk(model, (1, 28, 28), b, m, n_grad, deferred=deferred, **kw)
    assert budget0 == budget1 and budget1.mb == budget_mb  # the recorded budget is the configured one
    assert chunk0 * per_mb <= budget_mb * mib and chunk1 < chunk0
    assert chunk1 * per_mb + deferred * raw_set <= budget_mb * mib
    assert chunk0 * per_mb + deferred * raw_set > budget_mb * mib  # without it the budget is overrun
    # nothing is deferred on CUDA, with a parameter sample, with device alpha, or without a background writer
    assert deferred_sets("cuda", WRITER_SLOTS, whole_sgn=True, device_alpha=False) == 0
    assert deferred_sets("cpu", WRITER_SLOTS, whole_sgn=False, device_alpha=False) == 0
    assert deferred_sets("cpu", WRITER_SLOTS, whole_sgn=True, device_alpha=True) == 0
    assert deferred_sets("cpu", 1, whole_sgn=True, device_alpha=False) == 0
