"""MACE lattice energies (builders.crystals.mace) with a tiny MACE model made here, and the
clear errors without mace-torch or without the model file."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from builders.format.build import build_release
from builders.format.manifest import release_dir
from builders.crystals.energy import pose_molecules
from builders.crystals.molecules import MoleculeBatch
from builders.format.registry import get_release
from builders.format.verify import verify_release

needs_mace = pytest.mark.skipif(
    importlib.util.find_spec("mace") is None,
    reason="mace-torch is not installed (pip install mace-torch -c constraints.txt)",
)


def _tiny_model(path, elements=(1, 6, 7, 8, 9), seed=0):
    """A randomly initialized 2-layer ScaleShiftMACE (float64), saved with torch.save."""
    import mace  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD before e3nn loads its constants)
    from e3nn import o3
    from mace import modules

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(seed)
    try:
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = modules.ScaleShiftMACE(
            r_max=4.5, num_bessel=4, num_polynomial_cutoff=5, max_ell=1, interaction_cls=block,
            interaction_cls_first=block, num_interactions=2, num_elements=len(elements),
            hidden_irreps=o3.Irreps("8x0e + 8x1o"), MLP_irreps=o3.Irreps("8x0e"), gate=torch.nn.functional.silu,
            atomic_energies=np.array([-13.6 * z for z in elements]), avg_num_neighbors=6.0,
            atomic_numbers=list(elements), correlation=2, atomic_inter_scale=2.0, atomic_inter_shift=0.1)
    finally:
        torch.set_default_dtype(old)
    torch.save(model, path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    if importlib.util.find_spec("mace") is None:
        pytest.skip("mace-torch is not installed (pip install mace-torch -c constraints.txt)")
    return _tiny_model(tmp_path_factory.mktemp("mace") / "tiny.model")


@pytest.fixture(scope="module")
def crystal():
    """Acetic acid in a dense P1 cell: (z, standard-frame coords, params (12,), posed coords, cell)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)O"))
    assert AllChem.EmbedMolecule(mol, randomSeed=3) == 0
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    mols = MoleculeBatch.from_molecules([(z, mol.GetConformer().GetPositions())])
    params = torch.tensor([[4.9, 5.3, 6.1, 1.45, 1.62, 1.51, 0.3, 0.6, 0.2, 0.4, -1.1, 0.7]], dtype=torch.float64)
    H, x, _ = pose_molecules(params, mols, torch.zeros(1, dtype=torch.long))
    return z, mols.coords[0].numpy(), params[0], x[0].numpy(), H[0].numpy()


