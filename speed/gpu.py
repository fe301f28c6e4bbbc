"""GPU timings in one table: the density renderer, the crystal optimizer, a training step of each baseline.

    python -m speed gpu [--device cuda] [--quick] [--seconds S]

On CUDA it times, each for about ``--seconds`` (default 15; the whole command stays under five
minutes):

* the renderer (:func:`builders.density.render_density`, torch backend): 128^3 grids/s for the
  three molecules of ``speed.render_bench`` (RDKit ETKDG + MMFF geometry, RHF/STO-3G density
  matrix from pyscf; needs rdkit and pyscf);
* the crystal optimizer (:func:`builders.crystals.optimize.generate_crystals`): optimized
  random starts/s for the QM9-like molecules of ``speed.crystal_bench`` (needs rdkit);
* a training step of Mo3ENet (forward, loss, backward, AdamW step; random point clouds of
  9-29 atoms, which cost what molecules cost) and of the 3DGrid-VQGAN (synthetic log(rho+1)
  grids; :func:`baselines.vqgan3d.train.train` with ``time_steps``), samples/s with bf16
  autocast against the seeds' fp32 configuration, for the small and the paper presets.

A section whose optional dependency is missing prints why and is skipped. On a machine without
CUDA the command says so and exits 0; ``--device cpu --quick`` runs every section on the CPU at
toy sizes (a check that the code paths work, not a measurement).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_time(fn, device: str, seconds: float, min_repeats: int = 3, max_repeats: int = 200) -> float:
    """Median wall seconds of ``fn()`` after one warm-up call, repeated for about ``seconds``."""
    fn()
    _sync(device)
    times, start = [], time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < seconds and len(times) < max_repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def renderer_rows(device: str, shape: int, seconds: float, molecules: int = 3) -> list[tuple]:
    """(what, setting, fp32 rate, bf16 rate, unit) rows of the renderer: grids/s for each of the
    first ``molecules`` molecules (float64 throughout, so the bf16 column stays empty)."""
    from pyscf import gto, scf

    from builders.density import render_density
    from builders.density.storage import pack_density_matrix
    from speed.render_bench import MOLECULES, _geometry

    rows = []
    for name, smiles in MOLECULES[:molecules]:
        symbols, pos, heavy = _geometry(smiles)
        mol = gto.M(atom=list(zip(symbols, pos.tolist())), basis="sto-3g", unit="Angstrom", verbose=0)
        mf = scf.RHF(mol)
        mf.kernel()
        sample = dict(atomic_numbers=mol.atom_charges().astype(np.uint8), positions=pos, basis="sto-3g",
                      density_matrix=pack_density_matrix(mf.make_rdm1(), np.float64), charge=0, spin=0)
        t = _median_time(lambda: render_density(sample, shape=(shape,) * 3, device=device), device, seconds)
        rows.append((f"renderer {name}", f"{heavy} heavy atoms, {mol.nao} AOs, {shape}^3", 1 / t, None, "grids/s"))
    return rows


def crystal_rows(device: str, n_per_molecule: int, seconds: float) -> list[tuple]:
    """Rows of the crystal optimizer: optimized random starts/s (float64, as in the builds)."""
    from builders.crystals.optimize import generate_crystals
    from builders.crystals.volume import vdw_volume
    from speed.crystal_bench import build_molecules

    mols = build_molecules()
    vols = [vdw_volume(z, x) for z, x in mols]
    generate_crystals(mols[:2], 2, 0, device=device, mol_volumes=vols[:2], max_steps=5)   # warm-up
    _sync(device)
    t = time.perf_counter()
    generate_crystals(mols, n_per_molecule, 0, device=device, mol_volumes=vols)
    _sync(device)
    dt = time.perf_counter() - t
    starts = len(mols) * n_per_molecule
    return [("crystal optimizer", f"{len(mols)} molecules x {n_per_molecule} starts, float64", starts / dt, None,
             "starts/s")]


def random_point_clouds(n: int, seed: int = 0) -> list[dict]:
    """``n`` random point clouds of 9-29 atoms (H, C, N, O, F; positions (N, 3) Angstrom, spread
    like small molecules): the inputs of a Mo3ENet timing, which does not depend on chemistry."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(9, 30))
        z = rng.choice(np.array([1, 6, 7, 8, 9], dtype=np.uint8), size=k, p=[0.5, 0.35, 0.06, 0.07, 0.02])
        out.append({"atomic_numbers": z, "positions": (rng.normal(size=(k, 3)) * 1.6).astype(np.float32)})
    return out


