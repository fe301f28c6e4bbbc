"""EMA vector quantizer of the 3DGrid-VQGAN baseline: hand-computed EMA step, restarts."""
import math

import pytest
import torch

from baselines.vqgan3d.quantizer import EMAVectorQuantizer


def _grid(vectors):
    """(M, D) vectors -> (1, D, M, 1, 1) latent grid whose flattening gives them back in order."""
    v = torch.tensor(vectors, dtype=torch.float32)
    return v.t().reshape(1, v.shape[1], v.shape[0], 1, 1).contiguous()


def _set_codebook(q, codes, sizes=None):
    codes = torch.tensor(codes, dtype=torch.float32)
    q.embeddings.copy_(codes)
    sizes = torch.ones(len(codes)) if sizes is None else torch.tensor(sizes)
    q.cluster_size.copy_(sizes)
    q.embed_sum.copy_(codes * sizes[:, None])
    q.initialized.fill_(True)


CODES = [[0.0, 0.0], [1.0, 1.0], [4.0, 4.0]]
INPUTS = [[0.1, 0.0], [0.9, 1.2], [1.3, 1.0], [3.0, 3.0]]


def test_ema_update_matches_hand_computation_without_smoothing():
    q = EMAVectorQuantizer(3, 2, decay=0.99, eps=0.0, restart_threshold=0.5).train()
    _set_codebook(q, CODES)
    z_q, idx, stats = q(_grid(INPUTS))
    # nearest codes: 0.1,0 -> 0 ; 0.9,1.2 -> 1 ; 1.3,1.0 -> 1 ; 3,3 -> 2 (dist 2 vs 8)
    assert idx.flatten().tolist() == [0, 1, 1, 2]
    # N <- 0.99 N + 0.01 n with n = (1, 2, 1)
    assert torch.allclose(q.cluster_size, torch.tensor([1.0, 1.01, 1.0]), atol=1e-7)
    # m <- 0.99 m + 0.01 * (sum of assigned vectors)
    want_sum = torch.tensor([[0.001, 0.0], [1.012, 1.012], [3.99, 3.99]])
    assert torch.allclose(q.embed_sum, want_sum, atol=1e-6)
    # eps = 0: codes = m / N
    want = torch.tensor([[0.001, 0.0], [1.012 / 1.01, 1.012 / 1.01], [3.99, 3.99]])
    assert torch.allclose(q.embeddings, want, atol=1e-6)
    # output uses the codes from before the update (straight-through values)
    assert torch.allclose(z_q[0, :, :, 0, 0].t(), torch.tensor([CODES[i] for i in [0, 1, 1, 2]]))
    # commitment 0.25 * mean((z - e)^2) = 0.25 * (0.01 + 0.05 + 0.09 + 2) / 8
    assert stats["commitment_loss"].item() == pytest.approx(0.25 * 2.15 / 8, rel=1e-6)
    # code histogram (1/4, 1/2, 1/4): perplexity 2**1.5, all 3 codes used
    assert stats["perplexity"].item() == pytest.approx(2 ** 1.5, rel=1e-5)
    assert stats["usage"].item() == 1.0
    assert stats["restarted"] == 0


def test_laplace_smoothing_of_cluster_sizes():
    q = EMAVectorQuantizer(3, 2, decay=0.99, eps=0.5, restart_threshold=0.5).train()
    _set_codebook(q, CODES)
    q(_grid(INPUTS))
    # N = (1, 1.01, 1), n = 3.01; N~ = (N + 0.5) / (3.01 + 1.5) * 3.01
    smoothed = torch.tensor([1.001108647, 1.007782705, 1.001108647])
    want = torch.tensor([[0.001, 0.0], [1.012, 1.012], [3.99, 3.99]]) / smoothed[:, None]
    assert torch.allclose(q.embeddings, want, atol=1e-6)


