"""Tests for the pooled FID / KID through torch-fidelity (benchmarks.metrics.fidelity,
.features) and the slice LPIPS (benchmarks.metrics.lpips)."""
import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision
from scipy.ndimage import gaussian_filter
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from benchmarks.metrics import features
from benchmarks.metrics.fidelity import GridDataset, fid, fidelity_metrics, kid
from benchmarks.metrics.lpips import SKIP_MESSAGE, lpips_set, lpips_slices, lpips_status
from tests.test_metrics_density import synthetic_density

EXTRACTORS = [features.CENTRAL_ROWS, features.NET3D]


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
    for name in EXTRACTORS + [features.SLICE_ROWS]:
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
    if extractor == features.CENTRAL_ROWS:
        real, fake = real[:12], fake[:12]                       # 4608 rows of length 128
    ref = _frechet(_features(fake, extractor), _features(real, extractor))
    got = fid(real, fake, extractor=extractor)
    assert ref > 1e-3
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_kid_matches_direct_mmd(sets, extractor):
    real, fake = sets
    if extractor == features.CENTRAL_ROWS:
        real, fake = real[:3], fake[:3]                         # 1152 rows each
    else:
        real, fake = real[:40], fake[:40]
    fr, ff = _features(real, extractor), _features(fake, extractor)
    mean, std = kid(real, fake, extractor=extractor, kid_subsets=1, kid_subset_size=len(fr))
    assert mean == pytest.approx(_mmd2_poly(ff, fr), rel=1e-9, abs=1e-12)
    assert std == 0.0
    assert mean > 0


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_identical_sets_are_exactly_zero(sets, extractor):
    real = sets[0][:12] if extractor == features.CENTRAL_ROWS else sets[0][:40]
    assert fid(real, real.copy(), extractor=extractor) == 0.0
    assert kid(real, [g for g in real], extractor=extractor, kid_subsets=5) == (0.0, 0.0)
    # computed (a change below float64 resolution of the features), torch-fidelity takes
    # sqrt(eigvals(S1 S2)); for rank-deficient covariances (slice rows interpolated from 24 to
    # 128 samples have rank <= 24) the round-off is ~1e-7 tr(S): why identity is special-cased
    tr = np.trace(np.cov(_features(real, extractor), rowvar=False))
    near = real * (1 + 1e-13)
    assert abs(fid(real, near, extractor=extractor)) <= 1e-6 * tr
    assert fid(real, near, extractor=extractor) != 0.0


def test_legacy_extractor_name_is_the_same_extractor(sets):
    real, fake = sets[0][:4], sets[1][:4]
    a = fidelity_metrics(real, fake, features.CENTRAL_ROWS, kid_subsets=3)
    b = fidelity_metrics(real, fake, features.SLICE_ROWS, kid_subsets=3)
    assert (a["fid"], a["kid_mean"]) == (b["fid"], b["kid_mean"])


def test_grid_dataset_is_lazy_float64_and_checks():
    grids = [np.full((4, 5, 6), 0.5, np.float16), np.zeros((3, 3, 3), np.float16)]
    ds = GridDataset(grids, "log1p")
    assert len(ds) == 2 and not ds.same_shape()
    item = ds[0]
    assert item.dtype == torch.float64 and item.shape == (4, 5, 6)
    assert float(item[0, 0, 0]) == pytest.approx(np.log1p(0.5))
    assert ds.grids[0] is grids[0]                              # not converted up front
    with pytest.raises(ValueError):
        GridDataset([], "log1p")
    with pytest.raises(ValueError):
        GridDataset(grids, "sqrt")
    with pytest.raises(ValueError, match="2 grids"):
        fidelity_metrics(_set(8, 1, 24), _set(9, 2, 24))


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_fid_blur_monotonic(extractor):
    n_grids = 8 if extractor == features.CENTRAL_ROWS else 40
    real = _set(5, n_grids, 24)
    vals = [fid(real, np.stack([gaussian_filter(g, s) for g in real]), extractor=extractor)
            for s in (0.5, 1.0, 2.0, 3.0)]
    assert all(np.diff(vals) > 0), vals


def test_kid_defaults_and_mixed_shapes():
    a = [synthetic_density(np.random.default_rng(i), n)[0] for i, n in enumerate((24, 28, 24))]
    b = [gaussian_filter(g, 1.5) for g in a]
    r = fidelity_metrics(a, b, kid_subsets=5)
    assert r["extractor"] == features.CENTRAL_ROWS and r["transform"] == "log1p"
    assert r["fid"] > 0 and r["kid_mean"] > 0 and r["kid_std"] >= 0
    with pytest.raises(ValueError):
        fid(a, b, extractor="inception")


