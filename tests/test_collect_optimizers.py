"""``collect --optimizer sgd|momentum|adam``: the trajectory of a hand-written torch loop, recorded config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sgnlake.collect import collect
from sgnlake.collect.data import load_dataset
from sgnlake.collect.models import build_model
from sgnlake.schema.errors import ConfigError
from sgnlake.schema.meta import RunConfig


def _hand_loop(make_opt, steps: int, snaps: list[int]) -> dict[int, dict[str, np.ndarray]]:
    """The tiny run (FCN d2 w8, 200 digits, b = 20, data order) trained by a plain torch loop."""
    torch.manual_seed(0)
    model = build_model("fcn", depth=2, width=8)
    opt = make_opt(model.parameters())
    x, y = load_dataset("mnist5k", n_train=200).tensors("cpu")
    out = {}
    for t in range(steps + 1):
        if t in snaps:
            out[t] = {n: p.detach().reshape(-1).numpy().copy() for n, p in model.named_parameters()}
        if t == steps:
            break
        idx = torch.arange((t % 10) * 20, (t % 10 + 1) * 20)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return out


@pytest.mark.parametrize(
    ("overrides", "make_opt", "label"),
    [
        ({"optimizer": "momentum"}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), "SGD(momentum=0.9)"),
        (
            {"optimizer": "adam", "betas": (0.8, 0.99), "weight_decay": 1e-3},
            lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), weight_decay=1e-3),
            "Adam(betas=(0.8, 0.99), weight_decay=0.001)",
        ),
    ],
)
def test_collect_trains_with_the_optimizer_of_a_hand_written_loop(
    tmp_path, tiny_config, run_arrays, overrides, make_opt, label
):
    cfg = tiny_config("opt", lr=0.05, shuffle=False, iterations=20, **overrides)
    meta = collect(tmp_path, cfg, progress=False)
    want = _hand_loop(make_opt, 20, [0, 10, 20])
    arrays = run_arrays(tmp_path, "opt")
    assert arrays["iteration"].tolist() == [0, 10, 20]
    for k, t in enumerate([0, 10, 20]):
        for name, w in want[t].items():
            np.testing.assert_allclose(arrays[f"{name}/weight"][k], w, rtol=1e-6, atol=1e-7)
    assert meta.config.optimizer == overrides["optimizer"]
    assert meta.extra["optimizer"] == label
    if overrides["optimizer"] == "momentum":
        assert meta.config.momentum == 0.9 and meta.config.betas is None  # the default, recorded
    else:
        assert meta.config.betas == (0.8, 0.99) and meta.config.weight_decay == 1e-3


def test_optimizer_config_is_checked_and_old_lakes_read_as_sgd(tiny_config):
    d = tiny_config().to_dict()
    for k in ("optimizer", "momentum", "betas", "weight_decay"):
        d.pop(k)
    old = RunConfig.from_dict(d)
    assert (old.optimizer, old.momentum, old.betas, old.weight_decay) == ("sgd", None, None, 0.0)
    adam = dataclasses.replace(tiny_config(), optimizer="adam", betas=(0.9, 0.99))
    assert RunConfig.from_dict(adam.to_dict()) == adam
    for bad, needle in (
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"momentum": 0.5}, "--momentum applies to --optimizer momentum"),
        ({"optimizer": "momentum", "momentum": 1.0}, "in [0, 1)"),
        ({"optimizer": "sgd", "betas": (0.9, 0.9)}, "--betas applies"),
        ({"weight_decay": -1.0}, "--weight-decay"),
    ):
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(")", r"\)")):
            tiny_config(**bad)


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    """The ``sgnlake`` entry point in-process (errors become one line and exit 2): (code, out, err)."""
    from sgnlake.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_cli_optimizer_options_are_recorded_and_named(tmp_path, capsys):
    code, out, err = _main(
        capsys, "collect", str(tmp_path), "--model", "fcn", "--depth", "2", "--width", "4", "--n-train", "100",
        "--batch-size", "50", "--iterations", "2", "--every", "2", "--device", "cpu", "--no-progress",
        "--optimizer", "adam", "--betas", "0.8,0.99",
    )  # fmt: skip
    assert code == 0, err
    assert "fcn-d2-w4-n100-b50-adam-s0" in out
    from sgnlake.collect import stored_run_meta

    meta = stored_run_meta(tmp_path, "fcn-d2-w4-n100-b50-adam-s0")
    assert meta.config.optimizer == "adam" and meta.config.betas == (0.8, 0.99)
    for argv, needle in (
        (["--betas", "0.9", "--optimizer", "adam"], "bad --betas"),
        (["--momentum", "0.5"], "--momentum applies to --optimizer momentum"),
        (["--optimizer", "rmsprop"], "unknown optimizer"),
    ):
        code, _, err = _main(capsys, "collect", str(tmp_path / "new"), *argv)
        assert code == 2 and needle in err and err.count("\n") == 1, err
        assert not (tmp_path / "new").exists()
