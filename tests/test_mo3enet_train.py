"""Mo3ENet training loop: overfitting a tiny set, exact resume, schedule, outputs, CLI errors."""
import json

import pytest
import torch

from baselines.mo3enet.benchmark import load_mo3enet
from baselines.mo3enet.config import Mo3ENetConfig, small_config
from baselines.mo3enet.data import collate_point_clouds, without_hydrogens
from baselines.mo3enet.synthetic import rdkit_samples
from baselines.mo3enet.train import compute_loss, learning_rate, main, train


@pytest.fixture(scope="module")
def mols():
    return rdkit_samples(("CCO", "NCC(=O)O", "CC(F)(F)F"))


def _cfg(batch_size=3, warmup=20, checkpoint_every=1000) -> Mo3ENetConfig:
    cfg = small_config()
    cfg.train.batch_size = batch_size
    cfg.train.lr_warmup_steps = warmup
    cfg.train.checkpoint_every = checkpoint_every
    return cfg


def _fixed_sigma_loss(model, samples, sigma=1.0) -> float:
    cfg = small_config()
    with torch.no_grad():
        _, stats, _ = compute_loss(model.eval(), collate_point_clouds(samples), sigma, cfg)
    return stats["reconstruction"]


def test_overfits_tiny_set(mols, tmp_path):
    cfg = _cfg()
    torch.manual_seed(cfg.train.seed)
    from baselines.mo3enet.model import Mo3ENet
    before = _fixed_sigma_loss(Mo3ENet(cfg.model), mols)       # same init as train() uses
    recs = train(cfg, mols, tmp_path, max_steps=100)
    after = _fixed_sigma_loss(load_mo3enet(tmp_path)[0], mols)
    assert len(recs) == 100
    assert after < 0.6 * before, (before, after)
    first = sum(r["loss"] for r in recs[:10]) / 10
    last = sum(r["loss"] for r in recs[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert recs[-1]["sigma"] < cfg.loss.sigma_init           # the width schedule kicked in
    # outputs: metrics log, curves, safetensors checkpoint
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 101))
    assert (tmp_path / "training_curves.png").stat().st_size > 5000
    ck = tmp_path / "checkpoints" / (tmp_path / "checkpoints" / "latest").read_text()
    assert (ck / "model.safetensors").is_file() and (ck / "state.pt").is_file()
    state = torch.load(ck / "state.pt", weights_only=True)
    pos = state["data_position"]
    assert state["step"] == 100 and pos["epoch"] * len(mols) + pos["index"] == 100 * 3


