"""Point-cloud reconstruction matching for Gaussian-mixture decoders (Mo3ENet protocol).

Per molecule the input is N atoms (positions (N, 3) in Angstrom, types as indices into
``TYPES`` = (H, C, N, O, F) or one-hot (N, 5)) and a decoded mixture of M components
(positions (M, 3) Angstrom, type probabilities (M, 5), weights (M,) summing to N).

Definition (paper 002 appendix B and the authors' released ``batch_rmsd``):

1. Joint space: atom i -> x_i = (r_i, c_T onehot_i), component j -> y_j = (r_j, c_T p_j),
   with c_T = 2 (``type_scale``).
2. Component j is pooled to atom i when |x_i - y_j| < 0.5 (``cutoff``, joint-space distance,
   strict). A component within the cutoff of two atoms counts for both (possible only for
   same-type atoms closer than 1 Angstrom).
3. Pooled weight W_i = sum of the pooled w_j. Atom i is *matched* when |W_i - 1| < 0.25
   (``weight_tolerance``, strict), the released code's test. (The paper's appendix words it as
   "probability mass above 0.25"; we follow the code and the design document.)
4. Deviation delta_i, Angstrom. Default (``mode="mean_xyz"``): the pooled position is the
   weight-averaged component position r_bar_i = sum w_j r_j / W_i and
   delta_i = |r_i - r_bar_i| in xyz only. ``mode="released"`` reproduces the released code:
   pooled point = sum w_j y_j (weighted *sum*, not normalized by W_i) and delta_i = |x_i - that|
   in the joint space (type dimensions included). For a matched atom with W_i = 1 and pure type
   probabilities both agree. Atoms with no pooled component have W_i = 0 and delta_i = nan.

Summary (:func:`match_dataset`): atomwise mean deviation = mean of delta_i over matched atoms of
all molecules; molecule-wise mean deviation = mean over fully matched molecules (every atom
matched) of the per-molecule mean delta (paper: "for molecules where every atom was matched");
atomwise matched fraction = matched atoms / all atoms; molecule-wise matched fraction =
fully matched molecules / molecules. Deviation means are nan when nothing qualifies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TYPES = ("H", "C", "N", "O", "F")


@dataclass(frozen=True)
class MoleculeMatch:
    """Per-atom results for one molecule: ``pooled_weight``, ``matched`` (bool), ``deviation``
    (Angstrom; nan where nothing was pooled), all of shape (N,)."""

    pooled_weight: np.ndarray
    matched: np.ndarray
    deviation: np.ndarray

    @property
    def all_matched(self) -> bool:
        return bool(self.matched.all())


def _one_hot(types, n_types: int) -> np.ndarray:
    t = np.asarray(types)
    if t.ndim == 1:
        return np.eye(n_types)[t.astype(int)]
    if t.ndim == 2 and t.shape[1] == n_types:
        return t.astype(np.float64)
    raise ValueError(f"atom types: expected (N,) indices or (N, {n_types}) one-hot, got {t.shape}")


def match_molecule(atom_positions, atom_types, comp_positions, comp_type_probs, comp_weights,
                   cutoff: float = 0.5, weight_tolerance: float = 0.25, type_scale: float = 2.0,
                   mode: str = "mean_xyz") -> MoleculeMatch:
    """Pool decoded components onto the input atoms of one molecule (module docstring).

    Args:
        atom_positions: (N, 3) Angstrom. atom_types: (N,) indices into ``TYPES`` or (N, 5) one-hot.
        comp_positions: (M, 3) Angstrom. comp_type_probs: (M, 5). comp_weights: (M,).
        cutoff: joint-space pooling radius. weight_tolerance: matched if |W - 1| < this.
        type_scale: c_T. mode: ``"mean_xyz"`` (default) or ``"released"``.
    """
    if mode not in ("mean_xyz", "released"):
        raise ValueError(f"mode must be 'mean_xyz' or 'released', got {mode!r}")
    r = np.asarray(atom_positions, dtype=np.float64).reshape(-1, 3)
    probs = np.asarray(comp_type_probs, dtype=np.float64)
    onehot = _one_hot(atom_types, probs.shape[1])
    rc = np.asarray(comp_positions, dtype=np.float64).reshape(-1, 3)
    w = np.asarray(comp_weights, dtype=np.float64).reshape(-1)
    if not (len(rc) == len(probs) == len(w)) or len(onehot) != len(r):
        raise ValueError("inconsistent numbers of atoms or components")
    x = np.concatenate([r, type_scale * onehot], axis=1)
    y = np.concatenate([rc, type_scale * probs], axis=1)
    dist = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    pool = (dist < cutoff) * w[None, :]                      # (N, M) pooled weights
    big_w = pool.sum(1)
    matched = np.abs(big_w - 1.0) < weight_tolerance
    with np.errstate(invalid="ignore", divide="ignore"):
        if mode == "mean_xyz":
            rbar = pool @ rc / big_w[:, None]
            dev = np.linalg.norm(r - rbar, axis=1)
        else:
            dev = np.linalg.norm(x - pool @ y, axis=1)
    dev = np.where(big_w > 0, dev, np.nan)
    return MoleculeMatch(big_w, matched, dev)


def summarize(matches) -> dict:
    """Dataset summary of a sequence of :class:`MoleculeMatch` (module docstring)."""
    matches = list(matches)
    if not matches:
        raise ValueError("no molecules")
    dev = np.concatenate([m.deviation for m in matches])
    ok = np.concatenate([m.matched for m in matches])
    full = [m for m in matches if m.all_matched]
    return {
        "atomwise_mean_deviation": float(dev[ok].mean()) if ok.any() else float("nan"),
        "molwise_mean_deviation": (float(np.mean([m.deviation.mean() for m in full]))
                                   if full else float("nan")),
        "atomwise_matched_fraction": float(ok.mean()),
        "molwise_matched_fraction": len(full) / len(matches),
        "n_atoms": int(ok.size),
        "n_molecules": len(matches),
    }


def match_dataset(molecules, **kwargs) -> dict:
    """Match and summarize many molecules.

    Args:
        molecules: iterable of tuples (atom_positions, atom_types, comp_positions,
            comp_type_probs, comp_weights), as for :func:`match_molecule`.
        **kwargs: passed to :func:`match_molecule` (cutoff, weight_tolerance, type_scale, mode).

    Returns:
        dict with atomwise_mean_deviation, molwise_mean_deviation (Angstrom),
        atomwise_matched_fraction, molwise_matched_fraction, n_atoms, n_molecules.
    """
    return summarize(match_molecule(*m, **kwargs) for m in molecules)
