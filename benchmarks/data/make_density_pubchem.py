"""Make benchmarks/data/density-pubchem-v1.jsonl: the pinned molecules of the
density-reconstruction task's ``pubchem`` variant.

    OMP_NUM_THREADS=1 python -m benchmarks.data.make_density_pubchem --work /scratch/pubchem-v1

Rule (deterministic): walk the embedded PubChem SMILES (builders/data/pubchemqc2019_nocharge.smi,
keys ``pubchem_<line>`` as in pubchem-hf-density) in file order; keep a molecule when the
density filters accept it, the project's split function puts the InChIKey of the molecule as
built in ``test``, and no earlier kept molecule has the same InChIKey; run pubchem-hf-density's
own per-molecule step (``PubChemHFDensity.process`` with the release's default parameters and
build seed 0: 50 ETKDG conformers + MMFF94, the 5 lowest re-optimised with MINDO3, RHF/STO-3G
on the lowest) and keep the first ``--n`` (200) that build. The geometry is therefore the one
the sample with the same key has in a default build of pubchem-hf-density 1.0.0 (seed 0) from
the embedded file on this machine. Molecules that fail are listed in ``<work>/failures.json``.

Each molecule's result is written to ``<work>/<key>.json`` as soon as it is done (atomic), so a
killed run resumes; the output file is written at the end, sorted by line number, one JSON
object a line with sorted keys (float64 values printed exactly by ``repr``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.pinned_data import DENSITY_PUBCHEM_FILE

N_DEFAULT = 200
BUILD_SEED = 0


def candidates():
    """(Input, inchikey) of the embedded PubChem molecules in test, file order, first of each InChIKey."""
    from builders.density.filters import filter_smiles
    from builders.density.pipeline import _inchikey
    from builders.format.failures import MoleculeFailure
    from builders.sources import pubchem_inputs
    from builders.format.splits import assign_split

    items, _ = pubchem_inputs()
    seen = set()
    for item in items:
        try:
            key = _inchikey(filter_smiles(item.text))
        except MoleculeFailure:
            continue
        if assign_split(key) != "test" or key in seen:
            continue
        seen.add(key)
        yield item, key


def record_of(item, fields: dict) -> dict:
    """The committed record of one built sample (see benchmarks.pinned_data.load_density_pubchem)."""
    meta = fields["meta"]
    idx = np.asarray(fields["semiempirical_candidate_indices"])
    chosen = int(meta["chosen_conformer_index"])
    e_semi = np.asarray(fields["semiempirical_energies_hartree"])[idx == chosen]
    return {
        "key": item.key, "smiles": item.text, "canonical_smiles": meta["canonical_smiles"],
        "inchikey": meta["inchikey"], "split": "test",
        "atomic_numbers": [int(z) for z in fields["atomic_numbers"]],
        "positions_angstrom": np.asarray(fields["positions"], np.float64).tolist(),
        "n_electrons": int(meta["n_electrons"]), "n_ao": int(meta["n_ao"]),
        "rhf_energy_hartree": float(meta["rhf_energy_hartree"]), "rhf_converged": bool(meta["rhf_converged"]),
        "rhf_solver": meta["rhf_solver"],
        "grid_origin_bohr": np.asarray(fields["grid_origin"], np.float64).tolist(),
        "grid_step_bohr": np.diag(np.asarray(fields["grid_axes"], np.float64)).tolist(),
        "grid_shape": [int(n) for n in fields["grid_shape"]],
        "conformer_seed": int(meta["conformer_seed"]), "chosen_conformer_index": chosen,
        "semiempirical_method": meta["semiempirical_method"],
        "semiempirical_energy_hartree": float(e_semi[0]),
    }


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, sort_keys=True))
    os.replace(tmp, path)


def main(argv=None) -> int:
    from tqdm import tqdm

    from builders.format.failures import MoleculeFailure
    from builders.format.registry import get_release
    from builders.format.spec import Built

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for per-molecule results (resumable)")
    parser.add_argument("--n", type=int, default=N_DEFAULT, help="molecules to keep (default 200)")
    parser.add_argument("--out", type=Path, default=DENSITY_PUBCHEM_FILE)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    spec = get_release("pubchem-hf-density")
    params = spec.resolve_params({})
    kept, failed = [], []
    bar = tqdm(total=args.n, desc="density-pubchem-v1", unit="mol")
    t0 = time.perf_counter()
    for item, _ in candidates():
        if len(kept) == args.n:
            break
        path = args.work / f"{item.key}.json"
        if path.is_file():
            result = json.loads(path.read_text())
        else:
            t = time.perf_counter()
            try:
                fields = Built.of(spec.process(item, params, BUILD_SEED)).samples
                result = {"ok": True, "record": record_of(item, fields), "seconds": time.perf_counter() - t}
            except MoleculeFailure as fail:
                result = {"ok": False, "key": item.key, "smiles": item.text, "stage": fail.stage,
                          "reason": fail.reason, "seconds": time.perf_counter() - t}
            _write_json(path, result)
        if result["ok"]:
            kept.append(result["record"])
            bar.update(1)
        else:
            failed.append({k: result[k] for k in ("key", "smiles", "stage", "reason")})
        bar.set_postfix(failed=len(failed))
    bar.close()
    if len(kept) < args.n:
        print(f"only {len(kept)} test-split molecules built (wanted {args.n})")
    _write_json(args.work / "failures.json", failed)
    lines = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in kept]
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    tmp.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    os.replace(tmp, args.out)
    import hashlib

    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {len(kept)} molecules, {len(failed)} failed and skipped, sha256 {digest} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
