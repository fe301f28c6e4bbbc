"""Gaussian cube files: read, write, integrate, and export density samples.

Format (Gaussian/cubegen): two comment lines; ``NATOMS X0 Y0 Z0 [NVAL]``; three lines
``N_i AX AY AZ`` (voxel count and step vector of axis i); |NATOMS| lines ``Z CHARGE X Y Z``;
if NATOMS < 0 one more line ``NMO ID1 ID2 ...`` (orbital ids; it may wrap over several lines);
then the values, x slowest, z fastest, NVAL (or NMO) values per point, separated by any
whitespace (Fortran ``D`` exponents are accepted).

Length units: positive voxel counts mean Bohr. A negative count means Angstrom. Two sign
patterns are found in the wild and both are read as "the whole header is in Angstrom"
(origin, the three axis vectors and the atom positions): all three counts negative
(Gaussian cubegen), and only N_1 negative (ORCA-style files, h5cube's ``grid20ang.cube``,
pdb2pqr's dx2cube, Bio3DView). Any other mix of signs is refused. :func:`read_cube` always
returns Bohr; :func:`write_cube` always writes Bohr (positive counts).

The reader refuses, with a one-line ``ValueError`` naming the file, anything that is not a
finite, well-formed grid: NaN/Inf values, singular axes, zero counts, more or
fewer values than declared, a declared grid larger than ``max_grid_bytes`` and streams (plain,
gzip or zip member) longer than the declared grid can need (decompression bombs). Values are
parsed in 1 MiB blocks into one preallocated float64 array, so peak memory is the grid itself
plus a few MiB.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from builders.density.schema import ANGSTROM_PER_BOHR, BOHR_PER_ANGSTROM


@dataclass
class CubeAtoms:
    """Atoms of a cube file: numbers (N,) int, charges (N,) float, positions (N, 3) Bohr."""

    numbers: np.ndarray
    charges: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.numbers)


@dataclass
class Cube:
    """A parsed cube file (all lengths in Bohr).

    Attributes:
        data: (n1, n2, n3) float64 values, or (n1, n2, n3, nval) when the file holds several
            values per point (orbital cubes with a negative atom count, or NVAL > 1).
        origin: (3,) Bohr.
        axes: (3, 3) Bohr; row a = step vector along grid axis a.
        atoms: :class:`CubeAtoms`.
        comments: the two comment lines.
        orbital_ids: (nval,) ids from the orbital line (negative atom count), else None.
        path: the file read, if any.
        file_units: length unit of the file's header, ``"bohr"`` or ``"angstrom"`` (the
            attributes above are always Bohr).
    """

    data: np.ndarray
    origin: np.ndarray
    axes: np.ndarray
    atoms: CubeAtoms
    comments: tuple = ("", "")
    orbital_ids: np.ndarray | None = None
    path: str | None = field(default=None, repr=False)
    file_units: str = "bohr"

    @property
    def shape(self) -> tuple:
        """Grid shape (n1, n2, n3)."""
        return tuple(self.data.shape[:3])

    @property
    def voxel_volume(self) -> float:
        """|det(axes)| in Bohr^3."""
        return abs(float(np.linalg.det(self.axes)))

    def integral(self):
        """Grid integral sum(data) * voxel volume (e.g. electrons for a density in e/Bohr^3).

        Returns a float, or an (nval,) array for multi-valued cubes.
        """
        s = self.data.sum(axis=(0, 1, 2))
        return float(s) * self.voxel_volume if np.ndim(s) == 0 else s * self.voxel_volume


DEFAULT_MAX_GRID_BYTES = 4 * 2**30
"""Default bound on a declared grid, in bytes of float64 (n1*n2*n3*nval*8): 4 GiB, e.g. 812^3."""

_LINE_MAX = 65536          # most bytes one header line may take
_BYTES_PER_VALUE = 64      # most bytes one data value may take on disk, spacing included
_DATA_SLACK = 65536        # extra bytes allowed in the data section (blank lines, padding)
_MAX_TOKEN = 64            # most bytes one number may take
_CHUNK = 1 << 20           # bytes parsed at a time
_MAX_ATOMS = 1_000_000
_MAX_ORBITALS = 100_000
_WHITESPACE = (b" ", b"\n", b"\r", b"\t", b"\x0b", b"\x0c")
_FORTRAN_EXP = bytes.maketrans(b"dD", b"eE")
_SNIP = 80                 # most characters of file content quoted in an error message


def _snip(text) -> str:
    """``repr`` of at most :data:`_SNIP` characters of ``text`` (str or bytes)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = str(text).strip()
    return repr(text if len(text) <= _SNIP else text[:_SNIP] + "...")


