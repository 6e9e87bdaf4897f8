"""The ``zarr.json`` documents a commit rewrites (``sgnlake.collect.run_documents``): zarr's own bytes.

Oracles: plain zarr (each stored document, parsed and encoded again by zarr, gives the same
bytes; the values read by plain zarr), and :meth:`RunMeta.to_dict` for the run attributes.
No torch: the writer commits hand-made snapshots.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import zarr
from lake_fixtures import RunSpec, create_lake, run_meta
from zarr.core.buffer import default_buffer_prototype

from sgnlake.collect import chunk_files, run_documents
from sgnlake.collect.run_documents import Spliced
from sgnlake.collect.writer import RunWriter
from sgnlake.schema.lake import read_run_meta
from sgnlake.schema.names import RUN_ATTR

SPEC = RunSpec("r", iterations=(0, 10, 20, 30), committed=0, status="running", param_chunk=5)


def _snapshot(meta, k: int) -> SimpleNamespace:
    rng = np.random.default_rng(k)
    m = meta.n_minibatches
    sgn = {t.name: rng.standard_normal((m, t.n_stored)).astype("float32") for t in meta.tensors}
    vec = {t.name: rng.standard_normal(t.n_stored).astype("float32") for t in meta.tensors}
    return SimpleNamespace(
        index=k,
        iteration=10 * k,
        loss=0.5 + k,
        accuracy=0.25,
        sgn=sgn,
        grad=vec,
        weight=vec,
        checkpoint=bytes(range(256)) * (k + 3),
    )


def _zarr_docs(lake: Path, run: str) -> dict[str, tuple[bytes, bytes]]:
    """Every node's stored ``zarr.json`` under ``runs/<run>`` and zarr's own encoding of what it holds."""
    out = {}
    for path in sorted((lake / "runs" / run).rglob("zarr.json")):
        rel = str(path.parent.relative_to(lake))
        node = zarr.open(store=str(lake), path=rel, mode="r")
        out[rel] = (
            path.read_bytes(),
            node.metadata.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes(),
        )
    return out


@pytest.mark.parametrize("through_zarr", [False, True], ids=["local-files", "zarr-store"])
def test_commit_documents_are_zarrs_own_bytes(tmp_path: Path, monkeypatch, through_zarr: bool) -> None:
    if through_zarr:  # the path of object stores: every key through zarr's store
        monkeypatch.setattr(chunk_files, "local_root", lambda store: None)
    lake = tmp_path / "lake"
    meta = run_meta(SPEC)
    w = RunWriter.create(create_lake(str(lake)), meta, background=False)
    for k in range(4):
        w.commit(_snapshot(meta, k))
        if k == 1:  # more than the commit marker changes between two commits
            w.set_status("running", "", resumed=[{"at_snapshot": 2}])
        if k == 2:
            w.update_meta(total_steps=31)
            # another attribute of the run group, written through zarr: the next commit keeps it
            w.group.update_attributes({"note": "added"})
        docs = _zarr_docs(lake, "r")
        # the run, its 3 arrays and minibatch coordinate; per tensor its group, 3 arrays and param coordinate
        assert len(docs) == 1 + 3 + 1 + 5 * len(meta.tensors)
        for rel, (stored, zarrs) in docs.items():
            assert stored == zarrs, rel
        stored = json.loads((lake / "runs" / "r" / "zarr.json").read_bytes())["attributes"]
        assert stored == w.group.attrs.asdict() and stored[RUN_ATTR] == w.meta.to_dict()
        assert stored[RUN_ATTR]["committed"] == k + 1
    w.set_status("complete")
    plain = zarr.open_group(str(lake), mode="r", path="runs/r")
    got = read_run_meta(plain)
    assert (got.status, got.committed, got.total_steps, got.extra["resumed"]) == (
        "complete",
        4,
        31,
        [{"at_snapshot": 2}],
    )
    assert plain["loss"][:].tolist() == [0.5, 1.5, 2.5, 3.5] and plain.attrs["note"] == "added"
    for t in meta.tensors:
        np.testing.assert_array_equal(plain[f"{t.name}/sgn"][3], _snapshot(meta, 3).sgn[t.name])
        assert plain[f"{t.name}/grad"].shape == (4, t.n_stored)
    # the writer's arrays in memory agree with the stored documents (a resumed writer reads the same)
    assert {a.path: a.shape for a in w._arrays.values()} == {
        a.path: zarr.open_array(str(lake), path=a.path, mode="r").shape for a in w._arrays.values()
    }
    w2 = RunWriter.reopen(zarr.open_group(str(lake), mode="r+"), "r", background=False)
    assert w2.meta == w.meta


@pytest.mark.parametrize("max_tail", [256, 2])
def test_steps_announced_one_by_one_are_spliced_into_zarrs_bytes(
    tmp_path: Path, monkeypatch, max_tail
) -> None:
    """A Probe without a plan appends each snapshot's step to ``planned_iterations`` before committing it."""
    monkeypatch.setattr(run_documents, "_MAX_TAIL", max_tail)  # 2: the document is encoded anew often
    encodes = []
    real = run_documents.RunAttributes._encode
    monkeypatch.setattr(
        run_documents.RunAttributes, "_encode", lambda self, m: encodes.append(1) or real(self, m)
    )
    lake = tmp_path / "lake"
    meta = run_meta(SPEC).replace(planned_iterations=(), total_steps=0)
    w = RunWriter.create(create_lake(str(lake)), meta, background=False)
    steps: list[int] = []
    for k in range(7):
        step = 10 * k + 3
        w.update_meta(planned_iterations=(*steps, step), total_steps=step)
        if k == 4:  # a failed snapshot takes its announcement back, then it is announced again
            w.update_meta(planned_iterations=tuple(steps), total_steps=steps[-1])
            w.update_meta(planned_iterations=(*steps, step), total_steps=step)
        w.commit(_snapshot(meta, k))
        steps.append(step)
        for rel, (stored, zarrs) in _zarr_docs(lake, "r").items():
            assert stored == zarrs, (k, rel)
        stored_meta = json.loads((lake / "runs" / "r" / "zarr.json").read_bytes())["attributes"][RUN_ATTR]
        assert stored_meta == w.meta.to_dict() == w.group.attrs[RUN_ATTR]
        assert stored_meta["planned_iterations"] == steps and stored_meta["total_steps"] == step
    got = read_run_meta(zarr.open_group(str(lake), mode="r", path="runs/r"))
    assert got.planned_iterations == tuple(steps) and got.committed == 7
    # encoded in full for the first step, then (max_tail 2) whenever a third step is appended: steps 4 and 7
    assert len(encodes) == (1 if max_tail == 256 else 3)


