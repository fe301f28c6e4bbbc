"""Configuration of the 3DGrid-VQGAN baseline (paper 000, code IBM/materials models/3dgrid_vqgan).

One dataclass holds every architecture, loss and optimizer setting; two presets:

* ``paper``: the published model. 128^3 input, encoder widths 16 -> 32 -> 64 (two stride-2
  stages, total downsampling 4 per axis), 1x1 conv to a 256-dimensional latent, codebook
  16,384 x 256, EMA decay 0.99, commitment 0.25, loss 4 L1 + commitment + hinge GAN
  + 4 LPIPS + 4 feature matching, Adam lr 3e-4 betas (0.5, 0.9), batch size 1.
  The latent of a 128^3 grid is [256, 32, 32, 32]; ``embed`` pools it to 256 x 2 x 2 x 2 = 2048
  (or, with ``embed_pooling="seed"``, exactly as the released code: AvgPool3d(16) over the
  channels-last latent, 32 x 2 x 2 x 16 = 2048).
* ``small``: the same architecture, narrower (widths 8 -> 16 -> 32, latent 64, codebook
  512 x 64) on 32^3 grids, so it trains on 2 CPU cores. ``embed`` gives 64 x 2 x 2 x 2 = 512.

Values not stated in the paper come from the released training config (vq_gan_3d.yaml):
GroupNorm with 32 groups, replicate padding, discriminator 64 channels x 3 layers, the
discriminator switched on at step 50,000, gradient clipping at 1.0, dead-code restart
threshold 1.0 on the EMA cluster size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class VQGAN3DConfig:
    """All settings of the 3DGrid-VQGAN baseline. Grid sizes are voxels per axis."""

    preset: str = "paper"
    # data
    input_size: int = 128              # grids are cubes of input_size^3 voxels, log(rho+1)
    in_channels: int = 1
    # architecture
    n_hiddens: int = 16                # width of the first conv; stages double it (16->32->64)
    n_down: int = 2                    # stride-2 stages: downsample factor 2**n_down per axis
    num_groups: int = 32               # GroupNorm groups in residual blocks
    dec_res_blocks: int = 2            # residual blocks per decoder stage (released code: 2)
    padding_type: str = "replicate"
    embedding_dim: int = 256           # latent channels = codebook vector size
    # vector quantizer
    n_codes: int = 16384
    ema_decay: float = 0.99
    ema_eps: float = 1e-5              # Laplace smoothing of the EMA cluster sizes
    commitment_weight: float = 0.25
    restart_threshold: float = 1.0     # codes with EMA cluster size below this are re-initialized
    restart_unused_steps: int = 0      # also re-initialize codes unused this many steps (0: off)
    # embedding for downstream tasks
    embed_pooling: str = "blocks"      # "blocks": z_e pooled to (C, p, p, p); "seed": released
    embed_pool: int = 2                # p for "blocks" pooling
    # discriminator
    disc_type: str = "2d"              # "2d": PatchGAN on one random slice per sample; "3d"
    disc_channels: int = 64
    disc_layers: int = 3
    disc_start_step: int = 50000       # GAN terms (generator and discriminator) from this step
    # loss weights
    l1_weight: float = 4.0
    gan_weight: float = 1.0
    feat_weight: float = 4.0
    perceptual_weight: float = 4.0
    # optimisation
    lr: float = 3e-4
    betas: tuple = (0.5, 0.9)
    grad_clip: float = 1.0
    batch_size: int = 1
    seed: int = 1234
    # bookkeeping
    log_every: int = 10
    checkpoint_every: int = 1000
    image_every: int = 1000

    @property
    def downsample(self) -> int:
        """Total downsampling factor per axis (4 for both presets)."""
        return 2 ** self.n_down

    @property
    def latent_size(self) -> int:
        """Voxels per axis of the latent grid for an input_size^3 input."""
        return self.input_size // self.downsample

    @property
    def embed_dim(self) -> int:
        """Length of ``VQGAN3D.embed`` with the default "blocks" pooling: C * embed_pool**3."""
        return self.embedding_dim * self.embed_pool ** 3

    def to_dict(self) -> dict:
        """Plain-JSON view of the config (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VQGAN3DConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def replace(self, **kw) -> VQGAN3DConfig:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **kw)


def paper_config(**overrides) -> VQGAN3DConfig:
    """The published 3DGrid-VQGAN: 128^3 input, codebook 16384 x 256, embed size 2048."""
    return VQGAN3DConfig(preset="paper").replace(**overrides)


def small_config(**overrides) -> VQGAN3DConfig:
    """A CPU-sized variant: 32^3 input, widths 8->16->32, codebook 512 x 64, embed size 512.

    The restart threshold is lowered to 0.1 because a 32^3 grid gives only 512 latent
    vectors per step for 512 codes (the paper's 128^3 grid gives 32,768 for 16,384 codes).
    """
    base = VQGAN3DConfig(
        preset="small", input_size=32, n_hiddens=8, num_groups=8, embedding_dim=64,
        n_codes=512, restart_threshold=0.1, disc_channels=16, disc_layers=3,
        disc_start_step=2000, log_every=10, checkpoint_every=500, image_every=500,
    )
    return base.replace(**overrides)


PRESETS = {"paper": paper_config, "small": small_config}


def get_config(preset: str, **overrides) -> VQGAN3DConfig:
    """Config of a named preset ("paper" or "small") with optional field overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset](**overrides)