def _fail(path, msg):
    raise ValueError(f"{path}: malformed cube file: {msg}")


class _Source:
    """Bounded reads from one binary stream: header lines, then blocks of values."""

    def __init__(self, fh, path: Path):
        self.fh, self.path = fh, path
        self.lineno = 0   # number of the last line read (1-based)
        self.nbytes = 0   # bytes consumed so far

    def line(self, what: str) -> str:
        """The next line (decoded, without its line ending); refuse EOF and overlong lines."""
        raw = self.fh.readline(_LINE_MAX + 1)
        self.lineno += 1
        if not raw:
            _fail(self.path, f"the file ends before line {self.lineno} ({what})")
        if len(raw) > _LINE_MAX:
            _fail(self.path, f"line {self.lineno} ({what}) is longer than {_LINE_MAX} bytes")
        self.nbytes += len(raw)
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    def numbers(self, what: str, n: int):
        """Parse the next line as one int and n - 1 finite floats (extra tokens returned)."""
        text = self.line(what)
        parts = text.split()
        try:
            if len(parts) < n:
                raise ValueError
            first = int(parts[0])
            rest = [float(p) for p in parts[1:n]]
        except ValueError:
            _fail(self.path, f"line {self.lineno} should hold {what}, got {_snip(text)}")
        if not np.all(np.isfinite(rest)):
            _fail(self.path, f"line {self.lineno} ({what}) holds NaN or Inf: {_snip(text)}")
        return first, rest, parts[n:]


def _open_source(path: Path, stack):
    """(binary stream, bytes it holds or None when unknown) for a plain, .gz or .zip file."""
    name = path.name.lower()
    if name.endswith(".zip"):
        zf = stack.enter_context(zipfile.ZipFile(path))
        members = [m for m in zf.infolist() if not m.is_dir()]
        cubes = [m for m in members if m.filename.lower().endswith((".cube", ".cub"))] or members
        if len(cubes) != 1:
            _fail(path, f"expected one cube file in the zip, found {len(cubes)}: "
                        f"{_snip(', '.join(m.filename for m in cubes))}")
        return stack.enter_context(zf.open(cubes[0])), cubes[0].file_size
    if name.endswith(".gz"):
        return stack.enter_context(gzip.open(path, "rb")), None
    fh = stack.enter_context(open(path, "rb"))
    return fh, os.fstat(fh.fileno()).st_size


def _unit_scale(counts, path) -> float:
    """Length factor to Bohr from the signs of the three voxel counts (see module docstring)."""
    negative = tuple(c < 0 for c in counts)
    if not any(negative):
        return 1.0
    if all(negative) or negative == (True, False, False):
        return BOHR_PER_ANGSTROM
    _fail(path, f"voxel counts {list(counts)} mix signs; only all positive (Bohr), all negative "
                "or only N1 negative (Angstrom) are understood")


def _check_axes(axes: np.ndarray, where: str) -> float:
    """det(axes) of (3, 3) step vectors; ValueError (prefixed by ``where``) when they are singular.

    Singular means |det| <= 1e-12 * |a1| |a2| |a3| (zero-length or coplanar step vectors). A
    left-handed set (det < 0, e.g. one axis stepping backwards) is a valid grid and is kept.
    """
    det = float(np.linalg.det(axes))
    scale = float(np.prod(np.linalg.norm(axes, axis=1)))
    if not (np.isfinite(det) and abs(det) > 1e-12 * scale and scale > 0):
        raise ValueError(f"{where}: axis vectors are singular (zero voxel volume, det = {det:.3g})")
    return det


def _grid_label(shape, nval) -> str:
    dims = "x".join(str(s) for s in shape) + (f"x{nval}" if nval > 1 else "")
    return f"{dims} = {int(np.prod(shape, dtype=object)) * nval}"


def _check_grid_size(path, shape, nval, max_grid_bytes):
    n = int(np.prod(shape, dtype=object)) * nval
    if n * 8 > max_grid_bytes:
        _fail(path, f"declared grid {_grid_label(shape, nval)} values needs {n * 8 / 2**30:.3g} "
                    f"GiB, more than max_grid_bytes = {max_grid_bytes / 2**30:.3g} GiB")
    return n


def _first_bad_token(block: bytes) -> bytes:
    """The first whitespace-separated token of ``block`` that np.fromstring cannot parse."""
    tokens = block.split()
    lo, hi = 0, len(tokens)  # tokens[:lo] parse; tokens[:hi] do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            np.fromstring(b" ".join(tokens[:mid]).translate(_FORTRAN_EXP), sep=" ")
            lo = mid
        except ValueError:
            hi = mid
    return tokens[hi - 1] if tokens else block


