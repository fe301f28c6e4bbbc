"""The crystal-energy task on a tiny p1-crystals release built from the small conformer release."""
from __future__ import annotations

import json

import numpy as np
import pytest

from builders.build import build_release
from builders.registry import get_release


@pytest.fixture(scope="module")
def crystal_root(small_release):
    _, conformers = small_release
    root = conformers.parent.parent  # the folder holding densegen/ (random-conformers is there)
    spec = get_release("p1-crystals")
    params = spec.resolve_params({"conformers": str(conformers), "n_starts": 2, "n_noisy": 4})
    build_release(spec, root, params, seed=0, limit=40, workers=1, progress=False)
    return root


def test_ladder_quick_run_and_rescoring(crystal_root, tmp_path):
    from benchmarks.run import main
    from benchmarks.tasks import get_task

    task = get_task("crystal-energy")

    out = tmp_path / "results"
    assert main(["--model", "inertia", "--task", "crystal-energy", "--quick", "--seeds", "2",
                 "--root", str(crystal_root), "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "crystal-energy-inertia.json").read_text())
    agg = doc["metrics"]["aggregate"]
    assert set(doc["protocol"]["ladder"]) == {"none", "volume", "inertia", "model"}
    assert doc["protocol"]["energies"][:2] == ["lj_energy", "buckingham_energy"]
    assert doc["release"]["name"] == "p1-crystals" and doc["release"]["shards_sha256"]
    for rung in ("none", "volume", "inertia", "model"):
        for energy in ("lj_energy", "buckingham_energy"):
            assert np.isfinite(agg[rung][energy]["mae"]["mean"])
    # the "model" rung is the evaluated model (inertia here): same features, same seeds, same numbers
    assert agg["model"] == agg["inertia"]
    assert agg["buckingham_mae"] == agg["model"]["buckingham_energy"]["mae"]
    with np.load(out / doc["predictions"]["file"], allow_pickle=False) as f:
        preds = {k: f[k] for k in f.files}
    rescored = task.score(preds, crystal_root, quick=True)
    for a, b in zip(rescored, doc["metrics"]["per_seed"]):
        assert a["volume"]["buckingham_energy"]["mae"] == pytest.approx(b["volume"]["buckingham_energy"]["mae"], rel=1e-12)
    assert task.aggregate(rescored) == doc["metrics"]["aggregate"]
    assert doc["task"]["units"]["buckingham_mae"] == "Buckingham units per molecule"
    bad = dict(preds, keys=preds["keys"][::-1])
    with pytest.raises(ValueError, match="another order"):
        task.score(bad, crystal_root, quick=True)


def test_posed_sample_rotates_the_standard_frame_into_the_cell(crystal_root):
    from scipy.spatial.transform import Rotation

    from benchmarks.task_crystal import posed_sample
    from builders.build import release_dir
    from builders.reader import iter_release

    s = next(iter_release(release_dir(crystal_root, "p1-crystals"), "train"))
    posed = posed_sample(s)
    rot = Rotation.from_rotvec(np.asarray(s["params"])[9:12]).as_matrix()
    assert np.allclose(posed["positions"], np.asarray(s["positions"]) @ rot.T, atol=1e-5)
    d0 = np.linalg.norm(s["positions"][:, None] - s["positions"][None], axis=-1)
    d1 = np.linalg.norm(posed["positions"][:, None] - posed["positions"][None], axis=-1)
    assert np.allclose(d0, d1, atol=1e-4)  # rigid
    assert posed["cell_matrix"].shape == (3, 3)
