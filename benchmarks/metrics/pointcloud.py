"""Point-cloud reconstruction matching for Gaussian-mixture decoders (Mo3ENet protocol).

Per molecule the input is N atoms (positions (N, 3) in Angstrom, types as indices into
``TYPES`` = (H, C, N, O, F) or one-hot (N, 5)) and a decoded mixture of M components
(positions (M, 3) Angstrom, type probabilities (M, 5), non-negative weights (M,), which a
Mo3ENet decoder makes sum to N).

Matching (paper 002, whose text and appendix describe it, and the authors' released code,
MXtalTools ``mxtaltools/models/autoencoder_utils.py::batch_rmsd``, which we follow where they
differ):

1. Joint space: atom i -> x_i = (r_i, c_T onehot_i), component j -> y_j = (r_j, c_T p_j),
   with c_T = 2 (``type_scale``; batch_rmsd's ``type_distance_scaling``).
2. Component j is pooled to atom i when |x_i - y_j| < 0.5 (``cutoff``, batch_rmsd's
   ``intrapoint_cutoff``; joint-space distance, strict ``<`` as its ``dists < intrapoint_cutoff``).
   A component within the cutoff of two atoms counts for both (batch_rmsd takes every
   (atom, component) pair that ``torch_cluster.radius`` returns; possible only for same-type
   atoms closer than 1 Angstrom).
3. Pooled weight W_i = sum of the pooled w_j. Atom i is *matched* when |W_i - 1| < 0.25
   (``weight_tolerance``, strict; batch_rmsd marks an atom missing when
   ``(1 - W).abs() >= probability_threshold``; the appendix words it as "probability mass
   above ... 0.25"). A molecule is *fully matched* when all its
   atoms are (batch_rmsd's ``complete_graph_bools``).
4. Deviations, Angstrom, nan where nothing was pooled (W_i = 0):

   * ``deviation`` (densegen's; the paper's text: "aggregating them ... by averaging according
     to their respective weights"): |r_i - r_bar_i| in xyz, with r_bar_i = sum w_j r_j / W_i
     the weight-averaged pooled position. Translation invariant. For a matched atom it is < cutoff:
     every pooled component is within the cutoff in xyz (the joint distance bounds the xyz
     one) and r_bar_i is a convex combination of them (w_j >= 0).
   * ``paper_deviation`` (the authors' code; the appendix: "the weighted sum of their
     positions"): |x_i - sum_j w_j y_j| in the joint space, the
     weighted *sum* of pooled component points not normalized by W_i (batch_rmsd's
     ``pred_particle_points`` and ``pred_dists``). Equal to ``deviation`` for W_i = 1 with pure
     type probabilities; otherwise it holds (1 - W_i) |x_i| terms and so depends on where the
     coordinate origin is.

Summary (:func:`summarize`):

* ``penalized_mean_deviation`` (PRIMARY, Angstrom, lower is better): the mean over ALL atoms
  of all molecules of ``deviation``, an unmatched atom counting as ``cutoff`` (0.5 Angstrom,
  worse than any matched atom can be). Why this one: the deviation means below average over
  matched atoms or fully matched molecules only, so a model that rebuilds a few atoms well
  and drops the rest ranks first on them; the matched fractions count failures but do not see
  how close matched atoms are, and tie (at 0 or 1) between very different models. This metric
  is 0 only for a perfect reconstruction, reaches 0.5 when nothing is matched, never increases
  when one more atom is matched, and equals the atomwise mean deviation when every atom is
  matched. A model that rebuilds 1 atom in 20 perfectly scores 19/20 * 0.5 = 0.475 Angstrom:
  behind every model that matches all atoms within 0.475 Angstrom on average.
* ``atomwise_mean_deviation``: mean of ``deviation`` over matched atoms of all molecules.
* ``molwise_mean_deviation``: mean over fully matched molecules of their mean ``deviation``
  (paper: "for molecules where every atom was matched").
* ``atomwise_matched_fraction``: matched atoms / all atoms (batch_rmsd callers:
  ``matching_node_fraction``).
* ``molwise_matched_fraction``: fully matched molecules / molecules
  (``matching_graph_fraction``).
* ``paper_atomwise_mean_deviation``, ``paper_molwise_mean_deviation``: the same two means of
  ``paper_deviation``, as MXtalTools summarizes batch_rmsd's output
  (``modeller.py::detailed_autoencoder_step_analysis``: ``nodewise_dists[matched_nodes].mean()``
  and ``rmsd[matched_graphs].mean()``; batch_rmsd's "rmsd" is the per-molecule *mean* of the
  distances, not a root mean square). Units: the joint space's (Angstrom for positions plus 2 x
  type-probability differences).

Deviation means are nan when nothing qualifies (no matched atom / no fully matched molecule).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TYPES = ("H", "C", "N", "O", "F")
#: atomic number -> column of ``type_probs`` (the order of :data:`TYPES`)
TYPE_INDEX = {1: 0, 6: 1, 7: 2, 8: 3, 9: 4}
CUTOFF = 0.5
WEIGHT_TOLERANCE = 0.25
TYPE_SCALE = 2.0
PRIMARY = "penalized_mean_deviation"


@dataclass(frozen=True)
class MoleculeMatch:
    """Per-atom results for one molecule, arrays of shape (N,): ``pooled_weight``,
    ``matched`` (bool), ``deviation`` (xyz, Angstrom) and ``paper_deviation`` (joint space),
    both nan where nothing was pooled; ``cutoff`` is the pooling radius used."""

    pooled_weight: np.ndarray
    matched: np.ndarray
    deviation: np.ndarray
    paper_deviation: np.ndarray
    cutoff: float = CUTOFF

    @property
    def all_matched(self) -> bool:
        return bool(self.matched.all())

    @property
    def penalized_deviation(self) -> np.ndarray:
        """``deviation`` where matched, ``cutoff`` elsewhere (Angstrom, (N,))."""
        return np.where(self.matched, self.deviation, self.cutoff)


def _one_hot(types, n_types: int) -> np.ndarray:
    t = np.asarray(types)
    if t.ndim == 1:
        return np.eye(n_types)[t.astype(int)]
    if t.ndim == 2 and t.shape[1] == n_types:
        return t.astype(np.float64)
    raise ValueError(f"atom types: expected (N,) indices or (N, {n_types}) one-hot, got {t.shape}")


def match_molecule(atom_positions, atom_types, comp_positions, comp_type_probs, comp_weights,
                   cutoff: float = CUTOFF, weight_tolerance: float = WEIGHT_TOLERANCE,
                   type_scale: float = TYPE_SCALE) -> MoleculeMatch:
    """Pool decoded components onto the input atoms of one molecule (module docstring).

    Args:
        atom_positions: (N, 3) Angstrom. atom_types: (N,) indices into ``TYPES`` or (N, 5) one-hot.
        comp_positions: (M, 3) Angstrom. comp_type_probs: (M, 5). comp_weights: (M,), >= 0.
        cutoff: joint-space pooling radius. weight_tolerance: matched if |W - 1| < this.
        type_scale: c_T.

    Raises:
        ValueError: inconsistent sizes, or a negative component weight.
    """
    r = np.asarray(atom_positions, dtype=np.float64).reshape(-1, 3)
    probs = np.asarray(comp_type_probs, dtype=np.float64)
    onehot = _one_hot(atom_types, probs.shape[1])
    rc = np.asarray(comp_positions, dtype=np.float64).reshape(-1, 3)
    w = np.asarray(comp_weights, dtype=np.float64).reshape(-1)
    if not (len(rc) == len(probs) == len(w)) or len(onehot) != len(r):
        raise ValueError("inconsistent numbers of atoms or components")
    if (w < 0).any():
        raise ValueError("component weights must be >= 0 (a mixture)")
    x = np.concatenate([r, type_scale * onehot], axis=1)
    y = np.concatenate([rc, type_scale * probs], axis=1)
    dist = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    pool = (dist < cutoff) * w[None, :]                      # (N, M) pooled weights
    big_w = pool.sum(1)
    matched = np.abs(big_w - 1.0) < weight_tolerance
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.linalg.norm(r - pool @ rc / big_w[:, None], axis=1)     # 0 / 0 = nan if W = 0
    paper = np.where(big_w == 0, np.nan, np.linalg.norm(x - pool @ y, axis=1))
    return MoleculeMatch(big_w, matched, dev, paper, float(cutoff))


def _mean_or_nan(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def summarize(matches) -> dict:
    """Dataset summary of a sequence of :class:`MoleculeMatch` (module docstring).

    Returns:
        dict: penalized_mean_deviation, atomwise_mean_deviation, molwise_mean_deviation
        (Angstrom), atomwise_matched_fraction, molwise_matched_fraction (dimensionless),
        paper_atomwise_mean_deviation, paper_molwise_mean_deviation (joint-space units),
        n_atoms, n_molecules.
    """
    matches = list(matches)
    if not matches:
        raise ValueError("no molecules")
    ok = np.concatenate([m.matched for m in matches])
    dev = np.concatenate([m.deviation for m in matches])
    paper = np.concatenate([m.paper_deviation for m in matches])
    full = [m for m in matches if m.all_matched]
    return {
        "penalized_mean_deviation": float(np.concatenate([m.penalized_deviation for m in matches]).mean()),
        "atomwise_mean_deviation": _mean_or_nan(dev[ok]),
        "molwise_mean_deviation": _mean_or_nan([m.deviation.mean() for m in full]),
        "atomwise_matched_fraction": float(ok.mean()),
        "molwise_matched_fraction": len(full) / len(matches),
        "paper_atomwise_mean_deviation": _mean_or_nan(paper[ok]),
        "paper_molwise_mean_deviation": _mean_or_nan([m.paper_deviation.mean() for m in full]),
        "n_atoms": int(ok.size),
        "n_molecules": len(matches),
    }


def match_dataset(molecules, **kwargs) -> dict:
    """Match and summarize many molecules.

    Args:
        molecules: iterable of tuples (atom_positions, atom_types, comp_positions,
            comp_type_probs, comp_weights), as for :func:`match_molecule`.
        **kwargs: passed to :func:`match_molecule` (cutoff, weight_tolerance, type_scale).

    Returns:
        :func:`summarize`'s dict.
    """
    return summarize(match_molecule(*m, **kwargs) for m in molecules)
