"""Conformer search of the density releases: RDKit ETKDG embedding + MMFF94 minimisation.

Paper 000: "For each molecule ... we generated and optimized 50 conformations using distance
geometry algorithm and molecular force field as implemented in rdkit ... We reoptimized 5
lowest-energy conformations". The authors' released demo used ETKDGv2 with
``pruneRmsThresh=0.1`` and ``MMFFOptimizeMoleculeConfs`` (MMFF94, RDKit's default 200
iterations). Here:

- embedding: ETKDGv3 (RDKit's current default), ``randomSeed=seed+1`` (see :func:`rdkit_seed`), ``pruneRmsThresh=0.1``
  Angstrom as the seed but over ALL atoms and without symmetry matching (with RDKit's
  defaults, heavy atoms only or symmetry-aware, every ethanol conformer is pruned into one,
  O-H rotamers included), one thread; when it gives no
  conformer at all it is repeated with ``useRandomCoords=True`` (RDKit's recommended
  fallback for hard cases);
- MMFF94 (not MMFF94s) minimisation of every conformer, at most :data:`MMFF_MAX_ITERS` steps;
  energies in kcal/mol; a molecule without MMFF94 parameters fails (no silent UFF fallback);
- candidates for the semiempirical stage: the ``n`` lowest MMFF energies, skipping a
  conformer whose energy is within :data:`DUPLICATE_ENERGY_KCAL` of an already chosen one
  (the same minimum reached twice, or its mirror image), since pruning happens before
  minimisation.

Slots of conformers that were pruned or failed hold NaN, so the result has a fixed length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builders.etkdg import embed_conformers, etkdg_params
from builders.format.timeout import Deadline
from builders.format.failures import MoleculeFailure

PRUNE_RMS_ANGSTROM = 0.1
MMFF_MAX_ITERS = 2000
DUPLICATE_ENERGY_KCAL = 5e-3


@dataclass
class ConformerSearch:
    """Result of :func:`conformer_search`.

    Attributes:
        mol: the RDKit molecule WITH explicit hydrogens whose atom order the positions follow;
            holds the minimised conformers (conformer ids 0..n_embedded-1).
        atomic_numbers: (N,) uint8.
        positions_angstrom: (n_conformers, N, 3) float64, NaN for slots without a conformer.
        mmff_energies_kcal_mol: (n_conformers,) float64 MMFF94 energies, NaN where none.
        mmff_converged: (n_conformers,) bool, False where none.
        n_embedded: number of conformers RDKit produced (after pruning).
        used_random_coords: whether the ``useRandomCoords`` fallback was needed.
    """

    mol: object
    atomic_numbers: np.ndarray
    positions_angstrom: np.ndarray
    mmff_energies_kcal_mol: np.ndarray
    mmff_converged: np.ndarray
    n_embedded: int
    used_random_coords: bool


def rdkit_seed(seed: int) -> int:
    """RDKit ``randomSeed`` for a build seed: ``seed + 1`` (in [1, 2**31 - 1)).

    RDKit 2026.09 gives IDENTICAL conformers for every attempt when ``randomSeed=0`` (and -1
    means non-deterministic), so build seeds are shifted by one.
    """
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed % (2**31 - 2) + 1


def _embed(molh, n_conformers: int, seed: int, random_coords: bool, timeout_s: float) -> list[int]:
    params = etkdg_params(rdkit_seed(seed), prune_rms_angstrom=PRUNE_RMS_ANGSTROM,
                          random_coords=random_coords, timeout_s=timeout_s)
    return embed_conformers(molh, n_conformers, params)


def conformer_search(mol, n_conformers: int = 50, seed: int = 0, mmff_max_iters: int = MMFF_MAX_ITERS,
                     deadline: Deadline | None = None) -> ConformerSearch:
    """Embed ``n_conformers`` conformers with ETKDG and minimise each with MMFF94.

    Args:
        mol: RDKit molecule (implicit or explicit hydrogens); not modified.
        n_conformers: number of conformers requested (paper: 50).
        seed: random seed of the embedding (the search is deterministic given it).
        mmff_max_iters: maximum MMFF minimisation steps per conformer.
        deadline: checked between conformers.
    Returns:
        :class:`ConformerSearch`.
    Raises:
        MoleculeFailure: stage "conformers" if no conformer can be embedded or MMFF94 lacks
        parameters for the molecule.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdForceFieldHelpers as ffh

    deadline = deadline or Deadline(None)
    molh = Chem.AddHs(Chem.Mol(mol))
    with rdBase.BlockLogs():
        if not ffh.MMFFHasAllMoleculeParams(molh):
            raise MoleculeFailure("conformers", "MMFF94 has no parameters for some atom of this molecule")
        cids = _embed(molh, n_conformers, seed, False, deadline.remaining())
        used_random = False
        if not cids:
            deadline.check("conformer embedding")
            cids = _embed(molh, n_conformers, seed, True, deadline.remaining())
            used_random = True
        deadline.check("conformer embedding")
        if not cids:
            raise MoleculeFailure("conformers", "RDKit ETKDG embedding failed (also with random coordinates)")

        props = ffh.MMFFGetMoleculeProperties(molh, mmffVariant="MMFF94")
        n_atoms = molh.GetNumAtoms()
        pos = np.full((n_conformers, n_atoms, 3), np.nan)
        energies = np.full(n_conformers, np.nan)
        converged = np.zeros(n_conformers, dtype=bool)
        for slot, cid in enumerate(cids[:n_conformers]):
            deadline.check("MMFF minimisation")
            ff = ffh.MMFFGetMoleculeForceField(molh, props, confId=cid)
            if ff is None:
                raise MoleculeFailure("conformers", "MMFF94 force field could not be set up")
            not_converged = ff.Minimize(maxIts=int(mmff_max_iters))
            energies[slot] = ff.CalcEnergy()
            converged[slot] = not_converged == 0
            pos[slot] = molh.GetConformer(cid).GetPositions()
    z = np.array([a.GetAtomicNum() for a in molh.GetAtoms()], dtype=np.uint8)
    return ConformerSearch(mol=molh, atomic_numbers=z, positions_angstrom=pos,
                           mmff_energies_kcal_mol=energies, mmff_converged=converged,
                           n_embedded=len(cids), used_random_coords=used_random)


def select_candidates(search: ConformerSearch, n: int = 5) -> np.ndarray:
    """Indices (slots) of the ``n`` lowest-MMFF-energy distinct conformers.

    Two minimised conformers whose MMFF94 energies differ by less than
    :data:`DUPLICATE_ENERGY_KCAL` are taken as the same minimum (or its mirror image /
    a symmetry-equivalent copy, which have exactly the same energy); only the first is kept.

    Args:
        search: result of :func:`conformer_search`.
        n: number of candidates (paper: 5).
    Returns:
        (k,) int64 array, k <= n, sorted by MMFF energy.
    """
    e = search.mmff_energies_kcal_mol
    chosen: list[int] = []
    for i in np.argsort(e, kind="stable"):
        if not np.isfinite(e[i]):
            break  # NaN sorts last
        if all(abs(e[i] - e[j]) >= DUPLICATE_ENERGY_KCAL for j in chosen):
            chosen.append(int(i))
        if len(chosen) == n:
            break
    return np.asarray(chosen, dtype=np.int64)
