"""Pooled, unpaired FID and KID of two sets of density grids through torch-fidelity (0.4.x).

NOT the seed's FID/KID: here all feature vectors of the reference set and all those of the
reconstruction set are pooled and compared as two distributions, so which reconstruction goes
with which reference does not matter (a model that returns another molecule's density scores
~0). The seed-compatible, paired per-molecule FID/KID are ``benchmarks.metrics.seed``.

Each set of grids is wrapped in a :class:`GridDataset` that transforms one grid at a time on
access (default ``"log1p"``) into a float64 tensor (X, Y, Z), so a 128^3 float16 test set never
exists in float64 at once. The extractors (``benchmarks.metrics.features``) accept float
tensors; torch-fidelity's uint8 requirement only applies to its image extractors.
torch-fidelity then computes

* FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) with S the (N-1)-normalized
  feature covariances (``np.cov``), and
* KID = mean over ``subsets`` random subsets of ``subset_size`` features per side (without
  replacement, numpy RandomState(``rng_seed``)) of the unbiased MMD^2 with the polynomial
  kernel k(x, y) = (gamma x.y + coef0)^degree, gamma = 1 / dim by default.

Identical sets (the same number of grids, pairwise equal) give FID = KID = 0 (and KID std 0)
exactly, without computing them: FID is a squared distance and KID an estimate of a squared
distance, both 0 for a set against itself, but computed they show round-off (FID ~ -1e-6 tr S)
and subset noise (KID ~ its std, e.g. -0.18 on an identity run).

Features are float64 throughout and extracted on the CPU by default (``cuda=False``), so the
numbers do not depend on the device and a CPU re-score reproduces them. With the row
extractor the samples are slice rows (384 per grid), with ``densegen-3dnet-v1`` grids (one
64-vector each). No caching, no worker processes, no network.
"""
from __future__ import annotations

import numpy as np
import torch
import torch_fidelity
from torch.utils.data import Dataset

from benchmarks.metrics import features as _features
from benchmarks.metrics.density import apply_transform

EXTRACTORS = (_features.CENTRAL_ROWS, _features.NET3D, _features.SLICE_ROWS)
KID_DEFAULTS = {"subsets": 100, "subset_size": "min(1000, feature vectors per set)", "degree": 3,
                "coef0": 1.0, "gamma": "1/dim", "rng_seed": 2020}


class GridDataset(Dataset):
    """Grids transformed on access, item i -> float64 tensor (X, Y, Z).

    Args:
        grids: array/tensor (B, X, Y, Z) or a sequence of (X, Y, Z) arrays (any float dtype,
            e.g. the task's float16 grids; shapes may differ between items).
        transform: ``"raw"`` or ``"log1p"``, applied in :meth:`__getitem__`.
    """

    def __init__(self, grids, transform: str = "log1p"):
        self.grids = list(grids)
        self.transform = transform
        if not self.grids:
            raise ValueError("empty set of grids")
        apply_transform(torch.zeros(1, 1, 1), transform)          # unknown transform: fail now

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, i) -> torch.Tensor:
        return apply_transform(self.grids[i], self.transform)[0]

    def same_shape(self) -> bool:
        return len({tuple(np.shape(g)) for g in self.grids}) == 1


def _identical_sets(real: list, fake: list) -> bool:
    return len(real) == len(fake) and all(
        np.shape(r) == np.shape(f) and np.array_equal(np.asarray(r), np.asarray(f))
        for r, f in zip(real, fake))


def _as_list(grids) -> list:
    """The grids as a list of (X, Y, Z) items without copying them: an array or tensor is split
    into views; any other sized, indexable set (e.g. the density task's disk-backed
    ``GridStore``) is indexed item by item, so its grids stay on disk until each is used."""
    if isinstance(grids, (list, tuple)):
        return list(grids)
    if torch.is_tensor(grids):
        grids = grids.detach().cpu()
        return list(grids if grids.dim() == 4 else grids.unsqueeze(0))
    if isinstance(grids, np.ndarray):
        return list(grids if grids.ndim == 4 else grids[None])
    if hasattr(grids, "__len__") and hasattr(grids, "__getitem__"):
        return [grids[i] for i in range(len(grids))]
    a = np.asarray(grids)
    return list(a if a.ndim == 4 else a[None])


