"""``bench/gpu_check.sh``: its CPU-runnable parts (``--device cpu --smoke``) and its no-CUDA message.

On CI there is no GPU: the smoke run exercises every part of the check at tiny sizes on the
CPU (engines against the CPU loop engine, collect() on two "devices", the throughput table),
and the default run must stop at once with a one-line error when CUDA is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"

pytest.importorskip("torch")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_smoke_on_cpu_runs_every_part(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = run(
        "--device", "cpu", "--smoke", "--results-dir", str(tmp_path), "--workdir", str(tmp_path / "work"),
        "--json", str(tmp_path / "m.json"), env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    md = (tmp_path / "gpu_check.md").read_text()
    assert "Smoke run" in md and "Correctness: **PASS**" in md
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["ok"] is True and m["device"] == "cpu"
    # vmap on the "device" vs the loop engine: float32 agreement, well inside the tolerance.
    assert {(r["model"], r["engine"]) for r in m["engines"]} == {
        (model, engine) for model in ("FCN 784-32-32-10", "LeNet") for engine in ("loop", "vmap")
    }
    assert all(r["rel"] <= 1e-5 and r["rel_grad"] <= 1e-5 for r in m["engines"])
    judged = [r for r in m["collector"] if r["iteration"] == 0]
    assert len(judged) == 2 and all(r["ok"] for r in judged)
    speed = {r["model"]: r for r in m["throughput"]}
    assert set(speed) == {"FCN 784-64-64-64-10", "LeNet"}
    for r in speed.values():
        assert r["M"] == 6 and r["bare_vmap_s"] > 0 and r["collect_s"] > 0
        assert r["sgn_mb"] == pytest.approx(r["M"] * r["params"] * 4 / 1e6)
    assert speed["LeNet"]["params"] == 37106
    assert not (tmp_path / "work" / "gpu_check").exists()  # scratch lakes removed


def test_without_cuda_it_stops_with_one_line() -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    r = run(env=env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip()
    assert err.startswith("error: CUDA is not available") and "\n" not in err
    assert "--device cpu --smoke" in err
