"""qm9-hf-density built end to end on the first QM9 molecules: the gdb-index lookup of each
input's geometry, the attached QM9 labels, RHF/STO-3G on the QM9 geometry, verify."""
from __future__ import annotations

import numpy as np
import pytest

from builders.format.build import build_release
from builders.format.manifest import release_dir
from builders.format.reader import iter_release
from builders.format.registry import get_release
from builders.format.verify import verify_release

pyscf = pytest.importorskip("pyscf")

# The first three QM9 molecules and their published labels (QM9 / MoleculeNet units).
KNOWN = {
    "qm9_000001": {"smiles": "C", "z": [6, 1, 1, 1, 1], "mu": 0.0, "alpha": 13.21, "homo": -0.3877,
                   "u0": -40.47893, "cv": 6.469},
    "qm9_000002": {"smiles": "N", "z": [7, 1, 1, 1], "mu": 1.6256, "alpha": 9.46, "homo": -0.257,
                   "u0": -56.525887, "cv": 6.316},
    "qm9_000003": {"smiles": "O", "z": [8, 1, 1], "mu": 1.8511, "alpha": 6.31, "homo": -0.2928,
                   "u0": -76.404702, "cv": 6.002},
}


@pytest.fixture(scope="module")
def qm9_density(tmp_path_factory):
    root = tmp_path_factory.mktemp("qm9density")
    spec = get_release("qm9-hf-density")
    manifest = build_release(spec, root, {}, limit=3, workers=1, progress=False)
    return manifest, release_dir(root, spec.name)


def samples(out):
    return {s["__key__"]: s for split in ("train", "valid", "test") for s in iter_release(out, split)}


def test_qm9_geometries_and_labels_are_attached_by_gdb_index(qm9_density):
    from builders.sources import load_qm9

    manifest, out = qm9_density
    assert manifest["failures"]["total"] == 0 and verify_release(out) == []
    got = samples(out)
    assert set(got) == set(KNOWN)
    data = load_qm9()
    for key, known in KNOWN.items():
        s, meta = got[key], got[key]["meta"]
        gdb = int(key.split("_")[1])
        assert meta["qm9_index"] == gdb and meta["smiles"] == known["smiles"]
        assert s["atomic_numbers"].tolist() == known["z"]
        row = int(np.flatnonzero(data["index"] == gdb)[0])
        np.testing.assert_array_equal(s["positions"], data["pos"][data["offsets"][row]:data["offsets"][row + 1]])
        for target in ("mu", "alpha", "homo", "u0", "cv"):
            assert meta[f"qm9_{target}"] == pytest.approx(known[target], abs=1e-9), (key, target)
        assert meta["geometry_source"] == "input" and meta["n_electrons"] == 10


def test_rhf_energy_is_pyscf_on_the_qm9_geometry(qm9_density):
    from pyscf import gto, scf

    _, out = qm9_density
    for key, s in samples(out).items():
        mol = gto.M(atom=[(int(z), tuple(p)) for z, p in zip(s["atomic_numbers"], s["positions"])],
                    basis="sto-3g", unit="Angstrom", verbose=0)
        mf = scf.RHF(mol)
        mf.conv_tol = 1e-10
        energy = mf.kernel()
        assert s["meta"]["rhf_converged"]
        assert s["meta"]["rhf_energy_hartree"] == pytest.approx(energy, abs=1e-7), key


def test_card_code_runs(qm9_density):
    from .test_docs import code_blocks, run_python, user_env

    _, out = qm9_density
    root = out.parent.parent
    blocks = [code for lang, code, _ in code_blocks(out / "README.md") if lang == "python"]
    assert blocks
    for n, code in enumerate(blocks):
        run_python(code, root, user_env(root), f"qm9_density_card_{n}")
