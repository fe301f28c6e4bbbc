"""Pinned benchmark data: committed files under ``benchmarks/data/`` (and the qm9-small key
file under ``benchmarks/splits/``), each pinned here by its sha256, with loaders that refuse a
file whose bytes differ and the functions that (re)build and verify the density samples.

| constant                  | file                                        | what                                   |
|---------------------------|---------------------------------------------|----------------------------------------|
| QM9_SMALL_SHA256          | benchmarks/splits/qm9-small-v1.txt          | qm9-small: 5,000/500/1,000 gdb indices |
| DENSITY_QM9_SHA256        | benchmarks/data/density-qm9-v1.tsv          | RHF/STO-3G energy + electron count of  |
|                           |                                             | the 1,000 qm9-small test molecules     |
| DENSITY_PUBCHEM_SHA256    | benchmarks/data/density-pubchem-v1.jsonl    | 200 pubchem-hf-density test molecules: |
|                           |                                             | final geometry, energy, electrons      |
| QM9_TENSOR_SHA256         | benchmarks/data/qm9-tensor-v1.tsv           | RHF/STO-3G dipole vector + traceless   |
|                           |                                             | quadrupole of the 6,500 qm9-small mols |

Provenance, licences and the commands that made each file: ``benchmarks/data/README.md``.

Units: energies Hartree; geometries Angstrom; grid frames Bohr; dipoles Debye; quadrupoles
Debye*Angstrom (= Buckingham; 1 e*Bohr^2 = 1.344804 D*A).

Density verification: a (re)built sample matches its pinned record when
``|E_RHF - E_pinned| <= ENERGY_TOLERANCE_HARTREE`` (1e-6 Ha), the electron counts are equal
and the InChIKey is the same; :func:`density_problems` lists what differs.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Iterator

import numpy as np

from benchmarks.qm9 import SMALL_SPLIT_FILE, SMALL_SPLIT_SHA256, read_small_split_file
from builders.density.frame import SEED_MARGIN_BOHR, SEED_SHAPE
from builders.density.params import DEFAULT_TIME_LIMIT_S

DATA_DIR = Path(__file__).parent / "data"

QM9_SMALL_FILE = SMALL_SPLIT_FILE
QM9_SMALL_SHA256 = SMALL_SPLIT_SHA256

DENSITY_QM9_FILE = DATA_DIR / "density-qm9-v1.tsv"
DENSITY_QM9_SHA256 = "aedd827e27d70f4d5cad03ba85a88956d6a179eee02604840b5aeeebc2be300e"

DENSITY_PUBCHEM_FILE = DATA_DIR / "density-pubchem-v1.jsonl"
DENSITY_PUBCHEM_SHA256 = "c18a70bd6ce2a7e944a8111b0aac4fccdcbebe30b9630aa42dc628ba641aceda"

QM9_TENSOR_FILE = DATA_DIR / "qm9-tensor-v1.tsv"
QM9_TENSOR_SHA256 = "ffe57f0f4fef2b62abd330e77d1a7f59dd203a874b3d7db9b48977064d7f4938"

#: every pinned file: name -> (path, sha256)
PINNED = {
    "qm9-small-v1": (QM9_SMALL_FILE, QM9_SMALL_SHA256),
    "density-qm9-v1": (DENSITY_QM9_FILE, DENSITY_QM9_SHA256),
    "density-pubchem-v1": (DENSITY_PUBCHEM_FILE, DENSITY_PUBCHEM_SHA256),
    "qm9-tensor-v1": (QM9_TENSOR_FILE, QM9_TENSOR_SHA256),
}

ENERGY_TOLERANCE_HARTREE = 1e-6
QUADRUPOLE_COMPONENTS = ("xx", "yy", "zz", "xy", "xz", "yz")


class PinnedDataError(ValueError):
    """A pinned file is missing, its sha256 differs from the pinned one, or a (re)built sample
    does not match its pinned record."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_pinned(name: str, path: Path | None = None, verify: bool = True) -> tuple[bytes, str]:
    """The bytes of pinned file ``name`` (a key of :data:`PINNED`) and their sha256.

    Raises:
        PinnedDataError: the file is missing, or (``verify``) its sha256 is not the pinned one.
    """
    default, expected = PINNED[name]
    path = Path(path or default)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PinnedDataError(f"{name}: {path} is missing (it is committed in the densegen repository; "
                              f"restore it with git checkout)") from None
    digest = sha256_bytes(data)
    if verify and digest != expected:
        raise PinnedDataError(f"{name}: {path} has sha256 {digest}, the pinned one is {expected}; the file "
                              f"changed: restore it (git checkout) or, if it was regenerated on purpose, "
                              f"update the pin in benchmarks/pinned_data.py")
    return data, digest


