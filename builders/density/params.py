"""Build parameters of the density releases, declared once (builders.format.params).

The dataclasses give the command-line options, their defaults and help, and the parameter
record of the manifest of ``pubchem-hf-density`` and ``qm9-hf-density``. Light on purpose (no
rdkit, no pyscf), so benchmarks and the command line can read the defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builders.density.frame import SEED_MARGIN_BOHR, SEED_SHAPE
from builders.format.params import fixed, option

#: per-molecule wall-clock limit of a build, seconds (conformers + semiempirical + RHF)
DEFAULT_TIME_LIMIT_S = 900.0
#: candidates re-optimized with the semiempirical method (paper 000: the 5 lowest MMFF94 conformers)
N_SEMIEMPIRICAL = 5
#: ETKDG conformers per molecule (paper 000: 50)
N_CONFORMERS = 50


@dataclass(frozen=True)
class DensityParams:
    """Parameters shared by both density releases (grid frame, time limit, level of theory)."""

    grid: bool = option(False, "also write the 'grid' config: the density on each sample's frame (float16+zstd)")
    cubic: bool = option(False, "cubic box (largest extent on every axis)")
    spacing_bohr: float | None = option(None, "fixed grid spacing in Bohr (overrides 128^3)", flag="--spacing",
                                        type=float)
    time_limit_s: float = option(DEFAULT_TIME_LIMIT_S, "per-molecule time limit, seconds", flag="--time-limit")
    margin_bohr: float = option(SEED_MARGIN_BOHR, "box margin around the atoms, Bohr", flag="--margin")
    grid_shape: list = fixed(list(SEED_SHAPE))
    basis: str = fixed("sto-3g")
    method: str = fixed("RHF")


@dataclass(frozen=True)
class PubChemDensityParams(DensityParams):
    """pubchem-hf-density: the shared parameters plus the input set and the conformer search."""

    input: str | None = option(None, "a SMILES file instead of the embedded PubChem set", type=Path,
                               to_record=str)
    semiempirical: str = option("mindo3", "re-optimization method (xtb = GFN2-xTB via tblite, recorded in each "
                                "sample)", choices=("mindo3", "xtb"))
    n_conformers: int = option(N_CONFORMERS, "ETKDG conformers per molecule", flag="--conformers")
    n_semiempirical: int = fixed(N_SEMIEMPIRICAL)
