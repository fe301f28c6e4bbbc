"""Tests for benchmarks.metrics.pointcloud (Mo3ENet scaffolded matching)."""
import numpy as np
import pytest

from benchmarks.metrics.pointcloud import match_dataset, match_molecule

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
    s = match_dataset([(POS, TYPES, cp, cprob, w)] * 3)
    assert s == {"atomwise_mean_deviation": 0.0, "molwise_mean_deviation": 0.0,
                 "atomwise_matched_fraction": 1.0, "molwise_matched_fraction": 1.0,
                 "n_atoms": 12, "n_molecules": 3}
    # one-hot input types give the same result as indices
    m2 = match_molecule(POS, np.eye(5)[TYPES], cp, cprob, w)
    np.testing.assert_array_equal(m2.matched, m.matched)


def test_split_components_pool():
    cp, cprob, w = _perfect()
    # each atom decoded as two half-weight components 0.1 A either side along z
    cp2 = np.concatenate([cp + [0, 0, 0.1], cp - [0, 0, 0.1]])
    m = match_molecule(POS, TYPES, cp2, np.concatenate([cprob, cprob]), np.concatenate([w, w]) / 2)
    assert m.all_matched
    np.testing.assert_allclose(m.deviation, 0.0, atol=1e-12)


@pytest.mark.parametrize("mode", ["mean_xyz", "released"])
def test_shifted_component(mode):
    cp, cprob, w = _perfect()
    cp[2] += [0.3, 0.0, 0.0]                                   # an H decoded 0.3 A off
    m = match_molecule(POS, TYPES, cp, cprob, w, mode=mode)
    assert m.all_matched
    np.testing.assert_allclose(m.deviation, [0, 0, 0.3, 0], atol=1e-12)
    s = match_dataset([(POS, TYPES, cp, cprob, w), (POS, TYPES, *_perfect())], mode=mode)
    assert s["atomwise_mean_deviation"] == pytest.approx(0.3 / 8)
    assert s["molwise_mean_deviation"] == pytest.approx((0.3 / 4 + 0.0) / 2)
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
    s = match_dataset([(POS, TYPES, cp, cprob, w)])
    assert s["atomwise_matched_fraction"] == 0.75 and np.isnan(s["molwise_mean_deviation"])
    # a type probability mix within the joint cutoff still pools: |2 * (0.9 - 1, 0.1)| < 0.5
    cprob[0] = 0.9 * np.eye(5)[1] + 0.1 * np.eye(5)[0]
    assert match_molecule(POS, TYPES, cp, cprob, w).matched[0]


def test_modes_differ_and_tolerance_is_strict():
    cp, cprob, w = _perfect()
    w[0] = 0.8                                                 # |0.8 - 1| < 0.25: matched
    m = match_molecule(POS, TYPES, cp, cprob, w)
    r = match_molecule(POS, TYPES, cp, cprob, w, mode="released")
    assert m.matched[0] and r.matched[0]
    assert m.deviation[0] == 0.0
    # released: |x - 0.8 x| in joint space, x = (0, 0, 0, 2 * onehot(C))
    assert r.deviation[0] == pytest.approx(0.2 * 2.0)
    w[0] = 1.25                                                # |1.25 - 1| = 0.25: not < 0.25
    assert not match_molecule(POS, TYPES, cp, cprob, w).matched[0]
    with pytest.raises(ValueError):
        match_molecule(POS, TYPES, cp, cprob, w, mode="rmsd")