def _parse_block(block: bytes, path) -> np.ndarray:
    """Float64 values of one whitespace-separated block (``D`` exponents allowed)."""
    block = block.strip()
    if not block:  # np.fromstring returns [-1.0] for whitespace-only input
        return np.empty(0)
    try:
        return np.fromstring(block, sep=" ")
    except ValueError:
        pass
    try:
        return np.fromstring(block.translate(_FORTRAN_EXP), sep=" ")
    except ValueError:
        _fail(path, f"non-numeric value {_snip(_first_bad_token(block)[:_SNIP])} in the data")


def _read_values(src: _Source, n: int, full_shape, label: str, budget: int) -> np.ndarray:
    """Stream exactly n finite values from ``src`` into a new (n,) float64 array.

    Reads at most ``budget`` bytes (refusing longer streams as soon as they pass it), stops
    as soon as more than n values are seen, and refuses NaN/Inf at the first one.
    """
    out = np.empty(n, dtype=np.float64)
    filled, consumed, carry = 0, 0, b""
    while True:
        chunk = src.fh.read(_CHUNK)
        consumed += len(chunk)
        if consumed > budget:
            _fail(src.path, f"the data section passes {budget} bytes, more than {label} values "
                            f"can take at {_BYTES_PER_VALUE} bytes each (trailing data or a "
                            "decompression bomb)")
        block = carry + chunk
        if chunk:  # keep a token cut by the block end for the next block
            tail = block[-(_MAX_TOKEN + 1):]
            cut = max(tail.rfind(w) for w in _WHITESPACE)
            if cut < 0:
                _fail(src.path, f"a value longer than {_MAX_TOKEN} bytes in the data: "
                                f"{_snip(tail[:_SNIP])}")
            cut += len(block) - len(tail)
            block, carry = block[:cut], block[cut:]
        values = _parse_block(block, src.path)
        if filled + values.size > n:
            _fail(src.path, f"expected {label} values, found more than {n} "
                            f"(at least {filled + values.size})")
        finite = np.isfinite(values)
        if not finite.all():
            k = int(np.argmin(finite))
            index = tuple(int(i) for i in np.unravel_index(filled + k, full_shape))
            _fail(src.path, f"value {filled + k + 1} (grid index {index}) is {values[k]}; "
                            "NaN and Inf are refused")
        out[filled:filled + values.size] = values
        filled += values.size
        if not chunk:
            break
    if filled < n:
        _fail(src.path, f"expected {label} values, found {filled} (truncated file?)")
    return out


def read_cube(path, *, max_grid_bytes: int = DEFAULT_MAX_GRID_BYTES) -> Cube:
    """Read a cube file (plain, ``.gz`` or a ``.zip`` holding one cube).

    Args:
        path: file path.
        max_grid_bytes: refuse a file whose header declares more than this many bytes of
            float64 values (n1*n2*n3*nval*8); default :data:`DEFAULT_MAX_GRID_BYTES` (4 GiB).
    Returns:
        :class:`Cube` with lengths in Bohr (Angstrom files, flagged by negative voxel counts:
        all three or only N1, are converted: origin, axes and atom positions). Data is
        (n1, n2, n3) float64, or (n1, n2, n3, nval) for several values per point (negative
        atom count -> nval = number of orbital ids; or NVAL on line 3).
    Raises:
        ValueError: one line naming the file and the problem, for malformed files: bad or
            missing header fields, mixed count signs, zero counts, singular
            axes, NaN/Inf, more or fewer values than declared, a declared grid over
            ``max_grid_bytes``, a stream longer than the declared grid can need (64 bytes per
            value), or a corrupt gzip/zip stream.
        FileNotFoundError: when ``path`` does not exist.
    Memory: the float64 result (8 bytes per value) plus about 4 MiB of parsing buffers.
    """
    path = Path(path)
    with contextlib.ExitStack() as stack:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such cube file")
        try:
            fh, stream_bytes = _open_source(path, stack)
            return _parse(_Source(fh, path), stream_bytes, max_grid_bytes)
        except (EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile,
                NotImplementedError) as err:  # truncated/corrupt stream, unknown zip method
            raise ValueError(f"{path}: corrupt compressed cube file: "
                             f"{type(err).__name__}: {_snip(err)}") from None


