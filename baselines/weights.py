"""Shipped model weights: a folder of safetensors shards + ``config.json`` + ``manifest.json``.

Layout written by :func:`save_sharded` and read by :func:`load_sharded`::

    FOLDER/
        manifest.json                  # format, version, every file with its sha256 and size
        config.json                    # the model's configuration (any JSON-serialisable dict)
        model-00001-of-0000N.safetensors
        ...

Every shard file is smaller than ``max_file_bytes`` (default 16 MiB, so the weights can be
committed to git hosts with a per-file limit). A tensor larger than one shard's budget is cut
into contiguous pieces of its flattened data (stored as ``NAME::part0000``, ...) and put back
together on load; the manifest records its shape and dtype. Nothing is pickled.

On load the sha256 of ``config.json`` and of every shard is checked against the manifest; a
mismatch raises :class:`WeightsIntegrityError` naming the file, so a truncated or corrupted
download (or a git-lfs pointer in place of a shard) fails loudly instead of giving a silently
wrong model.

:func:`build_from_weights` builds a baseline from shipped weights or a training checkpoint
(:mod:`baselines.checkpoints`) and :func:`export_checkpoint` turns a checkpoint into shipped
weights, both for any model described by a :class:`ModelSpec`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from builders.format.tario import sha256_file

FORMAT = "densegen-sharded-safetensors"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
MAX_FILE_BYTES = 16 * 1024 * 1024
HEADER_RESERVE = 1024 * 1024          # bytes kept free in each file for the safetensors header
PART_SEP = "::part"


class WeightsIntegrityError(ValueError):
    """A shipped weights file does not match the sha256 recorded in its manifest."""


def _pieces(name: str, t: torch.Tensor, budget: int):
    """(stored name, tensor) pieces of one tensor, each at most ``budget`` bytes."""
    if t.numel() * t.element_size() <= budget:
        return [(name, t)]
    flat = t.reshape(-1)
    per = max(1, budget // t.element_size())
    return [(f"{name}{PART_SEP}{k:04d}", flat[i:i + per].clone())
            for k, i in enumerate(range(0, flat.numel(), per))]


def save_sharded(state_dict: dict, folder, config: dict, max_file_bytes: int = MAX_FILE_BYTES,
                 prefix: str = "model") -> Path:
    """Write a state dict as sharded safetensors + ``config.json`` + ``manifest.json``.

    Args:
        state_dict: name -> torch.Tensor (any dtype safetensors supports; moved to CPU, copied
            so shared storage is not a problem). Names must not contain ``"::part"``.
        folder: output folder (created; existing shard files of this prefix are removed first
            so no stale shard survives).
        config: JSON-serialisable dict stored as ``config.json`` (returned by load_sharded).
        max_file_bytes: every shard file stays strictly below this size (default 16 MiB).
        prefix: shard file name prefix.

    Returns:
        The folder path.

    Raises:
        ValueError: for a name containing ``"::part"`` or a budget too small to hold the
            safetensors header. TypeError: for a value that is not a torch.Tensor.
    """
    budget = int(max_file_bytes) - HEADER_RESERVE
    if budget < 1024:
        raise ValueError(f"max_file_bytes={max_file_bytes} is too small (needs > {HEADER_RESERVE + 1024})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split, items = {}, []
    for name, t in state_dict.items():
        if PART_SEP in name:
            raise ValueError(f"tensor name {name!r} contains the reserved {PART_SEP!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict[{name!r}] is a {type(t).__name__}, not a torch.Tensor")
        t = t.detach().to("cpu").contiguous().clone()
        pieces = _pieces(name, t, budget)
        if len(pieces) > 1:
            split[name] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                           "parts": len(pieces)}
        items.extend(pieces)
    # greedy packing in the state dict's order (keeps related tensors together)
    shards, current, size = [], {}, 0
    for name, t in items:
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > budget:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += nbytes
    if current or not shards:
        shards.append(current)
    for old in folder.glob(f"{prefix}-*.safetensors"):
        old.unlink()
    files = {}
    for i, shard in enumerate(shards):
        fname = f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / fname), metadata={"format": "pt"})
        nbytes = (folder / fname).stat().st_size
        if nbytes >= max_file_bytes:  # header larger than the reserve: should not happen
            raise ValueError(f"{fname} is {nbytes} bytes, not below {max_file_bytes}")
        files[fname] = {"sha256": sha256_file(folder / fname), "bytes": nbytes,
                        "tensors": sorted(shard)}
    (folder / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    manifest = {"format": FORMAT, "version": FORMAT_VERSION,
                "config": {"file": CONFIG, "sha256": sha256_file(folder / CONFIG)},
                "files": files, "split_tensors": split,
                "num_tensors": len(state_dict),
                "num_values": int(sum(t.numel() for t in state_dict.values()))}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)
    return folder


def has_sharded(folder) -> bool:
    """True when ``folder`` holds a ``manifest.json`` (shipped weights, possibly unverified)."""
    return folder is not None and (Path(folder) / MANIFEST).is_file()


def _verify(path: Path, expected: str, folder: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path.name} listed in {folder / MANIFEST} is missing")
    got = sha256_file(path)
    if got != expected:
        raise WeightsIntegrityError(
            f"sha256 mismatch for {path}: manifest says {expected}, file has {got} "
            f"({path.stat().st_size} bytes). The file is corrupted or incomplete (a git-lfs "
            f"pointer?); re-fetch or re-export the weights.")


def load_sharded(folder, device: str = "cpu") -> tuple[dict, dict]:
    """Read weights written by :func:`save_sharded`, verifying every sha256.

    Args:
        folder: the weights folder.
        device: where the tensors are loaded ("cpu", "cuda", ...).

    Returns:
        (state_dict name -> torch.Tensor, config dict).

    Raises:
        FileNotFoundError: no folder / manifest, or a listed file missing.
        WeightsIntegrityError (a ValueError): a file whose sha256 differs from the manifest.
        ValueError: an unknown manifest format or inconsistent split tensors.
    """
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {folder}: not a sharded weights folder "
                                f"(written by baselines.weights.save_sharded)")
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{folder / MANIFEST}: format {manifest.get('format')!r} version "
                         f"{manifest.get('version')!r}, expected {FORMAT!r} version {FORMAT_VERSION}")
    _verify(folder / manifest["config"]["file"], manifest["config"]["sha256"], folder)
    config = json.loads((folder / manifest["config"]["file"]).read_text())
    flat = {}
    for fname, info in manifest["files"].items():
        _verify(folder / fname, info["sha256"], folder)
        flat.update(load_file(str(folder / fname), device=str(device)))
    state = {}
    split = manifest.get("split_tensors", {})
    for name, info in split.items():
        keys = [f"{name}{PART_SEP}{k:04d}" for k in range(info["parts"])]
        missing = [k for k in keys if k not in flat]
        if missing:
            raise ValueError(f"{folder}: pieces {missing[:3]} of split tensor {name!r} are missing")
        t = torch.cat([flat.pop(k) for k in keys])
        state[name] = t.reshape(info["shape"])
    stray = [k for k in flat if PART_SEP in k]
    if stray:
        raise ValueError(f"{folder}: pieces {stray[:3]} belong to no split tensor in the manifest")
    state.update(flat)
    return state, config


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """What the shared loaders need to know about one learned baseline.

    Attributes:
        name: the ``"model"`` field of its shipped ``config.json`` (``"mo3enet"``).
        title: its name in messages (``"Mo3ENet"``).
        package: its package (``"baselines.mo3enet"``): ``python -m PACKAGE.train`` and
            ``PACKAGE.export`` are named in the how-to-get-weights message.
        shipped: the folder of its committed weights (the default of :func:`build_from_weights`).
        parse_config: config dict (``config.json``) -> config object with ``.preset`` and
            ``.to_dict()``.
        build: config object -> untrained ``torch.nn.Module``.
        training_only: state-dict entries that shipped weights may leave out (buffers only
            training reads); they keep the values ``build`` gave them.
    """

    name: str
    title: str
    package: str
    shipped: Path
    parse_config: Callable[[dict], Any]
    build: Callable[[Any], torch.nn.Module]
    training_only: tuple[str, ...] = ()

    def how_to_get_weights(self) -> str:
        """The sentence error messages give on how to train and export weights."""
        short = self.package.rsplit(".", 1)[-1]
        try:
            out = self.shipped.relative_to(Path(__file__).parents[1])
        except ValueError:
            out = self.shipped
        return (f"train with `python -m {self.package}.train --preset small --release PATH --out runs/{short}` "
                f"and export with `python -m {self.package}.export --checkpoint runs/{short} --out {out}`, "
                "or pass weights=FOLDER (a shipped weights folder or a training checkpoint)")


def build_from_weights(spec: ModelSpec, weights=None, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A baseline (float32, eval mode) built from shipped weights or a training checkpoint.

    Args:
        spec: the model (see :class:`ModelSpec`).
        weights: a shipped weights folder (``manifest.json``, :func:`save_sharded`), or a
            training run / ``checkpoints`` / step folder (:mod:`baselines.checkpoints`);
            None = ``spec.shipped``.
        device: torch device string.

    Returns:
        (module, info): info is the shipped ``config.json`` dict (``model``, ``preset``,
        ``config``, ``source``, ...) or, for a checkpoint, {``model``, ``preset``, ``config``,
        ``source``: {``checkpoint``: the step folder}}.

    Raises:
        FileNotFoundError: no weights there, saying how to train and export them.
        ValueError: the folder holds another model's weights, a bad checksum
            (:class:`WeightsIntegrityError`), or tensors that do not fit the config.
    """
    from baselines.checkpoints import read_checkpoint

    folder = Path(weights) if weights is not None else spec.shipped
    if has_sharded(folder):
        state, info = load_sharded(folder)
        if info.get("model") != spec.name:
            raise ValueError(f"{folder} holds weights of model {info.get('model')!r}, not {spec.name!r}")
        cfg = spec.parse_config(info["config"])
    elif folder.exists():
        try:
            ck = read_checkpoint(folder, spec.title)
        except FileNotFoundError:
            raise FileNotFoundError(f"no {spec.title} weights in {folder} (neither manifest.json nor "
                                    f"a training checkpoint); {spec.how_to_get_weights()}") from None
        cfg = spec.parse_config(ck.config)
        state = ck.weights
        info = {"model": spec.name, "preset": cfg.preset, "config": cfg.to_dict(),
                "source": {"checkpoint": str(ck.folder)}}
    else:
        what = f"no shipped {spec.title} weights" if weights is None else f"no {spec.title} weights"
        raise FileNotFoundError(f"{what} at {folder}; {spec.how_to_get_weights()}")
    model = spec.build(cfg)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in spec.training_only]
    if missing or result.unexpected_keys:
        raise ValueError(f"{folder}: weights do not fit the config: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return model.float().to(device).eval(), info


def weights_line(spec: ModelSpec, info: dict, weights=None) -> str:
    """The one line an adapter prints when it loads weights: which weights, how far they were
    trained, and, for the shipped ones, where their model card is.

    Args:
        spec: the model.
        info: the ``info`` dict :func:`build_from_weights` returned.
        weights: the folder passed to it (None: the shipped weights).
    """
    cfg = info.get("config") or {}
    source = info.get("source") or {}
    facts = [f"{info.get('preset', '?')} preset"]
    step = source.get("step")
    if step is None and str(source.get("checkpoint", "")).rsplit("/", 1)[-1].startswith("step_"):
        step = int(str(source["checkpoint"]).rsplit("step_", 1)[-1])
    if step is not None:
        facts.append(f"{step:,} training steps")
    if source.get("sigma") is not None:
        facts.append(f"sigma {source['sigma']:.2f} A")
    if (cfg.get("model") or {}).get("hydrogens") is False:
        facts.append("heavy atoms only")
    if weights is None:
        card = spec.shipped.parent / "MODEL_CARD.md"
        try:
            card = card.relative_to(Path(__file__).parents[1])
        except ValueError:
            pass
        where = (source.get("round") or {}).get("device", "cpu")
        what = "trained on a GPU" if str(where).startswith("cuda") else "a CPU demonstration"
        return f"{spec.name}: shipped weights ({', '.join(facts)}), {what}; see {card.as_posix()}"
    return f"{spec.name}: weights from {weights} ({', '.join(facts)})"


def export_checkpoint(spec: ModelSpec, checkpoint, out, drop: tuple[str, ...] = (),
                      info: dict | None = None, source: dict | None = None,
                      max_file_bytes: int | None = None) -> Path:
    """Write shipped weights (:func:`save_sharded`) for a training checkpoint.

    The weights are the checkpoint's inference model (training-only modules such as a
    discriminator, and the optimizer state, are not exported); ``config.json`` is {"model":
    spec.name, "preset", "config" (the full config), "source": {"checkpoint": step folder name,
    "step", **source}, **info}.

    Args:
        spec: the model (see :class:`ModelSpec`).
        checkpoint: a step, ``checkpoints`` or run folder (:mod:`baselines.checkpoints`).
        out: the weights folder to write.
        drop: state-dict entries left out (e.g. ``spec.training_only``).
        info: more top-level ``config.json`` fields. source: more ``source`` fields.
        max_file_bytes: shard size limit (default that of :func:`save_sharded`, 16 MiB).

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: no checkpoint there. RuntimeError: the weights do not fit the
            checkpoint's config.
    """
    from baselines.checkpoints import read_checkpoint

    ck = read_checkpoint(checkpoint, spec.title)
    cfg = spec.parse_config(ck.config)
    spec.build(cfg).load_state_dict(ck.weights)                  # fails loudly on a mismatch
    state = {k: v for k, v in ck.weights.items() if k not in drop}
    src = {"checkpoint": ck.folder.name}
    if ck.step is not None:
        src["step"] = ck.step
    src.update(source or {})
    meta = {"model": spec.name, "preset": cfg.preset, "config": cfg.to_dict(), "source": src, **(info or {})}
    kw = {} if max_file_bytes is None else {"max_file_bytes": max_file_bytes}
    return save_sharded(state, out, meta, **kw)