def test_placeholder_values_in_the_run_meta_fall_back_to_a_full_encoding(tmp_path: Path) -> None:
    """A run whose attributes happen to hold the placeholders is stored right all the same."""
    lake = tmp_path / "lake"
    clash = {"n": run_documents._INT_HOLE, "s": run_documents._STR_HOLE, "t": run_documents._TAIL_HOLE}
    meta = run_meta(SPEC).replace(extra=clash)
    w = RunWriter.create(create_lake(str(lake)), meta, background=False)
    for k in range(2):
        w.commit(_snapshot(meta, k))
    for rel, (stored, zarrs) in _zarr_docs(lake, "r").items():
        assert stored == zarrs, rel
    got = read_run_meta(zarr.open_group(str(lake), mode="r", path="runs/r"))
    assert got.committed == 2 and dict(got.extra) == clash


def test_spliced_fills_each_hole_once_and_refuses_ambiguous_placeholders() -> None:
    doc = {"a": [123456789, 2], "b": {"c": "PH", "d": "x"}}
    text = json.dumps(doc, indent=2).encode()
    sp = Spliced.make(text, {"n": b"123456789", "s": b'"PH"'})
    assert sp is not None
    for n, s in [(0, ""), (7, "2026-01-01T00:00:00+00:00"), (10**12, 'quo"te')]:
        want = json.dumps({"a": [n, 2], "b": {"c": s, "d": "x"}}, indent=2).encode()
        assert sp.render({"n": str(n).encode(), "s": json.dumps(s).encode()}) == want
    assert Spliced.make(text, {"n": b"2"}) is None  # twice ("2" inside 123456789 too)
    assert Spliced.make(text, {"n": b"999"}) is None  # absent