def test_lpips_skips_without_weights(tmp_path):
    g = _set(6, 1, 24)
    for path in (None, str(tmp_path / "missing.pt")):
        r = lpips_slices(g, g, vgg16_weights_path=path)
        assert r.skipped and r.value is None
        assert r.message == SKIP_MESSAGE
        assert lpips_status(path) == {"skipped": True, "message": SKIP_MESSAGE}
        assert lpips_set([g[0]], [g[0]], path) is None


def test_lpips_with_local_weights(tmp_path):
    torch.manual_seed(0)
    trunk = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    path = tmp_path / "vgg16.pt"
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, path)
    real = _set(7, 2, 24)
    same = lpips_slices(real, real.copy(), vgg16_weights_path=str(path))
    assert same.skipped is False and same.value == 0.0
    status = lpips_status(str(path))
    assert status["skipped"] is False and str(path) in status["message"]
    blurred = np.stack([gaussian_filter(g, 2.0) for g in real])
    diff = lpips_slices(real, blurred, vgg16_weights_path=str(path))
    assert diff.variant == "lpips-vgg16-unweighted"
    assert 0.0 < diff.value < 5.0 * 2  # 5 layers, each term <= 4 for unit vectors
    # lpips_set: mean over pairs of mixed shapes, float16 inputs, chunked
    other = _set(8, 1, 20)[0]
    pairs_r = [real[0].astype(np.float16), other, real[1]]
    pairs_f = [blurred[0].astype(np.float16), gaussian_filter(other, 2.0), blurred[1]]
    per = [lpips_slices(r.astype(np.float64), f.astype(np.float64), vgg16_weights_path=str(path)).value
           for r, f in zip(pairs_r, pairs_f)]
    got = lpips_set(pairs_r, pairs_f, str(path), chunk=2)
    assert got == pytest.approx(np.mean(per), rel=1e-5)
    assert lpips_set(pairs_r, pairs_r, str(path)) == 0.0
    with pytest.raises(ValueError):
        lpips_set(pairs_r, pairs_f[:2], str(path))


# --------------------------------------------------------------------------- pinned behaviour
def test_net3d_features_are_frozen():
    """densegen-3dnet-v1 is versioned: its features for fixed inputs must not change (area
    resize for sides >= 32, trilinear below; float32 convolutions)."""
    fe = features.Net3DExtractor(features.NET3D, ["pool"])
    golden = {
        40: ([0.0110052712, 0.00963028334, 0.00140242104, 0.0125802075, 0.330785632, 0.142824009,
              0.29982087], 5.040580522, 0.8750812287),
        24: ([0.0248172712, 0.0230514072, 0.00366309704, 0.0329579376, 0.656086087, 0.269593775,
              0.616400301], 11.34546841, 4.182981683),
    }
    # a grid with one side below 32 takes the trilinear path even if the others are larger
    import torch.nn.functional as F

    g = torch.log1p(torch.as_tensor(synthetic_density(np.random.default_rng(3), 40)[0][8:32]))[None]
    with torch.no_grad():
        direct = fe(g)[0]
        via = fe(F.interpolate(g[:, None], size=(32, 32, 32), mode="trilinear", align_corners=False)[:, 0])[0]
    torch.testing.assert_close(direct, via, rtol=1e-5, atol=1e-7)
    for n, (picked, total, squares) in golden.items():
        g = synthetic_density(np.random.default_rng(3), n)[0]
        with torch.no_grad():
            f = fe(torch.log1p(torch.as_tensor(g))[None])[0]
        assert f.dtype == torch.float64 and f.shape == (1, 64)
        f = f[0].numpy()
        np.testing.assert_allclose(f[[0, 5, 17, 31, 32, 40, 63]], picked, rtol=1e-5)
        assert f.sum() == pytest.approx(total, rel=1e-6)
        assert (f**2).sum() == pytest.approx(squares, rel=1e-6)


def test_central_slice_rows_layout_and_resize():
    rng = np.random.default_rng(4)
    g = torch.as_tensor(rng.random((2, 20, 24, 28)), dtype=torch.float32)
    rows = features.central_slice_rows(g)
    assert rows.dtype == torch.float64 and rows.shape == (2 * 384, 128)
    import torch.nn.functional as F

    for b in range(2):
        planes = (g[b, 10], g[b, :, 12], g[b, :, :, 14])
        for k, p in enumerate(planes):
            want = F.interpolate(p[None, None].double(), size=(128, 128), mode="bilinear",
                                 align_corners=False)[0, 0]
            got = rows[b * 384 + k * 128:b * 384 + (k + 1) * 128]
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="expected a"):
        features.central_slice_rows(g[0])
    with pytest.raises(ValueError, match="expected a"):
        features.central_slice_rows(g.numpy())


