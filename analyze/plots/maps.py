"""Alpha maps: one tensor's per-parameter alpha laid out like the weight."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator


def alpha_map_image(values: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Arrange a tensor's flat per-parameter values as a 2-D image.

    ``param`` is the C-order flattening of ``shape``. 2-D weights ``(out, in)``
    stay as they are; 1-D tensors (biases) become one row; conv weights
    ``(out, in, kh, kw)`` become a grid of filters with ``out`` block-rows and
    ``in`` block-columns of ``kh x kw`` pixels; other ranks are reshaped to
    ``(shape[0], -1)``.
    """
    shape = tuple(int(s) for s in shape)
    v = np.asarray(values, dtype=np.float64).reshape(shape)
    if v.ndim == 1:
        return v[None, :]
    if v.ndim == 2:
        return v
    if v.ndim == 4:
        o, i, kh, kw = shape
        return v.transpose(0, 2, 1, 3).reshape(o * kh, i * kw)
    return v.reshape(shape[0], -1)


def plot_alpha_map(
    ax: Axes,
    values: np.ndarray,
    shape: Sequence[int],
    *,
    title: str,
    vmin: float = 1.0,
    vmax: float = 2.0,
    cmap: str = "viridis",
    colorbar: bool = True,
    index: np.ndarray | None = None,
) -> Axes:
    """Heatmap of one tensor's alpha, shaped like the weight (see :func:`alpha_map_image`).

    Dead parameters (NaN) are grey; the colour scale is fixed to ``vmin..vmax``
    (values beyond saturate; the colorbar's arrows say so). Conv filters are
    separated by white lines. With ``index`` (the flat indices of ``values``, for a run
    that stores a parameter sample) only those entries are drawn; the others stay white.

    Returns
    -------
    Axes
    """
    shape = tuple(int(s) for s in shape)
    sampled = index is not None and len(values) != int(np.prod(shape))
    if sampled:
        full = np.full(int(np.prod(shape)), np.nan)
        full[np.asarray(index, dtype=np.int64)] = np.asarray(values, dtype=np.float64)
        kept = np.zeros(full.shape, dtype=np.float64)
        kept[np.asarray(index, dtype=np.int64)] = 1.0
        grey = np.ma.masked_equal(alpha_map_image(kept, shape), 0.0)  # dead sampled entries: grey
        ax.imshow(
            grey, cmap=matplotlib.colors.ListedColormap(["0.7"]), aspect="auto", interpolation="nearest"
        )
        img = alpha_map_image(full, shape)
        cm = matplotlib.colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))
    else:
        img = alpha_map_image(values, shape)
        cm = matplotlib.colormaps[cmap].with_extremes(bad="0.7")
    im = ax.imshow(
        np.ma.masked_invalid(img), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins="auto"))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins="auto"))
    if len(shape) == 4:
        o, i, kh, kw = shape
        for r in range(1, o):
            ax.axhline(r * kh - 0.5, color="white", lw=0.6)
        for c in range(1, i):
            ax.axvline(c * kw - 0.5, color="white", lw=0.6)
        # one tick per filter block (channel index), thinned when there are many
        for axis, n, k in ((ax.yaxis, o, kh), (ax.xaxis, i, kw)):
            step = max(1, -(-n // 16))
            chans = list(range(0, n, step))
            axis.set_ticks([c * k + (k - 1) / 2 for c in chans], labels=[str(c) for c in chans])
        ax.set_ylabel(f"output channel ({o}; blocks of {kh} kernel rows)")
        ax.set_xlabel(f"input channel ({i}; blocks of {kw} kernel columns)")
    elif len(shape) == 1:
        ax.set_yticks([])
        ax.set_xlabel(f"index ({shape[0]})")
    elif len(shape) == 2:
        ax.set_ylabel(f"output unit ({shape[0]})")
        ax.set_xlabel(f"input unit ({shape[1]})")
    else:
        ax.set_ylabel(f"dim 0 ({shape[0]})")
        ax.set_xlabel("remaining dims, C order")
    n_nan = int(np.isnan(np.asarray(values, dtype=np.float64)).sum())
    kept_note = f", {len(values)} sampled (white: not stored)" if sampled else ""
    ax.set_title(f"{title}\nshape {shape}, dead (grey): {n_nan}{kept_note}", fontsize=9)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, extend="both", fraction=0.05)
        cb.set_label("α")
    return ax