def _parse(src: _Source, stream_bytes, max_grid_bytes: int) -> Cube:
    """Header, atoms, orbital ids, then values; ``stream_bytes``: size of the stream or None."""
    path = src.path
    comments = (src.line("comment 1"), src.line("comment 2"))
    natoms, origin, extra = src.numbers("NATOMS X0 Y0 Z0", 4)
    nval = 1
    if extra:
        try:
            nval = int(extra[0])
        except ValueError:
            _fail(path, f"line 3 has a non-integer NVAL {_snip(extra[0])}")
        if nval < 1:
            _fail(path, f"line 3 has NVAL = {nval}")
    counts, axes = [], []
    for i in range(3):
        n, vec, _ = src.numbers(f"N{i + 1} and the axis {i + 1} vector", 4)
        if n == 0:
            _fail(path, f"line {4 + i}: zero voxels along axis {i + 1}")
        counts.append(n)
        axes.append(vec)
    scale = _unit_scale(counts, path)
    shape = tuple(abs(c) for c in counts)
    axes = np.asarray(axes, dtype=np.float64)
    _check_axes(axes, f"{path}: malformed cube file")
    n_points = _check_grid_size(path, shape, 1 if natoms < 0 else nval, max_grid_bytes)

    n_at = abs(natoms)
    if n_at > _MAX_ATOMS:
        _fail(path, f"header says {n_at} atoms, more than the {_MAX_ATOMS} supported")
    numbers, charges, positions = [], [], []
    for a in range(n_at):
        text = src.line(f"atom {a + 1} of {n_at}")
        parts = text.split()
        ok = len(parts) == 5
        if ok:
            try:
                z = int(parts[0])
                vals = [float(p) for p in parts[1:]]
                ok = bool(np.all(np.isfinite(vals)))
            except ValueError:
                ok = False
        if not ok:
            _fail(path, f"header says {n_at} atoms but line {src.lineno} is not an atom line "
                        f"'Z charge x y z': {_snip(text)}")
        numbers.append(z)
        charges.append(vals[0])
        positions.append(vals[1:])

    orbital_ids = None
    if natoms < 0:
        first = src.lineno + 1
        tokens = src.line("the orbital line NMO ID1 ...").split()
        try:
            nmo = int(tokens[0])
        except (ValueError, IndexError):
            _fail(path, f"negative atom count but line {first} does not start with the number "
                        "of orbitals")
        if not 1 <= nmo <= _MAX_ORBITALS:
            _fail(path, f"negative atom count but line {first} says NMO = {nmo} "
                        f"(1 to {_MAX_ORBITALS} expected)")
        while len(tokens) < 1 + nmo:
            more = src.line(f"orbital ids ({len(tokens) - 1} of {nmo} so far)").split()
            if not more:
                _fail(path, f"line {src.lineno} is blank; {nmo} orbital ids expected")
            tokens += more
        if len(tokens) != 1 + nmo:
            _fail(path, f"orbital line should hold {nmo} ids, got {len(tokens) - 1}")
        try:
            orbital_ids = np.array([int(t) for t in tokens[1:]], dtype=np.int64)
        except ValueError:
            _fail(path, f"orbital ids are not integers: {_snip(' '.join(tokens[1:]))}")
        nval = nmo
        n_points = _check_grid_size(path, shape, nval, max_grid_bytes)

    label = _grid_label(shape, nval)
    budget = _BYTES_PER_VALUE * n_points + _DATA_SLACK
    if stream_bytes is not None and stream_bytes - src.nbytes > budget:
        _fail(path, f"{stream_bytes - src.nbytes} bytes of data, more than {label} values can "
                    f"take at {_BYTES_PER_VALUE} bytes each (trailing data or a "
                    "decompression bomb)")
    full_shape = shape + ((nval,) if nval > 1 else ())
    data = _read_values(src, n_points, full_shape, label, budget).reshape(full_shape)

    origin = np.asarray(origin, dtype=np.float64) * scale
    axes = axes * scale
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3) * scale
    atoms = CubeAtoms(np.asarray(numbers, dtype=np.int64), np.asarray(charges, dtype=np.float64),
                      positions)
    return Cube(data=data, origin=origin, axes=axes, atoms=atoms, comments=comments,
                orbital_ids=orbital_ids, path=str(path),
                file_units="bohr" if scale == 1.0 else "angstrom")


def _exact(x) -> str:
    """A space, then the shortest decimal that reads back as the same float64 (``repr``),
    right-aligned in 21 characters (up to 24 when needed)."""
    return f" {float(x)!r:>21}"


