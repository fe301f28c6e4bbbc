"""Benchmark adapters of the learned baselines (Mo3ENet, 3DGrid-VQGAN) and the sharded
safetensors weights format they load (baselines.weights).

The models carry tiny random weights (the ``small`` presets) written with ``save_sharded`` to a
temporary folder; densities come from a real RHF/STO-3G run (pyscf) rendered with
``render_density``, as in tests/test_render.py.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from baselines.weights import WeightsIntegrityError, load_sharded, save_sharded

MIB = 1024 * 1024

WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]))
FORMAMIDE = (np.array([6, 8, 7, 1, 1, 1]),
             np.array([[0, 0.42, 0], [1.2, 0.42, 0], [-0.68, -0.75, 0], [-0.55, 1.37, 0],
                       [-1.69, -0.73, 0], [-0.17, -1.62, 0]], dtype=np.float64))
FLUOROETHANOL = (np.array([6, 6, 8, 9, 1, 1, 1, 1, 1]),   # non-planar, no symmetry
                 np.array([[0.0, 0.0, 0.0], [1.51, 0.05, 0.1], [2.0, 1.35, -0.2], [-0.45, -1.25, 0.3],
                           [-0.4, 0.35, -0.95], [-0.35, 0.7, 0.75], [1.9, -0.6, 0.9], [1.85, -0.35, -0.85],
                           [2.95, 1.3, -0.1]]))


def _pointcloud(mol, shift=0.0):
    z, pos = mol
    return {"atomic_numbers": z.astype(np.uint8), "positions": (pos + shift).astype(np.float32)}


def _random_o3(seed):
    """A random rotation, composed with an inversion for odd seeds: (3, 3) float64."""
    r = Rotation.random(random_state=seed).as_matrix()
    return r if seed % 2 == 0 else -r


# ----------------------------------------------------------------------------- weights format
def test_save_sharded_splits_large_state_dict_and_restores_exactly(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {
        "big": torch.randn(5_000_000, generator=g).reshape(1000, 5000),      # 20 MB: one tensor > 16 MiB
        "mid.a": torch.randn(1_500_000, generator=g),                          # 6 MB
        "mid.b": torch.randn(3, 500_000, generator=g).to(torch.bfloat16),
        "ints": torch.arange(1_000_000, dtype=torch.int64),                    # 8 MB
        "flag": torch.tensor(True),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
    }
    total = sum(t.numel() * t.element_size() for t in state.values())
    assert total > 16 * MIB
    save_sharded(state, tmp_path, {"model": "test", "n": 3})
    shards = sorted(tmp_path.glob("*.safetensors"))
    assert len(shards) >= 3
    assert all(p.stat().st_size < 16 * MIB for p in shards)
    loaded, config = load_sharded(tmp_path)
    assert config == {"model": "test", "n": 3}
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, k
        assert torch.equal(loaded[k], v), k
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in shards}
    assert manifest["split_tensors"]["big"]["parts"] >= 2


def test_corrupted_shard_fails_with_sha256_error(tmp_path):
    save_sharded({"w": torch.arange(1000, dtype=torch.float32)}, tmp_path, {"model": "test"})
    shard = next(tmp_path.glob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF                               # flip the last byte of the tensor data
    shard.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match=rf"sha256 mismatch for .*{shard.name}"):
        load_sharded(tmp_path)


def test_corrupted_config_and_missing_shard_are_reported(tmp_path):
    save_sharded({"w": torch.zeros(10)}, tmp_path, {"model": "test"})
    (tmp_path / "config.json").write_text('{"model": "other"}\n')
    with pytest.raises(WeightsIntegrityError, match="config.json"):
        load_sharded(tmp_path)
    save_sharded({"w": torch.zeros(10)}, tmp_path, {"model": "test"})
    next(tmp_path.glob("*.safetensors")).unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        load_sharded(tmp_path)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_sharded(tmp_path / "nowhere")


def test_checkpoint_layout_is_shared(tmp_path):
    """baselines.checkpoints: one step-folder layout and weights file for every baseline;
    training-only modules come back separately, ``keep`` prunes, the metrics log is trimmed."""
    from baselines.checkpoints import (
        WEIGHTS_FILE, read_checkpoint, read_training_state, resolve_checkpoint, trim_metrics,
        write_checkpoint,
    )

    model = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    disc = {"w": torch.zeros(4)}
    for step in (1, 2, 3):
        ck = write_checkpoint(tmp_path, step, model, {"step": step, "rng": torch.arange(3)},
                              {"preset": "x"}, extra={"discriminator": disc}, keep=2)
    assert ck.name == "step_00000003" and (ck / WEIGHTS_FILE).is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_00000002", "step_00000003"]
    assert resolve_checkpoint(tmp_path) == resolve_checkpoint(tmp_path / "checkpoints") == resolve_checkpoint(ck)
    got = read_checkpoint(tmp_path)
    assert got.folder == ck and got.step == 3 and got.config == {"preset": "x"}
    assert got.weights.keys() == model.keys() and all(torch.equal(got.weights[k], v) for k, v in model.items())
    assert got.extra.keys() == {"discriminator"} and torch.equal(got.extra["discriminator"]["w"], disc["w"])
    assert read_training_state(ck)["step"] == 3
    with pytest.raises(ValueError, match="clashes"):
        write_checkpoint(tmp_path, 4, {"discriminator.w": torch.ones(1)}, {}, {}, extra={"discriminator": disc})
    with pytest.raises(FileNotFoundError, match="no Mo3ENet checkpoint"):
        resolve_checkpoint(tmp_path / "nothing", "Mo3ENet")
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": i}) + "\n" for i in (1, 2, 3, 4)))
    trim_metrics(log, 2)
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2]



def test_rng_state_round_trip_through_state_file(tmp_path):
    """baselines.checkpoints.rng_state / restore_rng_state: after a save to state.pt and a
    restore, torch's global generator, Python's random and a run's own generator give the same
    draws as they did right after the capture; a missing generator name is a KeyError."""
    import random

    from baselines.checkpoints import read_training_state, restore_rng_state, rng_state, write_checkpoint

    torch.manual_seed(3)
    random.seed(3)
    noise = torch.Generator().manual_seed(5)
    ck = write_checkpoint(tmp_path, 1, {"w": torch.zeros(1)}, {"rng": rng_state(noise=noise)}, {})
    first = (torch.rand(4), random.random(), torch.rand(4, generator=noise))
    torch.manual_seed(99)
    random.seed(99)
    noise.manual_seed(99)
    restore_rng_state(read_training_state(ck)["rng"], noise=noise)
    again = (torch.rand(4), random.random(), torch.rand(4, generator=noise))
    assert torch.equal(first[0], again[0]) and first[1] == again[1] and torch.equal(first[2], again[2])
    with pytest.raises(KeyError, match="generator.slice_gen"):
        restore_rng_state(read_training_state(ck)["rng"], slice_gen=torch.Generator())


# ----------------------------------------------------------------------------- Mo3ENet
@pytest.fixture(scope="module")
def mo3enet_weights(tmp_path_factory):
    from baselines.mo3enet.config import get_config
    from baselines.mo3enet.model import Mo3ENet

    torch.manual_seed(0)
    cfg = get_config("small")
    folder = tmp_path_factory.mktemp("mo3enet_weights")
    model = Mo3ENet(cfg.model)
    save_sharded(model.state_dict(), folder, {"model": "mo3enet", "preset": "small", "config": cfg.to_dict()})
    return folder, cfg, model


@pytest.fixture(scope="module")
def mo3enet(mo3enet_weights):
    from baselines.mo3enet.benchmark import Mo3ENetBenchmarkModel

    return Mo3ENetBenchmarkModel(weights=str(mo3enet_weights[0]), batch_size=2)


def test_mo3enet_missing_weights_message(tmp_path):
    from baselines.mo3enet.benchmark import Mo3ENetBenchmarkModel

    with pytest.raises(FileNotFoundError, match=r"no Mo3ENet weights .*baselines\.mo3enet\.export"):
        Mo3ENetBenchmarkModel(weights=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="neither manifest.json nor a training checkpoint"):
        Mo3ENetBenchmarkModel(weights=str(tmp_path))


def test_mo3enet_no_shipped_weights_message(tmp_path, monkeypatch):
    import baselines.mo3enet.benchmark as bench

    monkeypatch.setattr(bench, "SPEC", dataclasses.replace(bench.SPEC, shipped=tmp_path / "weights"))
    with pytest.raises(FileNotFoundError, match=r"no shipped Mo3ENet weights .*mo3enet\.train .*mo3enet\.export"):
        bench.Mo3ENetBenchmarkModel()


def test_mo3enet_through_the_registry(mo3enet_weights):
    from benchmarks.protocol import load_model, num_parameters
    from benchmarks.run import supported_tasks

    model = load_model("mo3enet", weights=str(mo3enet_weights[0]))
    assert model.name == "mo3enet" and model.input_kind == "pointcloud"
    assert num_parameters(model) == mo3enet_weights[2].num_parameters()
    assert {"qm9", "pointcloud-reconstruction"} <= set(supported_tasks(model))


def test_mo3enet_loads_and_embeds(mo3enet, mo3enet_weights):
    _, cfg, model = mo3enet_weights
    assert mo3enet.num_parameters() == sum(p.numel() for p in model.parameters())
    assert not mo3enet.model.training
    batch = [_pointcloud(WATER), _pointcloud(FORMAMIDE), _pointcloud(FLUOROETHANOL)]
    emb = mo3enet.embed(batch)
    d = cfg.model.scalar_embedding_dim
    assert emb.shape == (3, d) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.abs(emb[0] - emb[1]).max() > 1e-4          # different molecules, different embeddings
    # batch_size=2 cuts the batch; each molecule alone gives the same embedding
    alone = np.concatenate([mo3enet.embed([s]) for s in batch])
    np.testing.assert_allclose(emb, alone, rtol=1e-5, atol=1e-5 * np.abs(emb).max())
    posed = mo3enet.embed_posed(batch)
    assert posed.shape == (3, 3 * cfg.model.bottleneck_dim + d) and np.isfinite(posed).all()
    np.testing.assert_array_equal(posed[:, 3 * cfg.model.bottleneck_dim:], emb)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mo3enet_embed_invariant_posed_equivariant(mo3enet, mo3enet_weights, seed):
    nvec = mo3enet_weights[1].model.bottleneck_dim
    rng = np.random.default_rng(seed)
    q, t = _random_o3(seed), rng.normal(size=3) * 3.0
    mols = [FORMAMIDE, FLUOROETHANOL]
    batch = [_pointcloud(m) for m in mols]
    moved = [{"atomic_numbers": m[0], "positions": (m[1] @ q.T + t).astype(np.float32)} for m in mols]
    perm = rng.permutation(len(mols[1][0]))
    permuted = [batch[0], {"atomic_numbers": mols[1][0][perm], "positions": batch[1]["positions"][perm]}]
    e, e_moved, e_perm = mo3enet.embed(batch), mo3enet.embed(moved), mo3enet.embed(permuted)
    tol = 2e-4 * np.abs(e).max()
    np.testing.assert_allclose(e_moved, e, atol=tol)
    np.testing.assert_allclose(e_perm, e, atol=tol)
    p, p_moved = mo3enet.embed_posed(batch), mo3enet.embed_posed(moved)
    g, g_moved = p[:, :3 * nvec].reshape(2, nvec, 3), p_moved[:, :3 * nvec].reshape(2, nvec, 3)
    assert np.abs(g).max() > 1e-3
    np.testing.assert_allclose(g_moved, g @ q.T, atol=2e-4 * np.abs(g).max())
    np.testing.assert_allclose(p_moved[:, 3 * nvec:], e, atol=tol)


def test_mo3enet_reconstruct_structure_and_frame(mo3enet, mo3enet_weights):
    m = mo3enet_weights[1].model.num_output_nodes
    q, t = _random_o3(5), np.array([4.0, -2.0, 7.5])
    mols = [WATER, FLUOROETHANOL]
    out = mo3enet.reconstruct([_pointcloud(x) for x in mols])
    moved = mo3enet.reconstruct([{"atomic_numbers": x[0], "positions": (x[1] @ q.T + t).astype(np.float32)}
                                 for x in mols])
    assert len(out) == 2
    for mol, c, cm in zip(mols, out, moved):
        assert c["positions"].shape == (m, 3) and c["type_probs"].shape == (m, 5) and c["weights"].shape == (m,)
        assert np.isfinite(c["positions"]).all()
        np.testing.assert_allclose(c["weights"].sum(), len(mol[0]), rtol=1e-5)
        assert (c["weights"] >= 0).all()
        np.testing.assert_allclose(c["type_probs"].sum(1), 1.0, atol=1e-5)
        # positions are in the input frame: rotating + translating the input moves them alike
        np.testing.assert_allclose(cm["positions"], c["positions"] @ q.T + t, atol=2e-4 * (1 + np.abs(t).max()))
        np.testing.assert_allclose(cm["type_probs"], c["type_probs"], atol=1e-4)
        np.testing.assert_allclose(cm["weights"], c["weights"], atol=1e-4)
    # a pure translation shifts the decoded swarm by exactly that vector (centroid added back)
    shifted = mo3enet.reconstruct([_pointcloud(WATER, shift=np.array([10.0, 0.0, -3.0]))])[0]
    np.testing.assert_allclose(shifted["positions"], out[0]["positions"] + [10.0, 0.0, -3.0], atol=1e-4)


def test_mo3enet_export_from_training_checkpoint(tmp_path, mo3enet_weights):
    """export reads a train.py checkpoint and writes weights the adapter loads identically."""
    from baselines.mo3enet.benchmark import Mo3ENetBenchmarkModel
    from baselines.mo3enet.export import export
    from baselines.mo3enet.loss import SigmaSchedule
    from baselines.mo3enet.train import SampleStream, save_checkpoint

    _, cfg, model = mo3enet_weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sigma = SigmaSchedule(cfg.loss)
    ck = save_checkpoint(tmp_path / "run", model, opt, sigma, 7, SampleStream([], 2),
                         torch.Generator().manual_seed(0), cfg)
    out = export(tmp_path / "run", tmp_path / "weights")
    state, info = load_sharded(out)
    assert info["model"] == "mo3enet" and info["source"]["step"] == 7 and info["preset"] == "small"
    assert info["source"]["sigma"] == pytest.approx(cfg.loss.sigma_init)
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    batch = [_pointcloud(FORMAMIDE)]
    a = Mo3ENetBenchmarkModel(weights=str(out)).embed(batch)
    b = Mo3ENetBenchmarkModel(weights=str(ck)).embed(batch)       # a checkpoint folder also loads
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- 3DGrid-VQGAN
@pytest.fixture(scope="module")
def vqgan_weights(tmp_path_factory):
    from baselines.vqgan3d.config import get_config
    from baselines.vqgan3d.model import VQGAN3D

    torch.manual_seed(0)
    cfg = get_config("small", n_codes=64)
    model = VQGAN3D(cfg)
    model.quantizer.initialized.fill_(True)
    folder = tmp_path_factory.mktemp("vqgan_weights")
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("cluster_size", "embed_sum"))}
    save_sharded(state, folder, {"model": "vqgan3d", "preset": cfg.preset, "config": cfg.to_dict()})
    return folder, cfg, model.eval()


@pytest.fixture(scope="module")
def densities():
    """Water and methane RHF/STO-3G density samples (bounding box + 3 Bohr frames)."""
    from pyscf import gto, scf

    from builders.density.frame import box_frame
    from builders.density.storage import pack_density_matrix

    out = []
    methane = "C 0 0 0; H 0.63 0.63 0.63; H -0.63 -0.63 0.63; H -0.63 0.63 -0.63; H 0.63 -0.63 -0.63"
    for atom, shape in (("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", (22, 26, 24)),
                        (methane, (24, 24, 24))):
        mol = gto.M(atom=atom, basis="sto-3g", unit="Angstrom", verbose=0)
        mf = scf.RHF(mol)
        mf.conv_tol = 1e-9
        mf.kernel()
        assert mf.converged
        frame = box_frame(mol.atom_coords(unit="Bohr"), shape=shape)
        origin, axes = frame["grid_origin"], frame["grid_axes"]
        out.append({"atomic_numbers": mol.atom_charges().astype(np.uint8),
                    "positions": mol.atom_coords(unit="Angstrom"), "basis": "sto-3g",
                    "density_matrix": pack_density_matrix(mf.make_rdm1(), np.float32),
                    "grid_origin": origin, "grid_axes": axes, "grid_shape": np.array(shape, np.int32),
                    "charge": 0, "spin": 0})
    return out


@pytest.fixture(scope="module")
def vqgan(vqgan_weights):
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

    return VQGAN3DBenchmarkModel(weights=str(vqgan_weights[0]))


def test_vqgan_missing_weights_message(tmp_path):
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

    with pytest.raises(FileNotFoundError, match=r"no 3DGrid-VQGAN weights .*baselines\.vqgan3d\.export"):
        VQGAN3DBenchmarkModel(weights=str(tmp_path / "missing"))


def test_vqgan_no_shipped_weights_message(tmp_path, monkeypatch):
    import baselines.vqgan3d.benchmark as bench

    monkeypatch.setattr(bench, "SPEC", dataclasses.replace(bench.SPEC, shipped=tmp_path / "weights"))
    with pytest.raises(FileNotFoundError, match=r"no shipped 3DGrid-VQGAN weights .*vqgan3d\.train .*vqgan3d\.export"):
        bench.VQGAN3DBenchmarkModel()


def test_vqgan_through_the_registry(vqgan_weights):
    from benchmarks.protocol import load_model

    model = load_model("vqgan3d", weights=str(vqgan_weights[0]), shape=16)
    assert model.name == "vqgan3d" and model.input_kind == "density" and model.shape == (16, 16, 16)
    with pytest.raises(ValueError, match="multiple of 4"):
        load_model("vqgan3d", weights=str(vqgan_weights[0]), shape="30,32,32")


def test_vqgan_wrong_model_weights_rejected(mo3enet_weights):
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

    with pytest.raises(ValueError, match="'mo3enet', not 'vqgan3d'"):
        VQGAN3DBenchmarkModel(weights=str(mo3enet_weights[0]))


def test_vqgan_embed_renders_density_samples(vqgan, vqgan_weights, densities):
    from builders.density import render_density
    from builders.density.render import electron_count, resolve_frame

    _, cfg, model = vqgan_weights
    n = cfg.input_size
    assert vqgan.shape == (n, n, n)
    assert vqgan.num_parameters() == sum(p.numel() for p in model.parameters()) + cfg.n_codes * cfg.embedding_dim
    emb = vqgan.embed(densities)
    # seed pooling: (X/4, 2, 2, C/16) = 8 * 2 * 2 * 4 for the small preset
    assert emb.shape == (2, (n // 4) * 2 * 2 * (cfg.embedding_dim // 16)) and np.isfinite(emb).all()
    # the documented pipeline: render over the sample's box at the input shape -> log1p -> z_e -> pool
    rho = torch.as_tensor(render_density(densities[0], shape=(n, n, n)), dtype=torch.float32)
    _, axes, _ = resolve_frame(densities[0], (n, n, n))
    assert electron_count(rho.numpy(), axes) == pytest.approx(10.0, rel=0.05)      # water: 10 electrons
    with torch.no_grad():
        ref = model.embed(torch.log1p(rho)[None, None], pooling="seed").numpy()
    np.testing.assert_allclose(emb[:1], ref, rtol=1e-5, atol=1e-6)
    assert np.abs(emb[0] - emb[1]).max() > 1e-4
    with pytest.raises(ValueError, match="needs density samples"):
        vqgan.embed([_pointcloud(WATER)])


def test_vqgan_embed_blocks_pooling(vqgan_weights, densities):
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

    cfg = vqgan_weights[1]
    emb = VQGAN3DBenchmarkModel(weights=str(vqgan_weights[0]), pooling="blocks").embed(densities[:1])
    assert emb.shape == (1, cfg.embedding_dim * 8) and np.isfinite(emb).all()


def test_vqgan_reconstruct_roundtrip(vqgan, vqgan_weights, densities):
    from builders.density import render_density

    model = vqgan_weights[2]
    n = vqgan_weights[1].input_size
    native = [render_density(s, shape=None) for s in densities]           # (22, 26, 24), (24, 24, 24)
    cube = render_density(densities[1], shape=(n, n, n))                  # already the model shape
    out = vqgan.reconstruct([{"grid": g} for g in native] + [{"grid": cube}])
    assert [o.shape for o in out] == [g.shape for g in native] + [cube.shape]
    for o in out:
        assert o.dtype == np.float32 and np.isfinite(o).all() and (o >= 0).all()
    # at the model's shape no resize happens: expm1(model(log1p(rho))) clamped at 0
    with torch.no_grad():
        x_hat, _ = model(torch.log1p(torch.as_tensor(cube, dtype=torch.float32))[None, None])
    np.testing.assert_allclose(out[2], torch.expm1(x_hat).clamp_min(0)[0, 0].numpy(), rtol=1e-5, atol=1e-6)
    # decoding is deterministic
    again = vqgan.reconstruct([{"grid": native[0]}])[0]
    np.testing.assert_array_equal(again, out[0])
    with pytest.raises(ValueError, match="needs a 'grid'"):
        vqgan.reconstruct([densities[0]])


def test_vqgan_export_from_training_checkpoint(tmp_path, vqgan_weights):
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel
    from baselines.vqgan3d.discriminator import build_discriminator
    from baselines.vqgan3d.export import export
    from baselines.vqgan3d.train import save_checkpoint

    _, cfg, model = vqgan_weights
    disc = build_discriminator(cfg)
    opt_g = torch.optim.Adam(model.parameters())
    opt_d = torch.optim.Adam(disc.parameters())
    ck = save_checkpoint(tmp_path / "run", 11, model, disc, opt_g, opt_d, torch.Generator(), {}, cfg)
    out = export(tmp_path / "run", tmp_path / "weights")
    state, info = load_sharded(out)
    assert info["model"] == "vqgan3d" and info["source"]["step"] == 11
    assert "quantizer.embed_sum" not in state and not any(k.startswith("discriminator") for k in state)
    grid = {"grid": np.random.default_rng(0).gamma(0.5, 0.2, size=(16, 20, 12))}
    a = VQGAN3DBenchmarkModel(weights=str(out)).reconstruct([grid])[0]
    b = VQGAN3DBenchmarkModel(weights=str(ck)).reconstruct([grid])[0]
    np.testing.assert_array_equal(a, b)


def test_mo3enet_heavy_reconstructs_qm9_hold_out_heavy_atoms():
    """The registered heavy-atom Mo3ENet (the committed training run) reads molecules without
    hydrogens and rebuilds the heavy atoms of real QM9 hold-out molecules: weights sum to the
    heavy-atom count and most atoms match (90.7 % on the whole hold-out at step 51,400)."""
    from baselines.mo3enet.benchmark import HEAVY_ATOM_WEIGHTS
    from benchmarks.metrics.pointcloud import match_molecule, summarize
    from benchmarks.protocol import load_model, weights_digest
    from benchmarks.qm9 import load_qm9, molecule
    from benchmarks.task_pointcloud import _types
    from benchmarks.task_qm9 import split_rows

    model = load_model("mo3enet-heavy")
    assert model.name == "mo3enet-heavy" and model.weights == str(HEAVY_ATOM_WEIGHTS)
    assert model.info["config"]["model"]["hydrogens"] is False
    assert len(weights_digest(model)) == 64
    data = load_qm9(progress=False)
    mols = [molecule(data, int(r)) for r in split_rows(data, quick=False)["test"][::330][:40]]  # across the hold-out
    out = model.reconstruct(mols)  # with hydrogens in: the model drops them itself
    matches = []
    for m, c in zip(mols, out):
        heavy = np.asarray(m["atomic_numbers"]) != 1
        np.testing.assert_allclose(c["weights"].sum(), heavy.sum(), rtol=1e-4)
        matches.append(match_molecule(np.asarray(m["positions"], np.float64)[heavy], _types(m["atomic_numbers"][heavy]),
                                      c["positions"].astype(np.float64), c["type_probs"].astype(np.float64),
                                      c["weights"].astype(np.float64)))
    s = summarize(matches)
    assert s["n_molecules"] == 40 and s["atomwise_matched_fraction"] > 0.75, s
    assert s["atomwise_mean_deviation"] < 0.15, s