def fidelity_metrics(real_grids, fake_grids, extractor: str = _features.CENTRAL_ROWS,
                     transform: str = "log1p", compute_fid: bool = True, compute_kid: bool = True,
                     kid_subsets: int = 100, kid_subset_size: int | None = None,
                     kid_degree: int = 3, kid_gamma: float | None = None, kid_coef0: float = 1.0,
                     rng_seed: int = 2020, batch_size: int = 16, cuda: bool = False) -> dict:
    """Pooled FID and/or KID between two sets of density grids (``torch_fidelity.calculate_metrics``).

    Args:
        real_grids, fake_grids: raw densities (e/Bohr^3), (B, X, Y, Z) or sequences of
            (X, Y, Z) arrays; at least 2 grids each.
        extractor: ``"densegen-central-slice-rows"``, ``"densegen-3dnet-v1"`` (or the deprecated
            ``"densegen-slice-rows"``).
        transform: value transform applied before feature extraction.
        kid_subset_size: features per KID subset; ``None`` -> min(1000, n_real, n_fake) where
            n counts feature vectors (rows for the row extractor).
        batch_size: grids per extractor call (1 when the grids' shapes differ).
        cuda: run the extractor on GPU (default False: device-independent numbers).

    Returns:
        dict with ``"fid"`` and/or ``"kid_mean"``, ``"kid_std"`` (floats, dimensionless;
        lower is better, 0 for identical sets), ``"extractor"``, ``"transform"``.

    Raises:
        ValueError: unknown extractor or transform, fewer than 2 grids in a set.
    """
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; expected one of {EXTRACTORS}")
    real_list, fake_list = _as_list(real_grids), _as_list(fake_grids)
    if len(real_list) < 2 or len(fake_list) < 2:
        raise ValueError("FID/KID need at least 2 grids per set")
    real, fake = GridDataset(real_list, transform), GridDataset(fake_list, transform)
    res = {"extractor": extractor, "transform": transform}
    if _identical_sets(real_list, fake_list):
        if compute_fid:
            res["fid"] = 0.0
        if compute_kid:
            res["kid_mean"], res["kid_std"] = 0.0, 0.0
        return res
    per_sample = 3 * _features.SLICE_SIZE if extractor in _features.ROW_EXTRACTORS else 1
    if kid_subset_size is None:
        kid_subset_size = min(1000, len(real) * per_sample, len(fake) * per_sample)
    bs = batch_size if (real.same_shape() and fake.same_shape()) else 1
    out = torch_fidelity.calculate_metrics(
        input1=fake, input2=real, feature_extractor=extractor,
        fid=compute_fid, kid=compute_kid,
        kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, kid_kernel="poly",
        kid_kernel_poly_degree=kid_degree, kid_kernel_poly_gamma=kid_gamma,
        kid_kernel_poly_coef0=kid_coef0, rng_seed=rng_seed, batch_size=bs,
        cuda=cuda, cache=False, save_cpu_ram=True, verbose=False,
    )
    if compute_fid:
        res["fid"] = float(out["frechet_inception_distance"])
    if compute_kid:
        res["kid_mean"] = float(out["kernel_inception_distance_mean"])
        res["kid_std"] = float(out["kernel_inception_distance_std"])
    return res


def fid(real_grids, fake_grids, extractor: str = _features.CENTRAL_ROWS, transform: str = "log1p",
        **kwargs) -> float:
    """Pooled FID between two sets of grids; see :func:`fidelity_metrics` for the arguments."""
    return fidelity_metrics(real_grids, fake_grids, extractor, transform,
                            compute_fid=True, compute_kid=False, **kwargs)["fid"]


def kid(real_grids, fake_grids, extractor: str = _features.CENTRAL_ROWS, transform: str = "log1p",
        **kwargs) -> tuple[float, float]:
    """Pooled KID (mean, std over subsets); see :func:`fidelity_metrics` for the arguments."""
    r = fidelity_metrics(real_grids, fake_grids, extractor, transform,
                         compute_fid=False, compute_kid=True, **kwargs)
    return r["kid_mean"], r["kid_std"]