def write_cube(path, data, origin, axes, atomic_numbers, positions_bohr, comments=("", ""),
               nuclear_charges=None) -> None:
    """Write a standard cube file (Bohr, positive voxel counts; ``.gz`` suffix -> gzip).

    Args:
        path: output path (written to ``path.tmp`` first, then renamed).
        data: (n1, n2, n3) finite values (x slowest, z fastest).
        origin: (3,) Bohr.
        axes: (3, 3) Bohr, row a = step along axis a; not singular.
        atomic_numbers: (N,) ints.
        positions_bohr: (N, 3) Bohr.
        comments: two comment lines (newlines are replaced by spaces).
        nuclear_charges: (N,) floats; defaults to the atomic numbers.
    Header numbers (origin, axes, charges, positions) are written as the shortest decimal
    that reads back as the same float64 (``repr``; whitespace-separated, as cclib, ASE and
    this reader split them), so voxel positions origin + i*axes[0] + ... round-trip exactly.
    Values are written 6 per line as ``%13.5E`` (relative precision 5e-6); each z-row starts
    a new line.
    Raises:
        ValueError: for non-3D or empty data, NaN/Inf anywhere, or singular axes.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 3 or data.size == 0:
        raise ValueError(f"data must be 3D (n1, n2, n3) and non-empty, got shape {data.shape}")
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    axes = np.asarray(axes, dtype=np.float64).reshape(3, 3)
    z = np.asarray(atomic_numbers).astype(int).ravel()
    pos = np.asarray(positions_bohr, dtype=np.float64).reshape(-1, 3)
    if len(z) != len(pos):
        raise ValueError(f"{len(z)} atomic numbers but {len(pos)} positions")
    q = z.astype(float) if nuclear_charges is None else np.asarray(nuclear_charges, float).ravel()
    if len(q) != len(z):
        raise ValueError(f"{len(z)} atomic numbers but {len(q)} nuclear charges")
    for name, arr in (("data", data), ("origin", origin), ("axes", axes),
                      ("positions_bohr", pos), ("nuclear_charges", q)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} holds NaN or Inf; a cube file cannot store it")
    _check_axes(axes, "write_cube")
    c = [str(x).replace("\n", " ").replace("\r", " ") for x in tuple(comments)[:2]]
    c += [""] * (2 - len(c))
    head = [f"{c[0]}\n{c[1]}\n", f"{len(z):5d}" + "".join(map(_exact, origin)) + "\n"]
    head += [f"{data.shape[i]:5d}" + "".join(map(_exact, axes[i])) + "\n" for i in range(3)]
    head += [f"{zi:5d}{_exact(qi)}" + "".join(map(_exact, p)) + "\n"
             for zi, qi, p in zip(z, q, pos)]
    n3 = data.shape[2]
    full, rest = divmod(n3, 6)
    row_fmt = ("%13.5E" * 6 + "\n") * full + ("%13.5E" * rest + "\n" if rest else "")
    rows = data.reshape(-1, n3)
    step = max(1, 65536 // n3)  # rows per write: about 1 MB of text
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(tmp, "wb") as fh:
        fh.write("".join(head).encode())
        for r0 in range(0, len(rows), step):
            fh.write("".join(row_fmt % tuple(r) for r in rows[r0:r0 + step]).encode())
    tmp.replace(path)


def export_cube(sample: dict, path, shape=None, **render_kwargs) -> Cube:
    """Render a density sample on its own frame and write it as a cube file.

    Args:
        sample: density sample (see :mod:`builders.density.schema`).
        path: output path (``.gz`` -> gzip).
        shape: (n1, n2, n3) or None for the sample's ``grid_shape``; another shape resamples
            the same box (see :func:`builders.density.render.resolve_frame`).
        render_kwargs: passed to :func:`builders.density.render.render_density`.
    Returns:
        The written :class:`Cube` (density in electrons / Bohr^3, lengths in Bohr).
    """
    from builders.density.render import render_density, resolve_frame

    origin, axes, shp = resolve_frame(sample, shape)
    rho = render_density(sample, shape=shp, origin=origin, axes=axes, **render_kwargs)
    rho = np.asarray(rho.cpu().numpy() if hasattr(rho, "cpu") else rho, dtype=np.float64)
    z = np.asarray(sample["atomic_numbers"]).astype(int)
    pos = np.asarray(sample["positions"], dtype=np.float64) / ANGSTROM_PER_BOHR
    basis = sample.get("basis", (sample.get("meta") or {}).get("basis", ""))
    comments = ("densegen electron density (e/Bohr^3)",
                f"RHF/{basis.decode() if isinstance(basis, bytes) else basis} density matrix")
    write_cube(path, rho, origin, axes, z, pos, comments)
    atoms = CubeAtoms(z.astype(np.int64), z.astype(np.float64), pos)
    return Cube(data=rho, origin=origin, axes=axes, atoms=atoms, comments=comments,
                path=str(path))
