"""MINDO/3 through pyscf-semiempirical with pyscf 2.14: fixes, gradients, optimisation."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyscf.semiempirical")

from builders.density import mindo3 as m  # noqa: E402
from builders.format.failures import MoleculeFailure  # noqa: E402

BOHR = 0.52917721092
WATER_Z = [8, 1, 1]
WATER = np.array([[0.0, 0.0, 0.0], [0.0, -0.757, 0.587], [0.0, 0.757, 0.587]])
METHANE_Z = [6, 1, 1, 1, 1]
METHANE = np.array([[0.0, 0.0, 0.0], [0.65, 0.62, 0.58], [-0.61, -0.66, 0.60],
                    [-0.62, 0.63, -0.62], [0.60, -0.64, -0.64]])  # distorted tetrahedron
SILANE_Z = [14, 1, 1, 1, 1]
SILANE = np.array([[0.0, 0.0, 0.0], [0.88, 0.85, 0.86], [-0.87, -0.86, 0.85],
                   [-0.86, 0.88, -0.85], [0.85, -0.86, -0.88]])


def test_plain_package_kernel_fails_and_compat_class_runs():
    """The exact pyscf 2.14 incompatibility, and that the subclass fixes it."""
    from pyscf.semiempirical import mindo3 as pkg

    mol = m.make_mol(WATER_Z, WATER)
    with pytest.raises(TypeError, match="s1e"):
        pkg.RMINDO3(mol).run(verbose=0)
    mf = m.rmindo3(mol, conv_tol=1e-10)
    e = mf.kernel()
    assert mf.converged
    # pyscf-semiempirical's own reference for this geometry (rmindo3_grad.py): -341.50046431149383 eV
    from pyscf.data.nist import HARTREE2EV

    assert e == pytest.approx(-341.50046431149383 / HARTREE2EV, abs=1e-6)


def _fd_gradient(z, pos, h_bohr=1e-4):
    grad = np.zeros_like(pos)
    h = h_bohr * BOHR
    for i in range(pos.shape[0]):
        for k in range(3):
            e = []
            for s in (1.0, -1.0):
                p = pos.copy()
                p[i, k] += s * h
                e.append(m.mindo3_energy_and_gradient(z, p, conv_tol=1e-12)[0])
            grad[i, k] = (e[0] - e[1]) / (2 * h_bohr)
    return grad


@pytest.mark.parametrize("z,pos", [(WATER_Z, WATER), (METHANE_Z, METHANE), (SILANE_Z, SILANE)],
                         ids=["water", "methane", "silane"])
def test_analytic_gradient_matches_finite_differences(z, pos):
    e, g = m.mindo3_energy_and_gradient(z, pos, conv_tol=1e-12)
    assert np.isfinite(e) and g.shape == (len(z), 3)
    assert np.abs(g).max() > 1e-3  # not at a stationary point: the comparison is meaningful
    fd = _fd_gradient(z, pos)
    assert np.abs(g - fd).max() < 1e-6  # Hartree/Bohr
    assert np.abs(g.sum(axis=0)).max() < 1e-8  # translational invariance


def test_vectorised_jk_equals_package_jk():
    from pyscf.semiempirical import mindo3 as pkg

    z = [6, 8, 7, 1, 1, 1, 9, 16, 17]
    rng = np.random.default_rng(0)
    pos = rng.normal(scale=1.6, size=(len(z), 3))
    mm = m.rmindo3(m.make_mol(z, pos))._mindo_mol
    dm = rng.normal(size=(2, mm.nao, mm.nao))
    dm = dm + dm.transpose(0, 2, 1)
    for d in (dm, dm[0]):
        vj0, vk0 = pkg.get_jk(mm, d)
        vj1, vk1 = m.mindo3_get_jk(mm, d)
        assert vj1.shape == d.shape
        np.testing.assert_allclose(vj1, vj0, atol=1e-12)
        np.testing.assert_allclose(vk1, vk0, atol=1e-12)


def test_optimization_lowers_energy_and_gives_sensible_bonds():
    e0, _ = m.mindo3_energy_and_gradient(WATER_Z, WATER * 1.08)
    pos, e, converged, n = m.optimize_mindo3(WATER_Z, WATER * 1.08)
    assert converged and n >= 2
    assert e < e0 - 1e-3
    e_check, g = m.mindo3_energy_and_gradient(WATER_Z, pos)
    assert e_check == pytest.approx(e, abs=1e-7)
    assert np.abs(g).max() < 4.5e-4  # geomeTRIC's max-gradient criterion
    d_oh = np.linalg.norm(pos[1:] - pos[0], axis=1)
    assert np.all((d_oh > 0.93) & (d_oh < 0.98))  # MINDO/3 ~0.95 A, experiment 0.958 A


def test_silicon_parameter_fix():
    """Without the VS/VP fix Si-H optimises to ~1.73 A; with it to MINDO/3's ~1.47 A (exp. 1.48)."""
    from pyscf.semiempirical import mopac_param

    m.apply_parameter_fixes()
    m.apply_parameter_fixes()  # idempotent
    assert mopac_param.VS[14] == pytest.approx(-17.82 / mopac_param.HARTREE2EV)
    assert mopac_param.VP[14] == pytest.approx(-8.51 / mopac_param.HARTREE2EV)
    pos, e, converged, _ = m.optimize_mindo3(SILANE_Z, SILANE)
    d = np.linalg.norm(pos[1:] - pos[0], axis=1)
    assert converged and np.all((d > 1.42) & (d < 1.52))


def test_supported_elements_match_parameter_tables():
    from pyscf.semiempirical import mopac_param as p

    m.apply_parameter_fixes()
    for z in range(1, 18):
        complete = all(float(np.asarray(t)[z]) != 0.0 for t in (p.USS3, p.ZS3, p.EISOL3, p.EHEAT3, p.VS)) \
            and p.BETA3[z - 1, z - 1] != 0.0
        assert complete == (z in m.MINDO3_ELEMENTS), z
    from pyscf.data.elements import _symbol

    assert tuple(_symbol(z) for z in m.MINDO3_ELEMENTS) == m.MINDO3_SYMBOLS


def test_unsupported_element_is_a_mindo3_failure():
    with pytest.raises(MoleculeFailure) as err:
        m.optimize_mindo3([6, 35, 1, 1, 1], np.array([[0, 0, 0], [1.94, 0, 0], [-0.36, 1.03, 0],
                                                        [-0.36, -0.51, 0.89], [-0.36, -0.51, -0.89]]))
    assert err.value.stage == "mindo3"
    assert err.value.reason == "element Br not parametrized in MINDO3"
