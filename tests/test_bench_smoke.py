"""Smoke runs of every benchmark script in ``bench/`` so they cannot rot.

Every script runs once, concurrently, with ``--smoke`` (tiny sizes), each
writing its markdown table and its headline numbers (``--json``) into a
temporary folder. Each test then checks one script's output: the table was
written, and the correctness checks the script makes along the way hold (the
SGN of the paper's way equals the lake's, the vectorised McCulloch fit equals
scipy's, lossless codecs leave alpha unchanged, the memory-limited cluster
finished with the numpy answer, ...). The timings themselves are not checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = (
    "collector", "storage", "alpha_throughput", "fits", "out_of_core", "scaling", "writer", "models", "commit",
    "checksum", "codecs",
)  # fmt: skip
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path, dict]]:
    """Run every study with --smoke at once; map study -> (exit code, output, results dir, metrics)."""
    base = tmp_path_factory.mktemp("bench_smoke")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    procs = {}
    for study in STUDIES:
        out = base / study
        out.mkdir()
        cmd = [
            sys.executable,
            str(REPO / "bench" / f"{study}.py"),
            "--smoke",
            "--results-dir",
            str(out),
            "--workdir",
            str(out / "work"),
            "--json",
            str(out / "metrics.json"),
        ]
        log = (out / "log.txt").open("w")
        procs[study] = (
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
            log,
            out,
        )
    deadline = time.monotonic() + TIMEOUT_S
    results = {}
    for study, (proc, log, out) in procs.items():
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        log.close()
        text = (out / "log.txt").read_text()
        mpath = out / "metrics.json"
        metrics = json.loads(mpath.read_text()) if mpath.exists() else {}
        results[study] = (rc, text, out, metrics)
    return results


def _ok(smoke_runs: dict, study: str) -> tuple[str, dict]:
    rc, text, out, metrics = smoke_runs[study]
    assert rc == 0, f"bench/{study}.py --smoke failed (exit {rc}):\n{text[-3000:]}"
    md = (out / f"{study}.md").read_text()
    assert md.startswith("# Study"), md[:200]
    assert "|---|" in md, "no markdown table written"
    assert "Smoke run" in md
    assert not (out / "work").exists() or not any((out / "work").iterdir()), "scratch lakes left behind"
    return md, metrics


def test_collector_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "collector")
    rows = m["rows"]
    assert {(r["engine"]) for r in rows} == {"loop", "vmap"}
    for r in rows:
        # the paper's method (in-memory torch.cat of per-minibatch gradients, float32 mean subtracted)
        # and the collector's lake must hold the same SGN for the same partition and weights
        assert r["sgn_rel_diff_vs_paper"] < 1e-5, r
        assert r["bare_s"] > 0 and r["engine_s"] > 0 and all(v > 0 for v in r["ratios"].values())
    # the machine-readable headline: lake / engine alone for the model's CPU engine (smoke: FCN, vmap)
    assert m["fcn"]["engine"] == "vmap" and m["fcn"]["overhead_vs_engine"] > 0


def test_storage_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "storage")
    rows = {r["codec"]: r for r in m["codecs"]}
    lossless = [r for r in rows.values() if not r["lossy"]]
    lossy = [r for r in rows.values() if r["lossy"]]
    assert lossless and lossy
    for r in lossless:  # lossless storage cannot change alpha
        assert r["max_dalpha_all"] == 0 and r["nan_new"] == 0 and r["inf_new"] == 0, r
        assert r["ratio"] > 0.9
    float16 = next(r for r in lossy if "float16" in r["codec"])
    assert float16["ratio"] > 1.5  # half the bytes before compression
    bitround = next(r for r in lossy if "BitRound" in r["codec"])
    assert bitround["p99_dinv_all"] < 0.05  # 8 mantissa bits barely move 1/alpha


def test_alpha_throughput_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "alpha_throughput")
    assert m["param_snapshots"] > 0
    mode = m["modes"]["threads"]
    assert mode["ratio"] > 0 and mode["alpha_s"][0] > 0
    assert m["alpha_over_direct_read"] > 0 and mode["direct1_s"][0] > 0
    # the synthetic SGN compresses like real SGN (exactly-zero border-pixel columns); x0.94 without them
    assert m["sgn_ratio"] > 1.1


def test_fits_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "fits")
    r = m["M100"]
    # the vectorised McCulloch fit reproduces scipy's _fitstart parameter by parameter
    assert r["max_alpha_diff_vs_scipy"] < 1e-9
    assert r["max_beta_diff_vs_scipy"] < 1e-9
    assert r["max_rel_scale_diff_vs_scipy"] < 1e-9
    assert r["median_err_vectorised"] < 0.5


def test_out_of_core_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "out_of_core")
    assert m["finished"], m["error"]
    assert m["restarts"] == 0
    assert m["max_err_vs_numpy"] < 1e-6  # same kernel, other reduction order
    labels = [v["label"] for v in m["peak_rss"].values()]
    assert any("worker" in lab for lab in labels), labels  # worker processes were sampled


def test_scaling_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "scaling")
    assert len(m["alpha_s"]) == 2 and all(s > 0 for s in m["alpha_s"])
    assert m["sizes_bytes"][1] == 2 * m["sizes_bytes"][0]


def test_models_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "models")
    rows = m["rows"]
    assert {r["engine"] for r in rows} == {"loop", "vmap"}
    assert {r["model"].split()[0] for r in rows} == {"resnet-8", "vit"}
    for r in rows:  # every engine's SGN equals the loop's; the model and RNG are left as they were
        assert r["max_rel_diff_vs_loop"] < 1e-4, r
        assert r["state_unchanged"] and r["seconds"] > 0, r


def test_writer_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "writer")
    assert m["compression_ratio"] > 1.0  # real SGN compresses under the lossless default
    assert m["cores"]["1"]["writer_mb_s"] > 0 and m["cores"]["1"]["limit_mb_s"] > 0


def test_commit_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "commit")
    fcn = m["fcn"]
    assert set(fcn["cpu_s"]) == {"zarr store", "local files", "local, none", "limit"}
    assert all(v > 0 for v in fcn["cpu_s"].values()) and fcn["mb"] > 0
    assert fcn["stage_cpu_s"]["local files"]["chunks"] > 0


def test_checksum_smoke(smoke_runs: dict) -> None:
    _md, m = _ok(smoke_runs, "checksum")
    assert m["write_ratio"] > 0 and m["read_ratio"] > 0
    assert m["flipped"]["True"].startswith("detected")  # the checksum finds a flipped bit
    assert 0 < m["sizes"]["True"] - m["sizes"]["False"] < 0.01 * m["sizes"]["False"]


def test_codecs_smoke(smoke_runs: dict) -> None:
    from sgnlake.schema.meta import DEFAULT_LEVELS

    _md, m = _ok(smoke_runs, "codecs")
    fcn = m["sgn"]["fcn"]
    assert set(fcn) == {"0", "2"} and set(m["sgn"]["vit"]) == {"0", "1"}  # training stages of each model
    for stage in fcn.values():  # every codec gave back the same bits (checked there)
        assert f"zstd {DEFAULT_LEVELS['zstd']} (default)" in stage and {"zstd -10", "zstd -50", "lz4"} <= set(
            stage
        )
        assert all(v["ratio"] > 1.0 and v["encode_mb_s"] > 0 and v["decode_mb_s"] > 0 for v in stage.values())
    rule = m["rule"]
    assert rule["models"] == ["fcn"] and rule["threshold"] == pytest.approx(1.15 + rule["margin"])
    # the margin covers the measured spread of one level's ratio across the FCN's stages (from the raw ratios)
    for lv in rule["levels"]:
        ratios = [
            stage[f"zstd {lv}" + (" (default)" if int(lv) == DEFAULT_LEVELS["zstd"] else "")]["ratio"]
            for stage in fcn.values()
        ]
        assert max(ratios) - min(ratios) <= rule["margin"] + 1e-12
        assert rule["levels"][lv]["passes"] == (min(ratios) >= rule["threshold"])
    if rule["level"] is not None:  # no passing level is faster than the one picked
        pick = rule["levels"][str(rule["level"])]
        faster = [v for v in rule["levels"].values() if v["speed_vs_default"] > pick["speed_vs_default"]]
        assert pick["passes"] and not any(v["passes"] for v in faster)


def _bench_module(name: str):
    import importlib.util

    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return mod


def test_codecs_rule_picks_the_fastest_level_above_floor_plus_margin() -> None:
    """``choose_level`` on hand-made ratios: the margin is the stage spread; none passing keeps the default."""
    from sgnlake.schema.meta import DEFAULT_LEVELS

    cod = _bench_module("codecs")
    default = DEFAULT_LEVELS["zstd"]

    def res(ratio_of_level):  # one SGN: ratio by level; encode rate rises as the level falls
        return {
            cod.zstd_label(lv): {
                "ratio": ratio_of_level(lv),
                "encode_mb_s": 1000.0 - 10 * lv,
                "decode_mb_s": 1.0,
            }
            for lv in cod.ZSTD_LEVELS
        }

    # two stages whose ratios differ by 0.03 at every level: margin 0.03, threshold 1.18
    early = res(lambda lv: 1.30 + 0.004 * lv)  # -20: 1.22, -30: 1.18, -50: 1.10
    late = res(lambda lv: 1.27 + 0.004 * lv)  # -20: 1.19, -30: 1.15
    rule = cod.choose_level({"m": {0: early, 50: late}}, ["m"])
    assert rule["margin"] == pytest.approx(0.03) and rule["threshold"] == pytest.approx(1.18)
    assert rule["level"] == -20 and rule["default"] == -20  # -30 keeps 1.15 late, under 1.18
    late_default = late[cod.zstd_label(default)]["ratio"]
    assert rule["levels"][-20]["max_bytes_vs_default"] == pytest.approx(
        late_default / 1.19
    )  # the worse stage
    # another model the rule does not cover is reported but does not decide
    flat = {0: res(lambda lv: 1.0), 1: res(lambda lv: 1.0)}
    rule = cod.choose_level({"m": {0: early, 50: late}, "other": flat}, ["m"])
    assert rule["level"] == -20 and rule["levels"][-20]["min_ratio_all"] == 1.0
    # nothing reaches the floor: the default stays
    rule = cod.choose_level({"other": flat}, ["other"])
    assert rule["level"] is None and rule["default"] == default
