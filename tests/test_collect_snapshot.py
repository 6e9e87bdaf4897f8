"""Snapshots against a brute-force autograd loop; RNG, mode and trajectory untouched."""
# ruff: noqa: NPY002 - this module checks the global legacy numpy RNG on purpose

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgnlake.collect.data import load_dataset
from sgnlake.collect.engines import choose_engine, vmap_chunk
from sgnlake.collect.models import build_model
from sgnlake.collect.snapshot import centre, compute_snapshot, n_minibatches, partition
from sgnlake.schema.errors import ConfigError, DivergedError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_force(model, x, y, batches):
    """Per-minibatch gradients with one torch.autograd.grad call each; float64 mean and SGN."""
    names, params = zip(*model.named_parameters(), strict=True)
    per = {n: [] for n in names}
    for idx in batches:
        loss = F.cross_entropy(model(x[idx]), y[idx])
        for n, g in zip(names, torch.autograd.grad(loss, params), strict=True):
            per[n].append(g.reshape(-1).double())
    out = {}
    for n, gs in per.items():
        G = torch.stack(gs)
        out[n] = (G - G.mean(0), G.mean(0))
    return out


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist5k", n_train=130).tensors()


@pytest.mark.parametrize("engine", ["loop", "vmap"])
@pytest.mark.parametrize(
    ("model_name", "args"), [("fcn", {"depth": 3, "width": 8, "bias": True}), ("lenet", {})]
)
def test_sgn_and_full_gradient_match_brute_force(data, engine, model_name, args):
    x, y = data
    torch.manual_seed(0)
    model = build_model(model_name, **args)
    b = 20
    snap = compute_snapshot(model, x, y, index=0, iteration=7, batch_size=b, seed=3, engine=engine, chunk=4)
    batches = partition(130, b, seed=3, iteration=7)
    assert batches.shape == (6, 20)  # M = floor(130 / 20), remainder 10 left out
    ref = brute_force(model, x, y, batches)
    assert set(snap.sgn) == {n for n, _ in model.named_parameters()}
    for name, (u, g) in ref.items():
        scale = float(u.abs().max())
        assert snap.sgn[name].shape == (6, model.get_parameter(name).numel())
        np.testing.assert_allclose(snap.sgn[name], u.numpy(), rtol=0, atol=2e-6 * scale + 1e-9)
        np.testing.assert_allclose(snap.grad[name], g.numpy(), rtol=1e-5, atol=2e-6 * scale + 1e-9)
        np.testing.assert_array_equal(
            snap.weight[name], model.get_parameter(name).detach().reshape(-1).numpy()
        )
        # SGN sums to ~0 over the minibatches
        assert np.abs(snap.sgn[name].astype(np.float64).sum(0)).max() <= 1e-6 * max(scale, 1e-12) * 6
    # loss and accuracy over the M*b examples used
    idx = batches.reshape(-1)
    with torch.no_grad():
        logits = model(x[idx])
    assert snap.loss == pytest.approx(float(F.cross_entropy(logits, y[idx])), rel=1e-6)
    assert snap.accuracy == pytest.approx(float((logits.argmax(1) == y[idx]).double().mean()))


