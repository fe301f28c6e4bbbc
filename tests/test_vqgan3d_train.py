"""3DGrid-VQGAN training: overfitting a tiny set, exact resume, outputs, CLI."""
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from baselines.vqgan3d import VQGAN3D, small_config
from baselines.vqgan3d.benchmark import load_vqgan3d
from baselines.vqgan3d.train import main, synthetic_grids, train

QUIET = {"checkpoint_every": 10**9, "image_every": 10**9}


@pytest.mark.slow  # ~25 s of CPU time on one core (about 55 s wall on a loaded 2-core box)
def test_overfits_two_grids_l1_falls_tenfold(tmp_path):
    # GAN and perceptual terms off; lr 1e-3 without gradient clipping (the released clip at
    # 1.0 slows the first hundred steps several-fold); both grids in every batch.
    cfg = small_config(input_size=16, perceptual_weight=0.0, disc_start_step=10**9, lr=1e-3,
                       grad_clip=0.0, batch_size=2, log_every=50, **QUIET)
    grids = synthetic_grids(2, 16, seed=0)
    x = torch.stack(grids)
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        l1_before = F.l1_loss(VQGAN3D(cfg).eval()(x)[0], x).item()
    res = train(cfg, grids, tmp_path, 200, verbose=False)
    model, _ = load_vqgan3d(tmp_path)
    with torch.no_grad():
        l1_after = F.l1_loss(model(x)[0], x).item()
    assert l1_after < 0.1 * l1_before, (l1_before, l1_after)
    hist = res["history"]
    assert hist[-1]["l1"] < hist[0]["l1"]
    assert all(r["g_gan"] == 0.0 and r["d_loss"] == 0.0 for r in hist)


def _run(cfg, grids, out, steps, resume=None):
    return train(cfg, grids, out, steps, resume=resume, verbose=False)


