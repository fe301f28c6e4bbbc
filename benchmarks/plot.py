"""``python -m benchmarks.plot RESULTS.json [--out DIR] [--data-root DIR]``: figures of a results file.

The task named in the results (``Task.plot``) decides what to draw from the predictions file
next to the results and its own labels:

* regression tasks (qm9, crystal-energy): parity plots, prediction vs label per target, with
  the MAE and its unit;
* pointcloud-reconstruction: histograms of the atomwise and molecule-wise deviations (paper
  002, Fig. 4) and of the pooled weights;
* density-reconstruction: original vs reconstruction vs difference, central slices of the
  first samples on log(rho + 1) (paper 000, Fig. 3).

This module holds the drawing functions (matplotlib, Agg backend); the tasks call them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from builders.format.plotting import headless_pyplot


def parity_grid(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], units: list[str], title: str,
                path: Path, max_points: int = 20_000) -> Path:
    """Parity plots (prediction vs label), one panel per target.

    Args:
        y_true, y_pred: (n, k) labels and predictions, in the targets' units.
        names, units: (k,) target names and units (panel titles and axis labels).
        title: figure title.
        path: PNG to write.
        max_points: at most this many points per panel (an evenly spaced subset).
    Returns:
        ``path``.
    """
    plt = headless_pyplot()
    k = y_true.shape[1]
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    step = max(1, len(y_true) // max_points)
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= k:
            ax.axis("off")
            continue
        t, p = y_true[::step, j], y_pred[::step, j]
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="#8c959f", lw=1)
        ax.scatter(t, p, s=3, alpha=0.4, color="#3b82c4", linewidths=0)
        mae = float(np.abs(y_pred[:, j] - y_true[:, j]).mean())
        ax.set_title(f"{names[j]}  MAE {mae:.4g} {units[j]}", fontsize=9)
        ax.set_xlabel(f"label ({units[j]})", fontsize=8)
        ax.set_ylabel(f"prediction ({units[j]})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def histograms(series: dict[str, np.ndarray], xlabel: dict[str, str], title: str, path: Path,
               bins: int = 60, marks: dict[str, float] | None = None) -> Path:
    """One histogram panel per named series (finite values only), with optional vertical marks
    (e.g. a matching cutoff).

    Returns:
        ``path``.
    """
    plt = headless_pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.3), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        v = np.asarray(values, np.float64)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, color="#3b82c4")
        if marks and name in marks:
            ax.axvline(marks[name], color="#cf222e", lw=1, ls="--")
        ax.set_title(f"{name} (n = {len(v):,})", fontsize=9)
        ax.set_xlabel(xlabel.get(name, ""), fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def density_slices(pairs: list[tuple[str, np.ndarray, np.ndarray]], title: str, path: Path) -> Path:
    """Central slices (along each axis) of reference and reconstruction, and their difference,
    on log(rho + 1).

    Args:
        pairs: (sample key, reference (X, Y, Z), reconstruction (X, Y, Z)) in e/Bohr^3.
    Returns:
        ``path``.
    """
    plt = headless_pyplot()
    fig, axes = plt.subplots(len(pairs), 9, figsize=(14, 1.8 * len(pairs) + 0.6), squeeze=False)
    for row, (key, ref, rec) in enumerate(pairs):
        r, p = np.log1p(np.clip(ref, 0, None)), np.log1p(np.clip(rec, -0.999, None))
        vmax = float(r.max()) or 1.0
        dmax = float(np.abs(p - r).max()) or 1e-12
        for a in range(3):
            sl = [slice(None)] * 3
            sl[a] = r.shape[a] // 2
            for c, (img, cmap, lim) in enumerate(((r, "viridis", (0, vmax)), (p, "viridis", (0, vmax)),
                                                  (p - r, "coolwarm", (-dmax, dmax)))):
                ax = axes[row][3 * a + c]
                ax.imshow(img[tuple(sl)].T, origin="lower", cmap=cmap, vmin=lim[0], vmax=lim[1])
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"{'xyz'[a]}-slice {('reference', 'reconstruction', 'difference')[c]}", fontsize=7)
        axes[row][0].set_ylabel(key, fontsize=7)
    fig.suptitle(title + "  (log(rho + 1), rho in e/Bohr^3; difference scaled to its own max)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a results JSON written by python -m benchmarks.run")
    ap.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: next to the results)")
    ap.add_argument("--data-root", type=Path, default=Path("."), help="the data root the run used (default .)")
    args = ap.parse_args(argv)
    from .tasks import get_task

    try:
        doc = json.loads(args.results.read_text())
        task = get_task(doc["task"]["name"])
        pred_path = args.results.with_name(doc["predictions"]["file"])
        with np.load(pred_path, allow_pickle=False) as f:
            predictions = {k: f[k] for k in f.files}
        out = args.out or args.results.parent
        out.mkdir(parents=True, exist_ok=True)
        paths = task.plot(doc, predictions, args.data_root, out / args.results.stem)
    except (OSError, KeyError, ValueError) as err:
        print(f"error: {args.results}: {err}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
