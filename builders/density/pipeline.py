"""Per-molecule density pipeline of pubchem-hf-density and qm9-hf-density (paper 000).

SMILES -> filters (``builders.density.filters``) -> 50 ETKDG conformers + MMFF94
(``builders.density.conformers``) -> the 5 lowest distinct MMFF conformers re-optimised
with MINDO/3 (``builders.density.mindo3``; or GFN2-xTB via tblite when asked, never silently)
-> the lowest semiempirical energy among candidates whose bonding is unchanged -> RHF/STO-3G
(``builders.density.rhf``) -> a sample dict (provenance, energies, the RHF density matrix and the grid frame of
``builders.density.frame.seed_frame``). The grid itself is not rendered here.

The sample's fields (names, dtypes, shapes, units, meaning) are declared once, in
``builders.density.schema.DENSITY_FIELDS``; every sample the build writes is checked against it.

Time limit: :func:`build_density_sample` arms ``SIGALRM`` when it runs on the main thread
of its process (run each molecule in a worker process) and checks a deadline between stages
and inside loops everywhere; see ``builders.format.timeout``. Exceeding it raises
``MoleculeFailure("timeout", ...)``.
"""
from __future__ import annotations

import time

import numpy as np

from builders.density.conformers import ConformerSearch, conformer_search, select_candidates
from builders.density.filters import MAX_HEAVY_ATOMS, filter_smiles
from builders.density.rhf import RHF_BASIS, RHF_CONV_TOL, RHF_MAX_CYCLE, run_rhf
from builders.format.timeout import Deadline, TimeLimitExceeded, time_limit
from builders.density.frame import SEED_MARGIN_BOHR, seed_frame
from builders.density.params import DEFAULT_TIME_LIMIT_S, N_CONFORMERS, N_SEMIEMPIRICAL
from builders.density.storage import pack_density_matrix
from builders.format.failures import MoleculeFailure

__all__ = [
    "SEMIEMPIRICAL_METHODS", "DEFAULT_TIME_LIMIT_S", "filter_smiles", "conformer_search",
    "semiempirical_reoptimize", "build_density_sample", "build_density_sample_from_geometry",
]

# CLI name -> method name recorded in the sample.
SEMIEMPIRICAL_METHODS = {"mindo3": "MINDO3", "xtb": "GFN2-xTB"}
GEOMOPT_MAX_STEPS = 200
BOND_TOLERANCE = 1.3  # bonded if distance < 1.3 x (sum of covalent radii), as RDKit's DetermineConnectivity


def _stage_name(semiempirical: str) -> str:
    if semiempirical not in SEMIEMPIRICAL_METHODS:
        raise ValueError(f"semiempirical must be one of {sorted(SEMIEMPIRICAL_METHODS)}, got {semiempirical!r}")
    return semiempirical


def check_semiempirical_available(atomic_numbers, semiempirical: str) -> None:
    """Fail early (before the conformer search) if the method cannot treat the molecule.

    Raises:
        MoleculeFailure: stage "mindo3" (element not parametrised) or "xtb" (tblite missing,
        element not parametrised).
        ValueError: unknown method name.
    """
    _stage_name(semiempirical)
    if semiempirical == "mindo3":
        from builders.density.mindo3 import check_mindo3_elements

        check_mindo3_elements(atomic_numbers)
    else:
        from builders.density import xtb

        if not xtb.xtb_available():
            raise MoleculeFailure("xtb", xtb._INSTALL_HINT)
        bad = [int(z) for z in np.asarray(atomic_numbers).ravel() if int(z) > xtb.XTB_MAX_Z]
        if bad:
            raise MoleculeFailure("xtb", f"element Z={bad[0]} not parametrized in {xtb.XTB_METHOD}")