def _tsv_rows(data: bytes, name: str) -> tuple[list[str], list[list[str]]]:
    lines = data.decode("ascii").splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise PinnedDataError(f"{name}: line {n} has {len(row)} columns, the header {len(header)}")
    return header, rows


# --- qm9-small ---------------------------------------------------------------------------------

def load_qm9_small(path: Path | None = None, verify: bool = True) -> tuple[dict, str]:
    """qm9-small: ({"train"/"valid"/"test": sorted gdb indices (int64)}, sha256)
    (5,000 / 500 / 1,000). See :func:`benchmarks.qm9.read_small_split_file`.

    Raises:
        PinnedDataError: the file's sha256 differs from :data:`QM9_SMALL_SHA256`.
    """
    data, digest = read_pinned("qm9-small-v1", path, verify)
    try:
        return read_small_split_file(path or QM9_SMALL_FILE, verify=False)[0], digest
    except ValueError as err:
        raise PinnedDataError(str(err)) from None


# --- density-reconstruction, variant qm9 ---------------------------------------------------------

DENSITY_QM9_COLUMNS = ("gdb_index", "key", "inchikey", "n_electrons", "n_ao", "rhf_energy_hartree", "rhf_converged")


def load_density_qm9(path: Path | None = None, verify: bool = True) -> tuple[dict, str]:
    """The pinned RHF/STO-3G results of the 1,000 qm9-small test molecules.

    Returns:
        ({key: record}, sha256) with record = {"gdb_index": int, "key": str ("qm9_<6 digits>"),
        "inchikey": str, "n_electrons": int, "n_ao": int, "rhf_energy_hartree": float (Hartree),
        "rhf_converged": bool}, keys in ascending gdb index.
    Raises:
        PinnedDataError: missing file or sha256 not :data:`DENSITY_QM9_SHA256`.
    """
    data, digest = read_pinned("density-qm9-v1", path, verify)
    header, rows = _tsv_rows(data, "density-qm9-v1")
    if tuple(header) != DENSITY_QM9_COLUMNS:
        raise PinnedDataError(f"density-qm9-v1: columns {header}, expected {list(DENSITY_QM9_COLUMNS)}")
    out = {}
    for r in rows:
        rec = dict(zip(header, r))
        out[rec["key"]] = {"gdb_index": int(rec["gdb_index"]), "key": rec["key"], "inchikey": rec["inchikey"],
                           "n_electrons": int(rec["n_electrons"]), "n_ao": int(rec["n_ao"]),
                           "rhf_energy_hartree": float(rec["rhf_energy_hartree"]),
                           "rhf_converged": rec["rhf_converged"] == "true"}
    return out, digest


def qm9_density_params() -> dict:
    """Parameters of the qm9-hf-density build that the qm9 variant scores: the 1,000 qm9-small
    test molecules (``gdb_indices`` = the committed key file, ``gdb_split`` = "test", its sha256
    checked by the builder), default RHF/STO-3G settings and the 128^3 frame, no stored grid."""
    return {"gdb_indices": str(QM9_SMALL_FILE), "gdb_split": "test", "gdb_indices_sha256": QM9_SMALL_SHA256}


