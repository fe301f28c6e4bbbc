"""3DGrid-VQGAN baseline (paper 000): 3D conv VQ-GAN on log(rho+1) electron-density grids.

Public API: :class:`VQGAN3D` (encode, quantize, encode_indices, decode, decode_indices,
forward, embed), :class:`VQGAN3DConfig` with presets ``paper`` / ``small`` (:func:`get_config`),
and training in :mod:`baselines.vqgan3d.train` (imported on demand).
"""
from .config import VQGAN3DConfig, get_config, paper_config, small_config
from .model import VQGAN3D

__all__ = [
           "VQGAN3D",
           "VQGAN3DConfig",
           "get_config",
           "paper_config",
           "small_config",
]
