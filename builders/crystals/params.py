"""Build parameters of p1-crystals, declared once (builders.format.params): the command-line
options, their defaults and help, and the manifest's record of the crystal search.

The conformer source (``--conformers`` / ``--input``) and the optional MACE model are handled
by the release itself (``builders.crystals.release``): their record depends on the build root
and on the model file's hash.
"""
from __future__ import annotations

from dataclasses import dataclass

from builders.crystals.energy import DEFAULT_CUTOFF
from builders.crystals.optimize import MAX_GRAD_NORM, OPT_CUTOFF, SCALED_LJ_MAX
from builders.crystals.refine import GRAD_TOL, MAX_STEPS
from builders.format.params import fixed, option


@dataclass(frozen=True)
class CrystalParams:
    """The crystal search: random starts, optimization, refinement, filters and noisy copies.
    Lengths in Angstrom; energies in LJ units (eps = 1) per molecule."""

    n_starts: int = option(4, "random starts per molecule", flag="--starts")
    n_noisy: int = option(10, "noisy copies per kept optimum", flag="--noisy")
    noise_sigma: float = option(0.05, "noise on the standardized parameters")
    scaled_lj_max: float = option(SCALED_LJ_MAX, "the authors' filter on optima and copies, their scaled LJ "
                                  "below this")
    energy_threshold: float | None = option(
        None, "optional extra filter: keep optima with LJ energy per molecule (stored cutoff) below this "
        "(default off; write negative values as --energy-threshold=-50)", type=float)
    min_contact_ratio: float | None = option(
        None, "optional extra filter: keep optima whose shortest contact is at least this x the vdW-radius sum "
        "(default off; earlier builds used 0.8)", type=float)
    cutoff: float = option(DEFAULT_CUTOFF, "pair cutoff of the stored LJ/Buckingham energies, Angstrom")
    opt_cutoff: float = option(OPT_CUTOFF, "LJ cutoff of the Adam stage, Angstrom (refinement uses --cutoff)")
    max_steps: int = option(500, "optimizer step limit")
    max_grad_norm: float = option(MAX_GRAD_NORM, "per-crystal gradient clipping of the optimizer (0 = off)")
    grad_tol: float = option(GRAD_TOL, "stationarity tolerance of the refinement at the stored cutoff")
    refine_steps: int = fixed(MAX_STEPS)
    target_packing: float = option(0.5, "packing coefficient of the random starts")
    volume_spacing: float = fixed(0.05)