def adjacency_from_geometry(atomic_numbers, positions_angstrom, tolerance: float = BOND_TOLERANCE) -> np.ndarray:
    """Bond matrix from distances: bonded if d < tolerance x (sum of RDKit covalent radii).

    Args:
        atomic_numbers: (N,) int.
        positions_angstrom: (N, 3) float, Angstrom.
    Returns:
        (N, N) bool, False on the diagonal.
    """
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    r = np.array([table.GetRcovalent(int(z)) for z in np.asarray(atomic_numbers).ravel()])
    pos = np.asarray(positions_angstrom, dtype=np.float64)
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    adj = d < tolerance * (r[:, None] + r[None, :])
    np.fill_diagonal(adj, False)
    return adj


def semiempirical_reoptimize(search: ConformerSearch, candidates: np.ndarray, n_slots: int,
                             semiempirical: str = "mindo3", max_steps: int = GEOMOPT_MAX_STEPS,
                             deadline: Deadline | None = None) -> dict:
    """Re-optimise candidate conformers at the semiempirical level and choose the lowest.

    A candidate whose optimisation fails (SCF not converged at some step) gets a NaN energy; a
    candidate whose bonding changed during the optimisation (e.g. a proton transfer) is kept in
    the record but never chosen. geomeTRIC runs that hit ``max_steps`` are usable (flagged).

    Args:
        search: conformer search result; each candidate's MMFF geometry is the reference for
            its bonding check (bonded if d < 1.3 x sum of covalent radii, before and after).
        candidates: (k,) conformer slots to re-optimise, k <= n_slots.
        n_slots: length of the recorded arrays (the requested number of candidates).
        semiempirical: "mindo3" or "xtb".
        max_steps: geomeTRIC step limit per candidate.
        deadline: checked between and inside optimisations.
    Returns:
        dict with ``semiempirical_candidate_indices`` (n_slots,) int32 (-1 padding),
        ``semiempirical_energies_hartree`` (n_slots,) float64, ``semiempirical_converged``,
        ``semiempirical_topology_ok`` (n_slots,) bool, ``semiempirical_n_steps`` (n_slots,)
        int32, ``chosen_conformer_index`` int and ``positions`` (N, 3) float64 Angstrom of
        the chosen geometry.
    Raises:
        MoleculeFailure: stage "mindo3"/"xtb" if no candidate gives a usable geometry.
    """
    stage = _stage_name(semiempirical)
    if semiempirical == "mindo3":
        from builders.density.mindo3 import optimize_mindo3 as optimize
    else:
        from builders.density.xtb import optimize_xtb as optimize
    deadline = deadline or Deadline(None)
    z = search.atomic_numbers

    idx = np.full(n_slots, -1, dtype=np.int32)
    energies = np.full(n_slots, np.nan)
    conv = np.zeros(n_slots, dtype=bool)
    topo = np.zeros(n_slots, dtype=bool)
    steps = np.zeros(n_slots, dtype=np.int32)
    geoms: list[np.ndarray | None] = [None] * n_slots
    reasons: list[str] = []
    for k, slot in enumerate(np.asarray(candidates)[:n_slots]):
        deadline.check(f"{SEMIEMPIRICAL_METHODS[semiempirical]} optimization")
        idx[k] = int(slot)
        try:
            pos, e, c, n = optimize(z, search.positions_angstrom[int(slot)], max_steps=max_steps, deadline=deadline)
        except MoleculeFailure as fail:  # SCF not converged along the path (elements were checked first)
            reasons.append(fail.reason)
            continue
        energies[k], conv[k], steps[k], geoms[k] = e, c, n, pos
        # compare distance-based bonding before and after, so that geometric quirks of the
        # criterion (e.g. short 1,3 contacts in strained rings) cancel out
        ref_adj = adjacency_from_geometry(z, search.positions_angstrom[int(slot)])
        topo[k] = bool(np.array_equal(adjacency_from_geometry(z, pos), ref_adj))
    usable = [k for k in range(n_slots) if geoms[k] is not None and topo[k] and np.isfinite(energies[k])]
    if not usable:
        n_tried = int((idx >= 0).sum())
        if reasons:
            why = f"optimization failed for {len(reasons)} of {n_tried} candidates ({reasons[0]})"
        else:
            why = f"bonding changed during optimization for all {n_tried} candidates"
        raise MoleculeFailure(stage, f"{SEMIEMPIRICAL_METHODS[semiempirical]}: {why}")
    best = min(usable, key=lambda k: energies[k])
    return {
        "semiempirical_candidate_indices": idx,
        "semiempirical_energies_hartree": energies,
        "semiempirical_converged": conv,
        "semiempirical_topology_ok": topo,
        "semiempirical_n_steps": steps,
        "chosen_conformer_index": int(idx[best]),
        "positions": np.asarray(geoms[best], dtype=np.float64),
    }


