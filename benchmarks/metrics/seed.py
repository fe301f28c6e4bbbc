"""Seed-compatible density metrics: what the 3DGrid-VQGAN authors' evaluation computes.

Read from IBM/materials (``models/3dgrid_vqgan``): ``inference/vq_gan_3d/metrics.py``
(class ``ImageMetrics``), driven by ``inference/scripts/evaluate_image.py`` (``main``).

What that code does with its inputs:

* Data (``evaluate_image.main``): one molecule at a time (``DataLoader(batch_size=1)``) from
  ``DEFAULTDataset`` (imported as ``dataset.default``; defined in
  ``training/dataset/default.py``, and ``inference/vq_gan_3d/dataset/default.py`` does the
  same): the stored grid is resized to ``internal_resolution``^3 with
  ``F.interpolate(mode='trilinear')`` and transformed with ``torch.log(x + 1)``. The
  reconstruction is ``vqgan.decode(vqgan.encode(x))`` of that log-space input. Both are
  ``squeeze()``-d to (X, Y, Z) and given to ``ImageMetrics(grid_true, grid_pred)``, whose per-slice
  loops run over axis 0 (``grid_true[idx]`` is the (Y, Z) slice ``idx``). ``main`` prints the
  mean over molecules of each per-molecule value (``df.mean()``). Our grids are already on the
  seed's 128^3 frame (a trilinear resize to the same size is the identity), so here the
  inputs are raw densities (e/Bohr^3) and ``log1p`` is applied to both, as the seed's data
  pipeline does.
* FID (``ImageMetrics.fid`` -> ``_calculate_fid``): per slice, the Y rows of the reference
  slice and the Y rows of the reconstructed slice are two samples of Z-vectors:
  mu = row mean, sigma = ``numpy.cov(rowvar=False)`` (Z x Z, N-1 normalized),
  FID = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 ``scipy.linalg.sqrtm``(sigma1 sigma2)), the real
  part kept when sqrtm is complex; the mean over the X slices. PAIRED: each reconstruction is
  compared with its own reference, slice by slice.
* KID (``ImageMetrics.kid``): ``piq.KID()`` with its defaults on the same two row sets per
  slice: polynomial kernel (gamma <x, y> + 1)^3 with gamma = 1 / Z, ``average=False`` (one
  "subset" that is a random permutation of all Y rows of each side), the unbiased MMD^2
  estimate; the mean over slices.
* SSIM (``ImageMetrics.ssim``): the volume as one (1, X, Y, Z) image with X channels; each
  tensor min-max normalized over all its voxels, on its own (``normalize_tensor``); then
  ``piq.ssim(data_range=1.)`` with piq's defaults: 11 x 11 Gaussian window, sigma 1.5, K1 0.01,
  K2 0.03, unpadded ("valid") filtering, the SSIM map averaged over (Y, Z) per channel and then
  over channels (``downsample=True`` pools by round(min(Y, Z) / 256), i.e. not at all for
  sides below 384).
* MS-SSIM (``ImageMetrics.multiscale_ssim``): the same normalized images,
  ``piq.multi_scale_ssim(data_range=1., kernel_size=7)``: 5 scales with the weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) used as given (piq only renormalizes weights it is
  passed), 2x average pooling between scales (when Y or Z is odd, both are first
  replicate-padded by one at the start; avg_pool2d drops a trailing odd row or column), the
  contrast-structure mean at scales 1-4 and the full SSIM mean at scale 5, each clipped at 0
  (relu), raised to its weight and multiplied *per channel*, then averaged over channels.
  piq needs Y, Z >= (7 - 1) * 2^4 + 1 = 97 (:data:`MS_SSIM_MIN_SIDE`).
* PSNR (``ImageMetrics.psnr``): per slice ``skimage.metrics.peak_signal_noise_ratio`` with
  ``data_range`` = |max(max ref slice, max rec slice) - min(min ref slice, min rec slice)|;
  the mean over slices of the dB values.
* MAE ("Reconstruction", ``ImageMetrics.reconstruction``): ``F.l1_loss`` over all voxels.

Here each function computes the same with the same libraries (scipy, piq, scikit-image) on
float64 tensors (the seed ran float32, so values agree to float32 round-off), per molecule, and
then (``reduction="mean"``) the mean over molecules. Deviations, each only where the seed's
value is undefined or is round-off of the perfect value:

* exactly identical slices give FID 0 and KID 0 and PSNR +inf without computing them
  (computed, sqrtm's round-off gives FID ~ +-1e-9, and piq's unbiased KID of a row set with
  itself is (2 / Y) (mean off-diagonal - mean diagonal kernel value), typically < 0); so identical
  grids score exactly FID 0, KID 0, PSNR +inf, SSIM 1, MS-SSIM 1, MAE 0;
* a constant tensor is normalized to all zeros (the seed divides 0 by 0 and gets NaN);
* piq.KID draws its permutation from torch's global generator: here it runs under
  ``torch.random.fork_rng`` seeded with 0, so results are reproducible and the caller's random
  state is left alone (the permutation only changes the summation order).

Known properties of the seed's definitions, kept for comparability (use the ``density`` and
``ssim`` metrics to rank): SSIM and MS-SSIM are invariant to any increasing affine map of each
grid's log values separately (a reconstruction 3x too dense in log space scores 1); KID is
negative for near-identical slices; PSNR is +inf as soon as one slice is reproduced exactly.
"""
from __future__ import annotations

