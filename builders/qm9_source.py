"""QM9 from the PyPI package qm9pack: all 130,831 molecules (geometries, SMILES, the 12
MoleculeNet targets), parsed once and cached as a no-pickle ``.npz``. Used by the
qm9-hf-density release and (through benchmarks.qm9) by the QM9 benchmark tasks."""
from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "u0", "u298", "h298", "g298", "cv")
TARGET_COLUMNS = {
    "mu": "Dipole_debye", "alpha": "Polarizability_bohr3", "homo": "HOMO_au", "lumo": "LUMO_au",
    "gap": "HOMO_LUMO_gap_au", "r2": "R2_bohr2", "zpve": "ZPVE_au", "u0": "InternalEnergy_0K_au",
    "u298": "InternalEnergy_298K_au", "h298": "Enthalphy_298K_au", "g298": "GibbsFreeEnergy_298K_au",
    "cv": "Heatcapacity_Cv_cal_mol_K",
}
TARGET_UNITS = {"mu": "D", "alpha": "Bohr^3", "homo": "Ha", "lumo": "Ha", "gap": "Ha", "r2": "Bohr^2",
                "zpve": "Ha", "u0": "Ha", "u298": "Ha", "h298": "Ha", "g298": "Ha", "cv": "cal/(mol K)"}
SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where derived data is cached: ``$DENSEGEN_CACHE`` or ``~/.cache/densegen``."""
    path = Path(os.environ.get("DENSEGEN_CACHE", Path.home() / ".cache" / "densegen"))
    path.mkdir(parents=True, exist_ok=True)
    return path


_BARE_DOT = re.compile(r"(?<=\d)\.(?=[,\]eE])")


def _parse_molecules(table):
    z_all, pos_all, offsets = [], [], [0]
    for elements, xyz in zip(table["Elements"], table["XYZ_Ang"]):
        z = [SYMBOL_TO_Z[e] for e in json.loads(elements.replace("'", '"'))]
        pos = json.loads(_BARE_DOT.sub(".0", xyz))  # qm9pack writes numbers such as "1."
        if len(pos) != len(z):
            raise ValueError(f"QM9 row with {len(z)} elements but {len(pos)} positions")
        z_all.extend(z)
        pos_all.extend(pos)
        offsets.append(len(z_all))
    return np.asarray(z_all, np.uint8), np.asarray(pos_all, np.float64), np.asarray(offsets, np.int64)


@lru_cache(maxsize=1)
def _load_cached(cache: str) -> dict:
    with np.load(cache, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_qm9(progress: bool = False) -> dict:
    """All 130,831 QM9 molecules, cached as a no-pickle ``.npz`` after the first call (~30 s).

    Returns:
        dict with ``index`` (N,) int64 gdb index (1-based), ``smiles`` (N,) str,
        ``z`` (sum atoms,) uint8, ``pos`` (sum atoms, 3) float64 Angstrom, ``offsets`` (N+1,)
        int64 (molecule i is atoms offsets[i]:offsets[i+1]), ``targets`` (N, 12) float64 in
        the units of :data:`TARGET_UNITS`, ordered as :data:`TARGETS`.
    """
    cache = cache_dir() / f"qm9-v{CACHE_VERSION}.npz"
    if cache.is_file():
        return _load_cached(str(cache))
    from .sources import qm9_table

    if progress:
        print("reading QM9 from qm9pack (first use; cached afterwards) ...", flush=True)
    cols = ("SMILES", "Elements", "XYZ_Ang") + tuple(TARGET_COLUMNS.values())
    table = qm9_table(cols)
    z, pos, offsets = _parse_molecules(table)
    data = {
        "index": table["Index"].to_numpy(np.int64),
        "smiles": table["SMILES"].to_numpy().astype(str),
        "z": z, "pos": pos, "offsets": offsets,
        "targets": np.stack([table[TARGET_COLUMNS[t]].to_numpy(np.float64) for t in TARGETS], axis=1),
    }
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **data)
    os.replace(tmp, cache)
    return _load_cached(str(cache))


def molecule(data: dict, i: int) -> dict:
    """Molecule ``i`` (0-based row) as a point-cloud sample: atomic_numbers (N,) uint8,
    positions (N, 3) float32 Angstrom, and __key__ ``qm9_<gdb index>``."""
    a, b = data["offsets"][i], data["offsets"][i + 1]
    return {"__key__": f"qm9_{int(data['index'][i]):06d}", "atomic_numbers": data["z"][a:b],
            "positions": data["pos"][a:b].astype(np.float32)}
