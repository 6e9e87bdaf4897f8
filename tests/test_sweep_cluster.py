"""``sgnlake sweep --scheduler``: a sweep's runs as tasks on an existing Dask cluster.

A scheduler and two single-threaded workers (with torch: they collect) are
started as separate processes on loopback; the sweep's lake content is compared
(plain zarr) with the same sweep run locally.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pytest
from collect_fixtures import read_run_arrays

from sgnlake.cli.app import main
from sgnlake.collect import collect
from sgnlake.collect.sweep.cluster import parse_resources
from sgnlake.schema import ConfigError, read_run_meta
from sgnlake.schema.lake import open_lake_group

pytest.importorskip("distributed")

from process_fixtures import dask_cluster, stop_all, wait_for

SPEC = """
name = "tiny-cluster"
[base]
model = "fcn"
model_args = { depth = 2, width = 8 }
n_train = 200
iterations = 20
device = "cpu"
schedule = { kind = "every", every = 10, include_start = true }
[grid]
seed = [0, 1, 2]
batch_size = [20, 40]
"""
IDS = [f"fcn-d2-w8-n200-b{b}-s{s}" for s in (0, 1, 2) for b in (20, 40)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler on 127.0.0.1 (random port) and two one-thread workers; yields its address."""
    base = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with dask_cluster(base, env, ["--resources", "SLOT=1"], grace=3) as address:
        yield address


def _sweep(capsys, lake: Path, spec: Path, *extra: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(lake), "--config", str(spec), "--threads", "1", "--no-progress", *extra])
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out + err


@pytest.mark.slow
def test_cluster_sweep_equals_local_sweep_and_resumes(tmp_path, cluster, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text(SPEC)
    local, remote = tmp_path / "local", tmp_path / "remote"
    code, out = _sweep(capsys, local, spec)
    assert code == 0, out
    # one run already half collected in the cluster's lake: the cluster sweep resumes it
    cfg = read_run_meta(open_lake_group(str(local), mode="r")[f"runs/{IDS[3]}"]).config
    collect(remote, cfg, progress=False, threads=1, stop_after=1)
    code, out = _sweep(capsys, remote, spec, "--scheduler", cluster, "--resources", "SLOT=1")
    assert code == 0, out
    assert "2 workers" in out and "6 done (1 resumed)" in out
    for rid in IDS:
        got, want = read_run_arrays(remote, rid), read_run_arrays(local, rid)
        assert got.keys() == want.keys(), rid
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{rid}/{k}")
        meta = read_run_meta(open_lake_group(str(remote), mode="r")[f"runs/{rid}"])
        assert meta.status == "complete" and meta.committed == 3
    # rerun: every run is complete, nothing is sent
    code, out = _sweep(capsys, remote, spec, "--scheduler", cluster)
    assert code == 0 and "6 skipped" in out, out


def test_cluster_sweep_reports_a_failed_run(tmp_path, cluster, capsys):
    """A run that raises on its worker is reported (exit 1) and the others complete; rerunning retries it."""
    spec = tmp_path / "grid.toml"
    spec.write_text(SPEC.replace("seed = [0, 1, 2]", "seed = [0]").replace("[20, 40]", "[20]"))
    lake = tmp_path / "lake"
    # a run of another config under the same id: the sweep refuses it, a run that fails on the worker
    # is one that diverges
    bad = tmp_path / "bad.toml"
    bad.write_text(
        SPEC.replace("seed = [0, 1, 2]", "seed = [5]").replace("[20, 40]", "[20]") + "lr = [1e30]\n"
    )
    code, out = _sweep(capsys, lake, bad, "--scheduler", cluster)
    assert code == 1, out
    assert "failed" in out and "diverged" in out and "(on " in out
    code, out = _sweep(capsys, lake, spec, "--scheduler", cluster)
    assert code == 0 and "1 done" in out, out


def test_parse_resources_and_bad_scheduler(tmp_path, capsys):
    assert parse_resources(["GPU=1", "MEM=2e9"]) == {"GPU": 1.0, "MEM": 2e9}
    for bad in (["GPU"], ["GPU=x"], ["=1"], ["GPU=0"]):
        with pytest.raises(ConfigError):
            parse_resources(bad)
    spec = tmp_path / "grid.toml"
    spec.write_text(SPEC)
    code, out = _sweep(capsys, tmp_path / "l", spec, "--resources", "GPU=1")
    assert code == 2 and "--scheduler" in out
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, out = _sweep(
            capsys, tmp_path / "l", spec, "--scheduler", "tcp://127.0.0.1:9", "--only", "*b20-s0"
        )
    assert code == 2 and "cannot reach the Dask scheduler" in out


@pytest.mark.slow
def test_a_run_whose_worker_dies_is_resumed_on_another(tmp_path, cluster, capsys):
    """SIGKILL the worker collecting a run: Dask runs the task again on another worker, which resumes it."""
    import threading

    from distributed import Client

    from sgnlake.collect.sweep import expand, load_spec, plan, run_sweep

    long_spec = SPEC.replace("iterations = 20", "iterations = 400").replace("[0, 1, 2]", "[3]")
    spec = tmp_path / "grid.toml"
    spec.write_text(long_spec.replace("[20, 40]", "[20]"))
    plans = plan(expand(load_spec(spec)))
    lake = tmp_path / "lake"
    # two extra workers that alone offer the resource this sweep asks for
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", cluster, "--nthreads", "1"]
    cmd += ["--no-nanny", "--no-dashboard", "--resources", "DIE=1"]
    extra = [
        subprocess.Popen([*cmd, "--name", f"d{i}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(2)
    ]
    try:
        with Client(cluster, timeout=30) as client:
            client.wait_for_workers(4, timeout=60)
            pids = client.run(os.getpid)
        result = {}
        t = threading.Thread(
            target=lambda: result.update(
                s=run_sweep(lake, plans, storage_options=None, threads=1, echo=None, progress=False,
                            scheduler=cluster, resources={"DIE": 1})
            )
        )  # fmt: skip
        t.start()
        rid = plans[0].run_id

        def committed() -> int:
            try:
                return read_run_meta(open_lake_group(str(lake), mode="r")[f"runs/{rid}"]).committed
            except Exception:  # noqa: BLE001 - not there yet
                return 0

        wait_for(lambda: committed() >= 2, 120, "first snapshots", [])
        with Client(cluster, timeout=30) as client:
            busy = [w for w, tasks in client.processing().items() if tasks]
        victim = next(p for p in extra if p.pid in {pids[w] for w in busy})
        victim.kill()
        t.join(timeout=180)
        assert not t.is_alive()
        (o,) = result["s"].outcomes
        assert o.action == "done" and "resumed" in o.message, o
        ref = tmp_path / "ref"
        collect(ref, plans[0].config, progress=False, threads=1)
        got, want = read_run_arrays(lake, rid), read_run_arrays(ref, rid)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    finally:
        stop_all(extra, grace=3)
