"""The HTML report on a small synthetic lake: every expected PNG, an index.html that links
each of them, key numbers checked against a brute-force estimate read with plain Zarr."""

from __future__ import annotations

import math
import os
import re
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import zarr
from lake_fixtures import RunSpec, mohammadi_oracle, read_sgn_plain, write_lake
from typer.testing import CliRunner

from sgnlake.analyze.kernels import DEFAULT_K1, choose_k1
from sgnlake.analyze.report import (
    _varying_contexts,
    build_report,
    parse_iterations,
    parse_param,
    pick_iterations,
)
from sgnlake.cli.app import app
from sgnlake.schema.errors import ConfigError, SgnlakeError

M = 36  # minibatches per snapshot (the b = 100 run has M / 2)
ITS = (0, 100, 200, 300)
CONV_TENSORS = (
    ("conv1.weight", (3, 2, 3, 3), "weight", "conv1", "Conv2d"),
    ("conv1.bias", (3,), "bias", "conv1", "Conv2d"),
    ("fc.weight", (4, 12), "weight", "fc", "Linear"),
    ("fc.bias", (4,), "bias", "fc", "Linear"),
)
PER_RUN = (
    "fig01_alpha.png",
    "fig13_layers.png",
    "fig10_alpha_hist.png",
    "fig16_alpha_hist_layers.png",
    "alpha_map.png",
    "fig03_sgn_gaussian.png",
    "fig08_sgn_stable.png",
    "pooled_vs_param.png",
)
CROSS = ("fig02_batch_size_1.png", "alpha_vs_batch_size.png", "fig06_depth_width_1.png")


