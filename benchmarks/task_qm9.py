"""The qm9 task: frozen embedding -> one MLP head per target -> per-target MAE over seeds."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .heads import HEADS, fit_heads
from .qm9 import TARGETS, load_qm9, molecule, read_split_file
from .tasks import get_task

QUICK_SIZES = {"train": 2000, "valid": 500, "test": 500}
QUICK_EPOCHS = 30


def split_rows(data: dict, quick: bool) -> dict:
    """Row numbers (into ``load_qm9()`` arrays) of each split; the task's split file is checked
    against the sha256 in the task table.

    Raises:
        ValueError: if the split file's hash differs from the task table's.
    """
    task = get_task("qm9")
    split, digest = read_split_file()
    if digest != task.split_sha256:
        raise ValueError(f"QM9 split file sha256 {digest} differs from the task table's {task.split_sha256}")
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
    """Per-target MAE (target units), their plain average and the average of MAE/std."""
    mae = np.abs(pred - truth).mean(0)
    return {"mae": {t: float(m) for t, m in zip(TARGETS, mae)}, "avg_mae": float(mae.mean()),
            "avg_mae_over_std": float((mae / train_std).mean())}


def aggregate_seeds(per_seed: list[dict]) -> dict:
    """mean and std (population, ddof=0; 0 for one seed) across seeds of every metric."""
    def ms(values):
        v = np.asarray(values, np.float64)
        return {"mean": float(v.mean()), "std": float(v.std())}

    return {"mae": {t: ms([s["mae"][t] for s in per_seed]) for t in TARGETS},
            "avg_mae": ms([s["avg_mae"] for s in per_seed]),
            "avg_mae_over_std": ms([s["avg_mae_over_std"] for s in per_seed])}


def run(model, seeds: int = 3, quick: bool = False, head: str = "paper000", progress: bool = True, **_) -> dict:
    """Run the qm9 task; returns protocol, per-seed metrics, aggregate and predictions."""
    data = load_qm9(progress=progress)
    rows = split_rows(data, quick)
    emb = {k: embed_rows(model, data, v, progress=progress, desc=f"embed {k}") for k, v in rows.items()}
    y = {k: data["targets"][v] for k, v in rows.items()}
    cfg = HEADS[head]
    if quick:
        from dataclasses import replace

        cfg = replace(cfg, max_epochs=QUICK_EPOCHS, patience=10)
    per_seed, preds = [], []
    train_std = y["train"].std(0)
    for seed in range(seeds):
        fit = fit_heads(emb["train"], y["train"], emb["valid"], y["valid"], emb["test"], cfg, seed,
                        progress=progress, desc=f"heads seed {seed}")
        per_seed.append({"seed": seed, **qm9_metrics(fit["test_pred"], y["test"], train_std),
                         "epochs": fit["epochs"]})
        preds.append(fit["test_pred"])
    return {
        "protocol": {"head": head, "head_config": cfg.to_dict(), "seeds": list(range(seeds)), "quick": quick,
                     "n": {k: int(len(v)) for k, v in rows.items()}, "embedding_dim": int(emb["train"].shape[1]),
                     "targets": list(TARGETS), "loss": "L1 on standardized targets"},
        "per_seed": per_seed,
        "aggregate": aggregate_seeds(per_seed),
        "predictions": {"gdb_index": data["index"][rows["test"]], "y_pred": np.stack(preds),
                        "targets": np.array(TARGETS)},
    }


def score_predictions(predictions: dict, quick: bool) -> list[dict]:
    """Recompute per-seed metrics from a predictions file against the benchmark's own labels
    (what the leaderboard does)."""
    data = load_qm9(progress=False)
    rows = split_rows(data, quick)
    expected = data["index"][rows["test"]]
    got = np.asarray(predictions["gdb_index"])
    if got.shape != expected.shape or not np.array_equal(got, expected):
        raise ValueError(f"predictions cover {got.shape[0]} molecules, the test split has {expected.shape[0]} "
                         "(or they are in another order)")
    y_pred = np.asarray(predictions["y_pred"], np.float64)
    if y_pred.ndim != 3 or y_pred.shape[1:] != (len(expected), len(TARGETS)):
        raise ValueError(f"y_pred must have shape (seeds, {len(expected)}, {len(TARGETS)}), got {y_pred.shape}")
    truth = data["targets"][rows["test"]]
    train_std = data["targets"][rows["train"]].std(0)
    return [{"seed": s, **qm9_metrics(y_pred[s], truth, train_std)} for s in range(len(y_pred))]
