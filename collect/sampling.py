"""Parameter sampling (``--param-sample``): which flat indices of each tensor a run stores.

A run with ``StorageSpec.param_sample`` stores, for every tensor, the SGN, full
gradient and weights of a seeded random subset of its parameters only. The
subset is drawn once per run from ``(seed, tensor name)`` (sorted flat C-order
indices, without replacement) and recorded in the lake as the tensor group's
``param`` array (int64, dims ``param``): the coordinate of the stored ``param``
axis, which :class:`sgnlake.analyze.lake.Lake` reads back, so alpha, summaries
and maps see the original flat indices. ``store="alpha"`` without a sample keeps
no SGN at all (an empty sample). This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import zarr

from sgnlake.schema.errors import ConfigError
from sgnlake.schema.meta import StorageSpec, TensorInfo, check_param_sample
from sgnlake.schema.names import PARAM

#: Name of the index array in a sampled tensor group (the ``param`` coordinate).
INDEX_ARRAY = PARAM
#: Stream number of the sampling generator (apart from the partition and training streams).
_SAMPLE_STREAM = 0x5A3D


def parse_param_sample(text: str | None) -> float | int | None:
    """``--param-sample`` text as a fraction (``0.0025``, ``1e-3``) or a count (``1000``).

    Raises
    ------
    ConfigError
        Not a number, a fraction outside (0, 1], or a negative count.
    """
    if text is None or str(text).strip().lower() in ("", "none", "all"):
        return None
    s = str(text).strip()
    try:
        value: float | int = int(s)
    except ValueError:
        try:
            value = float(s.rstrip("%")) / (100 if s.endswith("%") else 1)
        except ValueError:
            raise ConfigError(
                f"--param-sample {text!r} is not a number: give a fraction (0.0025) or a count (1000)"
            ) from None
    return check_param_sample(value)


def sample_size(param_sample: float | int | None, numel: int) -> int:
    """Parameters kept of a tensor of ``numel``: ``round(f * numel)`` (at least 1) or ``min(N, numel)``."""
    if param_sample is None:
        return numel
    if isinstance(param_sample, float):
        return min(numel, max(1, round(param_sample * numel)))
    return min(numel, int(param_sample))


def sample_indices(seed: int, name: str, numel: int, param_sample: float | int | None) -> np.ndarray:
    """Sorted flat indices (int64) of the parameters of tensor ``name`` a run keeps.

    Drawn without replacement by a NumPy generator seeded from
    ``(seed, stream, crc32(name))``: the same for every run with this seed,
    independent of the other tensors and of the training and partition RNGs.
    """
    k = sample_size(param_sample, numel)
    if k >= numel:
        return np.arange(numel, dtype=np.int64)
    rng = np.random.default_rng([int(seed) % 2**63, _SAMPLE_STREAM, zlib.crc32(name.encode())])
    return np.sort(rng.choice(numel, size=k, replace=False)).astype(np.int64)


def plan_samples(
    tensors: Sequence[TensorInfo], seed: int, storage: StorageSpec
) -> tuple[tuple[TensorInfo, ...], dict[str, np.ndarray] | None]:
    """The tensor table of a sampled run (``stored`` set) and the kept indices by tensor name.

    Returns ``(tensors, None)`` unchanged when the run stores every parameter
    (:attr:`StorageSpec.sampled` False). With ``store="alpha"`` and no
    ``param_sample`` the sample is empty.
    """
    if not storage.sampled:
        return tuple(tensors), None
    value = storage.param_sample if storage.param_sample is not None else 0
    out, index = [], {}
    for t in tensors:
        idx = sample_indices(seed, t.name, t.numel, value)
        index[t.name] = idx
        out.append(dataclasses.replace(t, stored=len(idx)))
    return tuple(out), index


def write_indices(run_group: zarr.Group, index: Mapping[str, np.ndarray]) -> None:
    """Record the kept indices as each tensor group's ``param`` array (at run creation)."""
    for name, idx in index.items():
        run_group[name].create_array(
            INDEX_ARRAY,
            data=np.asarray(idx, dtype=np.int64),
            chunks=(max(1, len(idx)),),
            dimension_names=[PARAM],
        )


def read_indices(run_group: zarr.Group, info: TensorInfo) -> np.ndarray:
    """The flat indices along the stored ``param`` axis of one tensor (``arange(numel)`` when unsampled)."""
    if info.stored is None:
        return np.arange(info.numel, dtype=np.int64)
    tg = run_group[info.name]
    if INDEX_ARRAY not in tg:
        raise ConfigError(f"tensor {info.name!r} is sampled but its group has no {INDEX_ARRAY!r} array")
    return np.asarray(tg[INDEX_ARRAY][:], dtype=np.int64)


def check_stored(
    run_group: zarr.Group, tensors: Sequence[TensorInfo], index: Mapping[str, np.ndarray]
) -> None:
    """On resume: the stored sample must be the one this run draws (else the snapshots would mix samples).

    Raises
    ------
    ConfigError
        A tensor's stored indices differ from ``index``.
    """
    for t in tensors:
        if t.name in index and not np.array_equal(read_indices(run_group, t), index[t.name]):
            raise ConfigError(
                f"cannot resume: the stored parameter sample of {t.name!r} differs from the one drawn now "
                "(another NumPy?): start a new run id"
            )
