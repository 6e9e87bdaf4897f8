"""Training data: embedded subset, our IDX and CIFAR-10 readers on tiny files, errors."""

from __future__ import annotations

import builtins
import gzip
import pickle
import struct

import numpy as np
import pytest

from sgnlake.collect.data import fingerprint, load_dataset, read_cifar10, read_idx
from sgnlake.schema.errors import ConfigError


def write_idx(path, array: np.ndarray, code: int = 0x08, gz: bool = False) -> None:
    """An IDX file written from the format's definition (big-endian header)."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def tiny_images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=7, dtype=np.uint8)


def test_mnist5k_is_pixels_over_255():
    d = load_dataset("mnist5k", n_train=300)
    assert d.n == 300 and d.input_shape == (1, 28, 28) and d.images.dtype == np.uint8
    x, y = d.tensors()
    assert x.dtype.is_floating_point and float(x.min()) == 0.0 and float(x.max()) == 1.0
    np.testing.assert_array_equal(x.numpy() * 255, d.images.astype(np.float32))
    import sgnlake.data

    with np.load(sgnlake.data.path()) as z:
        np.testing.assert_array_equal(d.labels, z["labels"][:300])
        np.testing.assert_array_equal(d.images[:, 0], z["images"][:300])
    assert d.fingerprint == fingerprint(d.images, d.labels)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_and_mnist_folder(tmp_path, tiny_images, gz):
    images, labels = tiny_images
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", images, gz=gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, gz=gz)
    np.testing.assert_array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{sfx}"), images)
    d = load_dataset("mnist", data_dir=tmp_path, n_train=5)
    assert d.images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(d.images[:, 0], images[:5])
    np.testing.assert_array_equal(d.labels, labels[:5].astype(np.int64))
    assert d.fingerprint != load_dataset("mnist", data_dir=tmp_path).fingerprint


def test_idx_reader_other_dtypes_and_torchvision_layout(tmp_path, tiny_images):
    a = np.arange(12, dtype=">i4").reshape(3, 4) - 5
    write_idx(tmp_path / "x.idx", a, code=0x0C)
    got = read_idx(tmp_path / "x.idx")
    np.testing.assert_array_equal(got, a)
    assert got.dtype.isnative
    images, labels = tiny_images
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    assert load_dataset("fashionmnist", data_dir=tmp_path).n == 7


def test_idx_reader_rejects_bad_files(tmp_path, tiny_images):
    images, _ = tiny_images
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ConfigError, match="bad magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "trunc", images)
    (tmp_path / "trunc").write_bytes((tmp_path / "trunc").read_bytes()[:-10])
    with pytest.raises(ConfigError, match="truncated"):
        read_idx(tmp_path / "trunc")


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = []
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=4).tolist()
        batches.append((data, labels))
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
    x, y = read_cifar10(folder)
    assert x.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(x[5].reshape(-1), batches[1][0][1])  # channel-major rows
    np.testing.assert_array_equal(y, np.concatenate([b[1] for b in batches]))
    d = load_dataset("cifar10", data_dir=tmp_path, n_train=6)
    assert d.n == 6 and d.input_shape == (3, 32, 32)
    np.testing.assert_array_equal(d.images, x[:6])


def test_missing_files_say_how_to_fix(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "--download" in msg and "\n" not in msg

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("no torchvision here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(ConfigError) as e:
        load_dataset("cifar10", data_dir=tmp_path, download=True)
    assert "pip install torchvision" in str(e.value) and "--data-dir" in str(e.value)


def test_bad_names_and_sizes():
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="exceeds the 5000"):
        load_dataset("mnist5k", n_train=5001)


def test_download_goes_through_torchvision_and_reads_its_layout(tmp_path, tiny_images, monkeypatch):
    """--download calls torchvision's dataset class (train split, download=True) and then reads the
    files where torchvision puts them (ROOT/MNIST/raw). torchvision cannot be installed beside the
    CPU torch wheel here, so a stand-in module writes what torchvision would download."""
    import sys
    import types

    images, labels = tiny_images
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = tmp_path / "MNIST" / "raw"
            raw.mkdir(parents=True)
            write_idx(raw / "train-images-idx3-ubyte", images)
            write_idx(raw / "train-labels-idx1-ubyte", labels)

    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST = FakeMNIST
    datasets.FashionMNIST = FakeMNIST
    datasets.CIFAR10 = FakeMNIST
    tv = types.ModuleType("torchvision")
    tv.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)

    d = load_dataset("mnist", data_dir=tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True)]
    np.testing.assert_array_equal(d.images[:, 0], images)
    np.testing.assert_array_equal(d.labels, labels.astype(np.int64))
    load_dataset("mnist", data_dir=tmp_path, download=True)  # files present: no second download
    assert len(calls) == 1


def test_dataset_table_matches_the_data_and_drives_planning(tmp_path):
    """One table of sizes, shapes and classes: the embedded file, the readers and the sweep's plan agree."""
    import sgnlake.data
    from sgnlake.collect.data import DATASET_INFO, DATASETS, dataset_info
    from sgnlake.collect.sweep import dataset_size, model_tensors
    from sgnlake.schema import RunConfig

    assert set(DATASETS) == {"mnist5k", "mnist", "fashionmnist", "cifar10"} == set(DATASET_INFO)
    with np.load(sgnlake.data.path()) as z:  # the embedded file, read with numpy
        n, h, w = z["images"].shape
        classes = int(z["labels"].max()) + 1
    info = dataset_info("mnist5k")
    assert (info.n_train, info.input_shape, info.num_classes) == (n, (1, h, w), classes)
    d = load_dataset("mnist5k")
    assert (d.n, d.input_shape, d.num_classes) == (n, info.input_shape, info.num_classes)
    # planning reads the same table (no file is opened): the standard training-set sizes and shapes
    sizes = {name: dataset_size(RunConfig(run_id="r", model="lenet", dataset=name)) for name in DATASETS}
    assert sizes == {"mnist5k": 5000, "mnist": 60000, "fashionmnist": 60000, "cifar10": 50000}
    # LeNet's first layer: 6 filters of 5x5 over the input channels; the last layer: num_classes outputs
    for name in ("mnist", "cifar10"):
        t = dict(model_tensors(RunConfig(run_id="r", model="lenet", dataset=name)))
        c, h, w = DATASET_INFO[name].input_shape
        assert t["conv1.weight"] == 6 * c * 5 * 5
        assert t["fc1.weight"] == 84 * 16 * (((h // 2) - 4) // 2) * (((w // 2) - 4) // 2)
        last = [k for k in t if k.endswith(".bias")][-1]
        assert t[last] == 10
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'"):
        dataset_info("svhn")
