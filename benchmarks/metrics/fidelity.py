"""FID and KID of density-grid sets through torch-fidelity (0.4.x) with densegen extractors.

Each set of grids is wrapped in an in-memory ``torch.utils.data.Dataset`` returning one float64
tensor (X, Y, Z) per grid, already transformed (default ``"log1p"``, as the seed). The
extractors (``benchmarks.metrics.features``) accept float tensors; torch-fidelity's own
uint8 requirement only applies to its image extractors. torch-fidelity then computes

* FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) with S the (N-1)-normalized
  feature covariances (``np.cov``), and
* KID = mean over ``subsets`` random subsets of ``subset_size`` features per side (without
  replacement, numpy RandomState(``rng_seed``)) of the unbiased MMD^2 with the polynomial
  kernel k(x, y) = (gamma x.y + coef0)^degree, gamma = 1 / dim by default.

Features are float64 throughout. With ``densegen-slice-rows`` the samples are slice rows
(384 per grid), with ``densegen-3dnet-v1`` grids (one 64-vector each). No caching, no worker
processes, no network.
"""
from __future__ import annotations

import torch
import torch_fidelity
from torch.utils.data import Dataset

from benchmarks.metrics import features as _features
from benchmarks.metrics.density import apply_transform

EXTRACTORS = (_features.SLICE_ROWS, _features.NET3D)


class GridDataset(Dataset):
    """In-memory dataset of transformed grids, item i -> float64 tensor (X, Y, Z).

    Args:
        grids: array/tensor (B, X, Y, Z) or a sequence of (X, Y, Z) arrays.
        transform: ``"raw"`` or ``"log1p"`` (applied once, at construction).
    """

    def __init__(self, grids, transform: str = "log1p"):
        if isinstance(grids, (list, tuple)):
            self.grids = [apply_transform(g, transform)[0] for g in grids]
        else:
            self.grids = list(apply_transform(grids, transform))
        if not self.grids:
            raise ValueError("empty set of grids")

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, i) -> torch.Tensor:
        return self.grids[i]

    def same_shape(self) -> bool:
        return len({tuple(g.shape) for g in self.grids}) == 1


def fidelity_metrics(real_grids, fake_grids, extractor: str = _features.SLICE_ROWS,
                     transform: str = "log1p", compute_fid: bool = True, compute_kid: bool = True,
                     kid_subsets: int = 100, kid_subset_size: int | None = None,
                     kid_degree: int = 3, kid_gamma: float | None = None, kid_coef0: float = 1.0,
                     rng_seed: int = 2020, batch_size: int = 16, cuda: bool | None = None) -> dict:
    """FID and/or KID between two sets of density grids via ``torch_fidelity.calculate_metrics``.

    Args:
        real_grids, fake_grids: raw densities, (B, X, Y, Z) or sequences of (X, Y, Z) arrays.
        extractor: ``"densegen-slice-rows"`` or ``"densegen-3dnet-v1"``.
        transform: value transform applied before feature extraction.
        kid_subset_size: features per KID subset; ``None`` -> min(1000, n_real, n_fake) where
            n counts feature vectors (rows for the slice extractor).
        cuda: run the extractor on GPU; ``None`` -> if available.

    Returns:
        dict with ``"fid"`` and/or ``"kid_mean"``, ``"kid_std"`` (floats), ``"extractor"``,
        ``"transform"``.
    """
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; expected one of {EXTRACTORS}")
    real, fake = GridDataset(real_grids, transform), GridDataset(fake_grids, transform)
    per_sample = 3 * _features.SLICE_SIZE if extractor == _features.SLICE_ROWS else 1
    if kid_subset_size is None:
        kid_subset_size = min(1000, len(real) * per_sample, len(fake) * per_sample)
    bs = batch_size if (real.same_shape() and fake.same_shape()) else 1
    out = torch_fidelity.calculate_metrics(
        input1=fake, input2=real, feature_extractor=extractor,
        fid=compute_fid, kid=compute_kid,
        kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, kid_kernel="poly",
        kid_kernel_poly_degree=kid_degree, kid_kernel_poly_gamma=kid_gamma,
        kid_kernel_poly_coef0=kid_coef0, rng_seed=rng_seed, batch_size=bs,
        cuda=torch.cuda.is_available() if cuda is None else cuda,
        cache=False, save_cpu_ram=True, verbose=False,
    )
    res = {"extractor": extractor, "transform": transform}
    if compute_fid:
        res["fid"] = float(out["frechet_inception_distance"])
    if compute_kid:
        res["kid_mean"] = float(out["kernel_inception_distance_mean"])
        res["kid_std"] = float(out["kernel_inception_distance_std"])
    return res


def fid(real_grids, fake_grids, extractor: str = _features.SLICE_ROWS, transform: str = "log1p",
        **kwargs) -> float:
    """FID between two sets of grids; see :func:`fidelity_metrics` for the arguments."""
    return fidelity_metrics(real_grids, fake_grids, extractor, transform,
                            compute_fid=True, compute_kid=False, **kwargs)["fid"]


def kid(real_grids, fake_grids, extractor: str = _features.SLICE_ROWS, transform: str = "log1p",
        **kwargs) -> tuple[float, float]:
    """KID (mean, std over subsets); see :func:`fidelity_metrics` for the arguments."""
    r = fidelity_metrics(real_grids, fake_grids, extractor, transform,
                         compute_fid=False, compute_kid=True, **kwargs)
    return r["kid_mean"], r["kid_std"]
