"""The point-cloud task's two data variants: ``with-h`` scores every QM9 atom, ``heavy-atoms``
removes hydrogens from what the model reads and from what it is matched against; a heavy-atom
model runs ``heavy-atoms`` by default and is refused on ``with-h``."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.qm9 import load_qm9
from benchmarks.task_pointcloud import QUICK_SIZE, hold_out_molecule
from benchmarks.task_qm9 import split_rows
from benchmarks.tasks import get_task

TASK = get_task("pointcloud-reconstruction")


class Identity:
    """Reconstruction = the input atoms, one component each (what it reads, counted)."""

    name = "identity-counting"

    def __init__(self, hydrogens: bool = True):
        self.hydrogens = hydrogens
        self.atoms_read = 0
        self.hydrogens_read = 0

    def reconstruct(self, batch):
        out = []
        for s in batch:
            z = np.asarray(s["atomic_numbers"])
            self.atoms_read += len(z)
            self.hydrogens_read += int((z == 1).sum())
            probs = np.zeros((len(z), 5))
            probs[np.arange(len(z)), [{1: 0, 6: 1, 7: 2, 8: 3, 9: 4}[int(a)] for a in z]] = 1
            out.append({"positions": np.asarray(s["positions"], np.float64), "type_probs": probs,
                        "weights": np.ones(len(z))})
        return out


@pytest.fixture(scope="module")
def quick_rows():
    data = load_qm9()
    return data, split_rows(data, quick=False)["test"][:QUICK_SIZE]


def test_variants_are_declared_and_ranked_separately():
    assert TASK.variants == ("with-h", "heavy-atoms")
    assert TASK.record("heavy-atoms")["variant"] == "heavy-atoms"
    with pytest.raises(ValueError, match="with-h, heavy-atoms"):
        TASK.check_variant("no-hydrogens")


def test_heavy_atoms_variant_shows_and_scores_heavy_atoms_only(quick_rows):
    data, rows = quick_rows
    sizes = data["offsets"][rows + 1] - data["offsets"][rows]
    heavy = sum(int((data["z"][data["offsets"][r]:data["offsets"][r + 1]] != 1).sum()) for r in rows)
    assert 0 < heavy < sizes.sum()
    model = Identity(hydrogens=False)
    out = TASK.run(model, None, variant="heavy-atoms", quick=True, progress=False)
    assert model.hydrogens_read == 0 and model.atoms_read == heavy
    (seed,) = out["per_seed"]
    assert seed["n_atoms"] == heavy and seed["n_molecules"] == QUICK_SIZE
    assert seed["penalized_mean_deviation"] == pytest.approx(0.0, abs=1e-6)
    assert seed["molwise_matched_fraction"] == 1.0
    assert out["protocol"]["hydrogens"] is False
    # a re-score of the stored predictions gives the same numbers
    assert TASK.score(out["predictions"], None, variant="heavy-atoms", quick=True) == out["per_seed"]


def test_with_h_predictions_do_not_score_as_heavy_atoms(quick_rows):
    out = TASK.run(Identity(), None, variant="with-h", quick=True, progress=False)
    assert out["per_seed"][0]["penalized_mean_deviation"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"qm9_\d{6}: component weights sum to .*, the molecule has \d+ atoms"):
        TASK.score(out["predictions"], None, variant="heavy-atoms", quick=True)


def test_heavy_atom_model_defaults_to_heavy_atoms_and_is_refused_on_with_h():
    assert TASK.variant_for(Identity(hydrogens=False)) == "heavy-atoms"
    assert TASK.variant_for(Identity()) == "with-h"
    assert get_task("density-reconstruction").variant_for(Identity(hydrogens=False)) == "qm9"
    with pytest.raises(ValueError, match="reads molecules without hydrogens: run it on --variant heavy-atoms"):
        TASK.run(Identity(hydrogens=False), None, variant="with-h", quick=True, progress=False)


def test_hold_out_molecule_keeps_heavy_atoms_in_order(quick_rows):
    data, rows = quick_rows
    full = hold_out_molecule(data, int(rows[0]), hydrogens=True)
    heavy = hold_out_molecule(data, int(rows[0]), hydrogens=False)
    keep = full["atomic_numbers"] != 1
    assert np.array_equal(heavy["atomic_numbers"], full["atomic_numbers"][keep])
    assert np.array_equal(heavy["positions"], full["positions"][keep])
    assert heavy["__key__"] == full["__key__"]
