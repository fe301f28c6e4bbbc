"""The qm9 task: frozen embedding -> one MLP head per target -> per-target MAE over seeds."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .heads import HEADS, fit_heads
from .qm9 import TARGET_UNITS, TARGETS, load_qm9, molecule, read_split_file
from .task import Metric, Task

SPLIT_SHA256 = "9bc5593b0ba9711525ef31d0c76724627e94637ef588f76910becbead9bdb809"  # qm9-split-v1.txt.gz content

QUICK_SIZES = {"train": 2000, "valid": 500, "test": 500}
QUICK_EPOCHS = 30


def split_rows(data: dict, quick: bool, small: bool = False) -> dict:
    """Row numbers (into ``load_qm9()`` arrays) of each split: the qm9 split file, or with
    ``small`` the qm9-small key file, each checked against its pinned sha256.

    Raises:
        ValueError: if a split file's hash differs from the pinned one.
    """
    if small:
        from .qm9 import read_small_split_file

        split, _ = read_small_split_file()  # refuses a file whose sha256 is not the pinned one
    else:
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
DENSITY_CACHE = "densegen-benchmarks/qm9-small-v1"  # under the data root: the densities density models embed


def small_density_release(data_root, progress: bool = True) -> Path:
    """The qm9-hf-density release of all 6,500 qm9-small molecules under
    ``<data_root>/densegen-benchmarks/qm9-small-v1/`` (built on first use: RHF/STO-3G on the
    QM9 geometries, ~0.5 CPU-s per molecule, resumable), every sample's identity checked
    against the key file.

    Raises:
        ValueError: when the release holds other molecules than qm9-small's.
    """
    from builders.format.build import build_release
    from builders.format.manifest import is_finished_release, release_dir
    from builders.format.reader import read_manifest
    from builders.format.registry import get_release

    from .qm9 import SMALL_SPLIT_FILE, SMALL_SPLIT_SHA256

    root = Path(data_root) / DENSITY_CACHE
    path = release_dir(root, DENSITY_RELEASE)
    params = {"gdb_indices": str(SMALL_SPLIT_FILE), "gdb_indices_sha256": SMALL_SPLIT_SHA256}
    if not is_finished_release(path):
        if progress:
            print(f"qm9-small: building the densities density models embed (6,500 RHF/STO-3G runs) under {root} "
                  f"(first use; resumable)", flush=True)
        spec = get_release(DENSITY_RELEASE)
        build_release(spec, root, spec.resolve_params(params), workers=max(1, min(2, os.cpu_count() or 1)),
                      progress=progress)
    manifest = read_manifest(path)
    if manifest.parameters.get("gdb_indices_sha256") != SMALL_SPLIT_SHA256:
        raise ValueError(f"{path} was not built from the qm9-small key file; delete it to rebuild")
    return path


def embed_density_release(model, path: Path, progress: bool = True, batch_size: int = 16) -> dict:
    """Embeddings of every sample of a qm9-hf-density release, by gdb index."""
    from builders.format.reader import iter_release, read_manifest

    manifest = read_manifest(path)
    out: dict[int, np.ndarray] = {}
    for split in manifest.split_names:
        batch: list[dict] = []
        samples = tqdm(iter_release(path, split), total=manifest.samples(split), desc=f"embed {split}", disable=not progress)
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


def run(model, data_root, seeds: int = 3, quick: bool = False, head: str = "paper000", progress: bool = True,
        small: bool = False) -> dict:
    """Run the qm9 task (``small``: qm9-small); returns protocol, per-seed metrics and predictions.

    Point-cloud (and descriptor) models embed the QM9 geometries. Density models
    (``input_kind == "density"``) run qm9-small only: they embed the RHF/STO-3G densities of its
    6,500 molecules (:func:`small_density_release`, built under ``data_root`` on first use).

    Raises:
        ValueError: a density model on the full qm9 task.
    """
    data = load_qm9(progress=progress)
    rows = split_rows(data, quick, small=small)
    train_std = data["targets"][rows["train"]].std(0)
    if getattr(model, "input_kind", "any") == "density":
        if not small:
            raise ValueError("density models run qm9-small (its 6,500 molecules' densities are built on first "
                             "use); embedding the 130,831 molecules of qm9 as densities does not fit a CPU")
        by_index = embed_density_release(model, small_density_release(data_root, progress), progress=progress)
        missing = [int(g) for v in rows.values() for g in data["index"][v] if int(g) not in by_index]
        if missing:
            raise ValueError(f"the qm9-small densities lack {len(missing)} molecules (first gdb {missing[0]})")
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
                     "n": {k: int(len(v)) for k, v in rows.items()}, "embedding_dim": int(emb["train"].shape[1]),
                     "targets": list(TARGETS), "loss": "L1 on standardized targets"},
        "per_seed": per_seed,
        "predictions": {"gdb_index": data["index"][rows["test"]], "y_pred": np.stack(preds),
                        "targets": np.array(TARGETS)},
        "release": None,
    }


def score_predictions(predictions: dict, quick: bool, small: bool = False) -> list[dict]:
    """Recompute per-seed metrics from a predictions file against the benchmark's own labels
    (what the leaderboard does); the predictions must cover the whole test split, in order."""
    data = load_qm9(progress=False)
    rows = split_rows(data, quick, small=small)
    got = np.asarray(predictions["gdb_index"])
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
    version = "1.1.0"  # 1.1: density models run qm9-small (no partial-release subsets)
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
    prediction_dtypes = {"gdb_index": "iu", "y_pred": "f", "targets": "US"}
    model_predictions = ("y_pred",)
    trained_heads = True
    perfect_scores = {"avg_mae": (0.0, 1e-3)}  # predictions = labels; honest frozen-embedding heads are > 1

    def metrics(self) -> dict[str, Metric]:
        out = {f"mae/{t}": Metric(f"mae/{t}", TARGET_UNITS[t], True, f"mean |prediction - label| of {t} over the test split")
               for t in TARGETS}
        out["avg_mae"] = Metric("avg_mae", "mixed (target units)", True,
                                "plain average of the 12 per-target MAEs in their own units (the seeds' table convention)")
        out["avg_mae_over_std"] = Metric("avg_mae_over_std", "dimensionless", True,
                                         "average over targets of MAE / std of the target on the train split")
        return out

    small = False  # qm9-small: the pinned 5,000/500/1,000 subset

    default_head = "paper000"

    def evaluate(self, model, data_root, *, variant, seeds, quick, progress, head, **_):
        return run(model, data_root, seeds=seeds, quick=quick, head=head, progress=progress, small=self.small)

    def rescore(self, predictions, data_root, *, variant, quick):
        return score_predictions(predictions, quick, small=self.small)

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


class QM9SmallTask(QM9Task):
    """qm9 on a fixed subset (5,000 train / 500 valid / 1,000 test of the qm9 split), for models
    that cannot embed all 130,831 molecules on a CPU, density models among them."""

    name = "qm9-small"
    version = "1.0.0"
    data = ("qm9pack==1.0.3: the 6,500 molecules of benchmarks/splits/qm9-small-v1.txt; density models embed "
            "their RHF/STO-3G densities (qm9-hf-density of those molecules, built under the data root on first use)")
    split = ("benchmarks/splits/qm9-small-v1.txt: per split of the qm9 split, the first 5,000 / 500 / 1,000 gdb "
             "indices by sha256('densegen-qm9-small-v1:<index>')")
    min_seeds_leaderboard = 5
    quick = "the first 2,000 train / 500 valid / 500 test molecules of qm9-small (by gdb index), 30 epochs"
    small = True

    @property
    def split_sha256(self):
        from .qm9 import SMALL_SPLIT_SHA256

        return SMALL_SPLIT_SHA256
