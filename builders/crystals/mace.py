"""MACE lattice energies of rigid-molecule P1, Z'=1 crystals (optional extra ``mace``).

    E_lattice = E_cell / Z - E_gas        (eV per molecule, Z = 1 for P1 with Z' = 1)

``E_cell`` is the MACE energy of the periodic unit cell (cell matrix ``H``, the molecule
posed as in ``energy.pose_molecules``, periodic in all three directions); ``E_gas`` is the
MACE energy of the same rigid molecule alone in vacuum (no cell, no periodicity). The
molecule's internal geometry is identical in both, so E_lattice is the intermolecular
(packing) energy as MACE sees it. Paper 002 used the foundation model mace-mpa-0-medium;
no weights can be downloaded here, so the model is always a local file (``--mace-model
PATH``): a ``torch.save``-d MACE module, which is what the MACE project distributes.

Evaluation goes through mace-torch's own ASE calculator (``mace.calculators.MACECalculator``,
given the module loaded here), in float64 by default: the lattice energy is a small
difference of two large numbers.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

Z_PER_CELL = 1  # molecules per cell in P1 with Z' = 1
INSTALL_HINT = "pip install mace-torch  (or: pip install 'densegen[mace]')"


class MaceUnavailable(ModuleNotFoundError):
    """mace-torch (or its dependency ase) is not installed."""


def require_mace() -> None:
    """Raise :class:`MaceUnavailable` with the install command if mace-torch is missing."""
    import importlib.util

    for module in ("mace", "ase"):
        if importlib.util.find_spec(module) is None:
            raise MaceUnavailable(
                f"MACE lattice energies need the package mace-torch ({module!r} is not installed): {INSTALL_HINT}"
            )


def model_file(path) -> Path:
    """The model path as a Path, checked to be an existing file.

    Raises:
        FileNotFoundError: naming the path (weights cannot be downloaded; give a local file).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"MACE model file not found: {p} (no weights can be downloaded here: pass a local "
            f"torch.save-d MACE model, e.g. mace-mpa-0-medium.model, with --mace-model PATH)"
        )
    return p


def file_sha256(path) -> str:
    """sha256 hex digest of a file (recorded in the manifest to pin the model)."""
    from builders.format.tario import sha256_file

    return sha256_file(path)


class MaceEnergy:
    """A MACE model from a local file, evaluating total energies in eV.

    Args:
        path: a ``torch.save``-d MACE module (``mace.modules.MACE`` / ``ScaleShiftMACE``).
        device: torch device string.
        dtype: ``"float64"`` (default) or ``"float32"``; the model is converted to it.

    Raises:
        MaceUnavailable: mace-torch is not installed.
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a loadable MACE model.
    """

    def __init__(self, path, device: str = "cpu", dtype: str = "float64"):
        require_mace()
        self.path = model_file(path)
        import logging

        import torch

        # mace's calculator module sets this at import; set it first so loading below and
        # there behave the same (MACE model files are pickled modules, not state dicts).
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        try:
            model = torch.load(self.path, map_location=device, weights_only=False)
        except Exception as err:  # noqa: BLE001  (unpickling can raise anything)
            raise ValueError(f"{self.path}: not a loadable torch model file ({type(err).__name__}: {err})") from None
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "atomic_numbers") or not hasattr(model, "r_max"):
            raise ValueError(f"{self.path}: holds a {type(model).__name__}, not a MACE model (torch.nn.Module with "
                             f"atomic_numbers and r_max)")
        from mace.calculators import MACECalculator

        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the calculator logs dtype/head choices at WARNING
        try:
            self.calc = MACECalculator(models=model, device=device, default_dtype=dtype)
        finally:
            logging.getLogger().setLevel(level)
        #: atomic numbers the model knows
        self.elements = frozenset(model.atomic_numbers.tolist())
        #: the model's cutoff in Angstrom
        self.r_max = float(model.r_max)

    def missing_elements(self, z) -> list[int]:
        """Atomic numbers of ``z`` that the model has no parameters for (sorted)."""
        return sorted({int(x) for x in np.asarray(z).ravel()} - self.elements)

    def energy(self, z, positions, cell=None) -> float:
        """MACE total energy in eV.

        Args:
            z: (N,) atomic numbers.
            positions: (N, 3) Cartesian positions in Angstrom.
            cell: (3, 3) cell matrix (rows = lattice vectors, Angstrom) for a crystal,
                periodic in 3D; None for an isolated molecule (no periodicity).

        Raises:
            ValueError: for elements the model does not cover.
        """
        from ase import Atoms

        missing = self.missing_elements(z)
        if missing:
            raise ValueError(f"the MACE model has no parameters for elements {missing}")
        if cell is None:
            atoms = Atoms(numbers=np.asarray(z, dtype=int), positions=np.asarray(positions, dtype=np.float64))
        else:
            atoms = Atoms(numbers=np.asarray(z, dtype=int), positions=np.asarray(positions, dtype=np.float64),
                          cell=np.asarray(cell, dtype=np.float64), pbc=True)
        atoms.calc = self.calc
        return float(atoms.get_potential_energy())

    def lattice_energies(self, z, positions, cells, std_positions=None) -> dict[str, np.ndarray]:
        """Lattice energies of P1, Z'=1 crystals of one rigid molecule.

        Args:
            z: (N,) atomic numbers.
            positions: (K, N, 3) Cartesian positions of the molecule in each crystal, Angstrom.
            cells: (K, 3, 3) cell matrices (rows = lattice vectors), Angstrom.
            std_positions: (N, 3) the molecule in any pose for E_gas (default positions[0]);
                E_gas does not depend on the pose.

        Returns:
            {"cell": (K,) E_cell, "gas": float E_gas, "lattice": (K,) E_cell / Z - E_gas}, eV.
        """
        positions = np.asarray(positions, dtype=np.float64)
        cells = np.asarray(cells, dtype=np.float64)
        gas = self.energy(z, positions[0] if std_positions is None else std_positions)
        e_cell = np.array([self.energy(z, x, h) for x, h in zip(positions, cells)], dtype=np.float64)
        return {"cell": e_cell, "gas": gas, "lattice": e_cell / Z_PER_CELL - gas}


@lru_cache(maxsize=2)
def cached_model(path: str, sha256: str, device: str = "cpu", dtype: str = "float64") -> MaceEnergy:
    """One loaded model per (path, content hash) per process (worker processes reuse it).

    Raises:
        ValueError: if the file's content changed since the build recorded ``sha256``.
    """
    actual = file_sha256(model_file(path))
    if actual != sha256:
        raise ValueError(f"{path} changed since the build started (sha256 {actual[:12]}..., expected {sha256[:12]}...)")
    return MaceEnergy(path, device=device, dtype=dtype)
