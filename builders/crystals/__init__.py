"""P1, Z'=1 molecular crystals of rigid molecules (paper 002 section 4.4, appendix F).

Modules: ``radii`` (vdW radii table), ``frames`` (molecule standard frame, rotation
vectors), ``cell`` (12 parameters, cell matrix, unconstrained reparametrization),
``molecules`` (padded molecule batch), ``potentials`` (LJ and Buckingham pair energies),
``energy`` (cluster, neighbour lists, energies per molecule), ``volume`` (vdW volume,
packing coefficient), ``optimize`` (random starts, batched LJ optimization, noisy copies,
``generate_crystals``), ``mace`` (optional MACE lattice energies from a local model file)
and ``preview`` (matplotlib pictures); the last two are not imported here.
"""

from .cell import PARAM_NAMES, cell_matrix, cell_volume
from .energy import DEFAULT_CUTOFF, cluster_energies, cluster_images, crystal_energies
from .frames import rotvec_to_matrix, standard_frame
from .molecules import MoleculeBatch
from .optimize import (
    CrystalSet,
    generate_crystals,
    noisy_copies,
    optimize_crystals,
    random_start,
)
from .volume import packing_coefficient, vdw_volume

__all__ = [
    "DEFAULT_CUTOFF",
    "PARAM_NAMES",
    "CrystalSet",
    "MoleculeBatch",
    "cell_matrix",
    "cell_volume",
    "cluster_energies",
    "cluster_images",
    "crystal_energies",
    "generate_crystals",
    "noisy_copies",
    "optimize_crystals",
    "packing_coefficient",
    "random_start",
    "rotvec_to_matrix",
    "standard_frame",
    "vdw_volume",
]
