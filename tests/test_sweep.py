"""Sweeps: grid configs, run ids, presets, the dry-run size estimate, and resumable running.

Oracles: ``itertools.product`` over the literal grid lists, parameter counts from
the models' published definitions (written out here), the schedule by brute
force, and the lake read back with plain Zarr (shapes x itemsizes of the
committed part, file mtimes, ``updated`` attributes, SGN of an uninterrupted run).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from sgnlake.schema import ConfigError, RunConfig

pytest.importorskip("torch")

from cli_fixtures import run_cli  # noqa: E402

from sgnlake.collect import sweep as sw  # noqa: E402

TINY = """
name = "tiny"

[base]
model = "fcn"
model_args = { width = 8 }
n_train = 200
lr = 0.1
iterations = 30
engine = "loop"
device = "cpu"
schedule = { kind = "every", every = 10 }
storage = { param_chunk = 1024 }

[grid]
model_args.depth = [2, 3]
batch_size = [20, 50]
"""


def tiny_spec(extra: str = "") -> sw.SweepSpec:
    return sw.loads_spec(TINY + extra, name="tiny")


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[base\nmodel = 'fcn'", "invalid TOML"),
        ("colour = 'red'\n[base]\nmodel = 'fcn'", "unknown key 'colour'"),
        ("[base]\nmodel = 'fcn'\nlearning_rate = 0.1", "unknown field 'learning_rate'"),
        ("[base]\nmodel = 'fcn'\n[base.schedule]\nevry = 5", "unknown field 'schedule.evry'"),
        ("[base]\nmodel = 'fcn'\n[grid]\nbatch_size = 50", "must be a list"),
        ("[base]\nmodel = 'fcn'\n[grid]\nbatch_size = []", "empty list"),
        ("[base]\nmodel = 'fcn'\n[grid]\nstorage.level = 3", "must be a list"),
        ("[base]\nmodel = 'fcn'\nlr = 'fast'\n[grid]\nbatch_size = [50]", "'lr' must be float"),
        ("run_id = 'x-{colour}'\n[base]\nmodel = 'fcn'", "template field {colour}"),
        ("[base]\nrun_id = 'a'\nmodel = 'fcn'", "put run_id at the top"),
    ],
)
def test_bad_config_is_one_line_config_error(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        sw.expand(sw.loads_spec(text, name="bad"))
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_grid_is_the_product_of_the_lists() -> None:
    spec = sw.loads_spec(
        textwrap.dedent(
            """
            [base]
            model = "fcn"
            iterations = 10
            model_args = { bias = true }
            [grid]
            batch_size = [10, 20, 30]
            model_args.depth = [2, 4]
            schedule.every = [2, 5]
            """
        )
    )
    configs = sw.expand(spec)
    expect = set(itertools.product([10, 20, 30], [2, 4], [2, 5]))
    got = {(c.batch_size, c.model_args["depth"], c.schedule.every) for c in configs}
    assert got == expect and len(configs) == len(expect)
    assert all(c.model_args["bias"] is True and c.iterations == 10 for c in configs)
    assert len({c.run_id for c in configs}) == len(configs)


def test_empty_grid_is_one_run() -> None:
    configs = sw.expand(sw.loads_spec("[base]\nmodel = 'lenet'\nbatch_size = 50\nseed = 3"))
    assert [c.run_id for c in configs] == ["lenet-b50-s3"]


def test_bad_model_argument_is_reported_before_running() -> None:
    spec = sw.loads_spec(TINY.replace("width = 8", "widht = 8"))
    with pytest.raises(ConfigError, match="widht"):
        sw.plan(sw.expand(spec))


# ----------------------------------------------------------------------------- run ids


def test_derived_run_ids_are_readable_and_stable() -> None:
    ids = [c.run_id for c in sw.expand(sw.load_preset("paper-fcn"))]
    assert "fcn-mnist-d3-w32-b50-s0" in ids  # the dataset is named when it is not the default
    assert ids == [c.run_id for c in sw.expand(sw.load_preset("paper-fcn"))]
    # reordering axes and values in the file does not rename any run
    a = sw.loads_spec(
        "[base]\nmodel='fcn'\n[grid]\nbatch_size=[50,100]\nmodel_args.width=[16,32]\nmodel_args.depth=[2,3]"
    )
    b = sw.loads_spec(
        "[base]\nmodel='fcn'\n[grid]\nmodel_args.depth=[3,2]\nmodel_args.width=[32,16]\nbatch_size=[100,50]"
    )

    def by_config(spec: sw.SweepSpec) -> dict[tuple, str]:
        return {
            (c.batch_size, c.model_args["width"], c.model_args["depth"]): c.run_id for c in sw.expand(spec)
        }

    assert by_config(a) == by_config(b)
    assert by_config(a)[(50, 16, 3)] == "fcn-d3-w16-b50-s0"


def test_run_id_template_and_collisions() -> None:
    ok = sw.loads_spec('run_id = "t-{depth}-{batch_size}-{lr}-{schedule.every}"\n' + TINY)
    assert sorted(c.run_id for c in sw.expand(ok)) == sorted(
        f"t-{d}-{b}-0.1-10" for d, b in itertools.product([2, 3], [20, 50])
    )
    clash = sw.loads_spec('run_id = "t-{depth}"\n' + TINY)
    with pytest.raises(ConfigError, match="both get run id 't-2'"):
        sw.expand(clash)


def test_overrides_keep_grid_axes_and_ids() -> None:
    spec = sw.with_overrides(tiny_spec(), ["batch_size=20", "lr=0.05", "grid.seed=[0, 1]"])
    configs = sw.expand(spec)
    assert {c.run_id for c in configs} == {
        f"fcn-d{d}-w8-n200-b20-lr0.05-s{s}" for d in (2, 3) for s in (0, 1)
    }
    assert all(c.lr == 0.05 for c in configs)
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        sw.with_overrides(tiny_spec(), ["colour=1"])


# ----------------------------------------------------------------------------- presets


def test_presets_ship_and_follow_the_paper() -> None:
    names = sw.preset_names()
    assert {"paper-fcn", "paper-fcn-12k", "paper-lenet", "paper-fcn-small", "paper-lenet-small"} <= set(names)
    for name in names:
        assert sw.plan(sw.expand(sw.load_preset(name)))
    # paper-fcn: the authors' code, 10 epochs per batch size; paper-fcn-12k: the paper's text, 12,000 steps
    for preset, length in (("paper-fcn", (10, None)), ("paper-fcn-12k", (None, 12000))):
        fcn = sw.expand(sw.load_preset(preset))
        axes = {(c.model_args["depth"], c.model_args["width"], c.batch_size) for c in fcn}
        assert axes == set(itertools.product([2, 3, 4, 5], [16, 32, 64], [40, 50, 100, 150, 200, 300]))
        for c in fcn:
            assert (c.model, c.dataset, c.lr, c.epochs, c.iterations) == ("fcn", "mnist", 0.1, *length)
            assert c.model_args["bias"] is False and c.shuffle is False and c.partition == "fixed"
            assert (c.schedule.kind, c.schedule.every, c.schedule.per_epoch) == ("every", 100, True)
    lenet = sw.expand(sw.load_preset("paper-lenet"))
    assert sorted(c.batch_size for c in lenet) == [50, 150, 200]
    assert all(
        (c.model, c.dataset, c.lr, c.epochs, c.schedule.every) == ("lenet", "mnist", 0.1, 10, 100)
        for c in lenet
    )
    for name in ("paper-fcn-small", "paper-lenet-small"):
        assert all(c.dataset == "mnist5k" for c in sw.expand(sw.load_preset(name)))
        assert "Measured" in sw.preset_text(name)


def test_cli_lists_and_shows_presets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(["sweep", "--list-presets"], capsys)
    assert code == 0 and "paper-lenet-small" in out
    code, out, _ = run_cli(["sweep", "--show-preset", "paper-lenet"], capsys)
    assert code == 0
    copy = tmp_path / "copy.toml"
    copy.write_text(out)
    assert [c.run_id for c in sw.expand(sw.load_spec(copy))] == [
        c.run_id for c in sw.expand(sw.load_preset("paper-lenet"))
    ]
    code, _, err = run_cli(["sweep", str(tmp_path / "lake"), "--preset", "nope"], capsys)
    assert code == 2 and err.count("\n") == 1 and "unknown preset 'nope'" in err


# ----------------------------------------------------------------------------- planning


def paper_counts(model: str, depth: int = 3, width: int = 32, bias: bool = False) -> int:
    """Parameters from the published definitions (oracle for the built models)."""
    if model == "lenet":  # conv1 1->6 5x5 (pad 2), conv2 6->16 5x5, 400->84, 84->10, biases
        return (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 84 + 84) + (84 * 10 + 10)
    dims = [784] + [width] * (depth - 1) + [10]
    return sum(a * b + (b if bias else 0) for a, b in itertools.pairwise(dims))


def test_plan_counts_and_schedule_match_the_definitions() -> None:
    for preset in ("paper-fcn", "paper-fcn-12k"):
        for p in sw.plan(sw.expand(sw.load_preset(preset))):
            c = p.config
            assert p.n_params == paper_counts("fcn", c.model_args["depth"], c.model_args["width"])
            assert p.n_minibatches == 60000 // c.batch_size
            spe = math.ceil(60000 / c.batch_size)
            steps = 12000 if preset == "paper-fcn-12k" else 10 * spe  # 10 epochs (the authors' code)
            # every 100th step of each epoch: the position in the epoch (1..spe) is a multiple of 100
            assert list(p.iterations) == [t for t in range(1, steps + 1) if ((t - 1) % spe + 1) % 100 == 0]
    (lp,) = sw.plan(sw.expand(sw.loads_spec("[base]\nmodel='lenet'\nbatch_size=50\nepochs=2")))
    assert lp.n_params == paper_counts("lenet") == 37106
    assert lp.total_steps == 2 * 5000 // 50
    withbias = RunConfig(run_id="x", model="fcn", model_args={"depth": 4, "width": 16, "bias": True})
    assert sum(n for _, n in sw.model_tensors(withbias)) == paper_counts("fcn", 4, 16, True)
    sub = sw.plan_run(RunConfig(run_id="y", model="fcn", tensors=("fc2.weight",), iterations=100))
    assert sub.tensors == (("fc2.weight", 32 * 32),)


def test_dry_run_prints_runs_and_total_in_gb(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["sweep", "--preset", "paper-fcn", "--dry-run"], capsys)
    assert code == 0
    assert "fcn-mnist-d5-w64-b40-s0" in out and out.count("-s0 ") == 72
    plans = sw.plan(sw.expand(sw.load_preset("paper-fcn")))
    total = sum(p.total_bytes for p in plans)
    assert f"{total / 1e9:.3f} GB uncompressed" in out
    for option in ("--keepbits", "--dtype float16", "--tensors", "--n-train", "--every"):
        assert option in out
    code, out, _ = run_cli(["sweep", "--preset", "paper-fcn", "--dry-run", "--dtype", "float16"], capsys)
    snapshots = sum(len(p.iterations) for p in plans)  # 5040: 10 epochs, 20-150 snapshots per run
    run_arrays = snapshots * (8 + 8 + 8)  # iteration int64, loss and accuracy float64 stay full size
    assert f"{((total - run_arrays) / 2 + run_arrays) / 1e9:.3f} GB uncompressed" in out


# ----------------------------------------------------------------------------- running


def uncompressed_committed(lake: Path, run_id: str) -> int:
    """Sum over the run's arrays of (committed snapshots x other dims) x itemsize, via plain zarr."""
    g = zarr.open_group(lake / "runs" / run_id, mode="r")
    k = g.attrs["sgnlake_run"]["committed"]
    total = 0
    stack = [g]
    while stack:
        node = stack.pop()
        for _, child in node.members():
            if isinstance(child, zarr.Group):
                stack.append(child)
            else:
                total += k * math.prod(child.shape[1:]) * child.dtype.itemsize
    return total


