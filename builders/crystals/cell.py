"""Crystal parameters and cell matrices.

The 12 crystal parameters of a P1, Z'=1 crystal, in this order (``PARAM_NAMES``)::

    a, b, c             cell lengths, Angstrom
    alpha, beta, gamma  cell angles, radians (alpha between b and c, beta a^c, gamma a^b)
    u, v, w             fractional coordinates of the molecule's geometric centroid
    rx, ry, rz          rotation vector (radians) taking the molecule's standard frame
                        (``frames.standard_frame``) to its pose in the crystal

Cell matrix convention: ``H`` is (3, 3) with ROWS the lattice vectors a, b, c in
Cartesian Angstrom, a along +x, b in the xy plane (+y side), c with positive z::

    a = (a, 0, 0)
    b = (b cos(gamma), b sin(gamma), 0)
    c = (c cos(beta), c (cos(alpha) - cos(beta) cos(gamma)) / sin(gamma), c * n_z)

so Cartesian = fractional @ H and the cell volume is det(H) = a b c sqrt(1 - cos^2 alpha
- cos^2 beta - cos^2 gamma + 2 cos alpha cos beta cos gamma).
"""

from __future__ import annotations

import math

import torch

PARAM_NAMES = ("a", "b", "c", "alpha", "beta", "gamma", "u", "v", "w", "rx", "ry", "rz")

#: Cell angles are kept strictly inside (ANGLE_MIN, ANGLE_MAX) radians. Any triple of
#: angles inside (60 deg, 120 deg) is a valid (positive-volume) cell: each angle is then
#: smaller than the sum of the other two and the three sum to less than 360 deg.
ANGLE_MIN = math.radians(60.0)
ANGLE_MAX = math.radians(120.0)
#: The reparametrization maps onto the closed range [ANGLE_MIN + margin, ANGLE_MAX - margin]
#: so that even a saturated sigmoid (exactly 0 or 1 in floating point) gives a valid cell.
ANGLE_MARGIN = math.radians(0.5)
_LO, _HI = ANGLE_MIN + ANGLE_MARGIN, ANGLE_MAX - ANGLE_MARGIN


def cell_matrix(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Cell matrices from lengths and angles (convention in the module docstring).

    Args:
        lengths: (..., 3) cell lengths a, b, c in Angstrom.
        angles: (..., 3) cell angles alpha, beta, gamma in radians.

    Returns:
        (..., 3, 3) cell matrices, rows = lattice vectors in Angstrom. Differentiable.
    """
    ca, cb, cg = torch.cos(angles).unbind(-1)
    sg = torch.sin(angles[..., 2])
    a, b, c = lengths.unbind(-1)
    cy = (ca - cb * cg) / sg
    cz = torch.sqrt((1 - cb * cb - cy * cy).clamp_min(1e-12))
    zero = torch.zeros_like(a)
    return torch.stack(
        (
            torch.stack((a, zero, zero), -1),
            torch.stack((b * cg, b * sg, zero), -1),
            torch.stack((c * cb, c * cy, c * cz), -1),
        ),
        -2,
    )


def cell_volume(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Cell volumes in Angstrom^3 for (..., 3) lengths (A) and (..., 3) angles (rad)."""
    ca, cb, cg = torch.cos(angles).unbind(-1)
    g = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    return lengths.prod(-1) * torch.sqrt(g.clamp_min(0))


def valid_angles(angles: torch.Tensor) -> torch.Tensor:
    """(..., 3) angles (rad) -> (...) bool: a cell with these angles has positive volume."""
    ca, cb, cg = torch.cos(angles).unbind(-1)
    g = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    inside = ((angles > 0) & (angles < math.pi)).all(-1)
    return inside & (g > 1e-9)


def to_unconstrained(params: torch.Tensor) -> torch.Tensor:
    """Map (..., 12) crystal parameters to the unconstrained space the optimizer works in.

    lengths -> log(length / 1 A); angles -> logit((angle - lo) / (hi - lo)) with
    lo, hi = 60.5, 119.5 deg (ANGLE_MIN/MAX -+ ANGLE_MARGIN); fractional coordinates and
    rotation vector unchanged. Angles must lie strictly inside (lo, hi).
    """
    lengths, angles, rest = params[..., :3], params[..., 3:6], params[..., 6:]
    t = (angles - _LO) / (_HI - _LO)
    return torch.cat((torch.log(lengths), torch.logit(t), rest), -1)


def from_unconstrained(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_unconstrained`: (..., 12) unconstrained -> crystal parameters."""
    lengths = torch.exp(z[..., :3])
    angles = _LO + (_HI - _LO) * torch.sigmoid(z[..., 3:6])
    return torch.cat((lengths, angles, z[..., 6:]), -1)
