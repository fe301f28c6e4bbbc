"""3DGrid-VQGAN generator: 3D conv encoder, EMA vector quantizer, 3D conv decoder.

Layout (released code, no attention), widths for the ``paper`` preset (n_hiddens = 16):

encoder  conv3 1->16 | [conv4 stride 2 16->32, ResBlock(32)] | [conv4 s2 32->64, ResBlock(64)]
         | GroupNorm, SiLU | 1x1 conv 64->256 = z_e  (downsampling 4 per axis)
quantize EMA codebook 16,384 x 256 -> z_q
decoder  1x1 conv 256->64 | GroupNorm, SiLU | [convT4 s2 64->64, 2 ResBlock(64)]
         | [convT4 s2 64->32, 2 ResBlock(32)] | conv3 32->1

ResBlock: x + conv3(SiLU(GN(conv3(SiLU(GN(x)))))). Convolutions pad "same" with replicate
padding (the released SamePadConv3d). Grids are (B, 1, X, Y, Z) with X, Y, Z divisible by 4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VQGAN3DConfig
from .quantizer import EMAVectorQuantizer


def _same_pad(kernel: int, stride: int) -> tuple:
    """F.pad tuple for a "same" conv (output = input / stride), extra voxel on the left."""
    p = kernel - stride
    return (p // 2 + p % 2, p // 2) * 3


class SamePadConv3d(nn.Module):
    """Conv3d whose output has ceil(input/stride) voxels per axis, using explicit padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 padding_type: str = "replicate"):
        super().__init__()
        self.pad, self.mode = _same_pad(kernel, stride), padding_type
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad, mode=self.mode))


