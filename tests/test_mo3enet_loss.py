"""Mo3ENet loss: zero with zero gradient at perfect reconstruction, sensitivity, sigma schedule."""
import pytest
import torch
import torch.nn.functional as F

from baselines.mo3enet.config import LossConfig
from baselines.mo3enet.data import collate_point_clouds, types_from_atomic_numbers
from baselines.mo3enet.loss import SigmaSchedule, add_position_noise, reconstruction_loss
from baselines.mo3enet.model import center_positions
from baselines.mo3enet.synthetic import rdkit_samples


@pytest.fixture(scope="module")
def mols():
    return rdkit_samples(("CCO", "c1ccccc1", "NCC(=O)O", "CC(F)(F)F"))


def _inputs(samples):
    b = collate_point_clouds(samples)
    pos = center_positions(b["pos"].double(), b["batch"], len(samples))
    return pos, types_from_atomic_numbers(b["z"]), b["batch"], b["num_atoms"]


def _perfect_decoding(pos, types, batch, num_atoms, copies=1, pad_to=None):
    """Swarm = input atoms (each split into ``copies`` nodes of weight 1/copies), padded with
    zero-weight nodes far away to ``pad_to`` nodes per molecule."""
    b = len(num_atoms)
    m = pad_to or int(num_atoms.max()) * copies
    P = torch.zeros(b, m, 3, dtype=torch.float64)
    T = torch.full((b, m, 5), 0.2, dtype=torch.float64)
    W = torch.zeros(b, m, dtype=torch.float64)
    for g in range(b):
        idx = (batch == g).nonzero().flatten()
        n = idx.numel()
        P[g, : n * copies] = pos[idx].repeat(copies, 1)
        P[g, n * copies:] = pos[idx][0]             # zero weight: contributes nothing
        T[g, : n * copies] = F.one_hot(types[idx], 5).double().repeat(copies, 1)
        W[g, : n * copies] = 1.0 / copies
    return {"positions": P.requires_grad_(), "type_probs": T.requires_grad_(), "weights": W.requires_grad_()}


@pytest.mark.parametrize("sigma", [2.0, 0.7, 0.2])
@pytest.mark.parametrize("copies", [1, 2])
def test_perfect_reconstruction_zero_loss_and_gradient(mols, sigma, copies):
    for mol in mols:   # one molecule per batch: the swarm has exactly n_i * copies nodes
        pos, types, batch, num_atoms = _inputs([mol])
        dec = _perfect_decoding(pos, types, batch, num_atoms, copies=copies)
        loss, stats = reconstruction_loss(pos, types, batch, num_atoms, dec, sigma, LossConfig())
        assert abs(loss.item()) < 1e-12
        assert stats["radial"] == 0 and stats["weight"] == 0 and stats["nearest"] < 1e-20
        if sigma == 2.0:   # wide Gaussians: neighbours overlap, so eq. 3 alone would not be zero
            assert stats["self_overlap_excess"] > 0.5
        loss.backward()
        for t in dec.values():
            assert t.grad.abs().max() < 1e-10


def test_batched_perfect_reconstruction_with_padding(mols):
    pos, types, batch, num_atoms = _inputs(mols)
    dec = _perfect_decoding(pos, types, batch, num_atoms, pad_to=64)
    loss, stats = reconstruction_loss(pos, types, batch, num_atoms, dec, 1.0, LossConfig())
    assert stats["reconstruction"] < 1e-12 and stats["nearest"] < 1e-20
    # zero-weight padding nodes violate the node-weight constraint (weights far below the mean)
    assert stats["weight"] > 0.1


def test_loss_grows_with_perturbation(mols):
    pos, types, batch, num_atoms = _inputs(mols)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(pos.shape, generator=g, dtype=torch.float64)
    losses = []
    for scale in (0.0, 0.05, 0.2, 0.5):
        dec = {k: v.detach() for k, v in _perfect_decoding(pos, types, batch, num_atoms).items()}
        for gi in range(len(num_atoms)):   # move each molecule's real nodes (padding has weight 0)
            n = int(num_atoms[gi])
            dec["positions"][gi, :n] += scale * noise[batch == gi]
        _, stats = reconstruction_loss(pos, types, batch, num_atoms, dec, 0.5, LossConfig())
        losses.append(stats["reconstruction"])
    assert losses[0] < 1e-12
    assert losses[1] > 1e-4 and losses[1] < losses[2] < losses[3]


def test_wrong_types_are_penalized(mols):
    pos, types, batch, num_atoms = _inputs(mols[:1])
    dec = _perfect_decoding(pos, types, batch, num_atoms)
    dec = {k: v.detach().clone() for k, v in dec.items()}
    dec["type_probs"][0, 0] = torch.roll(dec["type_probs"][0, 0], 1)   # one atom with a wrong type
    _, stats = reconstruction_loss(pos, types, batch, num_atoms, dec, 0.5, LossConfig())
    n = int(num_atoms[0])
    # that atom's overlap drops from 1 to ~exp(-2 c_T^2 / sigma^2) ~ 0: per-atom error ~1
    assert stats["reconstruction"] == pytest.approx(1.0 / n, rel=0.05)


def test_radial_constraint(mols):
    pos, types, batch, num_atoms = _inputs(mols[:1])
    dec = {k: v.detach().clone() for k, v in _perfect_decoding(pos, types, batch, num_atoms).items()}
    r_mol = pos.norm(dim=1).max()
    far = dec["positions"][0, 0] / dec["positions"][0, 0].norm() * (r_mol + 1.0)
    dec["positions"][0, 0] = far
    _, stats = reconstruction_loss(pos, types, batch, num_atoms, dec, 0.5, LossConfig())
    assert stats["radial"] == pytest.approx(1.0 / int(num_atoms[0]), rel=1e-6)


def test_sigma_schedule():
    cfg = LossConfig(sigma_loss_smoothing=0.0)   # react to every batch loss
    s = SigmaSchedule(cfg)
    assert s.sigma == 2.0
    assert s.step(0.5, 1.0) == 2.0               # loss above threshold: no change
    assert s.step(0.1, 1.0) == pytest.approx(1.98)
    assert s.step(0.1, 1e-4) == pytest.approx(1.98)   # self-overlap already negligible: stop
    state = s.state_dict()
    t = SigmaSchedule(cfg)
    t.load_state_dict(state)
    assert t.sigma == s.sigma and t.num_shrinks == 1 and t.loss_ema == s.loss_ema
    for _ in range(2000):
        t.step(0.0, 1.0)
    assert t.sigma == cfg.sigma_min


def test_sigma_schedule_smoothing():
    s = SigmaSchedule(LossConfig(sigma_loss_smoothing=0.9))
    s.step(0.5, 1.0)
    assert s.step(0.1, 1.0) == 2.0               # one easy batch: EMA 0.46 stays above 0.15
    for _ in range(30):
        s.step(0.1, 1.0)
    assert s.sigma < 2.0 and s.loss_ema == pytest.approx(0.1 + 0.4 * 0.9 ** 31, rel=1e-9)


def test_position_noise_is_reproducible():
    pos = torch.zeros(2000, 3)
    a = add_position_noise(pos, 0.01, torch.Generator().manual_seed(5))
    b = add_position_noise(pos, 0.01, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(add_position_noise(pos, 0.0), pos)
