"""Tests of the P1 crystal model: frames, cells, energies, volumes (builders.crystals)."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from builders.crystals import potentials
from builders.crystals.cell import (
    cell_matrix,
    cell_volume,
    from_unconstrained,
    to_unconstrained,
    valid_angles,
)
from builders.crystals.energy import (
    cluster_energies,
    cluster_images,
    crystal_energies,
    neighbor_pairs,
    pose_molecules,
)
from builders.crystals.frames import (
    canonical_rotvec,
    matrix_to_rotvec,
    random_rotvecs,
    rotvec_to_matrix,
    standard_frame,
)
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.radii import VDW_RADII, vdw_radii
from builders.crystals.volume import packing_coefficient, vdw_volume

from .conftest import embed_smiles


def _embed(smiles, seed=7):
    return embed_smiles(smiles, seed)


@pytest.fixture(scope="module")
def molecules():
    return [_embed(s) for s in ("CCO", "O=C1CCC(=O)N1", "FC(F)CN")]


def _params(n, generator, lengths=(7.0, 8.0, 9.0)):
    lengths = torch.tensor(lengths, dtype=torch.float64) * (
        1 + 0.2 * torch.rand(n, 3, generator=generator, dtype=torch.float64)
    )
    angles = torch.deg2rad(
        75 + 30 * torch.rand(n, 3, generator=generator, dtype=torch.float64)
    )
    frac = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    return torch.cat((lengths, angles, frac, random_rotvecs(n, generator)), 1)


# ---------------------------------------------------------------- radii, frames, rotations
def test_radii_table_matches_rdkit():
    from rdkit import Chem

    pt = Chem.GetPeriodicTable()
    assert len(VDW_RADII) == 57
    for z in range(1, 57):
        assert VDW_RADII[z] == pytest.approx(pt.GetRvdw(z)), z
    r = vdw_radii(torch.tensor([[1, 6, 0], [7, 8, 9]]))
    assert r.flatten().tolist() == pytest.approx([1.2, 1.7, 0.0, 1.6, 1.55, 1.5])
    with pytest.raises(ValueError, match="57"):
        vdw_radii(torch.tensor([57]))


def test_standard_frame_is_unique_and_right_handed(molecules):
    _, x = molecules[2]
    std, axes, _ = standard_frame(x)
    assert np.allclose(std.mean(0), 0, atol=1e-12)
    assert np.linalg.det(axes) == pytest.approx(1.0)
    inertia = np.eye(3) * (std**2).sum() - std.T @ std
    assert np.allclose(inertia - np.diag(np.diag(inertia)), 0, atol=1e-9)
    assert np.all(np.diff(np.diag(inertia)) > 0)  # x smallest moment, z largest
    assert (std[:, 0] ** 3).sum() > 0 and (std[:, 1] ** 3).sum() > 0
    # any rigid motion of the input gives the same standard coordinates
    rot = Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix()
    std2, _, _ = standard_frame(x @ rot.T + np.array([5.0, -3.0, 1.0]))
    assert np.allclose(std2, std, atol=1e-9)
    # an improper transformation (mirror image) stays right-handed
    _, axes3, _ = standard_frame(x * np.array([-1.0, 1.0, 1.0]))
    assert np.linalg.det(axes3) == pytest.approx(1.0)


def test_rotvec_matrix_matches_scipy_and_roundtrips():
    g = torch.Generator().manual_seed(0)
    theta = torch.cat(
        (
            random_rotvecs(50, g),
            torch.tensor([[0.0, 0.0, 0.0], [1e-9, 0.0, -2e-9]], dtype=torch.float64),
        )
    )
    rot = rotvec_to_matrix(theta)
    ref = Rotation.from_rotvec(theta.numpy()).as_matrix()
    assert np.allclose(rot.numpy(), ref, atol=1e-12)
    assert torch.allclose(matrix_to_rotvec(rot), theta, atol=1e-9)
    # angles beyond pi map to the same rotation with angle <= pi
    big = (
        theta[:5]
        / theta[:5].norm(dim=1, keepdim=True)
        * torch.tensor([4.0, 6.0, 7.0, -5.0, 9.0], dtype=torch.float64)[:, None]
    )
    canon = canonical_rotvec(big)
    assert bool((canon.norm(dim=1) <= math.pi + 1e-12).all())
    assert torch.allclose(rotvec_to_matrix(canon), rotvec_to_matrix(big), atol=1e-12)


def test_random_rotations_are_uniform():
    theta = random_rotvecs(20000, torch.Generator().manual_seed(1))
    angle = theta.norm(dim=1)
    # Haar measure: angle density (1 - cos t) / pi, mean pi/2 + 2/pi; E[R] = 0
    assert float(angle.mean()) == pytest.approx(math.pi / 2 + 2 / math.pi, abs=0.02)
    assert float(rotvec_to_matrix(theta).mean(0).abs().max()) < 0.02
    assert float((angle <= math.pi).float().mean()) == 1.0


# ---------------------------------------------------------------- cells
def test_cell_matrix_convention():
    lengths = torch.tensor([[5.0, 6.0, 7.0]], dtype=torch.float64)
    angles = torch.deg2rad(torch.tensor([[80.0, 95.0, 110.0]], dtype=torch.float64))
    H = cell_matrix(lengths, angles)[0]
    assert H.norm(dim=1).tolist() == pytest.approx([5.0, 6.0, 7.0])
    assert float(H[0, 1]) == 0 and float(H[0, 2]) == 0 and float(H[1, 2]) == 0
    assert float(H[1, 1]) > 0 and float(H[2, 2]) > 0
    cos = lambda u, v: float(u @ v / u.norm() / v.norm())
    assert math.degrees(math.acos(cos(H[1], H[2]))) == pytest.approx(80.0)
    assert math.degrees(math.acos(cos(H[0], H[2]))) == pytest.approx(95.0)
    assert math.degrees(math.acos(cos(H[0], H[1]))) == pytest.approx(110.0)
    assert float(torch.linalg.det(H)) == pytest.approx(
        float(cell_volume(lengths, angles)[0])
    )
    assert bool(valid_angles(angles)[0])
    assert not bool(
        valid_angles(
            torch.deg2rad(torch.tensor([150.0, 150.0, 100.0], dtype=torch.float64))
        )
    )


def test_unconstrained_roundtrip_keeps_cells_valid():
    g = torch.Generator().manual_seed(2)
    p = _params(20, g)
    assert torch.allclose(from_unconstrained(to_unconstrained(p)), p, atol=1e-12)
    z = 30 * torch.randn(1000, 12, generator=g, dtype=torch.float64)
    q = from_unconstrained(z)
    assert bool(valid_angles(q[:, 3:6]).all()) and bool((q[:, :3] > 0).all())


# ---------------------------------------------------------------- potentials
def test_buckingham_minimum_is_minus_one_at_r0():
    s = torch.tensor(3.1, dtype=torch.float64)
    r = torch.linspace(0.5 * 3.1, 3.0 * 3.1, 250001, dtype=torch.float64)
    e = potentials.buckingham(r, s)
    k = int(e.argmin())
    assert float(r[k]) / 3.1 == pytest.approx(1.0, abs=1e-4)
    r0 = s.clone().requires_grad_(True)
    e0 = potentials.buckingham(r0, s)
    (g,) = torch.autograd.grad(e0, r0)
    assert float(e0.detach()) == pytest.approx(-1.0, abs=1e-14)
    assert abs(float(g)) < 1e-14
    # repulsive at short range, attractive tail
    assert float(potentials.buckingham(torch.tensor(0.6), torch.tensor(1.0))) > 0
    assert -0.2 < float(potentials.buckingham(torch.tensor(3.0), torch.tensor(1.0))) < 0


def test_lennard_jones_form():
    s = torch.tensor(3.4, dtype=torch.float64)
    rmin = 2 ** (1 / 6) * 3.4
    assert float(
        potentials.lennard_jones(torch.tensor(rmin, dtype=torch.float64), s)
    ) == pytest.approx(-1.0)
    assert float(potentials.lennard_jones(s, s)) == pytest.approx(0.0, abs=1e-14)


# ---------------------------------------------------------------- energies
def test_single_atom_crystal_energy_matches_direct_lattice_sum():
    """One C atom in a cubic cell: E = 1/2 sum_{n != 0, |n a| < rc} e(|n| a)."""
    a, rc = 3.9, 10.0
    mols = MoleculeBatch.from_molecules([([6], np.zeros((1, 3)))])
    params = torch.tensor(
        [
            [
                a,
                a,
                a,
                math.pi / 2,
                math.pi / 2,
                math.pi / 2,
                0.3,
                0.1,
                0.7,
                0.2,
                0.1,
                -0.4,
            ]
        ],
        dtype=torch.float64,
    )
    e = crystal_energies(params, mols, torch.tensor([0]), cutoff=rc)
    expected = {"lj": 0.0, "buckingham": 0.0}
    for n in itertools.product(range(-4, 5), repeat=3):
        r = a * math.sqrt(sum(k * k for k in n))
        if 0 < r < rc:
            expected["lj"] += 0.5 * 4 * ((3.4 / r) ** 12 - (3.4 / r) ** 6)
            expected["buckingham"] += 0.5 * (
                potentials.BUCKINGHAM_A * math.exp(-r / 3.4) + 0.2 * (r / 3.4) ** -6
            )
    assert float(e["lj"][0]) == pytest.approx(expected["lj"], rel=1e-12)
    assert float(e["buckingham"][0]) == pytest.approx(expected["buckingham"], rel=1e-12)


def test_half_space_convention_is_half_of_all_image_pairs(molecules):
    g = torch.Generator().manual_seed(3)
    mols = MoleculeBatch.from_molecules(molecules)
    params = _params(6, g)
    idx = torch.tensor([0, 1, 2, 0, 1, 2])
    H, x, mask = pose_molecules(params, mols, idx)
    half = neighbor_pairs(H, x, mask, 8.0, half=True)
    full = neighbor_pairs(H, x, mask, 8.0, half=False)
    from builders.crystals.energy import pair_distances

    n_half = int((pair_distances(H, x, half) < 8.0).sum())
    assert n_half > 100 and int((pair_distances(H, x, full) < 8.0).sum()) == 2 * n_half
    r = mols.radii()[idx]
    from builders.crystals.energy import pair_energies

    e_half, e_full = pair_energies(H, x, r, half), pair_energies(H, x, r, full)
    for k in e_half:
        assert torch.allclose(2 * e_half[k], e_full[k], rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_energies_invariant_to_rigid_rotation_and_lattice_shift(molecules, dtype):
    g = torch.Generator().manual_seed(4)
    mols = MoleculeBatch.from_molecules(molecules, dtype=dtype)
    params = _params(6, g).to(dtype)
    idx = torch.tensor([0, 1, 2, 2, 1, 0])
    ref = crystal_energies(params, mols, idx)
    H, x, mask = pose_molecules(params, mols, idx)
    r = mols.radii()[idx]
    q = torch.as_tensor(Rotation.from_rotvec([0.7, -0.4, 1.9]).as_matrix(), dtype=dtype)
    rotated = cluster_energies(H @ q.T, x @ q.T + 3.0, r, mask)
    shifted = params.clone()
    shifted[:, 6] += 1.0
    shifted[:, 8] -= 2.0
    moved = crystal_energies(shifted, mols, idx)
    tol = (
        {"rtol": 1e-4, "atol": 1e-3}
        if dtype == torch.float32
        else {"rtol": 1e-10, "atol": 1e-9}
    )
    for k in ref:
        assert bool(torch.isfinite(ref[k]).all())
        torch.testing.assert_close(rotated[k], ref[k], **tol)
        torch.testing.assert_close(moved[k], ref[k], **tol)
    # P1, Z'=1: the centroid position does not matter at all
    other = params.clone()
    other[:, 6:9] = torch.rand(6, 3, generator=g, dtype=torch.float64).to(dtype)
    for k, v in crystal_energies(other, mols, idx).items():
        torch.testing.assert_close(v, ref[k], **tol)


def test_padding_does_not_change_energies(molecules):
    g = torch.Generator().manual_seed(5)
    params = _params(2, g)
    alone = crystal_energies(
        params, MoleculeBatch.from_molecules(molecules[:1]), torch.tensor([0, 0])
    )
    padded = crystal_energies(
        params, MoleculeBatch.from_molecules(molecules), torch.tensor([0, 0])
    )
    for k in alone:
        assert torch.allclose(alone[k], padded[k], rtol=1e-13)


def test_gradients_match_finite_differences(molecules):
    g = torch.Generator().manual_seed(6)
    mols = MoleculeBatch.from_molecules(molecules)
    params = _params(3, g, lengths=(6.0, 7.0, 8.0))
    idx = torch.tensor([0, 1, 2])
    for kind in ("lj", "buckingham"):
        p = params.clone().requires_grad_(True)
        e = crystal_energies(p, mols, idx, cutoff=8.0, kinds=(kind,))[kind]
        (grad,) = torch.autograd.grad(e.sum(), p)
        h = 1e-6
        fd = torch.zeros_like(params)
        for k in range(12):
            dp = torch.zeros_like(params)
            dp[:, k] = h
            plus = crystal_energies(params + dp, mols, idx, cutoff=8.0, kinds=(kind,))[
                kind
            ]
            minus = crystal_energies(params - dp, mols, idx, cutoff=8.0, kinds=(kind,))[
                kind
            ]
            fd[:, k] = (plus - minus) / (2 * h)
        assert float(grad.abs().max()) > 1.0  # a real, non-trivial gradient
        torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-4)
        assert float(grad[:, 6:9].abs().max()) < 1e-10  # no dependence on (u, v, w)


def test_cluster_images_cover_the_cutoff(molecules):
    g = torch.Generator().manual_seed(8)
    mols = MoleculeBatch.from_molecules(molecules[:1])
    params = _params(1, g)
    _, n, xs = cluster_images(params, mols, torch.tensor([0]), cutoff=6.0)
    H, x, _ = pose_molecules(params, mols, torch.tensor([0]))
    shifts = {tuple(v) for v in n.long().tolist()}
    assert (0, 0, 0) not in shifts and all(
        tuple(-k for k in s) in shifts for s in shifts
    )
    # brute force over a big block of images
    expected = set()
    for s in itertools.product(range(-4, 5), repeat=3):
        if s == (0, 0, 0):
            continue
        img = x[0] + torch.tensor(s, dtype=torch.float64) @ H[0]
        if float(torch.cdist(x[0], img).min()) < 6.0:
            expected.add(s)
    assert shifts == expected
    k = list(map(tuple, n.long().tolist())).index(min(expected))
    assert torch.allclose(xs[k], x[0] + n[k] @ H[0])


# ---------------------------------------------------------------- volume, packing
def test_volume_of_spheres_and_packing_of_one_atom():
    v1 = vdw_volume([6], [[0.3, -0.2, 0.1]])
    exact = 4 / 3 * math.pi * 1.7**3
    assert v1 == pytest.approx(exact, rel=5e-4)
    a = 4.5
    pc = packing_coefficient(
        torch.tensor(v1),
        cell_volume(torch.tensor([a, a, a]), torch.full((3,), math.pi / 2)),
    )
    assert float(pc) == pytest.approx(exact / a**3, rel=5e-4)
    # two overlapping spheres: union = sum of spheres - lens
    r1, r2 = 1.7, 1.5
    v2 = vdw_volume([6, 9], [[0, 0, 0], [1.1, 1.2, -1.0]])
    d = math.sqrt(3.65)
    lens = (
        math.pi
        * (r1 + r2 - d) ** 2
        * (d * d + 2 * d * r2 - 3 * r2 * r2 + 2 * d * r1 + 6 * r1 * r2 - 3 * r1 * r1)
        / (12 * d)
    )
    assert v2 == pytest.approx(4 / 3 * math.pi * (r1**3 + r2**3) - lens, rel=5e-4)
    # far apart: plain sum
    v3 = vdw_volume([1, 1], [[0, 0, 0], [5, 0, 0]])
    assert v3 == pytest.approx(2 * 4 / 3 * math.pi * 1.2**3, rel=5e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(molecules):
    g = torch.Generator().manual_seed(9)
    params = _params(4, g)
    idx = torch.tensor([0, 1, 2, 0])
    cpu = crystal_energies(params, MoleculeBatch.from_molecules(molecules), idx)
    gpu = crystal_energies(
        params.cuda(),
        MoleculeBatch.from_molecules(molecules, device="cuda"),
        idx.cuda(),
    )
    for k in cpu:
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-10, atol=1e-9)
