"""Input molecule sources: QM9 (PyPI package qm9pack), embedded ZINC and PubChem SMILES, user files."""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
from functools import lru_cache
from pathlib import Path

from .spec import Input, InputFailure

DATA_DIR = Path(__file__).parent / "data"
ZINC_FILES = ("zinc_train10k.csv", "zinc_test.csv")
PUBCHEM_FILE = "pubchemqc2019_nocharge.smi"
QM9_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


def stable_int(text: str) -> int:
    """A 64-bit integer from the sha256 of ``text``: per-sample seeds that never depend on order."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


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
    from .qm9_source import load_qm9

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


def smiles_file_inputs(path: Path, prefix: str = "input") -> tuple[list[Input], list[InputFailure]]:
    """Inputs from a SMILES file: one molecule a line; the first whitespace-separated token is
    the SMILES (a CSV with a ``SMILES`` header column also works).

    Empty lines, lines that are not valid UTF-8 text, and exact duplicates of an earlier line
    are rejected here with their reason. Keys are ``<prefix>_<line number, 1-based>``.
    """
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    width = max(6, len(str(len(lines))))
    items, rejected, seen = [], [], {}
    header = None
    first = lines[0].decode("utf-8", "replace").strip() if lines else ""
    if "," in first and "smiles" in first.lower().split(","):
        header = [h.strip().lower() for h in first.split(",")]
    for n, line in enumerate(lines, start=1):
        if header is not None and n == 1:
            continue
        try:
            text = line.decode("utf-8").strip().strip("\r")
        except UnicodeDecodeError:
            rejected.append(InputFailure(line.decode("utf-8", "backslashreplace")[:200], f"{Path(path).name}:{n}",
                                         "input", "line is not UTF-8 text"))
            continue
        if header is not None:
            row = next(csv.reader(io.StringIO(text)), [])
            text = row[header.index("smiles")].strip() if len(row) > header.index("smiles") else ""
        elif text:
            text = text.split()[0]
        if not text:
            rejected.append(InputFailure("", f"{Path(path).name}:{n}", "input", "empty line"))
            continue
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            rejected.append(InputFailure(text.encode("unicode_escape").decode()[:200], f"{Path(path).name}:{n}",
                                         "input", "line contains control characters"))
            continue
        if text in seen:
            rejected.append(InputFailure(text, f"{Path(path).name}:{n}", "input", f"duplicate of line {seen[text]}"))
            continue
        seen[text] = n
        items.append(Input(f"{prefix}_{n:0{width}d}", text, Path(path).name))
    return items, rejected
