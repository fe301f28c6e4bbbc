"""The qm9 task: frozen embedding -> one MLP head per target -> per-target MAE over seeds."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .heads import HEADS, fit_heads
from .qm9 import TARGET_UNITS, TARGETS, load_qm9, molecule, read_split_file
from .task import Metric, Task

SPLIT_SHA256 = "9bc5593b0ba9711525ef31d0c76724627e94637ef588f76910becbead9bdb809"  # qm9-split-v1.txt.gz content

QUICK_SIZES = {"train": 2000, "valid": 500, "test": 500}
QUICK_EPOCHS = 30


def split_rows(data: dict, quick: bool) -> dict:
    """Row numbers (into ``load_qm9()`` arrays) of each split; the task's split file is checked
    against the sha256 in the task table.

    Raises:
        ValueError: if the split file's hash differs from the task table's.
    """
    split, digest = read_split_file()
    if digest != SPLIT_SHA256:
        raise ValueError(f"QM9 split file sha256 {digest} differs from the pinned {SPLIT_SHA256}")
    row_of = {int(g): i for i, g in enumerate(data["index"])}
    rows = {k: np.array([row_of[int(g)] for g in v], np.int64) for k, v in split.items()}
    if quick:
        rows = {k: v[: QUICK_SIZES[k]] for k, v in rows.items()}
    return rows


def embed_rows(model, data: dict, rows: np.ndarray, batch_size: int = 256, progress: bool = True, desc="embed"):
    """model.embed over QM9 rows in batches -> (n, D) float64."""
    out = []
    for i in tqdm(range(0, len(rows), batch_size), desc=desc, disable=not progress, unit="batch"):
        batch = [molecule(data, int(r)) for r in rows[i:i + batch_size]]
        out.append(np.asarray(model.embed(batch), np.float64))
    emb = np.concatenate(out)
    if not np.isfinite(emb).all():
        raise ValueError("model.embed returned non-finite values")
    return emb


def qm9_metrics(pred: np.ndarray, truth: np.ndarray, train_std: np.ndarray) -> dict:
    """Per-target MAE (target units), their plain average and the average of MAE/std, where
    std is each target's standard deviation over the task's train split."""
    mae = np.abs(pred - truth).mean(0)
    return {"mae": {t: float(m) for t, m in zip(TARGETS, mae)}, "avg_mae": float(mae.mean()),
            "avg_mae_over_std": float((mae / train_std).mean())}


DENSITY_RELEASE = "qm9-hf-density"


def embed_density_release(model, root, progress: bool = True, batch_size: int = 16) -> dict:
    """Embeddings of every sample of the qm9-hf-density release under ``root``, by gdb index.

    Raises:
        FileNotFoundError: with the command that builds the release when it is missing.
    """
    from pathlib import Path

    from builders.build import release_dir
    from builders.reader import iter_release, read_manifest

    path = release_dir(Path(root), DENSITY_RELEASE)
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"density models need the {DENSITY_RELEASE} release at {path}; build (a subset of) it "
                                f"with: python -m builders build {DENSITY_RELEASE} --limit 1000 --root {root}")
    manifest = read_manifest(path)
    out: dict[int, np.ndarray] = {}
    for split, info in manifest["splits"].items():
        batch: list[dict] = []
        samples = tqdm(iter_release(path, split), total=info["samples"], desc=f"embed {split}", disable=not progress)
        for s in samples:
            batch.append(s)
            if len(batch) == batch_size:
                out.update(_embed_batch(model, batch))
                batch = []
        if batch:
            out.update(_embed_batch(model, batch))
    return out


def _embed_batch(model, batch):
    emb = np.asarray(model.embed(batch), np.float64)
    if not np.isfinite(emb).all():
        raise ValueError("model.embed returned non-finite values")
    return {int(s["meta"]["qm9_index"]): e for s, e in zip(batch, emb)}


def run(model, data_root, seeds: int = 3, quick: bool = False, head: str = "paper000", progress: bool = True) -> dict:
    """Run the qm9 task; returns protocol, per-seed metrics, aggregate and predictions.

    Point-cloud (and descriptor) models embed the QM9 geometries. Density models
    (``input_kind == "density"``) embed the samples of the qm9-hf-density release under
    ``data_root``: the task then runs on the QM9 molecules that release holds (in their task
    split), and the results say so (``protocol.subset``)."""
    data = load_qm9(progress=progress)
    rows = split_rows(data, quick)
    train_std = data["targets"][rows["train"]].std(0)  # of the task's train split (before any subset)
    subset = getattr(model, "input_kind", "any") == "density"
    if subset:
        by_index = embed_density_release(model, data_root, progress=progress)
        rows = {k: v[np.isin(data["index"][v], np.fromiter(by_index, np.int64))] for k, v in rows.items()}
        if min(len(v) for v in rows.values()) == 0:
            raise ValueError(f"the {DENSITY_RELEASE} release holds no molecules of some split: "
                             f"{ {k: len(v) for k, v in rows.items()} }; build more of it")
        emb = {k: np.stack([by_index[int(g)] for g in data["index"][v]]) for k, v in rows.items()}
    else:
        emb = {k: embed_rows(model, data, v, progress=progress, desc=f"embed {k}") for k, v in rows.items()}
    y = {k: data["targets"][v] for k, v in rows.items()}
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; heads: {sorted(HEADS)}")
    cfg = HEADS[head]
    if quick:
        from dataclasses import replace

        cfg = replace(cfg, max_epochs=QUICK_EPOCHS, patience=10)
    per_seed, preds = [], []
    for seed in range(seeds):
        fit = fit_heads(emb["train"], y["train"], emb["valid"], y["valid"], emb["test"], cfg, seed,
                        progress=progress, desc=f"heads seed {seed}")
        per_seed.append({"seed": seed, **qm9_metrics(fit["test_pred"], y["test"], train_std),
                         "epochs": fit["epochs"]})
        preds.append(fit["test_pred"])
    return {
        "protocol": {"head": head, "head_config": cfg.to_dict(), "seeds": list(range(seeds)), "quick": quick,
                     "subset": f"molecules of the {DENSITY_RELEASE} release" if subset else None,
                     "n": {k: int(len(v)) for k, v in rows.items()}, "embedding_dim": int(emb["train"].shape[1]),
                     "targets": list(TARGETS), "loss": "L1 on standardized targets"},
        "per_seed": per_seed,
        "predictions": {"gdb_index": data["index"][rows["test"]], "y_pred": np.stack(preds),
                        "targets": np.array(TARGETS)},
        "release": None,
    }


def score_predictions(predictions: dict, quick: bool, subset: bool = False) -> list[dict]:
    """Recompute per-seed metrics from a predictions file against the benchmark's own labels
    (what the leaderboard does). With ``subset`` the predictions may cover part of the test
    split (density models on a partial qm9-hf-density release); otherwise all of it."""
    data = load_qm9(progress=False)
    rows = split_rows(data, quick)
    got = np.asarray(predictions["gdb_index"])
    if subset:
        keep = np.isin(data["index"][rows["test"]], got)
        rows["test"] = rows["test"][keep]
    expected = data["index"][rows["test"]]
    if got.shape != expected.shape or not np.array_equal(got, expected):
        raise ValueError(f"predictions cover {got.shape[0]} molecules, the test split has {expected.shape[0]} "
                         "(or they are in another order)")
    y_pred = np.asarray(predictions["y_pred"], np.float64)
    if y_pred.ndim != 3 or y_pred.shape[1:] != (len(expected), len(TARGETS)):
        raise ValueError(f"y_pred must have shape (seeds, {len(expected)}, {len(TARGETS)}), got {y_pred.shape}")
    truth = data["targets"][rows["test"]]
    train_std = data["targets"][rows["train"]].std(0)
    return [{"seed": s, **qm9_metrics(y_pred[s], truth, train_std)} for s in range(len(y_pred))]


class QM9Task(Task):
    """The 12 QM9 targets from a frozen embedding (see the module docstring)."""

    name = "qm9"
    version = "1.0.0"
    input_kind = "any"
    needs = ("embed",)
    data = "qm9pack==1.0.3 (130,831 molecules)"
    split = ("benchmarks/splits/qm9-split-v1.txt.gz: the project's identity-hash split (80/10/10) of the "
             "InChIKey of each QM9 SMILES")
    split_sha256 = SPLIT_SHA256
    primary_metric = "avg_mae"
    lower_is_better = True
    min_seeds_leaderboard = 5
    default_seeds = 3
    protocol = ("frozen embedding: model.embed -> standardization (train mean/std) -> one MLP head per target "
                "(L1 loss on standardized targets, Adam 1e-3, early stopping on validation MAE), several seeds")
    quick = "2,000 train / 500 valid / 500 test molecules (the first of each split by gdb index), 30 epochs"

    def metrics(self) -> dict[str, Metric]:
        out = {f"mae/{t}": Metric(f"mae/{t}", TARGET_UNITS[t], True, f"mean |prediction - label| of {t} over the test split")
               for t in TARGETS}
        out["avg_mae"] = Metric("avg_mae", "mixed (target units)", True,
                                "plain average of the 12 per-target MAEs in their own units (the seeds' table convention)")
        out["avg_mae_over_std"] = Metric("avg_mae_over_std", "dimensionless", True,
                                         "average over targets of MAE / std of the target on the train split")
        return out

    def run(self, model, data_root, *, variant=None, seeds=None, quick=False, progress=True, head=None, **_):
        self.check_variant(variant)
        out = run(model, data_root, seeds=seeds or self.default_seeds, quick=quick, head=head or "paper000",
                  progress=progress)
        out["aggregate"] = self.aggregate(out["per_seed"])
        return out

    def score(self, predictions, data_root, *, variant=None, quick=False, subset: bool = False):
        self.check_variant(variant)
        return score_predictions(predictions, quick, subset=subset)

    def plot(self, doc, predictions, data_root, stem):
        from pathlib import Path

        from .plot import parity_grid

        data = load_qm9(progress=False)
        row_of = {int(g): i for i, g in enumerate(data["index"])}
        rows = np.array([row_of[int(g)] for g in predictions["gdb_index"]], np.int64)
        truth = data["targets"][rows]
        pred = np.asarray(predictions["y_pred"], np.float64)[0]
        path = Path(f"{stem}-parity.png")
        parity_grid(truth, pred, list(TARGETS), [TARGET_UNITS[t] for t in TARGETS],
                    f"{self.name}: {doc['model']['name']}, seed 0, {len(rows):,} test molecules", path)
        return [path]
