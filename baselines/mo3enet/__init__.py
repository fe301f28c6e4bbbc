"""Mo3ENet: O(3)-equivariant autoencoder for typed point clouds (paper 002).

Public entry points: :class:`Mo3ENet` (model), :func:`get_config` (presets "paper", "small"),
:func:`collate_point_clouds` (batching), :func:`reconstruction_loss` / :class:`SigmaSchedule`
(loss), :func:`load_mo3enet` (from shipped weights or a training checkpoint) and
``python -m baselines.mo3enet.train``.
"""
from .benchmark import load_mo3enet
from .config import Mo3ENetConfig, get_config, paper_config, small_config
from .data import collate_point_clouds
from .loss import SigmaSchedule, reconstruction_loss
from .model import Mo3ENet

__all__ = ["Mo3ENet", "Mo3ENetConfig", "get_config", "paper_config", "small_config",
           "collate_point_clouds", "reconstruction_loss", "SigmaSchedule", "load_mo3enet"]
