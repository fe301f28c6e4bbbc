"""Small synthetic point-cloud samples (RDKit ETKDG conformers) for tests and smoke runs."""
from __future__ import annotations

import numpy as np

DEFAULT_SMILES = ("CCO", "c1ccccc1", "NCC(=O)O", "CC(F)(F)F", "C=CC#N", "OC1CCOC1")


def rdkit_samples(smiles=DEFAULT_SMILES, seed: int = 0) -> list[dict]:
    """One ETKDG conformer (with hydrogens) per SMILES.

    Returns dicts with ``atomic_numbers`` (N,) uint8 and ``positions`` (N, 3) float32 in A,
    plus ``smiles``. Raises ValueError for a SMILES RDKit cannot embed.
    """
    from rdkit import Chem

    from builders.etkdg import embed_one, etkdg_params

    out = []
    for smi in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        if not embed_one(mol, etkdg_params(seed)):
            raise ValueError(f"RDKit could not embed {smi!r}")
        pos = mol.GetConformer().GetPositions().astype(np.float32)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.uint8)
        out.append({"atomic_numbers": z, "positions": pos, "smiles": smi})
    return out


def random_samples(num: int, min_atoms: int = 3, max_atoms: int = 12, seed: int = 0) -> list[dict]:
    """Random typed point clouds: uniform types over H, C, N, O, F, positions N(0, 1.5 A)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        n = int(rng.integers(min_atoms, max_atoms + 1))
        out.append({"atomic_numbers": rng.choice([1, 6, 7, 8, 9], size=n).astype(np.uint8),
                    "positions": (1.5 * rng.standard_normal((n, 3))).astype(np.float32)})
    return out
