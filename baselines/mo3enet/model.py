"""Mo3ENet: O(3)-equivariant autoencoder for typed point clouds (paper 002, sections 3.1, A).

Encoder: atoms -> radius graph (cutoff 3 A) -> [EMLP block, graph convolution] x num_convs ->
EMLP block -> augmented-softmax aggregation over atoms -> graph-level EMLP block -> linear map
of the vector channels to the equivariant embedding g (B, 64, 3).
Scalar embedding: the learned scalarizer S(g) (norms of the 64 vectors + their overlaps with 3
learned internal axes, then a linear layer), invariant under O(3) (Fig. A1(c)).
Decoder ("gnn", the paper's choice, or "mlp"): from (S(g), g) a learned linear map creates a
fixed swarm of ``num_output_nodes`` nodes with scalars, vectors and initial positions; EMLP
blocks and graph convolutions on the fully connected swarm graph follow; outputs are positions
(equivariant, A, in the frame of the input centroid), type logits over H, C, N, O, F
(invariant) and weights = softmax over the swarm x atom count (invariant, sum = atom count).

Batches are the flat dicts of :func:`baselines.mo3enet.data.collate_point_clouds`.
"""
from __future__ import annotations

import torch
from torch import nn

from baselines.common import count_parameters

from .config import ELEMENTS, ModelConfig
from .layers import (EMLPBlock, EquivariantGraphConv, GaussianRBF, AugmentedSoftmaxAggregation,
                     Scalarizer, VectorLinear, cosine_envelope, segment_sum)


def element_type_lut(device=None) -> torch.Tensor:
    """Atomic number -> Mo3ENet type index: (max(ELEMENTS) + 1,) long, entry Z = the index of Z
    in ``ELEMENTS`` (H, C, N, O, F -> 0..4), -1 for every other element."""
    lut = torch.full((max(ELEMENTS) + 1,), -1, dtype=torch.long, device=device)
    lut[torch.tensor(ELEMENTS, device=device)] = torch.arange(len(ELEMENTS), device=device)
    return lut


