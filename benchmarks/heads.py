"""Regression heads of the frozen-embedding protocol: one MLP per target, trained side by side.

The K heads (one per target) share nothing but their input; they are stored as stacked weight
tensors and trained in one loop for speed, which is mathematically the same as K separate
trainings (disjoint parameters, per-parameter Adam, per-target early stopping).

Head presets:

* ``paper000``: 2 hidden layers of 128 units, ReLU, dropout 0.1 (paper 000 gives the depth and
  the dropout; the width is ours, chosen so a full 12-target, 3-seed run fits a 2-core budget).
* ``paper002``: 4 fully-connected layers (3 hidden of 256 + output), GELU, no dropout or
  normalization (paper 002, appendix: "Embedding Regressor").
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm


@dataclass(frozen=True)
class HeadConfig:
    """MLP head and its training.

    Attributes:
        hidden: hidden layer widths.
        activation: ``"relu"`` or ``"gelu"``.
        dropout: dropout after each hidden activation.
        lr: Adam learning rate.
        batch_size: minibatch size.
        max_epochs: epoch limit.
        patience: epochs without validation improvement before a head stops.
        weight_decay: Adam weight decay.
    """

    hidden: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    dropout: float = 0.1
    lr: float = 1e-3
    batch_size: int = 512
    max_epochs: int = 100
    patience: int = 10
    weight_decay: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


HEADS = {
    "paper000": HeadConfig(hidden=(128, 128), activation="relu", dropout=0.1),
    "paper002": HeadConfig(hidden=(256, 256, 256), activation="gelu", dropout=0.0),
}


class StackedMLP(torch.nn.Module):
    """K independent MLPs with the same shape, evaluated together: (B, D) -> (K, B)."""

    def __init__(self, n_heads: int, d_in: int, cfg: HeadConfig, generator: torch.Generator):
        super().__init__()
        dims = (d_in, *cfg.hidden, 1)
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(a)  # torch.nn.Linear's default init
            self.weights.append(torch.nn.Parameter((torch.rand(n_heads, a, b, generator=generator) * 2 - 1) * bound))
            self.biases.append(torch.nn.Parameter((torch.rand(n_heads, 1, b, generator=generator) * 2 - 1) * bound))
        self.act = torch.nn.GELU() if cfg.activation == "gelu" else torch.nn.ReLU()
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(len(self.weights[0]), -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = self.act(h)
                if self.dropout > 0:
                    h = torch.nn.functional.dropout(h, self.dropout, self.training)
        return h.squeeze(-1)


def fit_heads(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
              x_test: np.ndarray, cfg: HeadConfig, seed: int, progress: bool = False, desc: str = "heads") -> dict:
    """Train one MLP per target column with early stopping; predict the test set.

    Args:
        x_*: (n, D) embeddings (float); standardized here with train mean/std.
        y_train, y_valid: (n, K) targets; standardized per column with train mean/std.
        cfg: head configuration. seed: seed of initialization, shuffling and dropout.
    Returns:
        dict with ``test_pred`` (n_test, K) in target units, ``valid_mae`` (K,) best validation
        MAE in target units, ``best_epoch`` (K,), ``epochs`` run.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mu_x, sd_x = x_train.mean(0), x_train.std(0)
    sd_x = np.where(sd_x > 1e-12, sd_x, 1.0)
    mu_y, sd_y = y_train.mean(0), y_train.std(0)
    sd_y = np.where(sd_y > 1e-12, sd_y, 1.0)

    def t(a):
        return torch.as_tensor(np.asarray(a, np.float32))

    xt, xv, xs = (t((a - mu_x) / sd_x) for a in (x_train, x_valid, x_test))
    yt = t((y_train - mu_y) / sd_y).T  # (K, n)
    yv = t((y_valid - mu_y) / sd_y).T
    k = yt.shape[0]
    model = StackedMLP(k, xt.shape[1], cfg, gen)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = torch.full((k,), float("inf"))
    best_epoch = torch.zeros(k, dtype=torch.long)
    best_state = [p.detach().clone() for p in model.parameters()]
    active = torch.ones(k, dtype=torch.bool)
    n = len(xt)
    bar = tqdm(range(cfg.max_epochs), desc=desc, disable=not progress, leave=False, unit="epoch")
    epoch = 0
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = (model(xt[idx]) - yt[:, idx]).abs().mean(1)
            opt.zero_grad(set_to_none=True)
            (loss * active).sum().backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = (model(xv) - yv).abs().mean(1)
        improved = (val < best) & active
        if improved.any():
            best = torch.where(improved, val, best)
            best_epoch[improved] = epoch
            for saved, p in zip(best_state, model.parameters()):
                saved[improved] = p.detach()[improved]
        active &= (epoch - best_epoch) < cfg.patience
        bar.set_postfix(val=float(best.mean()), active=int(active.sum()))
        if not active.any():
            break
    with torch.no_grad():
        for saved, p in zip(best_state, model.parameters()):
            p.copy_(saved)
        model.eval()
        pred = model(xs).T.numpy().astype(np.float64)
    return {"test_pred": pred * sd_y + mu_y, "valid_mae": best.numpy() * sd_y, "best_epoch": best_epoch.numpy(),
            "epochs": epoch + 1}
