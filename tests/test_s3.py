"""Lakes on object storage: a real S3-protocol server (moto) on loopback.

Oracles: the objects on local disk (bytes), the server's own request log (which
keys each command wrote), plain Zarr reads and ``validate_lake``. Commands run as
subprocesses configured either by AWS_* environment variables alone or by
``--storage-option``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from sgnlake.schema import open_lake_group, run_ids, validate_lake
from sgnlake.schema.transfer import copy_runs

try:
    from .lake_fixtures import RunSpec, write_lake
    from .s3_fixtures import S3, bucket, s3  # noqa: F401  (fixtures)
    from .test_copy import add_results_and_checkpoint, objects
except ImportError:
    from lake_fixtures import RunSpec, write_lake
    from s3_fixtures import S3, bucket, s3  # noqa: F401  (fixtures)
    from test_copy import add_results_and_checkpoint, objects

CLI = [sys.executable, "-m", "sgnlake.cli"]


def sgnlake(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``sgnlake`` CLI in a subprocess; fail the test with its output on error."""
    r = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"sgnlake {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def cli(*args: str) -> int:
    """Run the ``sgnlake`` CLI in this process; return its exit code."""
    from sgnlake.cli.app import main

    try:
        main([*args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def run_prefix_of(key: str, lake: str = "lake") -> str | None:
    """``<group>/<run>`` of a key inside the lake, None for lake-level keys."""
    parts = key.split("/")
    if parts[0] != lake or len(parts) < 4:
        return None
    if parts[1] == ".leases" and len(parts) >= 5:  # a run's lease records: .leases/runs/<run>/g<N>.json
        return "/".join(parts[1:4])
    return f"{parts[1]}/{parts[2]}"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    lake = tmp_path / "src"
    write_lake(str(lake), [RunSpec("r1"), RunSpec("r2", seed=3)])
    add_results_and_checkpoint(lake, "r1")
    return lake


def test_copy_local_to_s3_and_back_is_byte_identical(s3: S3, bucket: str, src: Path, tmp_path: Path) -> None:
    url = f"s3://{bucket}/lake"
    mark = s3.mark()
    # Configured by the environment only (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...), as s3fs reads it.
    out = sgnlake("copy", str(src), url, "--runs", "r1", "--no-progress", env=s3.env).stdout
    assert "r1: copied" in out
    writes = s3.writes(bucket, mark)
    assert all(w.method == "PUT" and "uploadId" not in w.query for w in writes)  # one PUT per object
    keys = [w.key for w in writes]
    assert len(keys) == len(set(keys))  # every object written once
    lake_level = {k for k in keys if run_prefix_of(k) is None}
    assert lake_level == {
        "lake/zarr.json",
        "lake/runs/zarr.json",
        "lake/results/zarr.json",
        "lake/checkpoints/zarr.json",
    }
    assert {run_prefix_of(k) for k in keys} - {None} == {"runs/r1", "results/r1", "checkpoints/r1"}
    report = validate_lake(url, storage_options=s3.storage_options)
    assert report.ok and report.runs == ["r1"], report.problems

    # A second run into the existing lake writes only under its own prefixes (here via --storage-option).
    mark = s3.mark()
    assert cli("copy", str(src), url, "--runs", "r2", "--no-progress", *s3.cli_options) == 0
    keys2 = [w.key for w in s3.writes(bucket, mark)]
    assert keys2 and all(run_prefix_of(k) == "runs/r2" for k in keys2)
    assert keys2[-1] == "lake/runs/r2/zarr.json"  # the run's metadata is the last object written

    back = tmp_path / "back"
    copy_runs(url, str(back), src_storage_options=s3.storage_options)
    assert objects(back) == objects(src)
    a = zarr.open_group(str(back), mode="r")["runs/r2/fc1.weight/sgn"][:]
    np.testing.assert_array_equal(a, zarr.open_group(str(src), mode="r")["runs/r2/fc1.weight/sgn"][:])


@pytest.mark.filterwarnings("ignore:Object at r2 is not recognized:UserWarning")
def test_resumed_copy_to_s3_writes_only_missing_objects(s3: S3, bucket: str, src: Path, capsys) -> None:
    import s3fs

    url = f"s3://{bucket}/lake"
    copy_runs(str(src), url, runs=["r2"], dst_storage_options=s3.storage_options)
    fs = s3fs.S3FileSystem(**s3.storage_options)
    # Make it a half copy: drop the run's metadata (written last) and a few chunks.
    lost = [f"{bucket}/lake/runs/r2/zarr.json"] + sorted(fs.find(f"{bucket}/lake/runs/r2/fc1.weight/sgn"))[:3]
    fs.rm(lost)
    assert run_ids(open_lake_group(url, storage_options=s3.storage_options)) == []
    mark = s3.mark()
    assert cli("copy", str(src), url, "--no-progress", "--runs", "r2", *s3.cli_options) == 0
    put = sorted(w.key for w in s3.writes(bucket, mark))
    assert put == sorted(p.split("/", 1)[1] for p in lost)  # exactly what was missing, nothing else
    mark = s3.mark()
    capsys.readouterr()
    assert cli("copy", str(src), url, "--no-progress", "--runs", "r2", *s3.cli_options) == 0
    assert "up to date" in capsys.readouterr().out and s3.writes(bucket, mark) == []


def test_readers_see_fresh_listings_without_the_listing_cache(s3: S3, bucket: str, src: Path) -> None:
    """s3fs caches directory listings per filesystem instance; ``use_listings_cache=False`` reads fresh."""
    url = f"s3://{bucket}/lake"
    opts = s3.storage_options
    assert opts["use_listings_cache"] is False
    copy_runs(str(src), url, runs=["r1"], dst_storage_options=opts)
    assert run_ids(open_lake_group(url, storage_options=opts)) == ["r1"]
    # Another writer: a separate filesystem instance, as another process would have.
    copy_runs(str(src), url, runs=["r2"], dst_storage_options={**opts, "skip_instance_cache": True})
    assert run_ids(open_lake_group(url, storage_options=opts)) == ["r1", "r2"]


def test_missing_bucket_is_a_one_line_error(s3: S3, src: Path, capsys) -> None:
    capsys.readouterr()
    assert cli("copy", str(src), "s3://no-such-bucket-sgnlake/lake", "--no-progress", *s3.cli_options) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "bucket does not exist" in err and "\n" not in err, err


# ----------------------------------------------------------------------------- the collector on S3

#: A tiny FCN run (784-4-10, no biases, 200 examples, b=20: M=10; snapshots at 0 and 2).
TINY = [
    "--model", "fcn", "--depth", "2", "--width", "4", "--n-train", "200", "-b", "20",
    "--iterations", "2", "--every", "2", "--include-start", "--engine", "loop", "--device", "cpu",
    "--no-progress", "--threads", "1",
]  # fmt: skip


def tiny_run_config(run_id: str, seed: int = 0):
    from sgnlake.schema import RunConfig, Schedule

    return RunConfig(
        run_id=run_id,
        model="fcn",
        model_args={"depth": 2, "width": 4},
        n_train=200,
        batch_size=20,
        seed=seed,
        iterations=2,
        schedule=Schedule(kind="every", every=2, include_start=True),
        engine="loop",
        device="cpu",
    )


def s3_objects(s3: S3, url: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``url/prefix`` read with s3fs: key relative to the lake -> bytes."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    root = url[len("s3://") :]
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in fs.find(f"{root}/{prefix}")}


def test_collect_into_s3_concurrently_and_analyse(s3: S3, bucket: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    from sgnlake.analyze.lake import open_lake
    from sgnlake.collect import collect

    url, local = f"s3://{bucket}/lake", tmp_path / "local"
    collect(str(local), tiny_run_config("a"), progress=False, threads=1)
    mark = s3.mark()
    collect(url, tiny_run_config("a"), progress=False, threads=1, storage_options=s3.storage_options)
    created = {w.key for w in s3.writes(bucket, mark) if run_prefix_of(w.key) is None}
    # the lake, its groups and the node of the writers' lease records (schema/lease.py)
    assert created == {
        "lake/zarr.json", "lake/runs/zarr.json", "lake/checkpoints/zarr.json", "lake/.leases/zarr.json"
    }  # fmt: skip

    # Stored objects equal those on local disk byte for byte (chunks, codecs, values), but for the
    # run's attributes (timestamps) and the checkpoint (a torch.save file).
    remote = s3_objects(s3, url, "runs/a")
    disk = {k: v for k, v in objects(local, "a").items() if k.startswith("runs/")}
    assert sorted(remote) == sorted(disk)
    assert {k for k in disk if remote[k] != disk[k]} == {"runs/a/zarr.json"}
    meta_local = zarr.open_group(str(local), mode="r")["runs/a"].attrs["sgnlake_run"]
    meta_s3 = open_lake_group(url, storage_options=s3.storage_options)["runs/a"].attrs["sgnlake_run"]
    for k in ("config", "tensors", "committed", "planned_iterations", "n_minibatches", "dataset_fingerprint"):
        assert meta_local[k] == meta_s3[k], k

    # Two more collectors at once, as subprocesses: one configured by AWS_* variables alone, one by
    # --storage-option. Every object they write (or delete) is below their own runs/<id>/ or
    # checkpoints/<id>/, so they never touch the same object, and lake-level metadata is not rewritten.
    mark = s3.mark()
    procs = [
        subprocess.Popen(
            [*CLI, "collect", url, "--run-id", rid, "--seed", str(seed), *TINY, *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rid, seed, env, extra in (("b", 1, s3.env, []), ("c", 2, dict(os.environ), s3.cli_options))
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "complete, 2/2 snapshots" in out
    prefixes = {run_prefix_of(w.key) for w in s3.writes(bucket, mark)}
    assert prefixes == {
        "runs/b", "runs/c", "checkpoints/b", "checkpoints/c", ".leases/runs/b", ".leases/runs/c"
    }  # fmt: skip

    report = validate_lake(url, storage_options=s3.storage_options)
    assert report.ok and report.runs == ["a", "b", "c"], report.problems
    capsys.readouterr()
    assert cli("ls", url, "--json", *s3.cli_options) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["status"]) for r in listed] == [
        ("a", "complete"),
        ("b", "complete"),
        ("c", "complete"),
    ]
    assert cli("check", url, "--no-progress", *s3.cli_options) == 0  # every committed chunk decodes

    assert cli("alpha", url, "--runs", "a", "--no-progress", *s3.cli_options) == 0
    local_lake = open_lake(str(local))
    local_lake.compute_alpha(progress=False)
    remote_lake = open_lake(url, storage_options=s3.storage_options)
    for tensor, numel in (("fc1.weight", 3136), ("fc2.weight", 40)):
        x = local_lake.alpha("a", tensor=tensor).values
        y = remote_lake.alpha("a", tensor=tensor).values
        assert x.shape == (2, numel)
        np.testing.assert_array_equal(x, y)
        assert np.isfinite(x).any()


def test_stored_bytes_on_s3_matches_the_bucket_listing(s3: S3, bucket: str, src: Path) -> None:
    import boto3

    from sgnlake.schema.inventory import list_runs
    from sgnlake.schema.store import stored_bytes

    url = f"s3://{bucket}/lake"
    copy_runs(str(src), url, runs=["r1"], dst_storage_options=s3.storage_options)
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.storage_options["key"],
        aws_secret_access_key=s3.storage_options["secret"],
        region_name="us-east-1",
    )
    listing = client.list_objects_v2(Bucket=bucket, Prefix="lake/runs/r1/")
    expected = sum(o["Size"] for o in listing["Contents"])
    assert stored_bytes(url, "runs/r1", storage_options=s3.storage_options) == expected > 0
    assert [r["stored_bytes"] for r in list_runs(url, storage_options=s3.storage_options)] == [expected]
    assert stored_bytes(url, "runs/absent", storage_options=s3.storage_options) == 0
