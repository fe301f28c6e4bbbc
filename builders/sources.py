"""Input molecule sources: QM9 (PyPI package qm9pack), embedded ZINC and PubChem SMILES, user files.

QM9 comes from qm9pack: all 130,831 molecules (geometries, SMILES, the 12 MoleculeNet
targets), parsed once and cached as a no-pickle ``.npz`` (:func:`load_qm9`). The release
builders take their inputs here, and the QM9 benchmark tasks read QM9 here through
benchmarks.qm9."""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import stat
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np

from builders.format.spec import Input, InputFailure

DATA_DIR = Path(__file__).parent / "data"
ZINC_FILES = ("zinc_train10k.csv", "zinc_test.csv")
PUBCHEM_FILE = "pubchemqc2019_nocharge.smi"
QM9_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


def stable_int(text: str) -> int:
    """A 64-bit integer from the sha256 of ``text``: per-sample seeds that never depend on order."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


# --- QM9 (qm9pack) ---------------------------------------------------------------

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


def without_hydrogens(sample: dict) -> dict:
    """The sample with its hydrogen atoms removed (``atomic_numbers`` (N,) and ``positions``
    (N, 3) Angstrom filtered together; other keys kept), as a heavy-atom model reads it
    (Mo3ENet with ``ModelConfig.hydrogens = False``) and as the heavy-atoms variant of the
    point-cloud benchmark scores it.

    Raises:
        ValueError: naming the sample's key when no heavy atom is left.
    """
    z = np.asarray(sample["atomic_numbers"]).reshape(-1)
    keep = z != 1
    if not keep.any():
        raise ValueError(f"sample {sample.get('__key__', '?')}: no heavy atoms left without hydrogens")
    return dict(sample, atomic_numbers=z[keep], positions=np.asarray(sample["positions"])[keep])


def qm9_data_dir() -> Path:
    """Folder of qm9pack's CSV files (found without importing qm9pack, whose import needs
    setuptools' pkg_resources).

    Raises:
        ModuleNotFoundError: with the install command when qm9pack is missing.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("QM9 needs the PyPI package qm9pack: pip install qm9pack==1.0.3")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=4)
def qm9_table(columns: tuple[str, ...] | None = None):
    """QM9 (130,831 molecules) as a pandas DataFrame sorted by ``Index`` (1-based gdb index).

    Args:
        columns: columns to read (``None``: all). Reading all three CSVs takes ~10-30 s.
    """
    import pandas as pd

    usecols = None if columns is None else sorted(set(columns) | {"Index"})
    frames = [pd.read_csv(qm9_data_dir() / part, usecols=usecols) for part in QM9_PARTS]
    table = pd.concat(frames, ignore_index=True).sort_values("Index").reset_index(drop=True)
    return table


def qm9_inputs() -> list[Input]:
    """QM9 SMILES as inputs, keyed ``qm9_<gdb index, 6 digits>`` (from the cached QM9 arrays,
    which are made once here, in the parent, before any worker needs them)."""
    data = load_qm9()
    return [Input(f"qm9_{int(i):06d}", str(s), "qm9") for i, s in zip(data["index"], data["smiles"])]


def zinc_inputs() -> list[Input]:
    """Embedded ZINC SMILES (MOSES clean leads), keyed ``zinc_<file>_<row, 5 digits>``."""
    out = []
    for name in ZINC_FILES:
        tag = name.split("_")[1].split(".")[0]  # train10k / test
        with open(DATA_DIR / name, newline="") as fh:
            for row, rec in enumerate(csv.DictReader(fh)):
                out.append(Input(f"zinc_{tag}_{row:05d}", rec["SMILES"].strip(), "zinc"))
    return out


def pubchem_inputs() -> tuple[list[Input], list[InputFailure]]:
    """Embedded PubChem SMILES (9,880), keyed ``pubchem_<line, 6 digits>``, and any lines rejected."""
    return smiles_file_inputs(DATA_DIR / PUBCHEM_FILE, prefix="pubchem")


MAX_LINE_BYTES = 4096  # a SMILES line longer than this is rejected (the longest PubChem SMILES are ~1,000)
EXCERPT_CHARS = 200    # how much of a rejected line failures.jsonl keeps


