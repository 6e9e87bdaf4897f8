"""Training data: the embedded MNIST subset and local MNIST / FashionMNIST / CIFAR-10 files.

Images are kept as ``uint8 (n, C, H, W)`` and become float pixels in ``[0, 1]``
(``/255``, no normalisation, as the paper's ``ToTensor()``) on the device.
Standard files are read by the small readers here; torchvision is used only to
download them (``download=True``) and is optional.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgnlake.schema.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """What is known of a dataset before reading it (planning uses this; no file is opened).

    Attributes
    ----------
    n_train : int
        Training examples in the standard files.
    input_shape : tuple of int
        Shape ``(C, H, W)`` of one example.
    num_classes : int
        Number of classes (labels are ``0 .. num_classes - 1``).
    """

    n_train: int
    input_shape: tuple[int, int, int]
    num_classes: int


#: The datasets :func:`load_dataset` knows (the one table of their sizes, shapes and classes).
DATASET_INFO: dict[str, DatasetInfo] = {
    "mnist5k": DatasetInfo(5000, (1, 28, 28), 10),
    "mnist": DatasetInfo(60000, (1, 28, 28), 10),
    "fashionmnist": DatasetInfo(60000, (1, 28, 28), 10),
    "cifar10": DatasetInfo(50000, (3, 32, 32), 10),
}
#: Names of the known datasets.
DATASETS = tuple(DATASET_INFO)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of dataset ``name``; :class:`ConfigError` naming the known ones if absent."""
    try:
        return DATASET_INFO[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}") from None


_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_TV_FOLDER = {"mnist": "MNIST", "fashionmnist": "FashionMNIST"}
_CIFAR_FOLDER = "cifar-10-batches-py"