def mo3enet_rows(device: str, presets: list[str], seconds: float, batch_size: int | None = None) -> list[tuple]:
    """Rows of a Mo3ENet training step: molecules/s in fp32 and with bf16 autocast (CUDA only)."""
    from baselines.mo3enet.config import get_config
    from baselines.mo3enet.data import collate_point_clouds
    from baselines.mo3enet.model import Mo3ENet
    from baselines.mo3enet.train import batch_to, compute_loss

    rows = []
    for preset in presets:
        cfg = get_config(preset)
        b = batch_size or cfg.train.batch_size
        batch = batch_to(collate_point_clouds(random_point_clouds(b)), device)
        rates = {}
        for amp in (False, True):
            if amp and not device.startswith("cuda"):
                rates[amp] = None
                continue
            torch.manual_seed(0)
            model = Mo3ENet(cfg.model).to(device)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step():
                loss, _, _ = compute_loss(model, batch, 1.0, cfg, amp=amp)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            rates[amp] = b / _median_time(step, device, seconds)
        n = sum(p.numel() for p in model.parameters())
        rows.append((f"Mo3ENet train step ({preset})", f"batch {b}, {n / 1e6:.2f}M parameters", rates[False],
                     rates[True], "molecules/s"))
    return rows


def vqgan_rows(device: str, presets: list[str], steps: int, batch_size: int | None = None,
               input_size: int | None = None) -> list[tuple]:
    """Rows of a 3DGrid-VQGAN training step (generator and, past ``disc_start_step``, nothing
    else: the discriminator starts later): grids/s in the seed's fp32 and with bf16 autocast."""
    from baselines.vqgan3d.config import get_config
    from baselines.vqgan3d.train import synthetic_grids, train

    rows = []
    for preset in presets:
        over = {"perceptual_weight": 0.0}               # VGG16 weights cannot be downloaded here
        if batch_size:
            over["batch_size"] = batch_size
        if input_size:
            over["input_size"] = input_size
        cfg = get_config(preset, **over)
        grids = synthetic_grids(cfg.batch_size * (steps + 2), cfg.input_size)
        rates = {}
        for seed_config in (True, False):
            if not seed_config and not device.startswith("cuda"):
                rates[seed_config] = None
                continue
            with tempfile.TemporaryDirectory() as out:
                res = train(cfg, grids, out, max_steps=steps + 2, device=device, seed_config=seed_config,
                            time_steps=steps, verbose=False)
            rates[seed_config] = cfg.batch_size / res["step_time_median_s"]
        rows.append((f"VQGAN train step ({preset})", f"batch {cfg.batch_size}, {cfg.input_size}^3",
                     rates[True], rates[False], "grids/s"))
    return rows


def format_table(rows: list[tuple], device: str) -> str:
    """The timings as one Markdown table."""
    head = "| what | setting | fp32 | bf16 autocast | unit |\n|---|---|---:|---:|---|"
    fmt = (lambda v: "-" if v is None else f"{v:,.1f}" if v < 100 else f"{v:,.0f}")
    lines = [f"| {w} | {s} | {fmt(a)} | {fmt(b)} | {u} |" for w, s, a, b, u in rows]
    return f"device: {device}\n" + "\n".join([head, *lines])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m speed gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu with --quick")
    ap.add_argument("--quick", action="store_true", help="toy sizes: check the code paths (seconds, not minutes)")
    ap.add_argument("--seconds", type=float, default=15.0, help="timing budget per row")
    args = ap.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"speed gpu: no CUDA device on this machine (torch {torch.__version__}); nothing to time. "
              f"On a GPU machine it times the renderer, the crystal optimizer and a training step of each baseline.")
        return 0
    if device == "cpu" and not args.quick:
        print("speed gpu: --device cpu needs --quick (the CPU figures are speed.render_bench, speed.crystal_bench "
              "and the trainers' --time-steps)")
        return 2
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    seconds = 0.2 if args.quick else args.seconds
    sections = [
        ("renderer", "rdkit and pyscf", lambda: renderer_rows(device, 16 if args.quick else 128, seconds,
                                                                 molecules=1 if args.quick else 3)),
        ("crystal optimizer", "rdkit", lambda: crystal_rows(device, 2 if args.quick else 64, seconds)),
        ("Mo3ENet", "", lambda: mo3enet_rows(device, ["small"] if args.quick else ["small", "paper"], seconds,
                                             batch_size=4 if args.quick else None)),
        ("VQGAN", "", lambda: vqgan_rows(device, ["small"] if args.quick else ["small", "paper"],
                                         steps=2 if args.quick else 10, batch_size=2 if args.quick else None,
                                         input_size=16 if args.quick else None)),
    ]
    rows, t0 = [], time.perf_counter()
    for label, needs, run in sections:
        try:
            rows += run()
        except ModuleNotFoundError as err:
            print(f"speed gpu: {label} skipped: {err.name} is not installed (it needs {needs or err.name})")
        print(f"speed gpu: {label} done at {time.perf_counter() - t0:.0f} s", flush=True)
    print(format_table(rows, f"{device} ({name}), torch {torch.__version__}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
