"""``sgnlake alpha --scheduler``: an existing Dask cluster whose workers cannot import torch.

A scheduler and two single-threaded workers are started as separate processes
(``python -m distributed.cli.dask_scheduler`` / ``dask_worker``), each worker with a
``--preload`` module that makes ``import torch`` fail and records what the worker
imported. The command runs as a subprocess; its stored results are compared with
the same command on Dask's threaded scheduler (plain Zarr reads).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

from sgnlake.cli.app import main

pytest.importorskip("distributed")

try:
    from .lake_fixtures import RunSpec, write_lake
except ImportError:
    from lake_fixtures import RunSpec, write_lake

from process_fixtures import dask_cluster

CLI = [sys.executable, "-m", "sgnlake.cli"]

#: Worker preload (loaded by name from PYTHONPATH): makes importing torch, and any top-level module
#: listed in ``blocked.json`` beside it, fail on the worker, and records every blocked attempt.
AUDIT = textwrap.dedent(
    '''
    """Installed on a Dask worker with --preload: blocked imports fail there."""
    import json
    import os
    import sys

    ATTEMPTS = []
    BLOCKED = {"torch"}


    class Block:
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in BLOCKED:
                ATTEMPTS.append(fullname)
                raise ImportError(f"{fullname} is blocked on this analysis worker")
            return None


    def dask_setup(worker=None):
        with open(os.path.join(os.path.dirname(__file__), "blocked.json")) as f:
            BLOCKED.update(json.load(f))
        if not any(isinstance(f, Block) for f in sys.meta_path):
            sys.meta_path.insert(0, Block())


    def reset():
        ATTEMPTS.clear()


    def report():
        return {
            "attempts": sorted(set(ATTEMPTS)),
            "torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
            "modules": sorted(sys.modules),
        }
    '''
)


def requirement_closure(dist: str, extras: tuple[str, ...]) -> set[str]:
    """Normalised names of ``dist`` and everything it requires (with ``extras``), from installed metadata."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(dist, frozenset(extras))]
    while todo:
        name, ex = todo.pop()
        node = (canonicalize_name(name), ex)
        if node in seen:
            continue
        seen.add(node)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            envs = [{"extra": e} for e in ex] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                todo.append((req.name, frozenset(req.extras)))
    return {n for n, _ in seen}


def outside(allowed: set[str]) -> list[str]:
    """Top-level import names installed here that belong only to distributions outside ``allowed``."""
    from packaging.utils import canonicalize_name

    out = []
    for top, dists in md.packages_distributions().items():
        if top in sys.stdlib_module_names or top == "sgnlake":
            continue
        if not any(canonicalize_name(d) in allowed for d in dists):
            out.append(top)
    return sorted(out)


@dataclass
class Cluster:
    address: str
    audit_dir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A scheduler on 127.0.0.1 (random port) and two torch-blocked workers with one thread each."""
    base = tmp_path_factory.mktemp("cluster")
    (base / "sgnlake_worker_audit.py").write_text(AUDIT)
    # Workers see only sgnlake[analyze]'s dependencies: everything else installed here is blocked.
    (base / "blocked.json").write_text(json.dumps(outside(requirement_closure("sgnlake", ("analyze",)))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(base), os.environ.get("PYTHONPATH", "")]))
    with dask_cluster(base, env, ["--preload", "sgnlake_worker_audit"]) as address:
        yield Cluster(address=address, audit_dir=base)


def audit(cluster: Cluster, what: str = "report") -> dict[str, dict]:
    """Run the audit module's ``report`` (torch import attempts, loaded modules) or ``reset`` on every worker."""
    from distributed import Client

    sys.path.insert(0, str(cluster.audit_dir))
    try:
        import sgnlake_worker_audit  # only its functions are sent; the blocker is not installed here

        with Client(cluster.address, timeout=30) as client:
            return client.run(getattr(sgnlake_worker_audit, what))
    finally:
        sys.path.remove(str(cluster.audit_dir))


def sgnlake(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"sgnlake {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def stored_results(lake: Path) -> dict[str, np.ndarray]:
    """Every array under results/, read with plain Zarr: path -> values."""
    root = zarr.open_group(str(lake), mode="r")
    out: dict[str, np.ndarray] = {}
    for dirpath, _, files in os.walk(lake / "results"):
        if (
            "zarr.json" in files
            and json.loads((Path(dirpath) / "zarr.json").read_text())["node_type"] == "array"
        ):
            rel = Path(dirpath).relative_to(lake).as_posix()
            # the generation id is random per publication: compare by role, not by id
            key = re.sub(r"/gen-[0-9a-f]+/", "/gen-*/", rel)
            out[key] = np.asarray(root[rel][:])
    return out


def test_scheduler_workers_cannot_import_torch(cluster: Cluster) -> None:
    """The negative control: the preload really blocks torch on the workers."""
    from distributed import Client

    with Client(cluster.address, timeout=30) as client:
        fut = client.submit(__import__, "torch", pure=False)
        with pytest.raises(ImportError, match="blocked on this analysis worker"):
            fut.result(timeout=30)


def test_alpha_on_existing_cluster_equals_threaded(cluster: Cluster, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_lake(str(lake), [RunSpec("r1", n_minibatches=60), RunSpec("r2", seed=5, n_minibatches=60)])
    local = tmp_path / "local"
    shutil.copytree(lake, local)

    audit(cluster, "reset")
    out = sgnlake("alpha", str(lake), "--scheduler", cluster.address, "--no-progress").stdout
    assert "dask: 2 workers at " + cluster.address in out
    with pytest.raises(SystemExit) as done:  # the oracle: Dask's threaded scheduler, in this process
        main(["alpha", str(local), "--no-progress"])
    assert done.value.code in (0, None)

    on_cluster, threaded = stored_results(lake), stored_results(local)
    assert sorted(on_cluster) == sorted(threaded)
    assert any(k.endswith("/alpha") for k in on_cluster)
    for k in threaded:
        np.testing.assert_array_equal(on_cluster[k], threaded[k], err_msg=k)
    alpha = next(v for k, v in on_cluster.items() if k.endswith("fc1.weight/alpha"))
    assert np.isfinite(alpha).mean() > 0.95 and 1.0 < np.nanmedian(alpha) < 2.2

    reports = audit(cluster)
    assert len(reports) == 2
    for addr, rep in reports.items():
        assert not any(a.split(".")[0] == "torch" for a in rep["attempts"]) and not rep["torch_loaded"], addr
    # The work ran on the workers: they imported sgnlake's analysis code to run its tasks.
    assert any(m.startswith("sgnlake.analyze") for r in reports.values() for m in r["modules"])


def test_workers_see_only_the_analyze_extra(cluster: Cluster) -> None:
    """The block list holds what sgnlake[analyze] does not need (torch, moto, ...), not what it needs."""
    blocked = set(json.loads((cluster.audit_dir / "blocked.json").read_text()))
    allowed = requirement_closure("sgnlake", ("analyze",))
    assert {"distributed", "psutil", "zarr", "xarray", "dask", "numcodecs", "scipy"} <= allowed
    assert "torch" not in allowed and "s3fs" not in allowed
    assert {"torch", "moto", "s3fs", "hypothesis"} <= blocked
    assert not {"numpy", "zarr", "xarray", "dask", "distributed", "psutil", "scipy"} & blocked
