"""Density pipeline: filters, conformers, RHF, grid frame, end-to-end samples, time limits."""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pyscf.semiempirical")

from builders.density import pipeline as dp  # noqa: E402
from builders.density.conformers import conformer_search, select_candidates  # noqa: E402
from builders.density.filters import MAIN_GROUP_UP_TO_BA, filter_smiles  # noqa: E402
from builders.density.rhf import run_rhf  # noqa: E402
from builders.format.timeout import Deadline, TimeLimitExceeded, time_limit  # noqa: E402
from builders.density.frame import grid_points, seed_frame  # noqa: E402
from builders.density.schema import BOHR_PER_ANGSTROM  # noqa: E402
from builders.density.storage import unpack_density_matrix  # noqa: E402
from builders.format.failures import MoleculeFailure  # noqa: E402

WATER_Z = np.array([8, 1, 1])
WATER = np.array([[0.0, 0.0, 0.0], [0.0, -0.757, 0.587], [0.0, 0.757, 0.587]])


# ---------------------------------------------------------------- filters
@pytest.mark.parametrize("smiles,stage,needle", [
    ("C1CC", "parse", "cannot parse"),
    ("", "parse", "empty"),
    ("[NH4+]", "filter", "total charge +1"),
    ("CC(=O)[O-]", "filter", "total charge -1"),
    ("C[N+](=O)[O-]", "filter", "charge separation"),
    ("NCC(=O)O.O", "filter", "2 disconnected fragments"),
    ("CC[Fe]CC", "filter", "Fe outside main-group"),
    ("C[Hg]C", "filter", "Hg outside main-group"),
    ("C" * 31, "filter", "31 heavy atoms > 30"),
    ("[CH3]", "filter", "radical"),
])
def test_filters_reject_with_stage_and_reason(smiles, stage, needle):
    with pytest.raises(MoleculeFailure) as err:
        filter_smiles(smiles)
    assert err.value.stage == stage
    assert needle in err.value.reason


@pytest.mark.parametrize("smiles", ["CCO", "C" * 30, "O=[Si](O)O", "CC(C)(CO)C(=O)C(=O)O", "[Ba](O)O", "CCBr"])
def test_filters_accept(smiles):
    assert filter_smiles(smiles).GetNumAtoms() > 0


def test_main_group_definition():
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    symbols = {table.GetElementSymbol(z) for z in MAIN_GROUP_UP_TO_BA}
    assert len(MAIN_GROUP_UP_TO_BA) == 36 and max(MAIN_GROUP_UP_TO_BA) == 56
    assert {"H", "He", "Li", "C", "Si", "Br", "I", "Xe", "Cs", "Ba", "Ga", "Te"} <= symbols
    assert not {"Sc", "Fe", "Zn", "Cu", "La", "Pb", "Tl"} & symbols  # transition metals, Z > 56


# ---------------------------------------------------------------- conformers
def test_conformer_search_is_seeded_and_candidates_are_distinct():
    mol = filter_smiles("CCCCO")
    a = conformer_search(mol, n_conformers=12, seed=3)
    b = conformer_search(mol, n_conformers=12, seed=3)
    assert a.mmff_energies_kcal_mol.shape == (12,) and a.positions_angstrom.shape == (12, 15, 3)
    np.testing.assert_array_equal(a.mmff_energies_kcal_mol, b.mmff_energies_kcal_mol)
    np.testing.assert_array_equal(a.positions_angstrom, b.positions_angstrom)
    assert a.n_embedded >= 6 and a.mmff_converged[: a.n_embedded].all()
    cand = select_candidates(a, n=5)
    e = a.mmff_energies_kcal_mol[cand]
    assert len(cand) >= 2 and np.all(np.diff(e) > 0)  # ascending, no duplicate minima
    assert e[0] == np.nanmin(a.mmff_energies_kcal_mol)
    c = conformer_search(mol, n_conformers=12, seed=4)
    assert not np.array_equal(np.nan_to_num(c.mmff_energies_kcal_mol), np.nan_to_num(a.mmff_energies_kcal_mol))


