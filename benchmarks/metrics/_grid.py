"""Shared input handling for grid metrics: batching, dtype and the cube-file grid frame.

Grids are 3D arrays of voxel values (numpy arrays or torch tensors) of shape ``(X, Y, Z)``
(one grid) or ``(B, X, Y, Z)`` (a batch). The grid frame follows
``builders.density.schema``: grid point ``(i, j, k)`` sits at
``origin + i*axes[0] + j*axes[1] + k*axes[2]`` with ``origin`` (3,) and ``axes`` (3, 3) in Bohr.
"""
from __future__ import annotations

import numpy as np
import torch


def as_batch(x, name: str = "grid") -> torch.Tensor:
    """Return ``x`` as a float64 CPU tensor of shape (B, X, Y, Z).

    Args:
        x: numpy array or torch tensor of shape (X, Y, Z) or (B, X, Y, Z).
        name: used in error messages.
    """
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    t = t.detach().to(device="cpu", dtype=torch.float64)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4:
        raise ValueError(f"{name}: expected shape (X, Y, Z) or (B, X, Y, Z), got {tuple(t.shape)}")
    return t


def as_pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``pred`` and ``target`` (see :func:`as_batch`) and check that their shapes agree."""
    p, t = as_batch(pred, "pred"), as_batch(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    return p, t


def reduce(values: torch.Tensor, reduction: str):
    """Reduce per-sample values (B,): ``"mean"`` -> float, ``"none"`` -> numpy array (B,)."""
    if reduction == "mean":
        return float(values.mean())
    if reduction == "none":
        return values.numpy()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def frame_batch(origin, axes, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast a grid frame to a batch.

    Args:
        origin: (3,) or (B, 3), Bohr.
        axes: (3, 3) or (B, 3, 3), Bohr; row a is the step vector along grid axis a.
        batch_size: B.

    Returns:
        origin (B, 3) and axes (B, 3, 3) as float64 tensors.
    """
    o = torch.as_tensor(np.asarray(origin, dtype=np.float64))
    a = torch.as_tensor(np.asarray(axes, dtype=np.float64))
    if o.shape == (3,):
        o = o.expand(batch_size, 3)
    if a.shape == (3, 3):
        a = a.expand(batch_size, 3, 3)
    if o.shape != (batch_size, 3) or a.shape != (batch_size, 3, 3):
        raise ValueError(f"grid frame: expected origin (3,)|(B,3) and axes (3,3)|(B,3,3) with "
                         f"B={batch_size}, got {tuple(o.shape)} and {tuple(a.shape)}")
    return o, a


def voxel_volume(axes) -> torch.Tensor:
    """Voxel volume |det(axes)| in Bohr^3; ``axes`` (3, 3) -> scalar or (B, 3, 3) -> (B,)."""
    a = torch.as_tensor(np.asarray(axes, dtype=np.float64))
    return torch.linalg.det(a).abs()
