"""Tests of random starts, rigid-body LJ optimization, noisy copies and generate_crystals
(refinement to stationary points at the stored cutoff, the authors' filter)."""

import math

import numpy as np
import pytest
import torch

from builders.crystals.cell import cell_volume, valid_angles
from builders.crystals.energy import crystal_energies, min_contact_ratio
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.optimize import (
    MIN_CONTACT_RATIO,
    OPT_CUTOFF,
    PARAM_SCALES,
    generate_crystals,
    lj_bound,
    noisy_copies,
    optimize_crystals,
    random_start,
    standardize,
)
from builders.crystals.refine import GRAD_TOL, stationarity
from builders.crystals.volume import vdw_volume

from .conftest import embed_smiles


def _embed(smiles, seed=11):
    return embed_smiles(smiles, seed)


@pytest.fixture(scope="module")
def molecules():
    return [_embed(s) for s in ("CC(=O)O", "c1ccncc1", "OCC#N")]


@pytest.fixture(scope="module")
def volumes(molecules):
    return [vdw_volume(z, x) for z, x in molecules]


@pytest.fixture(scope="module")
def generated(molecules, volumes):
    return generate_crystals(molecules, 3, seed=123, n_noisy=4, mol_volumes=volumes)


def test_random_start_hits_target_packing(molecules, volumes):
    mols = MoleculeBatch.from_molecules(molecules)
    idx = torch.arange(3).repeat_interleave(20)
    vol = torch.tensor(volumes, dtype=torch.float64)
    p = random_start(
        mols, idx, vol, torch.Generator().manual_seed(0), target_packing=0.45
    )
    pc = vol[idx] / cell_volume(p[:, :3], p[:, 3:6])
    assert torch.allclose(pc, torch.full_like(pc, 0.45), rtol=1e-12)
    deg = torch.rad2deg(p[:, 3:6])
    assert float(deg.min()) >= 70 and float(deg.max()) <= 110
    assert bool(((p[:, 6:9] >= 0) & (p[:, 6:9] < 1)).all())
    assert float(p[:, 9:12].norm(dim=1).max()) <= math.pi
    assert float(p[:, 3:6].std()) > 0.05  # really random


def test_optimization_lowers_energy_and_converges(molecules, volumes):
    mols = MoleculeBatch.from_molecules(molecules)
    idx = torch.tensor([0, 1, 2, 0])
    p0 = random_start(
        mols,
        idx,
        torch.tensor(volumes, dtype=torch.float64),
        torch.Generator().manual_seed(1),
    )
    res = optimize_crystals(p0, mols, idx)
    e0 = crystal_energies(p0, mols, idx, cutoff=OPT_CUTOFF, kinds=("lj",))["lj"]
    e1 = crystal_energies(res.params, mols, idx, cutoff=OPT_CUTOFF, kinds=("lj",))["lj"]
    torch.testing.assert_close(res.initial_energy, e0)
    torch.testing.assert_close(
        res.final_energy, e1
    )  # returned energy belongs to returned params
    assert bool((e1 < e0).all()) and bool((e1 < 0).all())
    assert int(res.converged.sum()) >= 3
    assert bool((res.steps > 10).all())
    assert bool(valid_angles(res.params[:, 3:6]).all())
    assert torch.equal(res.params[:, 6:9], p0[:, 6:9])  # (u, v, w) untouched


def test_generated_optima_have_no_clashes(generated, molecules):
    opt = generated.is_optimum
    assert int(opt.sum()) >= 6
    mols = MoleculeBatch.from_molecules(molecules)
    ratio = min_contact_ratio(generated.params[opt], mols, generated.mol_index[opt])
    assert float(ratio.min()) > MIN_CONTACT_RATIO
    assert bool(torch.isfinite(ratio).all())  # every optimum has neighbours within 6 A
    # physically sensible, dense packing after optimization (starts were at 0.5)
    assert 0.5 < float(generated.packing[opt].median()) < 0.85
    assert bool(
        (generated.opt_final_energy[opt] < generated.opt_initial_energy[opt]).all()
    )