def build_qm9_density(root: Path, workers: int = 1, progress: bool = True) -> Path:
    """Build (or resume; a no-op when built) qm9-hf-density for the 1,000 qm9-small test
    molecules under ``<root>/densegen/qm9-hf-density`` (~10-20 CPU-minutes), then verify every
    sample against the pinned table (streaming).

    Returns:
        the release folder.
    Raises:
        PinnedDataError: a sample differs from its pinned record, or the build failed molecules.
    """
    from builders.format.build import build_release
    from builders.format.manifest import release_dir
    from builders.format.registry import get_release

    spec = get_release("qm9-hf-density")
    manifest = build_release(spec, Path(root), qm9_density_params(), workers=workers, progress=progress)
    out = release_dir(Path(root), spec.name)
    if manifest.failures_total:
        raise PinnedDataError(f"{out}: {manifest.failures_total} molecule(s) failed to build "
                              f"({manifest.failures_by_stage}); see {out / 'failures.jsonl'}")
    problems = verify_qm9_density_release(out)
    if problems:
        raise PinnedDataError(f"{out}: {len(problems)} problem(s) against density-qm9-v1, first: {problems[0]}")
    return out


def density_problems(sample: dict, record: dict, tolerance: float = ENERGY_TOLERANCE_HARTREE) -> list[str]:
    """How a density sample (release form: arrays + ``meta``, or flat) differs from its pinned
    record: RHF energy beyond ``tolerance`` Hartree, electron count, InChIKey, convergence."""
    meta = {**sample, **sample.get("meta", {})}
    key = sample.get("__key__", record.get("key"))
    problems = []
    e, e0 = float(meta["rhf_energy_hartree"]), float(record["rhf_energy_hartree"])
    if not math.isfinite(e) or abs(e - e0) > tolerance:
        problems.append(f"{key}: RHF energy {e!r} Ha differs from the pinned {e0!r} Ha by {e - e0:.3g} "
                        f"(tolerance {tolerance:g})")
    if int(meta["n_electrons"]) != int(record["n_electrons"]):
        problems.append(f"{key}: {meta['n_electrons']} electrons, pinned {record['n_electrons']}")
    if record.get("inchikey") and meta.get("inchikey") != record["inchikey"]:
        problems.append(f"{key}: InChIKey {meta.get('inchikey')}, pinned {record['inchikey']}")
    if not bool(meta.get("rhf_converged", True)):
        problems.append(f"{key}: RHF not converged")
    return problems


def verify_qm9_density_release(release: Path, split: str = "test", table: dict | None = None) -> list[str]:
    """Stream a qm9-hf-density release's ``split`` and compare every sample with the pinned
    table (one sample in memory at a time). Lists missing, extra and differing samples."""
    from builders.format.reader import iter_release

    table = table if table is not None else load_density_qm9()[0]
    seen, problems = set(), []
    for s in iter_release(Path(release), split):
        key = s["__key__"]
        if key not in table:
            problems.append(f"{key}: not in density-qm9-v1")
            continue
        seen.add(key)
        problems.extend(density_problems(s, table[key]))
    missing = sorted(set(table) - seen)
    if missing:
        problems.append(f"{len(missing)} pinned molecule(s) missing from {release} split {split!r}, first: {missing[0]}")
    return problems


# --- density-reconstruction, variant pubchem ------------------------------------------------------

