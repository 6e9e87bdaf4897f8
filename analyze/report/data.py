"""What the report reads from the lake and computes from it (no figures, no HTML).

Per run (:func:`load_runs`): alpha at the chosen snapshots, its summaries by
model, module and tensor, loss/accuracy snapshots and the tensor table. Per
figure, on demand: one parameter's SGN (:func:`chosen_param`,
:func:`param_sgn`), the pooled alpha of every tensor (:func:`pooled_values`)
and a stable fit (:func:`_stable_fit`). Across runs: the last-snapshot table
and the groups of runs that differ only on one axis (:func:`cross_run_tables`,
:func:`_varying_contexts`), and the run table of the page (:func:`key_numbers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sgnlake.schema.errors import LakeError

from ..lake import CONFIG_COLUMNS
from ..stored import ALPHA
from ..summary import SPARSE
from .estimator import _settings_text, pooled_alpha
from .options import pick_iterations

#: Config columns that define a "context": runs that agree on all of them except
#: the axis a figure varies (and the seed) are drawn together. ``n_minibatches``
#: follows from ``n_train`` and ``batch_size``.
CONTEXT_COLUMNS = tuple(c for c in CONFIG_COLUMNS if c not in ("seed", "n_minibatches"))

#: A pooled sample larger than this (values per tensor and snapshot) uses a seeded
#: subset of the tensor's parameters (all minibatches of each), to bound memory.
POOLED_MAX_VALUES = 1 << 24


@dataclass
class _RunData:
    run: str
    meta: Any
    alpha: xr.DataArray  # (iteration, param) at the chosen snapshots only, in memory
    stats: pd.DataFrame  # summary by model (group "all")
    by_module: pd.DataFrame
    by_tensor: pd.DataFrame
    snapshots: xr.Dataset
    tensors: pd.DataFrame
    chosen: list[int]
    sparse: xr.DataArray | None = None  # (iteration, param) degenerate flags at the chosen snapshots
    other: Any = None  # summary row (model) at the last snapshot with the other include_sparse setting


# ----------------------------------------------------------------------------- runs


def load_runs(
    lake: Any,
    ids: list[str],
    *,
    estimator: str,
    settings: Mapping[str, Any],
    requested: Sequence[int] | None,
    store: bool,
    force: bool,
    notes: list[str],
    log: Callable[[str], None],
    include_sparse: bool = False,
) -> tuple[dict[str, _RunData], str]:
    """Store alpha (when asked and possible), summarise it, and read the chosen snapshots.

    Runs without committed snapshots get a line in ``notes`` and no entry; a run with
    M < 100 gets a warning line (few samples per estimate: noisy, biased alphas).
    Degenerate parameters are left out of the summaries unless ``include_sparse``.

    Returns
    -------
    data : dict of str to _RunData
        The runs with committed snapshots, in the order of ``ids``.
    stored_note : str
        What happened to stored alpha ("" when ``store`` is off or the lake is read-only).
    """
    stored_note = ""
    active = []
    for r in ids:
        if lake.meta(r).committed == 0:
            notes.append(f"run {r}: no committed snapshots yet, nothing to draw")
        else:
            active.append(r)
    if not active:
        return {}, stored_note
    if store and not getattr(lake, "read_only", False):
        log(f"report: alpha ({_settings_text(estimator, settings)}) for {len(active)} run(s)")
        try:
            rep = lake.compute_alpha(active, estimator, force=force, progress=False, **settings)
            stored_note = stored_alpha_note(rep)
        except LakeError as e:
            stored_note = f"α could not be stored in the lake ({e}); it was computed in memory."
    summ = {
        by: lake.summary(active, by=by, estimator=estimator, include_sparse=include_sparse, **settings)
        for by in ("model", "module", "tensor")
    }
    out = {}
    for r in active:
        m = lake.meta(r).n_minibatches
        if m < 100:
            notes.append(
                f"run {r}: warning: M = {m} SGN samples per estimate (< 100): single α estimates are "
                "noisy and biased; read medians with their intervals"
            )
        its = lake.iterations(r)
        chosen = pick_iterations(its, requested)
        a, sp = _chosen_alpha(lake, r, estimator, settings, chosen)
        stats = summ["model"][summ["model"]["run_id"] == r].reset_index(drop=True)
        other = None
        if sp is not None:
            last = int(stats["iteration"].max())
            other = lake.summary(
                r, by="model", estimator=estimator, iterations=[last], include_sparse=not include_sparse,
                **settings,
            ).iloc[-1]  # fmt: skip
            note = degenerate_note(r, stats.sort_values("iteration").iloc[-1], other, include_sparse)
            if note:
                notes.append(note)
        out[r] = _RunData(
            run=r,
            meta=lake.meta(r),
            alpha=a,
            stats=stats,
            by_module=summ["module"][summ["module"]["run_id"] == r].reset_index(drop=True),
            by_tensor=summ["tensor"][summ["tensor"]["run_id"] == r].reset_index(drop=True),
            snapshots=lake.snapshots(r),
            tensors=lake.tensors(r),
            chosen=chosen,
            sparse=sp,
            other=other,
        )
    return out, stored_note


def degenerate_note(run: str, last: Any, other: Any, include_sparse: bool) -> str:
    """The run's note on degenerate parameters at its last snapshot: how many, why they make the
    spike at alpha ~ 1, and the median with and without them ("" when there are none).

    ``last`` and ``other`` are summary rows (by model) of the same snapshot with
    ``include_sparse`` as given and the opposite.
    """
    n_sp = int(last.get("n_sparse", 0))
    if n_sp == 0:
        return ""
    out_row, kept_row = (other, last) if include_sparse else (last, other)

    def med(row: Any) -> str:
        return (
            f"{row['median']:.3f} [95% interval {row.get('median_lo', np.nan):.3f}, "
            f"{row.get('median_hi', np.nan):.3f}]"
        )

    return (
        f"run {run}: {n_sp} of {int(last['n_params'])} parameters are degenerate at iteration "
        f"{int(last['iteration'])} (fewer distinct non-zero SGN values than half the M samples, e.g. input "
        "pixels that are zero in most minibatches, or rarely active units). A sample that is one constant "
        "but for a few values gives the Mohammadi estimate α ≈ 1 (log|K1·c| − log|c| = log K1), so these "
        "parameters make the spike at α ≈ 1 in the α histograms and the dark rows/columns of the α maps, "
        f"and pull medians down: median α without them {med(out_row)}, with them {med(kept_row)}. "
        + (
            "They are kept in this report's statistics (--include-sparse)."
            if include_sparse
            else "They are left out of this report's statistics and histograms (--include-sparse keeps them)."
        )
    )


def _chosen_alpha(
    lake: Any, run: str, estimator: str, settings: Mapping[str, Any], chosen: list[int]
) -> tuple[xr.DataArray, xr.DataArray | None]:
    """Alpha and, when the estimator has it, the ``sparse`` flag at the chosen snapshots (one read)."""
    res = lake.result(run, estimator, **settings)
    if ALPHA not in res:
        lake.alpha(run, estimator, **settings)  # raises the one-line error
    keep = [v for v in (ALPHA, SPARSE) if v in res]
    sub = res[keep].sel(iteration=chosen).load()  # one graph: SGN read once if not stored
    a = sub[ALPHA]
    a.attrs = dict(res.attrs)
    return a, (sub[SPARSE] if SPARSE in sub else None)


def stored_alpha_note(rep: Any) -> str:
    """What the report did with stored alpha, from a :class:`~sgnlake.analyze.results.ComputeReport`.

    Says which runs were computed now, which gained new snapshots and which were
    read from results stored earlier (e.g. by ``sgnlake alpha`` or the demo just
    before), never "computed for 0 run(s)" when alpha was in fact computed earlier.
    """
    counts = {a: sum(1 for r in rep.runs if r.action == a) for a in ("computed", "appended", "up-to-date")}
    parts = []
    if counts["computed"]:
        parts.append(f"computed now and stored for {counts['computed']} run(s)")
    if counts["appended"]:
        parts.append(f"extended with new snapshots for {counts['appended']} run(s)")
    if counts["up-to-date"]:
        parts.append(
            f"read from results already stored in the lake for {counts['up-to-date']} run(s) "
            "(computed earlier; --force recomputes)"
        )
    return f"α (result key {rep.key}): {'; '.join(parts) or 'no runs'}."


# ----------------------------------------------------------------------------- one parameter, pooled


#: Candidates (nearest the tensor's median alpha first) checked for enough distinct SGN values.
PARAM_CANDIDATES = 20


def chosen_param(
    d: _RunData, param: tuple[str, int] | None, notes: list[str], lake: Any = None
) -> tuple[str, int, str]:
    """The (tensor, flat index) whose SGN is drawn, and how it was chosen.

    ``param`` (``--param``) when the run has it; otherwise (with a line in
    ``notes`` when ``param`` was given) the parameter of the run's largest
    weight tensor whose alpha at the last chosen snapshot is closest to the
    tensor's median. For a run that stores a parameter sample (``lake`` given)
    only parameters whose SGN is stored are drawn; with ``lake``, among the
    :data:`PARAM_CANDIDATES` closest, the first that is not degenerate at any chosen
    snapshot (:func:`sgnlake.analyze.kernels.sparse_mask`: enough distinct SGN values for a fit).
    """
    tab = d.tensors

    def stored(name: str) -> np.ndarray:
        if lake is None:
            return np.arange(int(tab.loc[name, "n_stored"]))
        return lake.param_index(d.run, name)

    if param is not None:
        name, idx = param
        if name in tab.index and np.isin(idx, stored(name)):
            return name, idx, "chosen with --param"
        sizes = ", ".join(f"{n} ({int(tab.loc[n, 'n_stored'])})" for n in tab.index)
        notes.append(
            f"run {d.run}: --param {name}:{idx} does not exist in this run (tensors: {sizes}); "
            "the default parameter is drawn instead"
        )
    weights = [n for n in tab.index if tab.loc[n, "kind"] == "weight"] or list(tab.index)
    name = max(weights, key=lambda n: tab.loc[n, "numel"])
    sel = d.alpha["tensor"].values == name
    a = d.alpha.sel(iteration=d.chosen[-1]).values[sel]
    flat = d.alpha["index"].values[sel]
    fin = np.isfinite(a) & np.isin(flat, stored(name))
    how = "the one whose α at the last chosen snapshot is closest to the tensor's median"
    if not fin.any():
        return name, int(stored(name)[0]), "the tensor has no finite α at the last chosen snapshot"
    med = np.median(a[fin])
    dist = np.where(fin, np.abs(a - med), np.inf)
    if lake is None:
        return name, int(flat[int(np.argmin(dist))]), how
    from ..kernels import sparse_mask

    order = np.argsort(dist, kind="stable")[:PARAM_CANDIDATES]
    order = order[np.isfinite(dist[order])]
    cands = sorted({int(flat[i]) for i in order})  # flat indices within the tensor
    sgn = lake.sgn(d.run, name, iterations=d.chosen, params=cands)
    x = np.moveaxis(np.asarray(sgn.values, dtype=np.float64), 1, -1)  # (iteration, param, minibatch)
    pos = {p: k for k, p in enumerate(cands)}
    for i in order:
        f = int(flat[i])
        if not sparse_mask(x[:, pos[f]]).any():
            return name, f, how + ", among those with enough distinct SGN values (not degenerate)"
    return name, int(flat[order[0]]), how + " (all nearby candidates are degenerate: few distinct SGN values)"


def param_sgn(lake: Any, d: _RunData, name: str, idx: int) -> tuple[np.ndarray, np.ndarray]:
    """SGN ``(iteration, minibatch)`` of parameter ``name[idx]`` (flat index) at the chosen snapshots, and its alpha there."""
    pos = int(np.searchsorted(lake.param_index(d.run, name), idx))  # position along the stored param axis
    sgn = lake.sgn(d.run, name, iterations=d.chosen, params=[pos])
    x = np.asarray(sgn.values, dtype=np.float64)[:, :, 0]  # (iteration, minibatch)
    sel = d.alpha["tensor"].values == name
    a_par = d.alpha.values[:, sel][:, d.alpha["index"].values[sel] == idx][:, 0]
    return x, a_par


def pooled_values(lake: Any, d: _RunData, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """Pooled alpha of every tensor of a run at every committed snapshot (reads all its SGN).

    Returns
    -------
    pooled : pandas.DataFrame
        Columns ``iteration``, ``group`` (tensor), ``alpha``.
    subsampled : list of str
        Tensors whose sample was a seeded subset of parameters (see :data:`POOLED_MAX_VALUES`).
    """
    rows = []
    rng = np.random.default_rng(0)
    subsampled = []
    for name in d.tensors.index:
        numel = int(d.tensors.loc[name, "n_stored"])  # positions along the stored param axis
        m = d.meta.n_minibatches
        params = None
        if m * numel > POOLED_MAX_VALUES:
            keep = max(1, POOLED_MAX_VALUES // m)
            params = np.sort(rng.choice(numel, keep, replace=False)).tolist()
            subsampled.append(f"{name} ({keep} of {numel} parameters)")
        sgn = lake.sgn(d.run, name, params=params)
        for i, t in enumerate(sgn["iteration"].values):
            x = np.asarray(sgn.isel(iteration=i).values)
            a = pooled_alpha(x, settings)
            rows.append({"iteration": int(t), "group": name, "alpha": a})
    return pd.DataFrame(rows, columns=["iteration", "group", "alpha"]), subsampled


def _stable_fit(x: np.ndarray) -> np.ndarray:
    """McCulloch quantile fit (alpha, beta, scale, loc; scipy S1) of one sample."""
    from ..kernels import mcculloch

    return np.asarray(mcculloch(np.asarray(x, dtype=np.float64)), dtype=np.float64).reshape(-1)[:4]


# ----------------------------------------------------------------------------- across runs


def _plain_value(v: Any) -> Any:
    """``3.0`` -> ``3`` (pandas turns integer columns with gaps into floats)."""
    if isinstance(v, float | np.floating) and np.isfinite(v) and float(v).is_integer():
        return int(v)
    return v


def _context_label(row: Mapping[str, Any], cols: Sequence[str]) -> str:
    parts = []
    for c in cols:
        v = row.get(c)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        v = _plain_value(v)
        parts.append(str(v) if c == "model" else f"{c}={v}")
    return " ".join(parts) or "all runs"


def _varying_contexts(df: pd.DataFrame, axes: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """Groups of runs that agree on every context column except ``axes`` (and seed)
    and in which at least one of ``axes`` takes two or more values."""
    if df.empty or not all(a in df.columns for a in axes):
        return []
    ctx = [c for c in CONTEXT_COLUMNS if c in df.columns and c not in axes]
    keys = pd.Series(
        ["|".join(str(_plain_value(v)) for v in row) for row in df[ctx].itertuples(index=False)]
        if ctx
        else "all",
        index=df.index,
        dtype=object,
    )
    # label contexts by what tells them apart in this lake (the model name always)
    shown = [c for c in ctx if c == "model" or df[c].map(lambda v: str(_plain_value(v))).nunique() > 1]
    out = []
    for _, idx in keys.groupby(keys, sort=True).groups.items():
        sub = df.loc[idx]
        if any(sub[a].dropna().nunique() >= 2 for a in axes):
            out.append((_context_label(sub.iloc[0].to_dict(), shown), sub))
    out.sort(key=lambda t: -len(t[1]))
    return out


#: ``--compare-at`` choices: where runs of different batch size (or depth, width) are compared.
COMPARE_AT = ("steps", "epochs")
#: The paper's choice: its Fig 2 draws alpha against iterations (SGD steps) for every batch size.
DEFAULT_COMPARE_AT = "steps"


def _progress(stats: pd.DataFrame, m: int, compare_at: str) -> np.ndarray:
    """Training progress of each snapshot: SGD steps, or epochs (steps / M, M steps per epoch)."""
    it = stats["iteration"].to_numpy(dtype=np.float64)
    return it / max(1, m) if compare_at == "epochs" else it


def cross_run_tables(
    data: list[_RunData], runs_df: pd.DataFrame, compare_at: str = DEFAULT_COMPARE_AT
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables the cross-run figures draw.

    Runs are compared at equal training progress: ``compare_at`` ``"steps"`` (SGD
    updates) or ``"epochs"`` (steps / M). The common point is the furthest progress every
    run of ``data`` reached; each run contributes its snapshot nearest to it.

    Returns
    -------
    df : pandas.DataFrame
        ``runs_df`` rows of the runs in ``data`` with ``median``, ``median_lo``,
        ``median_hi``, ``mean`` and ``paper_mean`` alpha at that snapshot, its iteration
        ``last_iteration`` and ``epoch``, and ``compare_at``.
    long : pandas.DataFrame
        Every run's per-iteration summary with ``run_id``, ``batch_size`` and ``epoch``.
    """
    if compare_at not in COMPARE_AT:
        raise ValueError(f"compare_at must be one of {COMPARE_AT}, got {compare_at!r}")
    ids = [d.run for d in data]
    df = runs_df.loc[ids].copy()
    prog = {
        d.run: _progress(d.stats.sort_values("iteration"), d.meta.n_minibatches, compare_at) for d in data
    }
    target = min(float(p.max()) for p in prog.values()) if prog else 0.0
    at = {}
    for d in data:
        st = d.stats.sort_values("iteration").reset_index(drop=True)
        at[d.run] = st.iloc[int(np.argmin(np.abs(prog[d.run] - target)))]
    for col in ("median", "median_lo", "median_hi", "mean", "paper_mean"):
        df[col] = [at[r].get(col, np.nan) for r in ids]
    df["last_iteration"] = [int(at[r]["iteration"]) for r in ids]
    df["epoch"] = [at[r]["iteration"] / max(1, d.meta.n_minibatches) for r, d in zip(ids, data, strict=True)]
    df["compare_at"] = compare_at
    long = pd.concat(
        [
            d.stats.assign(
                run_id=d.run,
                batch_size=d.meta.config.batch_size,
                epoch=d.stats["iteration"] / max(1, d.meta.n_minibatches),
            )
            for d in data
        ],
        ignore_index=True,
    )
    return df, long