class SamePadConvTranspose3d(nn.Module):
    """Transposed Conv3d that multiplies each axis by ``stride`` (released construction)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 2,
                 padding_type: str = "replicate"):
        super().__init__()
        self.pad, self.mode = _same_pad(kernel, stride), padding_type
        self.convt = nn.ConvTranspose3d(cin, cout, kernel, stride=stride, padding=kernel - 1)

    def forward(self, x):
        return self.convt(F.pad(x, self.pad, mode=self.mode))


class ResBlock(nn.Module):
    """Pre-activation residual block: GroupNorm, SiLU, conv3, GroupNorm, SiLU, conv3, + skip."""

    def __init__(self, ch: int, num_groups: int, padding_type: str = "replicate"):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, ch, eps=1e-6)
        self.conv1 = SamePadConv3d(ch, ch, 3, padding_type=padding_type)
        self.norm2 = nn.GroupNorm(num_groups, ch, eps=1e-6)
        self.conv2 = SamePadConv3d(ch, ch, 3, padding_type=padding_type)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Encoder(nn.Module):
    """(B, C_in, X, Y, Z) -> (B, embedding_dim, X/4, Y/4, Z/4) pre-quantization latent z_e."""

    def __init__(self, cfg: VQGAN3DConfig):
        super().__init__()
        h, pt = cfg.n_hiddens, cfg.padding_type
        self.conv_first = SamePadConv3d(cfg.in_channels, h, 3, padding_type=pt)
        stages = []
        for i in range(cfg.n_down):
            cin, cout = h * 2 ** i, h * 2 ** (i + 1)
            stages.append(nn.Sequential(SamePadConv3d(cin, cout, 4, stride=2, padding_type=pt),
                                        ResBlock(cout, cfg.num_groups, pt)))
        self.stages = nn.Sequential(*stages)
        cout = h * 2 ** cfg.n_down
        self.norm_out = nn.GroupNorm(cfg.num_groups, cout, eps=1e-6)
        self.pre_vq = SamePadConv3d(cout, cfg.embedding_dim, 1, padding_type=pt)

    def forward(self, x):
        h = self.stages(self.conv_first(x))
        return self.pre_vq(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, embedding_dim, X/4, Y/4, Z/4) quantized latent -> (B, C_in, X, Y, Z) grid."""

    def __init__(self, cfg: VQGAN3DConfig):
        super().__init__()
        h, pt, n = cfg.n_hiddens, cfg.padding_type, cfg.n_down
        top = h * 2 ** n
        self.post_vq = SamePadConv3d(cfg.embedding_dim, top, 1, padding_type=pt)
        self.norm_in = nn.GroupNorm(cfg.num_groups, top, eps=1e-6)
        stages, cin = [], top
        for i in range(n):
            cout = h * 2 ** (n - i)
            blocks = [SamePadConvTranspose3d(cin, cout, 4, stride=2, padding_type=pt)]
            blocks += [ResBlock(cout, cfg.num_groups, pt) for _ in range(cfg.dec_res_blocks)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.conv_last = SamePadConv3d(cin, cfg.in_channels, 3, padding_type=pt)

    def forward(self, z):
        h = F.silu(self.norm_in(self.post_vq(z)))
        return self.conv_last(self.stages(h))


class VQGAN3D(nn.Module):
    """The 3DGrid-VQGAN autoencoder (generator side). Grids: (B, 1, X, Y, Z), log(rho+1)."""

    def __init__(self, cfg: VQGAN3DConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = EMAVectorQuantizer(
            cfg.n_codes, cfg.embedding_dim, decay=cfg.ema_decay, eps=cfg.ema_eps,
            commitment_weight=cfg.commitment_weight, restart_threshold=cfg.restart_threshold,
            restart_unused_steps=cfg.restart_unused_steps)
        self.decoder = Decoder(cfg)

    def _check(self, x: torch.Tensor) -> None:
        f = self.cfg.downsample
        if x.ndim != 5 or x.shape[1] != self.cfg.in_channels or any(s % f for s in x.shape[2:]):
            raise ValueError(f"expected grids (B, {self.cfg.in_channels}, X, Y, Z) with X, Y, Z "
                             f"divisible by {f}; got shape {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantization latent z_e: (B, 1, X, Y, Z) -> (B, C, X/4, Y/4, Z/4)."""
        self._check(x)
        return self.encoder(x)

    def quantize(self, z_e: torch.Tensor):
        """Nearest-code quantization (EMA update in training mode).

        Returns (z_q (B, C, X/4, Y/4, Z/4), indices (B, X/4, Y/4, Z/4) int64, stats dict);
        see :class:`EMAVectorQuantizer`.
        """
        return self.quantizer(z_e)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Grid from quantized latents: (B, C, X/4, Y/4, Z/4) -> (B, 1, X, Y, Z)."""
        return self.decoder(z_q)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices of a grid: (B, 1, X, Y, Z) -> (B, X/4, Y/4, Z/4) int64.

        Pure lookup (no codebook update) whatever the module's mode.
        """
        z_e = self.encode(x).float()
        flat = self.quantizer._flatten(z_e)
        idx = self.quantizer.nearest(flat)
        return idx.view(z_e.shape[0], *z_e.shape[2:])

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Grid from code indices: (B, X/4, Y/4, Z/4) int -> (B, 1, X, Y, Z)."""
        return self.decode(self.quantizer.lookup(indices))

    def forward(self, x: torch.Tensor):
        """Reconstruct a grid.

        Returns (x_hat (B, 1, X, Y, Z), aux) with aux = quantizer stats plus ``z_e`` and
        ``indices``. In training mode the codebook is EMA-updated.
        """
        z_e = self.encode(x)
        z_q, indices, stats = self.quantize(z_e)
        x_hat = self.decode(z_q)
        aux = dict(stats, z_e=z_e, indices=indices)
        return x_hat, aux

    @torch.no_grad()
    def embed(self, x: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """Molecule embedding from the pre-quantization latent z_e (B, C, X', Y', Z').

        Args:
            x: (B, 1, X, Y, Z) grids.
            pooling: None = ``cfg.embed_pooling``.
                "blocks" (default): adaptive average pool of z_e to (C, p, p, p), flattened:
                (B, C * p**3) = 256 * 2**3 = 2048 for ``paper`` (each value the mean of one
                channel over a 16^3 block of the 32^3 latent), 64 * 8 = 512 for ``small``.
                "seed": the released code's ``feature_extraction``: z_e made channels-last
                (B, X', Y', Z', C) and average-pooled by AvgPool3d(16) over its last three
                axes (Y', Z', C), so X' is kept at full resolution: (B, 32 * 2 * 2 * 16) = 2048
                for ``paper``; generalized here as an adaptive pool to (X', 2, 2, C/16)
                (8 * 2 * 2 * 4 = 128 for ``small``).
        Returns:
            (B, D) fp32.
        """
        pooling = pooling or self.cfg.embed_pooling
        z = self.encode(x).float()
        if pooling == "blocks":
            p = self.cfg.embed_pool
            return F.adaptive_avg_pool3d(z, (p, p, p)).flatten(1)
        if pooling == "seed":
            zc = z.permute(0, 2, 3, 4, 1)  # (B, X', Y', Z', C): X' plays the channel role
            return F.adaptive_avg_pool3d(zc, (2, 2, max(1, z.shape[1] // 16))).flatten(1)
        raise ValueError(f"pooling must be 'blocks' or 'seed', got {pooling!r}")