def lake_state(lake: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[sw.RunPlan], sw.SweepSummary]:
    lake = tmp_path_factory.mktemp("sweep") / "lake"
    plans = sw.plan(sw.expand(tiny_spec()))
    summary = sw.run_sweep(lake, plans, progress=False, echo=None)
    return lake, plans, summary


def test_sweep_runs_every_run_and_estimate_is_within_10_percent(swept) -> None:
    lake, plans, summary = swept
    assert summary.n_done == 4 and summary.n_failed == 0
    assert summary.bytes_written > 0
    for p in plans:
        actual = uncompressed_committed(lake, p.run_id)
        assert abs(p.total_bytes - actual) <= 0.10 * actual, (p.run_id, p.total_bytes, actual)
        meta = zarr.open_group(lake / "runs" / p.run_id, mode="r").attrs["sgnlake_run"]
        assert meta["status"] == "complete" and meta["planned_iterations"] == list(p.iterations)
        assert meta["n_minibatches"] == p.n_minibatches


def test_rerun_of_a_finished_sweep_writes_nothing(swept) -> None:
    lake, plans, _ = swept
    before = lake_state(lake)
    updated = {
        p.run_id: zarr.open_group(lake / "runs" / p.run_id).attrs["sgnlake_run"]["updated"] for p in plans
    }
    lines: list[str] = []
    summary = sw.run_sweep(lake, plans, progress=False, echo=lines.append)
    assert summary.ids("skipped") == [p.run_id for p in plans]
    assert summary.bytes_written == 0 and summary.n_done == 0
    assert lake_state(lake) == before
    for p in plans:
        assert zarr.open_group(lake / "runs" / p.run_id).attrs["sgnlake_run"]["updated"] == updated[p.run_id]
    assert "4 skipped" in summary.format()


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(swept, tmp_path: Path) -> None:
    from sgnlake.collect import collect

    ref_lake, plans, _ = swept
    lake = tmp_path / "lake"
    first = plans[0]
    meta = collect(lake, first.config, progress=False, stop_after=1)
    assert meta.status == "interrupted" and meta.committed == 1
    summary = sw.run_sweep(lake, plans[:2], progress=False, echo=None)
    assert summary.ids("resumed") == [first.run_id]
    assert summary.ids("done") == [plans[1].run_id]
    for p in plans[:2]:
        got = zarr.open_group(lake / "runs" / p.run_id, mode="r")
        ref = zarr.open_group(ref_lake / "runs" / p.run_id, mode="r")
        assert got.attrs["sgnlake_run"]["status"] == "complete"
        np.testing.assert_array_equal(got["iteration"][:], ref["iteration"][:])
        for t, _ in p.tensors:
            np.testing.assert_array_equal(got[t]["sgn"][:], ref[t]["sgn"][:])
            np.testing.assert_array_equal(got[t]["weight"][:], ref[t]["weight"][:])


