"""Tests of the Newton refinement at the stored cutoff (builders.crystals.refine) and of the
authors' energy convention and filter (energy.scaled_lj_mxtaltools, optimize.lj_bound)."""

import math

import numpy as np
import pytest
import torch

from builders.crystals.cell import cell_matrix
from builders.crystals.energy import DEFAULT_CUTOFF, MXTALTOOLS_FACTOR, crystal_energies, scaled_lj_mxtaltools
from builders.crystals.frames import rotvec_to_matrix
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.optimize import SCALED_LJ_MAX, lj_bound, optimize_crystals, random_start
from builders.crystals.refine import (
    GRAD_TOL,
    _FrozenPairs,
    _natural_gradient,
    _newton_system,
    cell_lengths_angles,
    reduce_cell,
    refine_crystals,
    state_to_params,
    stationarity,
)
from builders.crystals.volume import vdw_volume

from .conftest import embed_smiles


@pytest.fixture(scope="module")
def setup():
    mols_in = [embed_smiles(s, 3) for s in ("CC(=O)O", "c1ccncc1", "N#CC#N", "OCC#N")]
    mols = MoleculeBatch.from_molecules(mols_in)
    vol = torch.tensor([vdw_volume(z, x) for z, x in mols_in], dtype=torch.float64)
    idx = torch.arange(len(mols_in)).repeat_interleave(3)
    p0 = random_start(mols, idx, vol, torch.Generator().manual_seed(4))
    adam = optimize_crystals(p0, mols, idx)
    return mols, idx, adam


def test_authors_filter_bound_and_scaled_lj():
    # their scaled_lj = log_rescale_positive(2 E): y if y <= 0 else log(1 + y); filter scaled_lj < 3
    assert lj_bound(SCALED_LJ_MAX) == pytest.approx((math.e**3 - 1) / 2, rel=1e-15)
    assert lj_bound(-4.0) == -2.0
    e = torch.tensor([-50.0, -1e-3, 0.0, 2.0, lj_bound(3.0), 1e4], dtype=torch.float64)
    y = MXTALTOOLS_FACTOR * e
    expected = torch.where(y > 0, torch.log(1 + y), y)
    torch.testing.assert_close(scaled_lj_mxtaltools(e), expected)
    assert float(scaled_lj_mxtaltools(torch.tensor(lj_bound(3.0), dtype=torch.float64))) == pytest.approx(3.0)


