"""RDKit ETKDGv3 embedding: the one place the releases and the baselines' synthetic samples set
RDKit's distance-geometry parameters.

Callers differ only in what they pass: the density releases embed many conformers with RMS
pruning over all atoms and a time limit (``builders.density.conformers``); random-conformers
embeds one conformer and retries with random starting coordinates
(``builders.conformers.random_conformer``); ``baselines.mo3enet.synthetic`` embeds one
conformer per SMILES for tests. RDKit is imported when a function is called.
"""
from __future__ import annotations

import math


def etkdg_params(random_seed: int, *, prune_rms_angstrom: float | None = None,
                 random_coords: bool = False, max_iterations: int | None = None,
                 timeout_s: float = math.inf):
    """ETKDGv3 parameters for one embedding call.

    Args:
        random_seed: RDKit ``randomSeed`` (a positive int; RDKit treats -1 as "not seeded").
        prune_rms_angstrom: prune conformers closer than this RMSD (Angstrom) over ALL atoms,
            without symmetry matching, on one thread; None: no pruning (RDKit's default).
        random_coords: start from random coordinates (RDKit's fallback for hard cases).
        max_iterations: RDKit ``maxIterations`` (None: RDKit's default).
        timeout_s: wall-clock limit for the call in seconds, rounded up to whole seconds
            (``inf``: none).
    Returns:
        ``rdkit.Chem.rdDistGeom.EmbedParameters``.
    """
    from rdkit.Chem import rdDistGeom

    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(random_seed)
    if prune_rms_angstrom is not None:
        params.pruneRmsThresh = float(prune_rms_angstrom)
        params.onlyHeavyAtomsForRMS = False
        params.useSymmetryForPruning = False
        params.numThreads = 1
    if random_coords:
        params.useRandomCoords = True
    if max_iterations is not None:
        params.maxIterations = int(max_iterations)
    if math.isfinite(timeout_s):
        params.timeout = max(1, int(math.ceil(timeout_s)))
    return params


def embed_conformers(molh, n_conformers: int, params) -> list[int]:
    """Embed ``n_conformers`` conformers into ``molh`` (hydrogens explicit) in place.

    Args:
        molh: RDKit molecule with explicit hydrogens; its conformers are replaced.
        n_conformers: how many to attempt.
        params: from :func:`etkdg_params`.
    Returns:
        the conformer ids RDKit produced (after pruning; empty when embedding failed).
    """
    from rdkit.Chem import rdDistGeom

    return list(rdDistGeom.EmbedMultipleConfs(molh, int(n_conformers), params))


def embed_one(molh, params) -> bool:
    """Embed one conformer into ``molh`` in place; True when RDKit succeeded."""
    from rdkit.Chem import rdDistGeom

    return rdDistGeom.EmbedMolecule(molh, params) == 0


__all__ = ["etkdg_params", "embed_conformers", "embed_one"]
