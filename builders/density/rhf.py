"""Closed-shell RHF single point (pyscf) and the quantities a density sample keeps from it.

Settings (documented defaults, all overridable):

- basis STO-3G (paper 000), spherical AOs in pyscf order, no symmetry;
- ``conv_tol`` = 1e-9 Hartree (pyscf's default energy threshold), ``conv_tol_grad`` =
  sqrt(conv_tol) (pyscf's default), at most ``max_cycle`` = 100 DIIS iterations from pyscf's
  MINAO guess;
- if DIIS does not converge, one retry with pyscf's second-order solver (``mf.newton()``),
  started from the last DIIS density, with the same thresholds and cycle limit. This is a
  different solver for the same equations, not a different method; the sample records which
  solver converged (``rhf_solver``: "diis" or "diis+newton");
- still unconverged -> ``MoleculeFailure("rhf", ...)``.
"""
from __future__ import annotations

import warnings

import numpy as np

from builders.format.timeout import Deadline
from builders.format.failures import MoleculeFailure

RHF_BASIS = "sto-3g"
RHF_CONV_TOL = 1e-9
RHF_MAX_CYCLE = 100


def build_rhf_mol(atomic_numbers, positions_angstrom, basis: str = RHF_BASIS):
    """pyscf ``Mole`` for a neutral closed-shell molecule, or ``MoleculeFailure("rhf")``.

    Args:
        atomic_numbers: (N,) int.
        positions_angstrom: (N, 3) float, Angstrom.
        basis: pyscf basis name.
    """
    from pyscf.data.elements import _symbol
    from pyscf.gto.basis import BasisNotFoundError
    from pyscf.gto.basis import load as load_basis

    from builders.density.mindo3 import make_mol

    z = np.asarray(atomic_numbers, dtype=int).ravel()
    n_electrons = int(z.sum())
    if n_electrons % 2:
        raise MoleculeFailure("rhf", f"{n_electrons} electrons: odd, not closed shell")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyscf suggests installing basis-set-exchange
        try:
            return make_mol(z, positions_angstrom, basis=basis)
        except BasisNotFoundError as err:
            missing = []
            for zi in sorted(set(z.tolist())):
                try:
                    load_basis(basis, _symbol(zi))
                except BasisNotFoundError:
                    missing.append(_symbol(zi))
            raise MoleculeFailure("rhf", f"no {basis} basis for element(s) {', '.join(missing) or '?'}") from err
        except (KeyError, RuntimeError, ValueError) as err:
            raise MoleculeFailure("rhf", f"pyscf cannot build the molecule: {err}") from err


def run_rhf(atomic_numbers, positions_angstrom, basis: str = RHF_BASIS, conv_tol: float = RHF_CONV_TOL,
            max_cycle: int = RHF_MAX_CYCLE, deadline: Deadline | None = None) -> dict:
    """Restricted Hartree-Fock on a fixed geometry.

    Args:
        atomic_numbers: (N,) int.
        positions_angstrom: (N, 3) float, Angstrom.
        basis: pyscf basis name (default STO-3G).
        conv_tol: SCF energy threshold, Hartree.
        max_cycle: maximum SCF iterations per solver attempt.
        deadline: checked between the solver attempts (the SIGALRM limit, if armed by the
            caller, also interrupts inside the SCF loop).
    Returns:
        dict with ``mol`` (pyscf Mole), ``mf`` (converged SCF object) and sample fields:
        ``rhf_energy_hartree`` float, ``rhf_converged`` bool (always True here),
        ``rhf_solver`` str, ``rhf_n_cycles`` int, ``density_matrix_full`` (nao, nao) float64,
        ``orbital_energies_hartree`` (nmo,) float64, ``homo_hartree``, ``lumo_hartree``
        (float, NaN when there is no virtual orbital), ``dipole_debye`` (3,) float64
        (origin-independent for neutral molecules), ``mulliken_charges`` (N,) float64 (units
        of e), ``n_electrons`` int, ``n_ao`` int.
    Raises:
        MoleculeFailure: stage "rhf" (unsupported element, odd electron count, no convergence).
    """
    from pyscf import scf

    deadline = deadline or Deadline(None)
    mol = build_rhf_mol(atomic_numbers, positions_angstrom, basis=basis)
    mf = scf.RHF(mol)
    mf.conv_tol = conv_tol
    mf.max_cycle = max_cycle
    mf.chkfile = None
    mf.verbose = 0
    mf.kernel()
    solver, cycles = "diis", int(getattr(mf, "cycles", -1))
    if not mf.converged:
        deadline.check("RHF")
        dm_last = mf.make_rdm1()
        mf2 = scf.RHF(mol).newton()
        mf2.conv_tol = conv_tol
        mf2.max_cycle = max_cycle
        mf2.chkfile = None
        mf2.verbose = 0
        mf2.kernel(dm0=dm_last)
        solver, cycles = "diis+newton", cycles + int(getattr(mf2, "cycles", -1))
        mf = mf2
    if not mf.converged:
        raise MoleculeFailure("rhf", f"RHF/{basis} SCF not converged (DIIS then Newton, {max_cycle} "
                                     f"cycles each, conv_tol {conv_tol:g} Eh)")

    mo_e = np.asarray(mf.mo_energy, dtype=np.float64)
    n_electrons = int(mol.nelectron)
    nocc = n_electrons // 2
    order = np.sort(mo_e)
    homo = float(order[nocc - 1]) if nocc > 0 else float("nan")
    lumo = float(order[nocc]) if nocc < len(order) else float("nan")
    dipole = np.asarray(mf.dip_moment(unit="Debye", verbose=0), dtype=np.float64)
    _, charges = mf.mulliken_pop(verbose=0)
    return {
        "mol": mol,
        "mf": mf,
        "rhf_energy_hartree": float(mf.e_tot),
        "rhf_converged": bool(mf.converged),
        "rhf_solver": solver,
        "rhf_n_cycles": cycles,
        "density_matrix_full": np.asarray(mf.make_rdm1(), dtype=np.float64),
        "orbital_energies_hartree": mo_e,
        "homo_hartree": homo,
        "lumo_hartree": lumo,
        "dipole_debye": dipole,
        "mulliken_charges": np.asarray(charges, dtype=np.float64),
        "n_electrons": n_electrons,
        "n_ao": int(mol.nao),
    }