def _inchikey(mol) -> str:
    """:func:`builders.format.identity.input_inchikey`, failing the molecule at the filter stage."""
    from builders.format.identity import input_inchikey

    try:
        return input_inchikey(mol)
    except ValueError as err:
        raise MoleculeFailure("filter", str(err)) from None


def _rhf_fields(z, positions, rhf_conv_tol, rhf_max_cycle, margin_bohr, grid_shape, deadline, timings):
    t0 = time.process_time()
    deadline.check("RHF")
    rhf = run_rhf(z, positions, basis=RHF_BASIS, conv_tol=rhf_conv_tol, max_cycle=rhf_max_cycle, deadline=deadline)
    timings["rhf"] = time.process_time() - t0
    frame = seed_frame(positions, margin_bohr=margin_bohr, shape=grid_shape)
    fields = {
        "method": "RHF",
        "basis": RHF_BASIS,
        "rhf_energy_hartree": rhf["rhf_energy_hartree"],
        "rhf_converged": rhf["rhf_converged"],
        "rhf_solver": rhf["rhf_solver"],
        "orbital_energies_hartree": rhf["orbital_energies_hartree"],
        "homo_hartree": rhf["homo_hartree"],
        "lumo_hartree": rhf["lumo_hartree"],
        "dipole_debye": rhf["dipole_debye"],
        "mulliken_charges": rhf["mulliken_charges"],
        "n_electrons": rhf["n_electrons"],
        "n_ao": rhf["n_ao"],
        "density_matrix": pack_density_matrix(rhf["density_matrix_full"], dtype=np.float32),
    }
    fields.update(frame)
    return fields


