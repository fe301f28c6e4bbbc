"""The crystal-energy task on its committed crystal set (benchmarks/data/crystal-energy-v1.npz):
the file is the pinned one, its labels recompute from its own molecules and cell parameters,
its split is the molecules' identity split, and a quick run rescores through the task object."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.task_crystal import DATA_FILE, DATA_SHA256, ENERGIES, load_crystal_set, load_split


@pytest.fixture(scope="module")
def crystals():
    return load_crystal_set()


def test_file_matches_its_pinned_sha256_and_a_changed_file_is_refused(tmp_path):
    import hashlib

    assert hashlib.sha256(DATA_FILE.read_bytes()).hexdigest() == DATA_SHA256
    bad = tmp_path / "crystal-energy-v1.npz"
    data = bytearray(DATA_FILE.read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is not the pinned"):
        load_crystal_set(bad)


def test_labels_recompute_from_the_file(crystals):
    """LJ and Buckingham energies of 300 crystals (optima and copies) recomputed from the stored
    molecule and 12 parameters with the release's own energy code equal the stored labels."""
    from builders.crystals.energy import crystal_energies
    from builders.crystals.molecules import MoleculeBatch

    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(crystals["key"]), 300, replace=False))
    mols_used = sorted(set(crystals["mol"][rows].tolist()))
    off = crystals["mol_offsets"]
    molecules = [(crystals["mol_z"][off[m]:off[m + 1]], crystals["mol_positions"][off[m]:off[m + 1]])
                 for m in mols_used]
    batch = MoleculeBatch.from_molecules(molecules, dtype=torch.float64)
    np.testing.assert_allclose(batch.coords[0, :len(molecules[0][0])].numpy(), molecules[0][1], atol=1e-9)
    index = torch.tensor([mols_used.index(int(m)) for m in crystals["mol"][rows]])
    got = crystal_energies(torch.as_tensor(crystals["params"][rows]), batch, index, cutoff=10.0)
    np.testing.assert_allclose(got["lj"].numpy(), crystals["lj_energy"][rows], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got["buckingham"].numpy(), crystals["buckingham_energy"][rows], rtol=1e-9, atol=1e-9)
    assert crystals["is_optimum"][rows].any() and (~crystals["is_optimum"][rows]).any()


def test_split_is_the_parent_molecules_identity_split(crystals):
    from builders.format.splits import assign_split

    split_of_mol = {m: assign_split(ik) for m, ik in enumerate(crystals["mol_inchikey"])}
    assert all(split_of_mol[int(m)] == s for m, s in zip(crystals["mol"], crystals["split"]))
    counts = {s: int((crystals["split"] == s).sum()) for s in ("train", "valid", "test")}
    assert counts["test"] > 1000 and counts["valid"] > 1000 and counts["train"] > 20_000
    assert len(set(crystals["key"].tolist())) == len(crystals["key"])
    # every stored crystal passes the authors' filter (scaled LJ < 3 in their convention)
    assert (crystals["lj_energy"] < (np.e**3 - 1) / 2).all()
    info = json.loads(str(crystals["source"]))
    assert info["p1_crystals"]["version"] == "2.0.0" and info["molecules"] == len(crystals["mol_key"])


def test_posed_sample_rotates_the_standard_frame_into_the_cell(crystals):
    from scipy.spatial.transform import Rotation

    samples, energies, names = load_split(crystals, "valid", limit=5)
    assert names == list(ENERGIES) and energies.shape == (5, 2)
    row = int(np.flatnonzero(crystals["split"] == "valid")[0])
    m = int(crystals["mol"][row])
    x = crystals["mol_positions"][crystals["mol_offsets"][m]:crystals["mol_offsets"][m + 1]]
    rot = Rotation.from_rotvec(crystals["params"][row, 9:12]).as_matrix()
    posed = samples[0]
    assert posed["__key__"] == str(crystals["key"][row])
    np.testing.assert_allclose(posed["positions"], x @ rot.T, atol=1e-5)
    assert posed["cell_matrix"].shape == (3, 3) and np.linalg.det(posed["cell_matrix"]) > 0


def test_ladder_quick_run_and_rescoring(tmp_path):
    from benchmarks.run import main
    from benchmarks.tasks import get_task

    task = get_task("crystal-energy")
    out = tmp_path / "results"
    assert main(["--model", "inertia", "--task", "crystal-energy", "--quick", "--seeds", "2",
                 "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "crystal-energy-inertia.json").read_text())
    agg = doc["metrics"]["aggregate"]
    assert set(doc["protocol"]["ladder"]) == {"none", "volume", "inertia", "model"}
    assert doc["protocol"]["energies"] == ["lj_energy", "buckingham_energy"]
    assert doc["release"]["sha256"] == DATA_SHA256 and doc["task"]["split_sha256"] == DATA_SHA256
    for rung in ("none", "volume", "inertia", "model"):
        for energy in ("lj_energy", "buckingham_energy"):
            assert np.isfinite(agg[rung][energy]["mae"]["mean"])
    # the "model" rung is the evaluated model (inertia here): same features, same seeds, same numbers
    assert agg["model"] == agg["inertia"]
    assert agg["buckingham_mae"] == agg["model"]["buckingham_energy"]["mae"]
    # the ladder carries signal: the volume rung beats the constant rung on the Buckingham energy
    assert agg["volume"]["buckingham_energy"]["mae"]["mean"] < agg["none"]["buckingham_energy"]["mae"]["mean"]
    with np.load(out / doc["predictions"]["file"], allow_pickle=False) as f:
        preds = {k: f[k] for k in f.files}
    rescored = task.score(preds, tmp_path, quick=True)
    for a, b in zip(rescored, doc["metrics"]["per_seed"]):
        assert a["volume"]["buckingham_energy"]["mae"] == pytest.approx(b["volume"]["buckingham_energy"]["mae"], rel=1e-12)
    assert task.aggregate(rescored) == doc["metrics"]["aggregate"]
    assert doc["task"]["units"]["buckingham_mae"] == "Buckingham units per molecule"
    bad = dict(preds, keys=preds["keys"][::-1])
    with pytest.raises(ValueError, match="another order"):
        task.score(bad, tmp_path, quick=True)
