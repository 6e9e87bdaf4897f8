"""Self-describing metadata of the lake (schema version 2): CF-style attributes and coordinates.

A plain ``xarray.open_datatree(lake, engine="zarr", consolidated=False)`` explains
the lake with these conventions:

- every array has CF-style ``long_name``, ``units`` and ``description``
  (:data:`VARIABLES`); a gradient is in units of *loss per unit of its parameter*;
- ``minibatch`` is an index coordinate of each run group (inherited by its tensor
  groups) and ``param`` one of each tensor group: the C-order flat index into the
  tensor, whose shape is the flat attribute ``tensor_shape`` (see
  :func:`unravel_param` / :func:`ravel_param`);
- each run group carries its configuration as flat attributes (``run_id``,
  ``model``, ``batch_size``, ``lr``, ``seed``, ...: :func:`run_config_attrs`);
- bookkeeping attributes of the software start with ``_sgnlake`` (:data:`INTERNAL_PREFIX`)
  and are not part of the documented view (:func:`public_attrs` drops them).

Lakes of schema version 1 have none of this; readers do not require it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from .codecs import default_compressors
from .meta import RunMeta, TensorInfo
from .names import (
    ACCURACY,
    GRAD,
    INTERNAL_PREFIX,
    ITERATION,
    LOSS,
    MINIBATCH,
    PARAM,
    SGN,
    WEIGHT,
)
from .run_table import CONFIG_COLUMNS, run_row

#: Units of a gradient element: loss per unit of the parameter it is taken against.
GRADIENT_UNITS = "loss per unit of parameter"

#: CF-style attributes of every variable a lake (or a result) holds, by array name.
VARIABLES: dict[str, dict[str, str]] = {
    ITERATION: {
        "long_name": "SGD iteration",
        "units": "1",
        "description": "number of SGD updates applied before the snapshot (0 = initialisation)",
    },
    MINIBATCH: {
        "long_name": "minibatch index",
        "units": "1",
        "description": "index of the minibatch of the snapshot's partition of the training set",
    },
    PARAM: {
        "long_name": "flat parameter index",
        "units": "1",
        "description": "C-order flat index into the tensor of shape 'tensor_shape'",
    },
    LOSS: {
        "long_name": "training loss",
        "units": "1",
        "description": "mean cross-entropy (nats) over the training set at the snapshot's weights",
    },
    ACCURACY: {
        "long_name": "training accuracy",
        "units": "1",
        "description": "fraction of training examples classified correctly at the snapshot's weights",
    },
    SGN: {
        "long_name": "stochastic gradient noise",
        "units": GRADIENT_UNITS,
        "description": (
            "minibatch gradient minus full-batch gradient of the training loss with respect to each "
            "parameter (units: loss per unit of the parameter)"
        ),
    },
    GRAD: {
        "long_name": "full-batch gradient",
        "units": GRADIENT_UNITS,
        "description": (
            "gradient of the mean training loss over all minibatches with respect to each parameter "
            "(units: loss per unit of the parameter)"
        ),
    },
    WEIGHT: {
        "long_name": "parameter value",
        "units": "1",
        "description": "value of each parameter at the snapshot (in the model's own units)",
    },
    "alpha": {
        "long_name": "tail index of the SGN",
        "units": "1",
        "description": "alpha-stable tail index alpha in (0, 2] estimated from the minibatches' SGN",
    },
    "inv_alpha": {
        "long_name": "inverse tail index",
        "units": "1",
        "description": "1 / alpha as the estimator returns it (unclipped)",
    },
    "beta": {"long_name": "skewness of the alpha-stable fit", "units": "1", "description": "in [-1, 1]"},
    "scale": {
        "long_name": "scale of the alpha-stable fit",
        "units": GRADIENT_UNITS,
        "description": "scale parameter of the fitted alpha-stable law",
    },
    "loc": {
        "long_name": "location of the alpha-stable fit",
        "units": GRADIENT_UNITS,
        "description": "location parameter of the fitted alpha-stable law",
    },
    "n_nonfinite": {
        "long_name": "non-finite SGN samples",
        "units": "1",
        "description": "number of NaN or infinite SGN values the estimator dropped",
    },
}


def variable_attrs(name: str, tensor: TensorInfo | None = None) -> dict[str, Any]:
    """The attributes an array named ``name`` is created with (empty for an unknown name).

    Parameters
    ----------
    name : str
        Array name (``sgn``, ``grad``, ``alpha``, ...).
    tensor : TensorInfo, optional
        The tensor the array belongs to: adds ``tensor`` and ``tensor_shape``.
    """
    out: dict[str, Any] = dict(VARIABLES.get(name, {}))
    if tensor is not None:
        out["tensor"] = tensor.name
        out["tensor_shape"] = list(tensor.shape)
    return out


def tensor_group_attrs(tensor: TensorInfo) -> dict[str, Any]:
    """Flat, documented attributes of a tensor group (next to the ``sgnlake_tensor`` record)."""
    return {
        "long_name": f"parameter tensor {tensor.name}",
        "tensor_shape": list(tensor.shape),
        "module": tensor.module,
        "module_type": tensor.module_type,
        "kind": tensor.kind,
    }


def run_config_attrs(meta: RunMeta) -> dict[str, Any]:
    """Flat, documented attributes of a run group: its config (the run table's config columns)."""
    row = run_row(meta)
    out: dict[str, Any] = {"long_name": f"SGN collection run {meta.run_id}", "run_id": meta.run_id}
    for k in CONFIG_COLUMNS:
        v = row.get(k)
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out[k] = v
    return out


def write_coordinates(group: zarr.Group, name: str, size: int, chunk: int | None = None) -> zarr.Array:
    """Create the index coordinate ``name`` = ``0..size-1`` (int64) in ``group`` and write it."""
    arr = group.create_array(
        name,
        shape=(size,),
        chunks=(max(1, min(size, chunk or size)),),
        dtype="int64",
        dimension_names=[name],
        attributes=variable_attrs(name),
        overwrite=True,
        compressors=default_compressors(),
    )
    arr[:] = np.arange(size, dtype=np.int64)
    return arr


def is_internal(key: str) -> bool:
    """True for a bookkeeping attribute (``_sgnlake...``; also the version-1 claim ``sgnlake_claim``)."""
    return key.startswith(INTERNAL_PREFIX) or key == "sgnlake_claim"


def public_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` without the internal bookkeeping attributes (:func:`is_internal`)."""
    return {k: v for k, v in attrs.items() if not is_internal(k)}


def unravel_param(flat: int | Sequence[int] | np.ndarray, shape: Sequence[int]) -> tuple:
    """Index tuple(s) of flat ``param`` position(s) in a tensor of ``shape`` (C order).

    ``unravel_param(2369, (120, 784))`` is ``(3, 17)``; an array of positions gives a
    tuple of index arrays, as :func:`numpy.unravel_index`.
    """
    out = np.unravel_index(np.asarray(flat, dtype=np.int64), tuple(shape))
    return tuple(int(i) for i in out) if np.ndim(flat) == 0 else tuple(out)


def ravel_param(index: Sequence[int] | Sequence[Sequence[int]], shape: Sequence[int]) -> np.ndarray:
    """Flat ``param`` position(s) of index tuple(s) in a tensor of ``shape`` (C order).

    Raises
    ------
    ValueError
        An index has the wrong length or is out of range for ``shape``.
    """
    idx = np.asarray(index, dtype=np.int64)
    if idx.ndim == 1:
        idx = idx[None, :]
    if idx.ndim != 2 or idx.shape[1] != len(shape):
        raise ValueError(
            f"index {index!r} does not match tensor shape {tuple(shape)}: give {len(shape)} ints"
        )
    bad = np.any((idx < 0) | (idx >= np.asarray(shape, dtype=np.int64)), axis=1)
    if np.any(bad):
        raise ValueError(
            f"index {tuple(idx[bad][0].tolist())} is out of range for tensor shape {tuple(shape)}"
        )
    return np.ravel_multi_index(tuple(idx.T), tuple(shape)).astype(np.int64)
