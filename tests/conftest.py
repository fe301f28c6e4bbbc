"""Shared fixtures: small real inputs and small releases built once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"  # small real fixtures, vendored with their provenance
EMBEDDED = REPO / "builders" / "data"

# Keep native libraries on one thread in tests: the machine has 2 cores and pytest runs
# builds with worker processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Small, real QM9 molecules (gdb indices 1-40 and a few larger ones) as SMILES.
QM9_LIKE = [
    "C", "N", "O", "C#C", "C#N", "C=O", "CC", "CO", "CC#C", "CC#N", "CC=O", "NC=O", "CCC", "CCO", "COC",
    "C1CC1", "C1CO1", "CC(C)=O", "CC(N)=O", "NC(N)=O", "CC(C)C", "CC(C)O", "OCCO", "CCCO", "CC(=O)O",
    "c1ccccc1", "Oc1ccccc1", "CC(=O)Nc1ccccc1", "OC1CCCCC1", "CCOC(C)=O", "N#CC1=CC=CN1", "CC1(C)CC1O",
    "COc1ccc(O)cc1", "FC(F)(F)C(O)C#N", "CN1C=NC2=C1C(=O)NC=N2", "OCC1OC(O)C(O)C1O",
]


def embed_smiles(smiles: str, seed: int = 7):
    """(atomic numbers (N,), positions (N, 3) Angstrom) of one ETKDG + MMFF94 conformer with H."""
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def zinc_smiles(n: int) -> list[str]:
    """First ``n`` SMILES of the embedded ZINC train file (real, mostly > 9 heavy atoms)."""
    lines = (EMBEDDED / "zinc_train10k.csv").read_text().splitlines()[1:]
    return [line.split(",")[0] for line in lines[:n]]


@pytest.fixture(scope="session")
def small_smiles_file(tmp_path_factory) -> Path:
    """A SMILES file of 36 QM9-like molecules and 84 real ZINC molecules (120 lines)."""
    path = tmp_path_factory.mktemp("inputs") / "small.smi"
    path.write_text("\n".join(QM9_LIKE + zinc_smiles(84)) + "\n")
    return path


def build_small(root: Path, smiles_file: Path, seed: int = 0, workers: int = 1, unit_size: int = 16, **kw):
    """Build random-conformers from a SMILES file under ``root``; returns (manifest, release dir)."""
    from builders.format.build import build_release
    from builders.format.manifest import release_dir
    from builders.format.registry import get_release

    spec = get_release("random-conformers")
    params = {"input": str(smiles_file), "sources": "qm9,zinc", "conformer": {}}
    manifest = build_release(spec, root, params, seed=seed, workers=workers, progress=False,
                             unit_size=unit_size, **kw)
    return manifest, release_dir(root, spec.name)


@pytest.fixture(scope="session")
def small_release(tmp_path_factory, small_smiles_file):
    """A random-conformers release of the 120-line input, seed 0 (built once)."""
    root = tmp_path_factory.mktemp("release")
    return build_small(root, small_smiles_file)
