"""Gaussian cube files: read, write, integrate, and export density samples.

Format (Gaussian/cubegen): two comment lines; ``NATOMS X0 Y0 Z0 [NVAL]``; three lines
``N_i AX AY AZ`` (voxel count and step vector of axis i); NATOMS lines ``Z CHARGE X Y Z``;
if NATOMS < 0 one more line ``NMO ID1 ID2 ...`` (orbital ids, |NATOMS| atoms); then the values,
x slowest, z fastest, NVAL (or NMO) values per point. A negative voxel count means lengths
are in Angstrom (otherwise Bohr); this reader always returns Bohr.
"""
from __future__ import annotations

import gzip
import io
import zipfile
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
    """

    data: np.ndarray
    origin: np.ndarray
    axes: np.ndarray
    atoms: CubeAtoms
    comments: tuple = ("", "")
    orbital_ids: np.ndarray | None = None
    path: str | None = field(default=None, repr=False)

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


def _read_text(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
            cubes = [m for m in members if m.lower().endswith((".cube", ".cub"))] or members
            if len(cubes) != 1:
                raise ValueError(f"{path}: expected one cube file in the zip, found {cubes}")
            raw = zf.read(cubes[0])
    elif name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    else:
        raw = path.read_bytes()
    return raw.decode("utf-8", errors="replace")


def _fail(path, msg):
    raise ValueError(f"{path}: malformed cube file: {msg}")


def _ints_floats(line: str, path, lineno: int, n: int, what: str):
    parts = line.split()
    if len(parts) < n:
        _fail(path, f"line {lineno} should hold {what} ({n} numbers), got {line.strip()!r}")
    try:
        first = int(parts[0])
        rest = [float(p) for p in parts[1:n]]
    except ValueError:
        _fail(path, f"line {lineno} should hold {what}, got {line.strip()!r}")
    return first, rest, parts[n:]


def read_cube(path) -> Cube:
    """Read a cube file (plain, ``.gz`` or a ``.zip`` holding one cube).

    Args:
        path: file path.
    Returns:
        :class:`Cube` with lengths in Bohr (Angstrom files, flagged by negative voxel counts,
        are converted). Data is (n1, n2, n3), or (n1, n2, n3, nval) for several values per
        point (negative atom count -> nval = number of orbital ids; or NVAL on line 3).
    Raises:
        ValueError: naming the file and the problem, for malformed files.
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    if len(lines) < 6:
        _fail(path, f"only {len(lines)} lines, a header needs at least 6")
    comments = (lines[0].rstrip("\n"), lines[1].rstrip("\n"))
    natoms, origin, extra = _ints_floats(lines[2], path, 3, 4, "NATOMS X0 Y0 Z0")
    nval = 1
    if extra:
        try:
            nval = int(extra[0])
        except ValueError:
            _fail(path, f"line 3 has a non-integer NVAL {extra[0]!r}")
        if nval < 1:
            _fail(path, f"line 3 has NVAL = {nval}")
    counts, axes = [], []
    for i in range(3):
        n, vec, _ = _ints_floats(lines[3 + i], path, 4 + i, 4,
                                 f"N{i + 1} and the axis {i + 1} vector")
        if n == 0:
            _fail(path, f"line {4 + i}: zero voxels along axis {i + 1}")
        counts.append(n)
        axes.append(vec)
    signs = {c > 0 for c in counts}
    if len(signs) != 1:
        _fail(path, f"voxel counts {counts} mix Bohr (positive) and Angstrom (negative) units")
    angstrom = counts[0] < 0
    shape = tuple(abs(c) for c in counts)

    n_at = abs(natoms)
    if len(lines) < 6 + n_at:
        _fail(path, f"header says {n_at} atoms but the file has only {len(lines)} lines")
    numbers, charges, positions = [], [], []
    for a in range(n_at):
        lineno = 7 + a
        parts = lines[6 + a].split()
        ok = len(parts) == 5
        if ok:
            try:
                z = int(parts[0])
                vals = [float(p) for p in parts[1:]]
            except ValueError:
                ok = False
        if not ok:
            _fail(path, f"header says {n_at} atoms but line {lineno} is not an atom line "
                        f"'Z charge x y z': {lines[6 + a].strip()[:80]!r}")
        numbers.append(z)
        charges.append(vals[0])
        positions.append(vals[1:])
    body_start = 6 + n_at
    orbital_ids = None
    if natoms < 0:
        tokens, k, nmo = [], body_start, None
        while k < len(lines):
            tokens += lines[k].split()
            k += 1
            try:
                nmo = int(tokens[0])
            except (ValueError, IndexError):
                _fail(path, f"negative atom count but line {body_start + 1} does not start with "
                            "the number of orbitals")
            if len(tokens) >= 1 + nmo:
                break
        if nmo is None or nmo < 1:
            _fail(path, "negative atom count but no orbital line (NMO >= 1 ids) after the atoms")
        if len(tokens) != 1 + nmo:
            _fail(path, f"orbital line should hold {nmo} ids, got {tokens[1:]}")
        try:
            orbital_ids = np.array([int(t) for t in tokens[1:]], dtype=np.int64)
        except ValueError:
            _fail(path, f"orbital ids are not integers: {tokens[1:]}")
        nval = nmo
        body_start = k
    body = " ".join(lines[body_start:])
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError:
        try:
            values = np.array(body.replace("D", "E").replace("d", "e").split(), dtype=np.float64)
        except ValueError:
            _fail(path, "the data section holds non-numeric values")
    expected = shape[0] * shape[1] * shape[2] * nval
    if values.size != expected:
        _fail(path, f"expected {shape[0]}x{shape[1]}x{shape[2]}"
                    f"{f'x{nval}' if nval > 1 else ''} = {expected} values, found {values.size}")
    data = values.reshape(shape + ((nval,) if nval > 1 else ()))
    origin = np.asarray(origin, dtype=np.float64)
    axes = np.asarray(axes, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if angstrom:
        origin, axes, positions = (origin * BOHR_PER_ANGSTROM, axes * BOHR_PER_ANGSTROM,
                                   positions * BOHR_PER_ANGSTROM)
    atoms = CubeAtoms(np.asarray(numbers, dtype=np.int64), np.asarray(charges, dtype=np.float64),
                      positions)
    return Cube(data=data, origin=origin, axes=axes, atoms=atoms, comments=comments,
                orbital_ids=orbital_ids, path=str(path))


def write_cube(path, data, origin, axes, atomic_numbers, positions_bohr, comments=("", ""),
               nuclear_charges=None) -> None:
    """Write a standard cube file (Bohr; ``.gz`` suffix -> gzip).

    Args:
        path: output path.
        data: (n1, n2, n3) values (x slowest, z fastest).
        origin: (3,) Bohr.
        axes: (3, 3) Bohr, row a = step along axis a.
        atomic_numbers: (N,) ints.
        positions_bohr: (N, 3) Bohr.
        comments: two comment lines (newlines are replaced by spaces).
        nuclear_charges: (N,) floats; defaults to the atomic numbers.
    Values are written 6 per line as ``%13.5E``; each z-row starts a new line.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 3:
        raise ValueError(f"data must be 3D (n1, n2, n3), got shape {data.shape}")
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    axes = np.asarray(axes, dtype=np.float64).reshape(3, 3)
    z = np.asarray(atomic_numbers).astype(int).ravel()
    pos = np.asarray(positions_bohr, dtype=np.float64).reshape(-1, 3)
    if len(z) != len(pos):
        raise ValueError(f"{len(z)} atomic numbers but {len(pos)} positions")
    q = z.astype(float) if nuclear_charges is None else np.asarray(nuclear_charges, float)
    c = [str(x).replace("\n", " ").replace("\r", " ") for x in tuple(comments)[:2]]
    c += [""] * (2 - len(c))
    buf = io.StringIO()
    buf.write(f"{c[0]}\n{c[1]}\n")
    buf.write(f"{len(z):5d}{origin[0]:12.6f}{origin[1]:12.6f}{origin[2]:12.6f}\n")
    for i in range(3):
        buf.write(f"{data.shape[i]:5d}{axes[i, 0]:12.6f}{axes[i, 1]:12.6f}{axes[i, 2]:12.6f}\n")
    for zi, qi, p in zip(z, q, pos):
        buf.write(f"{zi:5d}{qi:12.6f}{p[0]:12.6f}{p[1]:12.6f}{p[2]:12.6f}\n")
    n3 = data.shape[2]
    full, rest = divmod(n3, 6)
    row_fmt = ("%13.5E" * 6 + "\n") * full + ("%13.5E" * rest + "\n" if rest else "")
    rows = data.reshape(-1, n3)
    buf.write("".join(row_fmt % tuple(r) for r in rows))
    text = buf.getvalue().encode()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if path.name.lower().endswith(".gz"):
        with gzip.open(tmp, "wb") as fh:
            fh.write(text)
    else:
        tmp.write_bytes(text)
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
