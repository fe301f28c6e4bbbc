"""PatchGAN discriminators of 3DGrid-VQGAN and the random-slice selection.

The released code trains a 2D PatchGAN (pix2pixHD ``NLayerDiscriminator``: conv4 s2 + LeakyReLU,
then n_layers-1 x [conv4 s2, BatchNorm, LeakyReLU], conv4 s1 + BatchNorm + LeakyReLU,
conv4 s1 -> 1 logit map; widths double up to 512) on one random 2D slice per sample; a 3D
version is defined but unused. Both return (logits, [intermediate feature maps..., logits])
so the generator can use feature matching.
"""
from __future__ import annotations

import torch
from torch import nn


class PatchGAN(nn.Module):
    """N-layer PatchGAN, 2D (slices (B, C, H, W)) or 3D (grids (B, C, X, Y, Z)).

    Args:
        in_channels: input channels (1 for density).
        ndf: width of the first layer (64 in the released config).
        n_layers: number of stride-2 layers (3 in the released config).
        dims: 2 or 3.
    forward(x) -> (logits, feats): logits of the last layer and the list of all layer
    outputs (feats[-1] is logits).
    """

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3, dims: int = 2):
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
        norm = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
        k, p = 4, 2
        layers = [nn.Sequential(conv(in_channels, ndf, k, stride=2, padding=p),
                                nn.LeakyReLU(0.2, True))]
        nf = ndf
        for _ in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            layers.append(nn.Sequential(conv(nf_prev, nf, k, stride=2, padding=p), norm(nf),
                                        nn.LeakyReLU(0.2, True)))
        nf_prev, nf = nf, min(nf * 2, 512)
        layers.append(nn.Sequential(conv(nf_prev, nf, k, stride=1, padding=p), norm(nf),
                                    nn.LeakyReLU(0.2, True)))
        layers.append(nn.Sequential(conv(nf, 1, k, stride=1, padding=p)))
        self.layers = nn.ModuleList(layers)
        self.dims = dims

    def forward(self, x):
        feats = []
        h = x
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        return h, feats


def random_slices(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator):
    """One random 2D slice per sample, the same slice from ``real`` and ``fake``.

    Args:
        real, fake: (B, C, N, N, N) cubic grids (slices along different axes must stack).
        generator: CPU torch.Generator drawing, per sample, the axis (0..2) and the index.
    Returns:
        (real_slices, fake_slices), each (B, C, N, N); and the (B, 2) long tensor of
        (axis, index) choices.
    """
    b, _, *shape = real.shape
    if len(set(shape)) != 1:
        raise ValueError(f"2D slice discriminator needs cubic grids, got {tuple(real.shape)}")
    n = shape[0]
    axis = torch.randint(0, 3, (b,), generator=generator)
    index = torch.randint(0, n, (b,), generator=generator)
    rs, fs = [], []
    for i in range(b):
        a, j = int(axis[i]), int(index[i])
        rs.append(real[i].select(a + 1, j))
        fs.append(fake[i].select(a + 1, j))
    return torch.stack(rs), torch.stack(fs), torch.stack([axis, index], 1)


def build_discriminator(cfg) -> PatchGAN:
    """Discriminator of a :class:`VQGAN3DConfig` (``disc_type`` "2d" or "3d")."""
    if cfg.disc_type not in ("2d", "3d"):
        raise ValueError(f"disc_type must be '2d' or '3d', got {cfg.disc_type!r}")
    return PatchGAN(cfg.in_channels, cfg.disc_channels, cfg.disc_layers,
                    dims=2 if cfg.disc_type == "2d" else 3)
