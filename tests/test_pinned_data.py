"""Pinned benchmark data: the qm9-small key file, the density tables (qm9 and pubchem
variants) and the qm9-tensor targets are committed, pinned by sha256, reproducible, and what a
rebuild gives."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import pinned_data as pd_
from benchmarks.qm9 import (SMALL_COUNTS, SMALL_SPLIT_FILE, SMALL_SPLIT_SHA256, read_small_split_file,
                            read_split_file, small_split_bytes)


# --- pins ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(pd_.PINNED))
def test_every_pinned_file_has_its_pinned_sha256(name):
    path, expected = pd_.PINNED[name]
    data, digest = pd_.read_pinned(name)
    assert digest == expected and path.stat().st_size == len(data)


def test_a_changed_file_is_refused_naming_both_hashes(tmp_path):
    bad = tmp_path / "density-qm9-v1.tsv"
    bad.write_bytes(pd_.DENSITY_QM9_FILE.read_bytes() + b"\n")
    with pytest.raises(pd_.PinnedDataError, match=pd_.DENSITY_QM9_SHA256):
        pd_.load_density_qm9(bad)
    with pytest.raises(pd_.PinnedDataError, match="missing"):
        pd_.load_qm9_tensor(tmp_path / "nope.tsv")
    changed = tmp_path / "qm9-small-v1.txt"
    changed.write_bytes(SMALL_SPLIT_FILE.read_bytes()[:-1])
    with pytest.raises(ValueError, match="differs from the pinned"):
        read_small_split_file(changed)
    with pytest.raises(pd_.PinnedDataError):
        pd_.load_qm9_small(changed)


# --- qm9-small -----------------------------------------------------------------------------------

def test_qm9_small_regenerates_byte_for_byte_and_is_a_subset_of_the_qm9_split():
    assert small_split_bytes() == SMALL_SPLIT_FILE.read_bytes()
    small, digest = read_small_split_file()
    assert digest == SMALL_SPLIT_SHA256
    full, _ = read_split_file()
    assert {k: len(v) for k, v in small.items()} == SMALL_COUNTS == {"train": 5000, "valid": 500, "test": 1000}
    for split, idx in small.items():
        assert np.all(np.diff(idx) > 0) and idx.dtype == np.int64
        assert np.isin(idx, full[split]).all(), split
    assert not set(small["train"]) & set(small["test"]) and not set(small["valid"]) & set(small["test"])


# --- the builder's gdb-index parameter -----------------------------------------------------------

def test_gdb_index_file_is_validated(tmp_path):
    from builders.format.registry import get_release
    from builders.density.release import read_gdb_index_file

    spec = get_release("qm9-hf-density")
    f = tmp_path / "idx.txt"
    f.write_text("# comment\n3\ttest\n1\ttrain\n\n2\ttest\n")
    idx, digest = read_gdb_index_file(f)
    assert idx.tolist() == [1, 2, 3] and len(digest) == 64
    assert read_gdb_index_file(f, split="test")[0].tolist() == [2, 3]
    params = spec.resolve_params({"gdb_indices": str(f), "gdb_split": "test"})
    assert params["n_gdb_indices"] == 2 and params["gdb_indices_sha256"] == digest
    assert [i.key for i in spec.load_inputs(params)[0]] == ["qm9_000002", "qm9_000003"]
    assert "gdb_indices" not in spec.resolve_params({})  # a full build's parameters are unchanged
    with pytest.raises(ValueError, match="differs from gdb_indices_sha256"):
        spec.resolve_params({"gdb_indices": str(f), "gdb_indices_sha256": "0" * 64})
    for text, match in (("1\nx2\n", r"idx.txt:2: expected a gdb index"), ("1\n1\n", "repeats line 1"),
                        ("# nothing\n", "no gdb index selected"), ("0\n", "positive integer")):
        f.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_gdb_index_file(f)
    f.write_text("1\n2\n")
    with pytest.raises(ValueError, match="second column"):
        read_gdb_index_file(f, split="test")
    f.write_text("1\n999999\n")  # beyond QM9; also the uncharacterised ones are not in qm9pack
    with pytest.raises(ValueError, match="not among the 130,831 QM9 molecules.*999999"):
        spec.load_inputs(spec.resolve_params({"gdb_indices": str(f)}))
    with pytest.raises(FileNotFoundError, match="no such file"):
        spec.resolve_params({"gdb_indices": str(tmp_path / "missing.txt")})


def test_cli_refuses_an_unknown_gdb_index_with_one_line(tmp_path, capsys):
    from builders.__main__ import main

    f = tmp_path / "idx.txt"
    f.write_text("5\n999999\n")
    assert main(["build", "qm9-hf-density", "--gdb-indices", str(f), "--root", str(tmp_path), "--quiet"]) == 2
    assert "999999" in capsys.readouterr().err
    assert main(["build", "qm9-hf-density", "--gdb-split", "test", "--root", str(tmp_path), "--quiet"]) == 2


# --- density-reconstruction, qm9 variant ---------------------------------------------------------

def test_density_qm9_table_covers_the_qm9_small_test_split():
    table, _ = pd_.load_density_qm9()
    small, _ = read_small_split_file()
    assert sorted(r["gdb_index"] for r in table.values()) == small["test"].tolist()
    for key, r in table.items():
        assert key == f"qm9_{r['gdb_index']:06d}" and r["rhf_converged"] and r["n_electrons"] % 2 == 0
        assert -1000 < r["rhf_energy_hartree"] < 0 and len(r["inchikey"]) == 27


def test_qm9_density_build_of_pinned_molecules_matches_the_table(tmp_path):
    """The builder, restricted to three pinned test molecules through the same kind of key file,
    reproduces their pinned RHF energies (1e-6 Ha) and electron counts; the manifest records it."""
    pytest.importorskip("pyscf")
    from builders.format.build import build_release
    from builders.format.manifest import release_dir
    from builders.format.registry import get_release

    table, _ = pd_.load_density_qm9()
    pick = sorted(table.values(), key=lambda r: (r["n_ao"], r["gdb_index"]))[:3]
    f = tmp_path / "three.txt"
    f.write_text("".join(f"{r['gdb_index']}\ttest\n" for r in pick))
    spec = get_release("qm9-hf-density")
    manifest = build_release(spec, tmp_path, {"gdb_indices": str(f), "gdb_split": "test"}, workers=1, progress=False)
    p = manifest["parameters"]
    assert p["gdb_indices"] == str(f) and p["gdb_split"] == "test" and p["n_gdb_indices"] == 3
    assert manifest["splits"]["test"]["samples"] == 3 and manifest["failures"]["total"] == 0
    sub = {r["key"]: r for r in pick}
    assert pd_.verify_qm9_density_release(release_dir(tmp_path, spec.name), table=sub) == []
    # a wrong pin is caught
    wrong = {k: {**r, "rhf_energy_hartree": r["rhf_energy_hartree"] + 2e-6} for k, r in sub.items()}
    assert len(pd_.verify_qm9_density_release(release_dir(tmp_path, spec.name), table=wrong)) == 3


def test_qm9_density_params_select_the_1000_test_molecules():
    from builders.format.registry import get_release

    spec = get_release("qm9-hf-density")
    params = spec.resolve_params(pd_.qm9_density_params())
    assert params["n_gdb_indices"] == 1000 and params["gdb_indices_sha256"] == SMALL_SPLIT_SHA256
    assert params["grid_shape"] == [128, 128, 128] and params["basis"] == "sto-3g" and not params["grid"]
    keys = [i.key for i in spec.load_inputs(params)[0]]
    assert keys == sorted(pd_.load_density_qm9()[0])


# --- density-reconstruction, pubchem variant -----------------------------------------------------

def test_density_pubchem_records_are_test_split_and_self_consistent():
    from builders.density.frame import seed_frame
    from builders.format.splits import assign_split

    records, _ = pd_.load_density_pubchem()
    assert 190 <= len(records) <= 200 and len({r["key"] for r in records}) == len(records)
    assert len({r["inchikey"] for r in records}) == len(records)
    lines = [int(r["key"].split("_")[1]) for r in records]
    assert lines == sorted(lines)
    for r in records:
        assert assign_split(r["inchikey"]) == "test" and r["split"] == "test"
        z = np.asarray(r["atomic_numbers"])
        pos = np.asarray(r["positions_angstrom"], np.float64)
        assert pos.shape == (len(z), 3) and int(z.sum()) == r["n_electrons"]
        frame = seed_frame(pos, margin_bohr=3.0, shape=(128, 128, 128))
        assert np.array_equal(frame["grid_origin"], np.asarray(r["grid_origin_bohr"]))
        assert np.array_equal(np.diag(frame["grid_axes"]), np.asarray(r["grid_step_bohr"]))
        assert r["grid_shape"] == [128, 128, 128]


def test_pubchem_records_rebuild_by_rhf_to_the_pinned_energy(tmp_path):
    pytest.importorskip("pyscf")
    records, _ = pd_.load_density_pubchem()
    by_size = sorted(records, key=lambda r: (r["n_ao"], r["key"]))
    few = by_size[:2] + [by_size[len(by_size) // 2]]  # two small ones and a typical one (~58 AOs)
    for rec in few:
        s = pd_.rebuild_pubchem_sample(rec)
        assert s["__key__"] == rec["key"]
        assert abs(s["meta"]["rhf_energy_hartree"] - rec["rhf_energy_hartree"]) <= 1e-6
        assert s["meta"]["n_electrons"] == rec["n_electrons"] and s["meta"]["inchikey"] == rec["inchikey"]
        np.testing.assert_array_equal(s["positions"], np.asarray(rec["positions_angstrom"]))
    wrong = {**few[0], "rhf_energy_hartree": few[0]["rhf_energy_hartree"] + 1e-5}
    with pytest.raises(pd_.PinnedDataError, match="differs from the pinned"):
        pd_.rebuild_pubchem_sample(wrong)
    # cache: built once, streamed back verified; a changed cache file is refused
    folder = pd_.ensure_pubchem_density(tmp_path / "cache", records=few[:2], progress=False)
    got = list(pd_.iter_pubchem_density(folder, records=few[:2]))
    assert [s["__key__"] for s in got] == [r["key"] for r in few[:2]]
    assert got[0]["density_matrix"].dtype == np.float32 and "meta" in got[0]
    path = folder / f"{few[0]['key']}.tar"
    data = bytearray(path.read_bytes())
    data[-2000] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(pd_.PinnedDataError, match="changed since it was built"):
        list(pd_.iter_pubchem_density(folder, records=few[:2]))


# --- qm9-tensor ----------------------------------------------------------------------------------

def test_qm9_tensor_table_is_traceless_and_covers_qm9_small():
    t, _ = pd_.load_qm9_tensor()
    small, _ = read_small_split_file()
    assert t["gdb_index"].tolist() == sorted(int(i) for v in small.values() for i in v)
    split_of = {int(i): s for s, v in small.items() for i in v}
    assert [split_of[int(g)] for g in t["gdb_index"]] == t["split"].tolist()
    assert t["dipole_debye"].shape == (6500, 3) and t["quadrupole_debye_angstrom"].shape == (6500, 6)
    q = pd_.quadrupole_matrix(t["quadrupole_debye_angstrom"])
    assert np.abs(np.trace(q, axis1=-2, axis2=-1)).max() < 5e-6


def _qm9_geometry(gdb):
    from builders.sources import load_qm9

    d = load_qm9()
    row = int(np.searchsorted(d["index"], gdb))
    a, b = d["offsets"][row], d["offsets"][row + 1]
    return d["z"][a:b], d["pos"][a:b]


def test_qm9_tensor_values_are_rhf_on_the_qm9_geometry_and_match_pyscf():
    pytest.importorskip("pyscf")
    from builders.density.rhf import run_rhf

    t, _ = pd_.load_qm9_tensor()
    rows = {int(g): i for i, g in enumerate(t["gdb_index"])}
    for gdb in sorted(rows)[:3]:
        z, pos = _qm9_geometry(gdb)
        out = run_rhf(z, pos)
        mu, theta = pd_.multipoles(z, pos, out["density_matrix_full"])
        np.testing.assert_allclose(mu, out["dipole_debye"], atol=1e-9)
        mol = out["mol"]
        centre = mol.atom_charges() @ mol.atom_coords() / mol.atom_charges().sum()
        np.testing.assert_allclose(theta, out["mf"].quad_moment(origin=centre, verbose=0), atol=1e-9)
        np.testing.assert_allclose(t["dipole_debye"][rows[gdb]], mu, atol=1e-4)
        np.testing.assert_allclose(t["quadrupole_debye_angstrom"][rows[gdb]], pd_.quadrupole_components(theta), atol=1e-4)


def test_rotating_a_molecule_rotates_its_dipole_and_quadrupole():
    pytest.importorskip("pyscf")
    from scipy.spatial.transform import Rotation

    from builders.density.rhf import run_rhf

    z, pos = _qm9_geometry(19)  # acetamide, a dipole and a full quadrupole
    mu, theta = pd_.multipoles(z, pos, run_rhf(z, pos)["density_matrix_full"])
    rot = Rotation.from_euler("xyz", [0.3, 1.1, -0.7]).as_matrix()
    moved = pos @ rot.T + np.array([1.5, -2.0, 0.7])  # rotated and translated
    mu2, theta2 = pd_.multipoles(z, moved, run_rhf(z, moved)["density_matrix_full"])
    np.testing.assert_allclose(mu2, rot @ mu, atol=1e-6)
    np.testing.assert_allclose(theta2, rot @ theta @ rot.T, atol=1e-6)
    assert np.linalg.norm(mu) > 1.0 and np.abs(theta).max() > 1.0
