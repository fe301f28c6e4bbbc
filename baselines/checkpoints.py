"""The checkpoint folder layout shared by the training scripts of the learned baselines.

A training run writes ``<out>/checkpoints/step_NNNNNNNN/`` folders (weights file + state) and
``<out>/checkpoints/latest`` naming the newest one.
"""
from __future__ import annotations

from pathlib import Path

CHECKPOINT_DIR = "checkpoints"


def resolve_checkpoint(path, weights_file: str, model: str) -> Path:
    """The step folder of a checkpoint, given the step folder itself, a ``checkpoints`` folder
    or a run folder (the latter two through their ``latest`` file).

    Args:
        path: one of the folders above.
        weights_file: the weights file a step folder holds (e.g. ``model.safetensors``).
        model: model name for the error message.
    Raises:
        FileNotFoundError: naming the path and what was expected there.
    """
    p = Path(path)
    for cand in (p, p / CHECKPOINT_DIR):
        if (cand / weights_file).is_file():
            return cand
        if (cand / "latest").is_file():
            return cand / (cand / "latest").read_text().strip()
    raise FileNotFoundError(f"no {model} checkpoint found at {path} (expected {weights_file} in a step folder, "
                            f"or a '{CHECKPOINT_DIR}/latest' file)")
