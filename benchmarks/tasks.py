"""The task table, as data (like OGB's): every benchmark task, its data, split, protocol and metrics.

A task = data + fixed split (a file with its sha256, or a release whose split is the project's
identity hash) + protocol + metrics. ``python -m benchmarks.run`` and the leaderboard both
read this table; a results file records the task version and split hash it was made with.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task.

    Attributes:
        name: task id used on the command line and in results files.
        version: bumped whenever data, split, protocol or metric definitions change.
        input_kind: what a model consumes: ``"pointcloud"`` or ``"density"`` (or ``"any"``).
        needs: the model methods the task calls (``embed``, ``reconstruct``, ``embed_posed``).
        data: where the samples come from (a release name or ``"qm9pack"``).
        split: how the split is fixed (file + sha256, or the release's identity-hash split).
        split_sha256: sha256 of the split file's content (None for release splits: the
            release manifest's shard hashes pin those).
        primary_metric: the metric the leaderboard ranks by, and whether lower is better.
        metrics: all metrics the task reports.
        min_seeds_leaderboard: seeds a leaderboard entry needs.
        protocol: a sentence on what is trained/evaluated.
        quick: what ``--quick`` uses instead of the full task.
    """

    name: str
    version: str
    input_kind: str
    needs: tuple[str, ...]
    data: str
    split: str
    split_sha256: str | None
    primary_metric: str
    lower_is_better: bool
    metrics: tuple[str, ...]
    min_seeds_leaderboard: int
    protocol: str
    quick: str
    runner: str


TASKS: dict[str, TaskSpec] = {
    "qm9": TaskSpec(
        name="qm9", version="1.0.0", input_kind="any", needs=("embed",), data="qm9pack==1.0.3 (130,831 molecules)",
        split="benchmarks/splits/qm9-split-v1.txt.gz: the project's identity-hash split (80/10/10) of the InChIKey of each QM9 SMILES",
        split_sha256="9bc5593b0ba9711525ef31d0c76724627e94637ef588f76910becbead9bdb809",
        primary_metric="avg_mae", lower_is_better=True,
        metrics=("mae[target] for the 12 targets", "avg_mae (plain average, as the seeds' tables)",
                 "avg_mae_over_std (average of MAE / std of the target on train)"),
        min_seeds_leaderboard=5,
        protocol=("frozen embedding: model.embed -> standardization (train mean/std) -> one MLP head per target "
                  "(L1 loss on standardized targets, Adam 1e-3, early stopping on validation MAE), several seeds"),
        quick="2,000 train / 500 valid / 500 test molecules (the first of each split by gdb index), 1 seed, 30 epochs",
        runner="benchmarks.task_qm9:run",
    ),
    "pointcloud-reconstruction": TaskSpec(
        name="pointcloud-reconstruction", version="1.0.0", input_kind="pointcloud", needs=("reconstruct",),
        data="qm9pack==1.0.3: the QM9 evaluation hold-out = molecules of the qm9 task's test split (13,215), optimized geometries with H",
        split="benchmarks/splits/qm9-split-v1.txt.gz (test part)",
        split_sha256="9bc5593b0ba9711525ef31d0c76724627e94637ef588f76910becbead9bdb809",
        primary_metric="atomwise_mean_deviation", lower_is_better=True,
        metrics=("atomwise_mean_deviation (Angstrom)", "molwise_mean_deviation (Angstrom)",
                 "atomwise_matched_fraction", "molwise_matched_fraction"),
        min_seeds_leaderboard=1,
        protocol=("model.reconstruct -> Gaussian-mixture components; per atom, components within 0.5 in the joint "
                  "space (xyz + type one-hot x 2) are pooled by weight; matched if |pooled weight - 1| < 0.25; "
                  "deviation = |atom - weight-averaged pooled position| (Angstrom)"),
        quick="the first 500 hold-out molecules by gdb index",
        runner="benchmarks.task_pointcloud:run",
    ),
    "density-reconstruction": TaskSpec(
        name="density-reconstruction", version="1.0.0", input_kind="density", needs=("reconstruct",),
        data=("the test split of pubchem-hf-density (default; env DENSEGEN_DENSITY_RELEASE=qm9-hf-density for "
              "qm9-hf-density) under <root>/densegen/; a small one is built first when missing"),
        split="the release's identity-hash split (builders.splits, test part); the manifest's shard sha256s pin it",
        split_sha256=None,
        primary_metric="nmae", lower_is_better=True,
        metrics=("ssim, ms_ssim, psnr (dB), mae on raw and log1p grids",
                 "fid, kid (densegen-slice-rows and densegen-3dnet-v1 features) on raw and log1p grids",
                 "lpips on raw and log1p central slices (null without local VGG16 weights)",
                 "nmae (fraction)", "electron_count_error (electrons; vs the reference grid and vs the true count)",
                 "dipole_error_debye"),
        min_seeds_leaderboard=1,
        protocol=("render each test sample's density (e/Bohr^3, builders.density.render_density) on its own "
                  "frame, rounded to float16 -> model.reconstruct -> metrics on the float16 reconstruction "
                  "(details in benchmarks/task_density.py)"),
        quick="the first 8 test samples on 32^3 grids over the same box",
        runner="benchmarks.task_density:run",
    ),
    "crystal-energy": TaskSpec(
        name="crystal-energy", version="1.1.0", input_kind="any", needs=("embed_posed",),
        data=("the p1-crystals release (>= 2.0.0: undistorted molecules, stationary optima, the authors' filter) "
              "under <root>/densegen/ (train/valid fit the heads, test scores them); a small one is built first when missing"),
        split="the release's identity-hash split by parent molecule (builders.splits); the manifest's shard sha256s pin it",
        split_sha256=None,
        primary_metric="buckingham_mae", lower_is_better=True,
        metrics=("per ladder rung (none, volume, inertia, model) and energy (lj_energy, buckingham_energy, "
                 "mace_lattice_energy_ev when present): mae and pearson_r"),
        min_seeds_leaderboard=3,
        protocol=("[embedding of the molecule posed in the cell frame (model.embed_posed), 12 cell parameters] -> "
                  "standardization -> one MLP head per energy (paper 002's 4-layer head) -> test MAE and Pearson R"),
        quick="at most 2,000 train / 500 valid / 500 test crystals, 30 epochs",
        runner="benchmarks.task_crystal:run",
    ),
}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``.

    Raises:
        KeyError: naming the unknown task and the known ones.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(sorted(TASKS))}") from None
