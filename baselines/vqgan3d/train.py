"""Train the 3DGrid-VQGAN baseline.

    python -m baselines.vqgan3d.train --preset small --release densegen/qm9-hf-density --out out/vq
    python -m baselines.vqgan3d.train --preset small --release ... --resume out/vq
    python -m baselines.vqgan3d.train --preset small --synthetic 8 --time-steps 10
    torchrun --nproc_per_node 4 -m baselines.vqgan3d.train --preset paper --release ... --device cuda

The core loop :func:`train` takes any re-iterable of (1, X, Y, Z) float tensors holding
log(rho + 1) grids (rho in electrons / Bohr^3), so it runs on synthetic data in tests.
Per step: generator (Adam, lr 3e-4, betas (0.5, 0.9), grad-norm clip 1.0) on
4 L1 + commitment [+ 4 perceptual] [+ hinge G + 4 feature matching after disc_start_step],
then the discriminator (same optimizer settings) on the hinge loss.
bf16 autocast on CUDA unless ``seed_config``; the codebook always works in fp32.
DDP when WORLD_SIZE > 1: the generator is wrapped in DistributedDataParallel, the
discriminator's gradients are all-reduced by hand, item i of the data goes to rank i % world.

Outputs under ``out_dir``: ``metrics.jsonl`` (one line per log interval: mean losses,
codebook perplexity, batch usage fraction, active fraction), ``checkpoints/step_NNNNNNNN/``
(``model.safetensors`` = generator incl. codebook buffers + the discriminator's tensors under
``discriminator.``; ``state.pt`` = optimizers, step, RNG states, log sums; ``config.json``; the
layout of :mod:`baselines.checkpoints`), ``checkpoints/latest``,
``loss_curves.png``, ``slices.png`` (original vs reconstruction, central slices).
Resuming restores everything, so a resumed run equals an uninterrupted one when the data
iterable yields the same sequence again.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from baselines.checkpoints import (
    METRICS_FILE,
    read_checkpoint,
    read_metrics,
    read_training_state,
    restore_rng_state,
    rng_state,
    trim_metrics,
    write_checkpoint,
)
from baselines.common import count_parameters
from builders.format.plotting import headless_pyplot

from .config import VQGAN3DConfig, get_config
from .discriminator import build_discriminator, random_slices
from .losses import (
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
    load_vgg_perceptual,
)
from .model import VQGAN3D

METRIC_KEYS = ("loss_g", "l1", "commitment", "perceptual", "g_gan", "feat", "d_loss",
               "perplexity", "usage", "active", "restarted")


# --------------------------------------------------------------------------- data
def synthetic_grids(n: int, size: int, seed: int = 0, n_blobs: int = 6) -> list:
    """n synthetic log(rho+1) grids, each (1, size, size, size) float32.

    rho = sum of ``n_blobs`` isotropic Gaussians (centers uniform in the inner 60% of the box,
    widths 0.04-0.12 box lengths, amplitudes 1-20), then log1p, like a molecule's density.
    """
    g = torch.Generator().manual_seed(seed)
    ax = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    X, Y, Z = torch.meshgrid(ax, ax, ax, indexing="ij")
    out = []
    for _ in range(n):
        rho = torch.zeros(size, size, size)
        for _ in range(n_blobs):
            c = 0.2 + 0.6 * torch.rand(3, generator=g)
            s = 0.04 + 0.08 * float(torch.rand(1, generator=g))
            a = 1.0 + 19.0 * float(torch.rand(1, generator=g))
            r2 = (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2
            rho += a * torch.exp(-r2 / (2 * s * s))
        out.append(torch.log1p(rho)[None])
    return out


class ReleaseGrids:
    """Re-iterable of deferred (1, N, N, N) log(rho+1) grids of a release split.

    Each item is a zero-argument callable that renders its grid with
    ``builders.format.torch_data.RenderDensity`` (electrons / Bohr^3 on the sample's box, stretched to
    a cube as in the seed; a stored grid of that shape is used as is), so :func:`_batches`
    renders only the grids it keeps (not those skipped on resume or meant for other ranks).
    """

    def __init__(self, path: str, split: str, size: int):
        self.path, self.split, self.size = path, split, size

    def __iter__(self):
        from builders.format.reader import iter_release, read_manifest
        from builders.format.torch_data import RenderDensity

        render = RenderDensity(shape=(self.size,) * 3, log1p=True)
        config = "grid" if "grid" in read_manifest(Path(self.path)).get("configs", {}) else None  # stored grids
        for sample in iter_release(Path(self.path), self.split, config=config):
            yield functools.partial(_rendered_grid, render, sample)


def _rendered_grid(render, sample) -> torch.Tensor:
    return render(sample)["grid"]


def _batches(items: Iterable, batch_size: int, rank: int, world: int,
             skip: int) -> Iterator[torch.Tensor]:
    """Endless (B, 1, X, Y, Z) batches: epochs over ``items``, item i to rank i % world,
    after skipping the first ``skip`` items of the (global) stream."""
    i, buf = 0, []
    while True:
        seen = False
        for item in items:
            seen = True
            i += 1
            if i <= skip or (i - 1) % world != rank:
                continue
            if callable(item):  # deferred grid (ReleaseGrids): rendered only when kept
                item = item()
            t = torch.as_tensor(item, dtype=torch.float32)
            buf.append(t if t.ndim == 4 else t[None])
            if len(buf) == batch_size:
                yield torch.stack(buf)
                buf = []
        if not seen:
            raise ValueError("the grid iterable yielded no grids (a one-shot iterator is used "
                             "up after one epoch: pass a re-iterable such as a list)")


# --------------------------------------------------------------------------- dist helpers
def _dist_setup(device: str):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if world > 1 else 0
    if device.startswith("cuda") and world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return rank, world, torch.device(device)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(out_dir: Path, step: int, model, disc, opt_g, opt_d, slice_gen,
                    acc: dict, cfg: VQGAN3DConfig) -> Path:
    """Write ``checkpoints/step_NNNNNNNN`` with :func:`baselines.checkpoints.write_checkpoint`.

    Args:
        out_dir: the run folder.
        step: optimizer steps taken.
        model, disc: the generator (VQGAN3D, weights incl. codebook buffers) and the
            discriminator (stored as the training-only module ``discriminator``).
        opt_g, opt_d: their optimizers. slice_gen: the slice-sampling torch.Generator.
        acc: the running sums of the current log interval. cfg: the run's config.

    Returns:
        The step folder.
    """
    state = {"step": step, "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
             "rng": rng_state(slice_gen=slice_gen), "acc": acc}
    return write_checkpoint(out_dir, step, model.state_dict(), state, cfg.to_dict(),
                            extra={"discriminator": disc.state_dict()})


# --------------------------------------------------------------------------- figures
def plot_losses(metrics_path: Path, png: Path) -> None:
    """Loss curves (log scale) and codebook perplexity from metrics.jsonl."""
    plt = headless_pyplot()

    rows = read_metrics(metrics_path)
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in ("loss_g", "l1", "commitment", "perceptual", "g_gan", "feat", "d_loss"):
        vals = [r.get(k) for r in rows]
        if any(v for v in vals):
            axes[0].plot(steps, [abs(v) if v else float("nan") for v in vals], label=k)
    axes[0].set_yscale("log"); axes[0].set_xlabel("step"); axes[0].legend(fontsize=8)
    axes[0].set_title("losses (|value|)")
    axes[1].plot(steps, [r["perplexity"] for r in rows], label="perplexity")
    axes[1].set_xlabel("step"); axes[1].set_title("codebook perplexity (batch)")
    fig.tight_layout(); fig.savefig(png, dpi=90); plt.close(fig)


def plot_slices(x: torch.Tensor, x_hat: torch.Tensor, png: Path) -> None:
    """Central slices (3 axes) of one grid: row 1 original, row 2 reconstruction, log(rho+1)."""
    plt = headless_pyplot()

    a, b = x[0, 0].float().cpu(), x_hat[0, 0].detach().float().cpu()
    vmax = float(a.max())
    fig, axes = plt.subplots(2, 3, figsize=(9, 6))
    for j in range(3):
        c = a.shape[j] // 2
        for i, g in enumerate((a, b)):
            axes[i, j].imshow(g.select(j, c).numpy().T, origin="lower", vmin=0, vmax=vmax)
            axes[i, j].set_title(f"{['original', 'reconstruction'][i]} axis {j}", fontsize=8)
            axes[i, j].axis("off")
    fig.tight_layout(); fig.savefig(png, dpi=90); plt.close(fig)


# --------------------------------------------------------------------------- training
def _train_step(model, gen, disc, perceptual, opt_g, opt_d, x, step, cfg, slice_gen,
                amp, world) -> dict:
    gan_on = step >= cfg.disc_start_step and (cfg.gan_weight > 0 or cfg.feat_weight > 0)
    with amp():
        x_hat, aux = model(x)
        l1 = F.l1_loss(x_hat.float(), x)
        loss = cfg.l1_weight * l1 + aux["commitment_loss"]
        out = {"l1": l1.item(), "commitment": aux["commitment_loss"].item(),
               "perceptual": 0.0, "g_gan": 0.0, "feat": 0.0, "d_loss": 0.0}
        slices = None
        if perceptual is not None or (gan_on and cfg.disc_type == "2d"):
            slices = random_slices(x, x_hat, slice_gen)[:2]
        if perceptual is not None:
            p = perceptual(slices[0].float(), slices[1].float())
            loss = loss + cfg.perceptual_weight * p
            out["perceptual"] = p.item()
        if gan_on:
            real, fake = slices if cfg.disc_type == "2d" else (x, x_hat)
            logits_fake, feats_fake = disc(fake)
            g = hinge_g_loss(logits_fake.float())
            with torch.no_grad():
                _, feats_real = disc(real)
            fm = feature_matching_loss(feats_fake, feats_real)
            loss = loss + cfg.gan_weight * g + cfg.feat_weight * fm
            out["g_gan"], out["feat"] = g.item(), fm.item()
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(gen.parameters(), cfg.grad_clip)
    opt_g.step()
    out["loss_g"] = loss.item()
    if gan_on:
        with amp():
            lr_, _ = disc(real.detach())
            lf_, _ = disc(fake.detach())
            d_loss = cfg.gan_weight * hinge_d_loss(lr_.float(), lf_.float())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        if world > 1:
            for p in disc.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(world)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
        opt_d.step()
        out["d_loss"] = d_loss.item()
    for k in ("perplexity", "usage", "active"):
        out[k] = float(aux[k])
    out["restarted"] = float(aux["restarted"])
    out["_x_hat"] = x_hat
    return out


def train(config: VQGAN3DConfig, grid_iterable: Iterable, out_dir, max_steps: int,
          resume=None, device: str = "cpu", seed_config: bool = False, time_steps: int = 0,
          verbose: bool = True, max_minutes: float | None = None,
          init_weights: dict | None = None) -> dict:
    """Train (or continue training) a 3DGrid-VQGAN.

    Args:
        config: architecture / loss / optimizer settings.
        grid_iterable: re-iterable of (1, X, Y, Z) float tensors, log(rho+1) grids, X, Y, Z
            divisible by 4 (cubic for the 2D discriminator). Iterated again for each epoch; a
            resumed run skips the items already consumed, so it must yield the same order.
        out_dir: run folder (metrics.jsonl, checkpoints/, PNGs).
        max_steps: total optimizer steps (including those before a resume).
        resume: checkpoint dir or run dir to continue from (None: fresh start).
        device: "cpu", "cuda" or "cuda:N".
        seed_config: fp32 without autocast (otherwise bf16 autocast on CUDA).
        time_steps: when > 0, run 2 warm-up + ``time_steps`` steps, return their timings and
            write ``timing.json``; no checkpoint is written.
        max_minutes: stop after this much wall time (a checkpoint is written where it stops).
        init_weights: a new run (``resume`` None) starts its generator from this state dict
            (warm start from shipped weights; training-only buffers may be missing).
    Returns:
        dict with ``step``, ``last`` (metrics of the last step), ``history`` (logged rows),
        ``params`` (generator and discriminator parameter counts), timing fields if timed.
    """
    out_dir = Path(out_dir)
    rank, world, dev = _dist_setup(device)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    gen = VQGAN3D(config).to(dev)
    disc = build_discriminator(config).to(dev)
    perceptual = load_vgg_perceptual() if config.perceptual_weight > 0 else None
    if perceptual is not None:
        perceptual = perceptual.to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=tuple(config.betas))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=tuple(config.betas))
    slice_gen = torch.Generator().manual_seed(config.seed + 1 + rank)
    step = 0
    acc = {"n": 0, **{k: 0.0 for k in METRIC_KEYS}}
    metrics_path = out_dir / METRICS_FILE
    if resume is None and rank == 0 and not time_steps:
        metrics_path.unlink(missing_ok=True)  # a fresh run starts a fresh log
    if resume is None and init_weights is not None:
        from .benchmark import TRAINING_ONLY_BUFFERS

        missing = gen.load_state_dict(init_weights, strict=False).missing_keys
        if [k for k in missing if k not in TRAINING_ONLY_BUFFERS]:
            raise ValueError(f"init_weights do not fit the config: missing {missing[:5]}")
    if resume is not None:
        ck = read_checkpoint(resume, "3DGrid-VQGAN")
        gen.load_state_dict(ck.weights)
        disc.load_state_dict(ck.extra["discriminator"])
        st = read_training_state(ck.folder)
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        restore_rng_state(st["rng"], slice_gen=slice_gen)
        step, acc = int(st["step"]), dict(st["acc"])
        if rank == 0:  # drop log lines written after the checkpoint
            trim_metrics(metrics_path, step)
    model = gen
    if world > 1:
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        # the quantizer keeps its buffers in sync itself (all-reduce + broadcast)
        sync = ({"forward_sync_buffers": False}
                if "forward_sync_buffers" in inspect.signature(DDP).parameters
                else {"broadcast_buffers": False})
        model = DDP(gen, device_ids=[dev.index] if dev.type == "cuda" else None, **sync)
    use_amp = dev.type == "cuda" and not seed_config
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp \
        else contextlib.nullcontext
    gen.train(); disc.train()
    batches = _batches(grid_iterable, config.batch_size, rank, world,
                       skip=step * config.batch_size * world)
    n_params = {"generator": count_parameters(gen), "discriminator": count_parameters(disc),
                "codebook_values": gen.quantizer.embeddings.numel()}
    if time_steps:
        max_steps = step + 2 + time_steps
    times, cpu_times, history, out, x = [], [], [], None, None
    t_start = time.time()
    stopped = False
    while step < max_steps:
        if max_minutes is not None and time.time() - t_start > 60 * max_minutes:
            stopped = True
            break
        x = next(batches).to(dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        out = _train_step(model, gen, disc, perceptual, opt_g, opt_d, x, step, config,
                          slice_gen, amp, world)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        step += 1
        acc["n"] += 1
        for k in METRIC_KEYS:
            acc[k] += out[k]
        if rank == 0 and (step % config.log_every == 0 or step == max_steps):
            row = {"step": step, "wall_s": round(time.time() - t_start, 3),
                   **{k: acc[k] / acc["n"] for k in METRIC_KEYS}}
            history.append(row)
            if not time_steps:
                with metrics_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            if verbose:
                print(f"step {step} l1 {row['l1']:.4g} commit {row['commitment']:.3g} "
                      f"ppl {row['perplexity']:.1f} d {row['d_loss']:.3g}", flush=True)
            acc = {"n": 0, **{k: 0.0 for k in METRIC_KEYS}}
        if rank == 0 and not time_steps:
            if step % config.image_every == 0 or step == max_steps:
                plot_slices(x, out["_x_hat"], out_dir / "slices.png")
                plot_losses(metrics_path, out_dir / "loss_curves.png")
            if step % config.checkpoint_every == 0 or step == max_steps:
                save_checkpoint(out_dir, step, gen, disc, opt_g, opt_d, slice_gen, acc, config)
    if stopped and rank == 0 and not time_steps and out is not None:
        save_checkpoint(out_dir, step, gen, disc, opt_g, opt_d, slice_gen, acc, config)
        plot_losses(metrics_path, out_dir / "loss_curves.png")
    result = {"step": step, "history": history, "params": n_params,
              "last": {k: v for k, v in (out or {}).items() if not k.startswith("_")}}
    if time_steps:
        t = times[2:]
        result.update(step_times_s=t, step_time_median_s=statistics.median(t),
                      step_time_mean_s=statistics.fmean(t),
                      step_cpu_median_s=statistics.median(cpu_times[2:]))
        if rank == 0:
            (out_dir / "timing.json").write_text(json.dumps({
                "preset": config.preset, "device": str(dev), "world_size": world,
                "seed_config": seed_config, "autocast_bf16": use_amp,
                "batch_size": config.batch_size, "input_shape": list(x.shape[1:]),
                "torch_threads": torch.get_num_threads(), **n_params,
                "step_time_median_s": result["step_time_median_s"],
                "step_time_mean_s": result["step_time_mean_s"],
                "step_cpu_median_s": result["step_cpu_median_s"],  # process CPU time, all threads
                "step_times_s": t}, indent=1))
    return result


# --------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m baselines.vqgan3d.train",
                                 description="Train the 3DGrid-VQGAN baseline on density grids.")
    ap.add_argument("--preset", choices=["small", "paper"], default="small")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--release", help="release folder (densegen/<name>) to render grids from")
    src.add_argument("--synthetic", type=int, metavar="N",
                     help="train on N synthetic Gaussian-blob grids instead (smoke tests, timing)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--resume", help="checkpoint dir or run dir to continue from")
    ap.add_argument("--out", help="run folder (default out/vqgan3d-<preset>)")
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--disc-type", choices=["2d", "3d"])
    ap.add_argument("--disc-start-step", type=int)
    ap.add_argument("--seed-config", action="store_true",
                    help="fp32 without autocast (the reference setting for speed comparisons)")
    ap.add_argument("--time-steps", type=int, default=0, metavar="N",
                    help="measure N training steps (after 2 warm-up) and write timing.json")
    ap.add_argument("--max-minutes", type=float,
                    help="stop after this much wall time (a checkpoint is written where it stops)")
    ap.add_argument("--init-weights", metavar="WEIGHTS",
                    help="a new run starts its generator from these exported weights: a weights folder, "
                         "or 'shipped' for baselines/vqgan3d/weights (its config is used; other flags override)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    init_state = init_config = None
    if args.init_weights is not None:
        if args.resume is not None:
            print("error: --init-weights starts a new run; it cannot be combined with --resume", file=sys.stderr)
            return 2
        from baselines.weights import build_from_weights

        from .benchmark import SPEC
        try:
            module, info = build_from_weights(SPEC, None if args.init_weights == "shipped" else args.init_weights, "cpu")
        except (OSError, ValueError) as e:
            print(f"error: --init-weights {args.init_weights}: {e}", file=sys.stderr)
            return 2
        init_state, init_config = module.state_dict(), info["config"]

    over = {k: v for k, v in (("batch_size", args.batch_size), ("disc_type", args.disc_type),
                              ("disc_start_step", args.disc_start_step)) if v is not None}
    cfg = VQGAN3DConfig.from_dict(init_config).replace(**over) if init_config else get_config(args.preset, **over)
    if args.release is not None:
        if not Path(args.release).exists():
            print(f"error: --release {args.release}: no such folder", file=sys.stderr)
            return 2
        grids = ReleaseGrids(args.release, args.split, cfg.input_size)
    else:
        grids = synthetic_grids(args.synthetic, cfg.input_size, seed=cfg.seed)
    out = Path(args.out or f"out/vqgan3d-{args.preset}")
    res = train(cfg, grids, out, args.max_steps, resume=args.resume, device=args.device,
                seed_config=args.seed_config, time_steps=args.time_steps, max_minutes=args.max_minutes,
                init_weights=init_state)
    p = res["params"]
    if dist.is_initialized() and dist.get_rank() != 0:
        pass
    elif args.time_steps:
        print(f"timed {args.time_steps} steps ({args.preset}, {args.device}, batch "
              f"{cfg.batch_size}): median {res['step_time_median_s']:.4f} s/step, mean "
              f"{res['step_time_mean_s']:.4f} s/step (process CPU {res['step_cpu_median_s']:.4f} "
              f"s/step); generator {p['generator']:,} params")
    else:
        last = res["last"]
        print(f"done: step {res['step']}, l1 {last.get('l1', math.nan):.4g}, "
              f"generator {p['generator']:,} + discriminator {p['discriminator']:,} params, "
              f"run folder {out}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
