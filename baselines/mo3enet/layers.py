"""O(3)-equivariant building blocks of Mo3ENet (paper 002 appendix A, Figure A1).

Conventions: scalar features ``s`` have shape (n, k) and are O(3) invariant; vector features
``v`` have shape (n, 3, l) (Cartesian axis in the middle, channels last, as in the paper's
[n, 3, l]) and rotate/invert with the input: v -> R v for any orthogonal R (det +1 or -1).
Only three operations touch vectors, each equivariant: channel-mixing linear maps without bias,
multiplication by invariant scalars, and the Vector-Neuron activation of Deng et al. (2021).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

_EPS = 1e-8


# ----------------------------------------------------------------------------- scatter helpers
def segment_sum(x: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum rows of ``x`` (E, ...) into ``num_segments`` groups given by ``index`` (E,)."""
    out = x.new_zeros((num_segments,) + tuple(x.shape[1:]))
    return out.index_add_(0, index, x)


def segment_max(x: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Per-group max of ``x`` (E, k) (groups without members get 0)."""
    idx = index.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    out = x.new_zeros((num_segments,) + tuple(x.shape[1:]))
    return out.scatter_reduce(0, idx, x, reduce="amax", include_self=False)


def segment_softmax(x: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Softmax of ``x`` (E, k) over the members of each group, channelwise."""
    x = x - segment_max(x, index, num_segments).detach()[index]
    ex = torch.exp(x)
    return ex / segment_sum(ex, index, num_segments)[index]


def vector_norm(v: torch.Tensor) -> torch.Tensor:
    """Smooth Euclidean norm over the Cartesian axis: (n, 3, l) -> (n, l)."""
    return torch.sqrt((v * v).sum(dim=1) + _EPS)


# ----------------------------------------------------------------------------- basic modules
class GraphLayerNorm(nn.Module):
    """Graph-wise layer normalization of scalars (paper D: 'graph-wise layer normalization').

    Mean and variance are taken over all nodes and channels of each graph, then a per-channel
    affine map is applied. Invariant to node order within a graph.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """x: (n, dim); batch: (n,) graph index of each node."""
        k = x.shape[1]
        count = segment_sum(torch.ones_like(x[:, :1]), batch, num_graphs) * k  # (G, 1)
        mean = segment_sum(x.sum(1, keepdim=True), batch, num_graphs) / count
        xc = x - mean[batch]
        var = segment_sum((xc * xc).sum(1, keepdim=True), batch, num_graphs) / count
        return xc / torch.sqrt(var[batch] + self.eps) * self.weight + self.bias


class VectorLinear(nn.Module):
    """Channel mixing of vectors without bias: (n, 3, l_in) -> (n, 3, l_out). Equivariant."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.lin = nn.Linear(dim_in, dim_out, bias=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.lin(v)


class VectorActivation(nn.Module):
    """Vector-Neuron leaky ReLU (Deng et al. 2021; paper Fig. A1(d)).

    A learned direction k = U v per channel; the component of v along -k is removed (scaled by
    the negative slope) when v . k < 0. Uses only O(3)-invariant dot products, so it commutes
    with rotations and inversions.
    """

    def __init__(self, dim: int, negative_slope: float = 0.2):
        super().__init__()
        self.direction = nn.Linear(dim, dim, bias=False)
        self.negative_slope = negative_slope

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        k = self.direction(v)
        dot = (v * k).sum(1, keepdim=True)
        k2 = (k * k).sum(1, keepdim=True) + _EPS
        neg = (dot < 0).to(v.dtype)
        return v - (1.0 - self.negative_slope) * neg * (dot / k2) * k


class Scalarizer(nn.Module):
    """Learned invariant scalarization S(v) (paper Fig. A1(c)).

    From unit vectors v_bar = v/|v| it learns ``num_axes`` internal axes a = v_bar W (linear
    combinations that rotate with the input), takes the overlaps v_bar . a (n, l, num_axes) and
    concatenates them with the norms |v| (n, l); a linear layer maps the result to ``dim_out``.
    Overlaps and norms are invariant under O(3) (inversions included).
    """

    def __init__(self, dim_in: int, dim_out: int, num_axes: int = 3):
        super().__init__()
        self.axes = nn.Linear(dim_in, num_axes, bias=False)
        self.out = nn.Linear(dim_in * (num_axes + 1), dim_out)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        norm = vector_norm(v)                       # (n, l)
        unit = v / norm[:, None, :]
        axes = self.axes(unit)                      # (n, 3, a)
        overlaps = torch.einsum("nxl,nxa->nla", unit, axes).flatten(1)
        return self.out(torch.cat([norm, overlaps], dim=1))


class GaussianRBF(nn.Module):
    """Gaussian radial basis of distances (A): (E,) -> (E, num)."""

    def __init__(self, num: int, r_max: float):
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, r_max, num), persistent=False)
        self.width = r_max / max(num - 1, 1)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((d[:, None] - self.centers.to(d.dtype)) / self.width) ** 2)


