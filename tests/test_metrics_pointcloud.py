"""Tests for benchmarks.metrics.pointcloud (Mo3ENet scaffolded matching)."""
import numpy as np
import pytest

from benchmarks.metrics.pointcloud import PRIMARY, match_dataset, match_molecule, summarize

# a small CH2O-like molecule (Angstrom), types as indices into (H, C, N, O, F)
POS = np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [-0.6, 0.9, 0.0], [-0.6, -0.9, 0.0]])
TYPES = np.array([1, 3, 0, 0])


def _perfect(pos=POS, types=TYPES):
    return pos.copy(), np.eye(5)[types], np.ones(len(pos))


def test_perfect_decode():
    cp, cprob, w = _perfect()
    m = match_molecule(POS, TYPES, cp, cprob, w)
    assert m.matched.all() and m.all_matched
    np.testing.assert_allclose(m.pooled_weight, 1.0)
    np.testing.assert_allclose(m.deviation, 0.0, atol=1e-12)
    np.testing.assert_allclose(m.paper_deviation, 0.0, atol=1e-12)
    s = match_dataset([(POS, TYPES, cp, cprob, w)] * 3)
    assert s == {"penalized_mean_deviation": 0.0, "atomwise_mean_deviation": 0.0,
                 "molwise_mean_deviation": 0.0, "atomwise_matched_fraction": 1.0,
                 "molwise_matched_fraction": 1.0, "paper_atomwise_mean_deviation": 0.0,
                 "paper_molwise_mean_deviation": 0.0, "n_atoms": 12, "n_molecules": 3}
    # one-hot input types give the same result as indices
    m2 = match_molecule(POS, np.eye(5)[TYPES], cp, cprob, w)
    np.testing.assert_array_equal(m2.matched, m.matched)
    assert PRIMARY == "penalized_mean_deviation"


def test_split_components_pool():
    cp, cprob, w = _perfect()
    # each atom decoded as two half-weight components 0.1 A either side along z
    cp2 = np.concatenate([cp + [0, 0, 0.1], cp - [0, 0, 0.1]])
    m = match_molecule(POS, TYPES, cp2, np.concatenate([cprob, cprob]), np.concatenate([w, w]) / 2)
    assert m.all_matched
    np.testing.assert_allclose(m.deviation, 0.0, atol=1e-12)
    np.testing.assert_allclose(m.paper_deviation, 0.0, atol=1e-12)


def test_shifted_component():
    cp, cprob, w = _perfect()
    cp[2] += [0.3, 0.0, 0.0]                                   # an H decoded 0.3 A off
    m = match_molecule(POS, TYPES, cp, cprob, w)
    assert m.all_matched
    np.testing.assert_allclose(m.deviation, [0, 0, 0.3, 0], atol=1e-12)
    np.testing.assert_allclose(m.paper_deviation, [0, 0, 0.3, 0], atol=1e-12)
    s = match_dataset([(POS, TYPES, cp, cprob, w), (POS, TYPES, *_perfect())])
    assert s["atomwise_mean_deviation"] == pytest.approx(0.3 / 8)
    assert s["penalized_mean_deviation"] == pytest.approx(0.3 / 8)
    assert s["molwise_mean_deviation"] == pytest.approx((0.3 / 4 + 0.0) / 2)
    assert s["paper_molwise_mean_deviation"] == pytest.approx((0.3 / 4 + 0.0) / 2)
    assert s["molwise_matched_fraction"] == 1.0


def test_split_weight_fails_tolerance():
    cp, cprob, w = _perfect()
    # the O keeps 0.6 of its weight on site; 0.4 sits 0.8 A away, outside the 0.5 cutoff
    cp = np.concatenate([cp, [POS[1] + [0.0, 0.8, 0.0]]])
    cprob = np.concatenate([cprob, [np.eye(5)[3]]])
    w = np.concatenate([w, [0.4]])
    w[1] = 0.6
    bad = match_molecule(POS, TYPES, cp, cprob, w)
    assert bad.pooled_weight[1] == pytest.approx(0.6)
    np.testing.assert_array_equal(bad.matched, [True, False, True, True])
    assert not bad.all_matched
    good = (POS, TYPES, *_perfect())
    s = match_dataset([good, (POS, TYPES, cp, cprob, w)])
    assert s["atomwise_matched_fraction"] == pytest.approx(7 / 8)
    assert s["molwise_matched_fraction"] == 0.5
    assert s["molwise_mean_deviation"] == 0.0                  # only the fully matched molecule
    assert s["penalized_mean_deviation"] == pytest.approx(0.5 / 8)   # the unmatched O at the cutoff
    # same component moved inside the cutoff: pooled weight 1.0, deviation = 0.4 * 0.3 A
    cp[-1] = POS[1] + [0.0, 0.3, 0.0]
    ok = match_molecule(POS, TYPES, cp, cprob, w)
    assert ok.all_matched
    assert ok.deviation[1] == pytest.approx(0.12)


