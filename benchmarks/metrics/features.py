"""Feature extractors for FID / KID on density grids, registered with torch-fidelity.

Both take a batch of (already transformed, see ``benchmarks.metrics.density.apply_transform``)
grids of shape (B, X, Y, Z), any float dtype, and return float64 features.

``densegen-central-slice-rows`` (no neural network). For each grid, the central slice along
each axis (index n // 2: planes (Y, Z), (X, Z), (X, Y), in that order) is resized to 128 x 128
with bilinear interpolation (``torch.nn.functional.interpolate``, ``align_corners=False``; a
128^3 grid's slices are passed unchanged), and every row of every slice is one feature vector
of length 128. A grid therefore yields 3 * 128 = 384 feature rows: FID / KID statistics are
over rows, not grids (torch-fidelity concatenates whatever the extractor returns along dim 0).
Feature name: ``"rows"``. The rows of all grids of a set are POOLED and the two sets are
compared UNPAIRED, so this is NOT the seed's FID/KID (which pairs each reconstruction with its
own reference, over all axis-0 slices: ``benchmarks.metrics.seed``): a model that returns
another molecule's density scores ~0 here. ``densegen-slice-rows`` is a deprecated alias of the
same extractor (:data:`SLICE_ROWS`), kept registered until callers move to
:data:`CENTRAL_ROWS`.

``densegen-3dnet-v1``: a fixed random 3D conv net. The grid is resized to 32^3: area averaging
(``interpolate(mode="area")``, anti-aliased) when every side is >= 32, else trilinear
(``align_corners=False``); then conv3d(1->8, k3, pad 1) -> ReLU -> avgpool 2 ->
conv3d(8->16) -> ReLU -> avgpool 2 -> conv3d(16->32) -> ReLU, then the spatial mean and the
spatial max of each of the 32 channels: a 64-vector per grid (feature name ``"pool"``; the max
makes the features sensitive to peak sharpness, which mean pooling alone barely sees).
Weights are drawn once from ``torch.Generator`` seeded with 20250 as float64 standard normals
scaled by sqrt(2 / fan_in) (Kaiming normal), no biases; the SHA-256 of the little-endian
float64 weight bytes (layer order) is checked against :data:`NET3D_SHA256` at construction, so
any change in the weights is caught. The convolutions run in float32 (weights rounded once
from the float64 draw; float64 conv3d on CPU is ~7x slower; TF32 off on GPU); features are
returned as float64.
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

CENTRAL_ROWS = "densegen-central-slice-rows"
SLICE_ROWS = "densegen-slice-rows"          # deprecated alias of CENTRAL_ROWS
ROW_EXTRACTORS = (CENTRAL_ROWS, SLICE_ROWS)
NET3D = "densegen-3dnet-v1"
SLICE_SIZE = 128
NET3D_INPUT = 32
NET3D_CHANNELS = (1, 8, 16, 32)
NET3D_SEED = 20250
NET3D_SHA256 = "f5f96940a3bfcbf9f10c9d45d78cc5172bfe29dc472dedf1bcbc4935c2667acc"


def _check_batch(x: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() != 4:
        got = getattr(x, "shape", type(x))
        raise ValueError(f"expected a (B, X, Y, Z) tensor of grids, got {got}")
    return x.to(torch.float64)


def central_slice_rows(grids: torch.Tensor, size: int = SLICE_SIZE) -> torch.Tensor:
    """Rows of the three central slices of each grid, resized to ``size`` x ``size``.

    Args:
        grids: (B, X, Y, Z).
    Returns:
        (B * 3 * size, size) float64: for each grid, slices along axis 0, 1, 2, each row by row.
    """
    g = _check_batch(grids)
    b, nx, ny, nz = g.shape
    planes = (g[:, nx // 2, :, :], g[:, :, ny // 2, :], g[:, :, :, nz // 2])
    out = [F.interpolate(p.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
           for p in planes]
    return torch.cat(out, dim=1).reshape(b * 3 * size, size)


class SliceRowsExtractor(FeatureExtractorBase):
    """torch-fidelity extractor ``densegen-central-slice-rows`` (see module docstring)."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return ("rows",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "rows"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 8, 8, 8, dtype=torch.float64)

    def forward(self, x):
        return (central_slice_rows(x),)


def net3d_weights() -> list[torch.Tensor]:
    """The fixed weights of ``densegen-3dnet-v1``: [conv1.w, conv2.w, conv3.w] (float64)."""
    gen = torch.Generator().manual_seed(NET3D_SEED)
    ws = []
    for cin, cout in zip(NET3D_CHANNELS[:-1], NET3D_CHANNELS[1:]):
        w = torch.randn(cout, cin, 3, 3, 3, generator=gen, dtype=torch.float64)
        ws.append(w * (2.0 / (cin * 27)) ** 0.5)
    return ws


def weights_sha256(weights) -> str:
    """SHA-256 hex digest of the little-endian float64 bytes of ``weights``, in order."""
    h = hashlib.sha256()
    for w in weights:
        h.update(w.detach().cpu().to(torch.float64).contiguous().numpy().astype("<f8").tobytes())
    return h.hexdigest()


class Net3DExtractor(FeatureExtractorBase):
    """torch-fidelity extractor ``densegen-3dnet-v1`` (see module docstring)."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        ws = net3d_weights()
        digest = weights_sha256(ws)
        if digest != NET3D_SHA256:
            raise RuntimeError(f"{NET3D}: weight checksum {digest} != expected {NET3D_SHA256}; "
                               "the generated weights changed, FID/KID values are not comparable")
        for i, w in enumerate(ws):
            self.register_buffer(f"w{i}", w.to(torch.float32))

    @staticmethod
    def get_provided_features_list():
        return ("pool",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "pool"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, NET3D_INPUT, NET3D_INPUT, NET3D_INPUT, dtype=torch.float64)

    def forward(self, x):
        x = _check_batch(x).to(device=self.w0.device, dtype=self.w0.dtype).unsqueeze(1)
        if min(x.shape[2:]) >= NET3D_INPUT:
            x = F.interpolate(x, size=(NET3D_INPUT,) * 3, mode="area")
        else:
            x = F.interpolate(x, size=(NET3D_INPUT,) * 3, mode="trilinear", align_corners=False)
        # full float32 on GPU: no TF32, deterministic cuDNN algorithms
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled,
                                        deterministic=True, allow_tf32=False):
            x = F.avg_pool3d(F.relu(F.conv3d(x, self.w0, padding=1)), 2)
            x = F.avg_pool3d(F.relu(F.conv3d(x, self.w1, padding=1)), 2)
            x = F.relu(F.conv3d(x, self.w2, padding=1))
        return (torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1).to(torch.float64),)


def register() -> None:
    """Register the extractors (and the deprecated alias) with torch-fidelity (idempotent)."""
    for name, cls in ((CENTRAL_ROWS, SliceRowsExtractor), (SLICE_ROWS, SliceRowsExtractor),
                      (NET3D, Net3DExtractor)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)


register()