@pytest.mark.parametrize("m", [1, 3, 50, 333, 1200])
@pytest.mark.parametrize("p", [1, 5, 64, 65, 127, 1000, 8193, 40001])
def test_blocked_centring_is_bit_identical_to_the_plain_formula(m, p):
    """Cache-sized column blocks change nothing: same float64 mean, same float32 SGN, bit for bit."""
    gen = torch.Generator().manual_seed(m * 100003 + p)
    g = torch.randn(m, p, generator=gen) * torch.rand(m, 1, generator=gen) * 1e3
    g[torch.rand(m, p, generator=gen) < 0.01] *= 1e6  # heavy tails
    ref_mean = g.sum(0, dtype=torch.float64) / m
    ref = (g.to(torch.float64) - ref_mean).to(torch.float32)
    out = torch.full_like(g, float("nan"))
    mean = centre(g, out=out)
    assert torch.equal(mean, ref_mean) and torch.equal(out, ref)
    inplace = g.clone()
    assert torch.equal(centre(inplace), ref_mean) and torch.equal(inplace, ref)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_one_non_finite_gradient_is_caught(data, bad, monkeypatch):
    """The finiteness check runs on the mean: one bad value in one minibatch still stops the run."""
    import sgnlake.collect.snapshot as snapshot_mod

    x, y = data
    torch.manual_seed(0)
    model = build_model("fcn", depth=2, width=8)
    real = snapshot_mod.loop_gradients

    def poisoned(*args, **kwargs):
        res = real(*args, **kwargs)
        res.grads["fc2.weight"][3, 5] = bad
        return res

    monkeypatch.setattr(snapshot_mod, "loop_gradients", poisoned)
    with pytest.raises(DivergedError, match="non-finite gradient of fc2.weight"):
        compute_snapshot(model, x, y, index=0, iteration=1, batch_size=20, seed=0, engine="loop")


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_deferred_centring_is_bit_identical_and_still_catches_divergence(data, engine, monkeypatch):
    """With a CPU staging pool the centring runs in ``wait()`` (the writer's thread): same bits, same error."""
    import sgnlake.collect.snapshot as snapshot_mod
    from sgnlake.collect.staging import HostStaging

    x, y = data
    torch.manual_seed(0)
    model = build_model("fcn", depth=3, width=8, bias=True)
    kw = dict(index=0, iteration=1, batch_size=20, seed=0, engine=engine, chunk=3)
    plain = compute_snapshot(model, x, y, **kw)  # no pool: centred before it returns
    pool = HostStaging("cpu")
    snap = compute_snapshot(model, x, y, staging=pool, **kw)
    assert snap._pending is not None  # nothing centred yet: only the weights were copied
    with torch.no_grad():  # the next training step changes the weights before the writer reads them
        for p in model.parameters():
            p.add_(1.0)
    snap.wait()
    for kind in ("sgn", "grad", "weight"):
        for n, want in getattr(plain, kind).items():
            np.testing.assert_array_equal(getattr(snap, kind)[n], want, err_msg=f"{kind} {n}")
    snap.release()

    real = getattr(snapshot_mod, f"{engine}_gradients")

    def poisoned(*args, **kwargs):
        res = real(*args, **kwargs)
        res.grads["fc2.weight"][3, 5] = float("nan")
        return res

    monkeypatch.setattr(snapshot_mod, f"{engine}_gradients", poisoned)
    bad = compute_snapshot(model, x, y, staging=pool, **kw)  # returns: the check is the writer's
    for _ in range(2):  # raised by every wait (the writer, then whoever asks again)
        with pytest.raises(
            DivergedError, match="^non-finite gradient of fc2.weight at iteration 1: lower --lr$"
        ):
            bad.wait()
    bad.release()
    with pytest.raises(DivergedError, match="non-finite gradient of fc2.weight"):  # not deferred: at once
        compute_snapshot(model, x, y, staging=pool, defer_centring=False, **kw)


def test_cpu_vmap_chunk_is_capped_where_larger_calls_run_slower():
    """On the CPU one vmap call holds at most 128 MiB of activations (measured optimum), in equal calls."""
    lenet = build_model("lenet")
    fcn = build_model("fcn", depth=4, width=64)
    assert vmap_chunk(lenet, (1, 28, 28), 50, 37106, 100, 512, "cpu") == 20  # 5.7 MB per minibatch: 5 x 20
    assert vmap_chunk(lenet, (1, 28, 28), 50, 37106, 110, 512, "cpu") == 22  # 5 equal calls, not 4 x 23 + 18
    assert vmap_chunk(fcn, (1, 28, 28), 50, 59008, 100, 512, "cpu") == 100  # 0.79 MB per minibatch: one call
    assert vmap_chunk(fcn, (1, 28, 28), 50, 59008, 1200, 4096, "cpu") == 150  # 8 calls of 150 at M = 1200
    assert vmap_chunk(fcn, (1, 28, 28), 50, 59008, 20, 512, "cpu") == 20  # never more than M
    assert vmap_chunk(lenet, (1, 28, 28), 50, 37106, 100, 1, "cpu") == 1  # the memory budget still rules


