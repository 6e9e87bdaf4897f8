"""``collect`` on a read-only mount: one line, exit 2, nothing created (a real read-only bind mount)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lake_fixtures import RunSpec, write_lake

ARGS = ["--model", "fcn", "--depth", "2", "--width", "8", "--n-train", "200", "--batch-size", "20",
        "--iterations", "20", "--every", "10", "--engine", "loop", "--device", "cpu", "--no-progress",
        "--threads", "1"]  # fmt: skip


@pytest.fixture
def ro_mount(tmp_path: Path):
    """``(source, mountpoint)``: mountpoint is a read-only bind mount of source (root and mount needed)."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root and mount(8)")
    ok = subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode == 0
    if not ok:
        pytest.skip("mount --bind is not permitted here (container without CAP_SYS_ADMIN)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], capture_output=True).returncode:
            pytest.skip("remounting read-only is not permitted here")
        yield src, mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _collect(lake: Path, run: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sgnlake.cli", "collect", str(lake), "--run-id", run, *ARGS],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def _tree(p: Path) -> list[str]:
    return sorted(str(q.relative_to(p)) for q in p.rglob("*"))


def test_collect_on_read_only_mount(ro_mount) -> None:
    src, mnt = ro_mount
    write_lake(str(src / "lake"), [RunSpec("r1")])
    before = _tree(src)
    for lake, run in ((mnt / "new", "a"), (mnt / "lake", "b")):  # a new lake; a new run in a lake
        out = _collect(lake, run)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
        assert "read-only" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert _tree(src) == before
