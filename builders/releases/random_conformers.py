"""random-conformers: typed point clouds of random molecular conformers (Mo3ENet training data)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from rdkit import Chem

from ..chem.random_conformer import ConformerParams, build_fragment, min_distance, perturb, relax, spin_rotatable_bonds
from ..failures import MoleculeFailure
from ..identity import inchikey_of
from ..sources import qm9_inputs, smiles_file_inputs, stable_int, zinc_inputs
from ..spec import Input, ReleaseSpec
from ..splits import assign_split


def molecule_rng(seed: int, key: str) -> np.random.Generator:
    """The random generator of one sample: a function of (build seed, sample key) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), stable_int(key)]))


def _order_key(item: Input) -> str:
    return hashlib.sha256(f"{item.source}:{item.key}".encode()).hexdigest()


class RandomConformers(ReleaseSpec):
    name = "random-conformers"
    version = "1.0.0"
    license = "mit"
    pretty_name = "densegen random molecular conformers"
    summary = ("Typed point clouds (Z, xyz in Angstrom) of random conformers of QM9 and ZINC molecules, made "
               "by the Mo3ENet pipeline: RDKit embedding, truncation to <= 9 heavy atoms with H capping, "
               "uniform random torsions on every rotatable bond, a short MMFF94 relaxation, Gaussian "
               "position noise and a global rescale. Elements H, C, N, O, F; 5-30 atoms.")
    unit_size = 500
    samples_per_shard = 10_000
    tags = ("chemistry", "molecules", "3d", "point-cloud", "conformers", "webdataset")

    def add_arguments(self, parser):
        parser.add_argument("--input", type=Path, default=None,
                            help="a SMILES file (one a line) to use instead of QM9 + ZINC")
        parser.add_argument("--sources", default="qm9,zinc", help="comma list of qm9, zinc (default both)")

    def params_from_args(self, args) -> dict:
        return {"input": str(args.input) if args.input else None, "sources": args.sources,
                "conformer": ConformerParams().to_dict()}

    def resolve_params(self, params: dict) -> dict:
        return {"input": params.get("input"), "sources": params.get("sources", "qm9,zinc"),
                "conformer": ConformerParams(**params.get("conformer", {})).to_dict()}

    def load_inputs(self, params: dict):
        """QM9 + embedded ZINC SMILES (or a user file), in a fixed order that mixes the sources
        (sorted by a hash of the key), so ``--limit N`` takes a sample of both."""
        if params.get("input"):
            items, rejected = smiles_file_inputs(Path(params["input"]))
            return items, rejected
        sources = [s.strip() for s in params.get("sources", "qm9,zinc").split(",") if s.strip()]
        unknown = set(sources) - {"qm9", "zinc"}
        if unknown:
            raise ValueError(f"unknown source(s) {sorted(unknown)}; use qm9 and/or zinc")
        items: list[Input] = []
        if "qm9" in sources:
            items += qm9_inputs()
        if "zinc" in sources:
            items += _dedupe(zinc_inputs())
        items.sort(key=_order_key)
        return items, []

    def process(self, item: Input, params: dict, seed: int) -> dict:
        cp = ConformerParams(**params.get("conformer", {}))
        rng = molecule_rng(seed, item.key)
        mol, cuts = build_fragment(item.text, rng, cp)
        inchikey = inchikey_of(mol)
        split = assign_split(inchikey)
        torsions = spin_rotatable_bonds(mol, rng)
        mmff_steps = relax(mol, cp)
        sigma = cp.noise_sigma_train if split == "train" else cp.noise_sigma_eval
        positions, scale = perturb(mol.GetConformer().GetPositions(), rng, sigma, cp)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.uint8)
        if not cp.min_atoms <= len(z) <= cp.max_atoms:
            raise MoleculeFailure("filter", f"{len(z)} atoms outside {cp.min_atoms}-{cp.max_atoms}")
        radius = float(np.linalg.norm(positions - positions.mean(0), axis=1).max())
        if radius > cp.max_radius:
            raise MoleculeFailure("filter", f"radius {radius:.2f} A exceeds {cp.max_radius} A")
        positions = positions.astype(np.float32)
        if min_distance(positions.astype(np.float64)) < cp.min_distance:
            raise MoleculeFailure("noise", f"atoms closer than {cp.min_distance} A after float32 rounding")
        return {
            "atomic_numbers": z,
            "positions": positions,
            "meta": {
                "smiles": Chem.MolToSmiles(Chem.RemoveHs(mol)),
                "parent_smiles": item.text,
                "inchikey": inchikey,
                "source": item.source,
                "seed": int(seed),
                "truncation_steps": len(cuts),
                "torsions_deg": torsions,
                "mmff_steps": mmff_steps,
                "noise_sigma_angstrom": sigma,
                "scale": round(scale, 8),
            },
        }

    def features(self, config: str = "default", params: dict | None = None):
        from datasets import Array2D, Features, List, Value

        return Features({
            "__key__": Value("string"),
            "__url__": Value("string"),
            "atomic_numbers.npy": List(Value("uint8")),
            "meta.json": {"inchikey": Value("string"), "mmff_steps": Value("int64"),
                          "noise_sigma_angstrom": Value("float64"), "parent_smiles": Value("string"),
                          "scale": Value("float64"), "seed": Value("int64"), "smiles": Value("string"),
                          "source": Value("string"), "torsions_deg": List(Value("float64")),
                          "truncation_steps": Value("int64")},
            "positions.npy": Array2D(shape=(None, 3), dtype="float32"),
        })

    def card_body(self, manifest: dict) -> str:
        return """## How it was built

Paper 002 (Mo3ENet), section 3.4, as its text describes it. Per input SMILES, with a random
generator seeded by (build seed, sample key):

1. RDKit parse; filters: elements H, C, N, O, F only; no formal charges, radicals or
   multiple fragments; at most 50 heavy atoms in the input.
2. RDKit ETKDGv3 embedding with hydrogens.
3. While more than 9 heavy atoms: cut an acyclic single bond between heavy atoms (preferring
   cuts that leave 5-9 heavy atoms) and cap the open valence with a hydrogen placed along the
   old bond.
4. Every rotatable bond (RDKit's strict definition; amide C-N excluded) set to a uniform
   random torsion.
5. 20 steps of MMFF94 (more only while two atoms are closer than 0.7 A).
6. Gaussian noise on every coordinate (0.1 A in train, 0.01 A in valid/test) and a global
   rescale about the centroid by s ~ N(1, 0.1) clipped to [0.9, 1.25].
7. Filters: 5-30 atoms, radius <= 15 A, no two atoms closer than 0.7 A.

The split is decided by the molecule AS BUILT (a truncated ZINC fragment that is a QM9 test
molecule is a test molecule), so QM9 valid/test molecules never appear in train; the QM9
molecules of the test split form the evaluation hold-out of the point-cloud benchmark.

Differences from the authors' released MXtalTools code (which had bugs here): bond spinning
there only happened when a methyl/OH rotor was present, its relaxation convergence test was
inverted, and truncated fragments were not re-protonated. This release does what the paper
describes.

Fields (three tar members per sample, for fast reading): `atomic_numbers.npy` (uint8, N),
`positions.npy` (float32, N x 3, Angstrom) and `meta.json` with `smiles` (the molecule as
built), `parent_smiles` (the input), `inchikey` (identity used for the split), `source` (qm9 /
zinc / file name) and the provenance of every perturbation: `seed` (build seed; the sample's
generator is seeded by (seed, key)), `truncation_steps`, `torsions_deg` (torsions set),
`mmff_steps`, `noise_sigma_angstrom`, `scale`.
"""


def _dedupe(items: list[Input]) -> list[Input]:
    seen, out = set(), []
    for item in items:
        if item.text not in seen:
            seen.add(item.text)
            out.append(item)
    return out
