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

from builders.sources import (  # noqa: F401  (re-exported: the benchmark's view of QM9)
    TARGET_COLUMNS, TARGET_UNITS, TARGETS, cache_dir, load_qm9, molecule, without_hydrogens)

SPLIT_FILE = Path(__file__).parent / "splits" / "qm9-split-v1.txt.gz"
SPLIT_CODES = {"train": "0", "valid": "1", "test": "2"}


def split_file_bytes(smiles, indices, progress: bool = False) -> bytes:
    """The split file's (uncompressed) content: one line ``<gdb index>\\t<split>`` per molecule,
    split by the project's one split function on the InChIKey of the QM9 SMILES."""
    from tqdm import tqdm

    from builders.format.identity import inchikey_of_smiles
    from builders.format.splits import assign_split

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


# --- qm9-small: a fixed subset of the qm9 split (5,000 train / 500 valid / 1,000 test) ---------

SMALL_SPLIT_FILE = Path(__file__).parent / "splits" / "qm9-small-v1.txt"
SMALL_SALT = "densegen-qm9-small-v1"
SMALL_COUNTS = {"train": 5000, "valid": 500, "test": 1000}
# sha256 of qm9-small-v1.txt (its bytes; plain text, so the file's and its content's hash agree)
SMALL_SPLIT_SHA256 = "b441d123636bcdb9bd88c9f2cb953aed6ba5d1383448cfa9da8ce362bbc743e8"
SMALL_RULE = ("from benchmarks/splits/qm9-split-v1.txt.gz, per split: order the gdb indices by "
              "sha256('densegen-qm9-small-v1:' + str(index)) (hex digest, ascending) and keep the first "
              "5,000 train / 500 valid / 1,000 test; lines '<gdb index>\\t<split>\\n' sorted by gdb index")


def _small_rank(index: int) -> str:
    return hashlib.sha256(f"{SMALL_SALT}:{int(index)}".encode("ascii")).hexdigest()


def small_split_bytes(split_path: Path = SPLIT_FILE) -> bytes:
    """The qm9-small key file's content, derived from the qm9 split file by :data:`SMALL_RULE`.

    Deterministic: it depends only on the qm9 split file's content."""
    splits, _ = read_split_file(split_path)
    rows = []
    for name, n in SMALL_COUNTS.items():
        chosen = sorted((int(i) for i in splits[name]), key=_small_rank)[:n]
        if len(chosen) < n:
            raise ValueError(f"{split_path}: split {name!r} has {len(chosen)} molecules, qm9-small needs {n}")
        rows.extend((i, name) for i in chosen)
    return "".join(f"{i}\t{name}\n" for i, name in sorted(rows)).encode("ascii")


def write_small_split_file(path: Path = SMALL_SPLIT_FILE) -> str:
    """(Re)generate the qm9-small key file (atomic write); returns its sha256."""
    import os

    content = small_split_bytes()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    return hashlib.sha256(content).hexdigest()


def read_small_split_file(path: Path = SMALL_SPLIT_FILE, verify: bool = True) -> tuple[dict, str]:
    """qm9-small: ({"train"/"valid"/"test": sorted gdb indices (int64)}, sha256 of the file).

    5,000 / 500 / 1,000 molecules, a subset of the same splits of :func:`read_split_file`.

    Args:
        path: the key file (default: the committed ``benchmarks/splits/qm9-small-v1.txt``).
        verify: refuse a file whose sha256 is not :data:`SMALL_SPLIT_SHA256`.
    Raises:
        FileNotFoundError: naming the file if it is missing.
        ValueError: the file's sha256 differs from the pinned one, or a line is malformed.
    """
    path = Path(path)
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    if verify and digest != SMALL_SPLIT_SHA256:
        raise ValueError(f"{path}: sha256 {digest} differs from the pinned qm9-small-v1 sha256 "
                         f"{SMALL_SPLIT_SHA256}; restore the file (git checkout) or regenerate it with "
                         f"python -m benchmarks.data.make_qm9_small")
    out = {"train": [], "valid": [], "test": []}
    for n, line in enumerate(content.decode("ascii").splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) != 2 or parts[1] not in out or not parts[0].isdigit():
            raise ValueError(f"{path}:{n}: expected '<gdb index>\\t<train|valid|test>', got {line[:80]!r}")
        out[parts[1]].append(int(parts[0]))
    return {k: np.asarray(sorted(v), np.int64) for k, v in out.items()}, digest
