"""Padded batch of rigid molecules in their standard frames.

Layout: ``M`` molecules padded to ``N`` atoms (the largest molecule). ``z`` (M, N) atomic
numbers with 0 for padding, ``coords`` (M, N, 3) standard-frame positions in Angstrom
(0 for padding), ``mask`` (M, N) True for real atoms. Crystals refer to molecules through
an index (``mol_index``), so many crystals can share one molecule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from builders.crystals.frames import standard_frame
from builders.crystals.radii import MAX_Z, vdw_radii


@dataclass
class MoleculeBatch:
    """Padded rigid molecules in their standard frames (see module docstring)."""

    z: torch.Tensor  # (M, N) int64
    coords: torch.Tensor  # (M, N, 3) Angstrom, standard frame
    mask: torch.Tensor  # (M, N) bool

    @classmethod
    def from_molecules(
        cls,
        molecules: Sequence[tuple[Sequence[int], np.ndarray]],
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> MoleculeBatch:
        """Build a batch from (atomic numbers (N_i,), coordinates (N_i, 3) Angstrom) pairs.

        Each molecule is moved into its standard frame (``frames.standard_frame``).

        Raises:
            ValueError: naming the molecule, for empty molecules, shape mismatches or
                elements without a vdW radius.
        """
        if len(molecules) == 0:
            raise ValueError("no molecules given")
        n_max = max(len(z) for z, _ in molecules)
        zs = np.zeros((len(molecules), n_max), dtype=np.int64)
        xs = np.zeros((len(molecules), n_max, 3), dtype=np.float64)
        for k, (z, x) in enumerate(molecules):
            z = np.asarray(z, dtype=np.int64)
            x = np.asarray(x, dtype=np.float64)
            if len(z) == 0 or x.shape != (len(z), 3):
                raise ValueError(
                    f"molecule {k}: need N >= 1 atomic numbers and (N, 3) coordinates, got {z.shape}, {x.shape}"
                )
            if z.min() < 1 or z.max() > MAX_Z:
                raise ValueError(
                    f"molecule {k}: atomic numbers must be in 1..{MAX_Z}, got {sorted(set(z.tolist()))}"
                )
            zs[k, : len(z)] = z
            xs[k, : len(z)] = standard_frame(x)[0]
        z_t = torch.as_tensor(zs, device=device)
        return cls(
            z=z_t, coords=torch.as_tensor(xs, dtype=dtype, device=device), mask=z_t > 0
        )

    def radii(self) -> torch.Tensor:
        """(M, N) vdW radii in Angstrom (0 for padding), in the batch's dtype."""
        return vdw_radii(self.z, dtype=self.coords.dtype)

    def to(self, device=None, dtype=None) -> MoleculeBatch:
        """Copy to another device and/or floating dtype."""
        return MoleculeBatch(
            self.z.to(device),
            self.coords.to(device=device, dtype=dtype),
            self.mask.to(device),
        )

    def __len__(self) -> int:
        return self.z.shape[0]
