"""Regression metrics and the QM9 aggregation helpers.

Targets and predictions are 1D arrays (n,) in the target's own units (MoleculeNet units for
QM9). Aggregations take dicts keyed by target name.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"pred and target need equal non-empty lengths: {p.shape} vs {t.shape}")
    return p, t


def mae(pred, target) -> float:
    """Mean absolute error, mean |pred - target|, in the target's units."""
    p, t = _pair(pred, target)
    return float(np.abs(p - t).mean())


def pearson_r(pred, target) -> float:
    """Pearson correlation coefficient of pred and target (scipy.stats.pearsonr), in [-1, 1]."""
    p, t = _pair(pred, target)
    return float(stats.pearsonr(p, t).statistic)


def mae_across_seeds(maes_per_seed: dict, ddof: int = 1) -> dict:
    """Per-target MAE mean and standard deviation across seeds.

    Args:
        maes_per_seed: {target: sequence of MAEs, one per seed}.
        ddof: delta degrees of freedom of the std (1 = sample std, the default; 0 = numpy's).
            A single seed gives std nan with ddof=1.

    Returns:
        {target: {"mean": float, "std": float, "n_seeds": int}}.
    """
    out = {}
    for name, vals in maes_per_seed.items():
        v = np.asarray(vals, dtype=np.float64).reshape(-1)
        std = float(v.std(ddof=ddof)) if v.size > ddof else float("nan")
        out[name] = {"mean": float(v.mean()), "std": std, "n_seeds": int(v.size)}
    return out


def average_mae(maes: dict) -> float:
    """Plain average of per-target MAEs (the seeds' Table 1/5 "Avg. MAE"), mixing units.

    Args:
        maes: {target: MAE} (floats) or {target: {"mean": MAE, ...}} from :func:`mae_across_seeds`.
    """
    vals = [v["mean"] if isinstance(v, dict) else v for v in maes.values()]
    return float(np.mean(vals))


def average_normalized_mae(maes: dict, target_std: dict) -> float:
    """Unit-free average: mean over targets of MAE / std(target).

    Args:
        maes: {target: MAE} or {target: {"mean": ...}}.
        target_std: {target: standard deviation of the target values}, same units as the MAE
            (e.g. over the test or training split; state which alongside the result).
    """
    missing = set(maes) - set(target_std)
    if missing:
        raise ValueError(f"target_std lacks {sorted(missing)}")
    vals = [(v["mean"] if isinstance(v, dict) else v) / target_std[k] for k, v in maes.items()]
    return float(np.mean(vals))
