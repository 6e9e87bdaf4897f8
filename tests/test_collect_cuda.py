"""The collector's CUDA path, checked on the CPU: memory budget, engine choice, host staging, TF32.

No GPU here: the budget logic takes the device and the free memory as arguments,
the staging pool runs its CPU branch (plain copies into reused buffers), and the
float32 flags are process-global settings that exist without CUDA. What only a
GPU can show (pinned memory, side-stream overlap, mem_get_info) is exercised by
``bench/gpu_check.sh``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sgnlake.collect import runner  # noqa: E402
from sgnlake.collect.data import load_dataset  # noqa: E402
from sgnlake.collect.device import (  # noqa: E402
    DEVICE_BUDGET_CAP_MB,
    budget_from_free,
    full_float32,
    precision_flags,
    resolve_memory_budget,
)
from sgnlake.collect.engines import choose_engine  # noqa: E402
from sgnlake.collect.models import build_model  # noqa: E402
from sgnlake.collect.snapshot import compute_snapshot, snapshot_device_bytes  # noqa: E402
from sgnlake.collect.staging import HostStaging  # noqa: E402
from sgnlake.schema.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIB = 2**20
#: torch >= 2.9: per-backend ``fp32_precision`` settings next to the legacy flags.
NEW_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")
NODES = (
    "",
    "cudnn",
    "mkldnn",
    "cuda.matmul",
    "cudnn.conv",
    "cudnn.rnn",
    "mkldnn.matmul",
    "mkldnn.conv",
    "mkldnn.rnn",
)
#: Where a node's "none" defers to (cuda.matmul and cudnn.* share torch.backends.cudnn's "cuda" node).
PARENT = {"cudnn": "", "mkldnn": "", "cuda.matmul": "cudnn", "cudnn.conv": "cudnn", "cudnn.rnn": "cudnn"}
PARENT.update({f"mkldnn.{op}": "mkldnn" for op in ("matmul", "conv", "rnn")})


def node(path: str):
    obj = torch.backends
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj


def fp32_settings() -> dict[str, str]:
    return {p: node(p).fp32_precision for p in NODES} if NEW_API else {}


def resolved(path: str) -> str:
    while path is not None:
        value = node(path).fp32_precision
        if value != "none":
            return value
        path = PARENT.get(path) if path else None
    return "ieee"


def legacy_state() -> tuple[str, bool, bool]:
    """torch's legacy view; its getters raise when the legacy and per-backend settings disagree,
    which is also when cuBLAS matmuls raise."""
    return (
        torch.get_float32_matmul_precision(),
        bool(torch.backends.cuda.matmul.allow_tf32),
        bool(torch.backends.cudnn.allow_tf32),
    )


def legacy_or_none() -> tuple[str, bool, bool] | None:
    """:func:`legacy_state`, or None where torch refuses to tell (it does for a generic "tf32")."""
    try:
        return legacy_state()
    except RuntimeError:
        return None


def set_tf32(on: bool) -> None:
    torch.set_float32_matmul_precision("high" if on else "highest")
    torch.backends.cudnn.allow_tf32 = on


@pytest.fixture
def restore_precision():
    """Leave the global float32 settings as they were (legacy first, then per-backend)."""
    saved, legacy = fp32_settings(), legacy_state()
    yield
    torch.set_float32_matmul_precision(legacy[0])
    torch.backends.cudnn.allow_tf32 = legacy[2]
    for p, v in saved.items():
        node(p).fp32_precision = v
    assert legacy_state() == legacy and fp32_settings() == saved


# ----------------------------------------------------------------------------- budget


def test_budget_from_free_is_half_of_what_is_left_and_capped():
    assert budget_from_free(10 * 2**30, 2 * 2**30) == 4096  # half of 8 GiB
    assert budget_from_free(10 * 2**30) == 5120
    assert budget_from_free(139 * 2**30, 2**30) == DEVICE_BUDGET_CAP_MB == 16384  # an H200: capped
    assert budget_from_free(3 * MIB + 5, 0) == 1  # rounds down, never 0
    assert budget_from_free(2**30, 2**31) == 1  # nothing left after the snapshot's own buffers
    assert budget_from_free(10 * 2**30, 0, fraction=0.25, cap_mb=100) == 100


def test_resolve_memory_budget_reads_the_device_only_on_cuda_without_explicit_budget():
    free = 6 * 2**30
    b = resolve_memory_budget("cuda", 512, explicit=False, reserved_bytes=2**30, free_bytes=free)
    assert (b.mb, b.source, b.free_mb) == (2560, "device", 6144)
    assert resolve_memory_budget(torch.device("cuda", 1), 512, explicit=False, free_bytes=free).mb == 3072
    for dev, explicit in (("cuda:0", True), ("cpu", False), ("cpu", True)):
        b = resolve_memory_budget(dev, 700, explicit=explicit, free_bytes=free)
        assert (b.mb, b.source, b.free_mb) == (700, "config", None)
    assert b.to_dict() == {"memory_budget_mb": 700, "memory_budget_source": "config", "device_free_mb": None}


def test_snapshot_device_bytes():
    # two (M, P) float32 gradient buffers + three 64 MiB centring blocks
    assert snapshot_device_bytes(1200, 37106) == 2 * 4 * 1200 * 37106 + 3 * 64 * MIB


def test_budget_and_chunk_on_cuda_from_free_memory():
    model = build_model("fcn", depth=2, width=8)  # fc1 784->8, fc2 8->10, no biases
    n_grad, m, b = 784 * 8 + 8 * 10, 100, 20
    # activations of one example: the input (784) + fc1 (8) + fc2 (10); per minibatch
    # 4 bytes x (4 x b x activations + 2 x gradient size)
    per_mb = 4 * (4 * b * (784 + 8 + 10) + 2 * n_grad)
    reserved = 2 * 4 * m * n_grad + 3 * 64 * MIB
    kw = {"engine": "vmap", "device": "cuda", "configured_mb": 512, "free_bytes": reserved + 2 * MIB}
    budget, chunk = runner.budget_and_chunk(model, (1, 28, 28), b, m, n_grad, auto_budget=True, **kw)
    assert (budget.mb, budget.source) == (1, "device")
    assert chunk == MIB // per_mb == 3
    # resuming: the chunk the run started with is kept when it fits
    for first, want in ((2, 2), (50, 3)):
        _, c = runner.budget_and_chunk(
            model, (1, 28, 28), b, m, n_grad, auto_budget=True, stored_extra={"vmap_chunk": first}, **kw
        )
        assert c == want
    # an explicit budget is used as given (and the stored chunk does not cap it)
    budget, chunk = runner.budget_and_chunk(
        model, (1, 28, 28), b, m, n_grad, auto_budget=False, stored_extra={"vmap_chunk": 2}, **kw
    )
    assert (budget.mb, budget.source, chunk) == (512, "config", min(m, 512 * MIB // per_mb))
    # the loop engine: chunk 1
    kw["engine"] = "loop"
    assert runner.budget_and_chunk(model, (1, 28, 28), b, m, n_grad, auto_budget=True, **kw)[1] == 1


# ----------------------------------------------------------------------------- engine choice


def test_auto_engine_is_vmap_on_cuda_and_per_model_on_cpu():
    for dev in ("cuda", "cuda:0", torch.device("cuda", 1)):
        for model in ("fcn", "lenet"):
            assert choose_engine("auto", model, dev) == "vmap"
    assert choose_engine("auto", "fcn", "cpu") == "vmap"
    assert choose_engine("auto", "lenet", torch.device("cpu")) == "loop"
    assert choose_engine("loop", "fcn", "cuda:0") == "loop"
    assert choose_engine("vmap", "lenet", "cpu") == "vmap"
    with pytest.raises(ConfigError, match="unknown engine"):
        choose_engine("fast", "fcn", "cuda")


# ----------------------------------------------------------------------------- host staging


@pytest.fixture(scope="module")
def lenet_data():
    torch.manual_seed(0)
    return build_model("lenet"), *load_dataset("mnist5k", n_train=100).tensors()


def test_staged_snapshots_equal_unstaged_and_reuse_their_buffers(lenet_data):
    model, x, y = lenet_data
    kw = {"batch_size": 20, "seed": 1, "engine": "vmap", "chunk": 2}
    pool = HostStaging("cpu")
    assert not pool.pinned and not pool.overlapped
    refs = [compute_snapshot(model, x, y, index=k, iteration=10 * k, **kw) for k in range(3)]
    a = compute_snapshot(model, x, y, index=0, iteration=0, staging=pool, **kw)
    b = compute_snapshot(model, x, y, index=1, iteration=10, staging=pool, **kw)
    assert pool.allocations == 2  # two in flight: two buffer sets
    assert not set(a._buffers.data_ptrs()) & set(b._buffers.data_ptrs())
    ptrs_a = a._buffers.data_ptrs()
    for snap, ref in ((a, refs[0]), (b, refs[1])):
        snap.wait()  # on the CPU the centring runs here (deferred to the writer's thread)
        for kind in ("sgn", "grad", "weight"):
            got, want = getattr(snap, kind), getattr(ref, kind)
            assert got.keys() == want.keys()
            for n in want:
                assert got[n].dtype == np.float32 and got[n].shape == want[n].shape
                np.testing.assert_array_equal(got[n], want[n], err_msg=f"{kind} {n}")
    b_before = {n: v.copy() for n, v in b.sgn.items()}
    a.release()
    a.release()  # idempotent: the buffers go back once
    c = compute_snapshot(model, x, y, index=2, iteration=20, staging=pool, **kw)
    assert pool.allocations == 2 and c._buffers.data_ptrs() == ptrs_a  # a's buffers, reused
    c.wait()
    for n in refs[2].sgn:
        np.testing.assert_array_equal(c.sgn[n], refs[2].sgn[n])
        np.testing.assert_array_equal(b.sgn[n], b_before[n])  # b, still in flight, untouched
    # the weights are a copy: changing the model afterwards leaves the snapshot as it was
    w = c.weight["fc1.weight"].copy()
    with torch.no_grad():
        model.fc1.weight.add_(1.0)
    try:
        np.testing.assert_array_equal(c.weight["fc1.weight"], w)
    finally:
        with torch.no_grad():
            model.fc1.weight.sub_(1.0)


def test_a_failed_snapshot_gives_its_buffers_back(lenet_data, monkeypatch):
    model, x, y = lenet_data
    pool = HostStaging("cpu")
    kw = {"index": 0, "iteration": 0, "batch_size": 20, "seed": 1, "staging": pool}
    compute_snapshot(model, x, y, **kw).release()
    ptrs = list(pool._free[0].data_ptrs())

    def broken(*_a, **_k):
        raise RuntimeError("copy failed")

    monkeypatch.setattr(pool, "stage", broken)
    with pytest.raises(RuntimeError, match="copy failed"):
        compute_snapshot(model, x, y, **kw)
    assert pool.allocations == 1 and [b.data_ptrs() for b in pool._free] == [ptrs]


# ----------------------------------------------------------------------------- TF32 and recorded facts


def _matmul(prec: str) -> None:
    torch.set_float32_matmul_precision(prec)


def _generic_tf32() -> None:
    if not NEW_API:
        pytest.skip("torch < 2.9 has no per-backend fp32_precision settings")
    torch.backends.fp32_precision = "tf32"


@pytest.mark.parametrize(
    "setup",
    [
        lambda: None,
        lambda: _matmul("high"),
        lambda: (_matmul("medium"), setattr(torch.backends.cudnn, "allow_tf32", True)),
        _generic_tf32,
    ],
    ids=["default", "high", "medium", "generic-tf32"],
)
def test_full_float32_turns_tf32_off_consistently_and_restores(setup, restore_precision):
    setup()
    before, legacy = fp32_settings(), legacy_or_none()
    with full_float32():
        # the legacy getters do not raise: torch's two views agree (cuBLAS would raise otherwise)
        assert legacy_state() == ("highest", False, False)
        f = precision_flags()
        assert f["matmul_allow_tf32"] is False and f["cudnn_allow_tf32"] is False
        if NEW_API:
            ops = ("cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn")
            assert {p: resolved(p) for p in ops} == dict.fromkeys(ops, "ieee")
    assert fp32_settings() == before and legacy_or_none() == legacy
    with pytest.raises(KeyError), full_float32():
        raise KeyError("x")
    assert fp32_settings() == before and legacy_or_none() == legacy


def test_full_float32_on_torch_without_per_backend_settings(monkeypatch, restore_precision):
    from sgnlake.collect import device

    monkeypatch.setattr(device, "_fp32_node", lambda path: None)  # as on torch < 2.9
    _matmul("medium")
    torch.backends.cudnn.allow_tf32 = True
    with device.full_float32():
        assert legacy_state() == ("highest", False, False)
        assert device.precision_flags() == {
            "matmul_allow_tf32": False,
            "cudnn_allow_tf32": False,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "float32_matmul_precision": "highest",
        }
    assert legacy_state() == ("medium", True, True)


def test_snapshot_gradients_run_without_tf32(lenet_data, monkeypatch, restore_precision):
    from sgnlake.collect import snapshot

    seen = []
    real = snapshot.loop_gradients

    def spy(*args, **kwargs):
        seen.append(legacy_state())
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot, "loop_gradients", spy)
    set_tf32(True)
    model, x, y = lenet_data
    compute_snapshot(model, x, y, index=0, iteration=0, batch_size=20, seed=1, engine="loop")
    assert seen == [("highest", False, False)] and legacy_state() == ("high", True, True)


def test_run_meta_records_budget_chunk_buffers_and_flags(tmp_path, tiny_config, restore_precision):
    from sgnlake.collect import collect

    set_tf32(True)
    cfg = tiny_config("facts", engine="vmap", iterations=20, memory_budget_mb=1)
    meta = collect(tmp_path / "lake", cfg, progress=False, threads=1, stop_after=2)
    ex = meta.extra
    # 1 MiB, per minibatch 4 x (4 x 20 x (784 + 8 + 10) + 2 x 6352 + 2 x 80) bytes
    assert ex["memory_budget_mb"] == 1 and ex["memory_budget_source"] == "config"
    assert ex["vmap_chunk"] == MIB // (4 * (4 * 20 * 802 + 2 * 6432)) == 3
    assert ex["device_free_mb"] is None and ex["device_name"] == "cpu"
    assert ex["host_staging"] == {"pinned": False, "async_copy": False, "buffer_sets": 2}
    p = ex["precision"]
    assert p["matmul_allow_tf32"] is False and p["cudnn_allow_tf32"] is False
    assert p["cudnn_deterministic"] is torch.backends.cudnn.deterministic
    assert p["cudnn_benchmark"] is torch.backends.cudnn.benchmark
    if NEW_API:
        assert set(p["fp32_precision"]) == {n or "generic" for n in NODES}
        assert p["fp32_precision"]["cuda.matmul"] == "ieee"
    else:
        assert p["float32_matmul_precision"] == "highest"
    assert ex["last_call"]["host_buffer_sets"] == 2  # 2 snapshots, background writer
    assert legacy_state() == ("high", True, True)  # restored after the run
    # a resume records its own facts (synchronous writer: one buffer set is enough)
    meta = collect(tmp_path / "lake", cfg, progress=False, threads=1, resume=True, background=False)
    assert meta.status == "complete" and meta.committed == 3
    (entry,) = meta.extra["resumed"]
    assert entry["at_snapshot"] == 2 and entry["vmap_chunk"] == 3 and entry["memory_budget_mb"] == 1
    assert entry["precision"]["cudnn_allow_tf32"] is False and entry["device_name"] == "cpu"
    assert entry["host_staging"]["buffer_sets"] == 1 and meta.extra["last_call"]["host_buffer_sets"] == 1


@pytest.mark.parametrize("background", [True, False])
def test_every_host_buffer_comes_back_when_writing_fails(tmp_path, tiny_config, monkeypatch, background):
    """Snapshots taken from the pool are given back after writing, also when the writer fails."""
    from sgnlake.collect import collect, staging
    from sgnlake.collect.writer import RunWriter
    from sgnlake.schema.errors import LakeError

    counts = {"take": 0, "give_back": 0, "waits": 0}
    for name in ("take", "give_back"):
        real = getattr(staging.HostStaging, name)

        def spy(self, *a, _real=real, _name=name, **k):
            counts[_name] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(staging.HostStaging, name, spy)
    real_wait = staging.HostBuffers.wait

    def wait(self):
        counts["waits"] += 1
        return real_wait(self)

    monkeypatch.setattr(staging.HostBuffers, "wait", wait)
    real_ckpt = RunWriter._write_checkpoint

    def crash_on_second(self, k, iteration, data):
        if k == 1:
            raise OSError("disk unplugged")
        return real_ckpt(self, k, iteration, data)

    monkeypatch.setattr(RunWriter, "_write_checkpoint", crash_on_second)
    # the background writer wraps the error in a LakeError; the synchronous one raises it as is
    with pytest.raises((LakeError, OSError), match="disk unplugged"):
        collect(tmp_path / "lake", tiny_config("w"), progress=False, threads=1, background=background)
    assert counts["take"] >= 2 and counts["give_back"] == counts["take"]
    assert counts["waits"] >= 2  # the writer waited for each copy it wrote (snapshots 0 and 1)
