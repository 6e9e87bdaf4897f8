"""The README's main job (`sgnlake demo`) end to end, checked with plain zarr."""

from __future__ import annotations

import re

import zarr
from typer.testing import CliRunner

from sgnlake.cli.app import app


def test_demo_collects_computes_alpha_and_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    root = zarr.open_group(str(out / "lake"), mode="r")
    runs = sorted(name for name, _ in root["runs"].groups())
    assert runs == ["fcn-d3-w32-b100", "fcn-d3-w32-b200", "fcn-d3-w32-b50", "lenet-b150", "lenet-b50"]
    for rid in runs:
        meta = root[f"runs/{rid}"].attrs["sgnlake_run"]
        assert meta["status"] == "complete"
        assert meta["committed"] == len(meta["planned_iterations"]) > 1
        # alpha stored for every committed snapshot of every tensor
        (key,) = [k for k, _ in root[f"results/{rid}"].groups()]
        for t in meta["tensors"]:
            a = root[f"results/{rid}/{key}/{t['name']}/alpha"]
            assert a.shape == (meta["committed"], t["numel"])
    index = (out / "report" / "index.html").read_text()
    pngs = re.findall(r'src="([^"]+\.png)"', index)
    assert len(pngs) >= 20 and all((out / "report" / p).is_file() for p in pngs)

    again = CliRunner().invoke(app, ["demo", str(out), "--quick"])  # rerun: every run skipped
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped") >= len(runs)
