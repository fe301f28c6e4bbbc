"""PubChem molecule filters of the density releases (paper 000, data generation section).

Paper 000: "molecules ... contained only main-group elements up to Barium, the number of heavy
atoms did not exceed 30, the molecules were charge-neutral and did not have charge separation".
Made precise here:

- parseable and sanitizable by RDKit -> else ``MoleculeFailure("parse", ...)``;
- every element in :data:`MAIN_GROUP_UP_TO_BA`: IUPAC groups 1, 2 and 13-18 with Z <= 56
  (H, He, Li, Be, B, C, N, O, F, Ne, Na, Mg, Al, Si, P, S, Cl, Ar, K, Ca, Ga, Ge, As, Se, Br,
  Kr, Rb, Sr, In, Sn, Sb, Te, I, Xe, Cs, Ba: 36 elements; hydrogen counted in group 1);
- at most 30 heavy (non-hydrogen) atoms;
- total formal charge 0 and no atom with a non-zero formal charge ("no charge separation",
  which also rejects zwitterions and nitro groups written as [N+](=O)[O-]);
- one connected fragment (no salts, mixtures or solvates);
- no radical electrons on any atom (a closed-shell RHF must describe the molecule).

Every rejection raises ``MoleculeFailure("filter", reason)``.
"""
from __future__ import annotations

from builders.format.failures import MoleculeFailure

# IUPAC groups 1, 2, 13-18, Z <= 56 (Ba).
MAIN_GROUP_UP_TO_BA: frozenset[int] = frozenset((
    1, 3, 11, 19, 37, 55,        # group 1 (H, Li, Na, K, Rb, Cs)
    4, 12, 20, 38, 56,           # group 2 (Be, Mg, Ca, Sr, Ba)
    5, 13, 31, 49,               # group 13 (B, Al, Ga, In)
    6, 14, 32, 50,               # group 14 (C, Si, Ge, Sn)
    7, 15, 33, 51,               # group 15 (N, P, As, Sb)
    8, 16, 34, 52,               # group 16 (O, S, Se, Te)
    9, 17, 35, 53,               # group 17 (F, Cl, Br, I)
    2, 10, 18, 36, 54,           # group 18 (He, Ne, Ar, Kr, Xe)
))
MAX_HEAVY_ATOMS = 30


def parse_smiles(smiles: str):
    """Parse and sanitize a SMILES string with RDKit (no hydrogens added).

    Args:
        smiles: SMILES string.
    Returns:
        ``rdkit.Chem.Mol``.
    Raises:
        MoleculeFailure: stage "parse" if the string is empty or RDKit rejects it.
    """
    from rdkit import Chem, rdBase

    if not isinstance(smiles, str) or not smiles.strip():
        raise MoleculeFailure("parse", "empty SMILES")
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None:
        raise MoleculeFailure("parse", f"RDKit cannot parse SMILES {smiles.strip()!r}")
    return mol


def filter_mol(mol, max_heavy_atoms: int = MAX_HEAVY_ATOMS) -> None:
    """Apply the density-release filters to a parsed molecule (see module docstring).

    Args:
        mol: ``rdkit.Chem.Mol`` (sanitized).
        max_heavy_atoms: largest allowed number of non-hydrogen atoms.
    Raises:
        MoleculeFailure: stage "filter" naming the first failed criterion.
    """
    from rdkit import Chem

    bad = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in MAIN_GROUP_UP_TO_BA})
    if bad:
        raise MoleculeFailure("filter", f"element(s) {', '.join(bad)} outside main-group elements up to Ba")
    n_heavy = mol.GetNumHeavyAtoms()
    if n_heavy > max_heavy_atoms:
        raise MoleculeFailure("filter", f"{n_heavy} heavy atoms > {max_heavy_atoms}")
    if n_heavy == 0:
        raise MoleculeFailure("filter", "no heavy atoms")
    total = Chem.GetFormalCharge(mol)
    if total != 0:
        raise MoleculeFailure("filter", f"total charge {total:+d}, not neutral")
    charged = [f"{a.GetSymbol()}{a.GetIdx()}({a.GetFormalCharge():+d})" for a in mol.GetAtoms() if a.GetFormalCharge()]
    if charged:
        raise MoleculeFailure("filter", f"charge separation: formal charges on {', '.join(charged[:4])}")
    n_frag = len(Chem.GetMolFrags(mol))
    if n_frag != 1:
        raise MoleculeFailure("filter", f"{n_frag} disconnected fragments, not one molecule")
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    if radicals:
        raise MoleculeFailure("filter", f"{radicals} radical electron(s), not closed shell")


def filter_smiles(smiles: str, max_heavy_atoms: int = MAX_HEAVY_ATOMS):
    """Parse a SMILES and apply the density-release filters.

    Args:
        smiles: SMILES string.
        max_heavy_atoms: largest allowed number of non-hydrogen atoms (paper: 30).
    Returns:
        the sanitized ``rdkit.Chem.Mol`` (implicit hydrogens).
    Raises:
        MoleculeFailure: stage "parse" or "filter".
    """
    mol = parse_smiles(smiles)
    filter_mol(mol, max_heavy_atoms=max_heavy_atoms)
    return mol
