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
        assert 0 < nm[0] < nm[-1] < 2


def test_known_values():
    t = _batch(seed=4, b=2, n=24)
    assert nmae(1.1 * t, t) == pytest.approx(0.1, rel=1e-12)
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

    from builders.cube import read_cube

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
