"""Voxel-wise and physical metrics for electron-density grids.

Inputs are grids of shape (X, Y, Z) or (B, X, Y, Z) (numpy or torch), density in electrons per
Bohr^3, on the cube-file grid frame of ``builders.density.schema`` (origin (3,), axes (3, 3),
Bohr). ``pred`` is the reconstruction (rho_hat), ``target`` the reference (rho). Per-sample
values are computed first and then averaged over the batch (``reduction="mean"``) or returned
as a numpy array (``reduction="none"``).

Transforms (:func:`apply_transform`): ``"raw"`` (identity) and ``"log1p"`` (log(rho + 1), the
transform under which the 3DGrid-VQGAN seed reported its table). Image-style metrics (SSIM,
PSNR, MAE, ...) depend on the transform; the physical ones (NMAE, electron count, dipole) are
defined on the raw density only.
"""
from __future__ import annotations

import numpy as np
import torch

from builders.density.frame import grid_points
from builders.density.schema import BOHR_PER_ANGSTROM
from benchmarks.metrics._grid import (
    as_batch, as_pair, frame_batch, reduce, voxel_volume,
)

TRANSFORMS = ("raw", "log1p")

# 1 e*Bohr = 8.4783536e-30 C m; 1 D = 1e-21/c C m = 3.3356410e-30 C m (CODATA 2018 ratio).
DEBYE_PER_AU = 2.541746473


def apply_transform(grid, transform: str = "raw") -> torch.Tensor:
    """Apply a named value transform to a grid.

    Args:
        grid: (X, Y, Z) or (B, X, Y, Z) density, e/Bohr^3.
        transform: ``"raw"`` (identity) or ``"log1p"`` (log(rho + 1), natural log).

    Returns:
        float64 tensor of shape (B, X, Y, Z).
    """
    g = as_batch(grid)
    if transform == "raw":
        return g
    if transform == "log1p":
        return torch.log1p(g)
    raise ValueError(f"unknown transform {transform!r}; expected one of {TRANSFORMS}")


def mae(pred, target, transform: str = "raw", reduction: str = "mean"):
    """Mean absolute voxel error, mean over voxels of |T(pred) - T(target)|.

    Args:
        pred, target: (X, Y, Z) or (B, X, Y, Z) grids on the same frame.
        transform: value transform applied to both first (see :func:`apply_transform`).
        reduction: ``"mean"`` over the batch -> float, or ``"none"`` -> (B,) array.

    Units: those of the transformed values (e/Bohr^3 for ``"raw"``).
    """
    p, t = as_pair(apply_transform(pred, transform), apply_transform(target, transform))
    return reduce((p - t).abs().flatten(1).mean(1), reduction)


def nmae(pred, target, reduction: str = "mean"):
    """Normalized MAE of the raw density in percent (the density-learning standard).

    Per sample, NMAE = 100 * sum_i |rho_hat_i - rho_i| dV / sum_i rho_i dV; the voxel volume dV
    is the same in both sums and cancels. The per-sample percentages are then averaged over the
    batch (``"mean"``): each molecule counts once, whatever its size (a ratio of batch sums would
    weight large molecules more). Reported in percent, as the density-learning literature
    (DeepDFT, ChargE3Net, InfGCN) quotes it; 0 for a perfect reconstruction, 100 for an all-zero
    one.

    The arguments are not symmetric: the denominator is the *reference* ``target``.

    Args:
        pred: reconstruction rho_hat, raw density (X, Y, Z) or (B, X, Y, Z), e/Bohr^3.
        target: reference rho on the same frame, same shape; every sample must hold a positive
            number of electrons (sum rho > 0).
        reduction: ``"mean"`` -> float (%), ``"none"`` -> (B,) array (%).

    Raises:
        ValueError: shapes differ, or a reference sums to <= 0 (NMAE undefined).
    """
    p, t = as_pair(pred, target)
    total = t.flatten(1).sum(1)
    if not bool((total > 0).all()):
        raise ValueError("nmae: every reference grid must sum to a positive electron count")
    return reduce(100.0 * (p - t).abs().flatten(1).sum(1) / total, reduction)


