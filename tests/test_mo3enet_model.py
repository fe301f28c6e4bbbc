"""Mo3ENet model: O(3) equivariance, permutation/translation invariance, output contract."""
import numpy as np
import pytest
import torch

from baselines.mo3enet.config import get_config, paper_config, small_config
from baselines.mo3enet.data import collate_point_clouds
from baselines.mo3enet.model import Mo3ENet, swarm_graph
from baselines.mo3enet.synthetic import random_samples, rdkit_samples


@pytest.fixture(scope="module")
def samples():
    # ethanol, benzene (inversion-symmetric), glycine + two random clouds
    return rdkit_samples(("CCO", "c1ccccc1", "NCC(=O)O")) + random_samples(2, seed=3)


def _model(decoder: str, seed: int = 0) -> Mo3ENet:
    torch.manual_seed(seed)
    cfg = small_config().model
    cfg.decoder = decoder
    return Mo3ENet(cfg).double().eval()


def _batch(samples):
    b = collate_point_clouds(samples)
    b["pos"] = b["pos"].double()
    return b


def _orthogonal(det_sign: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) * det_sign < 0:
        q = -q   # -I has det -1 in 3D: flips the determinant
    assert torch.isclose(torch.det(q), torch.tensor(float(det_sign), dtype=torch.float64))
    return q


