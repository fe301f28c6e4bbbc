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
explicitly (``from benchmarks.metrics.seed import seed_fid``) to keep this package import light.
"""
from benchmarks.metrics.catalog import METRICS, MetricSpec, json_value
from benchmarks.metrics.density import (
    TRANSFORMS, apply_transform, dipole_error, dipole_moment, electron_count,
    electron_count_error, mae, nmae, psnr,
)
from benchmarks.metrics.pointcloud import match_dataset, match_molecule, summarize
from benchmarks.metrics.regression import (
    average_mae, average_normalized_mae, mae_across_seeds, pearson_r,
)
from benchmarks.metrics.ssim import ms_ssim3d, ssim3d

__all__ = [
    "METRICS", "MetricSpec", "TRANSFORMS", "apply_transform", "average_mae", "average_normalized_mae",
    "dipole_error", "dipole_moment", "electron_count", "electron_count_error", "json_value", "mae",
    "mae_across_seeds", "match_dataset", "match_molecule", "ms_ssim3d", "nmae", "pearson_r", "psnr",
    "ssim3d", "summarize",
]
