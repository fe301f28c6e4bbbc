"""Reading submitted files without trusting them: no symbolic links, size caps checked before
reading, JSON with NaN/Infinity refused and its nesting depth capped, npz members checked from
their headers (dtype, shape x itemsize = the member's size) before any array is allocated,
pickle disabled; canonical JSON and sha256 for content hashes.

Nothing here executes or unpickles what it reads, and no refusal echoes anything about a file
that was not submitted (a link's target is never opened).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.format.encoding import NpyHeaderError, read_npy_header

from .errors import Rejected

MiB = 1 << 20
GiB = 1 << 30
RESULTS_MAX_BYTES = 1 * MiB        # a results JSON
ENTRY_MAX_BYTES = 2 * MiB          # a stored entry JSON (results + a few fields)
MARK_MAX_BYTES = 1 * MiB           # a reproduction mark sidecar
PREDICTIONS_MAX_BYTES = 16 * MiB   # a predictions .npz that is stored on the board (it goes into git)
LARGE_PREDICTIONS_MAX_BYTES = 16 * GiB  # a predictions .npz rescored locally and not stored (needs --reproduce)
NPZ_MAX_UNPACKED_BYTES = 1 * GiB   # sum of member sizes a stored npz may unpack to (zip-bomb guard)
LARGE_NPZ_MAX_UNPACKED_BYTES = 16 * GiB  # the same for a predictions file that is not stored
JSON_MAX_DEPTH = 32                # nesting of [ and { (honest results files need fewer than 10)
NPY_MAX_HEADER = 10_000            # bytes of an .npy header (numpy's own default)


@dataclass
class OpenedFile:
    """A regular file opened without following links: its open binary handle and size."""

    path: Path
    handle: io.BufferedReader
    size: int

    def close(self) -> None:
        self.handle.close()


def open_regular(path: Path, what: str) -> OpenedFile:
    """Open a regular file for reading, refusing links (never opening their target), missing
    files, directories / devices / fifos and unreadable paths (link loops, permissions).

    Raises:
        Rejected: ``symlink``, ``missing-file``, ``not-a-file`` or ``unreadable``.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise Rejected("missing-file", f"{what} {str(path)!r} does not exist") from None
    except OSError as err:
        raise Rejected("unreadable", f"{what} {str(path)!r} cannot be read ({err.strerror or type(err).__name__})") \
            from None
    if stat.S_ISLNK(st.st_mode):
        raise Rejected("symlink", f"{what} {str(path)!r} is a symbolic link; submit the file itself (links are "
                                  "never followed)")
    if not stat.S_ISREG(st.st_mode):
        raise Rejected("not-a-file", f"{what} {str(path)!r} is not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:  # swapped for a link (ELOOP) or a fifo between lstat and open, or no permission
        raise Rejected("unreadable", f"{what} {str(path)!r} cannot be opened ({err.strerror or type(err).__name__})") \
            from None
    handle = os.fdopen(fd, "rb")
    st = os.fstat(handle.fileno())
    if not stat.S_ISREG(st.st_mode):
        handle.close()
        raise Rejected("not-a-file", f"{what} {str(path)!r} is not a regular file")
    return OpenedFile(path, handle, st.st_size)


def read_capped(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file, refusing it before reading if it is larger than ``max_bytes``.

    Args:
        path: the file.
        max_bytes: the cap in bytes (the file may be exactly this large).
        what: a name for messages (``"results file"``).

    Raises:
        Rejected: as :func:`open_regular`, or ``too-large``.
    """
    opened = open_regular(path, what)
    try:
        if opened.size > max_bytes:
            raise Rejected("too-large", f"{what} {str(path)!r} is {opened.size:,} bytes; the limit is {max_bytes:,} bytes")
        try:
            data = opened.handle.read(max_bytes + 1)
        except OSError as err:
            raise Rejected("unreadable", f"{what} {str(path)!r} cannot be read ({err.strerror or type(err).__name__})") \
                from None
    finally:
        opened.close()
    if len(data) > max_bytes:  # grew between stat and read
        raise Rejected("too-large", f"{what} {str(path)!r} is larger than the limit of {max_bytes:,} bytes")
    return data


def sha256_stream(handle, chunk: int = 8 * MiB) -> tuple[str, int]:
    """(hex sha256, byte count) of a binary file handle from its current position to the end."""
    h, n = hashlib.sha256(), 0
    while True:
        block = handle.read(chunk)
        if not block:
            return h.hexdigest(), n
        h.update(block)
        n += len(block)


# ----------------------------------------------------------------------------- JSON

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Maximum nesting depth of ``[`` / ``{`` in JSON bytes (brackets inside strings ignored),
    computed without parsing (so a document nested too deep for the parser is measured too)."""
    stripped = np.frombuffer(_JSON_STRING.sub(b'""', data), np.uint8)
    if stripped.size == 0:
        return 0
    step = (np.isin(stripped, (ord("["), ord("{"))).astype(np.int32)
            - np.isin(stripped, (ord("]"), ord("}"))).astype(np.int32))
    return int(max(0, np.cumsum(step).max()))


def _reject_constant(name: str):
    raise Rejected("non-finite", f"the JSON holds {name}; every number must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999 parses to inf
        raise Rejected("non-finite", f"the JSON number {text} overflows to {value}; every number must be finite")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 308:  # beyond float64's range (Python's own limit is 4300 digits)
        raise Rejected("non-finite", f"the JSON integer {text[:20]}... has {len(text)} digits, beyond the range "
                                     "of a float64")
    return int(text)


def _no_duplicate_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise Rejected("duplicate-key", f"the JSON repeats the key(s) {dup[:5]} in one object (parsers disagree on "
                                        "which value counts)")
    return dict(pairs)


def loads_strict(data: bytes, what: str, max_depth: int = JSON_MAX_DEPTH):
    """Parse JSON bytes (UTF-8), refusing nesting deeper than ``max_depth``, NaN, Infinity,
    -Infinity, numbers that overflow and objects with repeated keys.

    Raises:
        Rejected: ``too-deep``, ``not-json``, ``non-finite`` or ``duplicate-key``.
    """
    depth = json_depth(data)
    if depth > max_depth:
        raise Rejected("too-deep", f"{what} nests lists/objects {depth} deep; the limit is {max_depth}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Rejected("not-json", f"{what} is not UTF-8 text: {err}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int,
                          object_pairs_hook=_no_duplicate_keys)
    except Rejected as err:
        raise Rejected(err.code, f"{what}: {err.message}") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as err:
        raise Rejected("not-json", f"{what} is not valid JSON: {str(err)[:200]}") from None


def canonical_json(obj) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8, finite numbers only (the form hashed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- npz

@dataclass(frozen=True)
class Member:
    """One ``.npy`` member of an npz as its header declares it (read before any allocation)."""

    name: str           # array name (member name without ``.npy``)
    shape: tuple
    dtype: np.dtype
    data_bytes: int     # prod(shape) * itemsize


_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, struct.error,
               NotImplementedError, RuntimeError, OverflowError, UnicodeDecodeError, KeyError, IndexError,
               TypeError, SyntaxError, MemoryError)


def inspect_npz(source, what: str = "predictions file", max_unpacked: int = NPZ_MAX_UNPACKED_BYTES) -> dict[str, Member]:
    """The members of an npz (bytes or a seekable binary file) from their zip entries and npy
    headers, without reading any array data.

    Refuses: not a zip; no members; members that are not top-level ``.npy`` files, repeated,
    encrypted or compressed other than stored/deflate; a total unpacked size above
    ``max_unpacked``; an npy header that does not parse (versions 1.0 and 2.0 only), declares an
    object dtype (a pickle) or a structured one, or declares shape x itemsize other than the
    bytes the member holds (e.g. a (10^12, 3) float64 header on a small member).

    Raises:
        Rejected: ``not-npz``, ``too-large``, ``pickle`` or ``npy-header``.
    """
    fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        fileobj.seek(0)
        with zipfile.ZipFile(fileobj) as zf:
            infos = zf.infolist()
            if not infos:
                raise Rejected("not-npz", f"{what} holds no arrays")
            names = [i.filename for i in infos]
            bad = [n for n in names if not n.endswith(".npy") or "/" in n or "\\" in n or n == ".npy"]
            if bad:
                raise Rejected("not-npz", f"{what} holds members that are not top-level .npy arrays: "
                                          f"{[b[:60] for b in bad[:5]]}")
            if len(set(names)) != len(names):
                raise Rejected("not-npz", f"{what} repeats member names (readers disagree on which one counts)")
            odd = [i.filename for i in infos if i.flag_bits & 0x1 or i.compress_type not in (zipfile.ZIP_STORED,
                                                                                             zipfile.ZIP_DEFLATED)]
            if odd:
                raise Rejected("not-npz", f"{what}: members {odd[:5]} are encrypted or use a compression other than "
                                          "stored/deflate")
            unpacked = sum(i.file_size for i in infos)
            if unpacked > max_unpacked:
                raise Rejected("too-large", f"{what} would unpack to {unpacked:,} bytes; the limit is {max_unpacked:,}")
            members = {}
            for info in infos:
                name = info.filename[:-4]
                with zf.open(info) as f:
                    members[name] = _read_header(f, info, name, what)
    except Rejected:
        raise
    except zipfile.BadZipFile as err:
        raise Rejected("not-npz", f"{what} is not an .npz archive: {str(err)[:200]}") from None
    except _ZIP_ERRORS as err:
        raise Rejected("not-npz", f"{what} is not a readable .npz archive: {type(err).__name__}: {str(err)[:200]}") \
            from None
    return members


def _read_header(f, info: zipfile.ZipInfo, name: str, what: str) -> Member:
    try:
        shape, _, dtype = read_npy_header(f, max_header_size=NPY_MAX_HEADER)
    except NpyHeaderError as err:
        if err.part == "magic":
            raise Rejected("not-npz", f"{what}: member {info.filename!r} is not an .npy array ({err})") from None
        if err.part == "version":
            raise Rejected("npy-header", f"{what}: member {info.filename!r} has {err}") from None
        msg = str(err)
        if "object" in msg.lower() or "pickle" in msg.lower():
            raise Rejected("pickle", f"{what}: array {name!r} is a pickled object array; only plain numeric arrays "
                                     "are accepted") from None
        raise Rejected("npy-header", f"{what}: member {info.filename!r} has an unreadable .npy header: {msg[:200]}") \
            from None
    if dtype.hasobject:
        raise Rejected("pickle", f"{what}: array {name!r} is a pickled object array (dtype object); only plain "
                                 "numeric arrays are accepted")
    if dtype.kind == "V" or dtype.fields is not None or dtype.subdtype is not None:
        raise Rejected("not-npz", f"{what}: array {name!r} has a structured/void dtype {dtype}")
    count = 1
    for n in shape:
        count *= int(n)
    declared = count * dtype.itemsize
    held = info.file_size - f.tell()
    if dtype.itemsize == 0 and count:
        raise Rejected("npy-header", f"{what}: array {name!r} declares {count:,} elements of zero size ({dtype})")
    if declared != held:
        raise Rejected("npy-header", f"{what}: array {name!r} declares shape {tuple(shape)} of {dtype} = "
                                     f"{declared:,} bytes, the member holds {held:,}: refused before reading it")
    return Member(name, tuple(int(n) for n in shape), dtype, declared)


def load_members(source, members: dict[str, Member], what: str = "predictions file") -> dict[str, np.ndarray]:
    """Load the (inspected) members of an npz with ``allow_pickle=False``, refusing non-finite
    floating values. Members are read one at a time; each was sized from its header.

    Raises:
        Rejected: ``not-npz`` or ``non-finite``.
    """
    fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    arrays = {}
    try:
        fileobj.seek(0)
        with zipfile.ZipFile(fileobj) as zf:
            for name in members:
                with zf.open(f"{name}.npy") as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False, max_header_size=NPY_MAX_HEADER)
    except _ZIP_ERRORS as err:
        raise Rejected("not-npz", f"{what} could not be read as .npz: {type(err).__name__}: {str(err)[:200]}") from None
    for name, arr in arrays.items():
        if arr.dtype != members[name].dtype or arr.shape != members[name].shape:
            raise Rejected("not-npz", f"{what}: array {name!r} changed while it was read")
        if arr.dtype.kind in "fc" and not all_finite(arr):
            raise Rejected("non-finite", f"{what}: array {name!r} holds NaN or infinite values")
    return arrays


def all_finite(arr: np.ndarray, chunk: int = 1 << 24) -> bool:
    """Whether every value of a numeric array is finite (in chunks: no full-size temporary)."""
    flat = arr.reshape(-1, order="A")
    return all(bool(np.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.size, chunk))


def load_npz_safe(data: bytes, what: str = "predictions file") -> dict[str, np.ndarray]:
    """All arrays of an .npz given as bytes (:func:`inspect_npz` then :func:`load_members`).

    Returns:
        name -> numpy array (numeric, bool or fixed-width string dtypes only).

    Raises:
        Rejected: ``not-npz``, ``too-large``, ``npy-header``, ``pickle`` or ``non-finite``.
    """
    return load_members(data, inspect_npz(data, what), what)