def test_crystal_set_bookkeeping(generated, molecules, volumes):
    g = generated
    n_opt = int(g.is_optimum.sum())
    assert g.stats["n_kept_optima"] == n_opt and len(g) == n_opt + g.stats["n_noisy"]
    assert g.stats["n_noisy_drawn"] == 4 * n_opt and g.stats["n_noisy"] <= 4 * n_opt
    assert bool((g.parent[g.is_optimum] == -1).all()) and bool((g.copy_index[g.is_optimum] == -1).all())
    parents = g.parent[~g.is_optimum]
    assert bool(g.is_optimum[parents].all())
    assert bool((parents < torch.nonzero(~g.is_optimum).squeeze(1)).all())  # a copy follows its optimum
    copies = g.copy_index[~g.is_optimum]
    assert bool(((copies >= 0) & (copies < 4)).all())
    for r in g.is_optimum.nonzero().squeeze(1).tolist():  # draws of one optimum: distinct, increasing
        mine = g.copy_index[g.parent == r].tolist()
        assert mine == sorted(set(mine))
    assert torch.equal(g.mol_index[~g.is_optimum], g.mol_index[parents])
    assert bool(g.opt_converged[g.is_optimum].all()) and bool(
        (g.opt_steps[~g.is_optimum] == -1).all()
    )
    assert bool(torch.isnan(g.opt_final_energy[~g.is_optimum]).all())
    assert bool(torch.isnan(g.opt_grad_norm[~g.is_optimum]).all()) and bool((g.opt_refine_steps[~g.is_optimum] == -1).all())
    mols = MoleculeBatch.from_molecules(molecules)
    e = crystal_energies(g.params, mols, g.mol_index)
    torch.testing.assert_close(g.lj, e["lj"])
    torch.testing.assert_close(g.buckingham, e["buckingham"])
    vol = torch.tensor(volumes, dtype=torch.float64)[g.mol_index]
    torch.testing.assert_close(g.packing, vol / torch.linalg.det(g.cell))
    # optima sit below their noisy copies on average (they are LJ minima)
    assert float(g.lj[g.is_optimum].mean()) < float(g.lj[~g.is_optimum].mean())


def test_stored_optima_are_stationary_and_every_crystal_passes_the_authors_filter(generated, molecules):
    g = generated
    mols = MoleculeBatch.from_molecules(molecules)
    opt = g.is_optimum
    st = stationarity(g.params[opt], mols, g.mol_index[opt])
    assert bool(st.stationary.all()) and float(st.grad_norm.max()) <= GRAD_TOL
    torch.testing.assert_close(st.grad_norm, g.opt_grad_norm[opt], rtol=1e-6, atol=1e-9)
    assert float(g.lj.max()) < lj_bound(3.0) == g.stats["lj_max"]
    # the copies are not stationary (the check can fail)
    copies = stationarity(g.params[~opt], mols, g.mol_index[~opt])
    assert float(copies.grad_norm.median()) > 1.0


def test_a_strict_authors_filter_drops_optima_and_copies(molecules, volumes):
    """scaled_lj_max = -300 in their convention = E_LJ < -150 per molecule: some optima and
    many copies of the survivors fail; what is kept passes."""
    res = generate_crystals(molecules, 3, seed=123, n_noisy=4, mol_volumes=volumes, scaled_lj_max=-300.0)
    st = res.stats
    assert st["lj_max"] == -150.0 and bool((res.lj < -150.0).all())
    assert st["n_above_lj_max"] >= 1 and st["n_kept_optima"] == st["n_stationary"] - st["n_above_lj_max"]
    assert st["n_noisy"] < st["n_noisy_drawn"]
    off = generate_crystals(molecules[:1], 2, seed=1, n_noisy=3, mol_volumes=volumes[:1], scaled_lj_max=None,
                            energy_threshold=-1e9)
    assert off.stats["n_kept_optima"] == 0 and off.stats["n_above_energy_threshold"] == off.stats["n_stationary"]


