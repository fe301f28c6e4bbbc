"""``python -m baselines.mo3enet.export --checkpoint CKPT_DIR --out baselines/mo3enet/weights``

Turns a training checkpoint of ``baselines.mo3enet.train`` (a ``checkpoints/step_NNNNNNNN``
folder, a ``checkpoints`` folder or the run folder; the newest checkpoint is taken through its
``latest`` file) into shipped weights: the model's state dict as safetensors shards under 16 MiB
(:func:`baselines.weights.save_sharded`) and ``config.json`` = {"model": "mo3enet", "preset",
"config" (the full Mo3ENetConfig), "source" (checkpoint name, step, training sigma)}. The
optimizer state is not exported.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from baselines.weights import save_sharded

from .benchmark import SHIPPED_WEIGHTS
from .model import Mo3ENet
from .train import load_config, resolve_checkpoint


def export(checkpoint, out, max_file_bytes: int | None = None) -> Path:
    """Write shipped weights for a training checkpoint.

    Args:
        checkpoint: step / checkpoints / run folder of ``baselines.mo3enet.train``.
        out: weights folder to write.
        max_file_bytes: shard size limit (default that of ``save_sharded``, 16 MiB).

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: no checkpoint there. RuntimeError: the weights do not fit the
            checkpoint's config.
    """
    ck = resolve_checkpoint(checkpoint)
    cfg = load_config(ck)
    state = load_file(str(ck / "model.safetensors"))
    Mo3ENet(cfg.model).load_state_dict(state)          # fails loudly on a mismatch
    source = {"checkpoint": ck.name}
    if (ck / "state.pt").is_file():
        st = torch.load(ck / "state.pt", weights_only=True, map_location="cpu")
        source["step"] = int(st["step"])
        sigma = st.get("sigma", {})
        if isinstance(sigma, dict) and "sigma" in sigma:
            source["sigma"] = float(sigma["sigma"])
    info = {"model": "mo3enet", "preset": cfg.preset, "config": cfg.to_dict(), "source": source}
    kw = {} if max_file_bytes is None else {"max_file_bytes": max_file_bytes}
    return save_sharded(state, out, info, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m baselines.mo3enet.export",
                                 description="Export a Mo3ENet training checkpoint as shipped weights.")
    ap.add_argument("--checkpoint", required=True, help="checkpoint step folder, checkpoints/ or run folder")
    ap.add_argument("--out", default=str(SHIPPED_WEIGHTS), help=f"weights folder (default {SHIPPED_WEIGHTS})")
    args = ap.parse_args(argv)
    try:
        out = export(args.checkpoint, args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files = sorted(p.name for p in Path(out).glob("*.safetensors"))
    print(f"mo3enet: exported {args.checkpoint} -> {out} ({len(files)} shard(s) + config.json + manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
