"""Molecule identity (InChIKey) as the split function sees it."""
from __future__ import annotations

from rdkit import Chem


def inchikey_of(mol: Chem.Mol) -> str:
    """InChIKey of an RDKit molecule, computed on its graph with stereochemistry removed.

    Stereo perceived from a random 3D conformer is not part of a molecule's identity here, so
    the key depends only on the constitution (and charge/protonation).

    Raises:
        ValueError: if RDKit cannot produce an InChIKey for the molecule.
    """
    graph = Chem.RemoveHs(Chem.Mol(mol), sanitize=True)
    graph.RemoveAllConformers()
    Chem.RemoveStereochemistry(graph)
    key = Chem.MolToInchiKey(graph)
    if not key:
        raise ValueError(f"RDKit gave no InChIKey for {Chem.MolToSmiles(graph)}")
    return key


def inchikey_of_smiles(smiles: str) -> str:
    """InChIKey (stereo removed) of a SMILES string.

    Raises:
        ValueError: if the SMILES does not parse.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES: {smiles!r}")
    return inchikey_of(mol)
