"""The run folder of the learned baselines' training scripts: checkpoints and the metrics log.

One layout for every baseline (written by :func:`write_checkpoint`)::

    RUN/
        metrics.jsonl                   # one JSON record a line, each with its "step"
        checkpoints/
            latest                      # names the newest step folder
            step_NNNNNNNN/
                model.safetensors       # the weights (see below)
                state.pt                # optimizer, RNG, data position, ... (plain tensors/dicts)
                config.json             # the model's full configuration

``model.safetensors`` holds the inference model's state dict under its own names, and each
training-only module (the 3DGrid-VQGAN discriminator) under ``<module>.<name>``; its metadata
records ``step`` and the ``extra`` module names. Step folders appear atomically (temp folder +
rename), so a crash never leaves a half-written checkpoint behind ``latest``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

CHECKPOINT_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
LATEST_FILE = "latest"
METRICS_FILE = "metrics.jsonl"


@dataclass
class Checkpoint:
    """One step folder read by :func:`read_checkpoint`.

    Attributes:
        folder: the step folder.
        step: optimizer steps taken when it was written (None when not recorded).
        config: the ``config.json`` dict (the model config's ``to_dict()``).
        weights: the inference model's state dict, name -> torch.Tensor.
        extra: training-only module name -> its state dict (e.g. ``"discriminator"``).
    """

    folder: Path
    step: int | None
    config: dict
    weights: dict
    extra: dict = field(default_factory=dict)


def write_checkpoint(out_dir, step: int, weights: dict, state: dict, config: dict,
                     extra: dict | None = None, keep: int | None = None) -> Path:
    """Write ``<out_dir>/checkpoints/step_{step:08d}`` atomically and point ``latest`` at it.

    Args:
        out_dir: the run folder.
        step: optimizer steps taken so far (names the folder; stored in the weights' metadata).
        weights: the inference model's state dict, name -> torch.Tensor (any device; copied to
            CPU).
        state: training state saved with ``torch.save`` as ``state.pt``; keep it to tensors,
            numbers, strings, lists and dicts so ``torch.load(weights_only=True)`` reads it.
        config: JSON-serialisable model configuration, stored as ``config.json``.
        extra: training-only module name -> its state dict, stored under ``<name>.<key>``.
        keep: keep only the newest ``keep`` step folders (None: keep all).

    Returns:
        The step folder.

    Raises:
        ValueError: an ``extra`` name that a ``weights`` key already starts with.
    """
    from safetensors.torch import save_file

    extra = dict(extra or {})
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    for name, sd in extra.items():
        clash = [k for k in tensors if k.startswith(f"{name}.")]
        if clash:
            raise ValueError(f"extra module {name!r} clashes with model tensors {clash[:3]}")
        tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in sd.items()})
    root = Path(out_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(tensors, str(tmp / WEIGHTS_FILE),
              metadata={"step": str(int(step)), "extra": ",".join(sorted(extra))})
    torch.save(state, tmp / STATE_FILE)
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = root / f".{LATEST_FILE}.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / LATEST_FILE)
    if keep is not None:
        old = sorted(p for p in root.glob("step_*") if p.is_dir())
        for p in old[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def resolve_checkpoint(path, model: str = "model") -> Path:
    """The step folder of a checkpoint, given the step folder itself, a ``checkpoints`` folder
    or a run folder (the latter two through their ``latest`` file).

    Args:
        path: one of the folders above.
        model: model name for the error message (e.g. ``"Mo3ENet"``).

    Returns:
        The step folder (holding ``model.safetensors``).

    Raises:
        FileNotFoundError: naming the path and what was expected there.
    """
    p = Path(path)
    for cand in (p, p / CHECKPOINT_DIR):
        if (cand / WEIGHTS_FILE).is_file():
            return cand
        if (cand / LATEST_FILE).is_file():
            return cand / (cand / LATEST_FILE).read_text().strip()
    raise FileNotFoundError(f"no {model} checkpoint found at {path} (expected {WEIGHTS_FILE} in a step folder, "
                            f"or a '{CHECKPOINT_DIR}/{LATEST_FILE}' file)")


def checkpoint_config(path, model: str = "model") -> dict:
    """The ``config.json`` dict of a checkpoint (any folder :func:`resolve_checkpoint` takes)."""
    return json.loads((resolve_checkpoint(path, model) / CONFIG_FILE).read_text())


def read_checkpoint(path, model: str = "model", device: str = "cpu") -> Checkpoint:
    """Weights, config and step of a checkpoint written by :func:`write_checkpoint`.

    Args:
        path: a step, ``checkpoints`` or run folder (see :func:`resolve_checkpoint`).
        model: model name for error messages.
        device: where the tensors are loaded.

    Returns:
        A :class:`Checkpoint` (model tensors and training-only modules already separated).

    Raises:
        FileNotFoundError: no checkpoint there.
    """
    from safetensors import safe_open

    folder = resolve_checkpoint(path, model)
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt", device=str(device)) as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    names = [n for n in meta.get("extra", "").split(",") if n]
    extra = {n: {k[len(n) + 1:]: v for k, v in tensors.items() if k.startswith(f"{n}.")} for n in names}
    weights = {k: v for k, v in tensors.items() if not any(k.startswith(f"{n}.") for n in names)}
    step = int(meta["step"]) if "step" in meta else None
    config = json.loads((folder / CONFIG_FILE).read_text())
    return Checkpoint(folder, step, config, weights, extra)


def read_training_state(path, model: str = "model", map_location="cpu") -> dict:
    """The ``state.pt`` dict of a checkpoint, read with ``torch.load(weights_only=True)``.

    Args:
        path: a step, ``checkpoints`` or run folder (see :func:`resolve_checkpoint`).
        model: model name for error messages.
        map_location: where its tensors are loaded.
    """
    folder = resolve_checkpoint(path, model)
    return torch.load(folder / STATE_FILE, map_location=map_location, weights_only=True)


def rng_state(**generators: torch.Generator) -> dict:
    """Every random-number state a training run draws from, for ``state.pt``: torch's global
    CPU generator (``torch``), each CUDA device's (``cuda``, when CUDA is available), Python's
    ``random`` module (``python``) and the run's own named generators (``generators``: name ->
    ``torch.Generator``, stored under ``generator.<name>``)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, gen in generators.items():
        state[f"generator.{name}"] = gen.get_state()
    return state


def restore_rng_state(state: dict, **generators: torch.Generator) -> None:
    """Put back what :func:`rng_state` captured (tensors may come back on any device).

    Raises:
        KeyError: ``state`` lacks one of ``generators``' names.
    """
    torch.set_rng_state(state["torch"].cpu())
    version, inner, gauss = state["python"]
    random.setstate((version, tuple(inner), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for name, gen in generators.items():
        gen.set_state(state[f"generator.{name}"].cpu())


def read_metrics(path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (blank lines skipped; [] when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trim_metrics(path, step: int) -> None:
    """Drop the records of a ``metrics.jsonl`` written after ``step`` (a run resumed from an
    earlier checkpoint logs those steps again). Other lines are kept verbatim; a missing file
    is left missing."""
    path = Path(path)
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))
