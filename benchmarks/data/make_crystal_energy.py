"""Make the crystal-energy task's committed crystal set, ``crystal-energy-v1.npz``.

Procedure (deterministic; the numbers are those of the builds it runs or reads):

1. ``python -m builders build random-conformers --limit 2000 --seed 0`` (version 2.0.0: QM9 +
   ZINC in the release's fixed hash order);
2. ``python -m builders build p1-crystals --limit N --seed 0`` on it (version 2.0.0: the first N
   conformers in that release's hash order, ``conformer_inputs``), default N = 1000;
3. this script: every crystal of those N molecules, with the molecule stored once.

Because every molecule's crystals are seeded by (build seed, key), the crystals of the first N
conformers are the same whether p1-crystals was built with ``--limit N`` or over all of them,
so ``--release`` may point at a larger build of the same conformers.

Usage::

    python -m benchmarks.data.make_crystal_energy --release densegen/p1-crystals [--molecules 500]

File (``benchmarks.results.write_npz``: compressed npz, no objects, byte-stable): molecules ``mol_key`` (M,) str,
``mol_inchikey`` (M,) str, ``mol_smiles`` (M,) str, ``mol_offsets`` (M+1,) int64,
``mol_z`` (sum atoms,) uint8, ``mol_positions`` (sum atoms, 3) float64 Angstrom (standard
frame of p1-crystals); crystals ``key`` (K,) str, ``mol`` (K,) int64 row of the molecule,
``split`` (K,) str (the parent molecule's identity split), ``is_optimum`` (K,) bool,
``params`` (K, 12) float64 (a, b, c Angstrom; alpha, beta, gamma rad; u, v, w; rotation
vector rad), ``lj_energy`` and ``buckingham_energy`` (K,) float64 per molecule (lattice
energy, every pair once, 10 A cutoff); ``source`` () str (releases, versions, shard hashes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "crystal-energy-v1.npz"
ENERGIES = ("lj_energy", "buckingham_energy")


def collect(release: Path, n_molecules: int) -> dict:
    """The crystals of the first ``n_molecules`` parents (in the conformer release's hash order)."""
    from builders.format.reader import iter_release, read_manifest

    manifest = read_manifest(release)
    if manifest.release != "p1-crystals" or manifest.major_version < 2:
        raise ValueError(f"{release} is not a p1-crystals >= 2.0.0 release")
    crystals = [s for split in ("train", "valid", "test") for s in iter_release(release, split)]
    order = sorted({s["meta"]["parent_key"] for s in crystals}, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    chosen = order[:n_molecules]
    if len(chosen) < n_molecules:
        raise ValueError(f"{release} holds crystals of {len(chosen)} molecules, fewer than {n_molecules}")
    row_of = {k: i for i, k in enumerate(chosen)}
    crystals = sorted((s for s in crystals if s["meta"]["parent_key"] in row_of), key=lambda s: s["__key__"])
    first = {}
    for s in crystals:
        first.setdefault(s["meta"]["parent_key"], s)
    mols = [first[k] for k in chosen]
    from builders.format.splits import assign_split

    sizes = [len(m["atomic_numbers"]) for m in mols]
    return {
        "mol_key": np.array(chosen),
        "mol_inchikey": np.array([m["meta"]["inchikey"] for m in mols]),
        "mol_smiles": np.array([m["meta"]["smiles"] for m in mols]),
        "mol_offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "mol_z": np.concatenate([m["atomic_numbers"] for m in mols]).astype(np.uint8),
        "mol_positions": np.concatenate([m["positions"] for m in mols]).astype(np.float64),
        "key": np.array([s["__key__"] for s in crystals]),
        "mol": np.array([row_of[s["meta"]["parent_key"]] for s in crystals], np.int64),
        "split": np.array([assign_split(s["meta"]["inchikey"]) for s in crystals]),
        "is_optimum": np.array([bool(s["meta"]["is_optimum"]) for s in crystals]),
        "params": np.stack([s["params"] for s in crystals]).astype(np.float64),
        **{e: np.array([s["meta"][e] for s in crystals], np.float64) for e in ENERGIES},
        "source": np.array(json.dumps({
            "p1_crystals": {"version": manifest.release_version, "seed": manifest.parameters["seed"],
                            "git_commit": manifest.builder_commit,
                            "conformers": Path(manifest.parameters["conformers"] or "").name},
            "molecules": n_molecules, "order": "sha256 of the conformer key (conformer_inputs)"}, sort_keys=True)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.data.make_crystal_energy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", type=Path, required=True, help="a p1-crystals >= 2.0.0 release folder")
    ap.add_argument("--molecules", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    from benchmarks.results import write_npz

    digest, size = write_npz(args.out, collect(args.release, args.molecules))
    print(f"wrote {args.out} ({size / 1e6:.2f} MB), sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
