"""The pointcloud-reconstruction task: decode the QM9 evaluation hold-out (the test split of the
project's identity-hash split, ~13k optimized QM9 geometries) and match the decoded Gaussian
mixture to the input atoms (Mo3ENet protocol, benchmarks.metrics.pointcloud).

Two data variants, ranked separately, as paper 002 trained one model with hydrogens and one
without: ``with-h`` (every atom) and ``heavy-atoms`` (hydrogens removed from each molecule,
both from what the model reads and from the atoms it is matched against)."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .metrics.pointcloud import TYPE_INDEX, match_molecule, summarize
from .qm9 import load_qm9, molecule, without_hydrogens
from .task import Metric, Task, finite_or_none
from .task_qm9 import SPLIT_SHA256, split_rows

QUICK_SIZE = 500
METRICS = ("penalized_mean_deviation", "atomwise_mean_deviation", "molwise_mean_deviation", "atomwise_matched_fraction",
           "molwise_matched_fraction", "paper_atomwise_mean_deviation", "paper_molwise_mean_deviation")
WEIGHT_SUM_TOLERANCE = 1e-3  # relative: a molecule's component weights must sum to its atom count
VARIANTS = ("with-h", "heavy-atoms")  # the atoms of each molecule: all / all but hydrogen


def variant_hydrogens(variant: str | None) -> bool:
    """Whether a variant of the task keeps hydrogens (``with-h``, and the variant-less results
    of task versions before 2.1.0) or removes them (``heavy-atoms``)."""
    return variant != "heavy-atoms"


def _types(z) -> np.ndarray:
    return np.array([TYPE_INDEX[int(a)] for a in z])


def _check_component(c, where: str, n_atoms: int) -> dict:
    pos = np.asarray(c["positions"], np.float64).reshape(-1, 3)
    probs = np.asarray(c["type_probs"], np.float64).reshape(len(pos), -1)
    w = np.asarray(c["weights"], np.float64).reshape(-1)
    if probs.shape[1] != 5 or len(w) != len(pos):
        raise ValueError(f"{where}: reconstruction needs positions (M,3), type_probs (M,5), weights (M,)")
    if not (np.isfinite(pos).all() and np.isfinite(probs).all() and np.isfinite(w).all()):
        raise ValueError(f"{where}: non-finite values in the reconstruction")
    check_weight_sum(w, n_atoms, where)
    return {"positions": pos, "type_probs": probs, "weights": w}


def check_weight_sum(weights: np.ndarray, n_atoms: int, where: str) -> None:
    """Component weights must sum to the molecule's atom count (within WEIGHT_SUM_TOLERANCE,
    relative): extra weight placed away from every atom would otherwise go unpenalized.

    Raises:
        ValueError: naming the molecule and both numbers.
    """
    total = float(np.sum(weights))
    if abs(total - n_atoms) > WEIGHT_SUM_TOLERANCE * n_atoms:
        raise ValueError(f"{where}: component weights sum to {total:.6g}, the molecule has {n_atoms} atoms")


def hold_out_molecule(data: dict, row: int, hydrogens: bool) -> dict:
    """QM9 molecule ``row`` (0-based) as the task shows it to a model and scores it: every atom
    (``hydrogens`` True, the ``with-h`` variant) or its heavy atoms only (``heavy-atoms``);
    ``atomic_numbers`` (N,), ``positions`` (N, 3) float32 Angstrom, ``__key__``."""
    m = molecule(data, int(row))
    return m if hydrogens else without_hydrogens(m)


def match_components(data: dict, rows: np.ndarray, comps: list[dict], hydrogens: bool = True) -> list:
    """Match decoded components to the QM9 atoms of ``rows`` (without hydrogens when
    ``hydrogens`` is False): one ``benchmarks.metrics.pointcloud.MoleculeMatch`` per molecule."""
    matches = []
    for r, c in zip(rows, comps):
        m = hold_out_molecule(data, int(r), hydrogens)
        matches.append(match_molecule(m["positions"].astype(np.float64), _types(m["atomic_numbers"]),
                                      c["positions"], c["type_probs"], c["weights"]))
    return matches


def score_components(data: dict, rows: np.ndarray, comps: list[dict], hydrogens: bool = True) -> dict:
    """Match decoded components to the QM9 atoms of ``rows``; returns the summary metrics (+ counts)."""
    return summarize(match_components(data, rows, comps, hydrogens))


def run(model, quick: bool = False, progress: bool = True, batch_size: int = 128, hydrogens: bool = True) -> dict:
    """Reconstruct the hold-out with ``model.reconstruct``; metrics are deterministic (1 seed).

    Args:
        model: has ``reconstruct(batch)`` (see the README's model protocol).
        quick: the first :data:`QUICK_SIZE` hold-out molecules only.
        hydrogens: False for the ``heavy-atoms`` variant: the model reads, and is matched
            against, each molecule without its hydrogens.
    """
    data = load_qm9(progress=progress)
    rows = split_rows(data, quick=False)["test"]
    if quick:
        rows = rows[:QUICK_SIZE]
    comps = []
    for i in tqdm(range(0, len(rows), batch_size), desc="reconstruct", disable=not progress, unit="batch"):
        batch = [hold_out_molecule(data, int(r), hydrogens) for r in rows[i:i + batch_size]]
        for j, c in enumerate(model.reconstruct(batch)):
            comps.append(_check_component(c, batch[j]["__key__"], len(batch[j]["atomic_numbers"])))
    offsets = np.cumsum([0] + [len(c["weights"]) for c in comps])
    predictions = {
        "gdb_index": data["index"][rows],
        "offsets": offsets.astype(np.int64),
        "positions": np.concatenate([c["positions"] for c in comps]).astype(np.float32),
        "type_probs": np.concatenate([c["type_probs"] for c in comps]).astype(np.float32),
        "weights": np.concatenate([c["weights"] for c in comps]).astype(np.float32),
    }
    # score what is stored (float32), so a re-score of the predictions file gives the same numbers
    metrics = score_predictions(predictions, quick, hydrogens)[0]
    per_seed = [{"seed": 0, **metrics}]
    return {"protocol": {"quick": quick, "n_molecules": int(len(rows)), "seeds": [0],
                         "matching": {"cutoff": 0.5, "weight_tolerance": 0.25, "type_scale": 2.0, "mode": "mean_xyz"},
                         "hydrogens": bool(hydrogens)},
            "per_seed": per_seed, "predictions": predictions, "release": None}


def predicted_components(predictions: dict, quick: bool, hydrogens: bool = True) -> tuple[dict, np.ndarray, list[dict]]:
    """(QM9 data, hold-out rows, per-molecule components) of a predictions file, checked
    against the task's hold-out (order, offsets, sizes; a molecule's weights sum to its atom
    count, without hydrogens when ``hydrogens`` is False).

    Raises:
        ValueError: naming what does not fit.
    """
    data = load_qm9(progress=False)
    rows = split_rows(data, quick=False)["test"]
    if quick:
        rows = rows[:QUICK_SIZE]
    got = np.asarray(predictions["gdb_index"])
    if got.shape != rows.shape or not np.array_equal(got, data["index"][rows]):
        raise ValueError(f"predictions cover {got.shape[0]} molecules, the hold-out has {len(rows)} (or another order)")
    off = np.asarray(predictions["offsets"], np.int64)
    if off.shape != (len(rows) + 1,) or off[0] != 0 or np.any(np.diff(off) < 0):
        raise ValueError("predictions 'offsets' must be (n_molecules + 1,) non-decreasing from 0")
    pos, probs, w = (np.asarray(predictions[k], np.float64) for k in ("positions", "type_probs", "weights"))
    if len(pos) != off[-1] or len(probs) != off[-1] or len(w) != off[-1]:
        raise ValueError(f"predictions hold {len(pos)} components, offsets say {off[-1]}")
    comps = [{"positions": pos[a:b], "type_probs": probs[a:b], "weights": w[a:b]} for a, b in zip(off[:-1], off[1:])]
    sizes = data["offsets"][rows + 1] - data["offsets"][rows]
    if not hydrogens:
        is_h = np.concatenate([[0], np.cumsum(data["z"] == 1)])
        sizes = sizes - (is_h[data["offsets"][rows + 1]] - is_h[data["offsets"][rows]])
    for r, c, n in zip(rows, comps, sizes):
        check_weight_sum(c["weights"], int(n), f"qm9_{int(data['index'][r]):06d}")
    return data, rows, comps


def score_predictions(predictions: dict, quick: bool, hydrogens: bool = True) -> list[dict]:
    """Recompute the metrics from a predictions file against the benchmark's own atoms (all of
    them, or the heavy atoms when ``hydrogens`` is False)."""
    m = score_components(*predicted_components(predictions, quick, hydrogens), hydrogens)
    # a deviation mean is undefined (None in the results) when no atom / molecule matched
    return [{"seed": 0, **{k: finite_or_none(m[k]) for k in METRICS}, "n_atoms": m["n_atoms"],
             "n_molecules": m["n_molecules"]}]


class PointCloudTask(Task):
    """Reconstruct the QM9 hold-out point clouds and match them to the input atoms.

    Primary metric: ``penalized_mean_deviation``, the mean over ALL atoms of the deviation with an
    unmatched atom counted at the 0.5 cutoff (``benchmarks.metrics.pointcloud``): the deviation
    means over matched atoms alone can be won by rebuilding a few atoms well, the matched
    fractions cannot see how close the matched atoms are; this one needs both.

    Variants: ``with-h`` (all atoms) and ``heavy-atoms`` (hydrogens removed from what the
    model reads and from what it is matched against). A model that declares
    ``hydrogens = False`` (a heavy-atom model) runs ``heavy-atoms`` when no variant is asked
    for, and is refused on ``with-h``.
    """

    name = "pointcloud-reconstruction"
    version = "2.1.0"
    input_kind = "pointcloud"
    needs = ("reconstruct",)
    data = ("qm9pack==1.0.3: the QM9 evaluation hold-out = molecules of the qm9 task's test split (13,215), "
            "optimized geometries; variant with-h: every atom, heavy-atoms: hydrogens removed")
    split = "benchmarks/splits/qm9-split-v1.txt.gz (test part)"
    split_sha256 = SPLIT_SHA256
    primary_metric = "penalized_mean_deviation"
    lower_is_better = True
    variants = VARIANTS
    variant_by_model = True
    min_seeds_leaderboard = 1
    default_seeds = 1
    protocol = ("model.reconstruct -> Gaussian-mixture components (weights summing to the atom count); per atom, "
                "components within 0.5 in the joint space (xyz + type one-hot x 2) are pooled by weight; matched if "
                "|pooled weight - 1| < 0.25; deviation = |atom - weight-averaged pooled position| (Angstrom); "
                "primary = that deviation averaged over all atoms, unmatched atoms counted at 0.5")
    quick = "the first 500 hold-out molecules by gdb index"
    prediction_dtypes = {"gdb_index": "iu", "offsets": "iu", "positions": "f", "type_probs": "f", "weights": "f"}
    perfect_scores = {"penalized_mean_deviation": (0.0, 1e-4)}  # Angstrom: identity's bound, needs a reproduction

    def metrics(self) -> dict[str, Metric]:
        from .metrics.catalog import METRICS as CATALOG

        return {name: CATALOG[name] for name in METRICS}

    def variant_for(self, model) -> str:
        """``heavy-atoms`` for a model that declares ``hydrogens = False``, else ``with-h``."""
        return "heavy-atoms" if getattr(model, "hydrogens", True) is False else "with-h"

    def evaluate(self, model, data_root, *, variant, seeds, quick, progress, head, **_):
        if variant_hydrogens(variant) and getattr(model, "hydrogens", True) is False:
            raise ValueError(f"model {getattr(model, 'name', type(model).__name__)!r} reads molecules without "
                             "hydrogens: run it on --variant heavy-atoms")
        return run(model, quick=quick, progress=progress, hydrogens=variant_hydrogens(variant))

    def rescore(self, predictions, data_root, *, variant, quick):
        return score_predictions(predictions, quick, variant_hydrogens(variant))

    def plot(self, doc, predictions, data_root, stem):
        from pathlib import Path

        from .metrics.pointcloud import CUTOFF
        from .plot import histograms

        hydrogens = variant_hydrogens(doc["task"].get("variant"))
        matches = match_components(*predicted_components(predictions, bool(doc["protocol"].get("quick")), hydrogens),
                                   hydrogens)
        atom_dev = np.concatenate([m.deviation[m.matched] for m in matches])
        mol_dev = np.array([np.nanmean(m.deviation) for m in matches if m.all_matched])
        weights = np.concatenate([m.pooled_weight for m in matches])
        path = Path(f"{stem}-deviations.png")
        histograms({"atom deviation (matched atoms)": atom_dev, "molecule mean deviation (fully matched)": mol_dev,
                    "pooled weight (all atoms)": weights},
                   {"atom deviation (matched atoms)": "Angstrom", "molecule mean deviation (fully matched)": "Angstrom",
                    "pooled weight (all atoms)": "weight (1 = one atom; matched within 0.25)"},
                   f"{self.name}: {doc['model']['name']}, {len(matches):,} molecules, "
                   f"{int(sum(m.matched.sum() for m in matches)):,} of {len(weights):,} atoms matched", path,
                   marks={"atom deviation (matched atoms)": CUTOFF, "pooled weight (all atoms)": 1.0})
        return [path]
