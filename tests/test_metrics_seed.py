"""Tests for benchmarks.metrics.seed (the 3DGrid-VQGAN authors' metric definitions), each
against an independent reference written here (numpy / scipy / scikit-image), plus the
properties the benchmark relies on."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d, gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmarks.metrics import seed
from benchmarks.metrics.seed import (
    MS_SSIM_MIN_SIDE, seed_fid, seed_kid, seed_mae, seed_metrics, seed_ms_ssim, seed_normalize,
    seed_psnr, seed_ssim,
)

PIQ_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)   # piq's defaults, used as given


def molecule_grid(rng, shape, spacing=0.25, n_atoms=None):
    """Molecule-like density (e/Bohr^3) on a grid of ``shape``: Slater-like cores plus Gaussian
    valence blobs at random atom positions inside the box."""
    k = int(rng.integers(3, 7)) if n_atoms is None else n_atoms
    axes = [np.arange(n) * spacing for n in shape]
    r = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    box = np.array([(n - 1) * spacing for n in shape])
    rho = np.zeros(shape)
    for _ in range(k):
        c = rng.uniform(0.2 * box, 0.8 * box)
        z = rng.choice([1.0, 6.0, 7.0, 8.0])
        d = np.linalg.norm(r - c, axis=-1)
        a = 2.0 + 0.3 * z
        rho += 0.5 * z * a**3 / (8 * np.pi) * np.exp(-a * d)
        rho += 0.5 * z * np.exp(-d**2 / 1.62) / (1.62 * np.pi) ** 1.5
    return rho


def _set(seed_, b, shape):
    rng = np.random.default_rng(seed_)
    return np.stack([molecule_grid(rng, shape) for _ in range(b)])


def _blur(grids, sigma=1.0):
    return np.stack([gaussian_filter(g, sigma) for g in grids])


@pytest.fixture(scope="module")
def big():
    """3 molecules on (6, 128, 128) grids (6 axis-0 slices of 128 x 128: MS-SSIM's 5 scales)."""
    return _set(0, 3, (6, 128, 128))


@pytest.fixture(scope="module")
def small():
    """4 molecules on anisotropic (10, 24, 20) grids."""
    return _set(1, 4, (10, 24, 20))


# --------------------------------------------------------------------------- references
def _ref_fid_rows(a, b):
    """FID of two row sets through the eigenvalues of S1 S2 (no sqrtm)."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ev = np.linalg.eigvals(s1 @ s2).real
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev.clip(0)).sum()


def _ref_mmd2_poly(x, y):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018, eq. 3)."""
    d, m = x.shape[1], len(x)
    kxx, kyy, kxy = [(u @ v.T / d + 1.0) ** 3 for u, v in ((x, x), (y, y), (x, y))]
    return ((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.sum() / m**2)


def _per_slice(fn, pred, target):
    """mean over molecules of the mean over axis-0 slices of fn(ref slice, rec slice), log1p."""
    lp, lt = np.log1p(pred), np.log1p(target)
    return np.array([np.mean([fn(lt[b, i], lp[b, i]) for i in range(lt.shape[1])]) for b in range(len(lt))])


def _minmax(v):
    return (v - v.min()) / (v.max() - v.min())


def _gauss(win, sigma):
    x = np.arange(win) - (win - 1) / 2
    g = np.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def _ssim_cs_2d(x, y, win=7, sigma=1.5):
    """Means over the valid region of the SSIM and cs maps of two 2D images in [0, 1]."""
    g, r = _gauss(win, sigma), win // 2

    def f(a):
        a = correlate1d(correlate1d(a, g, axis=0, mode="nearest"), g, axis=1, mode="nearest")
        return a[r:-r, r:-r]

    c1, c2 = 0.01**2, 0.03**2
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    return ((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs).mean(), cs.mean()


def _ref_ms_ssim_volume(p, t):
    """MS-SSIM of two log volumes as X-channel images: per channel, 5 scales (2x2 block means;
    sides stay even from 128), cs at scales 1-4, SSIM at 5, the weights as piq's defaults; the
    mean over channels."""
    a, b = _minmax(t), _minmax(p)
    vals = []
    for c in range(a.shape[0]):
        x, y, out = a[c], b[c], 1.0
        for j, w in enumerate(PIQ_MS_SSIM_WEIGHTS):
            s, cs = _ssim_cs_2d(x, y)
            out *= max(s if j == 4 else cs, 0.0) ** w
            n0, n1 = x.shape
            x = x.reshape(n0 // 2, 2, n1 // 2, 2).mean((1, 3))
            y = y.reshape(n0 // 2, 2, n1 // 2, 2).mean((1, 3))
        vals.append(out)
    return float(np.mean(vals))


# --------------------------------------------------------------------------- identity
def test_identical_grids_give_exactly_the_perfect_values(big):
    m = seed_metrics(big, big.copy())
    assert m == {"seed_fid": 0.0, "seed_kid": 0.0, "seed_ssim": 1.0, "seed_ms_ssim": 1.0,
                 "seed_psnr": math.inf, "seed_mae": 0.0}
    per = seed_metrics(big, big, reduction="none")
    assert (per["seed_fid"] == 0).all() and (per["seed_kid"] == 0).all()
    assert (per["seed_ssim"] == 1).all() and (per["seed_ms_ssim"] == 1).all()
    assert np.isposinf(per["seed_psnr"]).all() and (per["seed_mae"] == 0).all()


def test_unguarded_values_are_not_exact_for_identical_slices(small):
    """Why the guard: computed, piq's KID of a slice with itself is negative (unbiased estimate)."""
    t = torch.log1p(torch.as_tensor(small[0, 3]))
    import piq

    raw = float(piq.KID()(t, t))
    assert raw < 0
    assert seed.kid_rows(t, t) == 0.0 and seed.kid_rows(t, t + 1e-9) < 0


# --------------------------------------------------------------------------- definitions
def test_fid_is_paired_per_axis0_slice_over_rows(small):
    t = small
    p = _blur(small, 1.0) * 1.2
    got = seed_fid(p, t, reduction="none")
    ref = _per_slice(_ref_fid_rows, p, t)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert seed_fid(p, t) == pytest.approx(ref.mean(), rel=1e-6)
    assert (ref > 1e-4).all()
    # another axis, or columns as samples, is another number
    alt = _per_slice(_ref_fid_rows, p.transpose(0, 2, 1, 3), t.transpose(0, 2, 1, 3))
    cols = _per_slice(lambda a, b: _ref_fid_rows(a.T, b.T), p, t)
    assert abs(alt.mean() / ref.mean() - 1) > 0.05 and abs(cols.mean() / ref.mean() - 1) > 0.05


def test_kid_is_piq_unbiased_mmd_per_slice(small):
    t = small
    p = _blur(small, 1.5) * 1.5
    state = torch.get_rng_state()
    got = seed_kid(p, t, reduction="none")
    assert torch.equal(torch.get_rng_state(), state)          # caller's RNG untouched
    ref = _per_slice(_ref_mmd2_poly, p, t)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-15)
    assert (ref > 0).all()
    assert seed_kid(p, t) == pytest.approx(ref.mean(), rel=1e-9)
    np.testing.assert_array_equal(seed_kid(p, t, reduction="none"), got)   # reproducible


def test_ssim_is_piq_on_normalized_channel_images(big):
    t, p = big, _blur(big, 1.0)
    got = seed_ssim(p, t, reduction="none")
    for b in range(len(t)):
        a, c = _minmax(np.log1p(t[b])), _minmax(np.log1p(p[b]))
        ref = np.mean([structural_similarity(a[i], c[i], gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=1.0)
                       for i in range(a.shape[0])])
        assert got[b] == pytest.approx(ref, rel=1e-9)
    assert 0.5 < got.min() < 0.9999


def test_ms_ssim_is_piq_with_unnormalized_default_weights(big):
    t = big
    p = np.expm1(0.8 * np.log1p(_blur(big, 1.5)) + 0.02 * np.log1p(big[::-1]))
    got = seed_ms_ssim(p, t, reduction="none")
    for b in range(len(t)):
        ref = _ref_ms_ssim_volume(np.log1p(p[b]), np.log1p(t[b]))
        assert got[b] == pytest.approx(ref, rel=1e-9)
    assert 0.3 < got.min() < 0.999


def test_ssim_normalizes_each_tensor_on_its_own(big):
    """A reconstruction whose log values are 3x + 0.2 those of the reference scores 1 (the seed's
    per-tensor min-max normalization); the project's own SSIM does not forgive it."""
    from benchmarks.metrics.ssim import ssim3d

    t = big
    p = np.expm1(3.0 * np.log1p(t) + 0.2)
    assert seed_ssim(p, t) == pytest.approx(1.0, abs=1e-9)
    assert seed_ms_ssim(p, t) == pytest.approx(1.0, abs=1e-9)
    assert ssim3d(p, t, transform="log1p", win_size=5) < 0.9


def test_constant_volume_normalizes_to_zeros(small):
    z = seed_normalize(torch.full((3, 12, 12), 0.7, dtype=torch.float64))
    assert z.shape == (1, 3, 12, 12) and (z == 0).all()
    v = seed_ssim(np.zeros_like(small), small)
    assert np.isfinite(v) and v < 0.5


def test_psnr_per_slice_with_range_of_both(small):
    t = small
    p = small * 1.3 + 0.01                                      # pred exceeds the reference's max

    def ref_fn(a, b):
        lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
        return peak_signal_noise_ratio(a, b, data_range=hi - lo)

    ref = _per_slice(ref_fn, p, t)
    np.testing.assert_allclose(seed_psnr(p, t, reduction="none"), ref, rtol=1e-12)
    target_range_only = _per_slice(lambda a, b: peak_signal_noise_ratio(a, b, data_range=a.max() - a.min()), p, t)
    assert (np.abs(ref - target_range_only) > 0.1).all()
    # one exactly reproduced slice makes the seed's PSNR infinite (kept: it is the seed's)
    q = p.copy()
    q[:, 0] = t[:, 0]
    assert np.isposinf(seed_psnr(q, t))


def test_mae_is_log1p_l1(small):
    p = _blur(small, 1.0)
    assert seed_mae(p, small) == pytest.approx(np.abs(np.log1p(p) - np.log1p(small)).mean(), rel=1e-12)


# --------------------------------------------------------------------------- the ranking facts
def test_another_molecules_density_scores_badly_paired_not_pooled():
    """A model that returns molecule i+1's density for molecule i: the seed's paired FID / KID
    rank it far behind a blur; the pooled, unpaired FID / KID cannot see it (same set)."""
    from benchmarks.metrics.fidelity import fidelity_metrics

    t = _set(3, 6, (16, 64, 64))
    wrong = np.roll(t, 1, axis=0)
    blur = _blur(t, 1.0)
    assert seed_fid(wrong, t) > 10 * seed_fid(blur, t)
    assert seed_kid(wrong, t) > 10 * seed_kid(blur, t)
    assert seed_ssim(wrong, t) < seed_ssim(blur, t)
    pooled_wrong = fidelity_metrics(t, wrong, kid_subsets=10)
    pooled_blur = fidelity_metrics(t, blur, kid_subsets=10)
    assert abs(pooled_wrong["fid"]) < 1e-6 < pooled_blur["fid"]
    assert pooled_wrong["kid_mean"] < pooled_blur["kid_mean"]


# --------------------------------------------------------------------------- contract
def test_ms_ssim_needs_97_sides(small):
    assert MS_SSIM_MIN_SIDE == 97
    with pytest.raises(ValueError, match="97"):
        seed_ms_ssim(small, small)
    m = seed_metrics(_blur(small), small)
    assert math.isnan(m["seed_ms_ssim"]) and np.isfinite(m["seed_fid"])
    per = seed_metrics(_blur(small), small, reduction="none")
    assert per["seed_ms_ssim"].shape == (4,) and np.isnan(per["seed_ms_ssim"]).all()


def test_single_grid_and_shape_checks(small):
    assert seed_fid(small[0], small[0]) == 0.0
    assert seed_fid(_blur(small)[1], small[1]) == pytest.approx(seed_fid(_blur(small), small, "none")[1])
    with pytest.raises(ValueError):
        seed_fid(small[:, :, :-1], small)


def test_psnr_identical_constant_slices_is_inf():
    flat = np.full((8, 8), 0.3)
    assert seed.psnr_slice(flat, flat.copy()) == math.inf      # computed, 0 / 0 would be NaN
    assert seed.frechet_rows(flat, flat.copy()) == 0.0


def test_ms_ssim_side_limit_is_on_both_slice_axes():
    rng = np.random.default_rng(9)
    g = np.stack([molecule_grid(rng, (2, 97, 97))])
    assert seed_ms_ssim(_blur(g), g) < 1.0                     # 97 x 97 is the smallest allowed
    tall = np.stack([molecule_grid(rng, (2, 96, 128))])
    with pytest.raises(ValueError, match="seed MS-SSIM"):
        seed_ms_ssim(tall, tall)
    assert math.isnan(seed_metrics(_blur(tall), tall)["seed_ms_ssim"])


def test_seed_metrics_computes_ms_ssim_at_97():
    rng = np.random.default_rng(10)
    g = np.stack([molecule_grid(rng, (2, 97, 97))])
    m = seed_metrics(_blur(g), g)
    assert m["seed_ms_ssim"] == pytest.approx(seed_ms_ssim(_blur(g), g)) and m["seed_ms_ssim"] < 1
