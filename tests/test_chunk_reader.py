"""Plain-file chunk reads (``ChunkReader.read_direct``) and result-chunk writes (``fused.write_chunk``) against Zarr.

Oracle: ``zarr.Array.__getitem__`` on the same array. Every codec chain sgnlake writes is
covered: the ones the direct path decodes give Zarr's values bit for bit, the others
(blosc, BitRound, float16) fall back (None), and a damaged or missing chunk makes the direct
path step aside so that Zarr's read names it as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.codecs as zc

from sgnlake.analyze.chunk_reader import ChunkReader
from sgnlake.schema import codecs
from sgnlake.schema.meta import StorageSpec


def _array(tmp_path, spec: StorageSpec | None, dtype=np.float32, sep: str = ".", **kw) -> zarr.Array:
    rng = np.random.default_rng(0)
    x = rng.standard_cauchy((3, 20, 50)).astype(dtype)
    x[1, :, 7] = np.nan
    x[2, 4, :] = 0.0
    kw = {**(codecs.array_kwargs(spec) if spec is not None else {}), **kw, "dtype": dtype}
    g = zarr.open_group(str(tmp_path / "lake"), mode="w")
    kw.setdefault("chunk_key_encoding", {"name": "default", "separator": sep})
    arr = g.create_array("sgn", shape=x.shape, chunks=(1, 20, 16), **kw)
    arr[:] = x
    return arr


def _reader(arr: zarr.Array, skip: bool = False, sink: list[str] | None = None) -> ChunkReader:
    return ChunkReader(arr, "r", "t", "sgn", np.arange(arr.shape[0]), skip, [] if sink is None else sink)


SELECTIONS = [
    (slice(0, 1), slice(0, 20), slice(0, 50)),  # a partial edge chunk along param
    (slice(1, 3), slice(3, 17), slice(5, 33)),  # unaligned in every axis
    (slice(2, 3), slice(0, 20), slice(16, 32)),  # exactly one chunk
    (slice(0, 1), slice(0, 20), slice(10, 10)),  # empty
]


@pytest.mark.parametrize(
    "spec",
    [StorageSpec(), StorageSpec(codec="zstd", level=3), StorageSpec(codec="none")],
    ids=["default", "zstd3", "none"],
)
@pytest.mark.parametrize("sep", [".", "/"])
def test_direct_read_equals_zarr(tmp_path, spec, sep):
    arr = _array(tmp_path, spec, sep=sep)
    reader = _reader(arr)
    for sel in SELECTIONS:
        got = reader.read_direct(sel)
        assert got is not None
        want = np.asarray(arr[sel])
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3 specification")
def test_direct_read_other_dtypes_and_chains(tmp_path):
    arr = _array(tmp_path / "f8", StorageSpec(), dtype=np.float64)
    np.testing.assert_array_equal(_reader(arr).read_direct(SELECTIONS[1]), arr[SELECTIONS[1]])
    plain = _array(tmp_path / "plain", None, dtype=np.float32, compressors=None, fill_value=np.nan)
    np.testing.assert_array_equal(_reader(plain).read_direct(SELECTIONS[0]), plain[SELECTIONS[0]])
    for spec in (StorageSpec(codec="blosc-zstd"), StorageSpec(keepbits=10)):
        assert (
            _reader(_array(tmp_path / spec.codec / str(spec.keepbits), spec)).read_direct(SELECTIONS[0])
            is None
        )
    assert codecs.chunk_decoder([zc.BytesCodec(endian="big"), zc.ZstdCodec()], np.float32, (4,)) is None
    # decoding into a caller's buffer: only a frame that fills it exactly
    decode = codecs.chunk_decoder([zc.BytesCodec(), zc.ZstdCodec(), zc.Crc32cCodec()], np.float32, (2, 3))
    assert decode is not None
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = _encoded(x, [zc.ZstdCodec(), zc.Crc32cCodec()])
    out = np.full((2, 3), -1, dtype=np.float32)
    assert decode(data, out=out) is out
    np.testing.assert_array_equal(out, x)
    short = _encoded(x[:1], [zc.ZstdCodec(), zc.Crc32cCodec()])  # a frame of 12 bytes, not 24
    with pytest.raises(ValueError):  # not written into ``out`` (its tail would be stale): the view fails
        decode(short, out=out)
    assert codecs.chunk_decoder([zc.BytesCodec(), zc.Crc32cCodec()], np.int8, (4,))(
        bytes(4) + np.uint32(0x48674BC7).tobytes()
    ).tolist() == [0, 0, 0, 0]


def _encoded(x: np.ndarray, compressors: list) -> bytes:
    """``x`` as Zarr stores it with ``compressors`` (one whole chunk)."""
    import zarr.storage

    store = zarr.storage.MemoryStore()
    a = zarr.create_array(store, shape=x.shape, chunks=x.shape, dtype=x.dtype, compressors=compressors)
    a[...] = x
    key = a.metadata.encode_chunk_key((0,) * x.ndim)
    return bytes(store._store_dict[key].to_bytes())


def _flip_bit(path):
    """Damage a stored chunk file: one bit flipped in its middle (its crc32c no longer matches)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_damaged_or_missing_chunk_steps_aside(tmp_path):
    from lake_fixtures import chunk_path

    arr = _array(tmp_path, StorageSpec())
    folder = tmp_path / "lake" / "sgn"
    _flip_bit(chunk_path(folder, 1, 0, 1))
    reader = _reader(arr)
    assert reader.read_direct((slice(1, 2), slice(0, 20), slice(0, 50))) is None  # crc32c mismatch
    with pytest.raises(ValueError, match="checksum"):  # what Zarr says about the same chunk
        arr[1:2, :, 16:32]
    assert reader.read_direct((slice(0, 1), slice(0, 20), slice(0, 50))) is not None  # others unaffected
    chunk_path(folder, 2, 0, 0).unlink()
    assert reader.read_direct((slice(2, 3), slice(0, 20), slice(0, 16))) is None  # missing: Zarr's fill


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.int8])
def test_result_chunks_written_directly_are_zarrs_bytes(tmp_path, dtype):
    """``fused.write_chunk`` stores exactly the chunk files Zarr stores (edge chunks padded alike)."""
    import os

    from sgnlake.analyze.fused import write_chunk
    from sgnlake.schema.codecs import default_compressors

    rng = np.random.default_rng(1)
    g = zarr.open_group(str(tmp_path / "g"), mode="w")
    fill = np.nan if np.dtype(dtype).kind == "f" else -1
    kw = {"shape": (2, 100), "chunks": (1, 32), "dtype": dtype, "fill_value": fill}
    a = g.create_array("zarr", compressors=default_compressors(), **kw)
    b = g.create_array("direct", compressors=default_compressors(), **kw)
    for it in range(2):
        for lo in range(0, 100, 32):
            v = (rng.standard_cauchy(min(lo + 32, 100) - lo) * 10).astype(dtype)
            a[it : it + 1, lo : lo + len(v)] = v[None]
            write_chunk(b, it, lo, lo + len(v), v)
    np.testing.assert_array_equal(b[:], a[:])
    files = {}
    for name in ("zarr", "direct"):
        root = tmp_path / "g" / name
        files[name] = {
            os.path.relpath(os.path.join(d, f), root): (Path(d) / f).read_bytes()
            for d, _, fs in os.walk(root)
            for f in fs
            if f != "zarr.json"
        }
    assert len(files["zarr"]) == 8 and files["direct"] == files["zarr"]
    ro = zarr.open_array(str(tmp_path / "g" / "direct"), mode="r")  # read-only store: through Zarr, refused
    with pytest.raises(ValueError):
        write_chunk(ro, 0, 0, 32, np.zeros(32, dtype))


