"""Batching of typed point clouds (molecules) for Mo3ENet."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from builders.format.torch_data import collate_point_clouds as builders_collate
from builders.sources import without_hydrogens  # noqa: F401  (re-exported: what a heavy-atom model reads)

from .config import ELEMENTS
from .model import element_type_lut


def collate_point_clouds(samples: Sequence[dict]) -> dict:
    """Check molecules for Mo3ENet (H, C, N, O, F; finite positions) and concatenate them into
    one flat batch with ``builders.format.torch_data.collate_point_clouds``.

    Args:
        samples: B dicts, each with ``"atomic_numbers"`` (N,) integer array (H, C, N, O, F only)
            and ``"positions"`` (N, 3) float array in Angstrom.

    Returns:
        dict with ``z`` (sum N,) long atomic numbers, ``pos`` (sum N, 3) float32 Angstrom,
        ``batch`` (sum N,) long molecule index, ``num_atoms`` (B,) long.

    Raises:
        ValueError: naming the sample index, for an empty molecule, a shape mismatch or an
            element outside H, C, N, O, F.
    """
    if len(samples) == 0:
        raise ValueError("collate_point_clouds: got an empty list of samples")
    allowed = np.array(ELEMENTS)
    for k, s in enumerate(samples):
        z = np.asarray(s["atomic_numbers"]).reshape(-1)
        p = np.asarray(s["positions"])
        if z.size == 0:
            raise ValueError(f"sample {k}: molecule has no atoms")
        if p.shape != (z.size, 3):
            raise ValueError(f"sample {k}: positions shape {p.shape} does not match "
                             f"{z.size} atomic numbers (expected ({z.size}, 3))")
        bad = ~np.isin(z, allowed)
        if bad.any():
            raise ValueError(f"sample {k}: elements {sorted(set(z[bad].tolist()))} not supported "
                             f"(Mo3ENet types are Z in {list(ELEMENTS)})")
        if not np.isfinite(p).all():
            raise ValueError(f"sample {k}: positions contain NaN or inf")
    batch = builders_collate(list(samples), padded=False)
    return {k: batch[k] for k in ("z", "pos", "batch", "num_atoms")}


def model_inputs(samples: Sequence[dict], hydrogens: bool) -> list[dict]:
    """The samples as a model with ``ModelConfig.hydrogens = hydrogens`` reads them: unchanged
    with hydrogens, :func:`without_hydrogens` applied to each otherwise."""
    return list(samples) if hydrogens else [without_hydrogens(s) for s in samples]


def types_from_atomic_numbers(z: torch.Tensor) -> torch.Tensor:
    """Atomic numbers (n,) long -> type index (n,) long in [0, 5) for H, C, N, O, F.

    Raises ValueError for any other element.
    """
    lut = element_type_lut(z.device)
    if (z < 0).any() or (z > max(ELEMENTS)).any() or (lut[z.clamp(0, max(ELEMENTS))] < 0).any():
        raise ValueError(f"atomic numbers outside {list(ELEMENTS)} in batch")
    return lut[z]
