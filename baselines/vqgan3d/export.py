"""``python -m baselines.vqgan3d.export --checkpoint CKPT_DIR --out baselines/vqgan3d/weights``

Turns a training checkpoint of ``baselines.vqgan3d.train`` (a ``checkpoints/step_NNNNNNNN``
folder, a ``checkpoints`` folder or the run folder, whose ``latest`` names the newest) into
shipped weights: the generator's state dict (encoder, decoder, codebook) as safetensors shards
under 16 MiB (:func:`baselines.weights.save_sharded`) and ``config.json`` = {"model":
"vqgan3d", "preset", "config" (the full VQGAN3DConfig), "source" (checkpoint name, step)}.

Not exported: the discriminator and optimizer states (training only) and, unless
``--keep-ema-state``, the codebook's EMA bookkeeping (cluster sizes, embedding sums, unused
counters), which inference never reads (for ``paper`` the embedding sums alone are 16 MiB).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from baselines.weights import export_checkpoint

from .benchmark import SHIPPED_WEIGHTS, SPEC, TRAINING_ONLY_BUFFERS


def export(checkpoint, out, keep_ema_state: bool = False, max_file_bytes: int | None = None) -> Path:
    """Write shipped weights for a training checkpoint (:func:`baselines.weights.export_checkpoint`).

    Args:
        checkpoint: step / checkpoints / run folder of ``baselines.vqgan3d.train``.
        out: weights folder to write.
        keep_ema_state: also export the codebook's EMA training buffers.
        max_file_bytes: shard size limit (default that of ``save_sharded``, 16 MiB).

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: no checkpoint there. RuntimeError: the weights do not fit the
            checkpoint's config.
    """
    return export_checkpoint(SPEC, checkpoint, out, drop=() if keep_ema_state else TRAINING_ONLY_BUFFERS,
                             info={"ema_state": bool(keep_ema_state)}, max_file_bytes=max_file_bytes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m baselines.vqgan3d.export",
                                 description="Export a 3DGrid-VQGAN training checkpoint as shipped weights.")
    ap.add_argument("--checkpoint", required=True, help="checkpoint step folder, checkpoints/ or run folder")
    ap.add_argument("--out", default=str(SHIPPED_WEIGHTS), help=f"weights folder (default {SHIPPED_WEIGHTS})")
    ap.add_argument("--keep-ema-state", action="store_true",
                    help="also export the codebook's EMA training buffers (not needed for inference)")
    args = ap.parse_args(argv)
    try:
        out = export(args.checkpoint, args.out, keep_ema_state=args.keep_ema_state)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files = sorted(p.name for p in Path(out).glob("*.safetensors"))
    print(f"vqgan3d: exported {args.checkpoint} -> {out} ({len(files)} shard(s) + config.json + manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