@pytest.mark.parametrize("spec", [StorageSpec(), StorageSpec(codec="none")], ids=["default", "none"])
def test_direct_chunks_are_zarrs_chunks(tmp_path, spec):
    """``direct_chunks`` yields each stored chunk's part of ``[it, :, lo:hi]`` in order, as Zarr reads it."""
    arr = _array(tmp_path, spec)  # chunks (1, 20, 16) over 50 params: the last chunk is an edge chunk
    reader = _reader(arr)
    for it, lo, hi in ((0, 0, 50), (1, 16, 40), (2, 32, 33), (2, 48, 50)):
        parts = [p.copy() for p in reader.direct_chunks(it, lo, hi)]  # a view lasts until the next chunk
        assert len(parts) == -(-hi // 16) - lo // 16
        assert all(p.shape[0] == 20 and p.dtype == arr.dtype for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts, axis=-1), arr[it, :, lo:hi])
    assert reader.direct_chunks(0, 5, 20) is None  # not at a chunk boundary
    blosc = _array(tmp_path / "blosc", StorageSpec(codec="blosc-zstd"))
    assert _reader(blosc).direct_chunks(0, 0, 16) is None  # a chain the direct path does not decode


def test_direct_chunks_name_no_damaged_chunk(tmp_path):
    """A damaged or missing chunk raises DirectReadError when reached (the caller then asks Zarr)."""
    from lake_fixtures import chunk_path

    from sgnlake.analyze.chunk_reader import DirectReadError

    arr = _array(tmp_path, StorageSpec())
    folder = tmp_path / "lake" / "sgn"
    _flip_bit(chunk_path(folder, 1, 0, 1))
    chunks = _reader(arr).direct_chunks(1, 0, 50)
    np.testing.assert_array_equal(next(chunks), arr[1, :, :16])  # the chunk before is fine
    with pytest.raises(DirectReadError):
        next(chunks)
    chunk_path(folder, 2, 0, 0).unlink()
    with pytest.raises(DirectReadError):
        list(_reader(arr).direct_chunks(2, 0, 16))
