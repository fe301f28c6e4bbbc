"""NMAE and electron-count error of VQGAN weights on the first N molecules of the density task.

    python -m baselines.vqgan3d.holdout --weights shipped RUN resize:32 ... [--n 100] [--data-root DATA]

A training-progress check, cheaper than the benchmark: the first ``--n`` pinned test molecules of
the density-reconstruction task's qm9 variant (RHF/STO-3G on their QM9 geometries, built and
verified under ``<data root>/densegen-benchmarks/density-qm9-v1-first<N>/`` on first use; for all
1,000 the benchmark's own ``density-qm9-v1/``, which its runs then reuse), each
rendered on the task's full grid (its seed frame, 128^3) and rounded to float16 exactly as the task
does, reconstructed by each weight set given, and scored with the task's own metric functions:
NMAE (%, the task's primary metric), |N_hat - N| (electrons on the same grid) and the MAE of
log(rho + 1). Every weight set sees the same reference grids. The benchmark itself (all 1,000
molecules, every metric, a results file the leaderboard accepts) is
``python -m benchmarks.run --model vqgan3d --task density-reconstruction --variant qm9``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


def reference_grids(data_root: Path, n: int, progress: bool = True) -> Iterator[dict]:
    """Stream the first ``n`` pinned qm9 test molecules as the task's model inputs (one grid in
    memory at a time).

    Yields:
        the task's model input: release fields, ``grid`` (128, 128, 128) float32 holding the
        float16-rounded reference in e/Bohr^3, ``grid_origin`` / ``grid_axes`` in Bohr; in the
        task's order.
    """
    from benchmarks.task_density import (_cache_dir, _model_input, build_qm9_subset, in_pinned_order,
                                         prepare_data, render_reference, task_shape, test_records)
    from builders.format.manifest import release_dir
    from builders.format.reader import iter_release

    records = test_records("qm9", quick=False)[0]
    if n >= len(records):  # the whole variant: the benchmark's own cache, reused by its runs
        prepare_data(data_root, "qm9", quick=False, progress=progress)
        release = release_dir(_cache_dir(data_root, "qm9", False), "qm9-hf-density")
    else:
        records = records[:n]
        release = build_qm9_subset(Path(str(_cache_dir(data_root, "qm9", False)) + f"-first{n}"), records, progress)
    for s in in_pinned_order(iter_release(release, "test"), records, release):
        rho, origin, axes = render_reference(s, task_shape(s, quick=False))
        yield _model_input(s, rho, origin, axes)


class ResizeBound:
    """The resampling alone: each grid trilinearly resized to ``size``^3 and back, as
    :class:`VQGAN3DBenchmarkModel` does around its network; what a perfect network at that input
    size would still lose."""

    def __init__(self, size: int):
        self.size = int(size)

    def reconstruct(self, batch: list[dict]) -> list[np.ndarray]:
        from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

        out = []
        for s in batch:
            rho = torch.as_tensor(np.asarray(s["grid"]), dtype=torch.float32)[None, None]
            small = VQGAN3DBenchmarkModel._resize(rho, (self.size,) * 3)
            out.append(VQGAN3DBenchmarkModel._resize(small, rho.shape[2:])[0, 0].numpy())
        return out


def _model(weights: str):
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

    if weights.startswith("resize:"):
        return ResizeBound(int(weights.split(":", 1)[1]))
    return VQGAN3DBenchmarkModel(weights=None if weights == "shipped" else weights)


def score(weights: list[str], inputs: Iterable[dict], total: int | None = None) -> list[dict]:
    """Reconstruct every input with each weight set and score it (each input is rendered once).

    Args:
        weights: weights or training-run folders, ``"shipped"``, or ``"resize:S"`` for
            :class:`ResizeBound` at S^3.
        inputs: from :func:`reference_grids`.
        total: how many inputs there are (for the progress bar only).
    Returns:
        one row per weight set: {"weights", "molecules", "nmae_percent", "electron_count_error",
        "mae_log1p", "seconds"}: means over molecules (NMAE in %, electron counts in electrons),
        seconds of reconstruction.
    """
    from benchmarks.metrics import density as dm
    from benchmarks.task_density import _as_prediction  # the task's float16 rounding and value checks

    models = [_model(w) for w in weights]
    per = [{"nmae": [], "count": [], "mae": [], "seconds": 0.0} for _ in weights]
    for s in tqdm(inputs, desc="render+reconstruct", unit="molecule", total=total):
        ref = torch.from_numpy(s["grid"].astype(np.float64))
        for model, acc in zip(models, per):
            t0 = time.perf_counter()
            (g,) = model.reconstruct([s])
            acc["seconds"] += time.perf_counter() - t0
            pred = torch.from_numpy(_as_prediction(g, s["grid"].shape, s["__key__"]).astype(np.float64))
            acc["nmae"].append(dm.nmae(pred, ref))
            acc["count"].append(dm.electron_count_error(pred, ref, s["grid_axes"]))
            acc["mae"].append(dm.mae(pred, ref, transform="log1p"))
    return [{"weights": str(w), "molecules": len(acc["nmae"]), "nmae_percent": float(np.mean(acc["nmae"])),
             "electron_count_error": float(np.mean(acc["count"])), "mae_log1p": float(np.mean(acc["mae"])),
             "seconds": round(acc["seconds"], 1)} for w, acc in zip(weights, per)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", nargs="+", required=True,
                    help="weights or training-run folders; 'shipped' = baselines/vqgan3d/weights; "
                         "'resize:32' = the resampling to 32^3 and back alone")
    ap.add_argument("--n", type=int, default=100, help="first N pinned qm9 test molecules (1..1000)")
    ap.add_argument("--data-root", type=Path, default=Path("."))
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if not 1 <= args.n <= 1000:
        print(f"--n: {args.n} is outside 1..1000 (the qm9 variant has 1,000 molecules)", file=sys.stderr)
        return 2
    rows = score(args.weights, reference_grids(args.data_root, args.n), total=min(args.n, 1000))
    print(f"{'weights':50s} {'NMAE %':>8s} {'|dN| e':>8s} {'MAE log1p':>10s} {'s':>7s}")
    for r in rows:
        print(f"{r['weights']:50s} {r['nmae_percent']:8.2f} {r['electron_count_error']:8.3f}"
              f" {r['mae_log1p']:10.5f} {r['seconds']:7.1f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