@dataclass(frozen=True)
class Dataset:
    """Training examples held in host memory.

    Attributes
    ----------
    name : str
        Dataset name (``mnist5k``...).
    images : numpy.ndarray
        ``uint8`` array of shape ``(n, C, H, W)``.
    labels : numpy.ndarray
        ``int64`` class labels, shape ``(n,)``.
    num_classes : int
        Number of classes.
    fingerprint : str
        ``sha256:`` digest of the images and labels (see :func:`fingerprint`).
    source : str
        Where the data were read from.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    fingerprint: str
    source: str

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape ``(C, H, W)`` of one example."""
        return tuple(int(s) for s in self.images.shape[1:])

    def tensors(self, device: str = "cpu"):
        """The examples as torch tensors on ``device``: float32 pixels / 255 and int64 labels."""
        import torch

        x = torch.from_numpy(self.images).to(device=device).to(torch.float32).div_(255.0)
        y = torch.from_numpy(self.labels).to(device=device)
        return x, y


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """``sha256:<hex>`` of shape, dtype and bytes of the images and labels."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(images), np.ascontiguousarray(labels)):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return "sha256:" + h.hexdigest()


def default_data_dir() -> str:
    """Folder used for file datasets when none is given: ``$SGNLAKE_DATA_DIR`` or ``~/.cache/sgnlake/data``."""
    return os.environ.get("SGNLAKE_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "sgnlake", "data"
    )


# ----------------------------------------------------------------------------- readers


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    Parameters
    ----------
    path : str or path
        File name; a name ending in ``.gz`` is decompressed.

    Returns
    -------
    numpy.ndarray
        The array in native byte order.

    Raises
    ------
    ConfigError
        The file is not a valid IDX file.
    """
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read IDX file {p}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError(f"{p} is not an IDX file (bad magic number): replace it with the original file")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != need:
        raise ConfigError(
            f"{p} is truncated or corrupt ({len(raw) - header} data bytes, expected {need}): download it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(dirs: list[Path], name: str) -> Path | None:
    for d in dirs:
        for cand in (d / name, d / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None


def _idx_dirs(name: str, data_dir: Path) -> list[Path]:
    return [data_dir, data_dir / _TV_FOLDER[name] / "raw"]


def _read_idx_dataset(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    dirs = _idx_dirs(name, data_dir)
    img, lab = (_find(dirs, f) for f in _IDX_FILES)
    if img is None or lab is None:
        return None
    images, labels = read_idx(img), read_idx(lab)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ConfigError(
            f"{img.name} {images.shape} and {lab.name} {labels.shape} do not match: "
            "use the standard training files"
        )
    return images[:, None].astype(np.uint8), labels.astype(np.int64), str(img.parent)


def read_cifar10(folder: str | os.PathLike[str], n_train: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the CIFAR-10 python batches ``data_batch_1`` .. ``data_batch_5`` of ``folder``.

    Parameters
    ----------
    folder : str or path
        The ``cifar-10-batches-py`` folder.
    n_train : int, optional
        Read only as many batches as the first ``n_train`` examples need.

    Returns
    -------
    images, labels : numpy.ndarray
        ``uint8 (n, 3, 32, 32)`` and ``int64 (n,)``.
    """
    folder = Path(folder)
    xs, ys, have = [], [], 0
    for i in range(1, 6):
        f = folder / f"data_batch_{i}"
        if not f.is_file():
            raise ConfigError(f"CIFAR-10 batch {f} is missing: place all of data_batch_1..5 in {folder}")
        try:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")  # noqa: S301 - the standard CIFAR-10 format
            data = np.asarray(d[b"data"], dtype=np.uint8)
            labels = np.asarray(d[b"labels"], dtype=np.int64)
        except Exception as e:  # noqa: BLE001 - any unreadable pickle is a user-data problem
            raise ConfigError(
                f"{f} is not a CIFAR-10 python batch ({type(e).__name__}): download it again"
            ) from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
            raise ConfigError(f"{f} has data of shape {data.shape}: expected (N, 3072) with N labels")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
        have += labels.shape[0]
        if n_train is not None and have >= n_train:
            break
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_folder(data_dir: Path) -> Path | None:
    for d in (data_dir / _CIFAR_FOLDER, data_dir):
        if (d / "data_batch_1").is_file():
            return d
    return None


def _download(name: str, data_dir: Path) -> None:
    try:
        import torchvision.datasets as tvd
    except Exception:  # noqa: BLE001 - torchvision missing or broken
        raise ConfigError(
            f"dataset {name!r} is not in {data_dir} and torchvision is not available to download it: "
            f"pip install torchvision, or place the files in --data-dir"
        ) from None
    cls = {"mnist": tvd.MNIST, "fashionmnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        cls(root=str(data_dir), train=True, download=True)
    except Exception as e:  # noqa: BLE001 - network and disk errors
        raise ConfigError(
            f"downloading {name!r} to {data_dir} failed ({type(e).__name__}: {e}): "
            "place the files in --data-dir instead"
        ) from None


def _missing_files_error(name: str, data_dir: Path) -> ConfigError:
    if name == "cifar10":
        what = f"{_CIFAR_FOLDER}/data_batch_1..5"
    else:
        what = "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]"
    return ConfigError(f"dataset {name!r} not found in {data_dir}: place {what} there, or pass --download")


def load_dataset(
    name: str = "mnist5k",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    n_train: int | None = None,
    download: bool = False,
) -> Dataset:
    """Load a training set into host memory.

    Parameters
    ----------
    name : {"mnist5k", "mnist", "fashionmnist", "cifar10"}
        ``mnist5k`` is embedded in sgnlake (5,000 MNIST digits); the others are
        read from ``data_dir`` in their standard formats.
    data_dir : str or path, optional
        Folder with the files (also searched: torchvision's ``MNIST/raw``,
        ``FashionMNIST/raw``, ``cifar-10-batches-py``). Default
        :func:`default_data_dir`.
    n_train : int, optional
        Use only the first ``n_train`` examples.
    download : bool
        If the files are absent, download them with torchvision into ``data_dir``.

    Returns
    -------
    Dataset

    Raises
    ------
    ConfigError
        Unknown dataset, files missing (without ``download``), unreadable files,
        or ``n_train`` larger than the dataset.
    """
    info = dataset_info(name)
    if n_train is not None and n_train < 1:
        raise ConfigError(f"--n-train must be >= 1, got {n_train}")
    if name == "mnist5k":
        from sgnlake.data import path as data_path

        src = data_path()
        with src.open("rb") as f, np.load(f) as z:
            images, labels = z["images"][:, None].astype(np.uint8), z["labels"].astype(np.int64)
        source = str(src)
    else:
        ddir = Path(data_dir if data_dir is not None else default_data_dir()).expanduser()
        found = _load_files(name, ddir, n_train)
        if found is None and download:
            _download(name, ddir)
            found = _load_files(name, ddir, n_train)
        if found is None:
            raise _missing_files_error(name, ddir)
        images, labels, source = found
    if n_train is not None:
        if n_train > labels.shape[0]:
            raise ConfigError(f"--n-train {n_train} exceeds the {labels.shape[0]} examples of {name!r}")
        images, labels = images[:n_train], labels[:n_train]
    images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels)
    if labels.size and labels.min() < 0:
        raise ConfigError(f"dataset {name!r} has negative labels: use the standard files")
    if tuple(images.shape[1:]) != info.input_shape:
        raise ConfigError(
            f"dataset {name!r} from {source} has examples of shape {tuple(images.shape[1:])}, expected "
            f"{info.input_shape}: use the standard files"
        )
    num_classes = info.num_classes
    if labels.size and int(labels.max()) >= num_classes:
        raise ConfigError(
            f"dataset {name!r} has label {int(labels.max())} >= {num_classes}: use the standard files"
        )
    return Dataset(name, images, labels, num_classes, fingerprint(images, labels), source)


def _load_files(name: str, data_dir: Path, n_train: int | None) -> tuple[np.ndarray, np.ndarray, str] | None:
    if name == "cifar10":
        folder = _cifar_folder(data_dir)
        if folder is None:
            return None
        images, labels = read_cifar10(folder, n_train)
        return images, labels, str(folder)
    return _read_idx_dataset(name, data_dir)
