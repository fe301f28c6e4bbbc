"""Small helpers shared by the learned baselines (one copy each)."""
from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module`` (those with ``requires_grad``; buffers,
    such as the 3DGrid-VQGAN EMA codebook, are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def set_torch_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU thread count for the rest of the process (None: leave it).

    Raises:
        ValueError: ``threads`` below 1.
    """
    if threads is None:
        return
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(int(threads))
