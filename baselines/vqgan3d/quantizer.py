"""EMA vector quantizer with dead-code restart (as in 3DGrid-VQGAN / TATS / VQ-VAE-2).

The codebook is not trained by gradients. In training mode every call:

1. (first call only) initializes the codebook from randomly chosen encoder outputs of the
   batch (tiled with noise of std 0.01/sqrt(D) when the batch has fewer vectors than codes),
   with cluster sizes 1 and embedding sums equal to the codes;
2. assigns each latent vector to its nearest code (squared Euclidean distance, in fp32);
3. EMA update with decay d:  N_k <- d N_k + (1-d) n_k,   m_k <- d m_k + (1-d) sum_{i->k} z_i,
   codes e_k = m_k / N~_k with Laplace-smoothed sizes N~_k = (N_k + eps) / (sum N + K eps) * sum N;
4. dead-code restart: a code whose EMA size N_k is below ``restart_threshold`` (or, when
   ``restart_unused_steps`` > 0, that was assigned no vector in that many consecutive steps)
   is replaced by a random encoder output of the current batch; its EMA state is set to
   N_k = max(threshold, 1e-3), m_k = N_k * e_k (consistent with the new code) and its unused
   counter to 0. Under DDP the counts and sums are all-reduced and the replacement vectors
   are broadcast from rank 0, so every rank holds the same codebook.

The output uses the codes of step 2 (before the update); gradients reach the encoder by the
straight-through estimator z_e + (z_q - z_e).detach() in training mode; in eval mode the
exact codebook vectors are returned, so decoding indices reproduces ``forward`` bitwise.
Randomness (init and restarts) comes from the global torch RNG, which training checkpoints.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class EMAVectorQuantizer(nn.Module):
    """Codebook of ``n_codes`` vectors of size ``dim`` with EMA updates (no learned params).

    Buffers (all saved in the state dict): ``embeddings`` (K, D), ``cluster_size`` (K),
    ``embed_sum`` (K, D), ``unused_steps`` (K, int64), ``initialized`` (bool scalar).
    """

    def __init__(self, n_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5,
                 commitment_weight: float = 0.25, restart_threshold: float = 1.0,
                 restart_unused_steps: int = 0):
        super().__init__()
        self.n_codes, self.dim = n_codes, dim
        self.decay, self.eps = decay, eps
        self.commitment_weight = commitment_weight
        self.restart_threshold = restart_threshold
        self.restart_unused_steps = restart_unused_steps
        emb = torch.randn(n_codes, dim)
        self.register_buffer("embeddings", emb)
        self.register_buffer("cluster_size", torch.zeros(n_codes))
        self.register_buffer("embed_sum", emb.clone())
        self.register_buffer("unused_steps", torch.zeros(n_codes, dtype=torch.int64))
        self.register_buffer("initialized", torch.tensor(False))

    # ------------------------------------------------------------------ helpers
    def _random_rows(self, flat: torch.Tensor, n: int) -> torch.Tensor:
        """n random rows of flat (M, D); tiled with small noise when M < n. Rank 0 decides."""
        m = flat.shape[0]
        if m < n:
            reps = (n + m - 1) // m
            flat = flat.repeat(reps, 1)
            flat = flat + torch.randn_like(flat) * (0.01 / self.dim ** 0.5)
        rows = flat[torch.randperm(flat.shape[0], device=flat.device)[:n]].contiguous()
        if _dist_on():
            dist.broadcast(rows, 0)
        return rows

    @staticmethod
    def _flatten(z: torch.Tensor) -> torch.Tensor:
        """(B, D, X, Y, Z) -> (B*X*Y*Z, D)."""
        return z.movedim(1, -1).reshape(-1, z.shape[1])

    def nearest(self, flat: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Index of the nearest code (squared L2) for each row of flat (M, D) -> (M,) int64.

        Rows are processed in chunks so the (chunk, K) distance matrix stays small
        (4096 x 16384 fp32 = 256 MiB for the paper codebook).
        """
        e = self.embeddings
        e2 = e.pow(2).sum(1)[None, :]
        out = [(f.pow(2).sum(1, keepdim=True) - 2.0 * f @ e.t() + e2).argmin(dim=1)
               for f in flat.split(chunk)]
        return torch.cat(out) if out else flat.new_zeros(0, dtype=torch.int64)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of an index grid (B, X, Y, Z) int -> (B, D, X, Y, Z) float."""
        return F.embedding(indices.long(), self.embeddings).movedim(-1, 1)

    # ------------------------------------------------------------------ updates
    @torch.no_grad()
    def _init_codebook(self, flat: torch.Tensor) -> None:
        rows = self._random_rows(flat, self.n_codes)
        self.embeddings.copy_(rows)
        self.embed_sum.copy_(rows)
        self.cluster_size.fill_(1.0)
        self.unused_steps.zero_()
        self.initialized.fill_(True)

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> int:
        """One EMA step plus dead-code restart; returns the number of codes restarted.

        Args:
            flat: (M, D) fp32 encoder outputs of the batch.
            indices: (M,) their assigned codes.
        """
        counts = torch.bincount(indices, minlength=self.n_codes).to(flat.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
        if _dist_on():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        d = self.decay
        self.cluster_size.mul_(d).add_(counts, alpha=1.0 - d)
        self.embed_sum.mul_(d).add_(sums, alpha=1.0 - d)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.n_codes * self.eps) * n
        self.embeddings.copy_(self.embed_sum / smoothed[:, None])
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)

        dead = self.cluster_size < self.restart_threshold
        if self.restart_unused_steps > 0:
            dead |= self.unused_steps >= self.restart_unused_steps
        n_dead = int(dead.sum())
        if n_dead:
            rows = self._random_rows(flat, self.n_codes)
            size0 = max(self.restart_threshold, 1e-3)
            m = dead[:, None]
            self.embeddings.copy_(torch.where(m, rows, self.embeddings))
            self.cluster_size.masked_fill_(dead, size0)
            self.embed_sum.copy_(torch.where(m, rows * size0, self.embed_sum))
            self.unused_steps.masked_fill_(dead, 0)
        return n_dead

    # ------------------------------------------------------------------ forward
    def forward(self, z_e: torch.Tensor):
        """Quantize a latent grid.

        Args:
            z_e: (B, D, X, Y, Z) encoder output (any float dtype; quantized in fp32).
        Returns:
            z_q: (B, D, X, Y, Z) fp32 codes (straight-through in training mode),
            indices: (B, X, Y, Z) int64 code indices,
            stats: dict with ``commitment_loss`` (0.25 * MSE(z_e, sg[z_q]), a tensor with grad),
            ``perplexity`` (exp entropy of the batch code histogram), ``usage`` (fraction of
            codes used by the batch), ``active`` (fraction with EMA size >= threshold),
            ``restarted`` (codes re-initialized this step).
        """
        with torch.autocast(device_type=z_e.device.type, enabled=False):
            z = z_e.float()
            flat = self._flatten(z)
            if self.training and not bool(self.initialized):
                self._init_codebook(flat.detach())
            with torch.no_grad():
                idx = self.nearest(flat.detach())
            z_q = self.lookup(idx.view(z.shape[0], *z.shape[2:]))
            commit = self.commitment_weight * F.mse_loss(z, z_q.detach())
            with torch.no_grad():
                counts = torch.bincount(idx, minlength=self.n_codes).float()
                p = counts / counts.sum()
                perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum())
                usage = (counts > 0).float().mean()
            restarted = 0
            if self.training:
                restarted = self.ema_update(flat.detach(), idx)
                z_q = z + (z_q - z).detach()
            active = (self.cluster_size >= self.restart_threshold).float().mean()
        indices = idx.view(z.shape[0], *z.shape[2:])
        stats = {"commitment_loss": commit, "perplexity": perplexity, "usage": usage,
                 "active": active, "restarted": restarted}
        return z_q, indices, stats
