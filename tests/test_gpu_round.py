"""The GPU training round, run on the CPU with a budget of seconds: prepared data in, weights that load and score out."""
import json

import numpy as np
import pytest
import torch

from baselines.gpu_round import load_grids, load_point_clouds, main, prepare_grids, prepare_point_clouds, run_round
from builders.format.reader import iter_release


def test_mo3enet_round_warm_starts_from_the_shipped_weights_and_its_weights_score(small_release, tmp_path, capsys):
    from baselines.mo3enet.benchmark import Mo3ENetBenchmarkModel
    from benchmarks.metrics.pointcloud import match_molecule, summarize
    from benchmarks.task_pointcloud import _types

    _, release = small_release
    data = tmp_path / "round.npz"
    info = prepare_point_clouds(release, data)
    samples = list(iter_release(release, "train"))
    back = load_point_clouds(data)
    assert info["samples"] == len(samples) == len(back)
    assert all(np.array_equal(a["positions"], b["positions"]) for a, b in zip(back, samples))

    rec = run_round("mo3enet", data, tmp_path / "out", minutes=0.15, device="cpu")
    assert rec["start"] == "shipped" and rec["preset"] == "small" and rec["steps"] > 0
    weights = tmp_path / "out" / "weights"
    assert all(f.stat().st_size < 16 * 2**20 for f in weights.rglob("*.safetensors"))
    first = json.loads((weights / "training" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["sigma"] == pytest.approx(1.4211, abs=1e-3)          # the shipped weights' sigma
    cfg = json.loads((weights / "config.json").read_text())
    assert cfg["source"]["step"] == rec["steps"] and cfg["source"]["round"]["device"] == "cpu"

    model = Mo3ENetBenchmarkModel(weights=str(weights))
    assert f"mo3enet: weights from {weights} (small preset, {rec['steps']:,} training steps" in capsys.readouterr().err
    mols = samples[:8]
    matches = [match_molecule(np.asarray(m["positions"], np.float64), _types(m["atomic_numbers"]),
                              np.asarray(c["positions"], np.float64), np.asarray(c["type_probs"], np.float64),
                              np.asarray(c["weights"], np.float64)) for m, c in zip(mols, model.reconstruct(mols))]
    score = summarize(matches)
    assert 0.0 <= score["atomwise_matched_fraction"] <= 1.0 and np.isfinite(score["penalized_mean_deviation"])

    # continuing the round's own run folder
    rec2 = run_round("mo3enet", data, tmp_path / "out2", minutes=0.05, device="cpu", start=str(tmp_path / "out" / "run"))
    assert rec2["steps"] > rec["steps"]


def test_vqgan_round_writes_weights_the_adapter_loads(tmp_path, monkeypatch):
    from baselines.vqgan3d import train as vq_train
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

    grids = vq_train.synthetic_grids(6, 32)
    monkeypatch.setattr(vq_train.ReleaseGrids, "__iter__", lambda self: iter([lambda g=g: g for g in grids]))
    data = tmp_path / "grids.npz"
    assert prepare_grids(tmp_path, data, size=32)["samples"] == 6
    back = load_grids(data)
    assert back[0].shape == (1, 32, 32, 32) and torch.allclose(back[0], grids[0], atol=1e-2)
    rec = run_round("vqgan3d", data, tmp_path / "out", minutes=0.1, device="cpu")
    assert rec["steps"] > 0
    model = VQGAN3DBenchmarkModel(weights=str(tmp_path / "out" / "weights"))
    recon = model.model(back[0][None])[0]
    assert recon.shape == (1, 1, 32, 32, 32) and torch.isfinite(recon).all()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["prepare", "mo3enet", "--release", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "error: release" in capsys.readouterr().err
    assert main(["run", "mo3enet", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "o"),
                 "--minutes", "1", "--device", "cpu"]) == 2
    assert "error: --data" in capsys.readouterr().err
