"""Configuration of the Mo3ENet autoencoder, loss and training (paper 002, appendix D).

Two presets:

* ``paper``: the hyperparameters of paper 002 appendix D (encoder node dimension 512, 2 graph
  convolutions, message dimension 64, 50 radial basis functions, 3 A cutoff, atom-type embedding
  32, 2 layers per EMLP block, bottleneck 64 vector channels; decoder GNN on 64 nodes of
  dimension 128 with 4 convolutions; AdamW weight decay 0.005; Gaussian width starting at 2).
* ``small``: the same architecture, narrower and shallower, so that it trains on 2 CPU cores
  in well under an hour (see the README numbers reported by ``train.py``).

Units: every length is in Angstrom.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: Element order of the type dimensions (H, C, N, O, F), as atomic numbers.
ELEMENTS: tuple[int, ...] = (1, 6, 7, 8, 9)


@dataclass
class ModelConfig:
    """Architecture hyperparameters (lengths in Angstrom)."""

    num_types: int = len(ELEMENTS)
    type_embedding_dim: int = 32          # paper: 32
    node_dim: int = 512                   # scalar channels per atom (paper: 512)
    vector_dim: int = 512                 # vector channels per atom (paper: not stated; = node_dim)
    message_dim: int = 64                 # paper: 64
    num_convs: int = 2                    # paper: 2 graph convolutions in the encoder
    layers_per_block: int = 2             # paper: 2 fully connected layers per EMLP block
    num_rbf: int = 50                     # paper: 50 Gaussian radial basis functions
    cutoff: float = 3.0                   # radius-graph cutoff (A), paper: 3
    radius_scale: float = 10.0            # radial normalization (A): largest molecular radius expected
    bottleneck_dim: int = 64              # vector channels of the embedding (paper: 64)
    scalar_embedding_dim: int = 512       # size of the learned invariant scalarization of the embedding
    decoder: str = "gnn"                  # "gnn" (paper's choice) or "mlp"
    num_output_nodes: int = 64            # swarm size n_j (paper: 64)
    decoder_node_dim: int = 128           # paper: 128
    decoder_vector_dim: int = 128
    decoder_convs: int = 4                # paper: 4
    decoder_neighbors: int | None = None  # None: fully connected swarm graph; k: fixed circulant graph
    decoder_rbf_max: float = 10.0         # range (A) of the decoder edge radial basis
    vector_activation_slope: float = 0.2  # VN-LeakyReLU negative slope (Deng et al. 2021)
    hydrogens: bool = True                # False: heavy atoms only in input and output (paper 002's
    #                                       first model); H atoms are dropped before encoding


@dataclass
class LossConfig:
    """Reconstruction loss and constraint coefficients (paper 002 section 3.2)."""

    type_scale: float = 2.0               # c_T: one-hot type scaling in the joint space (A)
    sigma_init: float = 2.0               # Gaussian width at the start (A), paper + DESIGN: 2
    sigma_shrink: float = 0.99            # multiply sigma by this when the loss is below threshold
    sigma_threshold: float = 0.15         # paper: 0.15
    sigma_loss_smoothing: float = 0.9     # EMA decay of the batch loss compared with the threshold
    sigma_min: float = 0.01               # hard floor (A)
    self_overlap_floor: float = 1e-3      # stop shrinking once mean (self-overlap - 1) < this
    radial_coef: float = 1.0              # L_c: output nodes beyond the molecule radius
    weight_coef: float = 1.0              # node-weight penalty
    weight_tolerance: float = 0.5         # relative shortfall of w_j below the mean that is free
    nearest_coef: float = 0.1             # c_d of eq. 6 (paper: 0.1)
    huber_beta: float = 0.01              # smooth-L1 transition of the per-atom overlap error
    position_noise: float = 0.01          # symmetry-breaking Gaussian noise on inputs (A), training only


@dataclass
class TrainConfig:
    """Optimizer, schedule, batching and checkpointing."""

    batch_size: int = 32
    weight_decay: float = 0.005           # paper: 0.005
    lr_start: float = 1e-4                # DESIGN: 1e-4 (paper: 5e-5)
    lr_peak: float = 1e-3
    lr_end: float = 1e-6
    lr_warmup_steps: int = 2000           # geometric ramp lr_start -> lr_peak
    lr_decay_steps: int = 200000          # geometric decay lr_peak -> lr_end, then constant
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 1
    seed: int = 0
    amp: bool = True                      # bfloat16 autocast on CUDA only


@dataclass
class Mo3ENetConfig:
    """Full configuration: ``model``, ``loss`` and ``train`` sections."""

    preset: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Mo3ENetConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return cls(preset=d.get("preset", "custom"),
                   model=ModelConfig(**d.get("model", {})),
                   loss=LossConfig(**d.get("loss", {})),
                   train=TrainConfig(**d.get("train", {})))


def paper_config() -> Mo3ENetConfig:
    """Hyperparameters of paper 002 appendix D."""
    return Mo3ENetConfig(preset="paper", train=TrainConfig(batch_size=64))


def small_config() -> Mo3ENetConfig:
    """A narrow model for CPU training (2 cores, < 1 hour)."""
    return Mo3ENetConfig(
        preset="small",
        model=ModelConfig(type_embedding_dim=16, node_dim=64, vector_dim=32, message_dim=32,
                          num_convs=2, layers_per_block=1, num_rbf=16, scalar_embedding_dim=64,
                          decoder_node_dim=48, decoder_vector_dim=24, decoder_convs=2,
                          decoder_neighbors=12),
        train=TrainConfig(batch_size=16, lr_warmup_steps=200, lr_decay_steps=20000,
                          checkpoint_every=200),
    )


PRESETS = {"paper": paper_config, "small": small_config}


def get_config(preset: str) -> Mo3ENetConfig:
    """Return a fresh config for ``preset`` ("paper" or "small")."""
    if preset not in PRESETS:
        raise ValueError(f"unknown Mo3ENet preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]()