def test_adjacency_from_geometry_detects_a_broken_bond():
    adj = dp.adjacency_from_geometry(WATER_Z, WATER)
    assert adj.sum() == 4 and adj[0, 1] and adj[0, 2] and not adj[1, 2]  # two O-H bonds, symmetric
    far = WATER.copy()
    far[2] *= 2.0  # O-H 1.9 A > 1.3 x (0.66 + 0.31) A
    assert dp.adjacency_from_geometry(WATER_Z, far).sum() == 2


# ---------------------------------------------------------------- grid frame
def test_seed_frame_reproduces_pyscf_cubegen_box():
    from pyscf import gto
    from pyscf.tools import cubegen

    pos = np.array([[0.0, 0.0, 0.0], [1.52, 0.0, 0.0], [2.1, 1.3, 0.2], [-0.4, -0.8, 0.9]])
    mol = gto.M(atom=[("C", p) for p in pos[:2]] + [("O", pos[2]), ("H", pos[3])], basis="sto-3g", spin=1, verbose=0)
    coords = mol.atom_coords()
    extent = coords.max(0) - coords.min(0)
    n_seed = [6 * (int(e) + 2) for e in extent]  # the seed's formula, atoms' extent without margin
    frame = seed_frame(pos)
    assert frame["grid_shape"].dtype == np.int32 and frame["grid_origin"].dtype == np.float64
    assert frame["grid_shape"].tolist() == n_seed
    cube = cubegen.Cube(mol, *n_seed, margin=3.0)
    np.testing.assert_allclose(grid_points(frame["grid_origin"], frame["grid_axes"], frame["grid_shape"]),
                               cube.get_coords(), atol=1e-10)
    # 128^3 resampling of the same box: same corners
    f128 = seed_frame(pos, shape=(128, 128, 128))
    pts = grid_points(f128["grid_origin"], f128["grid_axes"], f128["grid_shape"])
    np.testing.assert_allclose(pts[0], cube.get_coords()[0], atol=1e-10)
    np.testing.assert_allclose(pts[-1], cube.get_coords()[-1], atol=1e-10)
    assert np.allclose(np.diag(f128["grid_axes"]) * 127, extent + 6.0)


def test_seed_frame_cubic_and_fixed_spacing():
    pos = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [1.0, 1.5, 0.0]])
    pb = pos * BOHR_PER_ANGSTROM
    for kw in ({"cubic": True}, {"spacing_bohr": 0.25}, {"cubic": True, "spacing_bohr": 0.3}):
        f = seed_frame(pos, **kw)
        step = np.diag(f["grid_axes"])
        lo = f["grid_origin"]
        hi = lo + step * (f["grid_shape"] - 1)
        assert np.all(pb.min(0) - lo >= 3.0 - 1e-9) and np.all(hi - pb.max(0) >= 3.0 - 1e-9)
        np.testing.assert_allclose(0.5 * (lo + hi), 0.5 * (pb.min(0) + pb.max(0)), atol=1e-9)  # centred
        if kw.get("cubic"):
            np.testing.assert_allclose(hi - lo, (hi - lo)[0])
        if "spacing_bohr" in kw:
            np.testing.assert_allclose(step, kw["spacing_bohr"])
            extent = pb.max(0) - pb.min(0)
            if kw.get("cubic"):
                extent = np.full(3, extent.max())
            assert np.all((hi - lo) - (extent + 6.0) < kw["spacing_bohr"] + 1e-9)


# ---------------------------------------------------------------- RHF
@pytest.mark.parametrize("kw", [{"max_cycle": 1}, {"conv_tol": 1e-30, "max_cycle": 15}])
def test_forced_scf_failure_is_an_rhf_failure(kw):
    with pytest.raises(MoleculeFailure) as err:
        run_rhf(WATER_Z, WATER, **kw)
    assert err.value.stage == "rhf" and "not converged" in err.value.reason
    with pytest.raises(MoleculeFailure) as err:
        dp.build_density_sample_from_geometry(WATER_Z, WATER, smiles="O",
                                              rhf_max_cycle=kw["max_cycle"], rhf_conv_tol=kw.get("conv_tol", 1e-9))
    assert err.value.stage == "rhf"