def test_defaults_are_the_documented_torch_fidelity_call(sets):
    """fidelity_metrics' defaults = KID 100 subsets of min(1000, rows) features, poly kernel
    degree 3, coef0 1, gamma 1/dim, rng seed 2020, on log1p values."""
    import torch_fidelity

    real, fake = sets[0][:6], sets[1][:6]
    got = fidelity_metrics(real, fake)
    want = torch_fidelity.calculate_metrics(
        input1=GridDataset(list(fake), "log1p"), input2=GridDataset(list(real), "log1p"),
        feature_extractor=features.CENTRAL_ROWS, fid=True, kid=True, kid_subsets=100,
        kid_subset_size=1000, kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1.0, rng_seed=2020, batch_size=16, cuda=False, cache=False,
        save_cpu_ram=True, verbose=False)
    assert got["fid"] == pytest.approx(want["frechet_inception_distance"], rel=1e-12)
    assert got["kid_mean"] == pytest.approx(want["kernel_inception_distance_mean"], rel=1e-12)
    assert got["kid_std"] == pytest.approx(want["kernel_inception_distance_std"], rel=1e-12)
    # 3dnet: one feature vector per grid, so the subset is all 6 grids
    got3 = fidelity_metrics(real, fake, features.NET3D, "raw", kid_gamma=0.5, kid_degree=2, kid_coef0=0.5)
    want3 = torch_fidelity.calculate_metrics(
        input1=GridDataset(list(fake), "raw"), input2=GridDataset(list(real), "raw"),
        feature_extractor=features.NET3D, fid=True, kid=True, kid_subsets=100, kid_subset_size=6,
        kid_kernel="poly", kid_kernel_poly_degree=2, kid_kernel_poly_gamma=0.5, kid_kernel_poly_coef0=0.5,
        rng_seed=2020, batch_size=16, cuda=False, cache=False, save_cpu_ram=True, verbose=False)
    assert got3["kid_mean"] == pytest.approx(want3["kernel_inception_distance_mean"], rel=1e-12)
    assert got3["fid"] == pytest.approx(want3["frechet_inception_distance"], rel=1e-12)
    # the KID subset is min(1000, rows of the real set, rows of the fake set)
    for nr, nf in ((3, 2), (2, 3)):
        got_k = fidelity_metrics(real[:nr], fake[:nf], kid_subsets=2)["kid_mean"]
        want_k = torch_fidelity.calculate_metrics(
            input1=GridDataset(list(fake[:nf]), "log1p"), input2=GridDataset(list(real[:nr]), "log1p"),
            feature_extractor=features.CENTRAL_ROWS, kid=True, kid_subsets=2, kid_subset_size=768,
            rng_seed=2020, batch_size=16, cuda=False, cache=False, save_cpu_ram=True, verbose=False)
        assert got_k == pytest.approx(want_k["kernel_inception_distance_mean"], rel=1e-12)
    assert fid(real, fake, transform="raw") == pytest.approx(
        fidelity_metrics(real, fake, transform="raw")["fid"], rel=1e-12)
    assert kid(real, fake, transform="raw")[0] == pytest.approx(
        fidelity_metrics(real, fake, transform="raw")["kid_mean"], rel=1e-12)


def test_tensor_and_list_inputs_agree(sets):
    real, fake = sets[0][:3], sets[1][:3]
    a = fidelity_metrics(real, fake, kid_subsets=3)
    b = fidelity_metrics(torch.as_tensor(real), torch.as_tensor(fake), kid_subsets=3)
    c = fidelity_metrics(list(real), [torch.as_tensor(x) for x in fake], kid_subsets=3)
    assert a["fid"] == b["fid"] == c["fid"] and a["kid_mean"] == b["kid_mean"] == c["kid_mean"]
    with pytest.raises(ValueError, match="2 grids"):
        fidelity_metrics(torch.as_tensor(real[0]), torch.as_tensor(fake[0]))
    with pytest.raises(ValueError, match="2 grids"):
        fidelity_metrics(real[0], fake[0])
    assert GridDataset(list(real)).transform == "log1p"
    mixed = [fake[0], synthetic_density(np.random.default_rng(5), 28)[0]]   # one set mixed shapes
    assert fidelity_metrics(real[:2], mixed, kid_subsets=2)["fid"] > 0


