"""Loss terms of 3DGrid-VQGAN: hinge GAN, feature matching, perceptual (LPIPS-style).

Generator loss (released code):  4 L1(x_hat, x) + commitment + g * [1 * (-mean D(fake))
+ 4 * feature matching] + 4 * perceptual, where g = 0 before ``disc_start_step`` and 1 after.
Discriminator loss: g * hinge, 0.5 (mean relu(1 - D(real)) + mean relu(1 + D(fake))).
"""
from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

VGG_ENV = "DENSEGEN_VGG16_WEIGHTS"


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss 0.5 * (E relu(1 - D(real)) + E relu(1 + D(fake))), a scalar."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: -E D(fake), a scalar."""
    return -logits_fake.mean()


def feature_matching_loss(feats_fake: list, feats_real: list) -> torch.Tensor:
    """L1 between discriminator features of fake and (detached) real inputs.

    Sums over all layers but the final logits, each weighted 4 / (n_layers + 1) with
    n_layers = len(feats) - 2 (the released code's weighting; 1.0 per layer for 3 layers).
    """
    n = len(feats_fake) - 1
    w = 4.0 / (len(feats_fake) - 2 + 1)
    total = feats_fake[0].new_zeros((), dtype=torch.float32)
    for i in range(n):
        total = total + w * F.l1_loss(feats_fake[i].float(), feats_real[i].detach().float())
    return total


_WARNED = {"done": False}


def _warn_once(msg: str) -> None:
    if not _WARNED["done"]:
        _WARNED["done"] = True
        print(f"[vqgan3d] {msg}", file=sys.stderr, flush=True)


class VGGPerceptual(nn.Module):
    """LPIPS-style distance on 2D slices using torchvision VGG16 features (frozen).

    Slices (B, 1, H, W) of log(rho+1) are repeated to 3 channels and ImageNet-standardized
    as if they were intensities in [0, 1]. Features at relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3 are unit-normalized over channels; the distance is the sum over layers of the
    mean over channels and pixels of the squared difference. This is LPIPS with uniform
    channel weights (the learned LPIPS linear heads are not available offline), so values
    are not numerically LPIPS-v0.1.
    """

    LAYERS = (3, 8, 15, 22, 29)

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features[: self.LAYERS[-1] + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # VGG stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def _feats(self, x):
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.LAYERS:
                out.append(x / (x.norm(dim=1, keepdim=True) + 1e-10))
        return out

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Distance between slices real, fake (B, 1, H, W) -> scalar (mean over batch)."""
        fr, ff = self._feats(real), self._feats(fake)
        return sum(((a - b) ** 2).mean() for a, b in zip(fr, ff))


def load_vgg_perceptual(path: str | None = None) -> VGGPerceptual | None:
    """VGG16 perceptual loss from a local weights file, or None (with a one-time message).

    Args:
        path: torchvision VGG16 state dict, read by the project's one VGG16 loader
            :func:`benchmarks.metrics.lpips.load_vgg16_features` (.pth/.pt or .safetensors;
            the full model or the feature extractor only). Default: env
            DENSEGEN_VGG16_WEIGHTS. Nothing is ever downloaded.
    """
    path = path or os.environ.get(VGG_ENV)
    if not path or not os.path.isfile(path):
        _warn_once(f"perceptual (LPIPS) loss OFF: no VGG16 weights file "
                   f"(set {VGG_ENV} to a local torchvision vgg16 state dict; got {path!r})")
        return None
    from benchmarks.metrics.lpips import load_vgg16_features  # imports torchvision

    return VGGPerceptual(load_vgg16_features(path))
