"""Intermolecular pair potentials (energies in an arbitrary unit E, distances in Angstrom).

Both potentials use the pair length scale ``s_ij = r_vdw_i + r_vdw_j`` (sum of the two
atoms' van der Waals radii, ``radii.VDW_RADII``) and are applied to intermolecular pairs only.

Lennard-Jones (paper 002 eq. 19; the authors' code ``compute_lj_pot``, eps = 1)::

    E_LJ(r) = 4 [ (s/r)^12 - (s/r)^6 ]        zero at r = s, minimum -1 at r = 2^(1/6) s

Buckingham (paper 002 eq. 8, with d = r / s)::

    E_BH(d) = A exp(-B d) - C d^-6,   B = 1,  C = -0.2,  A = -1.2 e = -3.26193...

Derivation of the constants: we want a minimum of -1 at d = 1, i.e.
E(1) = A e^-B - C = -1 and E'(1) = -A B e^-B + 6 C = 0. With B = 1 the second condition
gives A e^-1 = 6 C; substituted in the first, 5 C = -1, so C = -0.2 and A = -1.2 e =
-3.261938. The literal constants of the paper and DESIGN.md (A = -3.2619, B = 1, C = -0.2)
are therefore right, with A rounded: they give E(1) = -0.99998 at d = 1 + 1e-5; we use the
unrounded A = -1.2 e so that the minimum is exactly -1 at r = s. E'' (1) = 7.2 > 0. Note the
signs: with A < 0 and C < 0 the exponential is the ATTRACTIVE term and the d^-6 term the
repulsive one (a "soft" Lennard-Jones-like well, as the paper says); E -> +inf for d -> 0, E < 0 for
0.71 < d < ~22, and E -> 0 for large d (beyond d ~ 22 the tiny d^-6 term wins, |E| < 1e-8). The attraction decays like exp(-d): at 6 A a C...C pair (s = 3.4 A) still
has E = -0.56, so Buckingham energies depend strongly on the cutoff (see energy.py).
"""

from __future__ import annotations

import math

import torch

BUCKINGHAM_B = 1.0
BUCKINGHAM_C = -0.2
BUCKINGHAM_A = (
    -1.2 * math.e
)  # = -3.2619381...; see the derivation in the module docstring


def lennard_jones(r: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """12-6 Lennard-Jones pair energy with eps = 1.

    Args:
        r: (...) distances in Angstrom.
        s: (...) sigma = sum of the two vdW radii, Angstrom.

    Returns:
        (...) pair energies 4 ((s/r)^12 - (s/r)^6), minimum -1 at r = 2^(1/6) s.
    """
    x6 = (s / r) ** 6
    return 4.0 * (x6 * x6 - x6)


def buckingham(r: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Buckingham pair energy A exp(-B r/s) - C (r/s)^-6 (constants above), minimum -1 at r = s.

    Args:
        r: (...) distances in Angstrom.
        s: (...) r0 = sum of the two vdW radii, Angstrom.

    Returns:
        (...) pair energies.
    """
    d = r / s
    return BUCKINGHAM_A * torch.exp(-BUCKINGHAM_B * d) - BUCKINGHAM_C * d.pow(-6)


POTENTIALS = {"lj": lennard_jones, "buckingham": buckingham}
