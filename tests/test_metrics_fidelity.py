"""Tests for FID / KID through torch-fidelity (benchmarks.metrics.fidelity, .features) and
the slice LPIPS (benchmarks.metrics.lpips)."""
import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision
from scipy.ndimage import gaussian_filter
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from benchmarks.metrics import features
from benchmarks.metrics.fidelity import fid, fidelity_metrics, kid
from benchmarks.metrics.lpips import SKIP_MESSAGE, lpips_slices
from tests.test_metrics_density import synthetic_density

EXTRACTORS = [features.SLICE_ROWS, features.NET3D]


def _set(seed, b, n):
    rng = np.random.default_rng(seed)
    return np.stack([synthetic_density(rng, n)[0] for _ in range(b)])


def _features(grids, extractor):
    cls = FEATURE_EXTRACTORS_REGISTRY[extractor]
    fe = cls(extractor, list(cls.get_provided_features_list()))
    with torch.no_grad():
        return fe(torch.log1p(torch.as_tensor(grids)))[0].numpy()


def _frechet(f1, f2):
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def _mmd2_poly(x, y):
    d = x.shape[1]
    kxx, kyy, kxy = [(a @ b.T / d + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y))]
    m = len(x)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.sum() / m**2)


@pytest.fixture(scope="module")
def sets():
    real = _set(0, 80, 24)
    fake = np.stack([gaussian_filter(g, 0.7) for g in _set(1, 80, 24)])
    return real, fake


def test_registered_and_checksum(monkeypatch):
    for name in EXTRACTORS:
        assert name in FEATURE_EXTRACTORS_REGISTRY
    ws = features.net3d_weights()
    assert features.weights_sha256(ws) == features.NET3D_SHA256
    ws[1][0, 0, 0, 0, 0] += 1e-12
    assert features.weights_sha256(ws) != features.NET3D_SHA256
    monkeypatch.setattr(features, "NET3D_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="checksum"):
        features.Net3DExtractor(features.NET3D, ["pool"])


def test_slice_rows_are_raw_rows_at_128():
    g = np.random.default_rng(2).random((1, 128, 128, 128))
    rows = features.central_slice_rows(torch.as_tensor(g)).numpy()
    assert rows.shape == (384, 128)
    np.testing.assert_array_equal(rows[:128], g[0, 64])
    np.testing.assert_array_equal(rows[128:256], g[0, :, 64, :])
    np.testing.assert_array_equal(rows[256:], g[0, :, :, 64])


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_fid_matches_scipy_frechet(sets, extractor):
    real, fake = sets
    if extractor == features.SLICE_ROWS:
        real, fake = real[:12], fake[:12]                       # 4608 rows of length 128
    ref = _frechet(_features(fake, extractor), _features(real, extractor))
    got = fid(real, fake, extractor=extractor)
    assert ref > 1e-3
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_kid_matches_direct_mmd(sets, extractor):
    real, fake = sets
    if extractor == features.SLICE_ROWS:
        real, fake = real[:3], fake[:3]                         # 1152 rows each
    else:
        real, fake = real[:40], fake[:40]
    fr, ff = _features(real, extractor), _features(fake, extractor)
    mean, std = kid(real, fake, extractor=extractor, kid_subsets=1, kid_subset_size=len(fr))
    assert mean == pytest.approx(_mmd2_poly(ff, fr), rel=1e-9, abs=1e-12)
    assert std == 0.0
    assert mean > 0


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_fid_identity(sets, extractor):
    # torch-fidelity takes sqrt(eigvals(S1 S2)); for rank-deficient covariances (slice rows
    # interpolated from 24 to 128 samples have rank <= 24) the round-off is ~1e-7 tr(S), so the
    # documented tolerance is |FID(X, X)| <= 1e-6 tr(S).
    real = sets[0][:12] if extractor == features.SLICE_ROWS else sets[0][:40]
    tr = np.trace(np.cov(_features(real, extractor), rowvar=False))
    assert abs(fid(real, real, extractor=extractor)) <= 1e-6 * tr


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_fid_blur_monotonic(extractor):
    n_grids = 8 if extractor == features.SLICE_ROWS else 40
    real = _set(5, n_grids, 24)
    vals = [fid(real, np.stack([gaussian_filter(g, s) for g in real]), extractor=extractor)
            for s in (0.5, 1.0, 2.0, 3.0)]
    assert all(np.diff(vals) > 0), vals


def test_kid_defaults_and_mixed_shapes():
    a = [synthetic_density(np.random.default_rng(i), n)[0] for i, n in enumerate((24, 28, 24))]
    b = [gaussian_filter(g, 1.5) for g in a]
    r = fidelity_metrics(a, b, kid_subsets=5)
    assert r["extractor"] == features.SLICE_ROWS and r["transform"] == "log1p"
    assert r["fid"] > 0 and r["kid_mean"] > 0 and r["kid_std"] >= 0
    with pytest.raises(ValueError):
        fid(a, b, extractor="inception")


def test_lpips_skips_without_weights(monkeypatch):
    monkeypatch.delenv("DENSEGEN_VGG16_WEIGHTS", raising=False)
    g = _set(6, 1, 24)
    r = lpips_slices(g, g)
    assert r.skipped and r.value is None
    assert r.message == SKIP_MESSAGE


def test_lpips_with_local_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    trunk = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    path = tmp_path / "vgg16.pt"
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, path)
    real = _set(7, 2, 24)
    same = lpips_slices(real, real, vgg16_weights_path=str(path))
    assert not same.skipped and same.value == pytest.approx(0.0, abs=1e-12)
    monkeypatch.setenv("DENSEGEN_VGG16_WEIGHTS", str(path))
    blurred = np.stack([gaussian_filter(g, 2.0) for g in real])
    diff = lpips_slices(real, blurred)
    assert diff.variant == "lpips-vgg16-unweighted"
    assert 0.0 < diff.value < 5.0 * 2  # 5 layers, each term <= 4 for unit vectors
