"""MINDO/3 with pyscf 2.14 through ``pyscf-semiempirical`` 0.1.1, with two compatibility fixes.

Fix 1 (API): pyscf 2.14's SCF driver (``pyscf.scf.hf.kernel``) calls
``mf.get_init_guess(mol, mf.init_guess, s1e=s1e)``, but ``RMINDO3.get_init_guess(self, mol=None,
key='minao')`` takes no ``s1e`` keyword, so ``RMINDO3(mol).kernel()`` fails with
``TypeError: RMINDO3.get_init_guess() got an unexpected keyword argument 's1e'``.
:class:`RMINDO3Compat` is a subclass whose ``get_init_guess`` accepts and ignores extra
keywords (MINDO/3's orthogonal basis has S = 1; the guess is the package's own
average-occupation density). Nothing in site-packages is edited.

Fix 2 (data): in ``pyscf.semiempirical.mopac_param`` the valence-state ionisation potentials
``VS``/``VP`` of silicon (-17.82 / -8.51 eV, Bingham-Dewar-Lo) sit at index 10 (neon) instead
of 14, so ``VS[14] = VP[14] = 0`` and every Si resonance integral is zero (SiH4 then has
no Si-H bonding). :func:`apply_parameter_fixes` copies the values to index 14 (idempotent,
done at call time by every function here). Without the fix Si would have to be excluded.

Supported elements are those with a complete MINDO/3 parameter set in the package's
tables (USS3, ZS3, BETA3, ALP3, EISOL3, EHEAT3, VS): :data:`MINDO3_ELEMENTS`.
"""
from __future__ import annotations

import numpy as np

from builders.density.geomopt import GeomOptResult, optimize_geometry
from builders.format.timeout import Deadline
from builders.format.failures import MoleculeFailure

# Z with a full MINDO/3 parameter set in pyscf-semiempirical 0.1.1 (Si after apply_parameter_fixes).
MINDO3_ELEMENTS: tuple[int, ...] = (1, 5, 6, 7, 8, 9, 14, 15, 16, 17)
MINDO3_SYMBOLS: tuple[str, ...] = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl")

_SI = 14
_SI_VS_EV, _SI_VP_EV = -17.820, -8.510

# SCF settings for MINDO/3 energies used in geometry optimisation (Hartree).
MINDO3_CONV_TOL = 1e-9
MINDO3_MAX_CYCLE = 200


def apply_parameter_fixes() -> None:
    """Put silicon's MINDO/3 VS/VP ionisation potentials at Z=14 in ``mopac_param`` (idempotent)."""
    from pyscf.semiempirical import mopac_param as p

    if p.VS[_SI] == 0.0:
        p.VS[_SI] = _SI_VS_EV / p.HARTREE2EV
    if p.VP[_SI] == 0.0:
        p.VP[_SI] = _SI_VP_EV / p.HARTREE2EV


