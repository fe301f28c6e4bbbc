"""Compact storage of symmetric AO density matrices (upper triangle, float32)."""
from __future__ import annotations

import numpy as np


def pack_density_matrix(dm: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Pack a symmetric (nao, nao) matrix into its row-major upper triangle.

    Args:
        dm: (nao, nao) symmetric density matrix.
        dtype: storage dtype (float32 by default).
    Returns:
        (nao*(nao+1)/2,) array.
    """
    dm = np.asarray(dm)
    if dm.ndim != 2 or dm.shape[0] != dm.shape[1]:
        raise ValueError(f"density matrix must be square, got shape {dm.shape}")
    iu = np.triu_indices(dm.shape[0])
    return np.ascontiguousarray(dm[iu], dtype=dtype)


def unpack_density_matrix(packed: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Inverse of :func:`pack_density_matrix`: (M,) upper triangle -> (nao, nao) symmetric.

    Raises:
        ValueError: if M is not a triangular number.
    """
    packed = np.asarray(packed).ravel()
    m = packed.size
    nao = int(round((np.sqrt(8 * m + 1) - 1) / 2))
    if nao * (nao + 1) // 2 != m:
        raise ValueError(f"{m} values is not the upper triangle of a square matrix")
    dm = np.zeros((nao, nao), dtype=dtype)
    iu = np.triu_indices(nao)
    dm[iu] = packed
    dm = dm + np.triu(dm, 1).T
    return dm