def test_failed_and_conflicting_runs_are_reported_and_the_rest_continue(swept, tmp_path: Path) -> None:
    ref_lake, plans, _ = swept
    d = plans[0].config.to_dict()
    d.update(run_id="needs-files", dataset="mnist", data_dir=str(tmp_path / "empty"))
    bad = sw.plan_run(RunConfig.from_dict(d))
    other_cfg = sw.expand(sw.with_overrides(tiny_spec(), ["lr=0.05"]))[0]
    other = sw.plan_run(dataclasses.replace(other_cfg, run_id=plans[0].run_id))  # same id, other lr
    before = lake_state(ref_lake)
    summary = sw.run_sweep(ref_lake, [bad, other, plans[1]], progress=False, echo=None)
    assert summary.ids("failed") == [bad.run_id, other.run_id]
    assert summary.ids("skipped") == [plans[1].run_id]
    msgs = {o.run_id: o.message for o in summary.outcomes}
    assert "not found" in msgs[bad.run_id] and "\n" not in msgs[bad.run_id]
    assert "lr is 0.1 in the lake, 0.05 in the sweep" in msgs[other.run_id]
    assert "failed needs-files" in summary.format()
    after = lake_state(ref_lake)
    # nothing else changed (lease records of the sweep are bookkeeping, not data)
    assert {k: v for k, v in after.items() if "needs-files" not in k and "/.leases/" not in k} == {
        k: v for k, v in before.items() if "/.leases/" not in k
    }


