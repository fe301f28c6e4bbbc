"""Field names, dtypes and units of a density sample (pubchem-hf-density, qm9-hf-density).

A decoded sample is a ``dict``; the fields below are what the renderer and loaders rely on.
Geometry is stored in Angstrom, the grid frame in Bohr (cube-file convention: grid point
(i, j, k) sits at ``grid_origin + i*grid_axes[0] + j*grid_axes[1] + k*grid_axes[2]``).

| field            | dtype    | shape      | unit / meaning                                        |
|------------------|----------|------------|-------------------------------------------------------|
| atomic_numbers   | uint8    | (N,)       | Z                                                     |
| positions        | float64  | (N, 3)     | Angstrom                                              |
| basis            | str      |            | pyscf basis name, e.g. "sto-3g"                       |
| density_matrix   | float32  | (M,)       | RHF AO density matrix (pyscf spherical AO order, the  |
|                  |          |            | matrix with trace(D S) = N_electrons), upper triangle |
|                  |          |            | row-major, M = nao*(nao+1)/2                          |
| grid_origin      | float64  | (3,)       | Bohr                                                  |
| grid_axes        | float64  | (3, 3)     | Bohr; row a = step vector along grid axis a           |
| grid_shape       | int32    | (3,)       | number of points along each axis                      |
| charge, spin     | int      |            | molecular charge and 2S (both 0 in these releases)    |
"""
from __future__ import annotations

BOHR_PER_ANGSTROM = 1.0 / 0.52917721092  # CODATA 2010, as pyscf uses
ANGSTROM_PER_BOHR = 0.52917721092
