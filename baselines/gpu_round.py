"""A GPU training round of a learned baseline: prepared data in, sharded weights and a training log out.

On the CPU machine (which has the releases, rdkit and pyscf), prepare the round's data once, a
single ``.npz`` of at most ~40 MB that needs nothing but numpy to read::

    python -m baselines.gpu_round prepare mo3enet --release DATA/densegen/random-conformers --out ROUND.npz
    python -m baselines.gpu_round prepare vqgan3d --release DATA/densegen/qm9-hf-density --out GRIDS.npz

On the GPU machine (torch and this repository only), run the round::

    python -m baselines.gpu_round run mo3enet --data ROUND.npz --out OUT --minutes 7 --device cuda
    python -m baselines.gpu_round run vqgan3d --data GRIDS.npz --out OUT --minutes 7 --device cuda

A round warm-starts from the shipped weights (``--start shipped``, the default: same preset,
fresh optimizer; Mo3ENet also starts at the sigma they were trained to), continues a training
run folder (``--start RUN``, a copy is made in ``OUT/run``) or starts from scratch
(``--start scratch``, e.g. with ``--preset paper``). It trains for ``--minutes`` of wall time
with bf16 autocast on CUDA (the trainers' default there), then writes ``OUT/weights/``
(sharded safetensors, every file under 16 MiB; :func:`baselines.weights.save_sharded`), the
training log and curves under ``OUT/weights/training/``, and ``OUT/round.json`` (what ran:
steps, samples/s, device, start, data digest). ``OUT/run`` keeps the full checkpoint (optimizer
state) to continue from. Both folders are read by the benchmark adapters
(``Mo3ENetBenchmarkModel(weights="OUT/weights")``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

MODELS = ("mo3enet", "vqgan3d")
MAX_DATA_BYTES = 40 * 1024 * 1024


# ----------------------------------------------------------------------------- prepared data
def prepare_point_clouds(release, out, split: str = "train", limit: int | None = None,
                         heavy_atoms: bool = False) -> dict:
    """Write the point clouds of a release split to one ``.npz``: ``atomic_numbers`` (sum N,)
    uint8, ``positions`` (sum N, 3) float32 Angstrom, ``offsets`` (n+1,) int64.

    Returns:
        {"samples", "atoms", "bytes", "sha256"} of the written file.
    Raises:
        ValueError: the file would exceed :data:`MAX_DATA_BYTES` (lower ``limit``).
    """
    from baselines.mo3enet.data import without_hydrogens
    from builders.format.reader import iter_release

    z, pos, offsets = [], [], [0]
    for n, s in enumerate(iter_release(release, split)):
        if limit is not None and n >= limit:
            break
        s = without_hydrogens(s) if heavy_atoms else s
        z.append(np.asarray(s["atomic_numbers"], np.uint8))
        pos.append(np.asarray(s["positions"], np.float32).reshape(-1, 3))
        offsets.append(offsets[-1] + len(z[-1]))
    return _write_npz(out, atomic_numbers=np.concatenate(z), positions=np.concatenate(pos),
                      offsets=np.asarray(offsets, np.int64)) | {"samples": len(z), "atoms": offsets[-1]}


def prepare_grids(release, out, size: int = 32, split: str = "train", limit: int | None = None) -> dict:
    """Write log(rho+1) grids of a density release split to one ``.npz``: ``grids`` (n, size,
    size, size) float16 (rendered as the VQGAN trainer renders them, in the seed's frame).

    Returns:
        {"samples", "bytes", "sha256"} of the written file.
    Raises:
        ValueError: the file would exceed :data:`MAX_DATA_BYTES` (lower ``limit``).
    """
    from baselines.vqgan3d.train import ReleaseGrids

    per = size ** 3 * 2
    cap = min(limit if limit is not None else 10 ** 9, MAX_DATA_BYTES // per)
    grids = []
    for item in ReleaseGrids(str(release), split, size):   # deferred: each renders its grid
        if len(grids) >= cap:
            break
        grids.append((item() if callable(item) else item).numpy().astype(np.float16)[0])
    return _write_npz(out, grids=np.stack(grids)) | {"samples": len(grids)}


def _write_npz(out, **arrays) -> dict:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = sum(a.nbytes for a in arrays.values())
    if size > MAX_DATA_BYTES:
        raise ValueError(f"{out}: {size / 2**20:.1f} MiB of arrays, over the round's {MAX_DATA_BYTES / 2**20:.0f} MiB; "
                         f"use --limit")
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    data = out.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def load_point_clouds(path) -> list[dict]:
    """The samples of a :func:`prepare_point_clouds` file (no pickle)."""
    with np.load(path, allow_pickle=False) as f:
        z, pos, off = f["atomic_numbers"], f["positions"], f["offsets"]
    return [{"atomic_numbers": z[a:b], "positions": pos[a:b]} for a, b in zip(off[:-1], off[1:])]


def load_grids(path) -> list:
    """The grids of a :func:`prepare_grids` file as (1, X, Y, Z) float32 tensors (no pickle)."""
    import torch

    with np.load(path, allow_pickle=False) as f:
        grids = f["grids"]
    return [torch.from_numpy(g.astype(np.float32))[None] for g in grids]


# ----------------------------------------------------------------------------- the round
def _shipped(model: str):
    from baselines.weights import build_from_weights

    if model == "mo3enet":
        from baselines.mo3enet.benchmark import SPEC
    else:
        from baselines.vqgan3d.benchmark import SPEC
    module, info = build_from_weights(SPEC, None, "cpu")
    return SPEC, module.state_dict(), info


def run_round(model: str, data, out, minutes: float, device: str = "cuda", start: str = "shipped",
              preset: str | None = None, max_steps: int = 10 ** 9) -> dict:
    """Train ``model`` for ``minutes`` on prepared ``data`` and export the weights to ``out/weights``.

    Args:
        model: "mo3enet" or "vqgan3d".
        data: a prepared ``.npz`` (:func:`prepare_point_clouds` / :func:`prepare_grids`).
        out: output folder (``run/``: the training run; ``weights/``: sharded weights;
            ``round.json``).
        minutes: wall-clock budget of the training loop.
        device: "cuda" (bf16 autocast) or "cpu" (fp32; for tests).
        start: "shipped" (warm start from the shipped weights), "scratch", or a training run
            folder of ``python -m baselines.<model>.train`` to continue.
        preset: config preset for "scratch" (default: the shipped weights' preset).
        max_steps: optional step cap (the budget is ``minutes``).
    Returns:
        the ``round.json`` record.
    """
    from baselines.checkpoints import checkpoint_config
    from baselines.weights import export_checkpoint

    out = Path(out)
    run = out / "run"
    out.mkdir(parents=True, exist_ok=True)
    spec, shipped_state, shipped_info = _shipped(model)
    resume = init = None
    if start not in ("shipped", "scratch"):
        if run.exists():
            shutil.rmtree(run)
        shutil.copytree(start, run)
        resume = run
        cfg_dict = checkpoint_config(run, spec.title)
    elif start == "shipped":
        init = shipped_state
        cfg_dict = shipped_info["config"]
    else:
        cfg_dict = None
    t0 = time.perf_counter()
    if model == "mo3enet":
        from baselines.mo3enet.config import Mo3ENetConfig, get_config
        from baselines.mo3enet.train import train

        cfg = Mo3ENetConfig.from_dict(cfg_dict) if cfg_dict else get_config(preset or shipped_info["preset"])
        samples = load_point_clouds(data)
        sigma = shipped_info.get("source", {}).get("sigma") if start == "shipped" else None
        records = train(cfg, samples, run, max_steps, resume=resume, device=device, max_minutes=minutes,
                        init_weights=init, init_sigma=sigma)
        steps = records[-1]["step"] if records else None
        batch = cfg.train.batch_size
        extra = {"sigma": records[-1]["sigma"]} if records else {}
    else:
        from baselines.vqgan3d.config import VQGAN3DConfig, get_config
        from baselines.vqgan3d.train import train

        cfg = VQGAN3DConfig.from_dict(cfg_dict) if cfg_dict else get_config(preset or shipped_info["preset"])
        cfg = cfg.replace(perceptual_weight=0.0)   # VGG16 weights cannot be fetched on the GPU machine
        grids = load_grids(data)
        res = train(cfg, grids, run, max_steps, resume=resume, device=device, max_minutes=minutes,
                    init_weights=init, verbose=False)
        steps, batch, extra = res["step"], cfg.batch_size, {}
    wall = time.perf_counter() - t0
    weights = out / "weights"
    if weights.exists():
        shutil.rmtree(weights)
    export_checkpoint(spec, run, weights, drop=spec.training_only,
                      source={"round": {"start": start, "device": device, **extra}})
    log = weights / "training"
    log.mkdir()
    for name in ("metrics.jsonl", "training_curves.png", "loss_curves.png"):
        if (run / name).is_file():
            shutil.copy(run / name, log / name)
    record = {"model": model, "preset": cfg.preset, "start": start, "device": device, "steps": steps,
              "batch_size": batch, "wall_s": round(wall, 1), "minutes": minutes,
              "data": {"file": Path(data).name, "sha256": hashlib.sha256(Path(data).read_bytes()).hexdigest()},
              **extra}
    (out / "round.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m baselines.gpu_round", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write a round's data file (CPU machine)")
    p.add_argument("model", choices=MODELS)
    p.add_argument("--release", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--size", type=int, default=32, help="vqgan3d: grid points per axis")
    p.add_argument("--heavy-atoms", action="store_true", help="mo3enet: drop hydrogens")
    r = sub.add_parser("run", help="train for a time budget and export the weights (GPU machine)")
    r.add_argument("model", choices=MODELS)
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--minutes", type=float, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--start", default="shipped", help="shipped, scratch, or a training run folder")
    r.add_argument("--preset", choices=["small", "paper"], default=None)
    args = ap.parse_args(argv)
    if args.command == "prepare":
        if not Path(args.release).exists():
            print(f"error: release {args.release} does not exist", file=sys.stderr)
            return 2
        try:
            if args.model == "mo3enet":
                info = prepare_point_clouds(args.release, args.out, args.split, args.limit, args.heavy_atoms)
            else:
                info = prepare_grids(args.release, args.out, args.size, args.split, args.limit)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{args.out}: {info['samples']} samples, {info['bytes'] / 2**20:.1f} MiB, sha256 {info['sha256'][:16]}")
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    for what, path in (("data", args.data), ("start", None if args.start in ("shipped", "scratch") else args.start)):
        if path is not None and not Path(path).exists():
            print(f"error: --{what} {path} does not exist", file=sys.stderr)
            return 2
    rec = run_round(args.model, args.data, args.out, args.minutes, args.device, args.start, args.preset)
    print(f"{args.model}: {rec['steps']} steps in {rec['wall_s']} s on {rec['device']}; weights in "
          f"{Path(args.out) / 'weights'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