def test_cli_sweep_with_two_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str], swept) -> None:
    ref_lake, plans, _ = swept
    cfg = tmp_path / "grid.toml"
    cfg.write_text(TINY.replace("model_args.depth = [2, 3]", "model_args.depth = [2]"))
    lake = tmp_path / "lake"
    code, out, err = run_cli(
        ["sweep", str(lake), "--config", str(cfg), "--jobs", "2", "--no-progress"], capsys
    )
    assert code == 0, err
    assert "2 done (0 resumed), 0 skipped" in out and "in 2 processes" in out
    for rid in ("fcn-d2-w8-n200-b20-s0", "fcn-d2-w8-n200-b50-s0"):
        got = zarr.open_group(lake / "runs" / rid, mode="r")
        ref = zarr.open_group(ref_lake / "runs" / rid, mode="r")
        assert got.attrs["sgnlake_run"]["status"] == "complete"
        np.testing.assert_allclose(got["fc1.weight/sgn"][:], ref["fc1.weight/sgn"][:], rtol=1e-4, atol=1e-6)
    code, out, _ = run_cli(["sweep", str(lake), "--config", str(cfg), "--dry-run"], capsys)
    assert code == 0 and "2 of these runs complete" in out
    assert os.path.isdir(lake / "runs")


# ----------------------------------------------------------------------------- one naming rule


