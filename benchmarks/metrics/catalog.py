"""Every metric this package computes, by machine name: unit, direction, definition, function.

:data:`METRICS` maps a metric name (the key tasks should use in results JSON and tables) to a
:class:`MetricSpec`. Units are written as tables and JSON should print them: ``"%"``,
``"electrons"``, ``"Debye"``, ``"Angstrom"``, ``"dB"``, ``"electrons/Bohr^3"``,
``"log(1 + electrons/Bohr^3)"`` (values of the log1p transform), ``"dimensionless"``.
Image-style density metrics exist for both value transforms and carry the suffix ``_raw`` or
``_log1p``; the seed-compatible ones (``seed_*``) are defined on log1p only.

Non-finite values: PSNR is +inf for identical grids. JSON has no infinity; :func:`json_value`
writes it as the string ``"inf"`` (and NaN / None as ``null``), so that ``null`` keeps meaning
"not computed" and never "perfect".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

TRANSFORMS = ("raw", "log1p")
DENSITY_PRIMARY = "nmae"
POINTCLOUD_PRIMARY = "penalized_mean_deviation"
_VALUE_UNITS = {"raw": "electrons/Bohr^3", "log1p": "log(1 + electrons/Bohr^3)"}
FEATURE_UNITS = "dimensionless (feature-space units)"
JOINT_UNITS = "Angstrom (joint space: xyz in Angstrom + 2 x type probabilities)"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``name``, ``unit``, ``lower_is_better`` (None: information only),
    ``definition`` (one line) and ``function`` (``module:function`` that computes it)."""

    name: str
    unit: str
    lower_is_better: bool | None
    definition: str
    function: str = ""


def _spec(name, unit, lower, definition, function) -> tuple[str, MetricSpec]:
    return name, MetricSpec(name, unit, lower, definition, function)


def _density_specs() -> list[tuple[str, MetricSpec]]:
    out = [
        _spec("nmae", "%", True, "100 * sum|rho_hat - rho| / sum rho per molecule (raw density), mean "
              "over molecules; the primary density metric", "benchmarks.metrics.density:nmae"),
        _spec("electron_count_error", "electrons", True, "|sum(rho_hat) dV - sum(rho) dV| on the same grid, "
              "mean over molecules", "benchmarks.metrics.density:electron_count_error"),
        _spec("dipole_error", "Debye", True, "|mu(rho_hat) - mu(rho)|, mu from the nuclei and the grid "
              "electrons, mean over molecules", "benchmarks.metrics.density:dipole_error"),
    ]
    for t in TRANSFORMS:
        on = f"on {t} values"
        out += [
            _spec(f"ssim_{t}", "dimensionless", False, f"3D SSIM, Gaussian window 11 sigma 1.5, valid region, "
                  f"data range max - min of the reference, {on}", "benchmarks.metrics.ssim:ssim3d"),
            _spec(f"ms_ssim_{t}", "dimensionless", False, f"3D MS-SSIM, window 7, Wang et al. weights truncated "
                  f"to the scales the grid allows and renormalized, {on}", "benchmarks.metrics.ssim:ms_ssim3d"),
            _spec(f"psnr_{t}", "dB", False, f"10 log10(max(reference)^2 / MSE) per volume, {on}; +inf for "
                  "identical grids", "benchmarks.metrics.density:psnr"),
            _spec(f"mae_{t}", _VALUE_UNITS[t], True, f"mean |T(rho_hat) - T(rho)| over voxels, {on}",
                  "benchmarks.metrics.density:mae"),
            _spec(f"lpips_{t}", "dimensionless", True, f"unweighted VGG16 LPIPS on 3 central slices, {on}; "
                  "null without local weights", "benchmarks.metrics.lpips:lpips_set"),
        ]
        for tag, what in (("central_rows", "rows of the 3 central slices, all molecules pooled, unpaired"),
                          ("3dnet", "the fixed random 3D net's 64 features per grid, pooled, unpaired")):
            fn = "benchmarks.metrics.fidelity:fidelity_metrics"
            out += [
                _spec(f"fid_{tag}_{t}", FEATURE_UNITS, True, f"FID (torch-fidelity) between the reference and "
                      f"reconstruction sets, features = {what}, {on}; not seed-compatible", fn),
                _spec(f"kid_{tag}_{t}", FEATURE_UNITS, True, f"KID mean over 100 subsets (poly kernel degree 3), "
                      f"features = {what}, {on}; not seed-compatible", fn),
                _spec(f"kid_std_{tag}_{t}", FEATURE_UNITS, None, f"std of the KID subset estimates, {what}, {on}", fn),
            ]
    seed = "the 3DGrid-VQGAN authors' definition (benchmarks/metrics/seed.py) on log(rho + 1)"
    out += [
        _spec("seed_fid", "dimensionless", True, f"FID between the rows of each axis-0 slice of a molecule's "
              f"reference and its reconstruction (scipy sqrtm), mean over slices then molecules; {seed}",
              "benchmarks.metrics.seed:seed_fid"),
        _spec("seed_kid", "dimensionless", True, f"piq.KID() between the rows of each axis-0 slice pair, mean "
              f"over slices then molecules; {seed}", "benchmarks.metrics.seed:seed_kid"),
        _spec("seed_ssim", "dimensionless", False, f"piq.ssim of the per-tensor min-max normalized volume as an "
              f"X-channel 2D image, data_range 1; {seed}", "benchmarks.metrics.seed:seed_ssim"),
        _spec("seed_ms_ssim", "dimensionless", False, f"piq.multi_scale_ssim (kernel 7) of the same images; "
              f"needs sides >= 97; {seed}", "benchmarks.metrics.seed:seed_ms_ssim"),
        _spec("seed_psnr", "dB", False, f"skimage PSNR per axis-0 slice, data range max - min of both slices, "
              f"mean over slices then molecules; {seed}", "benchmarks.metrics.seed:seed_psnr"),
        _spec("seed_mae", _VALUE_UNITS["log1p"], True, f"mean |log(rho_hat + 1) - log(rho + 1)| over voxels "
              f"(F.l1_loss); {seed}", "benchmarks.metrics.seed:seed_mae"),
    ]
    return out


