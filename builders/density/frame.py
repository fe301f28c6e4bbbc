"""Grid frames (origin, step vectors, shape) for density samples, in Bohr.

The seed (3DGrid-VQGAN's released code, IBM/materials models/3dgrid_vqgan) called
``pyscf.tools.cubegen.density(mol, path, dm, nx=n0, ny=n1, nz=n2)`` with

    extent_i = max(atom_coords[:, i]) - min(atom_coords[:, i])     # Bohr, atoms only, NO margin
    n_i      = 6 * (int(extent_i) + 2)

and cubegen's default margin of 3.0 Bohr. ``pyscf.tools.cubegen.Cube`` then spans the box
``[min - margin, max + margin]`` (edge length ``L_i = extent_i + 2*margin``) with
``numpy.linspace(0, 1, n_i, endpoint=True)``: the first and last points lie ON the box faces and
the spacing is ``L_i / (n_i - 1)`` (about 1/6 Bohr). :func:`seed_frame` reproduces exactly this
frame; ``shape=(128, 128, 128)`` gives the same box sampled at 128 points per axis (the seed
trilinearly resized its grids to 128^3 afterwards, not keeping the aspect ratio).

A frame is the cube-file convention of ``builders.density.schema``: point (i, j, k) sits at
``grid_origin + i*grid_axes[0] + j*grid_axes[1] + k*grid_axes[2]``.
"""
from __future__ import annotations

import numpy as np

from builders.density.schema import BOHR_PER_ANGSTROM

SEED_MARGIN_BOHR = 3.0  # pyscf.tools.cubegen BOX_MARGIN default
SEED_SHAPE = (128, 128, 128)  # the size the seed resized every grid to (the releases' default shape)


def seed_points_per_axis(extent_bohr) -> np.ndarray:
    """The seed's point count per axis, ``6 * (int(extent) + 2)``.

    Args:
        extent_bohr: (3,) extent of the atoms' bounding box in Bohr, WITHOUT the margin.
    Returns:
        (3,) int32.
    """
    extent = np.asarray(extent_bohr, dtype=np.float64)
    return (6 * (extent.astype(np.int64) + 2)).astype(np.int32)


def seed_frame(positions_angstrom, margin_bohr: float = SEED_MARGIN_BOHR, shape=None,
               cubic: bool = False, spacing_bohr: float | None = None) -> dict:
    """The seed's grid frame around a molecule given in Angstrom (the samples' unit): converts
    to Bohr and calls :func:`box_frame` (see there for the arguments and the result).

    Args:
        positions_angstrom: (N, 3) atom positions, Angstrom.
    """
    pos = np.asarray(positions_angstrom, dtype=np.float64).reshape(-1, 3) * BOHR_PER_ANGSTROM
    return box_frame(pos, margin_bohr=margin_bohr, shape=shape, cubic=cubic, spacing_bohr=spacing_bohr)


def box_frame(positions_bohr, margin_bohr: float = SEED_MARGIN_BOHR, shape=None,
              cubic: bool = False, spacing_bohr: float | None = None) -> dict:
    """Grid frame around a molecule: bounding box of the atoms + ``margin_bohr`` on each side.

    Args:
        positions_bohr: (N, 3) atom positions, Bohr.
        margin_bohr: margin added on each side of the atoms' bounding box, Bohr.
        shape: (3,) points per axis. ``None``: the seed's ``6*(int(extent_i)+2)`` with
            ``extent_i`` the atoms' extent WITHOUT margin (with ``cubic``: the largest extent).
            Ignored when ``spacing_bohr`` is given.
        cubic: use the largest box edge on every axis, centred on the atoms' bounding-box centre.
        spacing_bohr: fixed point spacing in Bohr; the point count per axis becomes
            ``ceil(L_i / spacing) + 1`` and the box grows symmetrically to ``(n_i - 1) * spacing``
            so that the margin is at least ``margin_bohr``.
    Returns:
        dict with ``grid_origin`` (3,) float64 Bohr (first point, on the box corner),
        ``grid_axes`` (3, 3) float64 Bohr (diagonal; row a = step along axis a) and
        ``grid_shape`` (3,) int32. First and last points lie on the box faces
        (cubegen's ``endpoint=True`` convention): step_i = L_i / (n_i - 1).
    """
    pos = np.asarray(positions_bohr, dtype=np.float64).reshape(-1, 3)
    if pos.shape[0] == 0:
        raise ValueError("a grid frame needs at least one atom")
    if margin_bohr < 0:
        raise ValueError(f"margin_bohr must be >= 0, got {margin_bohr}")
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    extent = hi - lo
    centre = 0.5 * (lo + hi)
    if cubic:
        extent = np.full(3, extent.max())
    length = extent + 2.0 * margin_bohr

    if spacing_bohr is not None:
        if spacing_bohr <= 0:
            raise ValueError(f"spacing_bohr must be > 0, got {spacing_bohr}")
        n = (np.ceil(length / spacing_bohr - 1e-9).astype(np.int64) + 1).astype(np.int32)
        length = (n - 1) * float(spacing_bohr)
        step = np.full(3, float(spacing_bohr))
    else:
        n = seed_points_per_axis(extent) if shape is None else np.asarray(shape, dtype=np.int32).reshape(3)
        if np.any(n < 2):
            raise ValueError(f"grid shape must have >= 2 points per axis, got {tuple(int(v) for v in n)}")
        step = length / (n - 1)
    origin = centre - 0.5 * length
    return {
        "grid_origin": origin.astype(np.float64),
        "grid_axes": np.diag(step).astype(np.float64),
        "grid_shape": np.asarray(n, dtype=np.int32),
    }


def grid_points(origin, axes, shape) -> np.ndarray:
    """All grid points of a frame, (n1*n2*n3, 3) float64 Bohr, C order (last axis fastest).
    The one definition of where a grid's points are: the renderer and the density metrics
    both use it (``.reshape(*shape, 3)`` gives the (X, Y, Z, 3) form).

    Args:
        origin: (3,) Bohr. axes: (3, 3) Bohr, row a = step along grid axis a. shape: (3,) points.
    """
    idx = [np.arange(n, dtype=np.float64) for n in np.asarray(shape, dtype=np.int64).ravel()]
    g = np.stack(np.meshgrid(*idx, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.asarray(origin, dtype=np.float64) + g @ np.asarray(axes, dtype=np.float64)
