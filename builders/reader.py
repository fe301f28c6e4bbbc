"""Reading a release folder (the format's other half): shards, decoded samples, torch data.

Three ways in, all over the same shards:

* :func:`iter_release` - plain Python iterator of decoded samples (numpy arrays, str, JSON).
* ``datasets.load_dataset("densegen/<name>")`` from the folder holding ``densegen/``
  (see :func:`load_hf`), streaming or not.
* ``webdataset.WebDataset(release_shards(path, split))`` (see :func:`webdataset_pipeline`).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator

from .encoding import decode_member
from .tario import iter_tar_samples


def read_manifest(path: Path) -> dict:
    """The manifest of a release folder.

    Raises:
        FileNotFoundError: naming the folder when it has no manifest.json.
    """
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{path} is not a densegen release (no manifest.json); build one with "
                                f"`python -m builders build <release>`")
    return json.loads(manifest.read_text())


def release_shards(path: Path, split: str = "train") -> list[Path]:
    """Shard paths of one split, in manifest order.

    Raises:
        ValueError: for an unknown split name.
    """
    manifest = read_manifest(path)
    if split not in manifest["splits"]:
        raise ValueError(f"unknown split {split!r}; this release has {sorted(manifest['splits'])}")
    return [Path(path) / sh["path"] for sh in manifest["shards"] if sh["split"] == split]


def decode_sample(key: str, members) -> dict:
    """Decode (suffix, bytes) members into ``{field: value, "__key__": key}``."""
    sample = {"__key__": key}
    for suffix, data in members:
        name, value = decode_member(suffix, data)
        sample[name] = value
    return sample


def iter_shards(shards: list[Path]) -> Iterator[dict]:
    """Decoded samples of the given shards, in order."""
    for shard in shards:
        for key, members in iter_tar_samples(shard):
            yield decode_sample(key, members)


def iter_release(path: Path, split: str = "train", shuffle_shards: bool = False, seed: int = 0,
                 shard_slice: slice | None = None) -> Iterator[dict]:
    """Iterate decoded samples of a release split.

    Args:
        path: release folder (``.../densegen/<name>``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        shuffle_shards: visit shards in a random order drawn from ``seed``.
        shard_slice: take only these shards (after shuffling), e.g. ``slice(rank, None, world)``.
    Yields:
        dicts with one entry per field (name without extension) plus ``"__key__"``.
    """
    shards = release_shards(path, split)
    if shuffle_shards:
        random.Random(seed).shuffle(shards)
    if shard_slice is not None:
        shards = shards[shard_slice]
    yield from iter_shards(shards)


def load_hf(path: Path, split: str | None = None, streaming: bool = False):
    """Load a release folder with Hugging Face `datasets` (declared features, typed arrays).

    Equivalent to ``load_dataset("densegen/<name>")`` run from the folder holding ``densegen/``.
    Fields keep their extension in the column name (``positions.npy``), as in every
    WebDataset-backed dataset on the Hub.
    """
    from datasets import load_dataset

    return load_dataset(str(path), split=split, streaming=streaming)


def webdataset_pipeline(path: Path, split: str = "train"):
    """A `webdataset.WebDataset` over a split's shards, decoding .npy/.txt/.json members."""
    import webdataset as wds

    urls = [str(p) for p in release_shards(path, split)]
    return wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode()


def find_sample(path: Path, key: str, config: str | None = None) -> dict:
    """The decoded sample with ``key`` (searching every split of one config).

    Args:
        config: config name (default: the release's default config).
    Raises:
        KeyError: naming the key and the release when no sample has it.
    """
    manifest = read_manifest(path)
    configs = manifest.get("configs") or {"default": {"default": True}}
    if config is None:
        config = next((name for name, c in configs.items() if c.get("default")), next(iter(configs)))
    if config not in configs:
        raise KeyError(f"{path} has no config {config!r}; it has {sorted(configs)}")
    for sh in manifest["shards"]:
        if sh.get("config", "default") != config:
            continue
        for k, members in iter_tar_samples(Path(path) / sh["path"]):
            if k == key:
                return decode_sample(k, members)
    raise KeyError(f"no sample {key!r} in {path} (config {config})")
