"""Mo3ENet as a benchmark model (the protocol of :mod:`benchmarks.protocol`).

``Mo3ENetBenchmarkModel`` loads shipped weights (``baselines/mo3enet/weights/``, written by
``python -m baselines.mo3enet.export``) or any folder given as ``weights=``: a shipped weights
folder (``manifest.json`` + safetensors shards + ``config.json``) or, for convenience while
training, a training run / checkpoint folder of ``baselines.mo3enet.train``.

* ``embed``: the invariant scalar embedding S(g), (B, scalar_embedding_dim) (qm9 task).
* ``embed_posed``: the equivariant vector embedding g (64 x 3) of the molecule as posed in the
  input (cell) frame, flattened row-major to (B, 192) = [g_1x, g_1y, g_1z, g_2x, ...], followed
  by the scalar embedding: (B, 192 + scalar_embedding_dim) (crystal-energy task). g is
  translation invariant (the encoder centres each molecule on its atom centroid) and rotates
  with the input: g(x R^T) = g(x) R^T.
* ``reconstruct``: the decoded Gaussian mixture per molecule: positions (M, 3) Angstrom in the
  input frame (the decoder works in the centroid frame; the centroid is added back; the model
  applies no other scaling outside itself), type_probs (M, 5) over H, C, N, O, F and weights
  (M,) summing to the atom count (M = num_output_nodes, 64 in both presets).

A heavy-atom model (weights trained with ``--heavy-atoms``, ``ModelConfig.hydrogens = False``)
reads every molecule without its hydrogens, in every method; its reconstruction weights sum to
the heavy-atom count.

Inference runs in eval mode under ``torch.no_grad`` in float32, on ``threads`` torch CPU threads
(default 1: fastest on a busy 2-core machine).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from baselines.common import set_torch_threads
from baselines.weights import ModelSpec, build_from_weights, weights_line

from .config import Mo3ENetConfig
from .data import collate_point_clouds, model_inputs
from .model import Mo3ENet, molecule_centroids

SHIPPED_WEIGHTS = Path(__file__).parent / "weights"
SPEC = ModelSpec(name="mo3enet", title="Mo3ENet", package="baselines.mo3enet", shipped=SHIPPED_WEIGHTS,
                 parse_config=Mo3ENetConfig.from_dict, build=lambda cfg: Mo3ENet(cfg.model))


def load_mo3enet(weights=None, device: str = "cpu") -> tuple[Mo3ENet, dict]:
    """A Mo3ENet (float32, eval mode) and its weights' config dict
    (:func:`baselines.weights.build_from_weights` with :data:`SPEC`).

    Args:
        weights: folder of shipped weights (``manifest.json``), or a training run / checkpoint
            folder of ``baselines.mo3enet.train``; None = ``baselines/mo3enet/weights/``.
        device: torch device string.

    Raises:
        FileNotFoundError: no weights there, with how to train and export them.
        ValueError: the folder holds another model's weights, a bad checksum (see
            :func:`baselines.weights.load_sharded`), or tensors that do not fit the config.
    """
    return build_from_weights(SPEC, weights, device)


class Mo3ENetBenchmarkModel:
    """Mo3ENet behind the benchmark protocol (see the module docstring).

    Args:
        weights: weights folder (None = shipped ``baselines/mo3enet/weights/``).
        device: "cpu" or "cuda".
        batch_size: molecules per forward pass (the benchmark's batches are cut into these).
        threads: torch CPU threads set at construction (None = leave torch's setting).
    """

    name = "mo3enet"
    input_kind = "pointcloud"

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 64,
                 threads: int | None = 1):
        set_torch_threads(threads)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.info = load_mo3enet(weights, self.device)
        print(weights_line(SPEC, self.info, weights), file=sys.stderr)
        self.weights = str(weights) if weights is not None else str(SPEC.shipped)

    @property
    def hydrogens(self) -> bool:
        """Whether the weights read hydrogens (False for a heavy-atom model: the point-cloud
        task then runs its ``heavy-atoms`` variant)."""
        return bool(self.model.cfg.hydrogens)

    def num_parameters(self) -> int:
        """Trainable parameters of the autoencoder (encoder, scalarizer and decoder)."""
        return int(self.model.num_parameters())

    def _chunks(self, batch: list[dict]):
        for i in range(0, len(batch), self.batch_size):
            part = model_inputs(batch[i:i + self.batch_size], self.model.cfg.hydrogens)
            yield part, {k: v.to(self.device) for k, v in collate_point_clouds(part).items()}

    @torch.no_grad()
    def _encode(self, batch: list[dict]):
        """(g (B, 64, 3), scalar (B, D)) float32 numpy."""
        gs, ss = [], []
        for _, b in self._chunks(batch):
            g, s = self.model.encode(b)
            gs.append(g.float().cpu().numpy())
            ss.append(s.float().cpu().numpy())
        return np.concatenate(gs), np.concatenate(ss)

    def embed(self, batch: list[dict]) -> np.ndarray:
        """Invariant scalar embedding.

        Args:
            batch: B point-cloud samples (``atomic_numbers`` (N,), ``positions`` (N, 3) Angstrom).
        Returns:
            (B, scalar_embedding_dim) float32 (512 for ``paper``, 64 for ``small``).
        """
        return self._encode(batch)[1]

    def embed_posed(self, batch: list[dict]) -> np.ndarray:
        """Equivariant vector embedding in the input (cell) frame, flattened, + scalar embedding.

        Args:
            batch: B point-cloud samples posed in the cell frame (Angstrom).
        Returns:
            (B, 3 * bottleneck_dim + scalar_embedding_dim) float32: columns [0, 192) are g
            (B, 64, 3) flattened row-major (vector k's x, y, z at 3k, 3k+1, 3k+2), the rest the
            invariant scalar embedding.
        """
        g, s = self._encode(batch)
        return np.concatenate([g.reshape(len(g), -1), s], axis=1)

    @torch.no_grad()
    def reconstruct(self, batch: list[dict]) -> list[dict]:
        """Decode each molecule to a Gaussian mixture in the input frame.

        Args:
            batch: B point-cloud samples (Angstrom).
        Returns:
            B dicts: ``positions`` (M, 3) float32 Angstrom (input frame), ``type_probs`` (M, 5)
            over H, C, N, O, F, ``weights`` (M,) summing to the molecule's atom count.
        """
        out = []
        for _, b in self._chunks(batch):
            n = b["num_atoms"]
            centroid = molecule_centroids(b["pos"].float(), b["batch"], len(n))
            g, _ = self.model.encode(b)
            dec = self.model.decode(g, n)
            pos = (dec["positions"].float() + centroid[:, None, :]).cpu().numpy()
            probs = dec["type_probs"].float().cpu().numpy()
            w = dec["weights"].float().cpu().numpy()
            out.extend({"positions": pos[i], "type_probs": probs[i], "weights": w[i]} for i in range(len(n)))
        return out


HEAVY_ATOM_WEIGHTS = Path(__file__).parent / "weights-heavy"


class Mo3ENetHeavyAtomsBenchmarkModel(Mo3ENetBenchmarkModel):
    """The heavy-atom Mo3ENet (paper 002's model without hydrogens) behind the benchmark
    protocol: :class:`Mo3ENetBenchmarkModel` whose default weights are ``baselines/mo3enet/weights-heavy``
    (exported from the newest checkpoint of ``training-runs/heavy-atoms-small``; card
    ``baselines/mo3enet/MODEL_CARD-heavy.md``). It reads
    every molecule without its hydrogens; its reconstructions hold heavy atoms only, so it runs
    the point-cloud task's ``heavy-atoms`` variant (``hydrogens`` is False).

    Args: as :class:`Mo3ENetBenchmarkModel` (``weights`` None = ``weights-heavy``).
    """

    name = "mo3enet-heavy"

    def __init__(self, weights: str | None = None, **kwargs):
        super().__init__(HEAVY_ATOM_WEIGHTS if weights is None else weights, **kwargs)