def psnr(pred, target, data_range=None, transform: str = "raw", reduction: str = "mean"):
    """Peak signal-to-noise ratio in dB: 10 log10(L^2 / MSE) per sample.

    Args:
        pred, target: (X, Y, Z) or (B, X, Y, Z) grids.
        data_range: the peak L. ``None`` (default): the maximum of the transformed target, per
            sample (densities are >= 0, so this is also its range from 0). A float is used for
            every sample.
        transform: value transform applied to both first.
        reduction: ``"mean"`` -> float (the mean of per-sample dB values), ``"none"`` -> (B,).

    Identical grids give +inf.
    """
    p, t = as_pair(apply_transform(pred, transform), apply_transform(target, transform))
    mse = (p - t).pow(2).flatten(1).mean(1)
    peak = t.flatten(1).amax(1) if data_range is None else torch.full_like(mse, float(data_range))
    return reduce(10.0 * torch.log10(peak.pow(2) / mse), reduction)


def electron_count(grid, axes, reduction: str = "none"):
    """Number of electrons N = sum_i rho_i * dV, with dV = |det(axes)| (Bohr^3).

    Args:
        grid: raw density (X, Y, Z) or (B, X, Y, Z), e/Bohr^3.
        axes: (3, 3) or (B, 3, 3) grid step vectors, Bohr.
        reduction: ``"none"`` (default) -> (B,) array, ``"mean"`` -> float.
    """
    g = as_batch(grid)
    _, a = frame_batch(torch.zeros(3), axes, g.shape[0])
    return reduce(g.flatten(1).sum(1) * voxel_volume(a), reduction)


def electron_count_error(pred, target, axes, reduction: str = "mean"):
    """|N_hat - N|, electrons, with both counts from :func:`electron_count` on the same frame."""
    p, t = as_pair(pred, target)
    err = torch.as_tensor(electron_count(p, axes) - electron_count(t, axes)).abs()
    return reduce(err, reduction)


def dipole_moment(grid, origin, axes, atomic_numbers, positions_angstrom):
    """Dipole moment (Debye) of nuclei plus an electron density on a grid.

    mu = sum_A Z_A R_A - sum_i rho_i r_i dV, evaluated in atomic units (e*Bohr) and converted
    with 1 e*Bohr = 2.541746473 D. The electrons carry charge -1, rho is the electron number
    density. For a neutral system (sum Z = integral rho) the result does not depend on the
    coordinate origin; otherwise it is taken about the Cartesian origin of the frame.

    Args:
        grid: raw density (X, Y, Z), e/Bohr^3 (a single molecule).
        origin: (3,) Bohr. axes: (3, 3) Bohr (``builders.density.schema`` frame).
        atomic_numbers: (N,) nuclear charges Z.
        positions_angstrom: (N, 3) nuclear positions in Angstrom (the schema's unit).

    Returns:
        numpy array (3,), Debye.
    """
    g = as_batch(grid)
    if g.shape[0] != 1:
        raise ValueError("dipole_moment takes one grid (X, Y, Z); loop over a batch")
    g = g[0]
    r = torch.from_numpy(grid_points(origin, axes, g.shape)).reshape(*g.shape, 3)
    dv = voxel_volume(axes)
    mu_el = -(g[..., None] * r).reshape(-1, 3).sum(0) * dv
    z = torch.as_tensor(np.asarray(atomic_numbers, dtype=np.float64)).reshape(-1)
    pos = torch.as_tensor(np.asarray(positions_angstrom, dtype=np.float64)).reshape(-1, 3)
    pos = pos * BOHR_PER_ANGSTROM
    mu_nuc = (z[:, None] * pos).sum(0)
    return ((mu_el + mu_nuc) * DEBYE_PER_AU).numpy()


def dipole_error(pred, target, origin, axes, atomic_numbers, positions_angstrom) -> float:
    """|mu(pred) - mu(target)| in Debye: norm of the difference of :func:`dipole_moment` vectors.

    The nuclear parts are identical and cancel, so this equals
    |integral r (rho - rho_hat) dV| * 2.541746473 for a single molecule (X, Y, Z) grid pair.
    """
    a = dipole_moment(pred, origin, axes, atomic_numbers, positions_angstrom)
    b = dipole_moment(target, origin, axes, atomic_numbers, positions_angstrom)
    return float(((a - b) ** 2).sum() ** 0.5)
