"""Make benchmarks/data/density-qm9-v1.tsv and benchmarks/data/qm9-tensor-v1.tsv from a
qm9-hf-density build of the 6,500 qm9-small molecules:

    OMP_NUM_THREADS=1 python -m builders build qm9-hf-density --workers 1 --root /scratch/qm9small \\
        --gdb-indices benchmarks/splits/qm9-small-v1.txt
    python -m benchmarks.data.make_qm9_tables --release /scratch/qm9small/densegen/qm9-hf-density

The release is streamed (one sample in memory at a time). Checks made on the way (it stops on
the first that fails): the build's ``gdb_indices_sha256`` is the pinned qm9-small sha256, no
molecule failed, every qm9-small molecule is there once and in the same split as in the key
file, and each dipole computed from the stored (float32) density matrix agrees with the
sample's ``dipole_debye`` (computed by pyscf from the float64 one) to 1e-3 D.

* density-qm9-v1.tsv: the 1,000 test molecules: ``gdb_index key inchikey n_electrons n_ao
  rhf_energy_hartree rhf_converged`` (energy printed with ``repr``: exact float64).
* qm9-tensor-v1.tsv: all 6,500: ``gdb_index split``, the dipole (x, y, z; Debye) and the
  Buckingham traceless quadrupole (xx yy zz xy xz yz; Debye*Angstrom) about the centre of
  nuclear charge, in the frame of the qm9pack coordinates, from
  :func:`benchmarks.pinned_data.multipoles`; printed with 6 decimals.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from benchmarks.pinned_data import (DENSITY_QM9_COLUMNS, DENSITY_QM9_FILE, QM9_TENSOR_COLUMNS, QM9_TENSOR_FILE,
                                    load_qm9_small, multipoles, quadrupole_components)
from benchmarks.qm9 import SMALL_SPLIT_SHA256
from builders.format.manifest import read_manifest

DIPOLE_CHECK_DEBYE = 1e-3


def _write(path: Path, header, rows) -> str:
    data = ("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)).encode("ascii")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def main(argv=None) -> int:
    from tqdm import tqdm

    from builders.format.reader import iter_release

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, required=True, help="the qm9-hf-density folder of the qm9-small build")
    parser.add_argument("--density-out", type=Path, default=DENSITY_QM9_FILE)
    parser.add_argument("--tensor-out", type=Path, default=QM9_TENSOR_FILE)
    parser.add_argument("--stats", type=Path, default=None, help="also write the check statistics here (JSON)")
    args = parser.parse_args(argv)

    manifest = read_manifest(args.release)
    p = manifest.parameters
    if p.get("gdb_indices_sha256") != SMALL_SPLIT_SHA256 or p.get("gdb_split") is not None:
        raise SystemExit(f"{args.release}: not a build of all of qm9-small (gdb_indices_sha256 "
                         f"{p.get('gdb_indices_sha256')}, gdb_split {p.get('gdb_split')})")
    if manifest.failures_total:
        raise SystemExit(f"{args.release}: {manifest.failures_total} molecules failed: {manifest.failures_by_stage}")
    small, _ = load_qm9_small()
    split_of = {int(i): s for s, idx in small.items() for i in idx}

    density_rows, tensor_rows, seen = [], {}, set()
    dev, mags, labels, stored = [], [], [], []
    bar = tqdm(total=len(split_of), desc="qm9-small tables", unit="mol")
    for split in ("train", "valid", "test"):
        for s in iter_release(args.release, split):
            meta = s["meta"]
            g = int(meta["qm9_index"])
            if split_of.get(g) != split:
                raise SystemExit(f"{s['__key__']}: release split {split}, qm9-small split {split_of.get(g)}")
            if g in seen:
                raise SystemExit(f"{s['__key__']}: twice in the release")
            seen.add(g)
            mu, theta = multipoles(s["atomic_numbers"], s["positions"], s["density_matrix"], basis=meta["basis"])
            d = float(np.abs(mu - s["dipole_debye"]).max())
            if d > DIPOLE_CHECK_DEBYE:
                raise SystemExit(f"{s['__key__']}: dipole from the stored density matrix {mu} differs from "
                                 f"dipole_debye {s['dipole_debye']} by {d:.3g} D")
            dev.append(d)
            mags.append(float(np.linalg.norm(mu)))
            stored.append(float(np.linalg.norm(s["dipole_debye"])))
            labels.append(float(meta["qm9_mu"]))
            q = quadrupole_components(theta)
            tensor_rows[g] = [str(g), split, *(f"{v:.6f}" for v in mu), *(f"{v:.6f}" for v in q)]
            if split == "test":
                density_rows.append([str(g), s["__key__"], meta["inchikey"], str(int(meta["n_electrons"])),
                                     str(int(meta["n_ao"])), repr(float(meta["rhf_energy_hartree"])),
                                     "true" if meta["rhf_converged"] else "false"])
            bar.update(1)
    bar.close()
    missing = sorted(set(split_of) - seen)
    if missing:
        raise SystemExit(f"{len(missing)} qm9-small molecules missing from {args.release}, first {missing[0]}")
    density_rows.sort(key=lambda r: int(r[0]))
    h1 = _write(args.density_out, DENSITY_QM9_COLUMNS, density_rows)
    h2 = _write(args.tensor_out, QM9_TENSOR_COLUMNS, [tensor_rows[g] for g in sorted(tensor_rows)])
    mags, labels, stored = map(np.asarray, (mags, labels, stored))
    stats = {
        "n": len(seen), "max_abs_dipole_component_dev_vs_stored_debye": float(max(dev)),
        "max_abs_magnitude_dev_vs_stored_debye": float(np.abs(mags - stored).max()),
        "pearson_r_magnitude_vs_qm9_mu": float(np.corrcoef(mags, labels)[0, 1]),
        "mae_magnitude_vs_qm9_mu_debye": float(np.abs(mags - labels).mean()),
        "mean_magnitude_rhf_debye": float(mags.mean()), "mean_qm9_mu_debye": float(labels.mean()),
        "least_squares_slope_rhf_on_qm9_mu": float(np.dot(mags, labels) / np.dot(labels, labels)),
        "density_qm9_sha256": h1, "qm9_tensor_sha256": h2,
    }
    print(json.dumps(stats, indent=1))
    if args.stats:
        args.stats.write_text(json.dumps(stats, indent=1) + "\n")
    print(f"wrote {args.density_out} ({len(density_rows)} rows, sha256 {h1}) and {args.tensor_out} "
          f"({len(tensor_rows)} rows, sha256 {h2})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