def load_density_pubchem(path: Path | None = None, verify: bool = True) -> tuple[list[dict], str]:
    """The pinned pubchem-hf-density test molecules, in file order.

    Returns:
        (records, sha256). Each record: ``key`` (pubchem_<line>), ``smiles`` (the embedded
        file's line), ``canonical_smiles``, ``inchikey``, ``split`` ("test"),
        ``atomic_numbers`` (list of int), ``positions_angstrom`` (N x 3 floats, the final
        MINDO3 geometry, exact float64 values), ``n_electrons``, ``n_ao``,
        ``rhf_energy_hartree``, ``rhf_converged``, ``grid_origin_bohr`` (3), ``grid_step_bohr`` (3,
        the diagonal of grid_axes), ``grid_shape`` (3) - the seed frame of the geometry - and
        the provenance of the geometry (``conformer_seed``, ``chosen_conformer_index``,
        ``semiempirical_method``, ``semiempirical_energy_hartree``).
    Raises:
        PinnedDataError: missing file or sha256 not :data:`DENSITY_PUBCHEM_SHA256`.
    """
    data, digest = read_pinned("density-pubchem-v1", path, verify)
    records = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return records, digest


def pubchem_record_frame(record: dict) -> dict:
    """The grid frame of a pinned record as sample fields (grid_origin, grid_axes, grid_shape)."""
    return {"grid_origin": np.asarray(record["grid_origin_bohr"], np.float64),
            "grid_axes": np.diag(np.asarray(record["grid_step_bohr"], np.float64)),
            "grid_shape": np.asarray(record["grid_shape"], np.int32)}


def rebuild_pubchem_sample(record: dict, time_limit_s: float | None = DEFAULT_TIME_LIMIT_S, verify: bool = True) -> dict:
    """Rebuild one pinned pubchem density sample by RHF/STO-3G only, on its committed final
    geometry (``builders.density.pipeline.build_density_sample_from_geometry``, the
    qm9-hf-density path), in the release's sample form (arrays + ``meta`` + ``__key__``).

    The sample's frame is the seed frame of the geometry (128^3, 3 Bohr margin) and must equal
    the committed one; its provenance fields say where the geometry came from.

    Raises:
        PinnedDataError: (``verify``) energy, electron count, InChIKey or frame differ from the record.
        builders.format.failures.MoleculeFailure: RHF failed (not converged, timeout).
    """
    from builders.density.pipeline import build_density_sample_from_geometry
    from builders.density.release import split_fields

    sample = build_density_sample_from_geometry(
        np.asarray(record["atomic_numbers"], np.int64), np.asarray(record["positions_angstrom"], np.float64),
        smiles=record["smiles"], inchikey=record["inchikey"], time_limit_s=time_limit_s,
        margin_bohr=SEED_MARGIN_BOHR, grid_shape=SEED_SHAPE)
    sample.update({"geometry_source": "pinned:density-pubchem-v1", "semiempirical_method": record["semiempirical_method"],
                   "conformer_seed": int(record["conformer_seed"]), "force_field": "MMFF94",
                   "chosen_conformer_index": int(record["chosen_conformer_index"])})
    fields = split_fields(sample)
    fields["__key__"] = record["key"]
    if verify:
        problems = density_problems(fields, record)
        frame = pubchem_record_frame(record)
        for name, value in frame.items():
            if not np.allclose(fields[name], value, rtol=0, atol=1e-9):
                problems.append(f"{record['key']}: {name} {fields[name].tolist()} differs from the pinned frame")
        if problems:
            raise PinnedDataError("; ".join(problems))
    return fields


def _cache_index_path(folder: Path) -> Path:
    return Path(folder) / "index.json"


