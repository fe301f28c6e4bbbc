"""Small helpers shared by the learned baselines (one copy each)."""
from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module`` (those with ``requires_grad``; buffers,
    such as the 3DGrid-VQGAN EMA codebook, are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