# ----------------------------------------------------------------------------- the run table


def key_numbers(ids: list[str], data: dict[str, _RunData], runs_df: pd.DataFrame) -> pd.DataFrame:
    """The run table of the page: one row per run of ``ids`` (config, status, first/last alpha, dead counts).

    The last median with the other ``include_sparse`` setting is in the run's note
    (:func:`degenerate_note`), not here: the table must fit a 1280-px screen.
    """
    rows = []
    for r in ids:
        row = runs_df.loc[r]
        d = data.get(r)
        out: dict[str, Any] = {
            "run": r,
            "model": row.get("model"),
            "depth": row.get("depth"),
            "width": row.get("width"),
            "bias": row.get("bias"),
            "dataset": row.get("dataset"),
            "batch size": row.get("batch_size"),
            "lr": row.get("lr"),
            "seed": row.get("seed"),
            "status": row.get("status"),
            "snapshots": f"{row.get('committed')}/{row.get('planned')}",
            "M": row.get("n_minibatches"),
            "parameters": row.get("n_params"),
        }
        if d is not None:
            st = d.stats.sort_values("iteration")
            first, lastr = st.iloc[0], st.iloc[-1]
            snap = d.snapshots
            out.update(
                {
                    "first iteration": int(first["iteration"]),
                    "last iteration": int(lastr["iteration"]),
                    "loss (last)": float(snap["loss"].values[-1]) if snap.sizes["iteration"] else None,
                    "accuracy (last)": float(snap["accuracy"].values[-1])
                    if snap.sizes["iteration"]
                    else None,
                    "median α (first)": float(first["median"]),
                    "median α (last)": float(lastr["median"]),
                    "dead (no α), last": f"{int(lastr['n_nan'])}/{int(lastr['n_params'])}",
                    "degenerate (sparse), last": f"{int(lastr.get('n_sparse', 0))}/{int(lastr['n_params'])}",
                    "median α 95% interval (last)": f"{lastr.get('median_lo', np.nan):.3g}–"
                    f"{lastr.get('median_hi', np.nan):.3g}",
                    "paper's mean α (last)": float(lastr.get("paper_mean", np.nan)),
                    "α > 2, last": int(lastr["n_gt2"]),
                    "non-finite SGN samples (all snapshots)": int(st["n_nonfinite_samples"].sum()),
                }
            )
        rows.append(out)
    return pd.DataFrame(rows, dtype=object)  # object: integers stay integers next to gaps