def test_wrong_type_is_not_pooled():
    cp, cprob, w = _perfect()
    cprob[0] = np.eye(5)[0]                                    # the C decoded as an H
    m = match_molecule(POS, TYPES, cp, cprob, w)
    assert m.pooled_weight[0] == 0.0 and not m.matched[0] and np.isnan(m.deviation[0])
    assert np.isnan(m.paper_deviation[0])
    s = match_dataset([(POS, TYPES, cp, cprob, w)])
    assert s["atomwise_matched_fraction"] == 0.75 and np.isnan(s["molwise_mean_deviation"])
    assert np.isnan(s["paper_molwise_mean_deviation"])
    # a type probability mix within the joint cutoff still pools: |2 * (0.9 - 1, 0.1)| < 0.5
    cprob[0] = 0.9 * np.eye(5)[1] + 0.1 * np.eye(5)[0]
    assert match_molecule(POS, TYPES, cp, cprob, w).matched[0]


def test_paper_deviation_is_the_unnormalized_joint_sum():
    cp, cprob, w = _perfect()
    w[0] = 0.8                                                 # |0.8 - 1| < 0.25: matched
    m = match_molecule(POS, TYPES, cp, cprob, w)
    assert m.matched[0]
    assert m.deviation[0] == 0.0
    # paper: |x - 0.8 x| in joint space, x = (0, 0, 0, 2 * onehot(C))
    assert m.paper_deviation[0] == pytest.approx(0.2 * 2.0)
    # ... so it depends on where the coordinate origin is; ours does not
    shift = np.array([10.0, 0.0, 0.0])
    moved = match_molecule(POS + shift, TYPES, cp + shift, cprob, w)
    assert moved.deviation[0] == 0.0
    assert moved.paper_deviation[0] == pytest.approx(0.2 * np.hypot(10.0, 2.0))
    s = summarize([m, moved])
    assert s["paper_molwise_mean_deviation"] == pytest.approx((0.4 + 0.2 * np.hypot(10.0, 2.0)) / 8)
    assert s["paper_atomwise_mean_deviation"] == pytest.approx((0.4 + 0.2 * np.hypot(10.0, 2.0)) / 8)


# --------------------------------------------------------------------------- summary rules
def _two_molecules():
    """Molecule A: every atom decoded 0.1 A off (fully matched). Molecule B: atoms 0.3 A off,
    except the O, which keeps pooled weight 0.6 at 0.2 A (pooled, finite deviation, unmatched)."""
    cp, cprob, w = _perfect()
    a = (POS, TYPES, cp + [0.1, 0.0, 0.0], cprob, w.copy())
    cpb = cp + [0.0, 0.3, 0.0]
    cpb[1] = POS[1] + [0.0, 0.2, 0.0]
    wb = w.copy()
    wb[1] = 0.6
    b = (POS, TYPES, cpb, cprob, wb)
    return a, b


def test_summary_rules_matched_atoms_and_full_molecules_only():
    a, b = _two_molecules()
    mb = match_molecule(*b)
    np.testing.assert_array_equal(mb.matched, [True, False, True, True])
    assert mb.deviation[1] == pytest.approx(0.2)               # finite, but the atom is unmatched
    s = match_dataset([a, b])
    # atomwise: A's 4 atoms at 0.1 and B's 3 matched at 0.3 -- not B's unmatched O
    assert s["atomwise_mean_deviation"] == pytest.approx((4 * 0.1 + 3 * 0.3) / 7)
    # molwise: only A is fully matched
    assert s["molwise_mean_deviation"] == pytest.approx(0.1)
    assert s["paper_atomwise_mean_deviation"] == pytest.approx((4 * 0.1 + 3 * 0.3) / 7)
    assert s["paper_molwise_mean_deviation"] == pytest.approx(0.1)
    # penalized: every atom, the unmatched O at the 0.5 cutoff
    assert s["penalized_mean_deviation"] == pytest.approx((4 * 0.1 + 3 * 0.3 + 0.5) / 8)
    assert s["atomwise_matched_fraction"] == pytest.approx(7 / 8)
    assert s["molwise_matched_fraction"] == 0.5
    assert (s["n_atoms"], s["n_molecules"]) == (8, 2)