def ensure_pubchem_density(folder: Path, records: list[dict] | None = None, progress: bool = True,
                           time_limit_s: float | None = DEFAULT_TIME_LIMIT_S) -> Path:
    """Rebuild (RHF only) every pinned pubchem molecule into ``folder`` (one single-sample tar
    per molecule, written atomically, so a killed run resumes), verify each against its record
    and write ``index.json`` (key -> sha256 of its tar, plus the pinned table's sha256).
    A no-op for molecules already there. ~200 RHF/STO-3G runs, ~0.5-3 CPU-s each.

    Returns:
        ``folder``.
    """
    from tqdm import tqdm

    from builders.format.encoding import encode_sample
    from builders.format.tario import write_atomic, write_shard

    if records is None:
        records, table_sha = load_density_pubchem()
    else:
        table_sha = None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = {}
    for rec in tqdm(records, desc="density-pubchem-v1 (RHF)", unit="mol", disable=not progress):
        path = folder / f"{rec['key']}.tar"
        if not path.is_file():
            fields = rebuild_pubchem_sample(rec, time_limit_s=time_limit_s)
            key = fields.pop("__key__")
            write_shard(path, [(key, encode_sample(fields))])
        index[rec["key"]] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_atomic(_cache_index_path(folder), json.dumps({"table_sha256": table_sha, "samples": index},
                                                       indent=1, sort_keys=True).encode())
    return folder


def iter_pubchem_density(folder: Path, records: list[dict] | None = None) -> Iterator[dict]:
    """Stream the rebuilt pubchem density samples of ``folder`` (from
    :func:`ensure_pubchem_density`) in record order, one in memory at a time, each checked
    against ``index.json`` (sha256 of its tar) and its pinned record.

    Raises:
        PinnedDataError: a sample is missing, its tar changed, or it differs from its record.
    """
    from builders.format.reader import decode_sample
    from builders.format.tario import iter_tar_samples

    if records is None:
        records = load_density_pubchem()[0]
    folder = Path(folder)
    try:
        index = json.loads(_cache_index_path(folder).read_text())["samples"]
    except (OSError, ValueError, KeyError):
        raise PinnedDataError(f"{folder}: no readable index.json; run ensure_pubchem_density first") from None
    for rec in records:
        path = folder / f"{rec['key']}.tar"
        if rec["key"] not in index or not path.is_file():
            raise PinnedDataError(f"{folder}: sample {rec['key']} missing; run ensure_pubchem_density again")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != index[rec["key"]]:
            raise PinnedDataError(f"{path}: changed since it was built (sha256); delete it and rebuild")
        (key, members), = list(iter_tar_samples(path))
        sample = decode_sample(key, members, path)
        problems = density_problems(sample, rec)
        if problems:
            raise PinnedDataError("; ".join(problems))
        yield sample


# --- qm9-tensor ---------------------------------------------------------------------------------

def _debye_angstrom_per_au() -> float:
    from pyscf.data import nist

    return float(nist.AU2DEBYE * nist.BOHR)


def multipoles(atomic_numbers, positions_angstrom, density_matrix, basis: str = "sto-3g") -> tuple[np.ndarray, np.ndarray]:
    """Dipole vector and Buckingham traceless quadrupole of a molecule from its density matrix.

    Origin: the centre of nuclear charge ``R0 = sum_A Z_A R_A / sum_A Z_A`` (a function of the
    geometry and Z only, like Gaussian's standard origin; for a neutral molecule the dipole does
    not depend on it, the quadrupole does when the dipole is non-zero).

        mu_i      = sum_A Z_A (R_A - R0)_i - tr(D r_i)
        Theta_ij  = (1/2) [ sum_A Z_A (3 r_Ai r_Aj - |r_A|^2 d_ij) - tr(D (3 r_i r_j - r^2 d_ij)) ]

    with r measured from R0 (pyscf ``int1e_r``, ``int1e_rr`` with common origin R0), in the
    Cartesian frame of ``positions_angstrom`` as given.

    Args:
        atomic_numbers: (N,) int.
        positions_angstrom: (N, 3) Angstrom.
        density_matrix: (nao, nao) total RHF density matrix (or packed upper triangle, as stored
            in the releases), AO order of pyscf's ``basis``.
    Returns:
        (dipole (3,) Debye, quadrupole (3, 3) Debye*Angstrom, symmetric and traceless).
    """
    from pyscf.data import nist

    from builders.density.rhf import build_rhf_mol
    from builders.density.storage import unpack_density_matrix

    z = np.asarray(atomic_numbers, np.int64).ravel()
    mol = build_rhf_mol(z, np.asarray(positions_angstrom, np.float64), basis=basis)
    dm = np.asarray(density_matrix, np.float64)
    if dm.ndim == 1:
        dm = unpack_density_matrix(dm)
    if dm.shape != (mol.nao, mol.nao):
        raise ValueError(f"density matrix of shape {dm.shape} for {mol.nao} AOs of {basis}")
    coords = mol.atom_coords()  # Bohr
    charges = mol.atom_charges().astype(np.float64)
    origin = charges @ coords / charges.sum()
    r = coords - origin
    with mol.with_common_orig(origin):
        ints_r = mol.intor_symmetric("int1e_r", comp=3)
        ints_rr = mol.intor_symmetric("int1e_rr", comp=9).reshape(3, 3, mol.nao, mol.nao)
    mu = charges @ r - np.einsum("kij,ji->k", ints_r, dm)
    second = np.einsum("a,ai,aj->ij", charges, r, r) - np.einsum("klij,ji->kl", ints_rr, dm)
    theta = 0.5 * (3.0 * second - np.eye(3) * np.trace(second))
    return mu * nist.AU2DEBYE, theta * _debye_angstrom_per_au()


