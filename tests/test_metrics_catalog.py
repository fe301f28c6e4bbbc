"""The metric catalog (benchmarks.metrics.catalog) and the identity check over every density
metric it lists: identical grids give exactly the perfect value."""
import importlib
import json
import math

import numpy as np
import pytest
import torch
import torchvision

from benchmarks.metrics import METRICS, json_value
from benchmarks.metrics.catalog import (
    DENSITY_PRIMARY, FEATURE_UNITS, JOINT_UNITS, POINTCLOUD_PRIMARY, MetricSpec, build_metrics,
)
from tests.test_metrics_seed import molecule_grid

UNITS = {"%", "electrons", "Debye", "Angstrom", "dB", "dimensionless", "electrons/Bohr^3",
         "log(1 + electrons/Bohr^3)", "dimensionless (feature-space units)", "unit of the target",
         "Angstrom (joint space: xyz in Angstrom + 2 x type probabilities)"}


def _expected(name):
    """(unit, lower_is_better, module) each metric must have."""
    higher = ("ssim_", "ms_ssim_", "psnr_", "seed_ssim", "seed_ms_ssim", "seed_psnr", "pearson_r",
              "atomwise_matched_fraction", "molwise_matched_fraction")
    lower = None if name.startswith("kid_std_") else not name.startswith(higher)
    if name == "nmae":
        return "%", True, "density"
    if name == "electron_count_error":
        return "electrons", True, "density"
    if name == "dipole_error":
        return "Debye", True, "density"
    if name in ("mae", "pearson_r"):
        return ("unit of the target" if name == "mae" else "dimensionless"), lower, "regression"
    if name.startswith(("psnr_", "seed_psnr")):
        return "dB", False, "seed" if name.startswith("seed") else "density"
    if name == "mae_raw":
        return "electrons/Bohr^3", True, "density"
    if name in ("mae_log1p", "seed_mae"):
        return "log(1 + electrons/Bohr^3)", True, "seed" if name.startswith("seed") else "density"
    if name.startswith(("fid_", "kid_")):
        return FEATURE_UNITS, lower, "fidelity"
    if name.startswith("seed_"):
        return "dimensionless", lower, "seed"
    if name.startswith(("ssim_", "ms_ssim_")):
        return "dimensionless", False, "ssim"
    if name.startswith("lpips_"):
        return "dimensionless", True, "lpips"
    if name.startswith("paper_"):
        return JOINT_UNITS, True, "pointcloud"
    if name.endswith("_fraction"):
        return "dimensionless", False, "pointcloud"
    return "Angstrom", True, "pointcloud"


def test_every_metric_has_unit_direction_definition_and_function():
    fresh = build_metrics()
    assert fresh == METRICS
    assert DENSITY_PRIMARY == "nmae" and POINTCLOUD_PRIMARY == "penalized_mean_deviation"
    assert DENSITY_PRIMARY in fresh and POINTCLOUD_PRIMARY in fresh
    assert len(fresh) == 3 + 2 * 11 + 6 + 7 + 2
    for name, spec in fresh.items():
        assert isinstance(spec, MetricSpec) and spec.name == name
        unit, lower, module = _expected(name)
        assert (spec.unit, spec.lower_is_better) == (unit, lower), name
        assert spec.unit in UNITS
        assert len(spec.definition) > 15
        mod, fn = spec.function.split(":")
        assert mod == f"benchmarks.metrics.{module}", (name, spec.function)
        assert callable(getattr(importlib.import_module(mod), fn)), spec.function
    for t in ("raw", "log1p"):
        assert "not seed-compatible" in fresh[f"fid_central_rows_{t}"].definition
        assert fresh[f"mae_{t}"].function.endswith(":mae")
    for k in ("seed_fid", "seed_kid", "seed_ssim", "seed_ms_ssim", "seed_psnr", "seed_mae", "nmae",
              "electron_count_error", "dipole_error"):
        assert fresh[k].function.endswith(":" + k)
    assert not any("slice_rows" in k for k in fresh)            # the old, misleading name


def test_json_value():
    assert json_value(1.5) == 1.5 and json_value(np.float32(2.0)) == 2.0
    assert json_value(math.inf) == "inf" and json_value(-math.inf) == "-inf"
    assert json_value(math.nan) is None and json_value(None) is None
    json.dumps([json_value(v) for v in (1.0, math.inf, math.nan)], allow_nan=False)


def _perfect(name):
    if name.startswith(("psnr", "seed_psnr")):
        return math.inf
    if name.startswith(("ssim", "ms_ssim", "seed_ssim", "seed_ms_ssim")):
        return 1.0
    return 0.0


@pytest.fixture(scope="module")
def grids():
    rng = np.random.default_rng(0)
    g = np.stack([molecule_grid(rng, (12, 100, 100)) for _ in range(2)])
    return g.astype(np.float16).astype(np.float64)             # the task's float16 grids


def test_identity_gives_exactly_the_perfect_value_on_every_density_metric(grids, tmp_path):
    from benchmarks.metrics import density as dm
    from benchmarks.metrics import seed, ssim
    from benchmarks.metrics.features import CENTRAL_ROWS, NET3D
    from benchmarks.metrics.fidelity import fidelity_metrics
    from benchmarks.metrics.lpips import lpips_set

    torch.manual_seed(0)
    trunk = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    vgg = tmp_path / "vgg16.pt"
    torch.save(trunk.state_dict(), vgg)
    ref, rec = grids, grids.copy()
    axes, origin = np.eye(3) * 0.25, np.zeros(3)
    z, pos = [6, 8], [[0.5, 12.0, 12.0], [1.5, 12.0, 12.0]]
    got = {
        "nmae": dm.nmae(rec, ref),
        "electron_count_error": dm.electron_count_error(rec, ref, axes),
        "dipole_error": max(dm.dipole_error(rec[i], ref[i], origin, axes, z, pos) for i in range(2)),
    }
    for t in ("raw", "log1p"):
        got[f"ssim_{t}"] = ssim.ssim3d(rec, ref, transform=t)
        got[f"ms_ssim_{t}"] = ssim.ms_ssim3d(rec, ref, transform=t)
        got[f"psnr_{t}"] = dm.psnr(rec, ref, transform=t)
        got[f"mae_{t}"] = dm.mae(rec, ref, transform=t)
        got[f"lpips_{t}"] = lpips_set(list(ref), list(rec), str(vgg), transform=t)
        for tag, ex in (("central_rows", CENTRAL_ROWS), ("3dnet", NET3D)):
            f = fidelity_metrics(list(ref), list(rec), ex, t, kid_subsets=5)
            got[f"fid_{tag}_{t}"], got[f"kid_{tag}_{t}"], got[f"kid_std_{tag}_{t}"] = (
                f["fid"], f["kid_mean"], f["kid_std"])
    got.update(seed.seed_metrics(rec, ref))
    density = [k for k, s in METRICS.items() if s.function.split(":")[0].split(".")[-1]
               in ("density", "ssim", "seed", "fidelity", "lpips")]
    assert sorted(got) == sorted(density)
    for k in density:
        assert got[k] == _perfect(k), (k, got[k])
