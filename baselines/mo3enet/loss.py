"""Mo3ENet training loss (paper 002 section 3.2) and the Gaussian-width schedule.

Joint space: each input atom is x_i = r_i || c_T onehot(z_i) (3 + 5 dims, A), each output
swarm node y_j = p_j || c_T P_j (type probabilities), with c_T = 2 A.

Reconstruction (eq. 4, evaluated at the input atoms):
    O_i = sum_j w_j exp(-|x_i - y_j|^2 / sigma^2)      (decoded mixture at atom i)
    S_i = sum_k     exp(-|x_i - x_k|^2 / sigma^2)      (input self-overlap, k over the molecule)
    L_rec = mean_molecules mean_i huber(O_i / S_i - 1)
A perfect reconstruction (swarm = input atoms with total weight 1 per atom and the same types)
gives O_i = S_i and zero loss for any sigma. Normalizing by S_i makes the error relative; for
small sigma S_i -> 1 and this equals eq. 3. sigma enters as a length, exp(-(d/sigma)^2), as in the
authors' code (the paper writes d^2/sigma). ``huber`` is |x| (eq. 3-4) with a tiny quadratic
region |x| < beta (beta = 0.01) so the gradient is zero, not a sign, at perfect reconstruction.

Constraints (section 3.2, coefficients in LossConfig):
    L_c (radial)   mean_j relu(|p_j| - r_mol), r_mol the largest atom distance from the centroid
    L_w (weights)  mean_j relu((w_bar - w_j) / w_bar - tol), w_bar = n_i / n_j: penalizes weights
                   falling far below the swarm mean (vanishing nodes), as in the authors' code
    L_d (nearest)  c_d mean_i min_j |x_i - y_j|^2, c_d = 0.1 (eq. 6; mean instead of sum)
All per-molecule terms are averaged over the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossConfig


def one_hot_types(type_index: torch.Tensor, num_types: int, dtype) -> torch.Tensor:
    """(n,) long in [0, num_types) -> (n, num_types) one-hot of ``dtype``."""
    return F.one_hot(type_index, num_types).to(dtype)


def add_position_noise(pos: torch.Tensor, std: float, generator: torch.Generator | None = None):
    """Symmetry-breaking noise (paper 4.1): pos + N(0, std^2) per coordinate, A. (n, 3) -> (n, 3)."""
    if std <= 0:
        return pos
    noise = torch.randn(pos.shape, generator=generator, dtype=pos.dtype, device="cpu")
    return pos + std * noise.to(pos.device)


def _segment_mean(x, index, num):
    out = x.new_zeros(num).index_add_(0, index, x)
    cnt = x.new_zeros(num).index_add_(0, index, torch.ones_like(x))
    return out / cnt.clamp(min=1)


def reconstruction_loss(pos: torch.Tensor, types: torch.Tensor, batch: torch.Tensor,
                        num_atoms: torch.Tensor, decoded: dict, sigma: float,
                        cfg: LossConfig) -> tuple[torch.Tensor, dict]:
    """Total Mo3ENet loss of one batch.

    Args:
        pos: (n, 3) input positions in A, centred on each molecule's centroid (the frame of the
            decoded positions).
        types: (n,) long type index in [0, 5) (H, C, N, O, F).
        batch: (n,) molecule index; num_atoms: (B,).
        decoded: ``positions`` (B, M, 3) A, ``type_probs`` (B, M, T), ``weights`` (B, M).
        sigma: Gaussian width (A).
        cfg: coefficients.

    Returns:
        (scalar loss, stats dict of detached floats: ``reconstruction``, ``radial``,
        ``weight``, ``nearest``, ``self_overlap_excess`` = mean_i (S_i - 1)).
    """
    dtype = decoded["positions"].dtype
    pos = pos.to(dtype)
    num_graphs, m = decoded["weights"].shape
    ntypes = decoded["type_probs"].shape[-1]
    x = torch.cat([pos, cfg.type_scale * one_hot_types(types, ntypes, dtype)], dim=1)   # (n, 3+T)
    y = torch.cat([decoded["positions"], cfg.type_scale * decoded["type_probs"]], dim=-1)  # (B, M, 3+T)
    d2 = ((x[:, None, :] - y[batch]) ** 2).sum(-1)                                   # (n, M)
    overlap = (decoded["weights"][batch] * torch.exp(-d2 / sigma**2)).sum(1)          # (n,)
    with torch.no_grad():
        same = batch[:, None] == batch[None, :]
        dx2 = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        self_overlap = (torch.exp(-dx2 / sigma**2) * same).sum(1)                    # (n,)
    rel = overlap / self_overlap
    per_atom = F.smooth_l1_loss(rel, torch.ones_like(rel), reduction="none", beta=cfg.huber_beta)
    rec = _segment_mean(per_atom, batch, num_graphs)

    r_atom = torch.sqrt((pos * pos).sum(1) + 1e-12)
    r_mol = torch.zeros(num_graphs, dtype=dtype, device=pos.device).scatter_reduce(
        0, batch, r_atom, reduce="amax", include_self=False)
    r_out = torch.sqrt((decoded["positions"] ** 2).sum(-1) + 1e-12)                   # (B, M)
    radial = F.relu(r_out - r_mol[:, None]).mean(1)

    w_bar = num_atoms.to(dtype)[:, None] / m
    weight = F.relu((w_bar - decoded["weights"]) / w_bar - cfg.weight_tolerance).mean(1)

    nearest = _segment_mean(d2.min(dim=1).values, batch, num_graphs)

    total = (rec + cfg.radial_coef * radial + cfg.weight_coef * weight
             + cfg.nearest_coef * nearest).mean()
    stats = {"reconstruction": rec.mean().item(), "radial": radial.mean().item(),
             "weight": weight.mean().item(), "nearest": nearest.mean().item(),
             "self_overlap_excess": (self_overlap - 1).mean().item()}
    return total, stats


class SigmaSchedule:
    """Gaussian width schedule (paper D): start at ``sigma_init`` (A); whenever the reconstruction
    loss is below ``sigma_threshold`` (0.15) multiply sigma by ``sigma_shrink`` (1% shrink),
    unless the input self-overlap excess is already below ``self_overlap_floor`` (the paper's
    stopping rule: neighbouring atoms no longer overlap) or sigma reached ``sigma_min``.

    The paper compares its test loss with the threshold; here the loss is an exponential moving
    average (decay ``sigma_loss_smoothing``) of the training batch losses, so one easy batch
    does not trigger a shrink. Call :meth:`step` once per optimizer step.
    """

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg
        self.sigma = float(cfg.sigma_init)
        self.num_shrinks = 0
        self.loss_ema: float | None = None

    def step(self, reconstruction: float, self_overlap_excess: float) -> float:
        """Update from one training step's loss terms; returns the (new) sigma in A."""
        c = self.cfg
        a = c.sigma_loss_smoothing
        self.loss_ema = (reconstruction if self.loss_ema is None
                         else a * self.loss_ema + (1 - a) * reconstruction)
        if (self.loss_ema < c.sigma_threshold and self_overlap_excess > c.self_overlap_floor
                and self.sigma > c.sigma_min):
            self.sigma = max(self.sigma * c.sigma_shrink, c.sigma_min)
            self.num_shrinks += 1
        return self.sigma

    def state_dict(self) -> dict:
        return {"sigma": self.sigma, "num_shrinks": self.num_shrinks, "loss_ema": self.loss_ema}

    def load_state_dict(self, state: dict) -> None:
        self.sigma = float(state["sigma"])
        self.num_shrinks = int(state["num_shrinks"])
        self.loss_ema = None if state.get("loss_ema") is None else float(state["loss_ema"])