def _ref_lpips(trunk, real, fake, transform):
    """Unweighted LPIPS as the lpips module documents it, computed slice by slice here."""
    import torch.nn.functional as F

    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    f = np.log1p if transform == "log1p" else (lambda a: a)
    r, k = f(real), f(fake)
    vals = []
    for b in range(len(r)):
        lo, hi = r[b].min(), r[b].max()
        for axis in range(3):
            taps = []
            for g in (r[b], k[b]):
                sl = np.take(g, g.shape[axis] // 2, axis=axis)
                x = torch.tensor(2 * (sl - lo) / (hi - lo) - 1, dtype=torch.float32)[None, None]
                x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
                x = (x.expand(1, 3, 64, 64) - shift) / scale
                out = []
                with torch.no_grad():
                    for i, layer in enumerate(trunk):
                        x = layer(x)
                        if i in (3, 8, 15, 22, 29):
                            out.append(x / (x.norm(dim=1, keepdim=True) + 1e-10))
                taps.append(out)
            vals.append(sum(float(((a - c) ** 2).sum(1).mean()) for a, c in zip(*taps)))
    return float(np.mean(vals))


def test_lpips_matches_its_definition(tmp_path):
    torch.manual_seed(1)
    trunk = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"]).eval()
    path = tmp_path / "vgg16.pt"
    torch.save(trunk.state_dict(), path)
    real = 0.05 * _set(10, 2, 24)                               # log1p range below 1
    real = real + np.array([0.0, 0.02])[:, None, None, None]     # per-grid minima differ
    fake = np.stack([0.8 * gaussian_filter(g, 1.5) for g in real])
    for transform in ("log1p", "raw"):
        got = lpips_slices(real, fake, vgg16_weights_path=str(path), transform=transform).value
        assert got == pytest.approx(_ref_lpips(trunk, real, fake, transform), rel=1e-6)
    from benchmarks.metrics.lpips import TAPS, _taps

    assert len(_taps(trunk, torch.zeros(1, 3, 64, 64))) == len(TAPS) == 5
    # lpips_set pools same-shape pairs per chunk and weights groups by their size
    other = _set(11, 1, 20)[0]
    pairs_r, pairs_f = [real[0], real[1], other], [fake[0], fake[1], 0.5 * other]
    per = [lpips_slices(r, f, vgg16_weights_path=str(path), transform="raw").value
           for r, f in zip(pairs_r, pairs_f)]
    assert lpips_set(pairs_r, pairs_f, str(path), transform="raw", chunk=3) == pytest.approx(np.mean(per), rel=1e-5)


def test_register_is_idempotent():
    saved = {k: FEATURE_EXTRACTORS_REGISTRY.pop(k) for k in EXTRACTORS + [features.SLICE_ROWS]}
    try:
        features.register()
        features.register()
        assert FEATURE_EXTRACTORS_REGISTRY[features.CENTRAL_ROWS] is features.SliceRowsExtractor
        assert FEATURE_EXTRACTORS_REGISTRY[features.SLICE_ROWS] is features.SliceRowsExtractor
        assert FEATURE_EXTRACTORS_REGISTRY[features.NET3D] is features.Net3DExtractor
    finally:
        FEATURE_EXTRACTORS_REGISTRY.update(saved)


def test_a_disk_backed_set_is_read_grid_by_grid_not_materialized(sets, tmp_path):
    """The density task passes its float16 memmap stores: converting one whole to an array
    held 8.4 GB in memory on a 1,000-grid run. Indexing must be the only access."""
    from benchmarks.task_density import GridStore

    real, fake = sets[0][:4], sets[1][:4]

    class Store(GridStore):
        def __array__(self, *args, **kwargs):
            raise AssertionError("the whole store was converted to an array")

    stores = []
    for name, grids in (("real", real), ("fake", fake)):
        store = Store(tmp_path, name, len(grids), grids.shape[1:])
        store.array[:] = grids.astype(np.float16)
        stores.append(store)
    got = fidelity_metrics(stores[0], stores[1], kid_subsets=3)
    want = fidelity_metrics(real.astype(np.float16), fake.astype(np.float16), kid_subsets=3)
    assert (got["fid"], got["kid_mean"]) == (want["fid"], want["kid_mean"])
    assert isinstance(stores[0][0], np.memmap)  # items are views of the file
