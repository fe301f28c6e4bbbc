"""densegen metrics: pure, documented functions (torchmetrics-functional style).

Names, units, directions and one-line definitions of every metric: ``catalog.METRICS``.

Density grids (``density``, ``ssim``): transforms ``raw`` / ``log1p``; MAE, NMAE (%, the
primary density metric), PSNR, 3D SSIM, 3D MS-SSIM, electron count and its error, dipole
moment (Debye) and its error.
Seed-compatible density metrics (``seed``): the 3DGrid-VQGAN authors' paired per-molecule
FID / KID over slice rows, SSIM / MS-SSIM (piq) and per-slice PSNR, MAE on log(rho + 1).
Pooled distribution metrics (``fidelity``, ``features``): unpaired FID and KID of the reference
and reconstruction sets through torch-fidelity, with the ``densegen-central-slice-rows`` and
``densegen-3dnet-v1`` extractors (not seed-compatible).
Perceptual (``lpips``): unweighted VGG16 LPIPS on central slices, skipped without local weights.
Point clouds (``pointcloud``): Mo3ENet scaffolded matching; primary metric
``penalized_mean_deviation``. Regression (``regression``): MAE, Pearson R, QM9 aggregation.

``seed``, ``fidelity`` and ``lpips`` import piq / torch-fidelity / torchvision; import them
explicitly (``from benchmarks.metrics.seed import seed_fid``). The names below are imported
when first used, so importing one light submodule (``catalog``, ``pointcloud``) does not load torch.
"""
from __future__ import annotations

import importlib

#: public name -> the submodule that defines it
_HOME = {
    **dict.fromkeys(("METRICS", "MetricSpec", "json_value"), "catalog"),
    **dict.fromkeys(("TRANSFORMS", "apply_transform", "dipole_error", "dipole_moment", "electron_count",
                     "electron_count_error", "mae", "nmae", "psnr"), "density"),
    **dict.fromkeys(("match_dataset", "match_molecule", "summarize"), "pointcloud"),
    **dict.fromkeys(("average_mae", "average_normalized_mae", "mae_across_seeds", "pearson_r"), "regression"),
    **dict.fromkeys(("ms_ssim3d", "ssim3d"), "ssim"),
}

__all__ = sorted(_HOME)


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f"benchmarks.metrics.{_HOME[name]}"), name)
    raise AttributeError(f"module 'benchmarks.metrics' has no attribute {name!r}")
