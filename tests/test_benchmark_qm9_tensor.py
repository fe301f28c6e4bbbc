"""The qm9-tensor task: pinned RHF/STO-3G dipole and quadrupole targets of qm9-small, a quick
run that rescores through the task object, and the equivariance the task rewards."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.tasks import get_task


def test_targets_are_qm9_small_and_pinned():
    from benchmarks.qm9 import read_small_split_file
    from benchmarks.task_qm9_tensor import load_targets

    targets, digest = load_targets()
    small, _ = read_small_split_file()
    assert digest == get_task("qm9-tensor").split_sha256
    for split, (gdb, y) in targets.items():
        np.testing.assert_array_equal(gdb, small[split])
        assert y.shape == (len(gdb), 9) and np.isfinite(y).all()
        # the quadrupole is traceless
        np.testing.assert_allclose(y[:, 3:6].sum(1), 0.0, atol=5e-6)


def test_quick_run_rescores(tmp_path):
    from benchmarks.run import main

    out = tmp_path / "results"
    assert main(["--model", "inertia", "--task", "qm9-tensor", "--quick", "--seeds", "1", "--out", str(out),
                 "--no-progress"]) == 0
    doc = json.loads((out / "qm9-tensor-inertia.json").read_text())
    assert doc["task"]["units"]["dipole_mae"] == "Debye" and doc["task"]["units"]["quadrupole_mae"] == "Debye*Angstrom"
    with np.load(out / doc["predictions"]["file"], allow_pickle=False) as f:
        preds = {k: f[k] for k in f.files}
    task = get_task("qm9-tensor")
    rescored = task.score(preds, tmp_path, quick=True)
    assert rescored[0]["dipole_mae"] == pytest.approx(doc["metrics"]["per_seed"][0]["dipole_mae"], rel=1e-12)
    assert task.aggregate(rescored) == doc["metrics"]["aggregate"]
    with pytest.raises(ValueError, match="another order"):
        task.score(dict(preds, gdb_index=preds["gdb_index"][::-1]), tmp_path, quick=True)


def test_rotating_the_input_rotates_an_equivariant_embedding():
    """Mo3ENet's embed_posed (shipped weights): its 64 vector channels turn with the molecule,
    its scalars do not change; what the task's heads can read the pose from."""
    from scipy.spatial.transform import Rotation

    from benchmarks.protocol import load_model
    from benchmarks.qm9 import load_qm9, molecule

    model = load_model("mo3enet")
    data = load_qm9()
    batch = [molecule(data, i) for i in (5, 50, 500)]
    rot = Rotation.random(random_state=3).as_matrix()
    turned = [dict(s, positions=(np.asarray(s["positions"], np.float64) @ rot.T).astype(np.float32)) for s in batch]
    a, b = np.asarray(model.embed_posed(batch)), np.asarray(model.embed_posed(turned))
    va, vb = a[:, :192].reshape(3, 64, 3), b[:, :192].reshape(3, 64, 3)
    np.testing.assert_allclose(vb, va @ rot.T, atol=2e-3 * np.abs(va).max())
    np.testing.assert_allclose(b[:, 192:], a[:, 192:], atol=2e-3 * np.abs(a[:, 192:]).max())
    assert np.abs(va).max() > 1e-3
