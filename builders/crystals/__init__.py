"""P1, Z'=1 molecular crystals of rigid molecules (paper 002 section 4.4, appendix F).

Modules: ``radii`` (vdW radii table), ``frames`` (molecule standard frame, rotation
vectors), ``cell`` (12 parameters, cell matrix, unconstrained reparametrization),
``molecules`` (padded molecule batch), ``potentials`` (LJ and Buckingham pair energies),
``energy`` (cluster, neighbour lists, energies per molecule and the authors' convention),
``volume`` (vdW volume, packing coefficient), ``refine`` (Newton refinement to stationary
points at the stored cutoff, lattice reduction), ``optimize`` (random starts, batched LJ
optimization, noisy copies, the authors' filter, ``generate_crystals``), ``mace`` (optional
MACE lattice energies from a local model file) and ``preview`` (matplotlib pictures); the
last two are not imported here.
"""

from builders.crystals.cell import PARAM_NAMES, cell_matrix, cell_volume
from builders.crystals.energy import (
    DEFAULT_CUTOFF,
    MXTALTOOLS_FACTOR,
    cluster_energies,
    cluster_images,
    crystal_energies,
    scaled_lj_mxtaltools,
)
from builders.crystals.frames import rotvec_to_matrix, standard_frame
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.optimize import (
    SCALED_LJ_MAX,
    CrystalSet,
    generate_crystals,
    lj_bound,
    noisy_copies,
    optimize_crystals,
    random_start,
)
from builders.crystals.refine import GRAD_TOL, refine_crystals, stationarity
from builders.crystals.volume import packing_coefficient, vdw_volume

__all__ = [
    "DEFAULT_CUTOFF",
    "GRAD_TOL",
    "MXTALTOOLS_FACTOR",
    "SCALED_LJ_MAX",
    "PARAM_NAMES",
    "CrystalSet",
    "MoleculeBatch",
    "cell_matrix",
    "cell_volume",
    "cluster_energies",
    "cluster_images",
    "crystal_energies",
    "generate_crystals",
    "lj_bound",
    "noisy_copies",
    "optimize_crystals",
    "packing_coefficient",
    "random_start",
    "refine_crystals",
    "scaled_lj_mxtaltools",
    "stationarity",
    "rotvec_to_matrix",
    "standard_frame",
    "vdw_volume",
]
