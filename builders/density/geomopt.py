"""Geometry optimisation through pyscf.geomopt + geomeTRIC, quiet and deadline-aware.

One job: run ``pyscf.geomopt.geometric_solver.kernel`` on any pyscf method that has nuclear
gradients (or on a ``pyscf.geomopt.addons.as_pyscf_method`` wrapper around an
energy-and-gradient function), without geomeTRIC's console output, and return the final
geometry, its energy, whether geomeTRIC converged and how many gradient evaluations it used.

Side effect worth knowing: geomeTRIC configures logging with ``logging.config.fileConfig``
on every run (this is how pyscf calls it); that call flushes and closes all existing logging
handlers of the process and replaces the root logger's handlers. :func:`optimize_geometry`
restores the root logger's handlers and level afterwards, and routes geomeTRIC's own loggers
to a ``NullHandler``. Build logs should therefore be written by the parent process, not by
the worker that runs the chemistry.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from builders.format.timeout import Deadline

# geomeTRIC's default ("GAU") convergence criteria, as pyscf documents them; Hartree, Hartree/Bohr, Angstrom.
DEFAULT_CONVERGENCE = {
    "convergence_energy": 1e-6,
    "convergence_grms": 3e-4,
    "convergence_gmax": 4.5e-4,
    "convergence_drms": 1.2e-3,
    "convergence_dmax": 1.8e-3,
}

_QUIET_INI = """\
[loggers]
keys=root,geometric,molecule,nifty

[handlers]
keys=null

[formatters]
keys=

[logger_root]
level=NOTSET
handlers=

[logger_geometric]
level=CRITICAL
handlers=null
propagate=0
qualname=geometric

[logger_molecule]
level=CRITICAL
handlers=null
propagate=0
qualname=MoleculeLogger

[logger_nifty]
level=CRITICAL
handlers=null
propagate=0
qualname=NiftyLogger

[handler_null]
class=NullHandler
args=()
"""


def _write_quiet_log_ini() -> str:
    """Write a logging config file that silences geomeTRIC; returns its path (caller removes it)."""
    fd, path = tempfile.mkstemp(prefix="densegen_geometric_", suffix=".ini")
    with os.fdopen(fd, "w") as fh:
        fh.write(_QUIET_INI)
    return path


@dataclass
class GeomOptResult:
    """Result of :func:`optimize_geometry`.

    Attributes:
        positions_angstrom: (N, 3) float64 final geometry, Angstrom.
        energy_hartree: energy at ``positions_angstrom`` (the last gradient evaluation), Hartree.
        converged: whether geomeTRIC met its convergence criteria within the step limit.
        n_steps: number of energy+gradient evaluations geomeTRIC made.
    """

    positions_angstrom: np.ndarray
    energy_hartree: float
    converged: bool
    n_steps: int


def optimize_geometry(method, max_steps: int = 200, convergence: dict | None = None,
                      deadline: Deadline | None = None) -> GeomOptResult:
    """Minimise the energy of ``method.mol`` with geomeTRIC (TRIC internal coordinates).

    Args:
        method: a pyscf method object with ``nuc_grad_method()`` (e.g. an SCF object) or the
            object returned by ``pyscf.geomopt.addons.as_pyscf_method``. Its ``mol`` is not
            modified.
        max_steps: maximum number of optimisation steps (gradient evaluations).
        convergence: geomeTRIC convergence criteria overriding :data:`DEFAULT_CONVERGENCE`.
        deadline: checked after every gradient evaluation; raises ``TimeLimitExceeded``.
    Returns:
        :class:`GeomOptResult`. A run that hits ``max_steps`` returns ``converged=False``
        with the last geometry. Errors of the energy function (e.g. an SCF that does not
        converge, which pyscf reports as ``RuntimeError``) propagate.
    """
    from pyscf import lib
    from pyscf.geomopt import geometric_solver

    params = dict(DEFAULT_CONVERGENCE)
    if convergence:
        params.update(convergence)
    record = {"energy": float("nan"), "cycle": 0}

    def callback(envs):
        record["energy"] = float(envs["energy"])
        record["cycle"] = int(envs["self"].cycle)
        if deadline is not None:
            deadline.check("geometry optimization")

    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    ini = _write_quiet_log_ini()
    try:
        converged, mol_eq = geometric_solver.kernel(
            method, assert_convergence=True, callback=callback, maxsteps=int(max_steps),
            logIni=ini, **params)
    finally:
        os.remove(ini)
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
    positions = np.asarray(mol_eq.atom_coords(unit="Bohr"), dtype=np.float64) * lib.param.BOHR
    return GeomOptResult(positions_angstrom=positions, energy_hartree=record["energy"],
                         converged=bool(converged), n_steps=record["cycle"])
