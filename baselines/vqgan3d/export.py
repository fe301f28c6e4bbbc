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
import json
import sys
from pathlib import Path

from safetensors import safe_open

from baselines.weights import save_sharded

from .benchmark import SHIPPED_WEIGHTS, TRAINING_ONLY_BUFFERS
from .config import VQGAN3DConfig
from .model import VQGAN3D
from .train import resolve_checkpoint


def export(checkpoint, out, keep_ema_state: bool = False, max_file_bytes: int | None = None) -> Path:
    """Write shipped weights for a training checkpoint.

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
    ck = resolve_checkpoint(checkpoint)
    cfg = VQGAN3DConfig.from_dict(json.loads((ck / "config.json").read_text()))
    with safe_open(str(ck / "weights.safetensors"), framework="pt") as f:
        meta = f.metadata() or {}
        names = [k for k in f.keys() if k.startswith("generator.")]  # noqa: SIM118 (safe_open is not a dict)
        state = {k[len("generator."):]: f.get_tensor(k) for k in names}
    VQGAN3D(cfg).load_state_dict(state)                     # fails loudly on a mismatch
    if not keep_ema_state:
        state = {k: v for k, v in state.items() if k not in TRAINING_ONLY_BUFFERS}
    source = {"checkpoint": ck.name}
    if "step" in meta:
        source["step"] = int(meta["step"])
    info = {"model": "vqgan3d", "preset": cfg.preset, "config": cfg.to_dict(), "source": source,
            "ema_state": bool(keep_ema_state)}
    kw = {} if max_file_bytes is None else {"max_file_bytes": max_file_bytes}
    return save_sharded(state, out, info, **kw)


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
