"""Molecule identity (InChIKey): the two keys the releases record, and what the split reads.

* :func:`inchikey_of` strips stereochemistry: random-conformers and p1-crystals use it, since
  stereo perceived from a random 3D embedding is not part of a molecule's identity.
* :func:`input_inchikey` keeps the stereo the input states: the density releases use it, where
  the input is a PubChem or QM9 molecule whose stereo is real.

The split function (``builders.format.splits``) reads only the first, connectivity block of
either key, which does not depend on stereo, so a molecule lands in the same split in every
release.
"""
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


def input_inchikey(mol: Chem.Mol) -> str:
    """Standard InChIKey of an RDKit molecule as given (stereo kept), RDKit's log silenced.

    Raises:
        ValueError: if RDKit cannot produce an InChIKey for the molecule.
    """
    from rdkit import rdBase

    with rdBase.BlockLogs():
        key = Chem.MolToInchiKey(mol)
    if not key:
        raise ValueError("RDKit could not generate an InChIKey")
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
