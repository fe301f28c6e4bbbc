"""Molecule standard frame and rotation-vector algebra.

Standard frame (the reference pose that the crystal's rotation vector acts on):

* origin at the geometric centroid (unweighted mean of all atom positions, H included);
* axes = eigenvectors of the unit-weight inertia tensor about the centroid,
  ``I = sum_i (|r_i|^2 1 - r_i r_i^T)``, sorted by ascending moment: x is the axis of
  the smallest moment (the molecule's long direction), z the axis of the largest;
* signs: x and y are oriented so that the third moment of the atom projections on them,
  ``sum_i (r_i . e)^3``, is positive; when it vanishes (|.| < 1e-6 A^3, e.g. a
  centrosymmetric molecule) the atom with the largest |projection| (lowest index on ties)
  gets a positive projection; z = x cross y, so the frame is right-handed.

Unit weights (not atomic masses) keep the frame purely geometric, consistent with the
geometric centroid that the fractional coordinates (u, v, w) place in the cell. The frame
is unique except for molecules with degenerate moments (linear, spherical-top or
symmetric-top molecules): there the degenerate axes are whatever ``numpy.linalg.eigh``
returns, deterministic for a given input but not rotation-covariant.

Rotation vectors: ``theta`` (radians) encodes a rotation of angle |theta| about
theta/|theta|; ``rotvec_to_matrix`` gives R with x_crystal = R @ x_std (column vectors);
on row-vector coordinates use ``x @ R.T``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_SKEW_TOL = 1e-6


def standard_frame(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put one molecule into its standard frame (see module docstring).

    Args:
        coords: (N, 3) atom positions in Angstrom.

    Returns:
        (std_coords, axes, centroid): std_coords (N, 3) Angstrom in the standard frame;
        axes (3, 3) rows = the standard axes expressed in the input frame (a proper
        rotation, det +1), so ``std_coords = (coords - centroid) @ axes.T``; centroid (3,).
    """
    x = np.asarray(coords, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) == 0:
        raise ValueError(f"coords must have shape (N, 3) with N >= 1, got {x.shape}")
    centroid = x.mean(axis=0)
    r = x - centroid
    inertia = np.eye(3) * (r * r).sum() - r.T @ r
    _, vecs = np.linalg.eigh(inertia)  # ascending eigenvalues, columns are eigenvectors
    axes = vecs.T.copy()
    for k in range(2):
        proj = r @ axes[k]
        skew = float((proj**3).sum())
        if abs(skew) > _SKEW_TOL:
            flip = skew < 0
        else:
            i = int(np.argmax(np.abs(proj) - 1e-9 * np.arange(len(proj))))
            flip = proj[i] < 0
        if flip:
            axes[k] = -axes[k]
    axes[2] = np.cross(axes[0], axes[1])
    return r @ axes.T, axes, centroid


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices [v]_x."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack(
        (
            torch.stack((zero, -z, y), -1),
            torch.stack((z, zero, -x), -1),
            torch.stack((-y, x, zero), -1),
        ),
        -2,
    )


def rotvec_to_matrix(theta: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from rotation vectors (Rodrigues' formula, smooth at theta = 0).

    Args:
        theta: (..., 3) rotation vectors in radians.

    Returns:
        (..., 3, 3) proper rotation matrices R = exp([theta]_x); differentiable everywhere.
    """
    angle2 = (theta * theta).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = angle2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(angle2), angle2)
    angle = torch.sqrt(safe2)
    # sin(t)/t and (1 - cos t)/t^2, with Taylor series near t = 0
    s1 = torch.where(small, 1 - angle2 / 6, torch.sin(angle) / angle)
    s2 = torch.where(small, 0.5 - angle2 / 24, (1 - torch.cos(angle)) / safe2)
    k = _skew(theta)
    eye = torch.eye(3, dtype=theta.dtype, device=theta.device).expand_as(k)
    return eye + s1 * k + s2 * (k @ k)


def matrix_to_rotvec(rot: torch.Tensor) -> torch.Tensor:
    """Rotation vectors (angle in [0, pi]) from rotation matrices; inverse of rotvec_to_matrix.

    Args:
        rot: (..., 3, 3) proper rotation matrices.

    Returns:
        (..., 3) rotation vectors in radians. Not meant for autograd.
    """
    from scipy.spatial.transform import Rotation

    shape = rot.shape[:-2]
    flat = rot.detach().reshape(-1, 3, 3).cpu().double().numpy()
    out = Rotation.from_matrix(flat).as_rotvec() if len(flat) else np.zeros((0, 3))
    return torch.as_tensor(out, dtype=rot.dtype, device=rot.device).reshape(*shape, 3)


def canonical_rotvec(theta: torch.Tensor) -> torch.Tensor:
    """Map rotation vectors to the equivalent ones with angle in [0, pi].

    Args:
        theta: (..., 3) rotation vectors in radians.

    Returns:
        (..., 3) rotation vectors giving the same rotation, with |theta| <= pi.
    """
    angle = theta.norm(dim=-1, keepdim=True)
    wrapped = torch.remainder(angle + math.pi, 2 * math.pi) - math.pi  # in [-pi, pi)
    scale = torch.where(
        angle > 0, wrapped / angle.clamp_min(1e-30), torch.ones_like(angle)
    )
    return theta * scale


def random_rotvecs(
    n: int, generator: torch.Generator, dtype=torch.float64
) -> torch.Tensor:
    """Rotation vectors of rotations uniform on SO(3) (Haar measure).

    Uniform unit quaternions from normalised 4D Gaussians, converted to rotation vectors
    with angle in [0, pi].

    Args:
        n: number of rotations.
        generator: CPU torch generator (the draw is made on CPU for reproducibility).
        dtype: result dtype.

    Returns:
        (n, 3) rotation vectors in radians.
    """
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)  # w >= 0 -> angle in [0, pi]
    w, v = q[:, 0].clamp(max=1.0), q[:, 1:]
    angle = 2 * torch.atan2(v.norm(dim=1), w)
    vn = v.norm(dim=1).clamp_min(1e-300)
    return (v * (angle / vn)[:, None]).to(dtype)