def test_cutoff_and_tolerance_are_strict():
    h = np.zeros((1, 3))
    types = np.array([0])
    probs = np.eye(5)[[0]]
    at = match_molecule(h, types, h + [0.5, 0.0, 0.0], probs, [1.0])     # joint distance exactly 0.5
    assert at.pooled_weight[0] == 0.0 and not at.matched[0]
    inside = match_molecule(h, types, h + [0.4999, 0.0, 0.0], probs, [1.0])
    assert inside.matched[0] and inside.deviation[0] == pytest.approx(0.4999)
    for weight, ok in ((0.75, False), (0.7501, True), (1.2499, True), (1.25, False)):
        assert match_molecule(h, types, h, probs, [weight]).matched[0] == ok, weight
    # another cutoff is honoured, also as the penalty
    m = match_molecule(h, types, h + [0.6, 0.0, 0.0], probs, [1.0], cutoff=0.7)
    assert m.matched[0] and m.cutoff == 0.7
    miss = match_molecule(h, types, h + [0.8, 0.0, 0.0], probs, [1.0], cutoff=0.7)
    assert summarize([miss])["penalized_mean_deviation"] == 0.7


def test_penalty_never_rewards_dropping_an_atom():
    """A matched atom's deviation is below the cutoff, so matching one more atom can only
    lower the penalized mean; the atomwise mean over matched atoms can go either way."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        cp, cprob, w = _perfect()
        cp = cp + rng.normal(scale=0.2, size=cp.shape)
        full = summarize([match_molecule(POS, TYPES, cp, cprob, w)])
        dropped_w = w.copy()
        dropped_w[rng.integers(4)] = 0.0
        drop = summarize([match_molecule(POS, TYPES, cp, cprob, dropped_w)])
        assert drop["penalized_mean_deviation"] >= full["penalized_mean_deviation"]
        assert full["penalized_mean_deviation"] <= 0.5


def test_input_checks():
    cp, cprob, w = _perfect()
    bad_w = w.copy()
    bad_w[0] = -0.1
    with pytest.raises(ValueError, match=">= 0"):
        match_molecule(POS, TYPES, cp, cprob, bad_w)
    with pytest.raises(ValueError, match="inconsistent"):
        match_molecule(POS, TYPES, cp[:2], cprob, w)           # components disagree
    with pytest.raises(ValueError, match="inconsistent"):
        match_molecule(POS[:3], TYPES, cp, cprob, w)           # atoms disagree
    with pytest.raises(ValueError, match="atom types"):
        match_molecule(POS, np.eye(4)[TYPES % 4], cp, cprob, w)
    with pytest.raises(ValueError, match="no molecules"):
        summarize([])


def test_match_dataset_passes_options():
    cp, cprob, w = _perfect()
    cp[0] += [0.6, 0.0, 0.0]
    mol = (POS, TYPES, cp, cprob, w)
    assert match_dataset([mol])["atomwise_matched_fraction"] == 0.75
    assert match_dataset([mol], cutoff=0.7)["atomwise_matched_fraction"] == 1.0
    assert match_dataset([mol], weight_tolerance=0.0)["atomwise_matched_fraction"] == 0.0
    cp, cprob, w = _perfect()
    cprob[0] = np.eye(5)[0]                                    # the C decoded as an H
    assert match_dataset([(POS, TYPES, cp, cprob, w)])["atomwise_matched_fraction"] == 0.75
    assert match_dataset([(POS, TYPES, cp, cprob, w)], type_scale=0.0)["atomwise_matched_fraction"] == 1.0


# --------------------------------------------------------------------------- batch_rmsd reference
def _loop_batch_rmsd(molecules, cutoff=0.5, threshold=0.25, scale=2.0):
    """The authors' batch_rmsd semantics, pair by pair: joint points, pool every component
    within the cutoff (strict), pooled weight, matched = |1 - W| < threshold, pooled point =
    weighted SUM of component points, distance in joint space; molecules' mean distance over
    fully matched molecules, atoms' mean over matched atoms."""
    node_d, node_ok, graph_d = [], [], []
    for pos, types, cpos, cprob, cw in molecules:
        x = np.concatenate([pos, scale * np.eye(5)[types]], 1)
        y = np.concatenate([cpos, scale * cprob], 1)
        d_mol, ok_mol = [], []
        for i in range(len(x)):
            wsum, point = 0.0, np.zeros(x.shape[1])
            for j in range(len(y)):
                if np.sqrt(((x[i] - y[j]) ** 2).sum()) < cutoff:
                    wsum += cw[j]
                    point += cw[j] * y[j]
            d_mol.append(np.sqrt(((x[i] - point) ** 2).sum()))
            ok_mol.append(abs(1 - wsum) < threshold)
        node_d += d_mol
        node_ok += ok_mol
        if all(ok_mol):
            graph_d.append(np.mean(d_mol))
    node_d, node_ok = np.array(node_d), np.array(node_ok)
    return node_d[node_ok].mean(), np.mean(graph_d), node_ok.mean(), len(graph_d) / len(molecules)


