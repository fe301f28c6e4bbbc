"""The crystal-energy task (paper 002, section 4.4): predict lattice energies of P1 crystals from
a molecule embedding + the 12 cell parameters.

Embedding ladder: ``none`` (constant), ``volume`` (molecular volume, atom count), ``inertia``
(principal moments + principal axes of the molecule as posed in the cell), and the evaluated
model's ``embed_posed`` of the molecule as posed in the cell frame. Each rung: [embedding,
12 cell parameters] -> standardization -> one MLP head per energy (the qm9 task's heads) ->
test MAE and Pearson R per energy, over seeds. Energies: Lennard-Jones and Buckingham (and the
MACE lattice energy when the release has it). Data: the p1-crystals release under the run's
root (train/valid to fit, test to score), built small first when missing.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .heads import HEADS, fit_heads
from .metrics.regression import mae, pearson_r
from .task import Metric, Task, aggregate_seeds

RELEASE = "p1-crystals"
LADDER = ("none", "volume", "inertia")
ENERGIES = ("lj_energy", "buckingham_energy", "mace_lattice_energy_ev")
QUICK_MAX = {"train": 2000, "valid": 500, "test": 500}
QUICK_EPOCHS = 30
AUTO_CONFORMERS = 150


def release_path(root) -> Path:
    from builders.build import release_dir

    return release_dir(Path(root), RELEASE)


def ensure_release(root, progress: bool = True) -> tuple[Path, dict | None]:
    """The p1-crystals release under ``root`` and, when it had to be built first (small, for
    smoke runs; one line says so), a description of that build (else None)."""
    from builders.build import build_release, release_dir
    from builders.registry import get_release

    from builders.reader import read_manifest

    path = release_path(root)
    if (path / "manifest.json").is_file():
        version = str(read_manifest(path).get("release_version", "0"))
        if int(version.split(".")[0]) < 2:
            raise ValueError(f"{path} is p1-crystals {version}, built from noised conformers with unfiltered copies; "
                             f"the crystal-energy task needs p1-crystals >= 2.0.0: delete it (and a "
                             f"random-conformers release older than 2.0.0 beside it) and run again to rebuild")
        return path, None
    print(f"crystal-energy: no {RELEASE} release under {root}; building a small one "
          f"({AUTO_CONFORMERS} random conformers, then crystals) ...", flush=True)
    rc = get_release("random-conformers")
    if not (release_dir(Path(root), rc.name) / "manifest.json").is_file():
        build_release(rc, Path(root), rc.resolve_params({}), seed=0, limit=AUTO_CONFORMERS, workers=2,
                      progress=progress)
    spec = get_release(RELEASE)
    params = spec.resolve_params({"conformers": str(release_dir(Path(root), rc.name))})
    build_release(spec, Path(root), params, seed=0, workers=2, progress=progress)
    return path, {"release": RELEASE, "random_conformers": AUTO_CONFORMERS, "seed": 0}


def posed_sample(sample: dict) -> dict:
    """The molecule of a crystal sample posed in the cell frame (centroid at the origin):
    positions x_std R(theta)^T, plus ``cell_matrix`` (3, 3) Angstrom."""
    from scipy.spatial.transform import Rotation

    params = np.asarray(sample["params"], np.float64)
    rot = Rotation.from_rotvec(params[9:12]).as_matrix()
    return {"__key__": sample["__key__"], "atomic_numbers": np.asarray(sample["atomic_numbers"]),
            "positions": (np.asarray(sample["positions"], np.float64) @ rot.T).astype(np.float32),
            "cell_matrix": np.asarray(sample["cell"], np.float64), "params": params}


def load_split(path: Path, split: str, limit: int | None = None) -> tuple[list[dict], np.ndarray, list[str]]:
    """(posed samples, energies (n, k), energy names present) of one split."""
    from builders.reader import iter_release

    samples, energies = [], []
    names = None
    for s in iter_release(path, split):
        if names is None:
            names = [e for e in ENERGIES if e in s["meta"]]
        samples.append(posed_sample(s))
        energies.append([s["meta"][e] for e in names])
        if limit is not None and len(samples) >= limit:
            break
    return samples, np.asarray(energies, np.float64).reshape(len(samples), -1), names or []


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


def run(model, data_root, seeds: int = 3, quick: bool = False, head: str = "paper002", progress: bool = True) -> dict:
    """Run the ladder (none, volume, inertia, the model) on the p1-crystals release."""
    from benchmarks.protocol import load_model
    from builders.reader import read_manifest

    path, built = ensure_release(data_root, progress)
    manifest = read_manifest(path)
    limits = QUICK_MAX if quick else {"train": None, "valid": None, "test": None}
    data = {s: load_split(path, s, limits[s]) for s in ("train", "valid", "test")}
    names = data["train"][2]
    if min(len(data[s][0]) for s in data) == 0:
        raise ValueError(f"the {RELEASE} release at {path} has an empty split: "
                         f"{ {s: len(d[0]) for s, d in data.items()} }; build it from more conformers")
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
                     "auto_build": built, "ladder": list(rungs), "energies": names, "features": "[embedding, 12 cell parameters]",
                     "n": {s: len(d[0]) for s, d in data.items()}},
        "release": {"name": RELEASE, "version": manifest["release_version"],
                    "shards_sha256": sorted(sh["sha256"] for sh in manifest["shards"])},
        "per_seed": per_seed,
        "predictions": {"keys": np.array([x["__key__"] for x in data["test"][0]]), "energies": np.array(names),
                        **{f"y_pred_{rung}": np.stack(p) for rung, p in preds.items()}},
    }


def score_predictions(predictions: dict, data_root, quick: bool) -> list[dict]:
    """Recompute per-seed metrics from a predictions file against the labels of the
    p1-crystals release under ``data_root``."""
    path = release_path(data_root)
    samples, truth, names = load_split(path, "test", QUICK_MAX["test"] if quick else None)
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
    version = "1.1.0"
    input_kind = "any"
    needs = ("embed_posed",)
    data = ("the p1-crystals release (>= 2.0.0: undistorted molecules, stationary optima, the authors' filter) "
            "under <data root>/densegen/ (train/valid fit the heads, test scores them); a small one is built first "
            "when missing")
    split = "the release's identity-hash split by parent molecule (builders.splits); the manifest's shard sha256s pin it"
    split_sha256 = None
    primary_metric = "buckingham_mae"
    lower_is_better = True
    min_seeds_leaderboard = 3
    default_seeds = 3
    protocol = ("[embedding of the molecule posed in the cell frame (model.embed_posed), 12 cell parameters] -> "
                "standardization -> one MLP head per energy (paper 002's 4-layer head) -> test MAE and Pearson R")
    quick = "at most 2,000 train / 500 valid / 500 test crystals, 30 epochs"

    def metrics(self) -> dict[str, Metric]:
        units = {"lj_energy": "LJ units (eps = 1) per molecule", "buckingham_energy": "Buckingham units per molecule",
                 "mace_lattice_energy_ev": "eV per molecule"}
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

    def run(self, model, data_root, *, variant=None, seeds=None, quick=False, progress=True, head=None, **_):
        self.check_variant(variant)
        out = run(model, data_root, seeds=seeds or self.default_seeds, quick=quick, head=head or "paper002",
                  progress=progress)
        out["aggregate"] = self.aggregate(out["per_seed"])
        return out

    def score(self, predictions, data_root, *, variant=None, quick=False):
        self.check_variant(variant)
        return score_predictions(predictions, data_root, quick)
