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

from baselines.checkpoints import STATE_FILE, read_training_state, resolve_checkpoint
from baselines.weights import export_checkpoint

from .benchmark import SHIPPED_WEIGHTS, SPEC


def export(checkpoint, out, max_file_bytes: int | None = None) -> Path:
    """Write shipped weights for a training checkpoint (:func:`baselines.weights.export_checkpoint`,
    with the training sigma of its ``state.pt`` in ``source``).

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
    ck = resolve_checkpoint(checkpoint, SPEC.title)
    source = {}
    if (ck / STATE_FILE).is_file():
        sigma = read_training_state(ck).get("sigma", {})
        if isinstance(sigma, dict) and "sigma" in sigma:
            source["sigma"] = float(sigma["sigma"])
    return export_checkpoint(SPEC, ck, out, source=source, max_file_bytes=max_file_bytes)


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
