"""The model registry: architectures as specified, tensor table, argument checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from sgnlake.collect import models
from sgnlake.collect.models import MODELS, build_model, n_parameters, register_model, tensor_table
from sgnlake.schema.errors import ConfigError


def test_lenet_has_37106_parameters_in_the_paper_layout():
    m = build_model("lenet")
    assert n_parameters(m) == 37_106
    table = {t.name: t for t in tensor_table(m)}
    assert {n: t.shape for n, t in table.items()} == {
        "conv1.weight": (6, 1, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16,),
        "fc1.weight": (84, 400),
        "fc1.bias": (84,),
        "fc2.weight": (10, 84),
        "fc2.bias": (10,),
    }
    assert table["conv2.weight"].module_type == "Conv2d" and table["conv2.weight"].kind == "weight"
    assert table["fc1.bias"].module == "fc1" and table["fc1.bias"].kind == "bias"
    assert table["fc1.bias"].module_type == "Linear"
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_lenet_on_cifar_shapes():
    m = build_model("lenet", input_shape=(3, 32, 32))
    assert m.conv1.in_channels == 3 and m.fc1.in_features == 16 * 6 * 6
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_fcn_matches_the_papers_code():
    m = build_model("fcn", depth=4, width=16)
    table = tensor_table(m)
    assert [t.name for t in table] == ["fc1.weight", "fc2.weight", "fc3.weight", "fc4.weight"]
    assert [t.shape for t in table] == [(16, 784), (16, 16), (16, 16), (10, 16)]
    # ReLU between layers, none after the last; input flattened
    x = torch.randn(5, 1, 28, 28)
    h = x.flatten(1)
    for i, lin in enumerate([m.fc1, m.fc2, m.fc3, m.fc4]):
        h = h @ lin.weight.T
        if i < 3:
            h = torch.relu(h)
    torch.testing.assert_close(m(x), h)
    with_bias = build_model("fcn", depth=2, width=8, bias=True)
    assert [t.name for t in tensor_table(with_bias)] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


@pytest.mark.parametrize(
    ("name", "args", "needle"),
    [
        ("nope", {}, "unknown model 'nope'"),
        ("fcn", {"depth": 1}, "depth must be an integer >= 2"),
        ("fcn", {"width": 0}, "width must be"),
        ("fcn", {"colour": 3}, "no argument 'colour'"),
        ("lenet", {"depth": 3}, "no argument 'depth'"),
    ],
)
def test_bad_models_are_one_line_config_errors(name, args, needle):
    with pytest.raises(ConfigError) as e:
        build_model(name, **args)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_new_model_is_one_decorated_function(monkeypatch):
    monkeypatch.setattr(models, "MODELS", dict(MODELS))

    @register_model("linear", cpu_engine="vmap")
    def linear(*, input_shape, num_classes, scale: float = 1.0) -> nn.Module:
        """A linear classifier."""
        return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes, bias=False))

    spec = models.model_spec("linear")
    assert spec.cpu_engine == "vmap" and spec.description == "A linear classifier."
    assert spec.arg_defaults() == {"scale": 1.0}
    m = build_model("linear")
    assert [t.module_type for t in tensor_table(m)] == ["Linear"]
    assert [t.name for t in tensor_table(m)] == ["1.weight"]


def test_model_init_is_seeded():
    torch.manual_seed(3)
    a = build_model("fcn", depth=2, width=8)
    torch.manual_seed(3)
    b = build_model("fcn", depth=2, width=8)
    assert torch.equal(a.fc1.weight, b.fc1.weight)


# ----------------------------------------------------------------------------- ResNet and ViT


def _brute_force(model: nn.Module, x, y, batches, loss_fn=torch.nn.functional.cross_entropy):
    """Per-minibatch gradients by one plain torch.autograd.grad call each (train mode), on a copy."""
    import copy

    m = copy.deepcopy(model).train()
    params = list(m.parameters())
    rows = []
    for idx in batches:
        gs = torch.autograd.grad(loss_fn(m(x[idx]), y[idx]), params)
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


def _engine_rows(res, names):
    return torch.cat([res.grads[n] for n in names], dim=1)


def test_resnet20_is_the_cifar_architecture():
    m = build_model("resnet", input_shape=(3, 32, 32))
    assert n_parameters(m) == 269_722  # He et al.'s ResNet-20 (0.27 M, option A shortcuts)
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 19
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="6n"):
        build_model("resnet", depth=21)


@pytest.mark.parametrize(
    ("name", "args", "shape"),
    [("resnet", {"depth": 8, "width": 4}, (3, 8, 8)), ("vit", {"patch": 4, "dim": 8, "depth": 1}, (1, 8, 8))],
)
@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_engines_equal_a_brute_force_autograd_loop(name, args, shape, engine):
    from sgnlake.collect.engines import loop_gradients, vmap_gradients
    from sgnlake.collect.models import preserved_buffers

    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, num_classes=3, **args)
    with torch.no_grad():  # BatchNorm running statistics away from their initial values
        model.train()(torch.randn(16, *shape))
    x, y = torch.randn(12, *shape), torch.randint(0, 3, (12,))
    batches = torch.arange(12).view(4, 3)
    names = [n for n, _ in model.named_parameters()]
    want = _brute_force(model, x, y, batches)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with preserved_buffers(model):
        if engine == "loop":
            res = loop_gradients(model, names, x, y, batches)
        else:
            res = vmap_gradients(model, names, x, y, batches, chunk=3)
    torch.testing.assert_close(_engine_rows(res, names), want, rtol=1e-4, atol=1e-6)
    assert res.classifier
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_vmap_leaves_batchnorm_buffers_untouched_by_itself():
    from sgnlake.collect.engines import vmap_gradients

    torch.manual_seed(0)
    model = build_model("resnet", input_shape=(3, 8, 8), depth=8, width=2).train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    vmap_gradients(model, ["fc.weight"], torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,)),
                   torch.arange(6).view(2, 3), chunk=2)  # fmt: skip
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())


@pytest.mark.parametrize("engine", ["auto", "vmap"])
def test_collect_a_resnet_stores_the_sgn_of_its_stored_weights(tmp_path, tiny_config, run_arrays, engine):
    """A BatchNorm model through ``collect`` (and so the probe): SGN at each snapshot's stored weights
    equals the brute-force loop (train-mode BatchNorm, each minibatch its own statistics)."""
    from sgnlake.collect import collect
    from sgnlake.collect.data import load_dataset
    from sgnlake.collect.snapshot import partition
    from sgnlake.schema.meta import Schedule

    cfg = tiny_config(
        "res", model="resnet", model_args={"depth": 8, "width": 2}, n_train=40, batch_size=10, iterations=3,
        engine=engine, optimizer="momentum",
    )  # fmt: skip
    cfg = dataclasses.replace(cfg, schedule=Schedule(kind="at", every=None, at=(0, 3)))
    meta = collect(tmp_path, cfg, progress=False)
    assert meta.engine == ("loop" if engine == "auto" else "vmap") and meta.committed == 2
    arrays = run_arrays(tmp_path, "res")
    x, y = load_dataset("mnist5k", n_train=40).tensors("cpu")
    model = build_model("resnet", depth=8, width=2)
    names = [n for n, _ in model.named_parameters()]
    for k, t in enumerate([0, 3]):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(torch.from_numpy(arrays[f"{n}/weight"][k]).view_as(p))
        batches = partition(40, 10, seed=cfg.seed, iteration=t, kind=cfg.partition)
        g = _brute_force(model, x, y, batches).double()
        want = (g - g.mean(0)).float()
        got = torch.cat([torch.from_numpy(arrays[f"{n}/sgn"][k]) for n in names], dim=1)
        # SGN is a difference of nearly equal float32 gradients: compare at the scale of the SGN
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
