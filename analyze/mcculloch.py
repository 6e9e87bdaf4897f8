"""McCulloch (1986) quantile fit of the four stable parameters, vectorised (scipy's ``_fitstart``)."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike

from .sample_checks import FloatArray, _f64, _rows_with_nonfinite, dead_mask

#: Labels of the last axis of :func:`mcculloch`.
STABLE_PARAMS = ("alpha", "beta", "scale", "loc")

# McCulloch (1986) tables as in scipy.stats._levy_stable._fitstart_S1.
# Table III / IV: alpha = psi_1(nu_alpha, nu_beta), beta = psi_2(nu_alpha, nu_beta);
# rows: nu_alpha, columns: nu_beta.
_NU_ALPHA = np.array([2.439, 2.5, 2.6, 2.7, 2.8, 3, 3.2, 3.5, 4, 5, 6, 8, 10, 15, 25])
_NU_BETA = np.array([0, 0.1, 0.2, 0.3, 0.5, 0.7, 1])
# fmt: off
_PSI1 = np.array([
    [2.000, 2.000, 2.000, 2.000, 2.000, 2.000, 2.000],
    [1.916, 1.924, 1.924, 1.924, 1.924, 1.924, 1.924],
    [1.808, 1.813, 1.829, 1.829, 1.829, 1.829, 1.829],
    [1.729, 1.730, 1.737, 1.745, 1.745, 1.745, 1.745],
    [1.664, 1.663, 1.663, 1.668, 1.676, 1.676, 1.676],
    [1.563, 1.560, 1.553, 1.548, 1.547, 1.547, 1.547],
    [1.484, 1.480, 1.471, 1.460, 1.448, 1.438, 1.438],
    [1.391, 1.386, 1.378, 1.364, 1.337, 1.318, 1.318],
    [1.279, 1.273, 1.266, 1.250, 1.210, 1.184, 1.150],
    [1.128, 1.121, 1.114, 1.101, 1.067, 1.027, 0.973],
    [1.029, 1.021, 1.014, 1.004, 0.974, 0.935, 0.874],
    [0.896, 0.892, 0.884, 0.883, 0.855, 0.823, 0.769],
    [0.818, 0.812, 0.806, 0.801, 0.780, 0.756, 0.691],
    [0.698, 0.695, 0.692, 0.689, 0.676, 0.656, 0.597],
    [0.593, 0.590, 0.588, 0.586, 0.579, 0.563, 0.513]])
_PSI2 = np.array([
    [0, 2.160, 1.000, 1.000, 1.000, 1.000, 1.000],
    [0, 1.592, 3.390, 1.000, 1.000, 1.000, 1.000],
    [0, 0.759, 1.800, 1.000, 1.000, 1.000, 1.000],
    [0, 0.482, 1.048, 1.694, 1.000, 1.000, 1.000],
    [0, 0.360, 0.760, 1.232, 2.229, 1.000, 1.000],
    [0, 0.253, 0.518, 0.823, 1.575, 1.000, 1.000],
    [0, 0.203, 0.410, 0.632, 1.244, 1.906, 1.000],
    [0, 0.165, 0.332, 0.499, 0.943, 1.560, 1.000],
    [0, 0.136, 0.271, 0.404, 0.689, 1.230, 2.195],
    [0, 0.109, 0.216, 0.323, 0.539, 0.827, 1.917],
    [0, 0.096, 0.190, 0.284, 0.472, 0.693, 1.759],
    [0, 0.082, 0.163, 0.243, 0.412, 0.601, 1.596],
    [0, 0.074, 0.147, 0.220, 0.377, 0.546, 1.482],
    [0, 0.064, 0.128, 0.191, 0.330, 0.478, 1.362],
    [0, 0.056, 0.112, 0.167, 0.285, 0.428, 1.274]])
# Table V / VII: nu_c = phi_3(alpha, beta), nu_zeta = phi_5(alpha, beta);
# rows: alpha = 2.0, 1.9, ..., 0.5 (reversed below to ascending), columns: beta.
_ALPHA = np.array([2, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1, 0.9, 0.8, 0.7, 0.6, 0.5])[::-1]
_BETA = np.array([0, 0.25, 0.5, 0.75, 1])
_PHI3 = np.array([
    [1.908, 1.908, 1.908, 1.908, 1.908],
    [1.914, 1.915, 1.916, 1.918, 1.921],
    [1.921, 1.922, 1.927, 1.936, 1.947],
    [1.927, 1.930, 1.943, 1.961, 1.987],
    [1.933, 1.940, 1.962, 1.997, 2.043],
    [1.939, 1.952, 1.988, 2.045, 2.116],
    [1.946, 1.967, 2.022, 2.106, 2.211],
    [1.955, 1.984, 2.067, 2.188, 2.333],
    [1.965, 2.007, 2.125, 2.294, 2.491],
    [1.980, 2.040, 2.205, 2.435, 2.696],
    [2.000, 2.085, 2.311, 2.624, 2.973],
    [2.040, 2.149, 2.461, 2.886, 3.356],
    [2.098, 2.244, 2.676, 3.265, 3.912],
    [2.189, 2.392, 3.004, 3.844, 4.775],
    [2.337, 2.634, 3.542, 4.808, 6.247],
    [2.588, 3.073, 4.534, 6.636, 9.144]])[::-1]
_PHI5 = np.array([
    [0, 0.000, 0.000, 0.000, 0.000],
    [0, -0.017, -0.032, -0.049, -0.064],
    [0, -0.030, -0.061, -0.092, -0.123],
    [0, -0.043, -0.088, -0.132, -0.179],
    [0, -0.056, -0.111, -0.170, -0.232],
    [0, -0.066, -0.134, -0.206, -0.283],
    [0, -0.075, -0.154, -0.241, -0.335],
    [0, -0.084, -0.173, -0.276, -0.390],
    [0, -0.090, -0.192, -0.310, -0.447],
    [0, -0.095, -0.208, -0.346, -0.508],
    [0, -0.098, -0.223, -0.380, -0.576],
    [0, -0.099, -0.237, -0.424, -0.652],
    [0, -0.096, -0.250, -0.469, -0.742],
    [0, -0.089, -0.262, -0.520, -0.853],
    [0, -0.078, -0.272, -0.581, -0.997],
    [0, -0.061, -0.279, -0.659, -1.198]])[::-1]
# fmt: on


def _bilinear(gx: FloatArray, gy: FloatArray, table: FloatArray, x: FloatArray, y: FloatArray) -> FloatArray:
    """Piecewise-bilinear interpolation of ``table[i, j]`` at (gx[i], gy[j]).

    Arguments outside the grid are clamped to its edges, as FITPACK's ``bispev``
    (``RectBivariateSpline(kx=1, ky=1, s=0)``) does.
    """
    x = np.clip(x, gx[0], gx[-1])
    y = np.clip(y, gy[0], gy[-1])
    i = np.clip(np.searchsorted(gx, x, side="right") - 1, 0, len(gx) - 2)
    j = np.clip(np.searchsorted(gy, y, side="right") - 1, 0, len(gy) - 2)
    tx = (x - gx[i]) / (gx[i + 1] - gx[i])
    ty = (y - gy[j]) / (gy[j + 1] - gy[j])
    return (
        (1 - tx) * (1 - ty) * table[i, j]
        + tx * (1 - ty) * table[i + 1, j]
        + (1 - tx) * ty * table[i, j + 1]
        + tx * ty * table[i + 1, j + 1]
    )


def mcculloch(x: ArrayLike) -> FloatArray:
    """McCulloch (1986) quantile estimates of all four stable parameters, vectorised.

    Reproduces ``scipy.stats.levy_stable._fitstart`` (S1 parameterisation, the
    scipy default; for beta = 0 S0 and S1 agree) for every parameter at once:
    linear-interpolated percentiles 5, 25, 50, 75, 95, then
    ``nu_alpha = (q95 - q05)/(q75 - q25)``, ``nu_beta = (q95 + q05 - 2 q50)/(q95 - q05)``
    looked up bilinearly in McCulloch's tables (clamped at the table edges).
    nu_alpha < 2.439 gives alpha = 2, beta = sign(nu_beta).

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples on the last axis.

    Returns
    -------
    numpy.ndarray of float64, shape (..., 4)
        (alpha, beta, scale, loc) -- note scipy's ``_fitstart`` returns
        (alpha, beta, loc, scale). NaN for dead parameters and when q75 == q25
        (the quantile fit is undefined; scipy would divide by zero).
        Non-finite samples are dropped: the percentiles of such a parameter are
        those of its finite samples (``numpy.nanpercentile``).
    """
    a = _f64(x)
    bad = dead_mask(a)
    qs = [5, 25, 50, 75, 95]
    flat = a.reshape(-1, a.shape[-1])
    rows = _rows_with_nonfinite(flat)
    if rows.size == 0:
        q = np.percentile(flat, qs, axis=-1)
    else:
        q = np.percentile(np.where(np.isfinite(flat), flat, 0.0), qs, axis=-1)
        sub = flat[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: dead anyway
            q[:, rows] = np.nanpercentile(np.where(np.isfinite(sub), sub, np.nan), qs, axis=-1)
    q05, q25, q50, q75, q95 = q.reshape(len(qs), *a.shape[:-1])
    iqr = q75 - q25
    bad = bad | ~(iqr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu_alpha = np.where(bad, 3.0, (q95 - q05) / np.where(bad, 1.0, iqr))
        nu_beta = np.where(bad, 0.0, (q95 + q05 - 2 * q50) / np.where(bad, 1.0, q95 - q05))
    absnb = np.abs(nu_beta)
    heavy = nu_alpha >= 2.439
    psi1 = _bilinear(_NU_ALPHA, _NU_BETA, _PSI1, nu_alpha, absnb)
    psi2 = _bilinear(_NU_ALPHA, _NU_BETA, _PSI2, nu_alpha, absnb)
    # scipy: psi_1(nu_beta) if nu_beta > 0 else psi_1(-nu_beta); psi_2 odd in nu_beta
    psi2 = np.where(nu_beta > 0, psi2, -psi2)
    alpha = np.where(heavy, np.clip(psi1, np.finfo(float).eps, 2.0), 2.0)
    beta = np.where(heavy, np.clip(psi2, -1.0, 1.0), np.sign(nu_beta))
    absb = np.abs(beta)
    phi3 = _bilinear(_ALPHA, _BETA, _PHI3, alpha, absb)
    phi5 = _bilinear(_ALPHA, _BETA, _PHI5, alpha, absb)
    phi5 = np.where(beta > 0, phi5, -phi5)
    c = iqr / phi3
    zeta = q50 + c * phi5
    delta = np.where(alpha != 1.0, zeta - beta * c * np.tan(np.pi * alpha / 2.0), zeta)
    out = np.stack([alpha, beta, c, delta], axis=-1)
    out[bad] = np.nan
    return out