def test_noisy_copies_have_requested_noise():
    g = torch.Generator().manual_seed(2)
    base = torch.tensor(
        [
            [7.0, 8.5, 10.0, 1.5, 1.6, 1.7, 0.5, 0.4, 0.6, 0.3, -0.5, 0.8],
            [6.0, 9.0, 12.0, 1.4, 1.55, 1.65, 0.45, 0.5, 0.55, -1.0, 0.2, 0.1],
        ],
        dtype=torch.float64,
    )
    copies, parent = noisy_copies(base, n=3000, sigma=0.05, generator=g)
    assert copies.shape == (6000, 12) and torch.equal(
        parent, torch.arange(2).repeat_interleave(3000)
    )
    delta = standardize(copies) - standardize(base)[parent]
    assert torch.allclose(
        delta.mean(0), torch.zeros(12, dtype=torch.float64), atol=0.004
    )
    assert torch.allclose(
        delta.std(0), torch.full((12,), 0.05, dtype=torch.float64), rtol=0.05
    )
    # in physical units: ~2.5% relative length noise, angle noise 0.05 * 0.2015 rad
    rel = copies[:, 0] / base[parent, 0] - 1
    assert float(rel.std()) == pytest.approx(0.05 * PARAM_SCALES[0], rel=0.06)
    assert float((copies[:, 3] - base[parent, 3]).std()) == pytest.approx(
        0.05 * PARAM_SCALES[3], rel=0.06
    )
    assert bool(valid_angles(copies[:, 3:6]).all())


def test_generation_is_reproducible(molecules, volumes, generated):
    again = generate_crystals(molecules, 3, seed=123, n_noisy=4, mol_volumes=volumes)
    for name in (
        "params",
        "cell",
        "lj",
        "buckingham",
        "packing",
        "is_optimum",
        "parent",
        "copy_index",
        "opt_steps",
        "opt_refine_steps",
        "mol_index",
    ):
        assert torch.equal(getattr(again, name), getattr(generated, name)), name
    for name in ("opt_final_energy", "opt_grad_norm"):
        assert torch.equal(torch.nan_to_num(getattr(again, name)), torch.nan_to_num(getattr(generated, name)))
    other = generate_crystals(
        molecules[:1],
        2,
        seed=124,
        n_noisy=2,
        mol_volumes=volumes[:1],
        max_steps=300,
        energy_threshold=1e9,
    )
    first = generate_crystals(
        molecules[:1],
        2,
        seed=123,
        n_noisy=2,
        mol_volumes=volumes[:1],
        max_steps=300,
        energy_threshold=1e9,
    )
    assert not torch.equal(other.params, first.params)


def test_float32_generation_runs(molecules, volumes):
    res = generate_crystals(
        molecules[:2],
        2,
        seed=5,
        n_noisy=2,
        mol_volumes=volumes[:2],
        dtype=torch.float32,
    )
    assert res.params.dtype == torch.float32 and len(res) >= 3
    assert bool(torch.isfinite(res.lj).all()) and bool(
        torch.isfinite(res.buckingham).all()
    )
    assert bool((res.lj[res.is_optimum] < 0).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generation(molecules, volumes):
    res = generate_crystals(
        molecules,
        2,
        seed=5,
        n_noisy=2,
        mol_volumes=volumes,
        device="cuda",
        dtype=torch.float32,
    )
    assert (
        res.params.is_cuda
        and bool(torch.isfinite(res.lj).all())
        and int(res.is_optimum.sum()) >= 3
    )
    mols = MoleculeBatch.from_molecules(molecules)
    ratio = min_contact_ratio(
        res.params[res.is_optimum].double().cpu(),
        mols,
        res.mol_index[res.is_optimum].cpu(),
    )
    assert float(ratio.min()) > MIN_CONTACT_RATIO


def test_bad_input_is_rejected(molecules):
    with pytest.raises(ValueError, match="n_per_molecule"):
        generate_crystals(molecules, 0, seed=1)
    with pytest.raises(ValueError, match="mol_volumes"):
        generate_crystals(molecules, 1, seed=1, mol_volumes=[1.0])
    with pytest.raises(ValueError, match="molecule 1"):
        generate_crystals([molecules[0], ([6, 200], np.zeros((2, 3)))], 1, seed=1)
