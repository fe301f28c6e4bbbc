"""Tests for benchmarks.metrics.density and benchmarks.metrics.ssim."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from benchmarks.metrics.density import (
    DEBYE_PER_AU, apply_transform, dipole_error, dipole_moment, electron_count,
    electron_count_error, mae, nmae, psnr,
)
from benchmarks.metrics.ssim import ms_ssim3d, ms_ssim_num_scales, ssim3d
from builders.density.schema import ANGSTROM_PER_BOHR

SPACING = 0.3  # Bohr


def synthetic_density(rng, n=32, spacing=SPACING, margin=2.5, n_atoms=None):
    """Molecule-like density (e/Bohr^3) on an n^3 cubic grid: atom-centred exponential
    (Slater-like) cores plus broader Gaussian valence blobs, atoms at least ``margin`` Bohr
    from every face. Returns (grid (n, n, n), origin (3,), axes (3, 3))."""
    box = (n - 1) * spacing
    k = int(rng.integers(3, 7)) if n_atoms is None else n_atoms
    centres = rng.uniform(margin, box - margin, size=(k, 3))
    charges = rng.choice([1.0, 6.0, 7.0, 8.0], size=k)
    x = np.arange(n) * spacing
    r = np.stack(np.meshgrid(x, x, x, indexing="ij"), -1)
    rho = np.zeros((n, n, n))
    for c, z in zip(centres, charges):
        d = np.linalg.norm(r - c, axis=-1)
        a = 2.0 + 0.3 * z                                  # core decay, 1/Bohr
        rho += 0.5 * z * a**3 / (8 * np.pi) * np.exp(-a * d)
        s = 0.9
        rho += 0.5 * z * np.exp(-d**2 / (2 * s**2)) / (2 * np.pi * s**2) ** 1.5
    return rho, np.zeros(3), np.eye(3) * spacing


def _batch(seed=0, b=4, n=32):
    rng = np.random.default_rng(seed)
    return np.stack([synthetic_density(rng, n)[0] for _ in range(b)])


def _blur(batch, sigma):
    return np.stack([gaussian_filter(g, sigma) for g in batch])


def test_identity():
    t = _batch()
    assert ssim3d(t, t) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim3d(t, t) == pytest.approx(1.0, abs=1e-12)
    assert ssim3d(t, t, transform="log1p") == pytest.approx(1.0, abs=1e-12)
    assert ssim3d(t, t) == 1.0 and ms_ssim3d(t, t) == 1.0
    assert ms_ssim3d(t, t, transform="log1p") == 1.0
    assert mae(t, t) == 0.0 and nmae(t, t) == 0.0
    assert psnr(t, t) == np.inf


@pytest.mark.parametrize("shape", [(16, 13, 19), (12, 12, 12)])
def test_ssim_matches_skimage_random(shape):
    rng = np.random.default_rng(1)
    a = rng.random(shape)
    b = np.clip(a + 0.15 * rng.standard_normal(shape), 0, None)
    ref = structural_similarity(b, a, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0)
    assert ssim3d(b, a, data_range=1.0, win_size=11, sigma=1.5) == pytest.approx(ref, abs=1e-12)
    assert 0.1 < ref < 0.99


def test_ssim_matches_skimage_densities_default_range():
    t = _batch(seed=2, b=2, n=24)
    p = _blur(t, 1.0)
    got = ssim3d(p, t, reduction="none")
    for i in range(2):
        ref = structural_similarity(p[i], t[i], gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False,
                                    data_range=t[i].max() - t[i].min())
        assert got[i] == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("transform", ["raw", "log1p"])
def test_blur_monotonic(transform):
    t = _batch(seed=3)
    sig = [0.5, 1.0, 2.0, 3.0]
    blurred = [_blur(t, s) for s in sig]
    s = [ssim3d(p, t, transform=transform) for p in blurred]
    ms = [ms_ssim3d(p, t, transform=transform) for p in blurred]
    ps = [psnr(p, t, transform=transform) for p in blurred]
    ma = [mae(p, t, transform=transform) for p in blurred]
    assert all(np.diff(s) < 0), s
    assert all(np.diff(ms) < 0), ms
    assert all(np.diff(ps) < 0), ps
    assert all(np.diff(ma) > 0), ma
    if transform == "raw":
        nm = [nmae(p, t) for p in blurred]
        assert all(np.diff(nm) > 0), nm
        assert 0 < nm[0] < nm[-1] < 200


def test_known_values():
    t = _batch(seed=4, b=2, n=24)
    assert nmae(1.1 * t, t) == pytest.approx(10.0, rel=1e-12)          # percent
    assert mae(t + 0.02, t) == pytest.approx(0.02, rel=1e-10)
    per = psnr(t + 0.05, t, reduction="none")
    expected = 10 * np.log10(t.reshape(2, -1).max(1) ** 2 / 0.05**2)
    np.testing.assert_allclose(per, expected, rtol=1e-10)
    assert psnr(t + 0.05, t, data_range=2.0) == pytest.approx(10 * np.log10(4 / 0.0025))
    np.testing.assert_allclose(apply_transform(t, "log1p").numpy(), np.log1p(t), rtol=1e-14)
    with pytest.raises(ValueError):
        apply_transform(t, "sqrt")
    with pytest.raises(ValueError):
        mae(t, t[:, :-1])


def test_ms_ssim_scales():
    assert ms_ssim_num_scales((128, 128, 128), 7) == 5
    assert ms_ssim_num_scales((48, 64, 64), 7) == 3
    assert ms_ssim_num_scales((32, 32, 32), 11) == 2
    with pytest.raises(ValueError):
        ms_ssim_num_scales((5, 8, 8), 7)


def _gaussian_blob(n_el, sigma, centre, origin, axes, shape):
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    r = origin + idx @ axes
    d2 = ((r - centre) ** 2).sum(-1)
    return n_el * np.exp(-d2 / (2 * sigma**2)) / (2 * np.pi * sigma**2) ** 1.5


SHEARED = np.array([[0.2, 0.0, 0.0], [0.05, 0.19, 0.0], [0.0, 0.03, 0.21]])


@pytest.mark.parametrize("axes", [np.eye(3) * 0.2, SHEARED])
def test_electron_count_gaussian(axes):
    shape = (40, 40, 40)
    origin = np.array([-4.0, -4.0, -4.0])
    centre = origin + 0.5 * (np.array(shape) - 1) @ axes
    g = _gaussian_blob(10.0, 0.6, centre, origin, axes, shape)
    assert electron_count(g, axes)[0] == pytest.approx(10.0, rel=1e-8)
    assert electron_count_error(1.1 * g, g, axes) == pytest.approx(1.0, rel=1e-8)


def test_dipole_displaced_blob():
    axes, origin, shape = np.eye(3) * 0.2, np.array([-4.0, -4.0, -4.0]), (40, 40, 40)
    nucleus_bohr = np.array([-0.1, 0.2, 0.0])
    shift = np.array([0.3, 0.0, -0.1])                      # electron cloud offset, Bohr
    g = _gaussian_blob(2.0, 0.6, nucleus_bohr + shift, origin, axes, shape)
    mu = dipole_moment(g, origin, axes, [2], [nucleus_bohr * ANGSTROM_PER_BOHR])
    np.testing.assert_allclose(mu, -2.0 * shift * DEBYE_PER_AU, atol=1e-7)
    # neutral: moving origin and nucleus together leaves the dipole unchanged
    off = np.array([1.0, -0.5, 0.4])
    mu2 = dipole_moment(g, origin + off, axes, [2], [(nucleus_bohr + off) * ANGSTROM_PER_BOHR])
    np.testing.assert_allclose(mu2, mu, atol=1e-7)
    # error vs a blob displaced differently: 2 e * |delta shift| in Debye
    g2 = _gaussian_blob(2.0, 0.6, nucleus_bohr + shift + np.array([0.0, 0.1, 0.0]),
                        origin, axes, shape)
    err = dipole_error(g2, g, origin, axes, [2], [nucleus_bohr * ANGSTROM_PER_BOHR])
    assert err == pytest.approx(2 * 0.1 * DEBYE_PER_AU, rel=1e-7)


def test_batch_reduction_none():
    t = _batch(seed=5, b=3, n=24)
    p = _blur(t, 1.0)
    per = mae(p, t, reduction="none")
    assert per.shape == (3,)
    assert mae(p, t) == pytest.approx(per.mean())
    assert mae(p[1], t[1]) == pytest.approx(per[1])
    assert ssim3d(p, t, win_size=7, reduction="none").shape == (3,)


def test_real_nh3_density():
    """Psi4 NH3 density (tests/data/cube, see PROVENANCE.md): electron count and dipole."""
    from pathlib import Path

    from builders.density.cube import read_cube

    c = read_cube(Path(__file__).parent / "data" / "cube" / "cclib_nh3.cube.gz")
    assert electron_count(c.data, c.axes)[0] == pytest.approx(9.973, abs=5e-4)  # SOURCES.md
    mu = dipole_moment(c.data, c.origin, c.axes, c.atoms.numbers,
                       c.atoms.positions * ANGSTROM_PER_BOHR)
    axis = c.atoms.positions[1:].mean(0) - c.atoms.positions[0]       # N -> H3 centroid
    cos = mu @ axis / np.linalg.norm(mu) / np.linalg.norm(axis)
    assert cos > 0.9999                                                # points N -> H side
    assert 1.5 < np.linalg.norm(mu) < 2.1                              # Debye; expt. 1.47
    blurred = [gaussian_filter(c.data, s) for s in (0.5, 1.0, 2.0)]
    s = [ms_ssim3d(b, c.data, transform="log1p") for b in blurred]
    n = [nmae(b, c.data) for b in blurred]
    assert all(np.diff(s) < 0) and all(np.diff(n) > 0)


# --------------------------------------------------------------------------- NMAE
def test_nmae_is_per_sample_percent_mean():
    """Each molecule counts once: a ratio of batch sums would give 100 * 1 / 11 = 9.09 %."""
    rng = np.random.default_rng(7)
    small = synthetic_density(rng, 24)[0]
    big = 10.0 * small[::-1].copy()                           # 10x the electrons
    t = np.stack([small, big])
    p = np.stack([2.0 * small, big])                           # 100 % off, then exact
    np.testing.assert_allclose(nmae(p, t, reduction="none"), [100.0, 0.0], rtol=1e-12)
    assert nmae(p, t) == pytest.approx(50.0, rel=1e-12)
    # the denominator is the reference: swapping the arguments changes the value
    assert nmae(2.0 * small, small) == pytest.approx(100.0, rel=1e-12)
    assert nmae(small, 2.0 * small) == pytest.approx(50.0, rel=1e-12)
    assert nmae(np.zeros_like(small), small) == pytest.approx(100.0, rel=1e-12)


def test_nmae_rejects_empty_reference():
    g = np.zeros((2, 8, 8, 8))
    g[0, 3, 3, 3] = 1.0
    with pytest.raises(ValueError, match="positive"):
        nmae(g + 0.1, g)


# --------------------------------------------------------------------------- MS-SSIM reference
def _np_gauss(win, sigma):
    x = np.arange(win) - (win - 1) / 2
    g = np.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def _np_valid_filter(x, g):
    """Separable Gaussian filtering with scipy, then the valid region only."""
    from scipy.ndimage import correlate1d

    r = len(g) // 2
    for ax in range(x.ndim):
        x = correlate1d(x, g, axis=ax, mode="nearest")
    return x[tuple(slice(r, n - r) for n in x.shape)]


def _np_ssim_cs(x, y, win, sigma, L):
    f = lambda a: _np_valid_filter(a, _np_gauss(win, sigma))  # noqa: E731
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    return float(((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs).mean()), float(cs.mean())


def _np_pool(x):
    s = [n // 2 * 2 for n in x.shape]
    x = x[: s[0], : s[1], : s[2]]
    return x.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean((1, 3, 5))


def _np_ms_ssim(x, y, weights, win=7, sigma=1.5):
    """Textbook MS-SSIM (Wang et al. 2003) in numpy: cs at scales 1..M-1, SSIM at scale M,
    exponents = ``weights`` normalized to sum 1, data range of the full-resolution reference."""
    L = y.max() - y.min()
    w = np.asarray(weights, np.float64) / np.sum(weights)
    out = 1.0
    for j, wj in enumerate(w):
        s, cs = _np_ssim_cs(x, y, win, sigma, L)
        out *= max(s if j == len(w) - 1 else cs, 0.0) ** wj
        x, y = _np_pool(x), _np_pool(y)
    return out


@pytest.mark.parametrize("shape", [(32, 32, 32), (20, 29, 33)])
def test_ms_ssim_matches_numpy_reference(shape):
    rng = np.random.default_rng(11)
    t = gaussian_filter(rng.random(shape), 1.0)
    p = 0.7 * t + 0.1 * gaussian_filter(rng.random(shape), 1.5)      # luminance and contrast off
    m = ms_ssim_num_scales(shape, 7)
    from benchmarks.metrics.ssim import MS_SSIM_WEIGHTS

    ref = _np_ms_ssim(p, t, MS_SSIM_WEIGHTS[:m])
    assert ms_ssim3d(p, t) == pytest.approx(ref, rel=1e-10)
    # the last-scale luminance matters here: cs alone at the last scale is another number
    lp, lt = p, t
    for _ in range(m - 1):
        lp, lt = _np_pool(lp), _np_pool(lt)
    s_last, cs_last = _np_ssim_cs(lp, lt, 7, 1.5, t.max() - t.min())
    assert abs(s_last - cs_last) > 1e-3
    # known weights: 2 equal exponents -> sqrt(cs_1 * ssim_2); unnormalized would be the product
    got = ms_ssim3d(p, t, weights=(1.0, 1.0))
    s1, cs1 = _np_ssim_cs(p, t, 7, 1.5, t.max() - t.min())
    s2, _ = _np_ssim_cs(_np_pool(p), _np_pool(t), 7, 1.5, t.max() - t.min())
    assert got == pytest.approx(np.sqrt(cs1 * s2), rel=1e-10)
    assert ms_ssim3d(p, t, weights=(0.0, 1.0)) == pytest.approx(s2, rel=1e-10)


def test_ms_ssim_log1p_and_fixed_range():
    from benchmarks.metrics.ssim import MS_SSIM_WEIGHTS

    t = _batch(seed=12, b=2, n=24)
    p = _blur(t, 1.0) * 0.9
    got = ms_ssim3d(p, t, transform="log1p", data_range=0.5, reduction="none")
    for i in range(2):
        lp, lt = np.log1p(p[i]), np.log1p(t[i])
        m = ms_ssim_num_scales(lt.shape, 7)
        w = np.asarray(MS_SSIM_WEIGHTS[:m]) / np.sum(MS_SSIM_WEIGHTS[:m])
        out, x, y = 1.0, lp, lt
        for j, wj in enumerate(w):
            s, cs = _np_ssim_cs(x, y, 7, 1.5, 0.5)
            out *= max(s if j == m - 1 else cs, 0.0) ** wj
            x, y = _np_pool(x), _np_pool(y)
        assert got[i] == pytest.approx(out, rel=1e-10)


# --------------------------------------------------------------------------- per-sample and checks
def test_nmae_small_reference_total_is_valid():
    g = np.zeros((6, 6, 6))
    g[2, 2, 2] = 0.5                                           # half an electron per voxel volume
    assert nmae(0.5 * g, g) == pytest.approx(50.0)


def test_psnr_and_electron_count_are_per_sample():
    t = _batch(seed=6, b=2, n=24)
    p = t.copy()
    p[0] += 0.01
    p[1] += 0.1                                               # different errors per sample
    want = [10 * np.log10(t[i].max() ** 2 / e**2) for i, e in enumerate((0.01, 0.1))]
    np.testing.assert_allclose(psnr(p, t, reduction="none"), want, rtol=1e-9)
    axes = np.eye(3) * 0.3
    np.testing.assert_allclose(electron_count(t, axes), t.reshape(2, -1).sum(1) * 0.027, rtol=1e-12)
    assert electron_count(t, axes, reduction="mean") == pytest.approx(t.sum() * 0.027 / 2)


def test_frame_and_window_checks():
    from benchmarks.metrics._grid import frame_batch

    g = _batch(seed=7, b=2, n=24)
    with pytest.raises(ValueError, match="grid frame"):
        frame_batch(np.zeros(2), np.eye(3), 2)
    with pytest.raises(ValueError, match="grid frame"):
        frame_batch(np.zeros(3), np.eye(2), 2)
    with pytest.raises(ValueError, match="one grid"):
        dipole_moment(g, np.zeros(3), np.eye(3), [1], [[0, 0, 0]])
    with pytest.raises(ValueError, match="window"):
        ssim3d(g[:, :10], g[:, :10])                          # a side below the 11 window
    assert ssim3d(g[:, :11], g[:, :11]) == 1.0                # side == window is fine
    with pytest.raises(ValueError, match="odd"):
        ssim3d(g, g, win_size=10)
    with pytest.raises(ValueError, match="reduction"):
        mae(g, g, reduction="sum")


def test_ms_ssim_scale_rule():
    assert ms_ssim_num_scales((128, 128, 128)) == 5            # default window 7
    assert ms_ssim_num_scales((28, 28, 28), 7) == 3            # 28 // 4 = 7 >= 7
    assert ms_ssim_num_scales((27, 40, 40), 7) == 2
    assert ms_ssim_num_scales((64, 64, 64), 7, max_scales=2) == 2


def test_inputs_tensors_with_grad_and_default_transform():
    import torch

    t = _batch(seed=8, b=1, n=24)
    p = torch.tensor(_blur(t, 1.0), requires_grad=True)        # numpy() would refuse this one
    assert mae(p, t) == pytest.approx(np.abs(_blur(t, 1.0) - t).mean(), rel=1e-12)
    np.testing.assert_array_equal(apply_transform(t).numpy(), t)   # default: raw
    assert ms_ssim_num_scales((56, 56, 56)) == 4                # default window 7 (8 would give 3)
