"""The layout of a new run in the lake: its group, coordinate and data arrays, and attributes.

Used by :meth:`sgnlake.collect.writer.RunWriter.create`. This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from sgnlake.schema.codecs import CHUNK_KEY_ENCODING, array_kwargs, default_compressors
from sgnlake.schema.conventions import run_config_attrs, tensor_group_attrs, variable_attrs, write_coordinates
from sgnlake.schema.meta import RunMeta
from sgnlake.schema.names import (
    ACCURACY,
    GRAD,
    ITERATION,
    LOSS,
    MINIBATCH,
    PARAM,
    RUN_ATTR,
    SGN,
    TENSOR_ATTR,
    WEIGHT,
    checkpoint_path,
    run_path,
)

from .run_claim import claim_run


class _NewArrays:
    """A group whose ``create_array`` uses :data:`CHUNK_KEY_ENCODING` unless told otherwise.

    Wraps the run groups handed to shared helpers (coordinates, sampled indices) so that every
    array a new run creates gets the same chunk keys as the SGN arrays.
    """

    def __init__(self, group: zarr.Group) -> None:
        self._group = group

    def create_array(self, *args: Any, **kwargs: Any) -> zarr.Array:
        kwargs.setdefault("chunk_key_encoding", dict(CHUNK_KEY_ENCODING))
        return self._group.create_array(*args, **kwargs)

    def __getitem__(self, key: str) -> Any:
        item = self._group[key]
        return _NewArrays(item) if isinstance(item, zarr.Group) else item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)


def create_run_group(
    root: zarr.Group, meta: RunMeta, *, param_index: Mapping[str, Any] | None = None
) -> None:
    """Create the group of run ``meta.run_id``, its arrays (no snapshot yet) and, last, its attributes.

    The group is first claimed atomically (:func:`~sgnlake.collect.run_claim.claim_run`);
    the run attributes replace the claim once everything else exists, so a crash in
    between leaves a group that is not (yet) a run. ``param_index`` (tensor name ->
    kept flat indices) is recorded for a run that stores a parameter sample
    (:mod:`sgnlake.collect.sampling`).

    Raises
    ------
    RunExistsError
        A run with this id exists, or another collector is creating it.
    """
    rid = meta.run_id
    path = run_path(rid)
    claim_run(root, rid)
    if checkpoint_path(rid) in root:
        del root[checkpoint_path(rid)]
    g = root[path]
    m, spec = meta.n_minibatches, meta.config.storage
    kw = array_kwargs(spec)
    keys = dict(CHUNK_KEY_ENCODING)
    ck = default_compressors()  # with the crc32c checksum
    g.create_array(
        ITERATION,
        shape=(0,),
        chunks=(1,),
        dtype="int64",
        fill_value=-1,
        dimension_names=[ITERATION],
        attributes=variable_attrs(ITERATION),
        chunk_key_encoding=keys,
        compressors=ck,
    )
    for name in (LOSS, ACCURACY):
        g.create_array(
            name,
            shape=(0,),
            chunks=(1,),
            dtype="float64",
            fill_value=np.nan,
            dimension_names=[ITERATION],
            attributes=variable_attrs(name),
            chunk_key_encoding=keys,
            compressors=ck,
        )
    write_coordinates(_NewArrays(g), MINIBATCH, m)
    for t in meta.tensors:
        tg = g.create_group(t.name, attributes={TENSOR_ATTR: t.to_dict(), **tensor_group_attrs(t)})
        pc = max(1, min(spec.param_chunk, t.n_stored))
        if param_index is None:  # a sampled tensor's param coordinate holds its sample (write_indices)
            write_coordinates(_NewArrays(tg), PARAM, t.numel, pc)
        tg.create_array(
            SGN,
            shape=(0, m, t.n_stored),
            chunks=(1, m, pc),
            dimension_names=[ITERATION, MINIBATCH, PARAM],
            attributes=variable_attrs(SGN, t),
            **kw,
        )
        for name in (GRAD, WEIGHT):
            tg.create_array(
                name,
                shape=(0, t.n_stored),
                chunks=(1, pc),
                dimension_names=[ITERATION, PARAM],
                attributes=variable_attrs(name, t),
                **kw,
            )
    if param_index is not None:
        from sgnlake.collect.sampling import write_indices

        write_indices(_NewArrays(g), param_index)
    root.require_group(checkpoint_path(rid))
    # the run attributes replace the claim (internal; its work is done once the run exists)
    g.attrs.put({RUN_ATTR: meta.to_dict(), **run_config_attrs(meta)})
