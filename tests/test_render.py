"""Tests of builders.density.render against pyscf's own AO/density evaluation.

Samples come from real RHF/STO-3G runs (water, formamide, bromomethane: Br has d shells in
pyscf's STO-3G) packed with builders.density.storage, framed as bounding box + 3 Bohr.
"""
from __future__ import annotations

import numpy as np
import pytest
from pyscf import gto, scf
from pyscf.dft import numint

from builders.density import render_density, render_density_at_points
from builders.density.molecule import density_matrix_from_sample, mole_from_sample
from builders.density.frame import box_frame, grid_points
from builders.density.render import _CartBasis, electron_count, resolve_frame
from builders.density.storage import pack_density_matrix

GEOMETRIES = {  # Angstrom
    "water": "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692",
    "formamide": "C 0 0.42 0; O 1.2 0.42 0; N -0.68 -0.75 0; H -0.55 1.37 0; "
                 "H -1.69 -0.73 0; H -0.17 -1.62 0",
    "bromomethane": "C 0 0 0; Br 1.94 0 0; H -0.36 1.03 0; H -0.36 -0.51 0.89; "
                    "H -0.36 -0.51 -0.89",
}


def _rhf(atom: str, basis: str = "sto-3g"):
    mol = gto.M(atom=atom, basis=basis, unit="Angstrom", verbose=0)
    mf = scf.RHF(mol)
    mf.conv_tol = 1e-10
    mf.kernel()
    assert mf.converged
    return mol, mf.make_rdm1()


def _sample(mol, dm, shape=(32, 36, 40), dtype=np.float64, margin=3.0):
    frame = box_frame(mol.atom_coords(unit="Bohr"), margin_bohr=margin, shape=shape)
    origin, axes = frame["grid_origin"], frame["grid_axes"]
    return dict(atomic_numbers=mol.atom_charges().astype(np.uint8),
                positions=mol.atom_coords(unit="Angstrom"), basis=mol.basis,
                density_matrix=pack_density_matrix(dm, dtype), grid_origin=origin,
                grid_axes=axes, grid_shape=np.array(shape, dtype=np.int32), charge=0, spin=0)


@pytest.fixture(scope="module")
def systems():
    return {name: _rhf(atom) for name, atom in GEOMETRIES.items()}


def _pyscf_rho(mol, dm, points):
    ao = numint.eval_ao(mol, points)
    return numint.eval_rho(mol, ao, dm)