def build_density_sample(smiles: str, seed: int = 0, time_limit_s: float | None = DEFAULT_TIME_LIMIT_S,
                         semiempirical: str = "mindo3", n_conformers: int = N_CONFORMERS, n_mindo3: int = N_SEMIEMPIRICAL,
                         max_heavy_atoms: int = MAX_HEAVY_ATOMS, geomopt_max_steps: int = GEOMOPT_MAX_STEPS,
                         rhf_conv_tol: float = RHF_CONV_TOL, rhf_max_cycle: int = RHF_MAX_CYCLE,
                         margin_bohr: float = SEED_MARGIN_BOHR, grid_shape=None,
                         timings: dict | None = None) -> dict:
    """Build one pubchem-hf-density sample from a SMILES (paper 000's pipeline).

    Args:
        smiles: input SMILES.
        seed: ETKDG random seed (the whole build is deterministic given it).
        time_limit_s: wall-clock limit for this molecule in seconds (``None``: none).
        semiempirical: "mindo3" (paper) or "xtb" (GFN2-xTB through tblite, optional).
        n_conformers: number of ETKDG conformers (paper: 50).
        n_mindo3: number of lowest-MMFF conformers re-optimised semiempirically (paper: 5).
        max_heavy_atoms: heavy-atom filter (paper: 30).
        geomopt_max_steps: geomeTRIC step limit per candidate.
        rhf_conv_tol, rhf_max_cycle: RHF SCF settings (Hartree; cycles per solver).
        margin_bohr, grid_shape: grid frame options of :func:`builders.density.frame.seed_frame`.
        timings: if a dict is given, per-stage wall times in seconds are written into it
            ("filter", "conformers", "semiempirical", "rhf", "total"); kept out of the sample
            so that samples are reproducible byte for byte.
    Returns:
        the sample dict (fields in the module docstring).
    Raises:
        MoleculeFailure: stages "parse", "filter", "conformers", "mindo3"/"xtb", "rhf", "timeout".
        ValueError: unknown ``semiempirical``.
    """
    from rdkit import Chem

    _stage_name(semiempirical)
    timings = {} if timings is None else timings
    t_start = time.process_time()
    try:
        with time_limit(time_limit_s) as deadline:
            t0 = time.process_time()
            mol = filter_smiles(smiles, max_heavy_atoms=max_heavy_atoms)
            inchikey = _inchikey(mol)
            canonical = Chem.MolToSmiles(mol)
            z_all = np.array([a.GetAtomicNum() for a in Chem.AddHs(mol).GetAtoms()])
            check_semiempirical_available(z_all, semiempirical)
            timings["filter"] = time.process_time() - t0

            t0 = time.process_time()
            search = conformer_search(mol, n_conformers=n_conformers, seed=seed, deadline=deadline)
            candidates = select_candidates(search, n=n_mindo3)
            timings["conformers"] = time.process_time() - t0

            t0 = time.process_time()
            semi = semiempirical_reoptimize(search, candidates, n_slots=n_mindo3, semiempirical=semiempirical,
                                            max_steps=geomopt_max_steps, deadline=deadline)
            timings["semiempirical"] = time.process_time() - t0

            positions = semi.pop("positions")
            sample = {
                "atomic_numbers": search.atomic_numbers.astype(np.uint8),
                "positions": positions,
                "charge": 0,
                "spin": 0,
                "smiles": smiles.strip(),
                "canonical_smiles": canonical,
                "inchikey": inchikey,
                "geometry_source": "conformer_search",
                "conformer_seed": int(seed),
                "force_field": "MMFF94",
                "mmff_energies_kcal_mol": search.mmff_energies_kcal_mol.astype(np.float64),
                "mmff_converged": search.mmff_converged.astype(bool),
                "semiempirical_method": SEMIEMPIRICAL_METHODS[semiempirical],
                **semi,
            }
            sample.update(_rhf_fields(search.atomic_numbers, positions, rhf_conv_tol, rhf_max_cycle,
                                      margin_bohr, grid_shape, deadline, timings))
    except TimeLimitExceeded as exc:
        raise MoleculeFailure("timeout", str(exc)) from None
    finally:
        timings["total"] = time.process_time() - t_start
    return sample


