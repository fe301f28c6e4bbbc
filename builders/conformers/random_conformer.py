"""Random molecular conformers, the Mo3ENet training-data pipeline (paper 002, section 3.4).

SMILES -> RDKit 3D embedding (ETKDG) -> while more than 9 heavy atoms: cut an acyclic single
bond between heavy atoms and cap the open valence with H -> spin every rotatable bond to a
uniform random torsion -> a short MMFF94 relaxation that removes clashes (the undistorted
conformer) -> for training samples only, Gaussian position noise and a global rescale about
the centroid (evaluation samples get the small evaluation noise and no rescale).

How this differs from the released MXtalTools code (checked against
``mxtaltools/dataset_utils/mol_building.py``, ``data_class_methods/mol_methods.py`` and
``modeller.py`` at HEAD 5e814b9d):

* Torsions and clash removal. The dataset builders (``construction/parallel_synthesis.py``)
  call ``MolData.from_smiles`` without ``scramble_dihedrals``, whose default is False, so
  neither torsions nor the clash minimization run there: a sample is the RDKit embedding of
  the (truncated) molecule. Where ``scramble_dihedrals=True`` is passed, the builders'
  ``allow_methyl_rotations=True`` makes ``scramble_dihedral_angles`` treat every rotor as
  allowed, and it applies torsions only when some rotor is NOT allowed, so again no torsion
  is applied. That path's clash minimization runs MMFF in cycles of 10 iterations (at most
  10) while any NON-BONDED pair is closer than 1.2 A and drops the molecule if that fails
  (its test, ``min distance > 1.2`` means converged, is the right way round). This pipeline
  spins every rotatable bond, as the paper describes, then runs 20 MMFF94 steps, and more
  only while ANY pair is closer than 0.7 A.
* Truncation. The code removes whole fragments behind bridge bonds of any bond order
  (weighted towards small fragments), never cutting a bond whose smaller side is one atom
  (so a lone terminal heavy atom such as F or =O is never cut off), then re-protonates
  (``AddHs(RemoveHs(m))``) and re-embeds the fragment from scratch. Here: acyclic single bonds
  between heavy atoms are cut (a terminal heavy atom may be cut off), the open valence is
  capped with an H along the old bond, and the fragment keeps its embedded geometry.
* Noise and rescale. In the code both are autoencoder-training augmentations
  (``modeller.preprocess_ae_inputs``, called with them only when ``epoch_type == 'train'``):
  noise of ``positional_noise.autoencoder`` A (the paper: 0.1) and, when the config sets
  ``affine_scale_factor`` (1 in the experiment configs that set it), a rescale of the
  coordinates by N(factor, 0.1) clipped to [0.9, 1.25]; evaluation batches get 0.01 A noise
  and no rescale; crystals are built from the plain conformer. This pipeline stores both the
  undistorted conformer and the perturbed one; valid/test samples are never rescaled.
* Filters. The code's radius is over heavy atoms from their centroid; here over all atoms.

All randomness comes from the ``numpy.random.Generator`` passed in, so a molecule's result
depends only on (SMILES, generator state).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, rdMolTransforms

from builders.etkdg import embed_one, etkdg_params
from builders.format.failures import MoleculeFailure

RDLogger.DisableLog("rdApp.*")

ALLOWED_ELEMENTS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
# bond length (Angstrom) of an X-H cap by the element it is attached to
CAP_BOND_LENGTH = {6: 1.09, 7: 1.01, 8: 0.96, 9: 0.92}
ROTATABLE = Chem.MolFromSmarts("[!$([NH]!@C(=O))&!D1&!$(*#*)]-&!@[!$([NH]!@C(=O))&!D1&!$(*#*)]")


@dataclass(frozen=True)
class ConformerParams:
    """Parameters of the conformer pipeline (all recorded in the release manifest).

    Attributes:
        max_input_heavy_atoms: inputs larger than this are rejected before embedding.
        max_heavy_atoms: truncate until at most this many heavy atoms remain (paper: 9).
        min_atoms, max_atoms: filter on the final atom count including H (code: 5-30).
        max_radius: filter on the largest atom distance from the centroid, Angstrom (code: 15).
        min_distance: no two atoms closer than this in a sample, Angstrom.
        mmff_iterations: MMFF94 steps of the "very short" relaxation after spinning.
        mmff_extra_iterations: further steps allowed when atoms are still closer than min_distance.
        noise_sigma_train, noise_sigma_eval: Gaussian position noise per coordinate, Angstrom
            (0.1 for train, 0.01 for valid/test, as the authors' code).
        scale_mean, scale_std, scale_min, scale_max: global rescale ~ N(mean, std) clipped,
            applied to train samples only (the authors never rescale at evaluation).
    """

    max_input_heavy_atoms: int = 50
    max_heavy_atoms: int = 9
    min_atoms: int = 5
    max_atoms: int = 30
    max_radius: float = 15.0
    min_distance: float = 0.7
    mmff_iterations: int = 20
    mmff_extra_iterations: int = 500
    noise_sigma_train: float = 0.1
    noise_sigma_eval: float = 0.01
    scale_mean: float = 1.0
    scale_std: float = 0.1
    scale_min: float = 0.9
    scale_max: float = 1.25

    def to_dict(self) -> dict:
        return asdict(self)


def parse_and_filter(smiles: str, params: ConformerParams) -> Chem.Mol:
    """Parse a SMILES and apply the element/charge/size filters.

    Raises:
        MoleculeFailure: stage ``parse`` (invalid SMILES) or ``filter`` (element outside
            H,C,N,O,F; formal charge; radical; several fragments; too many heavy atoms).
    """
    if not smiles or len(smiles) > 1000:
        raise MoleculeFailure("parse", "empty SMILES" if not smiles else "SMILES longer than 1000 characters")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MoleculeFailure("parse", "RDKit cannot parse this SMILES")
    bad = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in ALLOWED_ELEMENTS})
    if bad:
        raise MoleculeFailure("filter", f"element(s) {', '.join(bad)} not in H, C, N, O, F")
    if any(a.GetFormalCharge() != 0 for a in mol.GetAtoms()):
        raise MoleculeFailure("filter", "charged atom (formal charge != 0)")
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        raise MoleculeFailure("filter", "radical (unpaired electrons)")
    if len(Chem.GetMolFrags(mol)) > 1:
        raise MoleculeFailure("filter", "several fragments (salt or mixture)")
    heavy = mol.GetNumHeavyAtoms()
    if heavy > params.max_input_heavy_atoms:
        raise MoleculeFailure("filter", f"{heavy} heavy atoms exceeds the input limit of {params.max_input_heavy_atoms}")
    if heavy == 0:
        raise MoleculeFailure("filter", "no heavy atom")
    return mol


def embed(mol: Chem.Mol, rng: np.random.Generator) -> Chem.Mol:
    """Add hydrogens and embed one 3D conformer with ETKDGv3 (seeded from ``rng``).

    Raises:
        MoleculeFailure: stage ``embed`` when RDKit cannot embed the molecule.
    """
    molh = Chem.AddHs(mol)
    seed = int(rng.integers(1, 2**31 - 1))
    if not embed_one(molh, etkdg_params(seed, max_iterations=200)):
        if not embed_one(molh, etkdg_params(seed, max_iterations=200, random_coords=True)):
            raise MoleculeFailure("embed", "RDKit ETKDG could not embed a 3D conformer")
    return molh


def _heavy_side(mol: Chem.Mol, start: int, blocked: int) -> set[int]:
    """Heavy atoms reachable from ``start`` without crossing the bond start-blocked."""
    seen, stack = {start}, [start]
    while stack:
        a = stack.pop()
        for nb in mol.GetAtomWithIdx(a).GetNeighbors():
            j = nb.GetIdx()
            if (a == start and j == blocked) or j in seen or nb.GetAtomicNum() == 1:
                continue
            seen.add(j)
            stack.append(j)
    return seen


def _cut(mol: Chem.Mol, keep: int, drop: int) -> Chem.Mol:
    """Cut bond keep-drop, keep ``keep``'s side and cap it: ``drop`` becomes an H placed along
    the old bond at the X-H bond length of ``keep``'s element."""
    side = _heavy_side(mol, drop, keep)
    remove = set(side)
    for a in side:
        remove.update(nb.GetIdx() for nb in mol.GetAtomWithIdx(a).GetNeighbors() if nb.GetAtomicNum() == 1)
    remove.discard(drop)
    rw = Chem.RWMol(mol)
    conf = rw.GetConformer()
    pk = np.array(conf.GetAtomPosition(keep))
    pd = np.array(conf.GetAtomPosition(drop))
    length = CAP_BOND_LENGTH.get(mol.GetAtomWithIdx(keep).GetAtomicNum(), 1.0)
    cap = pk + (pd - pk) / np.linalg.norm(pd - pk) * length
    atom = rw.GetAtomWithIdx(drop)
    atom.SetAtomicNum(1)
    atom.SetFormalCharge(0)
    atom.SetNoImplicit(True)
    atom.SetNumExplicitHs(0)
    atom.SetIsAromatic(False)
    atom.SetHybridization(Chem.HybridizationType.UNSPECIFIED)
    conf.SetAtomPosition(drop, cap.tolist())
    rw.GetBondBetweenAtoms(keep, drop).SetBondType(Chem.BondType.SINGLE)
    for idx in sorted(remove, reverse=True):
        rw.RemoveAtom(idx)
    out = rw.GetMol()
    Chem.SanitizeMol(out)
    return out


def truncate(mol: Chem.Mol, rng: np.random.Generator, max_heavy: int) -> tuple[Chem.Mol, list[str]]:
    """Cut acyclic single bonds between heavy atoms until at most ``max_heavy`` heavy atoms remain.

    At each step the candidates are (bond, kept side) pairs. Preferred: sides of
    max_heavy-4..max_heavy heavy atoms (uniform among them); else the largest sides within the
    limit; else the larger side of the biggest cut (progress towards the limit). Each open
    valence is capped with H.

    Returns:
        (the fragment with H and its 3D conformer, SMILES of the fragment after each cut).
    Raises:
        MoleculeFailure: stage ``truncate`` when no cuttable bond is left above the limit, or
            the fragment does not sanitize.
    """
    steps = []
    while mol.GetNumHeavyAtoms() > max_heavy:
        options = []
        for bond in mol.GetBonds():
            a, b = bond.GetBeginAtom(), bond.GetEndAtom()
            if (bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing()
                    or a.GetAtomicNum() == 1 or b.GetAtomicNum() == 1):
                continue
            for keep, drop in ((a.GetIdx(), b.GetIdx()), (b.GetIdx(), a.GetIdx())):
                options.append((len(_heavy_side(mol, keep, drop)), keep, drop))
        if not options:
            raise MoleculeFailure("truncate", f"{mol.GetNumHeavyAtoms()} heavy atoms and no acyclic single bond left to cut")
        options.sort()
        best = [o for o in options if max(1, max_heavy - 4) <= o[0] <= max_heavy]
        if not best:
            fitting = [o for o in options if o[0] <= max_heavy]
            if fitting:
                top = max(o[0] for o in fitting)
                best = [o for o in fitting if o[0] == top]
        if not best:
            biggest = max(o[0] for o in options)
            best = [o for o in options if o[0] == biggest]
        _, keep, drop = best[int(rng.integers(len(best)))]
        try:
            mol = _cut(mol, keep, drop)
        except Exception as err:  # RDKit sanitization error on an odd fragment
            raise MoleculeFailure("truncate", f"fragment does not sanitize: {err}") from None
        steps.append(Chem.MolToSmiles(Chem.RemoveHs(mol)))
    return mol, steps


def spin_rotatable_bonds(mol: Chem.Mol, rng: np.random.Generator) -> list[float]:
    """Set every rotatable bond (RDKit's strict definition, amides excluded) to a uniform
    random torsion in [0, 360) degrees; returns the torsions set, in bond order."""
    conf = mol.GetConformer()
    torsions = []
    for j, k in sorted(mol.GetSubstructMatches(ROTATABLE)):
        i = min(nb.GetIdx() for nb in mol.GetAtomWithIdx(j).GetNeighbors() if nb.GetIdx() != k)
        l_ = min(nb.GetIdx() for nb in mol.GetAtomWithIdx(k).GetNeighbors() if nb.GetIdx() != j)
        angle = float(rng.uniform(0.0, 360.0))
        rdMolTransforms.SetDihedralDeg(conf, i, j, k, l_, angle)
        torsions.append(round(angle, 6))
    return torsions


def min_distance(positions: np.ndarray) -> float:
    """Smallest interatomic distance (Angstrom) of (N, 3) positions; inf for N < 2."""
    if len(positions) < 2:
        return float("inf")
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    d[np.diag_indices(len(d))] = np.inf
    return float(d.min())


def relax(mol: Chem.Mol, params: ConformerParams) -> int:
    """A short MMFF94 minimization (in place); returns the iterations used.

    Runs ``mmff_iterations`` steps, then more (up to ``mmff_extra_iterations``) only while two
    atoms are still closer than ``min_distance``.

    Raises:
        MoleculeFailure: stage ``mmff`` when MMFF94 has no parameters for the molecule or the
            clash does not go away.
    """
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if props is None:
        raise MoleculeFailure("mmff", "no MMFF94 parameters for this molecule")
    ff = AllChem.MMFFGetMoleculeForceField(mol, props)
    ff.Minimize(maxIts=params.mmff_iterations)
    used = params.mmff_iterations
    limit = params.mmff_iterations + params.mmff_extra_iterations
    while min_distance(mol.GetConformer().GetPositions()) < params.min_distance and used < limit:
        ff.Minimize(maxIts=50)
        used += 50
    if min_distance(mol.GetConformer().GetPositions()) < params.min_distance:
        raise MoleculeFailure("mmff", f"atoms closer than {params.min_distance} A after {used} MMFF steps")
    return used


def perturb(positions: np.ndarray, rng: np.random.Generator, sigma: float, params: ConformerParams,
            rescale: bool = True, tries: int = 10) -> tuple[np.ndarray, float]:
    """Gaussian noise (sigma per coordinate, Angstrom) and, if ``rescale``, a global rescale
    about the centroid by s ~ N(scale_mean, scale_std) clipped to [scale_min, scale_max].

    The draw is repeated (up to ``tries`` times) if it brings two atoms closer than min_distance.

    Args:
        positions: (N, 3) Angstrom, the undistorted conformer.
        rescale: draw a rescale (train samples); False leaves the scale at exactly 1 and draws
            no scale at all.
    Returns:
        (new positions (N, 3) Angstrom, scale factor; 1.0 when not rescaled).
    Raises:
        MoleculeFailure: stage ``noise`` if every draw made a clash.
    """
    centroid = positions.mean(axis=0)
    for _ in range(tries):
        noise = rng.normal(0.0, sigma, size=positions.shape)
        scale = 1.0
        if rescale:
            scale = float(np.clip(rng.normal(params.scale_mean, params.scale_std), params.scale_min, params.scale_max))
        new = centroid + scale * (positions + noise - centroid)
        if min_distance(new) >= params.min_distance:
            return new, scale
    raise MoleculeFailure("noise", f"noise sigma {sigma} A kept bringing atoms closer than {params.min_distance} A")


def build_fragment(smiles: str, rng: np.random.Generator, params: ConformerParams) -> tuple[Chem.Mol, list[str]]:
    """Parse, filter, embed and truncate: the molecule as built (with H and a 3D conformer)."""
    mol = parse_and_filter(smiles, params)
    molh = embed(mol, rng)
    return truncate(molh, rng, params.max_heavy_atoms)
