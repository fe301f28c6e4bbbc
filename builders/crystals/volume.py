"""Molecular van der Waals volume (union of vdW spheres) and packing coefficient.

The volume of the union of the atoms' vdW spheres (``radii.VDW_RADII``) is integrated
exactly along x and on a regular grid in (y, z): on each line x of a (y, z) grid with
``spacing`` the spheres cut intervals whose union length is exact; the volume is the sum
of union lengths times spacing^2 (2D midpoint rule). Deterministic; with the default
0.05 A spacing the relative error is below 5e-4 for one sphere and for two overlapping
spheres (checked in the tests against the exact sphere and sphere + lens formulas; 4e-5
at 0.02 A), and a 25-atom molecule takes ~0.25 s on one CPU core.

Packing coefficient (Kitaigorodsky) = Z * V_mol / V_cell, with Z = 1 molecule per cell for P1, Z'=1.
"""

from __future__ import annotations

import numpy as np
import torch

from builders.crystals.radii import vdw_radii


@torch.no_grad()
def vdw_volume(z, coords, spacing: float = 0.05) -> float:
    """Volume of the union of vdW spheres of one molecule, in Angstrom^3.

    Args:
        z: (N,) atomic numbers.
        coords: (N, 3) positions in Angstrom.
        spacing: spacing in Angstrom of the (y, z) grid of lines along x.

    Returns:
        Volume in Angstrom^3 (float64, CPU).
    """
    x = torch.as_tensor(np.asarray(coords, dtype=np.float64)).reshape(-1, 3)
    r = vdw_radii(
        torch.as_tensor(np.asarray(z, dtype=np.int64)).reshape(-1), dtype=torch.float64
    )
    lo = (x - r[:, None]).amin(0)
    hi = (x + r[:, None]).amax(0)
    ny, nz = torch.ceil((hi[1:] - lo[1:]) / spacing).long().tolist()
    gy = lo[1] + spacing * (torch.arange(ny, dtype=torch.float64) + 0.5)
    gz = lo[2] + spacing * (torch.arange(nz, dtype=torch.float64) + 0.5)
    total = 0.0
    for y in gy.split(max(1, 4096 // max(nz, 1))):
        h2 = (
            r**2
            - (y[:, None, None] - x[:, 1]) ** 2
            - (gz[None, :, None] - x[:, 2]) ** 2
        )  # (Y, Z, N)
        h = torch.sqrt(h2.clamp_min(0))
        start = torch.where(h2 > 0, x[:, 0] - h, lo[0])
        end = torch.where(h2 > 0, x[:, 0] + h, lo[0])
        start, order = start.sort(-1)
        end = end.gather(-1, order)
        # union length of the intervals on each line: sorted by start, each interval adds
        # the part of it beyond the furthest end reached so far
        reach = torch.cat(
            (
                torch.full_like(end[..., :1], float(lo[0])),
                end.cummax(-1).values[..., :-1],
            ),
            -1,
        )
        total += float((end - torch.maximum(start, reach)).clamp_min(0).sum())
    return total * spacing**2


def packing_coefficient(
    mol_volume: torch.Tensor, cell_volume: torch.Tensor, z: int = 1
) -> torch.Tensor:
    """Packing coefficient Z * V_mol / V_cell.

    Args:
        mol_volume: (...) molecular vdW volumes in Angstrom^3.
        cell_volume: (...) cell volumes in Angstrom^3.
        z: molecules per cell (1 for P1, Z'=1).

    Returns:
        (...) dimensionless packing coefficients.
    """
    return z * mol_volume / cell_volume
