"""GFN2-xTB energies, gradients and geometry optimisation through ``tblite`` (optional).

``tblite`` (PyPI ``tblite``, tested with 0.8.0) is an optional dependency: without it every
function here raises ``MoleculeFailure("xtb", ...)`` saying how to install it. It is never
used in place of MINDO/3 unless the caller asks for it (``semiempirical="xtb"``).
"""
from __future__ import annotations

import numpy as np

from builders.density.geomopt import optimize_geometry
from builders.format.timeout import Deadline
from builders.format.failures import MoleculeFailure

XTB_METHOD = "GFN2-xTB"
XTB_MAX_Z = 86  # GFN2-xTB is parametrised for H-Rn
XTB_ACCURACY = 1.0  # tblite default numerical accuracy
XTB_MAX_ITER = 250  # tblite default SCC iterations

_INSTALL_HINT = "tblite is not installed: `pip install tblite` (tested with tblite==0.8.0) to use --semiempirical xtb"


def xtb_available() -> bool:
    """Whether the ``tblite`` Python interface can be imported."""
    try:
        import tblite.interface  # noqa: F401
    except ImportError:
        return False
    return True


def _calculator(atomic_numbers, positions_bohr, charge: int = 0, uhf: int = 0):
    try:
        from tblite.interface import Calculator
    except ImportError as err:
        raise MoleculeFailure("xtb", _INSTALL_HINT) from err
    z = np.asarray(atomic_numbers, dtype=np.int32).ravel()
    bad = [int(v) for v in z if v < 1 or v > XTB_MAX_Z]
    if bad:
        raise MoleculeFailure("xtb", f"element Z={bad[0]} not parametrized in {XTB_METHOD}")
    calc = Calculator(XTB_METHOD, z, np.asarray(positions_bohr, dtype=np.float64).reshape(-1, 3),
                      charge=float(charge), uhf=int(uhf))
    calc.set("verbosity", 0)
    calc.set("accuracy", XTB_ACCURACY)
    calc.set("max-iter", XTB_MAX_ITER)
    return calc


def xtb_energy_and_gradient_bohr(atomic_numbers, positions_bohr, charge: int = 0) -> tuple[float, np.ndarray]:
    """GFN2-xTB energy (Hartree) and gradient ((N, 3) Hartree/Bohr) at positions in Bohr.

    Raises:
        MoleculeFailure: stage "xtb" when tblite is missing, an element is unsupported or
        the SCC fails.
    """
    calc = _calculator(atomic_numbers, positions_bohr, charge=charge)
    try:
        res = calc.singlepoint()
    except RuntimeError as err:
        raise MoleculeFailure("xtb", f"{XTB_METHOD} single point failed: {err}") from err
    return float(res.get("energy")), np.asarray(res.get("gradient"), dtype=np.float64).reshape(-1, 3)


def xtb_energy_and_gradient(atomic_numbers, positions_angstrom, charge: int = 0) -> tuple[float, np.ndarray]:
    """GFN2-xTB energy (Hartree) and gradient ((N, 3) Hartree/Bohr) at positions in Angstrom."""
    from pyscf import lib

    pos_bohr = np.asarray(positions_angstrom, dtype=np.float64) / lib.param.BOHR
    return xtb_energy_and_gradient_bohr(atomic_numbers, pos_bohr, charge=charge)


def optimize_xtb(atomic_numbers, positions_angstrom, max_steps: int = 200, convergence: dict | None = None,
                 deadline: Deadline | None = None) -> tuple[np.ndarray, float, bool, int]:
    """Optimise a closed-shell neutral geometry with GFN2-xTB (pyscf.geomopt + geomeTRIC).

    Args and returns as :func:`builders.density.mindo3.optimize_mindo3`: (positions (N, 3)
    float64 Angstrom, GFN2-xTB energy in Hartree, converged flag, number of gradient evaluations).
    Raises:
        MoleculeFailure: stage "xtb".
    """
    from pyscf.geomopt.addons import as_pyscf_method

    from builders.density.mindo3 import make_mol

    if not xtb_available():
        raise MoleculeFailure("xtb", _INSTALL_HINT)
    z = np.asarray(atomic_numbers, dtype=int).ravel()
    # The pyscf Mole only carries the geometry here; a basis is needed to build it.
    mol = make_mol(z, positions_angstrom, basis="sto-3g" if z.max() <= 54 else "def2-svp")

    def scan(m):
        return xtb_energy_and_gradient_bohr(z, m.atom_coords(unit="Bohr"))

    try:
        res = optimize_geometry(as_pyscf_method(mol, scan), max_steps=max_steps, convergence=convergence,
                                deadline=deadline)
    except MoleculeFailure:
        raise
    except Exception as err:  # noqa: BLE001 - geomeTRIC / numpy errors; timeouts are BaseExceptions
        raise MoleculeFailure("xtb", f"{XTB_METHOD} optimization failed: {type(err).__name__}: {err}") from err
    return res.positions_angstrom, res.energy_hartree, res.converged, res.n_steps