def _one_center_blocks(mindo_mol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AO->atom map and the block-diagonal one-centre J/K integral matrices of MINDO/3.

    Returns:
        (ao_atom (nao,) int, j1 (nao, nao), k1 (nao, nao)) with j1/k1 zero between atoms.
    """
    from pyscf.semiempirical import mindo3

    nao = mindo_mol.nao
    charges = mindo_mol.atom_charges()
    ao_atom = np.empty(nao, dtype=np.int64)
    j1 = np.zeros((nao, nao))
    k1 = np.zeros((nao, nao))
    ints = {int(z): mindo3._get_jk_1c_ints(int(z)) for z in set(charges.tolist())}
    for ia, (p0, p1) in enumerate(mindo_mol.aoslice_by_atom()[:, 2:]):
        ao_atom[p0:p1] = ia
        j_ints, k_ints = ints[int(charges[ia])]
        j1[p0:p1, p0:p1] = j_ints
        k1[p0:p1, p0:p1] = k_ints
    return ao_atom, j1, k1


def mindo3_get_jk(mindo_mol, dm, blocks=None) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``pyscf.semiempirical.mindo3.get_jk`` (same J and K, no atom-pair Python loop).

    Args:
        mindo_mol: the MINDO/3 ``Mole`` (``mf._mindo_mol``).
        dm: (..., nao, nao) density matrix (or matrices).
        blocks: optional cached result of :func:`_one_center_blocks` for this molecule.
    Returns:
        (vj, vk) with the shape of ``dm``.
    """
    from pyscf.semiempirical import mindo3

    dm = np.asarray(dm)
    shape = dm.shape
    nao = shape[-1]
    dm = dm.reshape(-1, nao, nao)
    ao_atom, j1, k1 = blocks if blocks is not None else _one_center_blocks(mindo_mol)
    diag = np.einsum("xqq->xq", dm)
    gamma = mindo3._get_gamma(mindo_mol)  # (natm, natm), zero diagonal
    pop = np.zeros((dm.shape[0], mindo_mol.natm))
    for x in range(dm.shape[0]):
        pop[x] = np.bincount(ao_atom, weights=diag[x], minlength=mindo_mol.natm)
    vj = 2.0 * k1 * dm
    vk = (j1 + k1) * dm + gamma[ao_atom[:, None], ao_atom[None, :]] * dm
    idx = np.arange(nao)
    # one-centre Coulomb (ii|jj) D_jj and exchange (ij|ji) D_jj on the diagonal; two-centre
    # Coulomb gamma_AB * P_B on the diagonal of atom A.
    vj[:, idx, idx] += np.einsum("pq,xq->xp", j1, diag) + (pop @ gamma.T)[:, ao_atom]
    vk[:, idx, idx] += np.einsum("pq,xq->xp", k1, diag)
    return vj.reshape(shape), vk.reshape(shape)


def _compat_class():
    from pyscf.semiempirical import mindo3

    class RMINDO3Compat(mindo3.RMINDO3):
        """``pyscf.semiempirical.RMINDO3`` fixed for pyscf 2.14 and sped up.

        ``get_init_guess`` accepts pyscf 2.14's ``s1e=`` keyword; ``get_jk`` is the vectorised
        :func:`mindo3_get_jk` (the package's version loops over atom pairs in Python).
        """

        def get_init_guess(self, mol=None, key="minao", **kwargs):
            return mindo3.get_init_guess(self._mindo_mol)

        def get_jk(self, mol=None, dm=None, hermi=1, with_j=True, with_k=True, omega=None):
            if dm is None:
                dm = self.make_rdm1()
            mm = self._mindo_mol
            key = (tuple(mm.atom_charges().tolist()), mm.nao)
            cache = getattr(self, "_densegen_jk_blocks", None)
            if cache is None or cache[0] != key:
                cache = (key, _one_center_blocks(mm))
                self._densegen_jk_blocks = cache
            return mindo3_get_jk(mm, dm, blocks=cache[1])

    return RMINDO3Compat


_CLASS = None


def rmindo3(mol, conv_tol: float = MINDO3_CONV_TOL, max_cycle: int = MINDO3_MAX_CYCLE):
    """A working closed-shell MINDO/3 SCF object for a pyscf ``Mole`` (fixes applied).

    Args:
        mol: ``pyscf.gto.Mole`` (spin 0); its basis is ignored (MINDO/3 builds its own).
        conv_tol: SCF energy convergence threshold, Hartree.
        max_cycle: maximum SCF iterations.
    Returns:
        an ``RMINDO3Compat`` instance (``.kernel()`` gives the MINDO/3 total energy in Hartree:
        valence electronic + core-core repulsion; ``.e_heat_formation`` in kcal/mol).
    """
    global _CLASS
    apply_parameter_fixes()
    if _CLASS is None:
        _CLASS = _compat_class()
    mf = _CLASS(mol)
    mf.conv_tol = conv_tol
    mf.max_cycle = max_cycle
    mf.verbose = 0
    mf.chkfile = None  # no HDF5 checkpoint per SCF cycle (it was ~10% of the run time)
    return mf


def check_mindo3_elements(atomic_numbers) -> None:
    """Raise ``MoleculeFailure("mindo3", "element X not parametrized in MINDO3")`` if needed.

    Args:
        atomic_numbers: (N,) atomic numbers.
    """
    from pyscf.data.elements import _symbol

    for z in sorted(set(int(z) for z in np.asarray(atomic_numbers).ravel())):
        if z not in MINDO3_ELEMENTS:
            raise MoleculeFailure("mindo3", f"element {_symbol(z)} not parametrized in MINDO3")


def make_mol(atomic_numbers, positions_angstrom, basis: str = "sto-3g", charge: int = 0, spin: int = 0):
    """Build a quiet pyscf ``Mole`` from atomic numbers and Angstrom positions.

    Args:
        atomic_numbers: (N,) int.
        positions_angstrom: (N, 3) float, Angstrom.
        basis: pyscf basis name.
        charge: total charge; spin: 2S.
    Returns:
        built ``pyscf.gto.Mole`` (no symmetry, verbose 0).
    """
    from pyscf import gto

    z = np.asarray(atomic_numbers, dtype=int).ravel()
    xyz = np.asarray(positions_angstrom, dtype=np.float64).reshape(-1, 3)
    if len(z) != len(xyz):
        raise ValueError(f"{len(z)} atomic numbers but {len(xyz)} positions")
    atoms = [(int(zi), tuple(float(c) for c in xi)) for zi, xi in zip(z, xyz)]
    return gto.M(atom=atoms, unit="Angstrom", basis=basis, charge=charge, spin=spin,
                 symmetry=False, verbose=0)


def mindo3_energy_and_gradient(atomic_numbers, positions_angstrom, conv_tol: float = MINDO3_CONV_TOL,
                               max_cycle: int = MINDO3_MAX_CYCLE) -> tuple[float, np.ndarray]:
    """Closed-shell MINDO/3 energy and analytic nuclear gradient.

    Args:
        atomic_numbers: (N,) int, all in :data:`MINDO3_ELEMENTS`.
        positions_angstrom: (N, 3) float, Angstrom.
        conv_tol: SCF convergence threshold, Hartree.
        max_cycle: maximum SCF iterations.
    Returns:
        (energy in Hartree, gradient (N, 3) float64 in Hartree/Bohr).
    Raises:
        MoleculeFailure: stage "mindo3" for an unsupported element or an unconverged SCF.
    """
    check_mindo3_elements(atomic_numbers)
    mol = make_mol(atomic_numbers, positions_angstrom)
    mf = rmindo3(mol, conv_tol=conv_tol, max_cycle=max_cycle)
    energy = mf.kernel()
    if not mf.converged:
        raise MoleculeFailure("mindo3", f"MINDO3 SCF not converged in {max_cycle} cycles")
    grad = mf.nuc_grad_method()
    grad.verbose = 0
    return float(energy), np.asarray(grad.kernel(), dtype=np.float64)


def optimize_mindo3(atomic_numbers, positions_angstrom, max_steps: int = 200,
                    convergence: dict | None = None, conv_tol: float = MINDO3_CONV_TOL,
                    max_cycle: int = MINDO3_MAX_CYCLE,
                    deadline: Deadline | None = None) -> tuple[np.ndarray, float, bool, int]:
    """Optimise a closed-shell geometry at the MINDO/3 level (pyscf.geomopt + geomeTRIC).

    Args:
        atomic_numbers: (N,) int, all in :data:`MINDO3_ELEMENTS`.
        positions_angstrom: (N, 3) float starting geometry, Angstrom.
        max_steps: maximum geomeTRIC steps.
        convergence: geomeTRIC criteria overriding ``builders.density.geomopt.DEFAULT_CONVERGENCE``.
        conv_tol, max_cycle: MINDO/3 SCF settings at each step.
        deadline: optional :class:`Deadline`, checked after every step.
    Returns:
        (positions (N, 3) float64 Angstrom, MINDO/3 energy at them in Hartree,
        converged flag, number of gradient evaluations).
    Raises:
        MoleculeFailure: stage "mindo3" for an unsupported element or an SCF that fails to
        converge at some step of the optimisation.
    """
    check_mindo3_elements(atomic_numbers)
    mol = make_mol(atomic_numbers, positions_angstrom)
    mf = rmindo3(mol, conv_tol=conv_tol, max_cycle=max_cycle)
    try:
        res: GeomOptResult = optimize_geometry(mf, max_steps=max_steps, convergence=convergence,
                                               deadline=deadline)
    except MoleculeFailure:
        raise
    except Exception as err:  # noqa: BLE001 - pyscf: RuntimeError "Nuclear gradients of ... not
        # converged"; geomeTRIC: its own errors, numpy LinAlgError. Timeouts are BaseExceptions.
        raise MoleculeFailure("mindo3", f"MINDO3 optimization failed: {type(err).__name__}: {err}") from err
    return res.positions_angstrom, res.energy_hartree, res.converged, res.n_steps