def test_paper_metrics_match_batch_rmsd_semantics():
    rng = np.random.default_rng(5)
    mols = []
    for _ in range(30):
        cp, cprob, w = _perfect()
        k = rng.integers(1, 3)                                 # 1 or 2 components per atom
        cps = np.concatenate([cp + rng.normal(scale=0.12, size=cp.shape) for _ in range(k)])
        probs = np.concatenate([cprob] * k) * 0.95 + 0.01
        ws = np.concatenate([w * rng.uniform(0.7, 1.3, 4)] * k) / k
        mols.append((POS + 1.0, TYPES, cps + 1.0, probs, ws))
    atom, mol, fa, fm = _loop_batch_rmsd(mols)
    s = match_dataset(mols)
    assert 0 < fm < 1 and 0 < fa < 1
    assert s["paper_atomwise_mean_deviation"] == pytest.approx(atom, rel=1e-12)
    assert s["paper_molwise_mean_deviation"] == pytest.approx(mol, rel=1e-12)
    assert s["atomwise_matched_fraction"] == pytest.approx(fa)
    assert s["molwise_matched_fraction"] == pytest.approx(fm)


# --------------------------------------------------------------------------- ranking
def _random_molecule(rng, n=20):
    pos = []
    while len(pos) < n:
        p = rng.uniform(-4.0, 4.0, 3)
        if all(np.linalg.norm(p - q) > 1.6 for q in pos):   # a 1 A shift lands on no other atom
            pos.append(p)
    return np.array(pos), rng.integers(0, 5, n)


def _components(pos, types, shift=0.0, noise=0.0, rng=None):
    out = pos.copy()
    if shift:
        d = rng.normal(size=pos.shape)
        out = out + shift * d / np.linalg.norm(d, axis=1, keepdims=True)
    if noise:
        out = out + rng.normal(scale=noise, size=pos.shape)
    return out, np.eye(5)[types], np.ones(len(pos))


def test_one_atom_in_twenty_ranks_last_on_the_primary_metric():
    """A model that rebuilds one atom in 20 perfectly (and puts the remaining weight far away)
    ranks first on the matched-atom mean deviation -- the old primary -- and last on the
    penalized one, behind identity, noisy identity and blurs that match every atom."""
    rng = np.random.default_rng(0)
    mols = [_random_molecule(rng) for _ in range(12)]

    def one_atom(pos, types):
        cp, cprob, w = _components(pos, types)
        far = cp.copy()
        far[1:] += 100.0                                        # 19 atoms decoded nowhere near
        return far, cprob, w

    models = {
        "identity": lambda p, t: _components(p, t),
        "noisy_identity": lambda p, t: _components(p, t, noise=0.05, rng=rng),
        "blur_0.2": lambda p, t: _components(p, t, shift=0.2, rng=rng),
        "blur_0.4": lambda p, t: _components(p, t, shift=0.4, rng=rng),
        "one_atom": one_atom,
    }
    res = {k: match_dataset([(p, t, *f(p, t)) for p, t in mols]) for k, f in models.items()}
    assert res["one_atom"]["atomwise_matched_fraction"] == pytest.approx(1 / 20)
    assert res["one_atom"]["atomwise_mean_deviation"] == 0.0   # the old primary: a tie for first
    assert res["one_atom"]["penalized_mean_deviation"] == pytest.approx(0.5 * 19 / 20)
    ranking = sorted(res, key=lambda k: res[k][PRIMARY])
    assert ranking[-1] == "one_atom", ranking
    assert ranking[0] == "identity" and res["identity"][PRIMARY] == 0.0
    for k in ("noisy_identity", "blur_0.2", "blur_0.4"):
        assert res[k]["atomwise_matched_fraction"] == 1.0
        assert res[k][PRIMARY] == pytest.approx(res[k]["atomwise_mean_deviation"])
    # a model that matches nothing (blur by 1 A, the leaderboard's blur) scores the worst
    # possible 0.5: matching 1 atom in 20 is (slightly) better than matching none
    none = match_dataset([(p, t, *_components(p, t, shift=1.0, rng=rng)) for p, t in mols])
    assert none["atomwise_matched_fraction"] == 0.0 and none[PRIMARY] == 0.5
