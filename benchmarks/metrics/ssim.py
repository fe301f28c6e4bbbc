"""SSIM and MS-SSIM for 3D grids (torch, float64, CPU).

SSIM (Wang et al. 2004) with a separable 3D Gaussian window, "valid" filtering (no padding:
only voxels at least ``win_size // 2`` from every face are scored, as scikit-image does after
cropping), population (not sample) covariances, K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2,
C2 = (K2 L)^2 with L the data range. With ``win_size=11, sigma=1.5`` the per-grid value equals
``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=L)`` (tested).

MS-SSIM (Wang et al. 2003): at scales j = 1..M the contrast-structure term cs_j (mean over the
valid region) is computed, grids are 2x average-pooled between scales (trailing odd voxels
dropped), and at the last scale the full SSIM is used:
MS-SSIM = prod_{j<M} relu(cs_j)^{w_j} * relu(ssim_M)^{w_M}, with the standard weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Negative terms are clipped to 0 (as pytorch-msssim
does) so the power is defined. The default ``win_size=7`` lets a 128^3 grid use all 5 scales
(128 / 2^4 = 8 >= 7). Smaller grids use the largest M with min(side) / 2^(M-1) >= win_size and
the first M weights renormalized to sum 1 (see :func:`ms_ssim_num_scales`).

Data range: ``None`` means per sample max(target) - min(target) after the transform;
pass a float to use a fixed range. Values are transformed first (``"raw"`` or ``"log1p"``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.metrics._grid import as_pair, reduce
from benchmarks.metrics.density import apply_transform

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03


def _gaussian_1d(win_size: int, sigma: float) -> torch.Tensor:
    if win_size % 2 != 1:
        raise ValueError(f"win_size must be odd, got {win_size}")
    x = torch.arange(win_size, dtype=torch.float64) - win_size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable valid Gaussian filtering of (B, 1, X, Y, Z): a weighted sum of shifted views
    along each axis (exact float64, several times faster than float64 conv3d on CPU)."""
    w = g.tolist()
    for dim in (4, 3, 2):
        m = x.shape[dim] - len(w) + 1
        out = x.narrow(dim, 0, m) * w[0]
        for k in range(1, len(w)):
            out.add_(x.narrow(dim, k, m), alpha=w[k])
        x = out
    return x


def _ssim_cs(p: torch.Tensor, t: torch.Tensor, g: torch.Tensor, data_range: torch.Tensor):
    """Per-sample mean SSIM and mean contrast-structure term for (B, X, Y, Z) inputs."""
    if min(p.shape[1:]) < g.numel():
        raise ValueError(f"grid side {min(p.shape[1:])} smaller than the window {g.numel()}")
    c1 = (K1 * data_range).pow(2).view(-1, 1, 1, 1, 1)
    c2 = (K2 * data_range).pow(2).view(-1, 1, 1, 1, 1)
    x, y = p.unsqueeze(1), t.unsqueeze(1)
    mx, my = _filter(x, g), _filter(y, g)
    vx = _filter(x * x, g) - mx * mx
    vy = _filter(y * y, g) - my * my
    cxy = _filter(x * y, g) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    ssim_map = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
    return ssim_map.flatten(1).mean(1), cs.flatten(1).mean(1)


def _range(t: torch.Tensor, data_range) -> torch.Tensor:
    if data_range is None:
        return t.flatten(1).amax(1) - t.flatten(1).amin(1)
    return torch.full((t.shape[0],), float(data_range), dtype=torch.float64)


def ssim3d(pred, target, data_range=None, win_size: int = 11, sigma: float = 1.5,
           transform: str = "raw", reduction: str = "mean"):
    """3D SSIM with a Gaussian window (see module docstring for the exact definition).

    Args:
        pred, target: (X, Y, Z) or (B, X, Y, Z) grids; every side >= ``win_size``.
        data_range: float, or ``None`` for max - min of each transformed target.
        win_size: odd window length (voxels), default 11. sigma: Gaussian sigma (voxels), 1.5.
        transform: ``"raw"`` or ``"log1p"``, applied to both grids first.
        reduction: ``"mean"`` -> float, ``"none"`` -> (B,) array.
    """
    p, t = as_pair(apply_transform(pred, transform), apply_transform(target, transform))
    s, _ = _ssim_cs(p, t, _gaussian_1d(win_size, sigma), _range(t, data_range))
    return reduce(s, reduction)


def ms_ssim_num_scales(shape, win_size: int = 7, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """Number of MS-SSIM scales used for a grid of spatial ``shape`` (X, Y, Z).

    The largest M <= ``max_scales`` with min(shape) // 2^(M-1) >= ``win_size``.
    """
    side, m = min(shape), 0
    while m < max_scales and side // (2**m) >= win_size:
        m += 1
    if m == 0:
        raise ValueError(f"grid side {side} smaller than the window {win_size}")
    return m


def ms_ssim3d(pred, target, data_range=None, win_size: int = 7, sigma: float = 1.5,
              weights=MS_SSIM_WEIGHTS, transform: str = "raw", reduction: str = "mean"):
    """3D multi-scale SSIM (see module docstring for the exact definition).

    Args:
        pred, target: (X, Y, Z) or (B, X, Y, Z) grids.
        data_range: float, or ``None`` for max - min of each transformed target (computed once,
            at full resolution, and used at every scale).
        win_size: odd window length (voxels), default 7. sigma: Gaussian sigma (voxels), 1.5.
        weights: per-scale exponents, default Wang et al. 2003; truncated to the number of
            scales the grid allows (:func:`ms_ssim_num_scales`) and renormalized to sum 1.
        transform: ``"raw"`` or ``"log1p"``. reduction: ``"mean"`` -> float, ``"none"`` -> (B,).
    """
    p, t = as_pair(apply_transform(pred, transform), apply_transform(target, transform))
    m = ms_ssim_num_scales(p.shape[1:], win_size, len(weights))
    w = torch.tensor(weights[:m], dtype=torch.float64)
    w = w / w.sum()
    g = _gaussian_1d(win_size, sigma)
    dr = _range(t, data_range)
    out = torch.ones(p.shape[0], dtype=torch.float64)
    for j in range(m):
        s, cs = _ssim_cs(p, t, g, dr)
        term = s if j == m - 1 else cs
        out = out * torch.relu(term).pow(w[j])
        if j < m - 1:
            p = F.avg_pool3d(p.unsqueeze(1), 2).squeeze(1)
            t = F.avg_pool3d(t.unsqueeze(1), 2).squeeze(1)
    return reduce(out, reduction)