def test_rhf_water_reference_and_missing_basis():
    r = run_rhf(WATER_Z, WATER)
    assert r["rhf_energy_hartree"] == pytest.approx(-74.9630631, abs=1e-6)  # RHF/STO-3G water
    assert r["n_ao"] == 7 and r["rhf_solver"] == "diis"
    assert r["homo_hartree"] < 0 < r["lumo_hartree"]
    assert abs(r["mulliken_charges"].sum()) < 1e-8
    with pytest.raises(MoleculeFailure) as err:
        run_rhf([55, 9], np.array([[0, 0, 0], [0, 0, 2.35]]))
    assert err.value.stage == "rhf" and "no sto-3g basis for element(s) Cs" in err.value.reason


# ---------------------------------------------------------------- end to end
FIELD_TYPES = {
    "atomic_numbers": np.uint8, "positions": np.float64, "density_matrix": np.float32,
    "grid_origin": np.float64, "grid_axes": np.float64, "grid_shape": np.int32,
    "mmff_energies_kcal_mol": np.float64, "mmff_converged": np.bool_,
    "semiempirical_candidate_indices": np.int32, "semiempirical_energies_hartree": np.float64,
    "semiempirical_converged": np.bool_, "semiempirical_topology_ok": np.bool_,
    "semiempirical_n_steps": np.int32, "orbital_energies_hartree": np.float64,
    "dipole_debye": np.float64, "mulliken_charges": np.float64,
}
SCALAR_TYPES = {
    "charge": int, "spin": int, "smiles": str, "canonical_smiles": str, "inchikey": str,
    "geometry_source": str, "conformer_seed": int, "force_field": str, "semiempirical_method": str,
    "chosen_conformer_index": int, "method": str, "basis": str, "rhf_energy_hartree": float,
    "rhf_converged": bool, "rhf_solver": str, "homo_hartree": float, "lumo_hartree": float,
    "n_electrons": int, "n_ao": int,
}


def _check_fields(sample):
    assert set(sample) == set(FIELD_TYPES) | set(SCALAR_TYPES)
    for k, t in FIELD_TYPES.items():
        assert isinstance(sample[k], np.ndarray) and sample[k].dtype == t, k
    for k, t in SCALAR_TYPES.items():
        assert type(sample[k]) is t, (k, type(sample[k]))


def _check_density_and_frame(sample):
    from pyscf import gto

    z, pos = sample["atomic_numbers"], sample["positions"]
    mol = gto.M(atom=[(int(a), tuple(p)) for a, p in zip(z, pos)], unit="Angstrom", basis=sample["basis"], verbose=0)
    dm = unpack_density_matrix(sample["density_matrix"])
    assert dm.shape == (mol.nao, mol.nao) == (sample["n_ao"],) * 2
    assert np.trace(dm @ mol.intor("int1e_ovlp")) == pytest.approx(sample["n_electrons"], abs=1e-4)
    assert sample["n_electrons"] == int(z.sum())
    lo = sample["grid_origin"]
    hi = lo + np.diag(sample["grid_axes"]) * (sample["grid_shape"] - 1)
    pb = pos * BOHR_PER_ANGSTROM
    np.testing.assert_allclose(pb.min(0) - lo, 3.0, atol=1e-9)
    np.testing.assert_allclose(hi - pb.max(0), 3.0, atol=1e-9)


def test_end_to_end_ethanol():
    timings = {}
    s = dp.build_density_sample("CCO", seed=0, n_conformers=8, n_mindo3=3, timings=timings)
    _check_fields(s)
    _check_density_and_frame(s)
    assert s["inchikey"] == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"
    assert s["semiempirical_method"] == "MINDO3" and s["geometry_source"] == "conformer_search"
    assert s["mmff_energies_kcal_mol"].shape == (8,) and s["semiempirical_energies_hartree"].shape == (3,)
    k = int(np.nanargmin(np.where(s["semiempirical_topology_ok"], s["semiempirical_energies_hartree"], np.nan)))
    assert s["chosen_conformer_index"] == s["semiempirical_candidate_indices"][k] >= 0
    assert s["rhf_converged"] and -153.0 < s["rhf_energy_hartree"] < -152.0  # RHF/STO-3G ethanol ~ -152.13
    assert np.linalg.norm(s["dipole_debye"]) == pytest.approx(1.4, abs=0.6)
    assert set(timings) == {"filter", "conformers", "semiempirical", "rhf", "total"}
    assert s["orbital_energies_hartree"].shape == (s["n_ao"],)


