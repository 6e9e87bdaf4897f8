"""``--store alpha``: the per-parameter Mohammadi alpha computed on the device at snapshot time.

For runs whose SGN is too big to store even as a sample, each snapshot's full
``(M, P)`` SGN is reduced on the compute device to the Mohammadi estimate of
every parameter and its non-finite sample count (:func:`mohammadi_torch`, the
formula of :func:`sgnlake.analyze.kernels.mohammadi_counted`, in float64), and
only these are written, into the layout ``sgnlake alpha`` writes
(:mod:`sgnlake.analyze.stored`: ``results/<run_id>/<key>/``, ``key`` the
default Mohammadi result key), so ``summary`` and ``report`` read them as a
stored result. :class:`ResultSink` writes them with each snapshot's commit
(see :class:`sgnlake.collect.writer.RunWriter`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import zarr
from zarr.core.array import AsyncArray
from zarr.core.sync import sync

from sgnlake.schema.codecs import default_compressors
from sgnlake.schema.lake import now, software_versions
from sgnlake.schema.meta import ResultMeta, RunMeta
from sgnlake.schema.names import ITERATION, PARAM, RESULT_ATTR, TENSOR_ATTR, results_path

#: The estimator computed on the device and its settings (the defaults of ``sgnlake alpha``).
ESTIMATOR = "mohammadi"
#: Output names (as :mod:`sgnlake.analyze.stored`).
ALPHA, NONFINITE = "alpha", "n_nonfinite"
#: float64 bytes of one block of columns (bounds the temporaries on the device).
_BLOCK_BYTES = 64 * 2**20


def _k1_rule() -> tuple[str, dict[str, Any]]:
    """The result key and resolved settings of the default Mohammadi estimator (the registry's)."""
    from sgnlake.analyze import estimators

    est = estimators.check_estimator(ESTIMATOR)
    return est.key(), est.resolve()


def mohammadi_torch(sgn: torch.Tensor, k1: str | int = "paper") -> tuple[torch.Tensor, torch.Tensor]:
    """Mohammadi alpha and non-finite count per parameter of ``(M, P)`` SGN, on its device.

    The formula of :func:`sgnlake.analyze.kernels.mohammadi_counted` (samples along
    dim 0): with ``K1, K2 = choose_k1(M, k1)``, X the first ``K1*K2`` samples and Y
    the sums of ``K1`` consecutive ones, ``1/alpha = (mean log|Y| - mean log|X|) / log K1``
    over the non-zero finite values (a K1 block holding a non-finite sample is left
    out of Y); NaN for fewer than two distinct finite samples, K1 = 1 or no
    non-zero X or Y; +inf where ``1/alpha <= 0``.

    Returns
    -------
    alpha : torch.Tensor
        ``(P,)`` float64.
    n_nonfinite : torch.Tensor
        ``(P,)`` int32: non-finite samples among all M.
    """
    from sgnlake.analyze.kernels import choose_k1

    m, p = sgn.shape
    kk1, kk2 = choose_k1(m, k1)
    alpha = torch.empty(p, dtype=torch.float64, device=sgn.device)
    bad = torch.empty(p, dtype=torch.int32, device=sgn.device)
    step = max(1, _BLOCK_BYTES // max(1, 8 * m))
    for s in range(0, p, step):
        e = min(p, s + step)
        alpha[s:e], bad[s:e] = _mohammadi_block(sgn[:, s:e], kk1, kk2)
    return alpha, bad


def _mohammadi_block(x: torch.Tensor, k1: int, k2: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = x.to(torch.float64)
    finite_all = torch.isfinite(a)
    n_bad = (~finite_all).sum(0, dtype=torch.int64).to(torch.int32)
    a = a[: k1 * k2]
    finite = finite_all[: k1 * k2]
    clean = torch.where(finite, a, 0.0)
    lo = torch.where(finite, a, math.inf).amin(0) if a.shape[0] else torch.full_like(a[0], math.inf)
    hi = torch.where(finite, a, -math.inf).amax(0) if a.shape[0] else torch.full_like(a[0], -math.inf)
    y = clean.reshape(k2, k1, -1).sum(1)
    ok = finite.reshape(k2, k1, -1).all(1) & torch.isfinite(y)
    y = torch.where(ok, y, 0.0)

    def sum_log_abs(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        av = v.abs()
        nz = av > 0
        return torch.where(nz, av, 1.0).log().sum(0), nz.sum(0).to(torch.float64)

    sly, ny = sum_log_abs(y)
    slx, nx = sum_log_abs(clean)
    if k1 > 1:
        inv = (sly / ny - slx / nx) / math.log(k1)
    else:
        inv = torch.full_like(sly, math.nan)
    inv = torch.where((nx == 0) | (ny == 0) | ~(lo < hi), math.nan, inv)
    alpha = torch.where(inv > 0, 1.0 / torch.where(inv > 0, inv, 1.0), math.inf)
    alpha = torch.where(torch.isnan(inv), math.nan, alpha)
    return alpha, n_bad


def device_results(grads: Mapping[str, torch.Tensor]) -> dict[str, dict[str, np.ndarray]]:
    """Per tensor ``{alpha, n_nonfinite}`` (host arrays) of centred ``(M, numel)`` SGN on the device."""
    _, settings = _k1_rule()
    out = {}
    for name, g in grads.items():
        a, n = mohammadi_torch(g, settings.get("k1", "paper"))
        out[name] = {ALPHA: a.cpu().numpy(), NONFINITE: n.cpu().numpy(), **_host_extras(g, settings)}
    return out


def _extras() -> list[tuple[str, str, Any]]:
    """(name, dtype, fill) of the estimator's declared extra outputs, as analyze stores them."""
    from sgnlake.analyze.estimators import ESTIMATORS

    spec = ESTIMATORS.get(ESTIMATOR)
    out = []
    for e in spec.extras if spec else []:
        dt = np.dtype(e.dtype)
        out.append((e.name, dt.str, np.nan if np.issubdtype(dt, np.floating) else -1))
    return out


def _host_extras(g: torch.Tensor, settings: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The extra outputs (inv_alpha, n_distinct, max_share, sparse) with the analyze kernels, in
    NumPy on the host, from the same ``(M, numel)`` SGN: device results then hold every output a
    lake-computed result holds (without them they would count as stale, or leave sparse
    parameters in summaries)."""
    from sgnlake.analyze import kernels

    x = g.detach().to("cpu", torch.float64).numpy().T
    k1, k2 = kernels.choose_k1(x.shape[-1], settings.get("k1", "paper"))
    _, _, ext = kernels.mohammadi_outputs(x, k1, k2)
    return {name: np.asarray(ext[name]).astype(dt) for name, dt, _ in _extras()}


class ResultSink:
    """Writes the device results of each snapshot into ``results/<run_id>/<key>/``.

    :meth:`write` (before the run's commit marker) puts row ``k`` into every result
    array through a view one row longer and grows the arrays; :meth:`commit`
    (after it) sets the ``ResultMeta`` to ``k + 1`` snapshots. A crash in
    between leaves the result one snapshot behind the run: :meth:`reopen`
    catches it up (its row is written) or cuts the arrays back to the run.
    """

    def __init__(self, root: zarr.Group, meta: RunMeta) -> None:
        self.root, self.meta = root, meta
        self.key, self.settings = _k1_rule()
        self.group = root.require_group(results_path(meta.run_id, self.key))

    @classmethod
    def create(cls, root: zarr.Group, meta: RunMeta) -> ResultSink:
        """Create the result group (no ``ResultMeta`` until the first commit)."""
        from sgnlake.analyze.stored import result_chunk

        sink = cls(root, meta)
        kg = root.create_group(results_path(meta.run_id, sink.key), overwrite=True)
        sink.group = kg
        kg.create_array(
            ITERATION, shape=(0,), chunks=(1,), dtype="int64", dimension_names=[ITERATION],
            compressors=default_compressors(),  # zstd + crc32c checksum
        )  # fmt: skip
        pc = meta.config.storage.param_chunk
        for t in meta.tensors:
            tg = kg.create_group(
                t.name, attributes={TENSOR_ATTR: dataclasses.replace(t, stored=None).to_dict()}
            )
            rc = max(1, result_chunk(pc, t.numel))
            for name, dtype, fill in ((ALPHA, "float64", np.nan), (NONFINITE, "int32", -1), *_extras()):
                tg.create_array(
                    name, shape=(0, t.numel), chunks=(1, rc), dtype=dtype, fill_value=fill,
                    dimension_names=[ITERATION, PARAM],
                    compressors=default_compressors(),
                )  # fmt: skip
        return sink

    @classmethod
    def reopen(cls, root: zarr.Group, meta: RunMeta) -> ResultSink:
        """Open for a resumed run: make the result hold exactly the run's ``committed`` snapshots."""
        sink = cls(root, meta)
        k = meta.committed
        if ITERATION not in sink.group:  # the run was created, its result group not yet
            if k:
                raise ValueError(f"run {meta.run_id!r} has {k} snapshots but no device results")
            return cls.create(root, meta)
        for arr in sink._arrays():
            if arr.shape[0] != k:
                arr.resize((k, *arr.shape[1:]))
        if k:
            sink.commit(k)
        return sink

    def _arrays(self) -> list[zarr.Array]:
        kg = self.group
        out = [kg[ITERATION]]
        for t in self.meta.tensors:
            out += [kg[t.name][n] for n in (ALPHA, NONFINITE, *(e[0] for e in _extras()))]
        return out

    def write(self, k: int, iteration: int, results: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Write row ``k`` of every result array and grow them to ``k + 1`` rows."""
        kg = self.group
        vals: list[tuple[zarr.Array, Any]] = [(kg[ITERATION], np.int64(iteration))]
        for t in self.meta.tensors:
            for name in (ALPHA, NONFINITE, *(e[0] for e in _extras())):
                vals.append((kg[t.name][name], results[t.name][name]))

        async def go() -> None:
            import asyncio

            views = []
            for arr, v in vals:
                aa = arr._async_array
                view = AsyncArray(
                    metadata=aa.metadata.update_shape((k + 1, *aa.metadata.shape[1:])),
                    store_path=aa.store_path,
                    config=aa.config,
                )
                views.append(view.setitem(k, v))
            await asyncio.gather(*views)
            await asyncio.gather(*(arr._async_array.resize((k + 1, *arr.shape[1:])) for arr, _ in vals))

        sync(go())

    def commit(self, n: int) -> None:
        """Mark the result as holding ``n`` snapshots (its ``ResultMeta``)."""
        rmeta = ResultMeta(
            estimator=ESTIMATOR,
            settings=dict(self.settings),
            run_id=self.meta.run_id,
            n_iterations=n,
            source="device",
            created=now(),
            software=software_versions(),
            run_created=self.meta.created,
        )
        self.group.update_attributes({RESULT_ATTR: rmeta.to_dict()})