def test_ids_name_the_config_not_the_file() -> None:
    """Grid axes outside the core fields are named; core fields follow the collector's rule."""
    spec = sw.loads_spec(
        "[base]\nmodel='fcn'\nmodel_args={depth=2, width=8}\nbatch_size=20\n"
        "[grid]\nschedule.every=[5, 10]\nlr=[0.1, 0.05]\nstorage.keepbits=[7]"
    )
    ids = {(c.schedule.every, c.lr): c.run_id for c in sw.expand(spec)}
    assert ids == {
        (5, 0.1): "fcn-d2-w8-b20-every5-kb7-s0",
        (10, 0.1): "fcn-d2-w8-b20-every10-kb7-s0",
        (5, 0.05): "fcn-d2-w8-b20-lr0.05-every5-kb7-s0",
        (10, 0.05): "fcn-d2-w8-b20-lr0.05-every10-kb7-s0",
    }
    # model arguments left to their defaults are named as the collector stores them
    (c,) = sw.expand(sw.loads_spec("[base]\nmodel='fcn'\nbatch_size=20"))
    assert c.run_id == "fcn-d3-w32-b20-s0"
    (c,) = sw.expand(sw.loads_spec("[base]\nmodel='fcn'\nbatch_size=20"), resolve_args=None)
    assert c.run_id == "fcn-b20-s0"


NO_TORCH = """
import importlib.abc
import sys


class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (import {name})")
        return None


sys.meta_path.insert(0, BlockTorch())
from sgnlake.collect.sweep import expand, load_preset, preset_names, with_overrides
from sgnlake.collect.sweep.grid import expand as grid_expand
from sgnlake.collect.run_ids import derive_run_id

assert expand is grid_expand
spec = with_overrides(load_preset("paper-fcn-small"), ["grid.seed=[0, 1]"])
ids = [c.run_id for c in expand(spec, resolve_args=None)]
assert len(ids) == 3 * 3 * 3 * 2 == len(set(ids)), ids
assert "fcn-d3-w32-b50-s1" in ids, ids
assert len(preset_names()) >= 4
assert derive_run_id({"model": "lenet", "batch_size": 150, "lr": 0.05, "seed": 2}) == "lenet-b150-lr0.05-s2"
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not leaked, leaked
print("SWEEP-NO-TORCH-OK")
"""


def test_sweep_spec_and_grid_work_with_torch_blocked() -> None:
    p = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "SWEEP-NO-TORCH-OK" in p.stdout


def test_sweep_package_modules_stay_small() -> None:
    folder = Path(sw.__file__).parent
    sizes = {f.name: len(f.read_text().splitlines()) for f in folder.glob("*.py")}
    assert len(sizes) >= 4 and max(sizes.values()) <= 500, sizes


