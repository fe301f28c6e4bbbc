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
"""
from __future__ import annotations

import json
import os
from pathlib import Path

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