def test_eval_mode_does_not_touch_the_codebook():
    q = EMAVectorQuantizer(3, 2, restart_threshold=0.5).eval()
    _set_codebook(q, CODES)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    z_q, idx, _ = q(_grid(INPUTS))
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k
    # eval output is exactly the code vectors (no straight-through arithmetic)
    assert torch.equal(z_q, q.lookup(idx))


def test_first_training_call_initializes_codes_from_batch():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(4, 3, restart_threshold=0.0).train()
    vecs = torch.randn(10, 3)
    q(_grid(vecs.tolist()))
    assert bool(q.initialized)
    # each code starts as one of the batch vectors (then one EMA step moves it towards its members)
    q2 = EMAVectorQuantizer(4, 3).train()
    torch.manual_seed(1)
    q2._init_codebook(vecs)
    d = torch.cdist(q2.embeddings, vecs).min(dim=1).values
    assert torch.all(d < 1e-6)
    assert torch.equal(q2.cluster_size, torch.ones(4))


def test_dead_codes_below_threshold_are_reset_from_batch_vectors():
    torch.manual_seed(0)
    k = 6
    q = EMAVectorQuantizer(k, 2, decay=0.99, eps=0.0, restart_threshold=0.995).train()
    codes = [[0.0, 0.0]] + [[10.0 + i, -10.0] for i in range(k - 1)]
    _set_codebook(q, codes)
    batch = torch.tensor([[0.01 * i, 0.02 * i] for i in range(8)])  # all nearest to code 0
    _, idx, stats = q(_grid(batch.tolist()))
    assert idx.flatten().tolist() == [0] * 8
    # codes 1..5 got n = 0, so N = 0.99 < 0.995: reset; code 0: N = 0.99 + 0.08 = 1.07 kept
    assert stats["restarted"] == k - 1
    assert q.cluster_size[0].item() == pytest.approx(1.07, rel=1e-6)
    assert torch.allclose(q.embeddings[0], batch.sum(0) * 0.01 / 1.07, atol=1e-6)
    new = q.embeddings[1:]
    dist = torch.cdist(new, batch).min(dim=1).values
    assert torch.all(dist < 1e-6), "reset codes must be batch vectors"
    assert torch.allclose(q.cluster_size[1:], torch.full((k - 1,), 0.995))
    assert torch.allclose(q.embed_sum[1:], new * 0.995)
    assert torch.all(q.unused_steps == 0)


def test_codes_unused_for_k_steps_are_reset():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(3, 2, decay=0.99, eps=0.0, restart_threshold=0.0,
                           restart_unused_steps=3).train()
    _set_codebook(q, [[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]], sizes=[50.0, 50.0, 50.0])
    batch = [[0.1, 0.1], [0.2, -0.1], [-0.1, 0.2], [0.05, 0.0]]
    for step in range(1, 4):
        _, _, stats = q(_grid(batch))
        if step < 3:
            assert stats["restarted"] == 0
            assert q.unused_steps.tolist() == [0, step, step]
    assert stats["restarted"] == 2
    d = torch.cdist(q.embeddings[1:], torch.tensor(batch)).min(dim=1).values
    assert torch.all(d < 1e-6)
    assert q.unused_steps.tolist() == [0, 0, 0]


def test_perplexity_of_uniform_usage_is_number_of_codes_used():
    q = EMAVectorQuantizer(4, 1, restart_threshold=0.0).eval()
    _set_codebook(q, [[0.0], [1.0], [2.0], [3.0]])
    _, _, stats = q(_grid([[0.0], [1.0], [2.0], [3.0], [0.1], [1.1], [2.1], [2.9]]))
    assert stats["perplexity"].item() == pytest.approx(4.0, rel=1e-5)
    _, _, stats = q(_grid([[0.0], [0.1], [1.0], [0.9]]))
    assert stats["perplexity"].item() == pytest.approx(2.0, rel=1e-5)
    assert stats["usage"].item() == pytest.approx(0.5)
    assert math.isfinite(stats["commitment_loss"].item())