def check_input_file(path: Path) -> Path:
    """Refuse what cannot be a molecule file before opening it: a missing path, a directory,
    a FIFO, a device or socket (which would hang or never end), an empty file.

    Raises:
        ValueError: one line naming the path and the problem (FileNotFoundError when missing).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"--input {path}: no such file") from None
    except OSError as err:
        raise ValueError(f"--input {path}: cannot be read ({err.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"--input {path}: is a directory, not a SMILES file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ValueError(f"--input {path}: is {kind}; give a regular SMILES file")
    if st.st_size == 0:
        raise ValueError(f"--input {path}: is empty")
    return path


def _excerpt(text: str) -> str:
    """A bounded, printable excerpt of a rejected line for failures.jsonl."""
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


def _non_ascii_reason(text: str) -> str | None:
    """Why a line is not an ASCII SMILES (None if it is). SMILES are ASCII (OpenSMILES); RDKit
    silently drops some other characters (fullwidth letters, look-alikes, bidirectional
    controls), which would make a different molecule than the line says."""
    for col, ch in enumerate(text, start=1):
        if ord(ch) > 126 or ord(ch) < 32:
            name = unicodedata.name(ch, "unnamed")
            return f"character U+{ord(ch):04X} ({name}) at column {col}: SMILES are printable ASCII"
    return None


def smiles_file_inputs(path: Path, prefix: str = "input") -> tuple[list[Input], list[InputFailure]]:
    """Inputs from a SMILES file: one molecule a line; the first whitespace-separated token is
    the SMILES (a CSV with a ``SMILES`` header column also works).

    Read line by line with a bounded line length, so no input can cost more memory than its
    accepted lines. Rejected here with their reason (recorded in the release's failures):
    lines longer than :data:`MAX_LINE_BYTES`, lines that are not UTF-8 text, lines with
    characters outside printable ASCII (control characters, fullwidth or look-alike letters,
    bidirectional marks), empty lines, exact duplicates of an earlier line. Keys are
    ``<prefix>_<line number, 1-based>``.

    Raises:
        FileNotFoundError, ValueError: when the path is not a readable, non-empty regular
            file (:func:`check_input_file`).
    """
    path = check_input_file(path)
    name = path.name
    raw_lines = []  # (line number, bytes or None if too long, length)
    with open(path, "rb") as fh:
        n = 0
        while True:
            line = fh.readline(MAX_LINE_BYTES + 2)
            if not line:
                break
            n += 1
            if len(line) > MAX_LINE_BYTES + 1 or (len(line) == MAX_LINE_BYTES + 1 and not line.endswith(b"\n")):
                length = len(line)
                head = line[:EXCERPT_CHARS]
                while line and not line.endswith(b"\n"):  # skip the rest of the line, in bounded pieces
                    line = fh.readline(1 << 16)
                    length += len(line)
                raw_lines.append((n, None, head, length))
                continue
            raw_lines.append((n, line.rstrip(b"\n"), None, len(line)))
    width = max(6, len(str(len(raw_lines))))
    items, rejected, seen = [], [], {}
    header = None
    if raw_lines and raw_lines[0][1] is not None:
        first = raw_lines[0][1].decode("utf-8", "replace").strip()
        if "," in first and "smiles" in first.lower().split(","):
            header = [h.strip().lower() for h in first.split(",")]
    for n, line, head, length in raw_lines:
        where = f"{name}:{n}"
        if header is not None and n == 1:
            continue
        if line is None:
            rejected.append(InputFailure(_excerpt(head.decode("utf-8", "backslashreplace")), where, "input",
                                         f"line of {length} bytes is longer than the limit of {MAX_LINE_BYTES}"))
            continue
        try:
            text = line.decode("utf-8").strip().strip("\r")
        except UnicodeDecodeError:
            rejected.append(InputFailure(_excerpt(line.decode("utf-8", "backslashreplace")), where,
                                         "input", "line is not UTF-8 text"))
            continue
        if header is not None:
            row = next(csv.reader(io.StringIO(text)), [])
            text = row[header.index("smiles")].strip() if len(row) > header.index("smiles") else ""
        elif text:
            text = text.split()[0]
        if not text:
            rejected.append(InputFailure("", where, "input", "empty line"))
            continue
        reason = _non_ascii_reason(text)
        if reason:
            rejected.append(InputFailure(_excerpt(text), where, "input", reason))
            continue
        if text in seen:
            rejected.append(InputFailure(text, where, "input", f"duplicate of line {seen[text]}"))
            continue
        seen[text] = n
        items.append(Input(f"{prefix}_{n:0{width}d}", text, name))
    return items, rejected
