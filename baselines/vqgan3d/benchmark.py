"""3DGrid-VQGAN as a benchmark model (the protocol of :mod:`benchmarks.protocol`).

``VQGAN3DBenchmarkModel`` loads shipped weights (``baselines/vqgan3d/weights/``, written by
``python -m baselines.vqgan3d.export``) or any folder given as ``weights=``: a shipped weights
folder (``manifest.json`` + safetensors shards + ``config.json``) or a training run /
checkpoint folder of ``baselines.vqgan3d.train``.

Grids follow the seed: electron density rho (electrons / Bohr^3) -> ``log1p`` (log(rho + 1))
-> model; the model's input is a cube of ``input_size``^3 voxels (128 ``paper``, 32 ``small``).

* ``embed`` (qm9 task): each density sample (fields of :mod:`builders.density.schema`) is
  rendered with ``render_density`` at the input shape over the sample's own box (the seed's
  anisotropic stretch of the box to a cube), log1p-transformed, encoded, and the
  pre-quantization latent z_e (C, X/4, Y/4, Z/4) is pooled. ``pooling="seed"`` (default)
  reproduces the released code's ``feature_extraction``: z_e channels-last, AvgPool3d(16) over
  (Y', Z', C), i.e. an adaptive average pool of (X', Y', Z', C) to (X', 2, 2, C/16): 32 x 2 x 2
  x 16 = 2048 values for ``paper``, 8 x 2 x 2 x 4 = 128 for ``small``. ``pooling="blocks"``
  pools z_e to (C, 2, 2, 2) instead (2048 ``paper``, 512 ``small``). A sample that already
  carries a ``grid`` (raw density) is resized to the input shape instead of rendered.
* ``reconstruct`` (density-reconstruction task): each sample's ``grid`` (X, Y, Z) raw density
  (clamped at >= 0) is trilinearly resized to the input shape when different
  (``align_corners=True``: the first and last grid points stay on the box corners, as
  ``render_density`` resamples a box), log1p, encode -> quantize -> decode, expm1, resized
  back to (X, Y, Z), clamped at >= 0.

Inference runs in eval mode (no codebook update) under ``torch.no_grad`` in float32 on
``threads`` torch CPU threads (default 1).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from baselines.common import set_torch_threads
from baselines.weights import ModelSpec, build_from_weights, weights_line

from .config import VQGAN3DConfig
from .model import VQGAN3D

#: EMA bookkeeping of the codebook, used only while training; shipped weights may omit it.
TRAINING_ONLY_BUFFERS = ("quantizer.cluster_size", "quantizer.embed_sum", "quantizer.unused_steps")
SHIPPED_WEIGHTS = Path(__file__).parent / "weights"
SPEC = ModelSpec(name="vqgan3d", title="3DGrid-VQGAN", package="baselines.vqgan3d",
                 shipped=SHIPPED_WEIGHTS, parse_config=VQGAN3DConfig.from_dict, build=VQGAN3D,
                 training_only=TRAINING_ONLY_BUFFERS)
TRANSFORMS = ("log1p", "none")


def load_vqgan3d(weights=None, device: str = "cpu") -> tuple[VQGAN3D, dict]:
    """A VQGAN3D generator (float32, eval mode) and its weights' config dict
    (:func:`baselines.weights.build_from_weights` with :data:`SPEC`).

    Args:
        weights: folder of shipped weights (``manifest.json``), or a training run / checkpoint
            folder of ``baselines.vqgan3d.train``; None = ``baselines/vqgan3d/weights/``.
        device: torch device string.

    Raises:
        FileNotFoundError: no weights there, with how to train and export them.
        ValueError: the folder holds another model's weights, a bad checksum, or tensors that
            do not fit the config.
    """
    return build_from_weights(SPEC, weights, device)


def _parse_shape(shape, default: int) -> tuple[int, int, int]:
    """None -> (default,)*3; int n -> (n, n, n); "a,b,c" or a sequence of 3 -> tuple."""
    if shape is None:
        return (int(default),) * 3
    if isinstance(shape, str):
        parts = [int(p) for p in shape.replace("x", ",").split(",") if p.strip()]
        shape = parts[0] if len(parts) == 1 else parts
    if isinstance(shape, (int, np.integer)):
        return (int(shape),) * 3
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be one int or three ints, got {shape}")
    return shape


class VQGAN3DBenchmarkModel:
    """3DGrid-VQGAN behind the benchmark protocol (see the module docstring).

    Args:
        weights: weights folder (None = shipped ``baselines/vqgan3d/weights/``).
        device: "cpu" or "cuda".
        shape: model input shape in voxels: None = the preset's ``input_size``^3; an int n
            (n^3) or three ints (also "a,b,c" from the command line); each divisible by 4.
        transform: "log1p" (the seed's log(rho + 1); default) or "none" (raw density).
        pooling: embedding pooling, "seed" (default, the released code) or "blocks".
        batch_size: grids per forward pass.
        threads: torch CPU threads set at construction (None = leave torch's setting).
    """

    name = "vqgan3d"
    input_kind = "density"

    def __init__(self, weights: str | None = None, device: str = "cpu", shape=None,
                 transform: str = "log1p", pooling: str = "seed", batch_size: int = 4,
                 threads: int | None = 1):
        set_torch_threads(threads)
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        if pooling not in ("seed", "blocks"):
            raise ValueError(f"pooling must be 'seed' or 'blocks', got {pooling!r}")
        self.device = torch.device(device)
        self.model, self.info = load_vqgan3d(weights, self.device)
        print(weights_line(SPEC, self.info, weights), file=sys.stderr)
        cfg = self.model.cfg
        self.shape = _parse_shape(shape, cfg.input_size)
        if any(s < cfg.downsample or s % cfg.downsample for s in self.shape):
            raise ValueError(f"shape {self.shape}: every size must be a positive multiple of {cfg.downsample}")
        self.transform, self.pooling = transform, pooling
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.weights = str(weights) if weights is not None else str(SPEC.shipped)

    def num_parameters(self) -> int:
        """Generator parameters (encoder, decoder) plus the codebook values (K x C, learned by
        EMA rather than gradients); the discriminator is not part of the inference model."""
        return int(sum(p.numel() for p in self.model.parameters())
                   + self.model.quantizer.embeddings.numel())

    # ------------------------------------------------------------------ transforms
    def _forward_transform(self, rho: torch.Tensor) -> torch.Tensor:
        rho = rho.clamp_min(0.0)
        return torch.log1p(rho) if self.transform == "log1p" else rho

    def _inverse_transform(self, x: torch.Tensor) -> torch.Tensor:
        return torch.expm1(x) if self.transform == "log1p" else x

    @staticmethod
    def _resize(grid: torch.Tensor, shape) -> torch.Tensor:
        """(B, 1, X, Y, Z) -> (B, 1, *shape), trilinear with align_corners=True (no-op if equal)."""
        if tuple(grid.shape[2:]) == tuple(shape):
            return grid
        return F.interpolate(grid, size=tuple(shape), mode="trilinear", align_corners=True)

    def input_grid(self, sample: dict) -> torch.Tensor:
        """Raw density (electrons / Bohr^3) of one sample at the model input shape, (X, Y, Z) float32.

        A sample with ``density_matrix`` is rendered over its own box (``render_density``); one
        with a ``grid`` is resized. Raises ValueError for a sample with neither (for instance a
        point-cloud sample: this model needs density samples).
        """
        if "density_matrix" in sample:
            from builders.density import render_density

            rho = render_density(sample, shape=self.shape)
            return torch.as_tensor(np.asarray(rho), dtype=torch.float32)
        if "grid" in sample:
            g = torch.as_tensor(np.asarray(sample["grid"]), dtype=torch.float32)
            if g.ndim != 3:
                raise ValueError(f"sample {sample.get('__key__', '?')}: grid must be (X, Y, Z), got {tuple(g.shape)}")
            return self._resize(g[None, None], self.shape)[0, 0]
        raise ValueError(f"sample {sample.get('__key__', '?')}: the vqgan3d model needs density samples "
                         f"(density_matrix + basis + grid frame, see builders.density.schema) or a 'grid'; "
                         f"got fields {sorted(k for k in sample if not k.startswith('__'))}")

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def embed(self, batch: list[dict]) -> np.ndarray:
        """Pooled pre-quantization latent of each sample.

        Args:
            batch: B density samples (see :meth:`input_grid`).
        Returns:
            (B, D) float32: D = 2048 (``paper``, either pooling), 128 (``small``, "seed") or
            512 (``small``, "blocks").
        """
        out = []
        for i in range(0, len(batch), self.batch_size):
            grids = torch.stack([self.input_grid(s) for s in batch[i:i + self.batch_size]])
            x = self._forward_transform(grids)[:, None].to(self.device)
            out.append(self.model.embed(x, pooling=self.pooling).float().cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def reconstruct(self, batch: list[dict]) -> list[np.ndarray]:
        """Autoencode each sample's grid.

        Args:
            batch: B samples with ``grid`` (X, Y, Z) raw density (electrons / Bohr^3); grids of
                a batch may differ in shape.
        Returns:
            B float32 arrays (X, Y, Z): reconstructed raw density (>= 0) on the input grid.
        """
        out = []
        for k, s in enumerate(batch):
            if "grid" not in s:
                raise ValueError(f"sample {s.get('__key__', k)}: reconstruct needs a 'grid' (X, Y, Z)")
            rho = torch.as_tensor(np.asarray(s["grid"]), dtype=torch.float32)
            if rho.ndim != 3:
                raise ValueError(f"sample {s.get('__key__', k)}: grid must be (X, Y, Z), got {tuple(rho.shape)}")
            x = self._forward_transform(self._resize(rho[None, None].to(self.device), self.shape))
            x_hat, _ = self.model(x)
            rho_hat = self._resize(self._inverse_transform(x_hat.float()), rho.shape)
            out.append(rho_hat.clamp_min(0.0)[0, 0].cpu().numpy())
        return out
