"""The ``zarr.json`` documents every commit rewrites, encoded once and then only spliced.

A commit (see :mod:`sgnlake.collect.writer`) grows every array of the run by one
snapshot and then records the commit marker (``committed``, ``updated``) in the
run group's attributes; a :class:`~sgnlake.collect.probe.Probe` without a plan
also announces each snapshot's step (appended to ``planned_iterations``,
``total_steps``) before committing it. The documents are zarr's own bytes
(``to_buffer_dict`` of zarr's metadata, ``json_indent`` included): each is
encoded once with placeholder values, and a write puts the new values' JSON
text in their place (:class:`Spliced`). The result is byte for byte what zarr
would write, without re-encoding the run document each time (zarr's indented
JSON goes through Python's pure-Python encoder, and the document grows with the
run's ``planned_iterations``) nor re-validating each array's metadata.

On a local disk the documents are replaced atomically with plain file calls
(:func:`~sgnlake.collect.chunk_files.write_atomic`, one after the other: 27 tiny
writes cost less CPU in one thread than spread over a pool); on other stores
they go through zarr's store, concurrently. This module does not import torch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from sgnlake.schema.meta import RunMeta
from sgnlake.schema.names import RUN_ATTR

from . import chunk_files

#: Placeholder of an integer value (an array's length, ``committed``): a number no document holds by chance.
_INT_HOLE = 7_364_019_283_746_551_937
#: Placeholder of a string value (``updated``).
_STR_HOLE = "sgnlake-placeholder-5d0c7e19a4b3"


class Spliced:
    """A JSON document as bytes with holes: the text around placeholder values, filled per write.

    Made by :meth:`make`: ``pieces`` are the text between the holes, ``order`` the holes' names.
    """

    def __init__(self, pieces: list[bytes], order: list[str]) -> None:
        self._pieces = pieces
        self._order = order

    @classmethod
    def make(cls, text: bytes, holes: Mapping[str, bytes]) -> Spliced | None:
        """Cut ``text`` at its ``holes``; None when a placeholder does not occur exactly once."""
        found = []
        for name, ph in holes.items():
            if text.count(ph) != 1:
                return None
            found.append((text.index(ph), name, len(ph)))
        pieces, order, at = [], [], 0
        for pos, name, n in sorted(found):
            pieces.append(text[at:pos])
            order.append(name)
            at = pos + n
        pieces.append(text[at:])
        return cls(pieces, order)

    def render(self, values: Mapping[str, bytes]) -> bytes:
        """The document with each hole filled by the JSON text ``values[name]``."""
        out = [self._pieces[0]]
        for name, piece in zip(self._order, self._pieces[1:], strict=True):
            out.append(values[name])
            out.append(piece)
        return b"".join(out)


def _json(value: Any) -> bytes:
    """``value``'s JSON text as zarr's encoder writes it inside a document (ints, ASCII-escaped strings)."""
    return json.dumps(value).encode()


def _encoded(metadata: Any) -> bytes:
    """zarr's ``zarr.json`` document of ``metadata`` (array or group), as zarr writes it."""
    return metadata.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()


def _store_docs(local: str | None, docs: Iterable[tuple[Any, bytes]]) -> None:
    """Replace each ``(store path, document)``'s ``zarr.json`` (atomically on a local disk)."""
    docs = list(docs)
    if local is not None:
        for sp, data in docs:
            chunk_files.write_atomic(os.path.join(local, sp.path, "zarr.json"), data)
        return
    proto = default_buffer_prototype()
    sync(chunk_files.gather(*((sp / "zarr.json").set(proto.buffer.from_bytes(d)) for sp, d in docs)))


class GrownArrays:
    """Grows the run's arrays by snapshots: their ``zarr.json`` and their metadata in memory.

    Each array's document is encoded once per metadata object (a placeholder length);
    an array whose metadata changed behind this object's back (``resize``) is encoded anew.
    """

    def __init__(self, arrays: Iterable[zarr.Array]) -> None:
        self.arrays = list(arrays)
        #: per array path: (the metadata object last grown here, its document with the length as a hole, or None)
        self._docs: dict[str, tuple[Any, Spliced | None]] = {}

    def _doc(self, arr: zarr.Array) -> tuple[Any, Spliced | None]:
        md = arr._async_array.metadata
        cached = self._docs.get(arr.path)
        if cached is not None and cached[0] is md:
            return cached
        return md, Spliced.make(
            _encoded(md.update_shape((_INT_HOLE, *md.shape[1:]))), {"n": _json(_INT_HOLE)}
        )

    def grow(self, n: int, local: str | None) -> None:
        """Store every array's ``zarr.json`` with ``n`` snapshots, then its metadata in memory.

        ``local``: the lake's folder on a local disk (plain atomic file writes), or None
        (zarr's store). The bytes are zarr's own (same as ``AsyncArray.resize`` writes).
        """
        todo = [(arr, *self._doc(arr)) for arr in self.arrays]
        length = str(int(n)).encode()
        # (a placeholder clash, never seen, encodes the whole document)
        data = [
            _encoded(md.update_shape((n, *md.shape[1:]))) if d is None else d.render({"n": length})
            for _, md, d in todo
        ]
        _store_docs(
            local, ((arr._async_array.store_path, d) for (arr, _, _), d in zip(todo, data, strict=True))
        )
        for arr, md, doc in todo:
            # the same metadata but its length (ArrayV3Metadata.update_shape re-validates everything)
            grown = copy.copy(md)
            object.__setattr__(grown, "shape", (n, *md.shape[1:]))
            object.__setattr__(arr._async_array, "metadata", grown)
            self._docs[arr.path] = (grown, doc)