@pytest.mark.parametrize("decoder", ["gnn", "mlp"])
@pytest.mark.parametrize("det_sign,seed", [(1, 0), (-1, 1), (-1, 2)])
def test_o3_equivariance(samples, decoder, det_sign, seed):
    model = _model(decoder)
    batch = _batch(samples)
    rot = _orthogonal(det_sign, seed)
    with torch.no_grad():
        out = model(batch)
        out_r = model(dict(batch, pos=batch["pos"] @ rot.T))
    # the outputs must be non-trivial for the test to mean anything
    assert out["vector_embedding"].abs().max() > 1e-3
    assert out["positions"].std() > 1e-2
    assert out["type_probs"].std() > 1e-4 and out["weights"].std() > 1e-4
    torch.testing.assert_close(out_r["vector_embedding"], out["vector_embedding"] @ rot.T,
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(out_r["positions"], out["positions"] @ rot.T, atol=1e-5, rtol=0)
    for key in ("scalar_embedding", "type_probs", "weights"):
        torch.testing.assert_close(out_r[key], out[key], atol=1e-5, rtol=0)


def test_rotating_the_embedding_rotates_the_decoding(samples):
    model = _model("gnn")
    batch = _batch(samples)
    rot = _orthogonal(-1, 7)
    with torch.no_grad():
        g, _ = model.encode(batch)
        d = model.decode(g, batch["num_atoms"])
        d_r = model.decode(g @ rot.T, batch["num_atoms"])
    torch.testing.assert_close(d_r["positions"], d["positions"] @ rot.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(d_r["weights"], d["weights"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("decoder", ["gnn", "mlp"])
def test_permutation_and_translation_invariance(samples, decoder):
    model = _model(decoder)
    batch = _batch(samples)
    rng = np.random.default_rng(0)
    permuted = []
    for s in samples:
        p = rng.permutation(len(s["atomic_numbers"]))
        permuted.append({"atomic_numbers": s["atomic_numbers"][p], "positions": s["positions"][p]})
    pbatch = _batch(permuted)
    assert not torch.equal(pbatch["z"], batch["z"])
    shift = torch.tensor([3.0, -1.5, 0.7], dtype=torch.float64)
    with torch.no_grad():
        out = model(batch)
        out_p = model(pbatch)
        out_t = model(dict(batch, pos=batch["pos"] + shift))
    for key in ("vector_embedding", "scalar_embedding", "positions", "type_probs", "weights"):
        torch.testing.assert_close(out_p[key], out[key], atol=1e-10, rtol=0)
        torch.testing.assert_close(out_t[key], out[key], atol=1e-9, rtol=0)


def test_output_contract(samples):
    model = _model("gnn")
    batch = _batch(samples)
    with torch.no_grad():
        out = model(batch)
    b, m = len(samples), model.cfg.num_output_nodes
    assert out["vector_embedding"].shape == (b, 64, 3)
    assert out["scalar_embedding"].shape == (b, model.cfg.scalar_embedding_dim)
    assert out["positions"].shape == (b, m, 3)
    assert out["type_probs"].shape == (b, m, 5)
    assert out["weights"].shape == (b, m)
    assert (out["weights"] > 0).all()
    torch.testing.assert_close(out["weights"].sum(1), batch["num_atoms"].double(), atol=1e-10, rtol=0)
    torch.testing.assert_close(out["type_probs"].sum(-1), torch.ones(b, m, dtype=torch.float64))
    # one molecule decoded alone gives the same result as inside the batch
    with torch.no_grad():
        alone = model(_batch(samples[1:2]))
    torch.testing.assert_close(alone["positions"][0], out["positions"][1], atol=1e-10, rtol=0)


def test_float32_batch_from_collate_runs():
    model = Mo3ENet(small_config().model)
    out = model(collate_point_clouds(rdkit_samples(("CCO",))))
    assert out["positions"].dtype == torch.float32 and torch.isfinite(out["positions"]).all()


def test_collate_contract_and_errors():
    s = rdkit_samples(("CCO", "NCC(=O)O"))
    b = collate_point_clouds(s)
    n = [len(x["atomic_numbers"]) for x in s]
    assert b["z"].dtype == torch.long and b["z"].shape == (sum(n),)
    assert b["pos"].dtype == torch.float32 and b["pos"].shape == (sum(n), 3)
    assert b["batch"].tolist() == [0] * n[0] + [1] * n[1]
    assert b["num_atoms"].tolist() == n
    bad = {"atomic_numbers": np.array([6, 17], np.uint8), "positions": np.zeros((2, 3), np.float32)}
    with pytest.raises(ValueError, match="sample 1.*17"):
        collate_point_clouds([s[0], bad])
    with pytest.raises(ValueError, match="shape"):
        collate_point_clouds([{"atomic_numbers": np.array([6]), "positions": np.zeros((2, 3))}])


def test_swarm_graph():
    src, dst = swarm_graph(64, None)
    assert src.numel() == 64 * 63 and not (src == dst).any()
    src, dst = swarm_graph(64, 12)
    assert src.numel() == 64 * 12 and not (src == dst).any()
    assert torch.bincount(dst).tolist() == [12] * 64 and torch.bincount(src).tolist() == [12] * 64
    assert len(set(zip(src.tolist(), dst.tolist()))) == 64 * 12


def test_presets():
    paper, small = paper_config(), small_config()
    assert (paper.model.node_dim, paper.model.num_convs, paper.model.cutoff) == (512, 2, 3.0)
    assert (paper.model.num_output_nodes, paper.model.decoder_convs, paper.model.decoder_node_dim) == (64, 4, 128)
    assert paper.model.bottleneck_dim == small.model.bottleneck_dim == 64
    n_paper = Mo3ENet(paper.model).num_parameters()
    n_small = Mo3ENet(small.model).num_parameters()
    assert n_paper > 20 * n_small > 0
    with pytest.raises(ValueError, match="preset"):
        get_config("huge")


def test_paper_preset_equivariance(samples):
    torch.manual_seed(1)
    model = Mo3ENet(paper_config().model).double().eval()
    batch = _batch(samples[:3])
    rot = _orthogonal(-1, 11)
    with torch.no_grad():
        out = model(batch)
        out_r = model(dict(batch, pos=batch["pos"] @ rot.T))
    assert out["positions"].std() > 1e-2
    torch.testing.assert_close(out_r["vector_embedding"], out["vector_embedding"] @ rot.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_r["positions"], out["positions"] @ rot.T, atol=1e-5, rtol=0)
    for key in ("scalar_embedding", "type_probs", "weights"):
        torch.testing.assert_close(out_r[key], out[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("vector", [False, True])
def test_dense_swarm_aggregation_equals_the_scatter_one(vector):
    from baselines.mo3enet.layers import AugmentedSoftmaxAggregation

    torch.manual_seed(0)
    n, k, c = 40, 12, 8
    agg = AugmentedSoftmaxAggregation(c, vector=vector)
    with torch.no_grad():
        agg.beta.uniform_(0.2, 3.0)
        agg.b.uniform_(-0.5, 0.5)
    x = torch.randn(n * k, 3, c, dtype=torch.float64) if vector else torch.randn(n * k, c, dtype=torch.float64)
    x.requires_grad_(True)
    index = torch.arange(n).repeat_interleave(k)
    agg = agg.double()
    ref = agg(x, index, n)
    (gx_ref, gb_ref) = torch.autograd.grad(ref.square().sum(), (x, agg.beta))
    dense = agg(x, index, n, degree=k)
    (gx, gb) = torch.autograd.grad(dense.square().sum(), (x, agg.beta))
    assert torch.allclose(dense, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(gx, gx_ref, rtol=1e-10, atol=1e-12) and torch.allclose(gb, gb_ref, rtol=1e-10, atol=1e-12)


def test_decoder_uses_the_dense_path_only_for_a_target_sorted_graph():
    cfg = small_config().model
    assert Mo3ENet(cfg).decoder.in_degree == cfg.decoder_neighbors              # circulant graph: sorted
    cfg.decoder_neighbors = None                                                 # fully connected: src-sorted
    assert Mo3ENet(cfg).decoder.in_degree is None
