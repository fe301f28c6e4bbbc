"""The qm9 task: labels, the split file, the runner with a simple baseline and a user model."""
from __future__ import annotations

import csv
import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks.qm9 import TARGETS, load_qm9, read_split_file, split_file_bytes
from benchmarks.tasks import get_task


# MoleculeNet's column names for our targets (gdb9.sdf.csv)
MOLECULENET_COLUMNS = {"mu": "mu", "alpha": "alpha", "homo": "homo", "lumo": "lumo", "gap": "gap", "r2": "r2",
                       "zpve": "zpve", "u0": "u0", "u298": "u298", "h298": "h298", "g298": "g298", "cv": "cv"}


@pytest.fixture(scope="module")
def qm9():
    return load_qm9()


def test_all_130831_molecules_and_known_labels(qm9):
    assert len(qm9["index"]) == 130_831 and qm9["targets"].shape == (130_831, 12)
    row = {int(g): i for i, g in enumerate(qm9["index"])}
    methane = qm9["targets"][row[1]]
    assert methane[TARGETS.index("u0")] == pytest.approx(-40.47893, abs=1e-9)
    assert methane[TARGETS.index("alpha")] == pytest.approx(13.21)
    water = qm9["targets"][row[3]]
    assert water[TARGETS.index("mu")] == pytest.approx(1.8511) and water[TARGETS.index("homo")] == pytest.approx(-0.2928)
    a, b = qm9["offsets"][row[1]], qm9["offsets"][row[1] + 1]
    assert sorted(qm9["z"][a:b].tolist()) == [1, 1, 1, 1, 6]
    d = np.linalg.norm(qm9["pos"][a:b][1:] - qm9["pos"][a:b][0], axis=1)
    assert np.allclose(d, 1.0919, atol=2e-3)  # C-H bond of methane, Angstrom


def test_labels_equal_the_real_moleculenet_csv(qm9):
    path = Path(__file__).parent / "data" / "moleculenet" / "qm9_mini.sdf.csv"  # real MoleculeNet file, PROVENANCE.md
    row = {int(g): i for i, g in enumerate(qm9["index"])}
    n = 0
    with open(path) as fh:
        for rec in csv.DictReader(fh):
            gdb = int(rec["mol_id"].split("_")[1])
            if gdb not in row:  # MoleculeNet keeps the 3,054 uncharacterised molecules; qm9pack does not
                continue
            ours = qm9["targets"][row[gdb]]
            for t, col in MOLECULENET_COLUMNS.items():
                assert ours[TARGETS.index(t)] == pytest.approx(float(rec[col]), rel=1e-6, abs=1e-9), (gdb, t)
            n += 1
    assert n >= 15


@pytest.mark.slow
def test_split_file_is_byte_stable_and_no_inchikey_in_two_splits(qm9):
    from builders.format.identity import inchikey_of_smiles
    from builders.format.splits import assign_split

    split, digest = read_split_file()
    assert digest == get_task("qm9").split_sha256
    content = split_file_bytes(qm9["smiles"], qm9["index"])
    assert hashlib.sha256(content).hexdigest() == digest
    sizes = {k: len(v) for k, v in split.items()}
    assert sum(sizes.values()) == 130_831
    assert 0.79 < sizes["train"] / 130_831 < 0.81 and 12_000 < sizes["test"] < 14_000
    seen: dict[str, str] = {}
    split_of = {int(g): s for s, v in split.items() for g in v}
    for g, smi in zip(qm9["index"], qm9["smiles"]):
        inchikey = inchikey_of_smiles(str(smi))
        s = split_of[int(g)]
        assert seen.setdefault(inchikey[:14], s) == s
        assert assign_split(inchikey) == s


