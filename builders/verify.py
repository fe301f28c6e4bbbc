"""Verify a release folder against its manifest: hashes, counts, keys, split identity."""
from __future__ import annotations

import json
from pathlib import Path

from .encoding import decode_member
from .splits import assign_split
from .tario import iter_tar_samples, sha256_file


def verify_release(path: Path) -> list[str]:
    """Check a release folder; returns a list of problems (empty when all is well).

    Checks: manifest present and readable; every shard listed exists, has the recorded sha256,
    size and sample count; no shard on disk is missing from the manifest; every sample has an
    ``meta.json`` with an ``inchikey``, sits in the split the split function gives it, and no identity or key appears
    in two splits or twice.
    """
    path = Path(path)
    problems: list[str] = []
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        return [f"{path}: no manifest.json (not a densegen release folder?)"]
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return [f"{manifest_path}: unreadable ({err})"]

    listed = {sh["path"] for sh in manifest.get("shards", [])}
    folders = {c.get("folder", "data") for c in manifest.get("configs", {}).values()} | {"data"}
    on_disk = sorted(p.relative_to(path).as_posix() for f in folders if (path / f).is_dir() for p in (path / f).rglob("*.tar"))
    for extra in on_disk:
        if extra not in listed:
            problems.append(f"{extra}: shard on disk but not in manifest.json")

    split_of_identity: dict[str, str] = {}
    keys: dict[tuple, str] = {}
    counts: dict[tuple, int] = {}
    for sh in manifest.get("shards", []):
        shard = path / sh["path"]
        if not shard.is_file():
            problems.append(f"{sh['path']}: listed in manifest.json but missing")
            continue
        size = shard.stat().st_size
        if size != sh["bytes"]:
            problems.append(f"{sh['path']}: {size} bytes, manifest says {sh['bytes']}")
        digest = sha256_file(shard)
        if digest != sh["sha256"]:
            problems.append(f"{sh['path']}: sha256 {digest[:16]}... does not match manifest {sh['sha256'][:16]}...")
        split = sh["split"]
        config = sh.get("config", "default")
        n = 0
        try:
            for key, members in iter_tar_samples(shard):
                n += 1
                if (config, key) in keys:
                    problems.append(f"{sh['path']}: sample {key!r} also in {keys[(config, key)]}")
                keys[(config, key)] = sh["path"]
                meta = next((decode_member(s, d)[1] for s, d in members if s == "meta.json"), {})
                ik = meta.get("inchikey") if isinstance(meta, dict) else None
                if ik is None:
                    problems.append(f"{sh['path']}: sample {key!r} has no inchikey")
                    continue
                if assign_split(ik) != split:
                    problems.append(f"{sh['path']}: sample {key!r} ({ik}) belongs to split {assign_split(ik)}, found in {split}")
                first = split_of_identity.setdefault(ik[:14], split)
                if first != split:
                    problems.append(f"{sh['path']}: molecule {ik} is in both {first} and {split}")
        except Exception as err:  # a corrupt tar must be reported, not crash verify
            problems.append(f"{sh['path']}: unreadable shard ({type(err).__name__}: {err})")
            continue
        if n != sh["count"]:
            problems.append(f"{sh['path']}: {n} samples, manifest says {sh['count']}")
        counts[(config, split)] = counts.get((config, split), 0) + n
    for config in {sh.get("config", "default") for sh in manifest.get("shards", [])}:
        for split, info in manifest.get("splits", {}).items():
            if counts.get((config, split), 0) != info["samples"]:
                problems.append(f"config {config}, split {split}: {counts.get((config, split), 0)} samples, "
                                f"manifest says {info['samples']}")
    return problems
