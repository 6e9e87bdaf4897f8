"""The resume checkpoints of a run: ``checkpoints/<run_id>/s<snapshot>/state``, one uint8 array each.

The writer stores snapshot ``k``'s checkpoint before it commits ``k`` and deletes the older ones
after (see :mod:`sgnlake.collect.writer`); a resumed run reads the last committed one, its
sha256 checked. This module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from sgnlake.schema.errors import LakeError
from sgnlake.schema.names import checkpoint_path

from . import chunk_files

#: Name of the uint8 array holding a checkpoint inside ``checkpoints/<run_id>/<snapshot group>/``.
CHECKPOINT_ARRAY = "state"
#: Attribute of a checkpoint array: snapshot, iteration, sha256.
CHECKPOINT_ATTR = "sgnlake_checkpoint"


def _make_dirs(dirs: list[str]) -> None:
    """Create the folders ``dirs`` (each the parent of the next); existing ones are kept."""
    for d in dirs:
        try:
            os.mkdir(d)
        except FileExistsError:
            pass
        except FileNotFoundError:  # the run's checkpoint folder itself is missing
            os.makedirs(dirs[-1], exist_ok=True)
            return


def checkpoint_name(index: int) -> str:
    """Group name of the checkpoint taken with snapshot ``index``."""
    return f"s{index:06d}"


class RunCheckpoints:
    """The checkpoints of run ``run_id`` in the lake ``root``.

    The first checkpoint is written through zarr; its documents are kept, and later
    ones are written directly from them (:meth:`_write_direct`).
    """

    def __init__(self, root: zarr.Group, run_id: str) -> None:
        self.root = root
        self.run_id = run_id
        #: (group document, array document, chunk key) of the first checkpoint written here
        self._docs: tuple[bytes, dict[str, Any], str] | None = None

    def keep_only(self, committed: int) -> None:
        """Delete every checkpoint but the one of the last of ``committed`` snapshots (all when 0)."""
        keep = checkpoint_name(committed - 1) if committed else None
        cg = self.root.require_group(checkpoint_path(self.run_id))
        for name, _ in list(cg.groups()):
            if name != keep:
                del cg[name]

    def read(self, committed: int) -> bytes | None:
        """Bytes of the checkpoint of the last of ``committed`` snapshots (None when it is 0).

        Raises
        ------
        LakeError
            The checkpoint is missing or its digest does not match.
        """
        k = committed
        if k == 0:
            return None
        path = f"{checkpoint_path(self.run_id)}/{checkpoint_name(k - 1)}/{CHECKPOINT_ARRAY}"
        try:
            arr = self.root[path]
        except KeyError:
            raise LakeError(
                f"run {self.run_id!r} has no checkpoint for snapshot {k - 1}: it cannot be resumed, "
                "start a new run id"
            ) from None
        data = np.asarray(arr[:], dtype=np.uint8).tobytes()
        info = arr.attrs.get(CHECKPOINT_ATTR, {})
        if info.get("sha256") != "sha256:" + hashlib.sha256(data).hexdigest():
            raise LakeError(f"checkpoint {path} is corrupt (sha256 mismatch): start a new run id")
        return data

    def delete_old(self, local: str | None, k: int) -> None:
        """Delete every checkpoint of the run but snapshot ``k``'s (``local``: the lake's folder on a local disk)."""
        keep = checkpoint_name(k)
        if local is None:
            cg = self.root[checkpoint_path(self.run_id)]
            for name, _ in list(cg.groups()):
                if name != keep:
                    del cg[name]
            return
        try:
            with os.scandir(os.path.join(local, checkpoint_path(self.run_id))) as entries:
                old = [e.path for e in entries if e.name != keep and e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:  # no checkpoint written yet
            return
        for path in old:
            self._remove(path)

    def _files(self, folder: str) -> list[str]:
        """The files of the checkpoint in ``folder`` as written here: group and array documents, the chunk."""
        assert self._docs is not None
        array = os.path.join(folder, CHECKPOINT_ARRAY)
        return [
            os.path.join(folder, "zarr.json"),
            os.path.join(array, "zarr.json"),
            os.path.join(array, *self._docs[2].split("/")),
        ]

    def _dirs(self, folder: str) -> list[str]:
        """The folders of the checkpoint in ``folder``, parents first (nested chunk keys add some)."""
        assert self._docs is not None
        dirs = [folder, os.path.join(folder, CHECKPOINT_ARRAY)]
        for part in self._docs[2].split("/")[:-1]:
            dirs.append(os.path.join(dirs[-1], part))
        return dirs

    def _remove(self, folder: str) -> None:
        """Delete the checkpoint in ``folder``: its known files and folders (as ``shutil.rmtree`` would, in
        the same order), and with ``rmtree`` whatever else is there."""
        if self._docs is not None:
            try:
                for path in self._files(folder):
                    os.unlink(path)
                for path in reversed(self._dirs(folder)):
                    os.rmdir(path)
                return
            except OSError:  # not the layout written here (or only part of it): remove what is left
                pass
        shutil.rmtree(folder)

    def write(self, k: int, iteration: int, data: bytes) -> None:
        """Write the checkpoint ``data`` of snapshot ``k`` (taken at ``iteration``) with its sha256."""
        info = {
            "snapshot": int(k),
            "iteration": int(iteration),
            "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
            "format": "torch.save",
        }
        if self._docs is not None and data:
            self._write_direct(k, data, info)
            return
        cg = self.root.require_group(checkpoint_path(self.run_id))
        name = checkpoint_name(k)
        if name in cg:
            del cg[name]
        sg = cg.create_group(name)
        buf = np.frombuffer(data, dtype=np.uint8)
        arr = sg.create_array(
            CHECKPOINT_ARRAY,
            shape=buf.shape,
            chunks=(max(1, buf.size),),
            dtype="uint8",
            dimension_names=["byte"],
            fill_value=0,
            compressors=None,
            attributes={CHECKPOINT_ATTR: info},
        )
        arr[:] = buf
        if data:
            proto = default_buffer_prototype()
            group_doc = sg.metadata.to_buffer_dict(proto)["zarr.json"].to_bytes()
            array_doc = json.loads(arr.metadata.to_buffer_dict(proto)["zarr.json"].to_bytes())
            self._docs = (group_doc, array_doc, arr.metadata.encode_chunk_key((0,)))

    def _write_direct(self, k: int, data: bytes, info: dict[str, Any]) -> None:
        """Write a checkpoint's three keys (group, array metadata, one chunk) in one concurrent batch.

        The same documents as the first checkpoint written here (which went through
        :meth:`zarr.Group.create_array`), with the length, chunk length and attributes
        replaced: one round trip instead of about ten existence checks and sequential writes.
        The keys of snapshot ``k`` are new (:meth:`keep_only`, which ``RunWriter.truncate`` calls,
        leaves only the committed checkpoint), or left by a failed attempt at the same commit,
        which this overwrites.
        """
        assert self._docs is not None
        group_doc, template, chunk_key = self._docs
        doc = json.loads(json.dumps(template))
        doc["shape"] = [len(data)]
        doc["chunk_grid"]["configuration"]["chunk_shape"] = [len(data)]
        doc["attributes"] = {CHECKPOINT_ATTR: info}
        array_doc = json.dumps(doc).encode()
        local = chunk_files.local_root(self.root.store)
        if local is not None:  # plain file calls: the documents atomically, the bytes (digest checked) not
            folder = os.path.join(local, checkpoint_path(self.run_id), checkpoint_name(k))
            files = self._files(folder)
            _make_dirs(self._dirs(folder))
            chunk_files.write_atomic(files[0], group_doc)
            chunk_files.write_atomic(files[1], array_doc)
            chunk_files.write_file(files[2], [data])
            return
        base = self.root.store_path / checkpoint_path(self.run_id) / checkpoint_name(k)
        proto = default_buffer_prototype()
        sync(
            chunk_files.gather(
                (base / "zarr.json").set(proto.buffer.from_bytes(group_doc)),
                (base / CHECKPOINT_ARRAY / "zarr.json").set(proto.buffer.from_bytes(array_doc)),
                (base / CHECKPOINT_ARRAY / chunk_key).set(proto.buffer.from_bytes(data)),
            )
        )
