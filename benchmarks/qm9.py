"""QM9 (130,831 molecules from the PyPI package qm9pack): geometries, the 12 MoleculeNet
targets in MoleculeNet units, and the fixed split file.

Targets and units (as MoleculeNet's raw QM9, and qm9pack's columns):

| target | qm9pack column              | unit        |
|--------|-----------------------------|-------------|
| mu     | Dipole_debye                | Debye       |
| alpha  | Polarizability_bohr3        | Bohr^3      |
| homo   | HOMO_au                     | Hartree     |
| lumo   | LUMO_au                     | Hartree     |
| gap    | HOMO_LUMO_gap_au            | Hartree     |
| r2     | R2_bohr2                    | Bohr^2      |
| zpve   | ZPVE_au                     | Hartree     |
| u0     | InternalEnergy_0K_au        | Hartree     |
| u298   | InternalEnergy_298K_au      | Hartree     |
| h298   | Enthalphy_298K_au           | Hartree     |
| g298   | GibbsFreeEnergy_298K_au     | Hartree     |
| cv     | Heatcapacity_Cv_cal_mol_K   | cal/(mol K) |
"""
from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np

from builders.qm9_source import (  # noqa: F401  (re-exported: the benchmark's view of QM9)
    TARGET_COLUMNS, TARGET_UNITS, TARGETS, cache_dir, load_qm9, molecule)

SPLIT_FILE = Path(__file__).parent / "splits" / "qm9-split-v1.txt.gz"
SPLIT_CODES = {"train": "0", "valid": "1", "test": "2"}


def split_file_bytes(smiles, indices, progress: bool = False) -> bytes:
    """The split file's (uncompressed) content: one line ``<gdb index>\\t<split>`` per molecule,
    split by the project's one split function on the InChIKey of the QM9 SMILES."""
    from tqdm import tqdm

    from builders.identity import inchikey_of_smiles
    from builders.splits import assign_split

    lines = []
    for idx, smi in tqdm(list(zip(indices, smiles)), desc="QM9 split", disable=not progress, unit="mol"):
        lines.append(f"{int(idx)}\t{assign_split(inchikey_of_smiles(str(smi)))}\n")
    return "".join(lines).encode("ascii")


def write_split_file(path: Path = SPLIT_FILE, progress: bool = True) -> str:
    """(Re)generate the QM9 split file (gzip with a fixed header, so byte-stable); returns
    the sha256 of its uncompressed content."""
    data = load_qm9(progress=progress)
    content = split_file_bytes(data["smiles"], data["index"], progress=progress)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(content)
    Path(path).write_bytes(buf.getvalue())
    return hashlib.sha256(content).hexdigest()


def read_split_file(path: Path = SPLIT_FILE) -> tuple[dict, str]:
    """The QM9 split: ({"train"/"valid"/"test": sorted gdb indices (int64)}, sha256 of content).

    Raises:
        FileNotFoundError: naming the file if it is missing.
    """
    content = gzip.decompress(Path(path).read_bytes())
    out = {"train": [], "valid": [], "test": []}
    for line in content.decode("ascii").splitlines():
        idx, split = line.split("\t")
        out[split].append(int(idx))
    return {k: np.asarray(v, np.int64) for k, v in out.items()}, hashlib.sha256(content).hexdigest()
