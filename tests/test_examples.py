"""examples/: the script's answers against plain Zarr, and the notebook executed end to end on a
small synthetic lake (nbclient with an IPython kernel when installed, else its code cells in order)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from lake_fixtures import RunSpec, mohammadi_oracle, read_sgn_plain, write_lake

from sgnlake.analyze import open_lake
from sgnlake.analyze.kernels import DEFAULT_K1, choose_k1

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TENSORS = (
    ("fc1.weight", (4, 6), "weight", "fc1", "Linear"),
    ("fc1.bias", (4,), "bias", "fc1", "Linear"),
    ("fc2.weight", (3, 4), "weight", "fc2", "Linear"),
)
M = 24
BATCHES = (200, 50, 100)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> str:
    specs = [
        RunSpec(f"fcn-b{b}", tensors=TENSORS, iterations=(0, 10, 20), n_minibatches=M, batch_size=b, seed=i)
        for i, b in enumerate(BATCHES)
    ]
    path = write_lake(str(tmp_path_factory.mktemp("lake") / "lake"), specs)
    open_lake(path).compute_alpha(progress=False)
    return path


def _script():
    spec = importlib.util.spec_from_file_location("alpha_questions", EXAMPLES / "alpha_questions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _oracle(lake: str, run: str, tensors: list[str]) -> np.ndarray:
    """Median Mohammadi alpha over the parameters of ``tensors`` at each snapshot, from plain Zarr."""
    k1, _ = choose_k1(M, DEFAULT_K1)
    xs = [read_sgn_plain(lake, run, t)[0] for t in tensors]
    out = []
    for pos in range(xs[0].shape[0]):
        a = np.concatenate([mohammadi_oracle(x[pos], k1=k1, axis=0) for x in xs])
        out.append(np.nanmedian(a))
    return np.asarray(out)


def test_script_answers_match_plain_zarr(lake, tmp_path):
    mod = _script()
    opened = open_lake(lake)
    layers = mod.layer_alpha_over_iterations(opened, "fcn-b50")
    assert list(layers.index) == [0, 10, 20] and list(layers.columns) == ["fc1", "fc2"]
    np.testing.assert_allclose(layers["fc1"], _oracle(lake, "fcn-b50", ["fc1.weight", "fc1.bias"]), rtol=1e-5)
    np.testing.assert_allclose(layers["fc2"], _oracle(lake, "fcn-b50", ["fc2.weight"]), rtol=1e-5)

    x, (mu, sigma), stable, it = mod.sgn_with_fits(opened, "fcn-b50", "fc2.weight", 5)
    plain = read_sgn_plain(lake, "fcn-b50", "fc2.weight")[0][-1, :, 5]
    assert it == 20 and np.array_equal(x, plain.astype(np.float64))
    assert (mu, sigma) == pytest.approx((x.mean(), x.std())) and 0 < stable[0] <= 2  # ML Gaussian fit

    by_b = mod.alpha_against_batch_size(opened)
    assert list(by_b["batch_size"]) == sorted(BATCHES)
    for _, row in by_b.iterrows():
        full = _oracle(lake, row["run_id"], [t[0] for t in TENSORS])[-1]
        assert row["median"] == pytest.approx(full, rel=1e-5)

    mod.main(lake, str(tmp_path))
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "layer_alpha.png",
        "sgn_fits.png",
        "alpha_vs_batch_size.png",
    }


def _run_cells(nb_path: Path, cwd: Path) -> None:
    """Execute the notebook's code cells in one namespace (the fallback without nbclient)."""
    import matplotlib

    matplotlib.use("Agg")
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    ns: dict = {"__name__": "__main__"}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            exec(compile(src, f"{nb_path.name}[cell {i}]", "exec"), ns)  # noqa: S102


def test_notebook_executes(lake, tmp_path, monkeypatch):
    nb_path = EXAMPLES / "alpha_questions.ipynb"
    monkeypatch.setenv("SGNLAKE_LAKE", lake)
    monkeypatch.chdir(tmp_path)
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        _run_cells(nb_path, tmp_path)
        return
    pytest.importorskip("ipykernel")
    nb = nbformat.read(nb_path, as_version=4)
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "stable fit: alpha=" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figures were drawn