def _pointcloud_specs() -> list[tuple[str, MetricSpec]]:
    fn = "benchmarks.metrics.pointcloud:summarize"
    return [
        _spec("penalized_mean_deviation", "Angstrom", True, "mean over all atoms of |atom - weight-averaged "
              "pooled position|, an unmatched atom counted at the 0.5 cutoff; the primary point-cloud metric", fn),
        _spec("atomwise_mean_deviation", "Angstrom", True, "mean over matched atoms of |atom - weight-averaged "
              "pooled position|", fn),
        _spec("molwise_mean_deviation", "Angstrom", True, "mean over fully matched molecules of their mean "
              "atom deviation", fn),
        _spec("atomwise_matched_fraction", "dimensionless", False, "matched atoms / all atoms "
              "(matched: |pooled weight - 1| < 0.25)", fn),
        _spec("molwise_matched_fraction", "dimensionless", False, "molecules with every atom matched / "
              "all molecules", fn),
        _spec("paper_atomwise_mean_deviation", JOINT_UNITS, True, "MXtalTools batch_rmsd's per-atom distance "
              "|x - sum w y| (joint space, weighted sum, not normalized), mean over matched atoms", fn),
        _spec("paper_molwise_mean_deviation", JOINT_UNITS, True, "MXtalTools batch_rmsd's per-molecule mean "
              "of that distance, mean over fully matched molecules", fn),
    ]


def _regression_specs() -> list[tuple[str, MetricSpec]]:
    return [
        _spec("mae", "unit of the target", True, "mean over samples of |y_hat - y|", "benchmarks.metrics.regression:mae"),
        _spec("pearson_r", "dimensionless", False, "Pearson correlation of y_hat and y",
              "benchmarks.metrics.regression:pearson_r"),
    ]


def build_metrics() -> dict[str, MetricSpec]:
    """The catalog, built anew (what :data:`METRICS` holds)."""
    return dict(_density_specs() + _pointcloud_specs() + _regression_specs())


METRICS: dict[str, MetricSpec] = build_metrics()


def json_value(x):
    """A metric value for JSON: a finite float as float, +-inf as ``"inf"`` / ``"-inf"``,
    None and NaN as None (JSON has neither infinity nor NaN)."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x