import math

import numpy as np
import piq
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio

from benchmarks.metrics._grid import as_pair, reduce
from benchmarks.metrics.density import apply_transform, mae

TRANSFORM = "log1p"
SSIM_KERNEL = 11            # piq.ssim default, as the seed calls it
MS_SSIM_KERNEL = 7          # the seed's kernel_size=7
MS_SSIM_LEVELS = 5          # piq's default weights
MS_SSIM_MIN_SIDE = (MS_SSIM_KERNEL - 1) * 2 ** (MS_SSIM_LEVELS - 1) + 1   # 97
KID_PERMUTATION_SEED = 0


def _log_pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    """log(rho + 1) of both, float64 (B, X, Y, Z), shapes checked."""
    p, t = as_pair(pred, target)
    return apply_transform(p, TRANSFORM), apply_transform(t, TRANSFORM)


def seed_normalize(volume: torch.Tensor) -> torch.Tensor:
    """The seed's ``normalize_tensor`` of one (X, Y, Z) volume as a (1, X, Y, Z) image:
    (v - min) / (max - min) over all voxels; a constant volume gives zeros (the seed: NaN)."""
    lo, hi = volume.min(), volume.max()
    if hi == lo:
        return torch.zeros_like(volume).unsqueeze(0)
    return ((volume - lo) / (hi - lo)).unsqueeze(0)


def _slice_mean(values: list[float]) -> float:
    # the seed accumulates with += and divides by the number of slices
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def frechet_rows(ref_slice: np.ndarray, rec_slice: np.ndarray) -> float:
    """FID between the rows of two (Y, Z) slices (rows = samples, columns = features).

    |mu1 - mu2|^2 + tr(S1 + S2 - 2 Re sqrtm(S1 S2)), S = ``np.cov(rowvar=False)``; 0.0 for
    identical slices (see the module docstring).
    """
    if np.array_equal(ref_slice, rec_slice):
        return 0.0
    mu1, mu2 = ref_slice.mean(axis=0), rec_slice.mean(axis=0)
    s1, s2 = np.cov(ref_slice, rowvar=False), np.cov(rec_slice, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(root):
        root = root.real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * root))


def kid_rows(ref_slice: torch.Tensor, rec_slice: torch.Tensor) -> float:
    """``piq.KID()`` between the rows of two (Y, Z) slices; 0.0 for identical slices."""
    if torch.equal(ref_slice, rec_slice):
        return 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(KID_PERMUTATION_SEED)
        return float(piq.KID()(ref_slice, rec_slice))


def psnr_slice(ref_slice: np.ndarray, rec_slice: np.ndarray) -> float:
    """skimage PSNR (dB) of two slices with data_range = max - min over both; +inf if identical."""
    if np.array_equal(ref_slice, rec_slice):
        return math.inf
    data_range = abs(max(ref_slice.max(), rec_slice.max()) - min(ref_slice.min(), rec_slice.min()))
    return float(peak_signal_noise_ratio(ref_slice, rec_slice, data_range=float(data_range)))


def _per_molecule(fn, pred, target, reduction: str):
    p, t = _log_pair(pred, target)
    return reduce(torch.tensor([fn(t[b], p[b]) for b in range(p.shape[0])], dtype=torch.float64),
                  reduction)


def _fid_molecule(ref: torch.Tensor, rec: torch.Tensor) -> float:
    r, c = ref.numpy(), rec.numpy()
    return _slice_mean([frechet_rows(r[i], c[i]) for i in range(r.shape[0])])


def _kid_molecule(ref: torch.Tensor, rec: torch.Tensor) -> float:
    return _slice_mean([kid_rows(ref[i], rec[i]) for i in range(ref.shape[0])])


def _psnr_molecule(ref: torch.Tensor, rec: torch.Tensor) -> float:
    r, c = ref.numpy(), rec.numpy()
    return _slice_mean([psnr_slice(r[i], c[i]) for i in range(r.shape[0])])


def _ssim_molecule(ref: torch.Tensor, rec: torch.Tensor) -> float:
    a, b = seed_normalize(ref), seed_normalize(rec)
    return float(piq.ssim(a, b, data_range=1.0, reduction="none").squeeze())


