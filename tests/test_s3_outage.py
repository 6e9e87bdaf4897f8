"""An S3 outage while ``sgnlake collect`` creates a run: real process, real server, a cut at an exact request.

The collector (a real ``sgnlake collect`` process) reaches moto on loopback
through :class:`tcp_proxy.CuttableProxy`, which forwards every request and cuts
the link just after a chosen one: the run's first object (its claim), an array
in the middle of the creation, the run's attributes (the run exists with no
snapshot), the first chunk of the first snapshot. Expected each time: one line
on stderr naming the run and saying the store could not be reached, exit 2; the
lake's other run untouched (its objects byte for byte, no request wrote under
it); ``sgnlake check`` not DAMAGED; and the same command, run again once the
store is back, finishes a run whose objects equal those of an uninterrupted
collection on local disk (oracle: bytes on disk, read with ``os``).

The failing command gets ``config_kwargs.retries.max_attempts=1`` (botocore gives
up at once instead of backing off for ~20 s); s3fs still retries 5 times.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from sgnlake.schema import validate_lake

try:
    from .s3_fixtures import KEY, S3, SECRET, bucket, s3  # noqa: F401  (fixtures)
    from .tcp_proxy import CuttableProxy
    from .test_copy import objects
    from .test_s3 import TINY, cli, s3_objects, tiny_run_config
except ImportError:
    from s3_fixtures import KEY, S3, SECRET, bucket, s3  # noqa: F401  (fixtures)
    from tcp_proxy import CuttableProxy
    from test_copy import objects
    from test_s3 import TINY, cli, s3_objects, tiny_run_config

pytest.importorskip("torch")

RUN, OTHER, SEED = "k", "a", 1

#: name -> (key prefix inside the lake, occurrence): the link is cut just after the
#: n-th PUT of an object whose key starts with the prefix.
CUTS = {
    "after-run-claim": ("runs/k/zarr.json", 1),  # the run's first object
    "mid-arrays": ("runs/k/fc1.weight/sgn/zarr.json", 1),
    "after-run-attributes": ("runs/k/zarr.json", 2),  # a run with 0 committed snapshots
    "after-first-chunk": ("runs/k/fc1.weight/sgn/c.", 1),  # creation done, snapshot 0 being written
}


def _options(endpoint: str) -> list[str]:
    return [
        "--storage-option", f"client_kwargs.endpoint_url={endpoint}",
        "--storage-option", f"key={KEY}", "--storage-option", f"secret={SECRET}",
    ]  # fmt: skip


def _collect_argv(url: str, endpoint: str) -> list[str]:
    return ["collect", url, "--run-id", RUN, "--seed", str(SEED), *TINY, *_options(endpoint)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The objects of run ``k`` collected without an outage on local disk (the oracle)."""
    from sgnlake.collect import collect

    lake = tmp_path_factory.mktemp("oracle") / "lake"
    collect(str(lake), tiny_run_config(RUN, seed=SEED), progress=False, threads=1)
    return {k: v for k, v in objects(lake, RUN).items() if k.startswith("runs/")}


@pytest.mark.parametrize("cut", list(CUTS), ids=list(CUTS))
def test_outage_while_creating_a_run(cut: str, s3: S3, bucket: str, uninterrupted, capsys) -> None:
    from sgnlake.collect import collect

    url = f"s3://{bucket}/lake"
    collect(url, tiny_run_config(OTHER), progress=False, threads=1, storage_options=s3.storage_options)
    other_before = {p: s3_objects(s3, url, f"{p}/{OTHER}") for p in ("runs", "checkpoints")}

    prefix, nth = CUTS[cut]
    seen = [0]

    def trigger(method: str, target: str) -> bool:
        if method == "PUT" and target.split("?")[0].startswith(f"/{bucket}/lake/{prefix}"):
            seen[0] += 1
            return seen[0] == nth
        return False

    host, port = s3.server.get_host_and_port()
    proxy = CuttableProxy((host, port))
    proxy.cut_after(trigger)
    mark = s3.mark()
    try:
        argv = [
            *_collect_argv(url, proxy.endpoint),
            "--storage-option",
            "config_kwargs.retries.max_attempts=1",
        ]
        r = subprocess.run(
            [sys.executable, "-m", "sgnlake.cli", *argv], capture_output=True, text=True, timeout=300
        )
    finally:
        proxy.close()
    assert proxy.down.is_set(), "the cut was never reached"
    assert any(not s.forwarded for s in proxy.seen)
    # one line naming the run and the outage, exit 2
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert f"run {RUN!r}" in err and "could not be reached" in err, err

    # the other run untouched: no request wrote under it, its objects byte for byte
    assert not [w for w in s3.writes(bucket, mark) if f"/{OTHER}/" in f"/{w.key}"]
    assert {p: s3_objects(s3, url, f"{p}/{OTHER}") for p in ("runs", "checkpoints")} == other_before

    # check (store back): not DAMAGED; the half-created run is reported with the fix
    capsys.readouterr()
    assert cli("check", url, "--no-progress", *s3.cli_options) == 0
    out = capsys.readouterr().out
    assert f"run {OTHER}: complete" in out, out
    assert ("group has no run attributes" in out and "replaces it" in out) or (
        f"--run-id {RUN} --resume" in out
    ), out

    # the same command again creates or resumes the run; it equals an uninterrupted one
    assert cli(*_collect_argv(url, s3.endpoint)) == 0, capsys.readouterr().err
    assert f"run {RUN}: complete, 2/2 snapshots" in capsys.readouterr().out
    report = validate_lake(url, storage_options=s3.storage_options)
    assert report.ok and report.runs == [OTHER, RUN], report.problems
    remote = s3_objects(s3, url, f"runs/{RUN}")
    assert sorted(remote) == sorted(uninterrupted)
    assert {k for k in uninterrupted if remote[k] != uninterrupted[k]} == {f"runs/{RUN}/zarr.json"}