def test_quick_run_with_a_user_model_and_results_file(tmp_path, monkeypatch):
    from benchmarks.run import main

    pkg = tmp_path / "usermodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "atoms.py").write_text(textwrap.dedent('''
        import numpy as np

        class AtomCounts:
            """Counts of H, C, N, O, F: a user's own model."""
            def embed(self, batch):
                return np.array([[np.sum(np.asarray(s["atomic_numbers"]) == z) for z in (1, 6, 7, 8, 9)]
                                 for s in batch], dtype=float)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "results"
    assert main(["--model", "usermodels.atoms:AtomCounts", "--task", "qm9", "--quick", "--seeds", "2",
                 "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "qm9-usermodels-atoms-AtomCounts.json").read_text())
    assert doc["task"]["split_sha256"] == get_task("qm9").split_sha256
    assert doc["model"]["import"] == "usermodels.atoms:AtomCounts"
    assert len(doc["metrics"]["per_seed"]) == 2
    pred_path = out / doc["predictions"]["file"]
    assert hashlib.sha256(pred_path.read_bytes()).hexdigest() == doc["predictions"]["sha256"]
    with np.load(pred_path, allow_pickle=False) as f:
        preds = {k: f[k] for k in f.files}
    rescored = get_task("qm9").score(preds, ".", quick=True)
    for a, b in zip(rescored, doc["metrics"]["per_seed"]):
        assert a["avg_mae"] == pytest.approx(b["avg_mae"], rel=1e-12)
    # atom counts carry real signal: on the extensive u0 the heads must beat predicting the
    # train mean (whose MAE on these molecules is ~30 Ha) by far
    from benchmarks.task_qm9 import split_rows

    data = load_qm9()
    rows = split_rows(data, quick=True)
    u0 = TARGETS.index("u0")
    mean_mae = np.abs(data["targets"][rows["test"], u0] - data["targets"][rows["train"], u0].mean()).mean()
    assert doc["metrics"]["aggregate"]["mae"]["u0"]["mean"] < 0.3 * mean_mae
    assert doc["metrics"]["aggregate"]["avg_mae_over_std"]["mean"] < 0.8


def test_unknown_model_and_missing_method_give_clear_errors(capsys):
    from benchmarks.run import main

    assert main(["--model", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["--model", "identity", "--task", "qm9", "--quick"]) == 1
    assert "has no embed()" in capsys.readouterr().err


def test_qm9_small_quick_run_rescores_and_is_a_subset_of_qm9(tmp_path, monkeypatch):
    from benchmarks.run import main
    from benchmarks.task_qm9 import split_rows

    pkg = tmp_path / "usermodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "atoms.py").write_text(textwrap.dedent('''
        import numpy as np

        class AtomCounts:
            def embed(self, batch):
                return np.array([[np.sum(np.asarray(s["atomic_numbers"]) == z) for z in (1, 6, 7, 8, 9)]
                                 for s in batch], dtype=float)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "results"
    assert main(["--model", "usermodels.atoms:AtomCounts", "--task", "qm9-small", "--quick", "--seeds", "1",
                 "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "qm9-small-usermodels-atoms-AtomCounts.json").read_text())
    task = get_task("qm9-small")
    assert doc["task"]["split_sha256"] == task.split_sha256 != get_task("qm9").split_sha256
    assert doc["protocol"]["n"] == {"train": 2000, "valid": 500, "test": 500}
    with np.load(out / doc["predictions"]["file"], allow_pickle=False) as f:
        preds = {k: f[k] for k in f.files}
    assert task.score(preds, tmp_path, quick=True)[0]["avg_mae"] == pytest.approx(
        doc["metrics"]["per_seed"][0]["avg_mae"], rel=1e-12)
    data = load_qm9()
    small, full = split_rows(data, quick=False, small=True), split_rows(data, quick=False)
    for split in ("train", "valid", "test"):
        assert set(small[split]) <= set(full[split])
    assert {k: len(v) for k, v in small.items()} == {"train": 5000, "valid": 500, "test": 1000}


def test_density_models_run_qm9_small_not_qm9():
    from benchmarks.task_qm9 import run

    class Dens:
        input_kind = "density"

        def embed(self, batch):
            raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="density models run qm9-small"):
        run(Dens(), ".", quick=True)