def test_rerun_finds_runs_stored_under_old_format_ids(
    swept, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lake whose runs carry ids of an older naming rule: the sweep skips/resumes them by config."""
    import shutil

    from sgnlake.collect import collect

    ref_lake, plans, _ = swept
    lake = tmp_path / "lake"
    shutil.copytree(ref_lake, lake)
    old = {p.run_id: p.run_id.replace("-w8-n200", "") for p in plans[:2]}  # e.g. fcn-d2-b20-s0
    for new_id, old_id in old.items():
        (lake / "runs" / new_id).rename(lake / "runs" / old_id)
        g = zarr.open_group(lake / "runs" / old_id, mode="r+")
        meta = dict(g.attrs["sgnlake_run"])
        meta["config"] = {**meta["config"], "run_id": old_id}
        g.attrs["sgnlake_run"] = meta
    # one more run under an old id, interrupted after its first snapshot
    third = plans[2]
    third_old = third.run_id.replace("-w8-n200", "")
    shutil.rmtree(lake / "runs" / third.run_id)
    collect(lake, dataclasses.replace(third.config, run_id=third_old), progress=False, stop_after=1)
    cfg = tmp_path / "grid.toml"
    cfg.write_text(TINY)
    code, out, _ = run_cli(["sweep", str(lake), "--config", str(cfg), "--dry-run"], capsys)
    assert code == 0 and "3 of these runs complete (skipped), 1 to resume, 0 new" in out
    summary = sw.run_sweep(lake, plans[:3], progress=False, echo=None)
    assert summary.ids("skipped") == list(old.values())
    assert summary.ids("resumed") == [third_old]
    assert summary.n_failed == 0 and summary.n_done == 1
    runs = sorted(name for name, _ in zarr.open_group(lake, mode="r")["runs"].groups())
    assert runs == sorted([*old.values(), third_old, plans[3].run_id])
    ref = zarr.open_group(ref_lake / "runs" / third.run_id, mode="r")
    got = zarr.open_group(lake / "runs" / third_old, mode="r")
    assert got.attrs["sgnlake_run"]["status"] == "complete"
    np.testing.assert_array_equal(got["fc1.weight/sgn"][:], ref["fc1.weight/sgn"][:])


def test_one_thread_rule_for_collect_and_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads come from the CPUs this process may use (affinity), shared by the jobs, one left per writer."""
    import torch

    from sgnlake.collect import config, runner

    monkeypatch.setattr(config.os, "sched_getaffinity", lambda _pid: set(range(6)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert config.available_cpus() == 6
    assert [config.default_threads(j) for j in (1, 2, 3, 6, 12)] == [5, 2, 1, 1, 1]
    assert runner.default_threads(torch.device("cpu")) == config.default_threads(1)
    assert runner.default_threads(torch.device("cpu"), background=False) is None
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # never more than torch's default
    assert config.default_threads(1) == 4


def test_one_resume_rule_for_collector_sweep_and_cli() -> None:
    from sgnlake.collect.config import compatible_run, resolve_config, resume_config, resume_differences

    (asked,) = sw.expand(sw.loads_spec("[base]\nmodel='fcn'\nbatch_size=20\nn_train=200"))
    stored = resolve_config(asked)  # what the collector stores: model arguments and epochs filled in
    assert stored.model_args == {"depth": 3, "width": 32, "bias": False} and stored.epochs == 1
    same = dataclasses.replace(stored, model_args={}, device="cpu", memory_budget_mb=64, data_dir="/x")
    assert resume_differences(stored, same) == []  # model defaults filled; device etc. may differ
    cfg = resume_config(stored, same)
    assert (cfg.device, cfg.memory_budget_mb, cfg.data_dir, cfg.model_args) == (
        "cpu",
        64,
        "/x",
        stored.model_args,
    )
    other = dataclasses.replace(stored, lr=0.05)
    assert resume_differences(stored, other) == [("lr", 0.1, 0.05)]
    with pytest.raises(ConfigError, match=r"different lr \(0.1 stored\)"):
        resume_config(stored, other)
    # the CLI's --resume: options not given keep their stored values
    assert resume_config(stored, other, explicit={"device"}).lr == 0.1
    meta = type("Meta", (), {"config": stored})()
    assert sw.config_conflict(sw.plan_run(other), meta) == "lr is 0.1 in the lake, 0.05 in the sweep"
    renamed = {"old-name": meta}
    assert compatible_run(dataclasses.replace(same, run_id="new"), renamed) == "old-name"
    assert compatible_run(dataclasses.replace(other, run_id="new"), renamed) is None