def _mol_from_geometry(atomic_numbers, positions_angstrom):
    """RDKit molecule with bonds perceived from a neutral geometry (for the InChIKey)."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdDetermineBonds

    lines = [str(len(atomic_numbers)), ""]
    table = Chem.GetPeriodicTable()
    for zi, (x, y, zc) in zip(atomic_numbers, np.asarray(positions_angstrom, dtype=np.float64)):
        lines.append(f"{table.GetElementSymbol(int(zi))} {x:.8f} {y:.8f} {zc:.8f}")
    with rdBase.BlockLogs():
        mol = Chem.MolFromXYZBlock("\n".join(lines) + "\n")
        if mol is None:
            raise MoleculeFailure("parse", "RDKit cannot read the geometry")
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=0)
        except (ValueError, RuntimeError) as err:
            raise MoleculeFailure("parse", f"bond perception from the geometry failed: {err}") from err
    return mol


def build_density_sample_from_geometry(atomic_numbers, positions_angstrom, smiles: str | None = None,
                                       inchikey: str | None = None,
                                       time_limit_s: float | None = DEFAULT_TIME_LIMIT_S,
                                       rhf_conv_tol: float = RHF_CONV_TOL, rhf_max_cycle: int = RHF_MAX_CYCLE,
                                       margin_bohr: float = SEED_MARGIN_BOHR, grid_shape=None,
                                       timings: dict | None = None) -> dict:
    """Build one density sample on a given geometry (qm9-hf-density): no conformer search.

    The sample has the same fields as :func:`build_density_sample`; the conformer-search and
    semiempirical records are empty arrays, ``geometry_source`` is "input",
    ``semiempirical_method`` and ``force_field`` are "none", ``chosen_conformer_index`` and
    ``conformer_seed`` are -1.

    Args:
        atomic_numbers: (N,) int, all atoms including hydrogens.
        positions_angstrom: (N, 3) float, Angstrom (e.g. the QM9 B3LYP geometry).
        smiles: the molecule's SMILES if known (recorded; gives the InChIKey and canonical SMILES).
        inchikey: InChIKey if known (wins over the one derived from ``smiles``). Without both,
            bonds are perceived from the geometry (RDKit DetermineBonds, charge 0).
        time_limit_s, rhf_conv_tol, rhf_max_cycle, margin_bohr, grid_shape, timings: as in
            :func:`build_density_sample`.
    Returns:
        the sample dict.
    Raises:
        MoleculeFailure: stages "parse", "filter", "rhf", "timeout".
    """
    from rdkit import Chem

    z = np.asarray(atomic_numbers, dtype=np.int64).ravel()
    pos = np.asarray(positions_angstrom, dtype=np.float64).reshape(-1, 3)
    if len(z) != len(pos) or len(z) == 0:
        raise MoleculeFailure("parse", f"{len(z)} atomic numbers for {len(pos)} positions")
    if np.any(z < 1) or np.any(z > 118):
        raise MoleculeFailure("parse", "atomic numbers must be in 1..118")
    timings = {} if timings is None else timings
    t_start = time.process_time()
    try:
        with time_limit(time_limit_s) as deadline:
            t0 = time.process_time()
            canonical = ""
            if smiles:
                from builders.density.filters import parse_smiles

                mol = parse_smiles(smiles)
                canonical = Chem.MolToSmiles(mol)
                key = inchikey or _inchikey(mol)
            elif inchikey:
                key = inchikey
            else:
                mol = _mol_from_geometry(z, pos)
                canonical = Chem.MolToSmiles(Chem.RemoveHs(mol))
                key = _inchikey(mol)
            timings["filter"] = time.process_time() - t0
            timings["conformers"] = 0.0
            timings["semiempirical"] = 0.0
            sample = {
                "atomic_numbers": z.astype(np.uint8),
                "positions": pos.copy(),
                "charge": 0,
                "spin": 0,
                "smiles": (smiles or "").strip(),
                "canonical_smiles": canonical,
                "inchikey": key,
                "geometry_source": "input",
                "conformer_seed": -1,
                "force_field": "none",
                "mmff_energies_kcal_mol": np.zeros(0, dtype=np.float64),
                "mmff_converged": np.zeros(0, dtype=bool),
                "semiempirical_method": "none",
                "semiempirical_candidate_indices": np.zeros(0, dtype=np.int32),
                "semiempirical_energies_hartree": np.zeros(0, dtype=np.float64),
                "semiempirical_converged": np.zeros(0, dtype=bool),
                "semiempirical_topology_ok": np.zeros(0, dtype=bool),
                "semiempirical_n_steps": np.zeros(0, dtype=np.int32),
                "chosen_conformer_index": -1,
            }
            sample.update(_rhf_fields(z, pos, rhf_conv_tol, rhf_max_cycle, margin_bohr, grid_shape,
                                      deadline, timings))
    except TimeLimitExceeded as exc:
        raise MoleculeFailure("timeout", str(exc)) from None
    finally:
        timings["total"] = time.process_time() - t_start
    return sample
