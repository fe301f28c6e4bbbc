"""Perceptual distance on central density slices with a locally stored VGG16 ("LPIPS-like").

LPIPS proper (Zhang et al. 2018) needs ImageNet VGG16 weights *and* its learned linear layers;
neither is downloaded here. :func:`lpips_slices` computes the paper's unweighted baseline
variant (named ``"lpips-vgg16-unweighted"``): every linear weight set to 1, i.e.

    d(x, y) = sum_l mean_{h,w} sum_c (f_l(x)_{chw} / |f_l(x)_{hw}| - f_l(y)_{chw} / |f_l(y)_{hw}|)^2

over the VGG16 activations relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (torchvision
``vgg16().features`` indices 3, 8, 15, 22, 29), channel-normalized with eps 1e-10, inputs scaled
with LPIPS' ScalingLayer (shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)).

Slices: for each grid pair, after the value transform (default ``"log1p"``), the central slice
along each axis (index n // 2) is mapped to [-1, 1] with the target grid's min and max
(x -> 2 (x - lo) / (hi - lo) - 1, the same affine map for pred and target, no clipping),
resized to 64 x 64 (bilinear, ``align_corners=False``) and repeated to 3 channels. The value is
the mean over the 3 slices and the batch.

The VGG16 weights come from a local file the caller names (``vgg16_weights_path``): a
torchvision ``vgg16`` state dict (keys ``features.N.*``) or a features-only one (keys ``N.*``),
as ``.safetensors`` or a torch file (loaded with ``weights_only=True``). Without one, the
result is skipped with :data:`SKIP_MESSAGE`. :func:`lpips_set` averages over a list of grid
pairs of mixed shapes, chunk by chunk; :func:`lpips_status` says whether it will run.

This is not the seed's LPIPS (the ``lpips`` package's learned VGG weights, per axis-0 slice,
each slice scaled by 2 x / max(x) - 1, ``ImageMetrics._calculate_lpips``): that needs the
``lpips`` package and ImageNet VGG16 weights, which this project does not install or fetch.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

import torch
import torch.nn.functional as F
import torchvision

from benchmarks.metrics._grid import as_pair
from benchmarks.metrics.density import apply_transform

SKIP_MESSAGE = "LPIPS skipped: no local VGG16 weights file was given"
VARIANT = "lpips-vgg16-unweighted"
TAPS = (3, 8, 15, 22, 29)
SLICE_SIZE = 64
_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


@dataclass(frozen=True)
class LPIPSResult:
    """``value`` (float, or None when skipped), ``skipped``, ``message``, ``variant``."""

    value: float | None
    skipped: bool
    message: str
    variant: str = VARIANT


def load_vgg16_features(path: str) -> torch.nn.Sequential:
    """torchvision VGG16 convolutional trunk (``vgg16().features``, 31 layers) with weights from
    a local file, in eval mode with ``requires_grad`` off. The one VGG16 loader of the project
    (LPIPS here, the 3DGrid-VQGAN perceptual loss in ``baselines.vqgan3d.losses``).

    Args:
        path: a torchvision ``vgg16`` state dict (keys ``features.N.*``; the classifier is
            ignored) or a features-only one (keys ``N.*``), as ``.safetensors`` or a torch file
            (loaded with ``weights_only=True``). Nothing is downloaded.

    Returns:
        A new module on the CPU each call (see :func:`_cached_vgg16_features`).

    Raises:
        RuntimeError: the file's tensors do not fit VGG16 (strict ``load_state_dict``).
    """
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    trunk = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    trunk.load_state_dict(state, strict=True)
    return trunk.eval().requires_grad_(False)


# LPIPS is computed chunk by chunk: load the trunk once per path and process. The cached
# module is private to this file, so no caller moves it to another device.
_cached_vgg16_features = functools.lru_cache(maxsize=2)(load_vgg16_features)


def _slices(p: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, X, Y, Z) pair -> (3B, 3, S, S) image pair in LPIPS' input convention."""
    flat = t.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1, 1)
    span = (flat.amax(1).view(-1, 1, 1, 1) - lo).clamp_min(1e-12)
    out = []
    for g in (p, t):
        g = 2 * (g - lo) / span - 1
        nx, ny, nz = g.shape[1:]
        planes = (g[:, nx // 2], g[:, :, ny // 2], g[:, :, :, nz // 2])
        imgs = [F.interpolate(s.unsqueeze(1).float(), size=(SLICE_SIZE, SLICE_SIZE),
                              mode="bilinear", align_corners=False) for s in planes]
        x = torch.cat(imgs, 0).repeat(1, 3, 1, 1)
        out.append((x - _SHIFT) / _SCALE)
    return out[0], out[1]


def _taps(trunk: torch.nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    feats = []
    for i, layer in enumerate(trunk):
        x = layer(x)
        if i in TAPS:
            feats.append(x)
        if i == TAPS[-1]:
            break
    return feats


def _unit(f: torch.Tensor) -> torch.Tensor:
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


def lpips_slices(real, fake, vgg16_weights_path: str | None = None,
                 transform: str = "log1p") -> LPIPSResult:
    """Unweighted LPIPS (VGG16) between central slices of paired grids (see module docstring).

    Args:
        real, fake: (X, Y, Z) or (B, X, Y, Z) grids, paired sample by sample.
        vgg16_weights_path: local weights file (``None``: skipped).
        transform: ``"raw"`` or ``"log1p"`` applied before slicing.

    Returns:
        :class:`LPIPSResult` (value dimensionless, lower is better, 0 for identical grids);
        ``skipped=True`` with :data:`SKIP_MESSAGE` when no local weights file.
    """
    path = vgg16_weights_path
    if not path or not os.path.isfile(path):
        return LPIPSResult(None, True, SKIP_MESSAGE)
    fk, rl = as_pair(apply_transform(fake, transform), apply_transform(real, transform))
    trunk = _cached_vgg16_features(path)
    x, y = _slices(fk, rl)
    with torch.no_grad():
        d = sum(((_unit(a) - _unit(b)) ** 2).sum(1).mean((1, 2))
                for a, b in zip(_taps(trunk, x), _taps(trunk, y)))
    return LPIPSResult(float(d.mean()), False, f"{VARIANT} on 3 central slices, weights {path}")


def lpips_status(vgg16_weights_path: str | None) -> dict:
    """Whether :func:`lpips_slices` runs with these weights: {"skipped": bool, "message": str}."""
    if not vgg16_weights_path or not os.path.isfile(vgg16_weights_path):
        return {"skipped": True, "message": SKIP_MESSAGE}
    return {"skipped": False, "message": f"{VARIANT} on 3 central slices, weights {vgg16_weights_path}"}


def lpips_set(real: list, fake: list, vgg16_weights_path: str | None, transform: str = "log1p",
              chunk: int = 16) -> float | None:
    """Mean :func:`lpips_slices` value over paired lists of grids of possibly different shapes.

    The lists are taken ``chunk`` pairs at a time (memory); within a chunk, pairs of one shape
    are scored together, and the result is the mean over all pairs.

    Args:
        real, fake: equally long lists of (X, Y, Z) grids (any float dtype, e.g. float16),
            pair i on one frame.
        vgg16_weights_path: local VGG16 weights file; ``None`` or missing -> None (skipped).
        transform: ``"raw"`` or ``"log1p"``.

    Returns:
        the mean (dimensionless), or None when skipped.
    """
    if len(real) != len(fake):
        raise ValueError(f"lpips_set: {len(real)} references but {len(fake)} reconstructions")
    if lpips_status(vgg16_weights_path)["skipped"]:
        return None
    total, n = 0.0, 0
    for a in range(0, len(real), chunk):
        groups: dict = {}
        for r, f in zip(real[a:a + chunk], fake[a:a + chunk]):
            groups.setdefault(np.shape(r), []).append((r, f))
        for pairs in groups.values():
            res = lpips_slices(np.stack([p[0] for p in pairs]).astype(np.float64),
                               np.stack([p[1] for p in pairs]).astype(np.float64),
                               vgg16_weights_path=vgg16_weights_path, transform=transform)
            total += res.value * len(pairs)
            n += len(pairs)
    return total / n