def molecule_centroids(pos: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Each molecule's centroid (unweighted mean of atom positions).

    pos: (sum N, 3) A; batch: (sum N,) molecule index -> (num_graphs, 3) A.
    """
    count = segment_sum(torch.ones_like(pos[:, :1]), batch, num_graphs)
    return segment_sum(pos, batch, num_graphs) / count


def center_positions(pos: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Subtract each molecule's centroid (:func:`molecule_centroids`).

    pos: (sum N, 3) A; batch: (sum N,) -> (sum N, 3) A.
    """
    return pos - molecule_centroids(pos, batch, num_graphs)[batch]


def radius_graph(pos: torch.Tensor, batch: torch.Tensor, cutoff: float):
    """Directed edges j -> i between distinct atoms of the same molecule closer than ``cutoff``.

    pos: (n, 3) A; batch: (n,). Returns (src, dst), each (E,) long. Dense torch.cdist over the
    batch (n^2 memory; fine for molecules of <= ~100 atoms and batches of a few thousand atoms).
    """
    with torch.no_grad():
        d = torch.cdist(pos, pos)
        mask = (d < cutoff) & (batch[:, None] == batch[None, :])
        mask.fill_diagonal_(False)
        dst, src = mask.nonzero(as_tuple=True)
    return src, dst


def _edge_lengths(pos: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    diff = pos[src] - pos[dst]
    return torch.sqrt((diff * diff).sum(1) + 1e-12)


def swarm_graph(num_nodes: int, neighbors: int | None):
    """Edges (src, dst) of the decoder swarm graph, indices in [0, num_nodes).

    ``neighbors=None``: fully connected (no self loops). Otherwise node i receives messages from
    the ``neighbors`` nodes i +- 1, i +- 2, ... (mod num_nodes): a fixed circulant graph on the
    node index. Swarm nodes are created by a learned linear map, so they are distinguishable by
    index and any fixed index graph keeps the decoder exactly O(3) equivariant; this one costs
    ``neighbors`` / (num_nodes - 1) of the fully connected graph.
    """
    if neighbors is None or neighbors >= num_nodes - 1:
        src, dst = torch.meshgrid(torch.arange(num_nodes), torch.arange(num_nodes), indexing="ij")
        keep = src != dst
        return src[keep], dst[keep]
    half = list(range(1, (neighbors + 1) // 2 + 1))
    offsets = torch.tensor(half + [-k for k in half][: neighbors - len(half)])
    dst = torch.arange(num_nodes).repeat_interleave(offsets.numel())
    src = (dst + offsets.repeat(num_nodes)) % num_nodes
    return src, dst


class Mo3ENetEncoder(nn.Module):
    """Point cloud -> (vector embedding (B, 3, bottleneck) internal layout)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("type_lut", element_type_lut(), persistent=False)
        self.type_embedding = nn.Embedding(cfg.num_types, cfg.type_embedding_dim)
        self.embed_s = nn.Linear(cfg.type_embedding_dim + 1, cfg.node_dim)
        self.embed_v = VectorLinear(1, cfg.vector_dim)
        self.rbf = GaussianRBF(cfg.num_rbf, cfg.cutoff)
        self.blocks = nn.ModuleList(
            EMLPBlock(cfg.node_dim, cfg.vector_dim, cfg.layers_per_block, cfg.vector_activation_slope)
            for _ in range(cfg.num_convs + 1))
        self.convs = nn.ModuleList(
            EquivariantGraphConv(cfg.node_dim, cfg.vector_dim, cfg.message_dim, cfg.num_rbf)
            for _ in range(cfg.num_convs))
        self.agg_s = AugmentedSoftmaxAggregation(cfg.node_dim)
        self.agg_v = AugmentedSoftmaxAggregation(cfg.vector_dim, vector=True)
        self.graph_block = EMLPBlock(cfg.node_dim, cfg.vector_dim, cfg.layers_per_block,
                                     cfg.vector_activation_slope)
        self.bottleneck = VectorLinear(cfg.vector_dim, cfg.bottleneck_dim)

    def forward(self, z, pos, batch, num_graphs):
        """z (n,) atomic numbers; pos (n, 3) centred A; batch (n,) -> g (B, 3, bottleneck)."""
        types = self.type_lut[z]
        if (types < 0).any():
            raise ValueError("Mo3ENet: atomic numbers outside H, C, N, O, F in batch")
        r = pos / self.cfg.radius_scale
        rnorm = torch.sqrt((r * r).sum(1, keepdim=True) + 1e-12)
        s = self.embed_s(torch.cat([self.type_embedding(types), rnorm], dim=1))
        v = self.embed_v(r[:, :, None])
        src, dst = radius_graph(pos, batch, self.cfg.cutoff)
        d = _edge_lengths(pos, src, dst)
        e = self.rbf(d) * cosine_envelope(d, self.cfg.cutoff)[:, None]
        for block, conv in zip(self.blocks[:-1], self.convs):
            s, v = block(s, v, batch, num_graphs)
            s, v = conv(s, v, src, dst, e)
        s, v = self.blocks[-1](s, v, batch, num_graphs)
        gs = self.agg_s(s, batch, num_graphs)
        gv = self.agg_v(v, batch, num_graphs)
        graph_index = torch.arange(num_graphs, device=pos.device)
        gs, gv = self.graph_block(gs, gv, graph_index, num_graphs)
        return self.bottleneck(gv)


class Mo3ENetGNNDecoder(nn.Module):
    """(S(g), g) -> swarm of ``num_output_nodes`` points via a GNN on the fully connected swarm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        m, ks, kv = cfg.num_output_nodes, cfg.decoder_node_dim, cfg.decoder_vector_dim
        self.init_s = nn.Linear(cfg.scalar_embedding_dim, m * ks)
        self.init_v = VectorLinear(cfg.bottleneck_dim, m * kv)
        self.init_pos = VectorLinear(cfg.bottleneck_dim, m)
        self.rbf = GaussianRBF(cfg.num_rbf, cfg.decoder_rbf_max)
        self.blocks = nn.ModuleList(EMLPBlock(ks, kv, cfg.layers_per_block, cfg.vector_activation_slope)
                                    for _ in range(cfg.decoder_convs + 1))
        self.convs = nn.ModuleList(EquivariantGraphConv(ks, kv, cfg.message_dim, cfg.num_rbf)
                                   for _ in range(cfg.decoder_convs))
        self.out_pos = VectorLinear(kv, 1)
        self.out_s = nn.Linear(ks, cfg.num_types + 1)
        src, dst = swarm_graph(m, cfg.decoder_neighbors)
        self.register_buffer("edge_src", src, persistent=False)
        self.register_buffer("edge_dst", dst, persistent=False)
        degree = len(dst) // m
        # every swarm node receives the same number of edges, sorted by target: dense aggregation
        self.in_degree = degree if torch.equal(dst, torch.arange(m).repeat_interleave(degree)) else None

    def forward(self, gs, gv):
        """gs (B, D) invariant; gv (B, 3, bottleneck) -> pos (B, M, 3) A, logits (B, M, types+1)."""
        b, m = gs.shape[0], self.cfg.num_output_nodes
        ks, kv = self.cfg.decoder_node_dim, self.cfg.decoder_vector_dim
        s = self.init_s(gs).view(b * m, ks)
        v = self.init_v(gv).view(b, 3, m, kv).permute(0, 2, 1, 3).reshape(b * m, 3, kv)
        p0 = self.init_pos(gv).permute(0, 2, 1).reshape(b * m, 3) * self.cfg.radius_scale
        batch = torch.arange(b, device=gs.device).repeat_interleave(m)
        offset = (torch.arange(b, device=gs.device) * m).repeat_interleave(self.edge_src.numel())
        src = self.edge_src.repeat(b) + offset
        dst = self.edge_dst.repeat(b) + offset
        e = self.rbf(_edge_lengths(p0, src, dst))
        for block, conv in zip(self.blocks[:-1], self.convs):
            s, v = block(s, v, batch, b)
            s, v = conv(s, v, src, dst, e, self.in_degree)
        s, v = self.blocks[-1](s, v, batch, b)
        pos = p0 + self.out_pos(v)[:, :, 0] * self.cfg.radius_scale
        return pos.view(b, m, 3), self.out_s(s).view(b, m, -1)


class Mo3ENetMLPDecoder(nn.Module):
    """(S(g), g) -> swarm through graph-level EMLP blocks (the paper's EMLP decoder option)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        m, ks, kv = cfg.num_output_nodes, cfg.decoder_node_dim, cfg.decoder_vector_dim
        self.in_s = nn.Linear(cfg.scalar_embedding_dim, ks)
        self.in_v = VectorLinear(cfg.bottleneck_dim, kv)
        self.blocks = nn.ModuleList(EMLPBlock(ks, kv, cfg.layers_per_block, cfg.vector_activation_slope)
                                    for _ in range(cfg.decoder_convs))
        self.out_pos = VectorLinear(kv, m)
        self.out_s = nn.Linear(ks, m * (cfg.num_types + 1))

    def forward(self, gs, gv):
        b, m = gs.shape[0], self.cfg.num_output_nodes
        s, v = self.in_s(gs), self.in_v(gv)
        index = torch.arange(b, device=gs.device)
        for block in self.blocks:
            s, v = block(s, v, index, b)
        pos = self.out_pos(v).permute(0, 2, 1) * self.cfg.radius_scale
        return pos, self.out_s(s).view(b, m, -1)


class Mo3ENet(nn.Module):
    """The autoencoder. See the module docstring for the architecture."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Mo3ENetEncoder(cfg)
        self.scalarizer = Scalarizer(cfg.bottleneck_dim, cfg.scalar_embedding_dim)
        if cfg.decoder == "gnn":
            self.decoder = Mo3ENetGNNDecoder(cfg)
        elif cfg.decoder == "mlp":
            self.decoder = Mo3ENetMLPDecoder(cfg)
        else:
            raise ValueError(f"unknown decoder {cfg.decoder!r}: use 'gnn' or 'mlp'")

    def num_parameters(self) -> int:
        """Number of trainable parameters (:func:`baselines.common.count_parameters`)."""
        return count_parameters(self)

    def scalarize(self, vector_embedding: torch.Tensor) -> torch.Tensor:
        """Invariant scalar embedding of a vector embedding: (B, 64, 3) -> (B, scalar_embedding_dim)."""
        return self.scalarizer(vector_embedding.transpose(1, 2))

    def encode(self, batch: dict):
        """Embed a batch of molecules.

        Args:
            batch: dict from ``collate_point_clouds``: ``z`` (n,), ``pos`` (n, 3) A,
                ``batch`` (n,), ``num_atoms`` (B,). Positions are centred on each molecule's
                centroid internally; float dtype follows the model parameters.

        Returns:
            (vector_embedding (B, 64, 3) equivariant, scalar_embedding (B, D) invariant).
        """
        dtype = self.scalarizer.out.weight.dtype
        num_graphs = int(batch["num_atoms"].shape[0])
        pos = center_positions(batch["pos"].to(dtype), batch["batch"], num_graphs)
        gv = self.encoder(batch["z"], pos, batch["batch"], num_graphs)      # (B, 3, 64)
        g = gv.transpose(1, 2)
        return g, self.scalarize(g)

    def decode(self, vector_embedding: torch.Tensor, num_atoms: torch.Tensor) -> dict:
        """Decode embeddings to output swarms.

        Args:
            vector_embedding: (B, 64, 3).
            num_atoms: (B,) atom counts n_i of the molecules (the weights sum to these).

        Returns:
            dict with ``positions`` (B, M, 3) A (centroid frame, equivariant), ``type_logits``
            and ``type_probs`` (B, M, 5) over H, C, N, O, F (invariant), ``weights`` (B, M)
            (invariant, sum over M = num_atoms).
        """
        gs = self.scalarize(vector_embedding)
        pos, out = self.decoder(gs, vector_embedding.transpose(1, 2))
        if out.dtype in (torch.float16, torch.bfloat16):   # autocast: outputs in float32
            pos, out = pos.float(), out.float()
        logits, amp = out[..., :-1], out[..., -1]
        weights = torch.softmax(amp, dim=1) * num_atoms.to(amp.dtype)[:, None]
        return {"positions": pos, "type_logits": logits,
                "type_probs": torch.softmax(logits, dim=-1), "weights": weights}

    def forward(self, batch: dict) -> dict:
        """encode + decode; returns the decode dict plus ``vector_embedding``, ``scalar_embedding``."""
        g, gs = self.encode(batch)
        out = self.decode(g, batch["num_atoms"])
        out["vector_embedding"], out["scalar_embedding"] = g, gs
        return out