def test_resume_reproduces_uninterrupted_run(mols, tmp_path):
    samples = mols + rdkit_samples(("C=CC#N",))           # 4 samples, batch 3: passes wrap mid-batch
    cfg = _cfg(checkpoint_every=4)
    full = train(cfg, samples, tmp_path / "full", max_steps=8)
    first = train(_cfg(checkpoint_every=4), samples, tmp_path / "split", max_steps=4)
    second = train(_cfg(checkpoint_every=4), samples, tmp_path / "split", max_steps=8,
                   resume=tmp_path / "split")
    assert [r["step"] for r in second] == [5, 6, 7, 8]
    for key in ("loss", "reconstruction", "sigma", "lr"):
        assert [r[key] for r in first + second] == [r[key] for r in full], key
    logged = [json.loads(x)["loss"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [r["loss"] for r in full]
    a, b = load_mo3enet(tmp_path / "full")[0], load_mo3enet(tmp_path / "split")[0]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_learning_rate_schedule():
    tc = small_config().train
    assert learning_rate(0, tc) == pytest.approx(1e-4)
    assert learning_rate(tc.lr_warmup_steps, tc) == pytest.approx(1e-3)
    assert learning_rate(tc.lr_warmup_steps + tc.lr_decay_steps, tc) == pytest.approx(1e-6)
    assert learning_rate(10 ** 9, tc) == pytest.approx(1e-6)
    lrs = [learning_rate(s, tc) for s in range(0, tc.lr_warmup_steps + tc.lr_decay_steps, 50)]
    peak = lrs.index(max(lrs))
    assert all(x < y for x, y in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(x > y for x, y in zip(lrs[peak:], lrs[peak + 1:]))


def test_cli_rejects_missing_release(tmp_path, capsys):
    assert main(["--release", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_empty_data_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        train(_cfg(), [], tmp_path, max_steps=1)


def test_cli_end_to_end_with_stubbed_release(tmp_path, monkeypatch, mols, capsys):
    from baselines.mo3enet import train as train_mod
    seen = {}

    def fake_iter(self):
        seen["path"], seen["split"] = self.path, self.split
        return iter(mols)

    monkeypatch.setattr(train_mod.ReleaseSamples, "__iter__", fake_iter)
    release = tmp_path / "release"
    release.mkdir()
    out = tmp_path / "run"
    args = ["--preset", "small", "--release", str(release), "--out", str(out), "--batch-size", "2"]
    assert main(args + ["--max-steps", "2"]) == 0
    assert main(args + ["--max-steps", "3", "--resume", str(out)]) == 0
    assert seen == {"path": str(release), "split": "train"}
    assert "mo3enet: 1 steps to step 3" in capsys.readouterr().out
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_without_hydrogens_keeps_heavy_atoms_in_order(mols):
    s = dict(mols[1], __key__="glycine")                     # NCC(=O)O with its 5 H
    heavy = without_hydrogens(s)
    z, pos = s["atomic_numbers"], s["positions"]
    assert heavy["atomic_numbers"].tolist() == [7, 6, 6, 8, 8]
    assert (heavy["positions"] == pos[z != 1]).all() and heavy["smiles"] == "NCC(=O)O"
    assert len(s["atomic_numbers"]) == 10                      # the input is not changed
    with pytest.raises(ValueError, match="sample H2: no heavy atoms"):
        without_hydrogens({"__key__": "H2", "atomic_numbers": [1, 1], "positions": [[0, 0, 0], [0.74, 0, 0]]})


def test_heavy_atom_model_trains_and_reads_without_hydrogens(tmp_path, monkeypatch, mols, capsys):
    from baselines.mo3enet import train as train_mod
    from baselines.mo3enet.benchmark import Mo3ENetBenchmarkModel

    monkeypatch.setattr(train_mod.ReleaseSamples, "__iter__", lambda self: iter(mols))
    release, out = tmp_path / "release", tmp_path / "heavy"
    release.mkdir()
    args = ["--preset", "small", "--release", str(release), "--batch-size", "3", "--max-steps", "2"]
    assert main(args + ["--out", str(out), "--heavy-atoms"]) == 0
    model = Mo3ENetBenchmarkModel(weights=str(out))
    assert model.model.cfg.hydrogens is False
    rec = model.reconstruct(mols)
    heavy = [int((m["atomic_numbers"] != 1).sum()) for m in mols]   # 3, 5, 4
    assert [round(float(r["weights"].sum()), 3) for r in rec] == heavy
    # the same molecules with their H removed by the caller embed identically
    assert (model.embed(mols) == model.embed([without_hydrogens(m) for m in mols])).all()
    # a with-H checkpoint cannot be resumed as a heavy-atom run
    assert main(args + ["--out", str(tmp_path / "h")]) == 0
    assert main(args + ["--out", str(tmp_path / "h"), "--resume", str(tmp_path / "h"), "--heavy-atoms"]) == 2
    assert "with-hydrogens model" in capsys.readouterr().err


def test_lr_decay_steps_replaces_the_checkpoint_value_on_resume(tmp_path, monkeypatch, mols, capsys):
    from baselines.mo3enet import train as train_mod
    from baselines.checkpoints import checkpoint_config

    monkeypatch.setattr(train_mod.ReleaseSamples, "__iter__", lambda self: iter(mols))
    monkeypatch.setattr(train_mod, "get_config", lambda preset: _cfg(warmup=1))  # decay from step 1
    release, out = tmp_path / "release", tmp_path / "run"
    release.mkdir()
    args = ["--release", str(release), "--out", str(out), "--batch-size", "3"]
    assert main(args + ["--max-steps", "2"]) == 0
    assert checkpoint_config(str(out), "Mo3ENet")["train"]["lr_decay_steps"] == 20000
    assert main(args + ["--max-steps", "3", "--resume", str(out), "--lr-decay-steps", "500000"]) == 0
    assert checkpoint_config(str(out), "Mo3ENet")["train"]["lr_decay_steps"] == 500000
    lrs = [json.loads(x)["lr"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    tc = _cfg(warmup=1).train
    assert lrs[:2] == [pytest.approx(learning_rate(s, tc)) for s in (0, 1)]
    assert lrs[2] != pytest.approx(learning_rate(2, tc), rel=1e-7)   # 0.99965e-3 with 20k steps
    tc.lr_decay_steps = 500000
    assert lrs[2] == pytest.approx(learning_rate(2, tc), rel=1e-7)    # 0.99999e-3 with 500k
    assert main(args + ["--max-steps", "4", "--resume", str(out), "--lr-decay-steps", "0"]) == 2
    assert "--lr-decay-steps must be a positive step count, got 0" in capsys.readouterr().err
