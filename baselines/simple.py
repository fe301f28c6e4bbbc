"""Simple baselines: descriptor embeddings and reference reconstructions.

* ``none``: a constant embedding (what the heads learn from nothing but the target mean).
* ``volume``: molecular volume (union of vdW spheres, Angstrom^3) and atom count.
* ``inertia``: principal moments of inertia (amu Angstrom^2); posed variant: the principal
  axes (3 x 3, in the frame of the input coordinates, sign fixed by the third moment).
* ``coulomb-matrix``: sorted eigenvalues of the Coulomb matrix (Rupp et al. 2012), atomic
  units (distances in Bohr), padded with zeros to 29 (QM9's largest molecule).
* ``identity``: reconstruction returns the input (an upper bound).
* ``blur``: a known degradation of strength ``sigma``: densities are blurred by a Gaussian of
  ``sigma`` voxels; point clouds have every atom moved by exactly ``sigma`` Angstrom in a
  random direction (so the atomwise deviation is sigma, and atoms stop matching at 0.5).
"""
from __future__ import annotations

import numpy as np

from benchmarks.metrics.pointcloud import TYPE_INDEX  # type_probs columns of the reconstruction task
from builders.density.schema import BOHR_PER_ANGSTROM

ATOMIC_MASS = {1: 1.008, 6: 12.011, 7: 14.007, 8: 15.999, 9: 18.998, 15: 30.974, 16: 32.06, 17: 35.45,
               35: 79.904, 53: 126.90}


class NoEmbedding:
    """A constant embedding: heads can only learn the target mean."""

    name = "none"
    input_kind = "any"

    def embed(self, batch):
        return np.ones((len(batch), 1))

    def embed_posed(self, batch):
        return self.embed(batch)


def _masses(z):
    return np.array([ATOMIC_MASS.get(int(a), float(a) * 2.0) for a in z])


class MolecularVolume:
    """Molecular vdW volume (union of vdW spheres, Angstrom^3, on a 0.1 Angstrom line grid) and
    atom count. Volumes are cached by molecular shape (atomic numbers + sorted interatomic
    distances rounded to 1e-3 Angstrom), since crystal samples repeat their molecule posed in
    many ways."""

    name = "volume"
    input_kind = "any"

    def __init__(self, spacing: float = 0.1):
        self.spacing = float(spacing)
        self._cache: dict = {}

    def _volume(self, z, pos) -> float:
        from builders.crystals.volume import vdw_volume

        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        key = (tuple(int(a) for a in z), np.round(np.sort(d.ravel()), 3).tobytes())
        if key not in self._cache:
            self._cache[key] = float(vdw_volume(z, pos, spacing=self.spacing))
        return self._cache[key]

    def embed(self, batch):
        return np.array([[self._volume(np.asarray(s["atomic_numbers"]), np.asarray(s["positions"], np.float64)),
                          len(s["atomic_numbers"])] for s in batch])

    def embed_posed(self, batch):
        return self.embed(batch)


def principal_axes(z, pos):
    """Principal moments (3,) ascending, amu Angstrom^2, and axes (3, 3) as rows, signs fixed
    so that the third moment of the mass distribution along each axis is >= 0 and the frame is
    right-handed."""
    m = _masses(z)
    r = np.asarray(pos, np.float64) - (m[:, None] * pos).sum(0) / m.sum()
    tensor = (m[:, None, None] * ((r * r).sum(1)[:, None, None] * np.eye(3) - r[:, :, None] * r[:, None, :])).sum(0)
    moments, vecs = np.linalg.eigh(tensor)
    axes = vecs.T
    for i in range(2):
        if (m * (r @ axes[i]) ** 3).sum() < 0:
            axes[i] = -axes[i]
    axes[2] = np.cross(axes[0], axes[1])
    return moments, axes


class InertiaTensor:
    """Principal moments of inertia; posed: principal axes in the input frame + moments."""

    name = "inertia"
    input_kind = "any"

    def embed(self, batch):
        return np.array([principal_axes(s["atomic_numbers"], s["positions"])[0] for s in batch])

    def embed_posed(self, batch):
        out = []
        for s in batch:
            moments, axes = principal_axes(s["atomic_numbers"], s["positions"])
            out.append(np.concatenate([moments, axes.ravel()]))
        return np.array(out)


class CoulombMatrixEigenvalues:
    """Sorted (descending) eigenvalues of the Coulomb matrix, padded to ``size``.

    C_ii = 0.5 Z_i^2.4, C_ij = Z_i Z_j / |R_i - R_j| with distances in Bohr.
    """

    name = "coulomb-matrix"
    input_kind = "pointcloud"

    def __init__(self, size: int = 29):
        self.size = int(size)

    def embed(self, batch):
        out = np.zeros((len(batch), self.size))
        for i, s in enumerate(batch):
            z = np.asarray(s["atomic_numbers"], np.float64)
            r = np.asarray(s["positions"], np.float64) * BOHR_PER_ANGSTROM
            if len(z) > self.size:
                raise ValueError(f"molecule with {len(z)} atoms exceeds the Coulomb matrix size {self.size}")
            d = np.linalg.norm(r[:, None] - r[None], axis=-1)
            np.fill_diagonal(d, 1.0)
            cm = z[:, None] * z[None, :] / d
            np.fill_diagonal(cm, 0.5 * z ** 2.4)
            ev = np.linalg.eigvalsh(cm)
            out[i, : len(ev)] = ev[np.argsort(-np.abs(ev))]
        return out

    def embed_posed(self, batch):
        return self.embed(batch)


def _pointcloud_components(s, shift: float = 0.0, rng=None):
    """Unit-weight, pure-type components at the atoms, each moved by ``shift`` Angstrom in a
    random direction."""
    z = np.asarray(s["atomic_numbers"])
    pos = np.asarray(s["positions"], np.float64)
    probs = np.zeros((len(z), 5))
    probs[np.arange(len(z)), [TYPE_INDEX[int(a)] for a in z]] = 1.0
    if shift > 0:
        d = rng.normal(size=(len(z), 3))
        pos = pos + shift * d / np.linalg.norm(d, axis=1, keepdims=True)
    return {"positions": pos, "type_probs": probs, "weights": np.ones(len(z))}


class Identity:
    """Reconstruction = input: densities unchanged, point clouds as unit-weight components."""

    name = "identity"
    input_kind = "any"

    def reconstruct(self, batch):
        return [_pointcloud_components(s) if "grid" not in s else np.asarray(s["grid"]) for s in batch]


class Blur:
    """A known degradation. Densities: Gaussian blur of ``sigma`` voxels (scipy.ndimage).
    Point clouds: each atom moved by exactly ``sigma`` Angstrom in a random direction."""

    name = "blur"
    input_kind = "any"

    def __init__(self, sigma: float = 1.0, seed: int = 0):
        self.sigma = float(sigma)
        self.seed = int(seed)

    def reconstruct(self, batch):
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng(self.seed)
        out = []
        for s in batch:
            if "grid" in s:
                out.append(gaussian_filter(np.asarray(s["grid"], np.float64), self.sigma, mode="constant"))
            else:
                out.append(_pointcloud_components(s, self.sigma, rng))
        return out