def test_from_geometry_has_the_same_schema_and_derives_inchikey():
    s = dp.build_density_sample_from_geometry(WATER_Z, WATER)
    _check_fields(s)
    _check_density_and_frame(s)
    assert s["inchikey"] == "XLYOFNOQVPJJNP-UHFFFAOYSA-N" and s["canonical_smiles"] == "O"
    assert s["geometry_source"] == "input" and s["semiempirical_method"] == "none"
    assert s["mmff_energies_kcal_mol"].shape == (0,) and s["chosen_conformer_index"] == -1
    np.testing.assert_array_equal(s["positions"], WATER)


def test_unsupported_mindo3_element_fails_before_conformer_search():
    t = {}
    with pytest.raises(MoleculeFailure) as err:
        dp.build_density_sample("CCBr", timings=t)
    assert (err.value.stage, err.value.reason) == ("mindo3", "element Br not parametrized in MINDO3")
    assert "conformers" not in t


def test_xtb_option_runs_gfn2_and_records_it():
    pytest.importorskip("tblite", reason="the xtb extra (tblite) is not installed")
    s = dp.build_density_sample("CCO", n_conformers=4, n_mindo3=2, semiempirical="xtb")
    assert s["semiempirical_method"] == "GFN2-xTB"
    assert np.nanmin(s["semiempirical_energies_hartree"]) == pytest.approx(-11.39, abs=0.02)


def test_xtb_option_is_explicit(monkeypatch):
    from builders.density import xtb

    monkeypatch.setattr(xtb, "xtb_available", lambda: False)
    with pytest.raises(MoleculeFailure) as err:
        dp.build_density_sample("CCO", semiempirical="xtb")
    assert err.value.stage == "xtb" and "pip install tblite" in err.value.reason
    with pytest.raises(ValueError):
        dp.build_density_sample("CCO", semiempirical="am1")


# ---------------------------------------------------------------- time limits
def test_timeout_during_semiempirical_stage():
    handler_before = signal.getsignal(signal.SIGALRM)
    t0 = time.monotonic()
    with pytest.raises(MoleculeFailure) as err:
        dp.build_density_sample("CC(C)(CO)C(=O)C(=O)O", n_conformers=10, time_limit_s=1.0)
    assert err.value.stage == "timeout" and "time limit of 1 s exceeded" in err.value.reason
    assert time.monotonic() - t0 < 3.0
    assert signal.getsignal(signal.SIGALRM) is handler_before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_sigalrm_stops_pyscf_rhf_after_the_current_c_call():
    """The alarm's exception is raised when pyscf's current C call returns and is not swallowed.

    With STO-3G nearly all RHF time is ONE C call (the in-core two-electron integrals), which a
    signal cannot interrupt: the limit is enforced when it returns, never later.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCCC(=O)O"))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    pos = mol.GetConformer().GetPositions()
    t0 = time.monotonic()
    run_rhf(z, pos, conv_tol=1e-12, max_cycle=200)
    t_full = time.monotonic() - t0
    t0 = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        with time_limit(0.05):
            run_rhf(z, pos, conv_tol=1e-12, max_cycle=200)
    t_cut = time.monotonic() - t0
    assert t_cut < t_full + 0.5, (t_cut, t_full)


def test_time_limit_restores_outer_timer_and_works_off_main_thread():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        with time_limit(2.0):
            pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 4.0 < left <= 5.0
        signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    # off the main thread: no signal, cooperative checks only
    out = {}

    def work():
        try:
            with time_limit(0.05) as d:
                time.sleep(0.1)
                d.check("test")
        except TimeLimitExceeded as e:
            out["err"] = str(e)

    th = threading.Thread(target=work)
    th.start()
    th.join()
    assert out["err"] == "time limit of 0.05 s exceeded during test"
    assert Deadline(None).remaining() == float("inf")