#: The scalar fields of :class:`RunMeta` spliced into the run document, with their placeholders: the commit
#: marker and its time, and the last planned step (a Probe without a plan announces each snapshot's step,
#: appending it to ``planned_iterations``, before committing it).
_SPLICED = {"committed": _INT_HOLE, "updated": _STR_HOLE, "total_steps": _INT_HOLE + 1}
#: Placeholder appended to ``planned_iterations`` in the run document: the hole where appended steps go.
_TAIL_HOLE = _INT_HOLE + 2
#: The run document is encoded anew once this many planned steps were appended to the one encoded.
_MAX_TAIL = 256


class RunAttributes:
    """The run group's attributes (its :class:`RunMeta`): the one place that writes them during a run.

    The run document is encoded in full for the first write and whenever more changes than
    ``committed``, ``updated``, ``total_steps`` and steps appended to ``planned_iterations``;
    otherwise those values are spliced into the document last encoded.
    """

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        #: the RunMeta last encoded in full, its ``to_dict()``, the document with the spliced values as holes
        #: (None: a placeholder clash), and the text before a step appended to ``planned_iterations``
        #: (None: its ``planned_iterations`` is empty, appended steps are not spliced)
        self._base: tuple[RunMeta, dict[str, Any], Spliced | None, bytes | None] | None = None
        #: the group's other attributes when the document was encoded (changed since: encode anew)
        self._others: dict[str, Any] = {}

    def _appended(self, meta: RunMeta) -> tuple[int, ...] | None:
        """The steps ``meta`` appends to the encoded meta's ``planned_iterations`` when nothing but the
        spliced values differs (``()`` when none), else None."""
        if self._base is None or self._base[2] is None or self._other_attributes() != self._others:
            return None
        base, _, _, sep = self._base
        p, q = base.planned_iterations, meta.planned_iterations
        if len(q) != len(p) and (sep is None or not len(p) < len(q) <= len(p) + _MAX_TAIL):
            return None
        if q[: len(p)] != p:
            return None
        same = dataclasses.replace(meta, planned_iterations=p, **{f: getattr(base, f) for f in _SPLICED})
        return tuple(q[len(p) :]) if same == base else None

    def _other_attributes(self) -> dict[str, Any]:
        return {k: v for k, v in self.group.metadata.attributes.items() if k != RUN_ATTR}

    def _encode(self, meta: RunMeta) -> None:
        """Encode the run document of ``meta`` with its spliced values as holes."""
        g = self.group
        self._others = copy.deepcopy(self._other_attributes())
        run = meta.to_dict()
        holes = {**run, **_SPLICED}
        planned = run["planned_iterations"]
        if planned:
            holes["planned_iterations"] = [*planned, _TAIL_HOLE]
        md = dataclasses.replace(g.metadata, attributes={**g.metadata.attributes, RUN_ATTR: holes})
        text = _encoded(md)
        spots = {f: _json(h) for f, h in _SPLICED.items()}
        sep = None
        if planned:  # the hole spans the separator before the placeholder: no steps appended, no separator
            at = text.find(_json(_TAIL_HOLE))
            start = text.rfind(b",", 0, max(at, 0))
            sep = text[start:at]
            if at < 0 or start < 0 or sep[1:].strip():  # not a list of numbers as expected: no template
                self._base = (meta, run, None, None)
                return
            spots["tail"] = text[start : at + len(_json(_TAIL_HOLE))]
        self._base = (meta, run, Spliced.make(text, spots), sep)

    def write(self, meta: RunMeta) -> None:
        """Store ``meta`` as the run group's ``RUN_ATTR`` attribute (its ``zarr.json``, atomically).

        The bytes are zarr's own (``Group.update_attributes`` would write the same), and the
        group's metadata in memory is updated once they are stored.
        """
        g = self.group
        appended = self._appended(meta)
        if appended is None:
            self._encode(meta)
            appended = ()
        assert self._base is not None
        _, base_dict, doc, sep = self._base
        run = dict(base_dict)
        for f in _SPLICED:
            run[f] = getattr(meta, f)
        if appended:
            run["planned_iterations"] = [*base_dict["planned_iterations"], *appended]
        if doc is None:  # a placeholder clash (never seen): encode the whole document
            data = _encoded(
                dataclasses.replace(g.metadata, attributes={**g.metadata.attributes, RUN_ATTR: run})
            )
        else:
            values = {f: _json(run[f]) for f in _SPLICED}
            values["tail"] = b"".join(sep + _json(x) for x in appended) if sep is not None else b""
            data = doc.render(values)
        _store_docs(chunk_files.local_root(g.store), [(g.store_path, data)])
        g.metadata.attributes[RUN_ATTR] = run