def quadrupole_components(theta: np.ndarray) -> np.ndarray:
    """(3, 3) -> the 6 unique components in :data:`QUADRUPOLE_COMPONENTS` order (xx yy zz xy xz yz)."""
    t = np.asarray(theta)
    return np.array([t[0, 0], t[1, 1], t[2, 2], t[0, 1], t[0, 2], t[1, 2]])


def quadrupole_matrix(components) -> np.ndarray:
    """The 6 components (xx yy zz xy xz yz; last axis) -> (..., 3, 3) symmetric tensor."""
    c = np.asarray(components, np.float64)
    xx, yy, zz, xy, xz, yz = (c[..., i] for i in range(6))
    return np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1), np.stack([xz, yz, zz], -1)], -2)


QM9_TENSOR_COLUMNS = ("gdb_index", "split", "dipole_x_debye", "dipole_y_debye", "dipole_z_debye",
                      *(f"quadrupole_{c}_debye_angstrom" for c in QUADRUPOLE_COMPONENTS))


def load_qm9_tensor(path: Path | None = None, verify: bool = True) -> tuple[dict, str]:
    """qm9-tensor targets of the 6,500 qm9-small molecules (RHF/STO-3G on the QM9 geometry, in
    the frame of the qm9pack coordinates as given, origin = centre of nuclear charge).

    Returns:
        ({"gdb_index": (N,) int64 ascending, "split": (N,) str, "dipole_debye": (N, 3) float64,
        "quadrupole_debye_angstrom": (N, 6) float64 in xx yy zz xy xz yz order (Buckingham
        traceless; :func:`quadrupole_matrix` gives the 3x3 tensors)}, sha256).
    Raises:
        PinnedDataError: missing file or sha256 not :data:`QM9_TENSOR_SHA256`.
    """
    data, digest = read_pinned("qm9-tensor-v1", path, verify)
    header, rows = _tsv_rows(data, "qm9-tensor-v1")
    if tuple(header) != QM9_TENSOR_COLUMNS:
        raise PinnedDataError(f"qm9-tensor-v1: columns {header}, expected {list(QM9_TENSOR_COLUMNS)}")
    values = np.array([[float(v) for v in r[2:]] for r in rows], np.float64).reshape(len(rows), 9)
    return {"gdb_index": np.array([int(r[0]) for r in rows], np.int64),
            "split": np.array([r[1] for r in rows]),
            "dipole_debye": values[:, :3], "quadrupole_debye_angstrom": values[:, 3:]}, digest
