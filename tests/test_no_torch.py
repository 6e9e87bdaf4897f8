"""The analysis stage never imports torch, not even indirectly (it must run where torch is absent).

torch is blocked by a meta-path finder that raises ImportError for ``torch`` and
``torch.*``. The shorter ``sys.modules["torch"] = None`` cannot be used: scipy's
bundled array_api_compat (scipy 1.17) looks up ``sys.modules["torch"].Tensor``
whenever the key exists, so importing scipy.stats itself fails with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

TESTS = os.path.dirname(os.path.abspath(__file__))

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import sys


    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import {{name}})")
            return None


    sys.meta_path.insert(0, BlockTorch())
    sys.path.insert(0, {tests!r})
    from lake_fixtures import RunSpec, write_lake

    import sgnlake.analyze
    from sgnlake.analyze import open_lake
    from sgnlake.cli.app import main

    path = write_lake({path!r}, [RunSpec("r1", dead={{"fc1.weight": [2]}})])
    lake = open_lake(path)
    report = lake.compute_alpha(progress=False)
    assert report.runs[0].action == "computed", report
    assert lake.alpha("r1").attrs["n_stored"] == 4
    assert len(lake.summary(by="tensor")) == 4 * 4
    try:
        main(["alpha", path, "--estimator", "hill", "--no-progress"])
    except SystemExit as e:
        assert e.code in (0, None), e.code
    leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "sgnlake.collect")))
    assert not leaked, leaked
    print("NO-TORCH-OK")
    """
)


def test_analysis_runs_with_torch_blocked(tmp_path):
    code = SCRIPT.format(tests=TESTS, path=str(tmp_path / "lake"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "NO-TORCH-OK" in p.stdout
    assert "hill" in p.stdout and "computed" in p.stdout
