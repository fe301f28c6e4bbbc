"""PyTorch DataLoader recipe for releases: an IterableDataset over shards and collate functions.

    from torch.utils.data import DataLoader
    from builders.torch_data import ReleaseIterableDataset, collate_point_clouds
    ds = ReleaseIterableDataset("densegen/random-conformers", split="train", shuffle_buffer=1000)
    loader = DataLoader(ds, batch_size=64, num_workers=2, collate_fn=collate_point_clouds)
    for batch in loader:
        batch["z"], batch["pos"], batch["batch"], batch["num_atoms"]   # flat layout
        batch["z_padded"], batch["pos_padded"], batch["mask"]         # padded layout

Each DataLoader worker reads a disjoint subset of shards, so an epoch visits every sample once.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .reader import iter_shards, release_shards


class ReleaseIterableDataset(IterableDataset):
    """Decoded samples of a release split, split across DataLoader workers by shard.

    Args:
        path: release folder.
        split: split name.
        shuffle_buffer: if > 0, shuffle shard order and samples within a buffer of this size.
        seed: seed of that shuffling; combined with :meth:`set_epoch`.
        transform: optional function applied to each decoded sample.
    """

    def __init__(self, path, split: str = "train", shuffle_buffer: int = 0, seed: int = 0, transform=None):
        self.path = Path(path)
        self.split = split
        self.shards = release_shards(self.path, split)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = 0
        self.transform = transform

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffling of the next iteration."""
        self.epoch = epoch

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(self.seed * 100_003 + self.epoch)
        shards = list(self.shards)
        if self.shuffle_buffer > 0:
            rng.shuffle(shards)
        samples = iter_shards(shards[wid::nw])
        if self.transform is not None:
            samples = map(self.transform, samples)
        if self.shuffle_buffer <= 0:
            yield from samples
            return
        buf = []
        for s in samples:
            buf.append(s)
            if len(buf) >= self.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf


def collate_point_clouds(samples: list[dict]) -> dict:
    """Collate variable-size point clouds.

    Args:
        samples: dicts with ``atomic_numbers`` (N_i,) and ``positions`` (N_i, 3) Angstrom.
    Returns:
        dict with flat ``z`` (sum N,) long, ``pos`` (sum N, 3) float32, ``batch`` (sum N,) long,
        ``num_atoms`` (B,) long; padded ``z_padded`` (B, N_max) long (0 = padding),
        ``pos_padded`` (B, N_max, 3), ``mask`` (B, N_max) bool; and ``keys`` (list of str).
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    z = [torch.as_tensor(np.asarray(s["atomic_numbers"]), dtype=torch.long) for s in samples]
    pos = [torch.as_tensor(np.asarray(s["positions"]), dtype=torch.float32) for s in samples]
    num = torch.tensor([len(t) for t in z], dtype=torch.long)
    nmax = int(num.max())
    z_pad = torch.zeros(len(samples), nmax, dtype=torch.long)
    pos_pad = torch.zeros(len(samples), nmax, 3)
    for i, (zi, pi) in enumerate(zip(z, pos)):
        z_pad[i, : len(zi)] = zi
        pos_pad[i, : len(zi)] = pi
    return {
        "z": torch.cat(z), "pos": torch.cat(pos),
        "batch": torch.repeat_interleave(torch.arange(len(samples)), num), "num_atoms": num,
        "z_padded": z_pad, "pos_padded": pos_pad, "mask": torch.arange(nmax)[None, :] < num[:, None],
        "keys": [s.get("__key__", "") for s in samples],
    }