def test_analytic_derivatives_match_autograd(setup):
    """E, gradient and Hessian over a frozen pair set, in the Newton variables (rigid rotation
    omega, cell entries / L) and in natural units, against autograd of independent code paths."""
    mols, idx, adam = setup
    p = adam.params[:6].clone()
    i6 = idx[:6]
    H = cell_matrix(p[:, :3], p[:, 3:6])
    R = rotvec_to_matrix(p[:, 9:12])
    pairs, _ = _FrozenPairs.build(H, R, p[:, 6:9], mols.coords[i6], mols.mask[i6], mols.radii()[i6], DEFAULT_CUTOFF)
    E, G, HZ = pairs.derivatives(H, R)
    g, hess = _newton_system(G, HZ, H, R)
    torch.testing.assert_close(E, crystal_energies(p, mols, i6, DEFAULT_CUTOFF, ("lj",))["lj"], rtol=1e-12, atol=1e-10)
    L = torch.linalg.det(H) ** (1 / 3)
    free = ((0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2))

    def f(xi):
        Hx = H.clone()
        for k, (m, c) in enumerate(free):
            Hx[:, m, c] = H[:, m, c] + xi[:, 3 + k] * L
        return pairs.energy(Hx, rotvec_to_matrix(xi[:, :3]) @ R)

    xi = torch.zeros(6, 9, dtype=torch.float64, requires_grad=True)
    (ga,) = torch.autograd.grad(f(xi).sum(), xi, create_graph=True)
    ha = torch.stack([torch.autograd.grad(ga[:, k].sum(), xi, retain_graph=True)[0] for k in range(9)], 1)
    torch.testing.assert_close(g, ga.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(hess, ha.detach(), rtol=1e-8, atol=1e-6 * float(ha.abs().max()))
    # natural gradient: d/d(ln a, ln b, ln c, alpha, beta, gamma) of the energy of the parameters, and the
    # rigid rotation R -> exp([omega]x) R (same pairs: no pair crosses the cutoff for an infinitesimal change)
    gn = _natural_gradient(G, H, R)
    h = torch.cat((p[:, :3].log(), p[:, 3:6]), 1).requires_grad_(True)
    e_h = pairs.energy(cell_matrix(h[:, :3].exp(), h[:, 3:6]), R)
    (gh,) = torch.autograd.grad(e_h.sum(), h)
    torch.testing.assert_close(gn[:, :6], gh, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gn[:, 6:], ga.detach()[:, :3], rtol=1e-9, atol=1e-9)


def test_reduce_cell_keeps_the_crystal(setup):
    mols, idx, adam = setup
    p = adam.params[:1].clone()
    H = cell_matrix(p[:, :3], p[:, 3:6])[0].numpy()
    R = rotvec_to_matrix(p[:, 9:12])[0].numpy()
    M = np.array([[1, 0, 0], [2, 1, 0], [-1, 3, 1]])  # unimodular: the same lattice on a skewed basis
    A = M @ H
    e1 = A[0] / np.linalg.norm(A[0])
    e2 = A[1] - (A[1] @ e1) * e1
    e2 /= np.linalg.norm(e2)
    Q = np.stack((e1, e2, np.cross(e1, e2)))
    skew_H, skew_R = A @ Q.T, Q @ R
    skew_uvw = np.remainder(p[0, 6:9].numpy() @ np.linalg.inv(M), 1.0)
    skew = state_to_params(torch.tensor(skew_H)[None], torch.tensor(skew_R)[None], torch.tensor(skew_uvw)[None])
    assert float(torch.rad2deg(skew[0, 3:6]).min()) < 45  # really out of range
    Hn, Rn, un = reduce_cell(skew_H, skew_R, skew_uvw)
    red = state_to_params(torch.tensor(Hn)[None], torch.tensor(Rn)[None], torch.tensor(un)[None])
    deg = torch.rad2deg(red[0, 3:6])
    assert float(deg.min()) >= 60 - 1e-9 and float(deg.max()) <= 120 + 1e-9
    assert np.linalg.det(Hn) > 0 and abs(abs(np.linalg.det(Hn)) - abs(np.linalg.det(H))) < 1e-9
    torch.testing.assert_close(cell_matrix(red[:, :3], red[:, 3:6])[0], torch.tensor(Hn), rtol=0, atol=1e-12)
    e = [crystal_energies(q, mols, idx[:1])["lj"] for q in (p, skew, red)]
    torch.testing.assert_close(e[1], e[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(e[2], e[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cell_lengths_angles(torch.tensor(H)[None])[0], p[0, :6], rtol=1e-12, atol=1e-12)


def test_refinement_reaches_stationary_minima(setup):
    mols, idx, adam = setup
    before = stationarity(adam.params, mols, idx)
    assert float(before.grad_norm.min()) > 10 * GRAD_TOL  # Adam optima at 6 A are not stationary at 10 A
    res = refine_crystals(adam.params, mols, idx)
    st = res.check
    assert bool(st.stationary.all()), st.grad_norm
    assert float(st.grad_norm.max()) <= GRAD_TOL and float(st.min_eig_ratio.min()) >= -1e-6
    assert bool((res.steps >= 1).all()) and int(res.steps.max()) < 60
    e0 = crystal_energies(adam.params, mols, idx)["lj"]
    e1 = crystal_energies(res.params, mols, idx)["lj"]
    torch.testing.assert_close(st.energy, e1, rtol=1e-12, atol=1e-10)
    assert bool((e1 < e0).all())  # the minimum of the stored energy lies below the Adam point
    again = refine_crystals(adam.params, mols, idx)
    assert torch.equal(again.params, res.params) and torch.equal(again.steps, res.steps)