def test_partitions():
    assert n_minibatches(130, 20) == (6, 10)
    with pytest.raises(ConfigError, match="exceeds"):
        n_minibatches(10, 20)
    fixed = partition(130, 20, seed=0, iteration=5, kind="fixed")
    np.testing.assert_array_equal(fixed.reshape(-1).numpy(), np.arange(120))
    a = partition(130, 20, seed=0, iteration=5)
    assert torch.equal(a, partition(130, 20, seed=0, iteration=5))
    assert not torch.equal(a, partition(130, 20, seed=0, iteration=6))
    assert not torch.equal(a, partition(130, 20, seed=1, iteration=5))
    assert len(set(a.reshape(-1).tolist())) == 120  # disjoint minibatches


def test_snapshot_leaves_rng_mode_grads_and_weights_alone(data):
    x, y = data
    torch.manual_seed(0)
    model = build_model("fcn", depth=2, width=8)
    model.eval()
    model.fc1.weight.grad = torch.full_like(model.fc1.weight, 7.0)
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    for engine in ("loop", "vmap"):
        compute_snapshot(model, x, y, index=0, iteration=1, batch_size=20, seed=0, engine=engine, chunk=3)
    assert not model.training
    assert torch.equal(model.fc1.weight.grad, torch.full_like(model.fc1.weight, 7.0))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    torch.manual_seed(11)
    t = torch.rand(3)
    np.random.seed(11)
    n = np.random.rand(3)
    random.seed(11)
    r = random.random()
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    compute_snapshot(model, x, y, index=0, iteration=1, batch_size=20, seed=0, engine="loop")
    assert torch.equal(torch.rand(3), t) and np.array_equal(np.random.rand(3), n) and random.random() == r


def test_auto_engine_choice():
    assert choose_engine("auto", "fcn", "cpu") == "vmap"
    assert choose_engine("auto", "lenet", "cpu") == "loop"
    assert choose_engine("auto", "lenet", "cuda") == "vmap"
    assert choose_engine("loop", "fcn", "cuda") == "loop"


def test_trajectory_is_the_same_with_and_without_snapshots(tmp_path, tiny_config, run_arrays):
    """Weights and losses at step N: every-step snapshots == one snapshot == a plain SGD loop."""
    from sgnlake.collect import collect
    from sgnlake.schema.meta import Schedule

    lake = tmp_path / "lake"
    common = {"iterations": 12, "shuffle": False, "partition": "fixed"}
    collect(lake, tiny_config("every", schedule=Schedule(every=1), **common), progress=False)
    collect(
        lake,
        tiny_config("once", schedule=Schedule(kind="at", every=None, at=(12,)), **common),
        progress=False,
    )
    a, b = run_arrays(lake, "every"), run_arrays(lake, "once")
    # independent oracle: plain SGD over the data in order (no shuffling), b=20, n=200
    x, y = load_dataset("mnist5k", n_train=200).tensors()
    torch.manual_seed(0)
    model = build_model("fcn", depth=2, width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for t in range(12):
        idx = slice((t % 10) * 20, (t % 10 + 1) * 20)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    for name in ("fc1.weight", "fc2.weight"):
        w = model.get_parameter(name).detach().reshape(-1).numpy()
        np.testing.assert_array_equal(a[f"{name}/weight"][-1], w)
        np.testing.assert_array_equal(b[f"{name}/weight"][0], w)
        np.testing.assert_array_equal(a[f"{name}/sgn"][-1], b[f"{name}/sgn"][0])
    with torch.no_grad():
        oracle_loss = float(F.cross_entropy(model(x), y))
    assert a["loss"][-1] == b["loss"][0] == pytest.approx(oracle_loss, rel=1e-6)
    np.testing.assert_array_equal(a["iteration"], np.arange(1, 13))