def test_resume_equals_uninterrupted_run(tmp_path):
    # GAN on from step 2 so discriminator, slice RNG and optimizer states all matter
    cfg = small_config(input_size=16, perceptual_weight=0.0, disc_start_step=2, log_every=1,
                       checkpoint_every=3, image_every=3, restart_unused_steps=2)
    grids = synthetic_grids(3, 16, seed=4)
    _run(cfg, grids, tmp_path / "a", 6)
    _run(cfg, grids, tmp_path / "b", 3)
    # a stale log line from a run that went further than the checkpoint gets dropped
    with (tmp_path / "b" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 99, "l1": 1.0}) + "\n")
    _run(cfg, grids, tmp_path / "b", 6, resume=tmp_path / "b")
    wa = load_file(str(tmp_path / "a/checkpoints/step_00000006/model.safetensors"))
    wb = load_file(str(tmp_path / "b/checkpoints/step_00000006/model.safetensors"))
    assert wa.keys() == wb.keys()
    assert any(k.startswith("discriminator.") for k in wa)
    assert "quantizer.embeddings" in wa and "quantizer.cluster_size" in wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    sa = torch.load(tmp_path / "a/checkpoints/step_00000006/state.pt", weights_only=True)
    sb = torch.load(tmp_path / "b/checkpoints/step_00000006/state.pt", weights_only=True)
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"])
    ra = [json.loads(l) for l in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(l) for l in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    assert [r["step"] for r in rb] == [1, 2, 3, 4, 5, 6]
    assert strip(ra) == strip(rb)
    assert ra[-1]["d_loss"] > 0 and ra[0]["d_loss"] == 0  # GAN switched on at step 2
    for r in ra:
        assert 1.0 <= r["perplexity"] <= cfg.n_codes and 0 < r["usage"] <= 1
    for name in ("loss_curves.png", "slices.png"):
        assert (tmp_path / "a" / name).read_bytes()[:4] == b"\x89PNG"


def test_3d_discriminator_option_trains(tmp_path):
    cfg = small_config(input_size=16, perceptual_weight=0.0, disc_type="3d", disc_start_step=0,
                       log_every=1, **QUIET)
    res = train(cfg, synthetic_grids(2, 16, seed=2), tmp_path, 2, verbose=False)
    assert res["last"]["d_loss"] > 0 and res["last"]["feat"] > 0
    assert res["params"]["discriminator"] > 0


def test_cli_time_steps_and_bad_release(tmp_path, capsys):
    rc = main(["--preset", "small", "--synthetic", "2", "--time-steps", "1", "--seed-config",
               "--out", str(tmp_path), "--device", "cpu"])
    assert rc == 0
    t = json.loads((tmp_path / "timing.json").read_text())
    assert t["preset"] == "small" and t["input_shape"] == [1, 32, 32, 32]
    assert len(t["step_times_s"]) == 1 and t["step_time_median_s"] > 0
    assert "s/step" in capsys.readouterr().out
    assert main(["--preset", "small", "--release", str(tmp_path / "missing"),
                 "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["--preset", "small"])  # needs --release or --synthetic


def test_cli_init_weights_starts_from_shipped_weights(tmp_path, capsys):
    """--init-weights shipped: a new run with the shipped weights' config and generator, its
    first checkpoint one step away from them; bad combinations exit 2 with a message."""
    shipped, info = load_vqgan3d(None)
    rc = main(["--synthetic", "2", "--init-weights", "shipped", "--max-steps", "1", "--threads", "1",
               "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert rc == 0
    ck = tmp_path / "run" / "checkpoints" / "step_00000001"
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["n_codes"] == info["config"]["n_codes"] and cfg["input_size"] == info["config"]["input_size"]
    state = load_file(str(next(ck.glob("*.safetensors"))))
    ref = shipped.state_dict()
    name = "encoder.conv_first.conv.weight" if "encoder.conv_first.conv.weight" in ref else sorted(ref)[0]
    step = (state[name] - ref[name]).abs().max().item()
    assert 0 < step < 1e-2, step  # one Adam step (lr 3e-4) from the shipped tensor, not a fresh init
    assert main(["--synthetic", "2", "--init-weights", "shipped", "--resume", str(ck),
                 "--out", str(tmp_path / "x")]) == 2
    assert "cannot be combined with --resume" in capsys.readouterr().err
    assert main(["--synthetic", "2", "--init-weights", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "--init-weights" in capsys.readouterr().err


def test_release_grids_render_real_density(monkeypatch, tmp_path):
    """ReleaseGrids defers rendering each sample with builders' renderer, then log(rho+1)."""
    import numpy as np
    from pyscf import gto, scf

    import builders.format.reader
    from baselines.vqgan3d.train import ReleaseGrids
    from builders.density import render_density
    from builders.density.frame import box_frame
    from builders.density.storage import pack_density_matrix

    mol = gto.M(atom="O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", basis="sto-3g",
                unit="Angstrom", verbose=0)
    mf = scf.RHF(mol).run()
    frame = box_frame(mol.atom_coords(unit="Bohr"), margin_bohr=3.0, shape=(20, 20, 20))
    origin, axes = frame["grid_origin"], frame["grid_axes"]
    sample = {"atomic_numbers": mol.atom_charges().astype(np.uint8),
              "positions": mol.atom_coords(unit="Angstrom"), "basis": "sto-3g",
              "density_matrix": pack_density_matrix(mf.make_rdm1()), "grid_origin": origin,
              "grid_axes": axes, "grid_shape": np.array((20, 20, 20), dtype=np.int32),
              "charge": 0, "spin": 0}
    calls = []

    def fake_iter_release(path, split="train", **kw):
        calls.append((str(path), split))
        yield from (sample, sample)

    monkeypatch.setattr(builders.format.reader, "iter_release", fake_iter_release)
    monkeypatch.setattr(builders.format.reader, "read_manifest", lambda path: {"configs": {"compact": {}}})
    deferred = list(ReleaseGrids(tmp_path, "valid", 16))
    assert calls == [(str(tmp_path), "valid")] and len(deferred) == 2
    assert all(callable(d) for d in deferred)  # rendered only when a batch keeps them
    grids = [d() for d in deferred]
    want = torch.log1p(torch.as_tensor(render_density(sample, shape=(16, 16, 16)),
                                       dtype=torch.float32))
    assert grids[0].shape == (1, 16, 16, 16) and torch.allclose(grids[0][0], want)
    assert float(grids[0].min()) >= 0.0 and float(grids[0].max()) > 0.5  # 16^3 misses the cusp
    cfg = small_config(input_size=16, perceptual_weight=0.0, disc_start_step=0, log_every=1,
                       **QUIET)
    res = train(cfg, ReleaseGrids(tmp_path, "train", 16), tmp_path / "run", 2, verbose=False)
    assert res["step"] == 2 and res["last"]["l1"] > 0