@needs_mace
def test_lattice_energy_is_finite_and_invariant_to_rigid_motions(model_path, crystal):
    from scipy.spatial.transform import Rotation

    from builders.crystals.mace import MaceEnergy

    z, std, _, x, H = crystal
    m = MaceEnergy(model_path)
    ref = m.lattice_energies(z, x[None], H[None], std_positions=std)
    e = float(ref["lattice"][0])
    assert math.isfinite(e) and abs(e) > 1e-4  # the model sees the neighbours (not a no-op)
    assert math.isclose(float(ref["cell"][0]) - ref["gas"], e, rel_tol=1e-12)
    for seed in range(3):
        Q = Rotation.random(random_state=seed).as_matrix()
        rot = m.lattice_energies(z, (x @ Q.T)[None], (H @ Q.T)[None], std_positions=std @ Q.T)
        assert math.isclose(float(rot["lattice"][0]), e, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(rot["gas"], ref["gas"], rel_tol=1e-12, abs_tol=1e-9)
    # shifting the molecule by a lattice vector, or re-choosing the cell's basis, is the same crystal
    shifted = m.lattice_energies(z, (x + H[0] - H[2])[None], H[None], std_positions=std)
    assert math.isclose(float(shifted["lattice"][0]), e, rel_tol=1e-9, abs_tol=1e-9)
    sheared = np.array([H[0], H[1] + H[0], H[2]])
    assert math.isclose(float(m.lattice_energies(z, x[None], sheared[None], std)["lattice"][0]), e,
                        rel_tol=1e-9, abs_tol=1e-9)


@needs_mace
def test_isolated_molecule_energy_is_e_gas(model_path, crystal):
    from builders.crystals.mace import MaceEnergy

    z, std, _, x, _ = crystal
    m = MaceEnergy(model_path)
    e_gas = m.energy(z, std)
    assert math.isclose(m.energy(z, x), e_gas, rel_tol=1e-12)  # pose does not matter in vacuum
    # a cell far larger than the molecule + the model cutoff: no neighbours, E_cell = E_gas
    big = np.diag([40.0, 41.0, 42.0])
    res = m.lattice_energies(z, (std + 20.0)[None], big[None], std_positions=std)
    assert math.isclose(res["gas"], e_gas, rel_tol=1e-12)
    assert abs(float(res["lattice"][0])) < 1e-9
    # E_gas = atomic reference energies + a geometry-dependent interaction part
    assert math.isfinite(e_gas) and abs(e_gas - float((-13.6 * z).sum())) > 1e-6


@needs_mace
def test_build_with_a_mace_model(model_path, tmp_path):
    from tests.conftest import build_small

    smi = tmp_path / "m.smi"
    smi.write_text("CC(=O)O\nOCC#N\n")
    _, conf = build_small(tmp_path / "c", smi)
    spec = get_release("p1-crystals")
    manifest = build_release(spec, tmp_path, {"conformers": str(conf), "n_starts": 1, "n_noisy": 3, "max_steps": 250,
                                              "mace_model": str(model_path)}, seed=0, progress=False)
    out = release_dir(tmp_path, spec.name)
    assert verify_release(out) == []
    assert manifest["parameters"]["mace_model_sha256"] and manifest["failures"]["total"] == 0
    from builders.crystals.mace import MaceEnergy
    from builders.format.reader import iter_release
    from builders.format.splits import SPLITS

    m = MaceEnergy(model_path)
    samples = [s for split in SPLITS for s in iter_release(out, split)]
    assert len(samples) >= 4
    for s in samples:
        meta = s["meta"]
        assert math.isfinite(meta["mace_lattice_energy_ev"])
        assert math.isclose(meta["mace_lattice_energy_ev"], meta["mace_cell_energy_ev"] - meta["mace_gas_energy_ev"],
                            rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(meta["mace_gas_energy_ev"], m.energy(s["atomic_numbers"], s["positions"]), rel_tol=1e-12)
    assert "mace_lattice_energy_ev" in spec.features("default", manifest["parameters"])["meta.json"]
    assert "tiny.model" in (out / "README.md").read_text()


@needs_mace
def test_elements_the_model_lacks_are_a_molecule_failure(tmp_path):
    from builders.format.failures import MoleculeFailure
    from builders.crystals.release import CONFORMER_SOURCE
    from builders.format.spec import Input

    path = _tiny_model(tmp_path / "hco.model", elements=(1, 6, 8))
    spec = get_release("p1-crystals")
    params = spec.resolve_params({"conformers": "unused", "n_starts": 1, "n_noisy": 1, "mace_model": str(path)})
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("OCC#N"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    text = json.dumps({"smiles": "OCC#N", "inchikey": "WSGYTJNNHPZFKR-UHFFFAOYSA-N",
                       "z": [a.GetAtomicNum() for a in mol.GetAtoms()],
                       "positions": mol.GetConformer().GetPositions().tolist()})
    with pytest.raises(MoleculeFailure, match=r"no parameters for elements \[7\]") as err:
        spec.process(Input("k", text, CONFORMER_SOURCE), params, 0)
    assert err.value.stage == "mace"


def test_missing_model_file_is_a_clear_startup_error(tmp_path, capsys):
    from builders.__main__ import main

    spec = get_release("p1-crystals")
    with pytest.raises(FileNotFoundError, match="MACE model file not found: .*nope.model"):
        spec.resolve_params({"conformers": str(tmp_path), "mace_model": str(tmp_path / "nope.model")})
    assert main(["build", "p1-crystals", "--root", str(tmp_path), "--quiet", "--workers", "1",
                 "--mace-model", str(tmp_path / "nope.model")]) == 2
    err = capsys.readouterr().err
    assert "MACE model file not found" in err and "--mace-model" in err


def test_without_mace_torch_the_error_names_the_install(tmp_path, monkeypatch, capsys):
    from builders.__main__ import main
    from builders.crystals import mace as mace_mod

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mace" else real(name, *a))
    (tmp_path / "any.model").write_bytes(b"not a model")
    with pytest.raises(ModuleNotFoundError, match="pip install mace-torch"):
        mace_mod.MaceEnergy(tmp_path / "any.model")
    assert main(["build", "p1-crystals", "--root", str(tmp_path), "--quiet", "--workers", "1",
                 "--mace-model", str(tmp_path / "any.model")]) == 2
    assert "pip install mace-torch" in capsys.readouterr().err


@needs_mace
def test_a_file_that_is_not_a_mace_model_is_rejected(tmp_path):
    from builders.crystals.mace import MaceEnergy

    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable torch model"):
        MaceEnergy(tmp_path / "junk.model")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.model")
    with pytest.raises(ValueError, match="not a MACE model"):
        MaceEnergy(tmp_path / "dict.model")
