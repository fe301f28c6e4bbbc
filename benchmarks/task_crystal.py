"""The crystal-energy task (paper 002, section 4.4): predict lattice energies of P1 crystals from
a molecule embedding + the 12 cell parameters.

Embedding ladder: ``none`` (constant), ``volume`` (molecular volume, atom count), ``inertia``
(principal moments + principal axes of the molecule as posed in the cell), and the evaluated
model's ``embed_posed`` of the molecule as posed in the cell frame. Each rung: [embedding,
12 cell parameters] -> standardization -> one MLP head per energy (the qm9 task's heads) ->
test MAE and Pearson R per energy, over seeds. Energies: Lennard-Jones and Buckingham lattice
energies per molecule (10 A cutoff; the p1-crystals convention). Data: the committed crystal set
``benchmarks/data/crystal-energy-v1.npz`` (train/valid to fit, test to score), pinned by its
sha256 and checked on every run; ``benchmarks/data/make_crystal_energy.py`` says how it was made.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .heads import HEADS, fit_heads
from .metrics.regression import mae, pearson_r
from .task import Metric, Task, aggregate_seeds

DATA_FILE = Path(__file__).parent / "data" / "crystal-energy-v1.npz"  # see benchmarks/data/make_crystal_energy.py
DATA_SHA256 = "202b47c053065bd0a8c94283cd71f94dd8e671057c9ed0f4e4b5032a16856d37"
LADDER = ("none", "volume", "inertia")
ENERGIES = ("lj_energy", "buckingham_energy")
QUICK_MAX = {"train": 2000, "valid": 500, "test": 500}
QUICK_EPOCHS = 30


def load_crystal_set(path: Path = DATA_FILE) -> dict:
    """The committed crystal set (arrays of ``benchmarks/data/make_crystal_energy.py``), after
    checking its sha256 against :data:`DATA_SHA256`.

    Raises:
        ValueError: naming the file when its sha256 differs (a changed or damaged file).
    """
    import hashlib

    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DATA_SHA256:
        raise ValueError(f"{path}: sha256 {digest} is not the pinned {DATA_SHA256}; restore the committed file")
    import io

    with np.load(io.BytesIO(raw), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def cell_of(params: np.ndarray) -> np.ndarray:
    """(..., 3, 3) cell matrices (rows a, b, c, Angstrom) of (..., 12) crystal parameters."""
    import torch

    from builders.crystals.cell import cell_matrix

    p = torch.as_tensor(np.asarray(params, np.float64))
    return cell_matrix(p[..., 0:3], p[..., 3:6]).numpy()


def posed_sample(sample: dict) -> dict:
    """The molecule of a crystal posed in the cell frame (centroid at the origin): positions
    x_std R(theta)^T (Angstrom), plus ``cell_matrix`` (3, 3) Angstrom and the 12 ``params``."""
    from scipy.spatial.transform import Rotation

    params = np.asarray(sample["params"], np.float64)
    rot = Rotation.from_rotvec(params[9:12]).as_matrix()
    return {"__key__": sample["__key__"], "atomic_numbers": np.asarray(sample["atomic_numbers"]),
            "positions": (np.asarray(sample["positions"], np.float64) @ rot.T).astype(np.float32),
            "cell_matrix": np.asarray(sample["cell"], np.float64), "params": params}


def load_split(data: dict, split: str, limit: int | None = None) -> tuple[list[dict], np.ndarray, list[str]]:
    """(posed samples, energies (n, 2), energy names) of one split of the crystal set, in key order."""
    rows = np.flatnonzero(data["split"] == split)
    if limit is not None:
        rows = rows[:limit]
    off = data["mol_offsets"]
    cells = cell_of(data["params"][rows])
    samples = []
    for r, cell in zip(rows, cells):
        m = int(data["mol"][r])
        a, b = off[m], off[m + 1]
        samples.append(posed_sample({"__key__": str(data["key"][r]), "atomic_numbers": data["mol_z"][a:b],
                                     "positions": data["mol_positions"][a:b], "params": data["params"][r],
                                     "cell": cell}))
    energies = np.stack([data[e][rows] for e in ENERGIES], axis=1)
    return samples, energies, list(ENERGIES)


def embed_posed(model, samples: list[dict], batch_size: int = 128, progress: bool = False, desc: str = "") -> np.ndarray:
    """model.embed_posed over samples in batches -> (n, D)."""
    out = []
    for i in tqdm(range(0, len(samples), batch_size), desc=desc, disable=not progress, unit="batch"):
        out.append(np.asarray(model.embed_posed(samples[i:i + batch_size]), np.float64))
    emb = np.concatenate(out) if out else np.zeros((0, 1))
    if not np.isfinite(emb).all():
        raise ValueError(f"{desc}: embed_posed returned non-finite values")
    return emb


def crystal_metrics(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict:
    """Per energy: MAE (energy units) and Pearson R (None when a prediction is constant)."""
    out = {}
    for j, n in enumerate(names):
        r = pearson_r(pred[:, j], truth[:, j])
        out[n] = {"mae": mae(pred[:, j], truth[:, j]), "pearson_r": r if np.isfinite(r) else None}
    return out


def run(model, seeds: int = 3, quick: bool = False, head: str = "paper002", progress: bool = True) -> dict:
    """Run the ladder (none, volume, inertia, the model) on the committed crystal set."""
    from benchmarks.protocol import load_model

    crystals = load_crystal_set()
    limits = QUICK_MAX if quick else {"train": None, "valid": None, "test": None}
    data = {s: load_split(crystals, s, limits[s]) for s in ("train", "valid", "test")}
    names = data["train"][2]
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; heads: {sorted(HEADS)}")
    cfg = HEADS[head]
    if quick:
        cfg = replace(cfg, max_epochs=QUICK_EPOCHS, patience=10)
    rungs = {name: load_model(name) for name in LADDER}
    rungs["model"] = model
    per_seed, preds = [], {}
    for rung, m in rungs.items():
        feats = {}
        for s, (samples, _, _) in data.items():
            emb = embed_posed(m, samples, progress=progress, desc=f"{rung} {s}")
            cell = np.stack([x["params"] for x in samples])
            feats[s] = np.concatenate([emb, cell], axis=1)
        preds[rung] = []
        for seed in range(seeds):
            fit = fit_heads(feats["train"], data["train"][1], feats["valid"], data["valid"][1], feats["test"], cfg, seed,
                            progress=progress, desc=f"{rung} heads seed {seed}")
            preds[rung].append(fit["test_pred"])
    truth = data["test"][1]
    for seed in range(seeds):
        per_seed.append({"seed": seed, **{rung: crystal_metrics(preds[rung][seed], truth, names) for rung in rungs}})
    return {
        "protocol": {"head": head, "head_config": cfg.to_dict(), "seeds": list(range(seeds)), "quick": quick,
                     "ladder": list(rungs), "energies": names, "features": "[embedding, 12 cell parameters]",
                     "n": {s: len(d[0]) for s, d in data.items()}},
        "release": {"name": DATA_FILE.name, "sha256": DATA_SHA256, "source": json.loads(str(crystals["source"]))},
        "per_seed": per_seed,
        "predictions": {"keys": np.array([x["__key__"] for x in data["test"][0]]), "energies": np.array(names),
                        **{f"y_pred_{rung}": np.stack(p) for rung, p in preds.items()}},
    }


def score_predictions(predictions: dict, quick: bool) -> list[dict]:
    """Recompute per-seed metrics from a predictions file against the committed labels."""
    samples, truth, names = load_split(load_crystal_set(), "test", QUICK_MAX["test"] if quick else None)
    keys = np.asarray(predictions["keys"]).astype(str)
    if keys.shape != (len(samples),) or list(keys) != [s["__key__"] for s in samples]:
        raise ValueError(f"predictions cover {keys.shape[0]} crystals, the test split has {len(samples)} (or another order)")
    if [str(e) for e in np.asarray(predictions["energies"])] != names:
        raise ValueError(f"predictions are for energies {list(predictions['energies'])}, the release has {names}")
    rungs = [k[len("y_pred_"):] for k in predictions if str(k).startswith("y_pred_")]
    y = {r: np.asarray(predictions[f"y_pred_{r}"], np.float64) for r in rungs}
    n_seeds = {v.shape[0] for v in y.values()}
    if len(n_seeds) != 1 or any(v.shape[1:] != truth.shape for v in y.values()):
        raise ValueError(f"y_pred_* must all have shape (seeds, {truth.shape[0]}, {truth.shape[1]})")
    return [{"seed": s, **{r: crystal_metrics(y[r][s], truth, names) for r in rungs}} for s in range(n_seeds.pop())]


RUNGS = (*LADDER, "model")


class CrystalEnergyTask(Task):
    """Lattice energies of P1 crystals from [embedding, 12 cell parameters] (module docstring)."""

    name = "crystal-energy"
    version = "2.0.0"
    input_kind = "any"
    needs = ("embed_posed",)
    data = ("benchmarks/data/crystal-energy-v1.npz: 42,152 P1 crystals (3,995 stationary optima + noisy copies) of "
            "1,000 random conformers, built by p1-crystals 2.0.0 (undistorted molecules, the authors' filter); "
            "committed, pinned by its sha256")
    split = "the project's identity-hash split of each crystal's parent molecule (builders.format.splits), in the file"
    split_sha256 = DATA_SHA256
    primary_metric = "buckingham_mae"
    lower_is_better = True
    min_seeds_leaderboard = 3
    default_seeds = 3
    protocol = ("[embedding of the molecule posed in the cell frame (model.embed_posed), 12 cell parameters] -> "
                "standardization -> one MLP head per energy (paper 002's 4-layer head) -> test MAE and Pearson R")
    quick = "at most 2,000 train / 500 valid / 500 test crystals, 30 epochs"
    prediction_dtypes = {"keys": "US", "energies": "US", "y_pred_*": "f"}
    model_predictions = ("y_pred_model",)  # the ladder rungs (none, volume, inertia) are the benchmark's own
    trained_heads = True
    perfect_scores = {"buckingham_mae": (0.0, 1e-3),  # Buckingham units per molecule; the labels' std is 189
                      "model/buckingham_energy/mae": (0.0, 1e-3)}  # the same, per seed

    def metrics(self) -> dict[str, Metric]:
        units = {"lj_energy": "LJ units (eps = 1) per molecule", "buckingham_energy": "Buckingham units per molecule"}
        out = {}
        for rung in RUNGS:
            for energy in ENERGIES:
                out[f"{rung}/{energy}/mae"] = Metric(f"{rung}/{energy}/mae", units[energy], True,
                                                     f"test MAE of {energy} from the {rung} rung")
                out[f"{rung}/{energy}/pearson_r"] = Metric(f"{rung}/{energy}/pearson_r", "dimensionless", False,
                                                           f"test Pearson R of {energy} from the {rung} rung")
        out["buckingham_mae"] = Metric("buckingham_mae", units["buckingham_energy"], True,
                                       "= model/buckingham_energy/mae (the primary metric)")
        return out

    def aggregate(self, per_seed: list[dict]) -> dict:
        out = aggregate_seeds(per_seed, [k for k in self.metrics() if k != "buckingham_mae"])
        if "buckingham_energy" in out.get("model", {}):
            out["buckingham_mae"] = out["model"]["buckingham_energy"]["mae"]
        return out

    default_head = "paper002"

    def evaluate(self, model, data_root, *, variant, seeds, quick, progress, head, **_):
        return run(model, seeds=seeds, quick=quick, head=head, progress=progress)

    def rescore(self, predictions, data_root, *, variant, quick):
        return score_predictions(predictions, quick)

    def plot(self, doc, predictions, data_root, stem):
        from .plot import parity_grid

        quick = bool(doc["protocol"].get("quick"))
        _, truth, names = load_split(load_crystal_set(), "test", QUICK_MAX["test"] if quick else None)
        rungs = [r for r in RUNGS if f"y_pred_{r}" in predictions]
        pred = np.concatenate([np.asarray(predictions[f"y_pred_{r}"], np.float64)[0] for r in rungs], axis=1)
        units = {"lj_energy": "LJ units", "buckingham_energy": "BH units"}
        path = Path(f"{stem}-parity.png")
        parity_grid(np.tile(truth, (1, len(rungs))), pred, [f"{r}: {e}" for r in rungs for e in names],
                    [units[e] for _ in rungs for e in names],
                    f"{self.name}: {doc['model']['name']}, seed 0, {len(truth):,} test crystals (per molecule)", path)
        return [path]