def cosine_envelope(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Smooth cutoff 0.5 (cos(pi d / cutoff) + 1) for d < cutoff, else 0: (E,) -> (E,)."""
    return torch.where(d < cutoff, 0.5 * (torch.cos(math.pi * d / cutoff) + 1.0),
                       torch.zeros_like(d))


# ----------------------------------------------------------------------------- aggregation
class AugmentedSoftmaxAggregation(nn.Module):
    """Augmented softmax aggregation (paper eqs. 13-14).

    g_k = sum_i (softmax_i(beta_k x_ik) + b_k) x_ik, with learned per-channel inverse
    temperature beta_k (softmax interpolates mean <-> max) and b_k (adds a 'sum' component).
    For vectors the softmax is taken over the channel norms |v_ik| and multiplies the vectors.
    """

    def __init__(self, dim: int, vector: bool = False):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(dim))
        self.b = nn.Parameter(torch.zeros(dim))
        self.vector = vector

    def forward(self, x: torch.Tensor, index: torch.Tensor, num_segments: int,
                degree: int | None = None) -> torch.Tensor:
        """x: (E, k) scalars or (E, 3, k) vectors; index: (E,) target segment.

        ``degree``: when the edges are sorted by target and every target has exactly this many
        (``index == arange(num_segments).repeat_interleave(degree)``, the decoder's swarm
        graph), the softmax and the sum run on an (num_segments, degree, ...) view instead of
        scatter/gather: the same function (to float rounding), ~2x faster on CPU.
        """
        key = vector_norm(x) if self.vector else x
        if degree is not None:
            z = (self.beta * key).view(num_segments, degree, -1)
            ex = torch.exp(z - z.amax(dim=1, keepdim=True).detach())
            w = ex / ex.sum(dim=1, keepdim=True) + self.b
            if self.vector:
                w = w[:, :, None, :]
            return (w * x.view(num_segments, degree, *x.shape[1:])).sum(dim=1)
        w = segment_softmax(self.beta * key, index, num_segments) + self.b
        if self.vector:
            w = w[:, None, :]
        return segment_sum(w * x, index, num_segments)


# ----------------------------------------------------------------------------- EMLP
class EMLPLayer(nn.Module):
    """One equivariant MLP layer (paper eqs. 10-11), residual on both tracks.

    s <- s + act(N(W (s + S(v)) + b));  s_g = act(N(W_g s + b_g));
    v <- v + s_g * vact(W_v v).
    (Vector normalization is off, as in the paper's best hyperparameters; no dropout.)
    """

    def __init__(self, dim_s: int, dim_v: int, negative_slope: float = 0.2):
        super().__init__()
        self.scalarize = Scalarizer(dim_v, dim_s)
        self.lin_s = nn.Linear(dim_s, dim_s)
        self.norm_s = GraphLayerNorm(dim_s)
        self.lin_g = nn.Linear(dim_s, dim_v)
        self.norm_g = GraphLayerNorm(dim_v)
        self.lin_v = VectorLinear(dim_v, dim_v)
        self.vact = VectorActivation(dim_v, negative_slope)

    def forward(self, s, v, batch, num_graphs):
        """s: (n, dim_s); v: (n, 3, dim_v); batch: (n,) graph index -> updated (s, v)."""
        s = s + F.gelu(self.norm_s(self.lin_s(s + self.scalarize(v)), batch, num_graphs))
        gate = F.gelu(self.norm_g(self.lin_g(s), batch, num_graphs))
        v = v + gate[:, None, :] * self.vact(self.lin_v(v))
        return s, v


class EMLPBlock(nn.Module):
    """A stack of ``num_layers`` :class:`EMLPLayer` (paper D: 2 per block)."""

    def __init__(self, dim_s: int, dim_v: int, num_layers: int, negative_slope: float = 0.2):
        super().__init__()
        self.layers = nn.ModuleList(EMLPLayer(dim_s, dim_v, negative_slope)
                                    for _ in range(num_layers))

    def forward(self, s, v, batch, num_graphs):
        for layer in self.layers:
            s, v = layer(s, v, batch, num_graphs)
        return s, v


# ----------------------------------------------------------------------------- convolution
class EquivariantGraphConv(nn.Module):
    """Graph convolution with scalar and vector tracks (paper eqs. 15-16).

    For an edge j -> i with invariant edge features e_ij:
      scalar message  act(LN(W2 s_i | W3 s_j | W4 e_ij)),  s_i += W1 Agg_j(message)
      vector message  (W2' v_i + W3' v_j) * (W4' e_ij),     v_i += W1' Agg^v_j(message)
    with augmented-softmax aggregation over the incoming edges of i.
    """

    def __init__(self, dim_s: int, dim_v: int, dim_msg: int, dim_edge: int):
        super().__init__()
        self.w2, self.w3, self.w4 = (nn.Linear(dim_s, dim_msg), nn.Linear(dim_s, dim_msg),
                                     nn.Linear(dim_edge, dim_msg))
        self.msg_norm = nn.LayerNorm(3 * dim_msg)
        self.agg_s = AugmentedSoftmaxAggregation(3 * dim_msg)
        self.w1 = nn.Linear(3 * dim_msg, dim_s)
        self.v2, self.v3 = VectorLinear(dim_v, dim_msg), VectorLinear(dim_v, dim_msg)
        self.v4 = nn.Linear(dim_edge, dim_msg)
        self.agg_v = AugmentedSoftmaxAggregation(dim_msg, vector=True)
        self.v1 = VectorLinear(dim_msg, dim_v)

    def forward(self, s, v, edge_src, edge_dst, edge_attr, in_degree: int | None = None):
        """s: (n, dim_s); v: (n, 3, dim_v); edges j=edge_src -> i=edge_dst; edge_attr (E, dim_edge).
        ``in_degree``: the edges are sorted by target, each with this many (see
        :class:`AugmentedSoftmaxAggregation`)."""
        n = s.shape[0]
        msg = torch.cat([self.w2(s)[edge_dst], self.w3(s)[edge_src], self.w4(edge_attr)], dim=1)
        msg = F.gelu(self.msg_norm(msg))
        s = s + self.w1(self.agg_s(msg, edge_dst, n, in_degree))
        vmsg = (self.v2(v)[edge_dst] + self.v3(v)[edge_src]) * self.v4(edge_attr)[:, None, :]
        v = v + self.v1(self.agg_v(vmsg, edge_dst, n, in_degree))
        return s, v
