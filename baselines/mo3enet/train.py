"""Train the Mo3ENet autoencoder on a stream of molecules.

CLI::

    python -m baselines.mo3enet.train --preset small --release PATH [--resume CKPT] [--out DIR]
        [--max-steps N] [--max-minutes M] [--batch-size B] [--device cpu|cuda] [--threads T]
        [--heavy-atoms] [--lr-decay-steps N]

``--heavy-atoms`` trains paper 002's heavy-atom model: hydrogens are dropped from every sample
(``ModelConfig.hydrogens = False``), in input and reconstruction target alike.

The core loop :func:`train` takes any re-iterable of samples (dicts with ``atomic_numbers`` and
``positions`` in A); each pass over it is one epoch.

Optimizer: AdamW (weight decay 0.005). Learning rate (per step, :func:`learning_rate`): geometric
ramp ``lr_start`` (1e-4) -> ``lr_peak`` (1e-3) over ``lr_warmup_steps`` (paper preset 2000, small
200), then geometric decay to ``lr_end`` (1e-6) over ``lr_decay_steps`` (paper 200k, small 20k),
then constant. ``--lr-decay-steps`` sets the decay length for a new run or a resumed one (a longer
decay on resume restarts the learning rate higher, on the same curve shape); the value is stored in
the checkpoint's config, so later resumes keep it. Gradient norm clipped at 1. bfloat16 autocast on CUDA (loss in float32).

Outputs in ``out_dir`` (the layout of :mod:`baselines.checkpoints`):
``checkpoints/step_NNNNNNNN/`` (``model.safetensors`` weights, ``state.pt`` optimizer / step /
sigma / RNG / data position as plain tensors and dicts, ``config.json``), ``checkpoints/latest``
(name of the newest), ``metrics.jsonl`` (one record per ``log_every`` steps) and
``training_curves.png`` (loss and sigma). Resuming from a checkpoint continues with
the same loss sequence as an uninterrupted run (deterministic on CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable

import torch

from baselines.checkpoints import (
    CHECKPOINT_DIR,
    LATEST_FILE,
    METRICS_FILE,
    checkpoint_config,
    read_checkpoint,
    read_metrics,
    read_training_state,
    restore_rng_state,
    rng_state,
    trim_metrics,
    write_checkpoint,
)
from builders.format.plotting import headless_pyplot

from .config import Mo3ENetConfig, get_config
from .data import collate_point_clouds, model_inputs, types_from_atomic_numbers
from .loss import SigmaSchedule, add_position_noise, reconstruction_loss
from .model import Mo3ENet, center_positions


def learning_rate(step: int, cfg) -> float:
    """Learning rate at optimizer step ``step`` (0-based) for a TrainConfig ``cfg``."""
    if step < cfg.lr_warmup_steps:
        return cfg.lr_start * (cfg.lr_peak / cfg.lr_start) ** (step / cfg.lr_warmup_steps)
    t = step - cfg.lr_warmup_steps
    if t < cfg.lr_decay_steps:
        return cfg.lr_peak * (cfg.lr_end / cfg.lr_peak) ** (t / cfg.lr_decay_steps)
    return cfg.lr_end


class SampleStream:
    """Endless batches from a re-iterable of samples, with a resumable position.

    ``position`` = {"epoch": passes completed, "index": samples consumed in the current pass}.
    """

    def __init__(self, samples: Iterable[dict], batch_size: int, position: dict | None = None):
        self.samples = samples
        self.batch_size = batch_size
        self.position = dict(position or {"epoch": 0, "index": 0})
        self._it = None

    def _open(self):
        self._it = iter(self.samples)
        for _ in range(self.position["index"]):       # skip what a previous run consumed
            try:
                next(self._it)
            except StopIteration:                      # other (shorter) data than the run had: new pass
                self.position = {"epoch": self.position["epoch"] + 1, "index": 0}
                self._it = iter(self.samples)
                return

    def next_batch(self) -> list[dict]:
        """Return the next ``batch_size`` samples, starting a new pass when one ends."""
        if self._it is None:
            self._open()
        out = []
        empty_passes = 0
        while len(out) < self.batch_size:
            try:
                out.append(next(self._it))
                self.position["index"] += 1
                empty_passes = 0
            except StopIteration:
                if self.position["index"] == 0:
                    empty_passes += 1
                    if empty_passes > 1:
                        raise ValueError("training data is empty: the sample iterable yielded nothing")
                self.position = {"epoch": self.position["epoch"] + 1, "index": 0}
                self._it = iter(self.samples)
        return out


def batch_to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def compute_loss(model: Mo3ENet, batch: dict, sigma: float, cfg: Mo3ENetConfig,
                 noise_generator: torch.Generator | None = None, amp: bool = False):
    """Forward + loss for one collated batch (noise added when a generator is given).

    Returns (loss tensor, stats dict, model output dict).
    """
    pos = batch["pos"].to(next(model.parameters()).dtype)
    if noise_generator is not None:
        pos = add_position_noise(pos, cfg.loss.position_noise, noise_generator)
    batch = dict(batch, pos=pos)
    num_graphs = int(batch["num_atoms"].shape[0])
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
        out = model(batch)
    decoded = {k: out[k].float() if amp else out[k] for k in ("positions", "type_probs", "weights")}
    centred = center_positions(pos, batch["batch"], num_graphs)
    loss, stats = reconstruction_loss(centred, types_from_atomic_numbers(batch["z"]), batch["batch"],
                                      batch["num_atoms"], decoded, sigma, cfg.loss)
    return loss, stats, out


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(out_dir: Path, model, optimizer, sigma: SigmaSchedule, step: int,
                    stream: SampleStream, noise_generator: torch.Generator,
                    cfg: Mo3ENetConfig, keep: int = 2) -> Path:
    """Write ``checkpoints/step_{step:08d}`` with :func:`baselines.checkpoints.write_checkpoint`
    (``state.pt``: optimizer, sigma schedule, data position, RNG states), keeping the newest
    ``keep`` step folders. Returns the step folder."""
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "sigma": sigma.state_dict(),
        "data_position": dict(stream.position),
        "rng": rng_state(noise=noise_generator),
    }
    return write_checkpoint(out_dir, step, model.state_dict(), state, cfg.to_dict(), keep=keep)


# ----------------------------------------------------------------------------- curves
def plot_curves(metrics: list[dict], path: Path) -> None:
    """PNG with total / reconstruction loss (log scale) and sigma versus step."""
    plt = headless_pyplot()
    if not metrics:
        return
    steps = [m["step"] for m in metrics]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(steps, [m["loss"] for m in metrics], label="total", lw=0.8)
    a.plot(steps, [m["reconstruction"] for m in metrics], label="reconstruction", lw=0.8)
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.legend()
    b.plot(steps, [m["sigma"] for m in metrics], color="C2")
    b.set_xlabel("step")
    b.set_ylabel("sigma (A)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- loop
def train(config: Mo3ENetConfig, sample_iterable: Iterable[dict], out_dir, max_steps: int,
          resume=None, device: str = "cpu", max_minutes: float | None = None,
          progress: bool = False, init_weights: dict | None = None,
          init_sigma: float | None = None) -> list[dict]:
    """Train until ``max_steps`` optimizer steps in total (or ``max_minutes`` of wall time).

    Args:
        config: full configuration (on resume the checkpoint's stored config should be passed).
        sample_iterable: re-iterable of sample dicts (``atomic_numbers`` (N,), ``positions``
            (N, 3) A); iterated again for each epoch.
        out_dir: folder for checkpoints, metrics.jsonl and training_curves.png.
        max_steps: total number of optimizer steps (including those before a resume).
        resume: checkpoint path (see :func:`baselines.checkpoints.resolve_checkpoint`) or None.
        device: "cpu" or "cuda".
        max_minutes: optional wall-clock budget for this call.
        init_weights: a new run (``resume`` None) starts from this state dict (warm start from
            shipped weights: fresh optimizer, step 0) instead of a random initialization.
        init_sigma: a new run's starting Gaussian width in A (default ``sigma_init``), e.g. the
            sigma the ``init_weights`` were trained to.

    Returns:
        The metric records (dicts) of the steps run in this call.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = config.train
    torch.manual_seed(tc.seed)
    model = Mo3ENet(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr_start, weight_decay=tc.weight_decay)
    sigma = SigmaSchedule(config.loss)
    noise_gen = torch.Generator().manual_seed(tc.seed + 1)
    step, position = 0, None
    metrics_path = out_dir / METRICS_FILE
    if resume is not None:
        ck = read_checkpoint(resume, "Mo3ENet", device=str(device))
        model.load_state_dict(ck.weights)
        state = read_training_state(ck.folder, map_location=device)
        optimizer.load_state_dict(state["optimizer"])
        sigma.load_state_dict(state["sigma"])
        restore_rng_state(state["rng"], noise=noise_gen)
        step, position = int(state["step"]), state["data_position"]
        trim_metrics(metrics_path, step)
    else:
        if init_weights is not None:
            model.load_state_dict(init_weights)
        if init_sigma is not None:
            sigma.sigma = float(init_sigma)
        if metrics_path.exists():
            metrics_path.unlink()
    stream = SampleStream(sample_iterable, tc.batch_size, position)
    amp = tc.amp and str(device).startswith("cuda")
    model.train()
    records = []
    t_start = time.perf_counter()
    last_ckpt = step
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=max_steps, initial=step, desc="mo3enet", mininterval=5)
    with metrics_path.open("a") as log:
        while step < max_steps:
            if max_minutes is not None and time.perf_counter() - t_start > 60 * max_minutes:
                break
            t0 = time.perf_counter()
            samples = model_inputs(stream.next_batch(), config.model.hydrogens)
            batch = batch_to(collate_point_clouds(samples), device)
            lr = learning_rate(step, tc)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss, stats, _ = compute_loss(model, batch, sigma.sigma, config, noise_gen, amp)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {step}: {stats}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            used_sigma = sigma.sigma
            sigma.step(stats["reconstruction"], stats["self_overlap_excess"])
            step += 1
            dt = time.perf_counter() - t0
            rec = {"step": step, "loss": loss.item(), **stats, "sigma": used_sigma, "lr": lr,
                   "grad_norm": float(grad_norm), "molecules_per_s": len(samples) / dt,
                   "epoch": stream.position["epoch"]}
            records.append(rec)
            if step % tc.log_every == 0:
                log.write(json.dumps(rec) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", sigma=f"{used_sigma:.3f}")
            if step % tc.checkpoint_every == 0:
                log.flush()
                save_checkpoint(out_dir, model, optimizer, sigma, step, stream, noise_gen, config)
                plot_curves(read_metrics(metrics_path), out_dir / "training_curves.png")
                last_ckpt = step
    if bar is not None:
        bar.close()
    if step != last_ckpt or not (out_dir / CHECKPOINT_DIR / LATEST_FILE).exists():
        save_checkpoint(out_dir, model, optimizer, sigma, step, stream, noise_gen, config)
    plot_curves(read_metrics(metrics_path), out_dir / "training_curves.png")
    return records


class ReleaseSamples:
    """Re-iterable view of a release split (each iteration re-opens the reader)."""

    def __init__(self, path: str, split: str = "train"):
        self.path, self.split = path, split

    def __iter__(self):
        from builders.format.reader import iter_release  # lazy: the reader lives in builders
        return iter(iter_release(self.path, split=self.split))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m baselines.mo3enet.train",
                                description="Train the Mo3ENet point-cloud autoencoder.")
    p.add_argument("--preset", choices=["small", "paper"], default="small")
    p.add_argument("--release", required=True, help="release folder (point-cloud samples)")
    p.add_argument("--split", default="train")
    p.add_argument("--resume", default=None, help="checkpoint dir or previous --out dir")
    p.add_argument("--out", default="runs/mo3enet")
    p.add_argument("--max-steps", type=int, default=10000)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--heavy-atoms", action="store_true",
                   help="train a heavy-atom model (hydrogens dropped from every sample; new runs only)")
    p.add_argument("--lr-decay-steps", type=int, default=None,
                   help="steps of geometric learning-rate decay after warmup (preset: paper 200k, "
                        "small 20k); on resume it replaces the checkpoint's value")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.release).exists():
        print(f"error: release path {args.release} does not exist", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    if args.resume:
        cfg = Mo3ENetConfig.from_dict(checkpoint_config(args.resume, "Mo3ENet"))
        if cfg.preset != args.preset:
            print(f"note: resuming a '{cfg.preset}' checkpoint; --preset {args.preset} ignored",
                  file=sys.stderr)
    else:
        cfg = get_config(args.preset)
        cfg.model.hydrogens = not args.heavy_atoms
    if args.resume and args.heavy_atoms and cfg.model.hydrogens:
        print("error: --heavy-atoms given, but the checkpoint to resume is a with-hydrogens model",
              file=sys.stderr)
        return 2
    if args.batch_size:
        cfg.train.batch_size = args.batch_size
    if args.lr_decay_steps is not None:
        if args.lr_decay_steps < 1:
            print(f"error: --lr-decay-steps must be a positive step count, got {args.lr_decay_steps}",
                  file=sys.stderr)
            return 2
        cfg.train.lr_decay_steps = args.lr_decay_steps
    t0 = time.perf_counter()
    recs = train(cfg, ReleaseSamples(args.release, args.split), args.out, args.max_steps,
                 resume=args.resume, device=args.device, max_minutes=args.max_minutes,
                 progress=True)
    dt = time.perf_counter() - t0
    if recs:
        n = sum(cfg.train.batch_size for _ in recs)
        last = recs[-1]
        print(f"mo3enet: {len(recs)} steps to step {last['step']} in {dt:.0f} s "
              f"({n / dt:.1f} molecules/s), loss {last['loss']:.4f}, sigma {last['sigma']:.3f} A; "
              f"checkpoint in {Path(args.out) / CHECKPOINT_DIR}")
    else:
        print(f"mo3enet: nothing to do (already at step >= {args.max_steps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
