"""Reading submitted files without trusting them: size caps checked before reading, JSON with
NaN/Infinity refused, npz with pickle disabled, canonical JSON and sha256 for content hashes.

Nothing here executes or unpickles what it reads.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from .errors import Rejected

MiB = 1 << 20
RESULTS_MAX_BYTES = 1 * MiB        # a results JSON
ENTRY_MAX_BYTES = 2 * MiB          # a stored entry JSON (results + a few fields)
PREDICTIONS_MAX_BYTES = 256 * MiB  # a predictions .npz as stored
NPZ_MAX_UNPACKED_BYTES = 1 << 30   # sum of member sizes an npz may unpack to (zip-bomb guard)


def read_capped(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file, refusing it before reading if it is larger than ``max_bytes``.

    Args:
        path: the file.
        max_bytes: the cap in bytes (the file may be exactly this large).
        what: a name for messages (``"results file"``).

    Raises:
        Rejected: ``missing-file``, ``not-a-file`` (directory, device, fifo, ...) or ``too-large``.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Rejected("missing-file", f"{what} {str(path)!r} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise Rejected("not-a-file", f"{what} {str(path)!r} is not a regular file")
    if st.st_size > max_bytes:
        raise Rejected("too-large", f"{what} {str(path)!r} is {st.st_size:,} bytes; the limit is {max_bytes:,} bytes")
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped between stat and open
            raise Rejected("not-a-file", f"{what} {str(path)!r} is not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew between stat and read
        raise Rejected("too-large", f"{what} {str(path)!r} is larger than the limit of {max_bytes:,} bytes")
    return data


def _reject_constant(name: str):
    raise Rejected("non-finite", f"the JSON holds {name}; every number must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999 parses to inf
        raise Rejected("non-finite", f"the JSON number {text} overflows to {value}; every number must be finite")
    return value


def _no_duplicate_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise Rejected("duplicate-key", f"the JSON repeats the key(s) {dup} in one object (parsers disagree on "
                                        "which value counts)")
    return dict(pairs)


def loads_strict(data: bytes, what: str):
    """Parse JSON bytes (UTF-8), refusing NaN, Infinity, -Infinity, numbers that overflow and
    objects with repeated keys.

    Raises:
        Rejected: ``not-json``, ``non-finite`` or ``duplicate-key``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Rejected("not-json", f"{what} is not UTF-8 text: {err}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          object_pairs_hook=_no_duplicate_keys)
    except Rejected as err:
        raise Rejected(err.code, f"{what}: {err.message}") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise Rejected("not-json", f"{what} is not valid JSON: {err}") from None


def canonical_json(obj) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8, finite numbers only (the form hashed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def load_npz_safe(data: bytes, what: str = "predictions file") -> dict[str, np.ndarray]:
    """All arrays of an .npz given as bytes, loaded with ``allow_pickle=False``.

    Refuses (before unpacking) archives whose members would unpack to more than
    ``NPZ_MAX_UNPACKED_BYTES`` or are not ``.npy``; refuses object arrays (pickles) and
    non-finite floating values.

    Returns:
        name -> numpy array (numeric, bool or fixed-width string dtypes only).

    Raises:
        Rejected: ``not-npz``, ``too-large``, ``pickle`` or ``non-finite``.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as err:
        raise Rejected("not-npz", f"{what} is not an .npz archive: {err}") from None
    if not infos:
        raise Rejected("not-npz", f"{what} holds no arrays")
    bad = [i.filename for i in infos if not i.filename.endswith(".npy") or "/" in i.filename]
    if bad:
        raise Rejected("not-npz", f"{what} holds members that are not top-level .npy arrays: {bad[:5]}")
    unpacked = sum(i.file_size for i in infos)
    if unpacked > NPZ_MAX_UNPACKED_BYTES:
        raise Rejected("too-large", f"{what} would unpack to {unpacked:,} bytes; the limit is {NPZ_MAX_UNPACKED_BYTES:,}")
    arrays = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for name in npz.files:
                arrays[name] = npz[name]
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise Rejected("pickle", f"{what} holds a pickled object array; only plain numeric arrays are "
                                     f"accepted (numpy: {err})") from None
        raise Rejected("not-npz", f"{what} could not be read as .npz: {err}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise Rejected("not-npz", f"{what} could not be read as .npz: {err}") from None
    for name, arr in arrays.items():
        if arr.dtype.hasobject:
            raise Rejected("pickle", f"{what}: array {name!r} has dtype object; only plain numeric arrays are accepted")
        if arr.dtype.kind == "V":
            raise Rejected("not-npz", f"{what}: array {name!r} has a structured/void dtype {arr.dtype}")
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise Rejected("non-finite", f"{what}: array {name!r} holds NaN or infinite values")
    return arrays