def _ms_ssim_molecule(ref: torch.Tensor, rec: torch.Tensor) -> float:
    if min(ref.shape[1:]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"seed MS-SSIM (piq, kernel 7, 5 scales) needs slices of at least "
                         f"{MS_SSIM_MIN_SIDE} x {MS_SSIM_MIN_SIDE}, got {tuple(ref.shape[1:])}")
    a, b = seed_normalize(ref), seed_normalize(rec)
    return float(piq.multi_scale_ssim(a, b, data_range=1.0, kernel_size=MS_SSIM_KERNEL))


def seed_fid(pred, target, reduction: str = "mean"):
    """Seed FID: paired, per molecule, over the rows of each axis-0 slice of log(rho + 1).

    Args:
        pred: reconstructions, raw density (X, Y, Z) or (B, X, Y, Z), e/Bohr^3 (> -1).
        target: references, same shape. Y >= 2 (rows per slice).
        reduction: ``"mean"`` over molecules -> float, ``"none"`` -> (B,) array.

    Units: dimensionless (squared log-density units of the row features); lower is better,
    0 for identical grids. Cost: X scipy ``sqrtm`` of Z x Z matrices per molecule.
    """
    return _per_molecule(_fid_molecule, pred, target, reduction)


def seed_kid(pred, target, reduction: str = "mean"):
    """Seed KID: ``piq.KID()`` per axis-0 slice (rows as samples) of log(rho + 1), the mean over
    slices, then over molecules. Dimensionless, lower is better, 0 for identical grids; the
    unbiased estimate can be slightly negative for near-identical ones.

    Args: as :func:`seed_fid`.
    """
    return _per_molecule(_kid_molecule, pred, target, reduction)


def seed_ssim(pred, target, reduction: str = "mean"):
    """Seed SSIM: ``piq.ssim`` of the min-max normalized log(rho + 1) volumes taken as X-channel
    2D images (module docstring). Dimensionless, higher is better, 1 for identical grids.

    Args:
        pred, target: raw densities (X, Y, Z) or (B, X, Y, Z); Y, Z >= 11.
        reduction: ``"mean"`` -> float, ``"none"`` -> (B,) array.
    """
    return _per_molecule(_ssim_molecule, pred, target, reduction)


def seed_ms_ssim(pred, target, reduction: str = "mean"):
    """Seed MS-SSIM: ``piq.multi_scale_ssim(kernel_size=7)`` of the normalized volumes as X-channel
    images. Dimensionless, higher is better, 1 for identical grids.

    Args:
        pred, target: raw densities (X, Y, Z) or (B, X, Y, Z); Y, Z >= 97.
        reduction: ``"mean"`` -> float, ``"none"`` -> (B,) array.

    Raises:
        ValueError: Y or Z below :data:`MS_SSIM_MIN_SIDE` (piq cannot use 5 scales).
    """
    return _per_molecule(_ms_ssim_molecule, pred, target, reduction)


def seed_psnr(pred, target, reduction: str = "mean"):
    """Seed PSNR: per axis-0 slice of log(rho + 1), 10 log10(L^2 / MSE) dB with L = max - min of
    both slices; the mean over slices, then over molecules. Higher is better; +inf when any
    slice (hence for identical grids) is reproduced exactly.

    Args: as :func:`seed_fid`.
    """
    return _per_molecule(_psnr_molecule, pred, target, reduction)


def seed_mae(pred, target, reduction: str = "mean"):
    """Seed MAE ("Reconstruction"): mean |log(rho_hat + 1) - log(rho + 1)| over voxels, then over
    molecules; units of log(1 + e/Bohr^3). Equal to ``density.mae(transform="log1p")``."""
    return mae(pred, target, transform=TRANSFORM, reduction=reduction)


SEED_METRICS = {"seed_fid": seed_fid, "seed_kid": seed_kid, "seed_ssim": seed_ssim,
                "seed_ms_ssim": seed_ms_ssim, "seed_psnr": seed_psnr, "seed_mae": seed_mae}


def seed_metrics(pred, target, reduction: str = "mean") -> dict:
    """Every seed metric of :data:`SEED_METRICS` for one batch: {name: value}.

    ``seed_ms_ssim`` is NaN when Y or Z < :data:`MS_SSIM_MIN_SIDE` (undefined there, e.g. the
    32^3 quick grids); the standalone :func:`seed_ms_ssim` raises instead.
    """
    p, t = as_pair(pred, target)
    out = {}
    for name, fn in SEED_METRICS.items():
        if name == "seed_ms_ssim" and min(p.shape[2:]) < MS_SSIM_MIN_SIDE:
            out[name] = reduce(torch.full((p.shape[0],), math.nan, dtype=torch.float64), reduction)
        else:
            out[name] = fn(p, t, reduction)
    return out