def _rel_l2(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_bromine_sto3g_has_d_shells(systems):
    mol, _ = systems["bromomethane"]
    assert 2 in {mol.bas_angular(i) for i in range(mol.nbas)}


@pytest.mark.parametrize("basis", ["sto-3g", "cc-pvdz", "6-31g*"])
def test_cartesian_tables_reproduce_pyscf_aos(basis):
    """AO order and normalization of s, p, d (and general contractions) vs eval_gto."""
    mol = gto.M(atom=GEOMETRIES["bromomethane"] if basis == "sto-3g" else GEOMETRIES["formamide"],
                basis=basis, verbose=0)
    assert max(mol.bas_angular(i) for i in range(mol.nbas)) == 2
    b = _CartBasis(mol, None)
    rng = np.random.default_rng(0)
    lines = [np.sort(rng.uniform(-3, 5, 7)) for _ in range(3)]
    tx, ty, tz = (b.tables(i, lines[i]) for i in range(3))  # (nf,P,n) (nf,P,n) (nf,n,P)
    phi = np.einsum("fpa,fpb,fcp->fabc", tx, ty, tz).reshape(b.nf, -1)
    ao = b.m_sph @ phi  # (nao, npts)
    pts = np.stack(np.meshgrid(*lines, indexing="ij"), -1).reshape(-1, 3)
    ref = mol.eval_gto("GTOval_sph", pts).T
    assert ao.shape == ref.shape
    np.testing.assert_allclose(ao, ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())


def test_sample_roundtrip_to_mole_and_dm(systems):
    mol, dm = systems["formamide"]
    s = _sample(mol, dm)
    mol2 = mole_from_sample(s)
    assert mol2.nao == mol.nao and mol2.nelectron == mol.nelectron
    np.testing.assert_allclose(mol2.atom_coords(), mol.atom_coords(), atol=1e-12)
    np.testing.assert_allclose(density_matrix_from_sample(s, mol2), dm, atol=1e-15)
    s32 = _sample(mol, dm, dtype=np.float32)
    n_el = np.trace(density_matrix_from_sample(s32) @ mol.intor("int1e_ovlp"))
    assert abs(n_el - mol.nelectron) < 1e-4


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_grid_and_points_match_pyscf(systems, name):
    mol, dm = systems[name]
    s = _sample(mol, dm, shape=(30, 34, 38))
    rho = render_density(s, shape=None)
    assert rho.shape == (30, 34, 38) and rho.dtype == np.float64
    pts = grid_points(s["grid_origin"], s["grid_axes"], (30, 34, 38))
    ref = _pyscf_rho(mol, dm, pts).reshape(rho.shape)
    assert _rel_l2(rho, ref) <= 1e-6
    assert _rel_l2(rho, ref) < 1e-12  # in practice exact to rounding
    # random points, including near nuclei
    rng = np.random.default_rng(1)
    lo, hi = pts.min(0), pts.max(0)
    rnd = np.concatenate([rng.uniform(lo, hi, (3000, 3)),
                          mol.atom_coords() + rng.normal(scale=0.05, size=(mol.natm, 3))])
    got = render_density_at_points(s, rnd)
    assert _rel_l2(got, _pyscf_rho(mol, dm, rnd)) <= 1e-12


def test_random_symmetric_dm_with_negative_eigenvalues(systems):
    """A non-RHF (indefinite) matrix exercises the signed eigen-decomposition path."""
    mol, _ = systems["bromomethane"]
    rng = np.random.default_rng(2)
    a = rng.normal(size=(mol.nao, mol.nao))
    d = (a + a.T) / 2
    s = _sample(mol, d, shape=(20, 22, 24))
    rho = render_density(s, shape=None)
    pts = grid_points(s["grid_origin"], s["grid_axes"], (20, 22, 24))
    assert rho.min() < 0  # indefinite matrix -> negative "density" somewhere
    assert _rel_l2(rho, _pyscf_rho(mol, d, pts).reshape(rho.shape)) < 1e-11


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_low_rank_indefinite_dm_uses_the_signed_eigen_terms(systems, backend):
    """A rank-4 matrix with two negative eigenvalues (a difference of densities, as a model
    might predict) takes the sum_k s_k (l_k . phi)^2 path on every block, where the negative
    terms are subtracted; dropping them must show."""
    pytest.importorskip("torch")
    mol, _ = systems["bromomethane"]
    rng = np.random.default_rng(5)
    c = rng.normal(size=(mol.nao, 4))
    d = c[:, :2] @ c[:, :2].T - 0.7 * c[:, 2:] @ c[:, 2:].T
    s = _sample(mol, d, shape=(18, 20, 22))
    rho = render_density(s, shape=None, backend=backend)
    rho = rho.numpy() if backend == "torch" else rho
    pts = grid_points(s["grid_origin"], s["grid_axes"], (18, 20, 22))
    ref = _pyscf_rho(mol, d, pts).reshape(rho.shape)
    positive_only = _pyscf_rho(mol, c[:, :2] @ c[:, :2].T, pts).reshape(rho.shape)
    assert rho.min() < 0 and _rel_l2(positive_only, ref) > 0.1
    assert _rel_l2(rho, ref) < 1e-11


def test_electron_count_on_skewed_axes_uses_the_cell_volume():
    """A normalized Gaussian of 7 electrons sampled on a sheared grid integrates to 7: the
    voxel volume is |det(axes)|, not the product of the step lengths (12% off here)."""
    axes = np.array([[0.2, 0.0, 0.0], [0.1, 0.2, 0.0], [0.05, -0.1, 0.2]])
    assert abs(np.prod(np.linalg.norm(axes, axis=1)) / abs(np.linalg.det(axes)) - 1) > 0.1
    n = 90
    origin = _centered_frame(np.zeros(3), axes, n)
    pts = grid_points(origin, axes, (n, n, n))
    a = 1.3  # Bohr^-2
    rho = 7.0 * (a / np.pi) ** 1.5 * np.exp(-a * (pts**2).sum(-1))
    assert abs(electron_count(rho.reshape(n, n, n), axes) - 7.0) < 1e-6
    assert abs(electron_count(rho.reshape(n, n, n), -axes) - 7.0) < 1e-6  # left-handed axes too


@pytest.mark.parametrize("name, margin", [("water", 3.0), ("formamide", 4.5)])
def test_grid_integral_is_electron_count(systems, name, margin):
    mol, dm = systems[name]
    s = _sample(mol, dm, shape=(128, 128, 128), margin=margin)
    rho = render_density(s)
    n = electron_count(rho, s["grid_axes"])
    assert abs(n - mol.nelectron) / mol.nelectron < 1e-3, n


def _centered_frame(center, axes, n):
    return center - axes.sum(0) * (n - 1) / 2


ROT = np.array([[0.6, 0.8, 0.0], [-0.64, 0.48, 0.6], [0.48, -0.36, 0.8]])  # orthonormal rows


@pytest.mark.parametrize("name", ["water", "bromomethane"])
def test_rotated_frame_matches_pyscf(systems, name):
    """Orthogonal but rotated axes (fast path with the cartesian monomial map, d incl.)."""
    mol, dm = systems[name]
    np.testing.assert_allclose(ROT @ ROT.T, np.eye(3), atol=1e-12)
    n = 40
    ax = ROT * 0.35
    origin = _centered_frame(mol.atom_coords().mean(0), ax, n)
    rho = render_density(_sample(mol, dm), shape=(n, n, n), origin=origin, axes=ax)
    pts = grid_points(origin, ax, (n, n, n))
    assert _rel_l2(rho.ravel(), _pyscf_rho(mol, dm, pts)) <= 1e-10


def test_electron_count_invariant_to_frame_rotation(systems):
    mol, dm = systems["water"]
    center = mol.atom_coords().mean(0)
    radius = np.linalg.norm(mol.atom_coords() - center, axis=1).max() + 4.0
    n = 150
    h = 2 * radius / (n - 1)  # ~0.08 Bohr: fine enough for the O 1s cusp region
    s = _sample(mol, dm)
    counts = []
    for ax in (np.eye(3) * h, ROT * h):
        rho = render_density(s, shape=(n, n, n), origin=_centered_frame(center, ax, n), axes=ax)
        counts.append(electron_count(rho, ax))
    assert abs(counts[1] - counts[0]) < 2e-3, counts
    assert all(abs(c - 10) < 1e-2 for c in counts), counts


def test_skewed_frame_uses_exact_reference_path(systems):
    mol, dm = systems["bromomethane"]
    skew = np.array([[0.3, 0.0, 0.0], [0.1, 0.3, 0.0], [0.05, -0.08, 0.3]])
    origin = _centered_frame(mol.atom_coords().mean(0), skew, 20)
    rho = render_density(_sample(mol, dm), shape=(20, 20, 20), origin=origin, axes=skew)
    pts = grid_points(origin, skew, (20, 20, 20))
    assert _rel_l2(rho.ravel(), _pyscf_rho(mol, dm, pts)) <= 1e-12


def test_resampled_shape_covers_same_box(systems):
    mol, dm = systems["water"]
    s = _sample(mol, dm, shape=(20, 24, 28))
    o, ax, shp = resolve_frame(s, (39, 47, 55))
    far = s["grid_origin"] + (s["grid_shape"] - 1) @ s["grid_axes"]
    np.testing.assert_allclose(o + (np.array(shp) - 1) @ ax, far, rtol=0, atol=1e-12)
    coarse = render_density(s, shape=None)
    fine = render_density(s, shape=(39, 47, 55))
    np.testing.assert_allclose(fine[::2, ::2, ::2], coarse, rtol=1e-12, atol=1e-14)


def test_torch_backend_equals_numpy(systems):
    torch = pytest.importorskip("torch")
    mol, dm = systems["bromomethane"]
    s = _sample(mol, dm, shape=(24, 26, 28))
    a = render_density(s, shape=None)
    b = render_density(s, shape=None, backend="torch")
    assert isinstance(b, torch.Tensor) and b.dtype == torch.float64
    np.testing.assert_allclose(b.numpy(), a, rtol=1e-12, atol=1e-13)


def test_cuda_backend_equals_numpy(systems):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    mol, dm = systems["bromomethane"]
    s = _sample(mol, dm, shape=(24, 26, 28))
    a = render_density(s, shape=None)
    c = render_density(s, shape=None, device="cuda")
    assert c.device.type == "cuda"
    np.testing.assert_allclose(c.cpu().numpy(), a, rtol=1e-10, atol=1e-12)


def test_float32_storage_error_is_small(systems):
    """float32 storage of D (the release format) vs float64: measured rel L2 ~1e-8."""
    mol, dm = systems["formamide"]
    s64 = _sample(mol, dm, shape=(48, 48, 48))
    s32 = _sample(mol, dm, shape=(48, 48, 48), dtype=np.float32)
    r64 = render_density(s64, shape=None)
    r32 = render_density(s32, shape=None)
    err = _rel_l2(r32, r64)
    assert 1e-10 < err < 1e-6, err
    n64, n32 = electron_count(r64, s64["grid_axes"]), electron_count(r32, s32["grid_axes"])
    assert abs(n32 - n64) < 1e-5


def test_bad_arguments(systems):
    mol, dm = systems["water"]
    s = _sample(mol, dm)
    with pytest.raises(ValueError):
        render_density(s, backend="jax")
    with pytest.raises(ValueError):
        render_density(s, device="cuda", backend="numpy")
    with pytest.raises(ValueError):
        render_density(s, shape=(4, 4))


def test_sample_without_frame_gets_bounding_box_frame(systems):
    mol, dm = systems["water"]
    s = _sample(mol, dm)
    for key in ("grid_origin", "grid_axes", "grid_shape"):
        s.pop(key)
    origin, axes, shape = resolve_frame(s, (20, 21, 22))
    lo = mol.atom_coords().min(0) - 3.0
    hi = mol.atom_coords().max(0) + 3.0
    np.testing.assert_allclose(origin, lo, atol=1e-9)
    np.testing.assert_allclose(origin + (np.array(shape) - 1) @ axes, hi, atol=1e-9)
    rho = render_density(s, shape=(20, 21, 22))
    ref = _pyscf_rho(mol, dm, grid_points(origin, axes, shape)).reshape(shape)
    assert _rel_l2(rho, ref) < 1e-12


def test_threaded_blocks_equal_serial(systems):
    mol, dm = systems["formamide"]
    s = _sample(mol, dm, shape=(40, 44, 48))
    a = render_density(s, shape=None, threads=1)
    b = render_density(s, shape=None, threads=2)
    np.testing.assert_array_equal(a, b)


def test_products_run_on_one_blas_thread_and_the_pool_is_restored(systems):
    """Whatever the caller's BLAS pool, the renderer's small products run on one BLAS thread
    (the same numbers), and the caller's setting is back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    mol, dm = systems["formamide"]
    s = _sample(mol, dm, shape=(24, 26, 28))
    one = render_density(s, shape=None)

    def pools():
        return [(p["filepath"], p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = pools()
        two = render_density(s, shape=None)
        assert pools() == before and max(n for _, n in before) == 2
    np.testing.assert_array_equal(one, two)
