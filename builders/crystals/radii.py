"""Van der Waals radii (Angstrom) for elements H (Z=1) to Ba (Z=56).

The table is RDKit's periodic table (``Chem.GetPeriodicTable().GetRvdw(Z)``, RDKit
2026.09), copied here so that crystal energies do not drift with the RDKit version
(``tests/test_crystal_model.py`` checks the copy against the installed RDKit). For the
organic elements these are Bondi's radii (H 1.20, C 1.70, N 1.55 -> RDKit uses 1.60,
O 1.55, F 1.50): RDKit's value wins wherever the two differ.
"""

from __future__ import annotations

import torch

#: VDW_RADII[Z] = van der Waals radius of element Z in Angstrom; index 0 is unused (nan).
# fmt: off
VDW_RADII: tuple[float, ...] = (
    float("nan"),
    1.20, 1.40,                                                  # H He
    2.20, 1.90, 1.80, 1.70, 1.60, 1.55, 1.50, 1.54,              # Li Be B C N O F Ne
    2.40, 2.20, 2.10, 2.10, 1.95, 1.80, 1.80, 1.88,              # Na Mg Al Si P S Cl Ar
    2.80, 2.40,                                                  # K Ca
    2.30, 2.15, 2.05, 2.05, 2.05, 2.05, 2.00, 2.00, 2.00, 2.10,  # Sc..Zn
    2.10, 2.10, 2.05, 1.90, 1.90, 2.02,                          # Ga Ge As Se Br Kr
    2.90, 2.55,                                                  # Rb Sr
    2.40, 2.30, 2.15, 2.10, 2.05, 2.05, 2.00, 2.05, 2.10, 2.20,  # Y..Cd
    2.20, 2.25, 2.20, 2.10, 2.10, 2.16,                          # In Sn Sb Te I Xe
    3.00, 2.70,                                                  # Cs Ba
)
# fmt: on

MAX_Z = len(VDW_RADII) - 1


def vdw_radii(z: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Van der Waals radii for atomic numbers.

    Args:
        z: integer tensor of atomic numbers, any shape; entries <= 0 (padding) give 0.
        dtype: floating dtype of the result (default: torch's default dtype).

    Returns:
        Tensor of the same shape as ``z`` with radii in Angstrom.

    Raises:
        ValueError: if an atomic number exceeds 56 (Ba), the end of the table.
    """
    z = torch.as_tensor(z)
    if z.numel() and int(z.max()) > MAX_Z:
        raise ValueError(
            f"atomic number {int(z.max())} has no vdW radius (table ends at Z={MAX_Z})"
        )
    table = torch.tensor(
        (0.0,) + VDW_RADII[1:],
        dtype=dtype or torch.get_default_dtype(),
        device=z.device,
    )
    return table[z.clamp(min=0).long()]
