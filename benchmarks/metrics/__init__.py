"""densegen metrics: pure, documented functions (torchmetrics-functional style).

Density grids (``density``, ``ssim``): transforms ``raw`` / ``log1p``; MAE, NMAE, PSNR,
3D SSIM, 3D MS-SSIM, electron count and its error, dipole moment (Debye) and its error.
Distribution metrics (``fidelity``, ``features``): FID and KID through torch-fidelity with
the ``densegen-slice-rows`` (seed-compatible) and ``densegen-3dnet-v1`` extractors.
Perceptual (``lpips``): unweighted VGG16 LPIPS on central slices, skipped without local weights.
Point clouds (``pointcloud``): Mo3ENet scaffolded matching. Regression (``regression``):
MAE, Pearson R, QM9 aggregation helpers.

``fidelity`` and ``lpips`` import torch-fidelity / torchvision; import them explicitly
(``from benchmarks.metrics.fidelity import fid``) to keep this package import light.
"""
from benchmarks.metrics.density import (
    TRANSFORMS, apply_transform, dipole_error, dipole_moment, electron_count,
    electron_count_error, mae, nmae, psnr,
)
from benchmarks.metrics.pointcloud import match_dataset, match_molecule
from benchmarks.metrics.regression import (
    average_mae, average_normalized_mae, mae_across_seeds, pearson_r,
)
from benchmarks.metrics.ssim import ms_ssim3d, ssim3d

__all__ = [
    "TRANSFORMS", "apply_transform", "average_mae", "average_normalized_mae", "dipole_error",
    "dipole_moment", "electron_count", "electron_count_error", "mae", "mae_across_seeds",
    "match_dataset", "match_molecule", "ms_ssim3d", "nmae", "pearson_r", "psnr", "ssim3d",
]