def _specs() -> list[RunSpec]:
    """Three small conv nets: two differ only in batch size (same n = M * b + 7), two only in depth."""
    kw = {"tensors": CONV_TENSORS, "iterations": ITS, "model": "cnn"}
    return [
        RunSpec("cnn-b50", n_minibatches=M, batch_size=50, dead={"conv1.weight": [0, 5]}, **kw),
        RunSpec("cnn-b100", n_minibatches=M // 2, batch_size=100, seed=1, **kw),
        RunSpec("cnn-d3", n_minibatches=M, batch_size=50, depth=3, seed=2, **kw),
        RunSpec("cnn-empty", n_minibatches=M, committed=0, status="running", seed=4, **kw),
    ]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.hrefs: list[str] = []
        self.captions = 0
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.hrefs.append(a["href"])
        elif tag == "figcaption":
            self.captions += 1
        elif tag == "td":
            self._in_td = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_td = False

    def handle_data(self, data):
        if self._in_td:
            self.cells[-1] += data


@pytest.fixture(scope="module")
def lake_path(tmp_path_factory) -> str:
    return write_lake(str(tmp_path_factory.mktemp("lake") / "lake"), _specs())


@pytest.fixture(scope="module")
def built(lake_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rep = build_report(lake_path, out, dpi=40, log=lambda msg: None)
    return rep, out


def _oracle_median(lake_path: str, run: str, m: int, pos: int) -> tuple[float, int]:
    """Median alpha over all parameters at snapshot ``pos`` and the dead count, from plain Zarr
    with the K1 that the default rule gives for M."""
    k1, _ = choose_k1(m, DEFAULT_K1)
    vals = []
    for name, *_ in CONV_TENSORS:
        x, _ = read_sgn_plain(lake_path, run, name)
        vals.append(mohammadi_oracle(x[pos], k1=k1, axis=0))
    v = np.concatenate(vals)
    return float(np.nanmedian(v)), int(np.isnan(v).sum())


def test_report_writes_every_figure_and_links_it(built):
    rep, out = built
    assert rep.errors == []
    runs = ["cnn-b100", "cnn-b50", "cnn-d3"]
    expected = {*CROSS, *(f"runs/{r}/{f}" for r in runs for f in PER_RUN)}
    assert {f.path for f in rep.figures} == expected
    for rel in expected:
        img = mpimg.imread(os.path.join(out, rel))
        assert img.ndim == 3 and min(img.shape[:2]) >= 100 and img.std() > 0.01, rel
    page = _Links()
    page.feed(rep.index.read_text(encoding="utf-8"))
    assert set(page.imgs) == expected and len(page.imgs) == len(expected)
    assert page.captions == len(expected)
    assert all(not h.startswith(("/", "http")) for h in page.hrefs)  # relative links only
    text = rep.index.read_text(encoding="utf-8")
    assert "cnn-empty: no committed snapshots yet" in text
    assert "Paper Fig 2" in text and "Paper Figs 6-7" in text and "Paper Figs 13-15" in text
    assert "mohammadi" in text and f"M = {M}" in text
    # default snapshots: first, middle ((n - 1) // 2) and last committed one
    assert "first, middle and last committed snapshot" in text
    assert f"Snapshots shown in distributions: {ITS[0]}, {ITS[(len(ITS) - 1) // 2]}, {ITS[-1]}." in text


def test_report_key_numbers_match_bruteforce(built, lake_path):
    rep, _ = built
    kn = rep.key_numbers.set_index("run")
    # runs in config order (depth, batch size, seed), as in ls and the API
    assert list(kn.index) == ["cnn-b50", "cnn-empty", "cnn-b100", "cnn-d3"]
    n_params = sum(math.prod(s) for _, s, *_ in CONV_TENSORS)
    for run, m in (("cnn-b50", M), ("cnn-b100", M // 2)):
        med_last, dead_last = _oracle_median(lake_path, run, m, len(ITS) - 1)
        med_first, _ = _oracle_median(lake_path, run, m, 0)
        assert kn.loc[run, "median α (last)"] == pytest.approx(med_last, rel=1e-5)
        assert kn.loc[run, "median α (first)"] == pytest.approx(med_first, rel=1e-5)
        assert kn.loc[run, "dead (no α), last"] == f"{dead_last}/{n_params}"
        assert kn.loc[run, "snapshots"] == f"{len(ITS)}/{len(ITS)}" and kn.loc[run, "M"] == m
        assert kn.loc[run, "non-finite SGN samples (all snapshots)"] == 0
    assert kn.loc["cnn-b50", "dead (no α), last"] == f"2/{n_params}"
    loss = zarr.open_group(lake_path, mode="r")["runs/cnn-b50/loss"][len(ITS) - 1]
    assert kn.loc["cnn-b50", "loss (last)"] == pytest.approx(float(loss))
    assert kn.loc["cnn-empty", "snapshots"] == f"0/{len(ITS)}"
    page = _Links()
    page.feed(rep.index.read_text(encoding="utf-8"))
    assert f"{kn.loc['cnn-b50', 'median α (last)']:.4g}" in page.cells
    assert kn.loc["cnn-b50", "last iteration"] == 300 and "300" in page.cells  # an int, not 300.0


def test_report_stores_alpha_for_reuse(built, lake_path):
    root = zarr.open_group(lake_path, mode="r")
    for run in ("cnn-b50", "cnn-d3"):
        keys = list(root[f"results/{run}"].group_keys())
        assert len(keys) == 1 and keys[0].startswith("mohammadi")


def test_cli_report_subset_without_store(tmp_path):
    lake = write_lake(str(tmp_path / "lake"), _specs()[:2])
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        app,
        ["report", lake, "--out", str(out), "--runs", "cnn-b5*", "--no-store", "--no-pooled",
         "--iterations", "100,last", "--k1", "simsekli", "--dpi", "40", "--param", "fc.weight:4"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"report: {(out / 'index.html').resolve()}" in res.output
    assert "results" not in zarr.open_group(lake, mode="r")  # --no-store wrote nothing
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "Figs 6-7 (α against depth and width) not drawn" in text
    assert "Fig 2 (α over iterations per batch size) not drawn" in text
    assert "k1=simsekli" in text and "fc.weight, flat index 4" in text and "iterations 100, 300" in text
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(f"runs/cnn-b50/{f}" for f in PER_RUN if f != "pooled_vs_param.png")


def test_varying_contexts_groups_runs_that_differ_only_on_the_axis():
    df = pd.DataFrame(
        {
            "model": ["fcn"] * 5 + ["lenet"],
            "depth": [2, 3, 2, 2, 3, None],
            "width": [16, 16, 32, 16, 16, None],
            "batch_size": [50, 50, 50, 100, 100, 50],
            "lr": [0.1] * 6,
            "seed": [0, 0, 0, 0, 1, 0],
        },
        index=[f"r{i}" for i in range(6)],
    )
    groups = {label: sorted(sub.index) for label, sub in _varying_contexts(df, ["batch_size"])}
    assert groups == {"fcn depth=2 width=16": ["r0", "r3"], "fcn depth=3 width=16": ["r1", "r4"]}
    groups = {label: sorted(sub.index) for label, sub in _varying_contexts(df, ["depth", "width"])}
    assert groups == {"fcn batch_size=50": ["r0", "r1", "r2"], "fcn batch_size=100": ["r3", "r4"]}
    assert _varying_contexts(df, ["lr"]) == []


def test_cli_report_errors_are_one_line(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "error: no lake at" in res.output
    lake = write_lake(str(tmp_path / "lake"), _specs()[3:])
    res = CliRunner().invoke(app, ["report", lake, "--out", str(tmp_path / "o"), "--estimator", "bogus"])
    assert res.exit_code == 2 and "unknown estimator 'bogus'" in res.output
    res = CliRunner().invoke(app, ["report", lake, "--out", str(tmp_path / "o"), "-e", "gaussianity"])
    assert res.exit_code == 2 and "gives no per-parameter alpha" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(app, ["report", lake, "--out", str(tmp_path / "o"), "--runs", "zzz"])
    assert res.exit_code == 2 and "no run 'zzz'" in res.output


def test_bad_input_fails_before_out_is_created(lake_path, tmp_path):
    out = tmp_path / "out"
    bad = [
        ({"param": "conv9.weight:0"}, "no selected run has a tensor 'conv9.weight'"),
        ({"param": "fc.bias:4"}, "index 4 is out of range, fc.bias has 4 parameters: use an index in 0..3"),
        ({"param": "fc.bias"}, "TENSOR:INDEX"),
        ({"runs": "nope"}, "nope"),
        ({"estimator": "gaussianity"}, "no per-parameter alpha"),
        ({"iterations": ["last"]}, "bad iteration 'last'"),
    ]
    for kwargs, needle in bad:
        with pytest.raises(SgnlakeError, match=re.escape(needle)):
            build_report(lake_path, out, log=lambda msg: None, **kwargs)
        assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        build_report(lake_path, tmp_path / "file", log=lambda msg: None)


def test_check_param_notes_only_when_some_run_has_it():
    from types import SimpleNamespace

    from sgnlake.analyze.report import check_param

    def info(name, numel):
        return SimpleNamespace(name=name, numel=numel)

    metas = {
        "small": SimpleNamespace(tensors=[info("fc1.weight", 8), info("fc1.bias", 2)]),
        "big": SimpleNamespace(tensors=[info("fc1.weight", 32), info("conv.weight", 9)]),
    }
    lake = SimpleNamespace(meta=metas.__getitem__)
    check_param(lake, ["small", "big"], ("fc1.weight", 20))  # big has it: the others get a note
    check_param(lake, ["small", "big"], ("conv.weight", 0))
    with pytest.raises(ConfigError, match="0..31"):
        check_param(lake, ["small", "big"], ("fc1.weight", 32))
    with pytest.raises(ConfigError, match="tensors: fc1.weight, fc1.bias, conv.weight"):
        check_param(lake, ["small", "big"], ("fc2.weight", 0))
    with pytest.raises(ConfigError, match="conv.weight"):
        check_param(lake, ["small"], ("conv.weight", 0))


def test_pick_and_parse_iterations():
    av = [0, 100, 200, 300, 400]
    assert pick_iterations(av) == [0, 200, 400]
    assert pick_iterations([5, 9]) == [5, 9]
    assert pick_iterations([7]) == [7]
    assert pick_iterations([]) == []
    assert pick_iterations(av, [90, 260, -1, 10_000]) == [100, 300, 400]
    assert pick_iterations(av, [-2, 0]) == [300, 0]
    assert parse_iterations("100, 5000,last") == [100, 5000, -1]
    assert parse_iterations("first") == [0] and parse_iterations("") is None
    with pytest.raises(ConfigError, match="bad --iterations value 'x'"):
        parse_iterations("100,x")
    assert parse_param("fc1.weight:12") == ("fc1.weight", 12) and parse_param(None) is None
    with pytest.raises(ConfigError, match="bad --param 'fc1.weight': use TENSOR:INDEX"):
        parse_param("fc1.weight")


def _sparse_oracle(col: np.ndarray) -> bool:
    """Fewer distinct finite non-zero values than half the finite samples, and not constant."""
    fin = col[np.isfinite(col)]
    return len(set(fin.tolist())) > 1 and len({v for v in fin.tolist() if v != 0}) < 0.5 * len(fin)


def test_report_on_collected_lake_reads_only(collected_lake, run_arrays, tmp_path):
    """A real (tiny FCN) lake from the collector: every per-run figure, key numbers from plain Zarr,
    and with store=False nothing is written into the lake."""
    lake, meta = collected_lake
    with pytest.raises(ConfigError, match="no selected run has a tensor 'fc9.weight'"):
        build_report(lake, tmp_path / "no", param="fc9.weight:0", log=lambda msg: None)
    assert not (tmp_path / "no").exists()
    # one snapshot (the last) in the distribution and SGN figures: every figure, one column each
    rep = build_report(
        lake, tmp_path, store=False, pooled=False, iterations=[-1], dpi=40, log=lambda msg: None
    )
    assert rep.errors == []
    assert {f.path for f in rep.figures} == {f"runs/tiny/{f}" for f in PER_RUN if not f.startswith("pooled")}
    assert any("Fig 2" in n and "not drawn" in n for n in rep.notes)
    arrays = run_arrays(lake, "tiny")
    k1, _ = choose_k1(meta.n_minibatches, DEFAULT_K1)
    last = np.concatenate(
        [mohammadi_oracle(arrays[f"{t.name}/sgn"][-1], k1=k1, axis=0) for t in meta.tensors]
    )
    # degenerate parameters (few distinct non-zero SGN values), by a loop over set() of each column
    sparse = np.concatenate(
        [[_sparse_oracle(col) for col in arrays[f"{t.name}/sgn"][-1].T] for t in meta.tensors]
    ) & ~np.isnan(last)
    kn = rep.key_numbers.set_index("run").loc["tiny"]
    assert sparse.sum() > 0  # MNIST border pixels
    assert kn["median α (last)"] == pytest.approx(float(np.nanmedian(last[~sparse])), rel=1e-5)
    assert kn["dead (no α), last"] == f"{int(np.isnan(last).sum())}/{last.size}"
    assert kn["degenerate (sparse), last"] == f"{int(sparse.sum())}/{last.size}"
    assert kn["loss (last)"] == pytest.approx(float(arrays["loss"][-1]))
    assert kn["last iteration"] == int(arrays["iteration"][-1]) and kn["M"] == meta.n_minibatches
    page = rep.index.read_text(encoding="utf-8")
    assert f"Snapshots shown in distributions: {int(arrays['iteration'][-1])}." in page
    assert "results" not in zarr.open_group(str(lake), mode="r")
