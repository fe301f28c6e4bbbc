"""Verify a release folder against its manifest: shape, files, hashes, counts, members, splits.

:func:`verify_release` returns one line per problem, each naming the file it is about, and
never raises for anything found in the folder (``python -m builders verify PATH`` prints them
and exits 1).

What may be in a release folder: ``README.md`` (the card, required), ``manifest.json``,
``failures.jsonl``, the shards the manifest lists and the files of its Parquet copy
(``builders.format.parquet``). Anything else is reported as a stray
file, except entries at the top level whose name starts with a dot (``.build/``, the work
folder of an unfinished or ``--keep-work`` build; ``.git/``, ``.gitattributes`` and
``.cache/`` of a Hub clone or download), which are not part of the release.
"""
from __future__ import annotations

from pathlib import Path

from builders.format.encoding import decodable, decode_value
from builders.format.manifest import (
    CARD,
    CROISSANT,
    FAILURES,
    MANIFEST,
    ManifestError,
    config_fields,
    has_manifest,
    read_manifest,
)
from builders.format.parquet import check_parquet_copy, parquet_configs, parquet_records
from builders.format.reader import decode_sample
from builders.format.splits import assign_split
from builders.format.tario import ShardError, iter_tar_samples, sha256_file


class _Fields(frozenset):
    """The decodable fields of a config; ``declared``: all the manifest lists."""

    declared: frozenset = frozenset()


def _croissant_problems(path: Path, manifest) -> list[str]:
    """croissant.json exists, is what the manifest gives, and mlcroissant finds no error in it."""
    from builders.format.croissant import croissant_bytes, validate_croissant
    from builders.format.registry import get_release, release_names

    file = path / CROISSANT
    if not file.is_file():
        return [f"{CROISSANT}: missing (the release's Croissant metadata)"]
    if manifest.release not in release_names():
        return []
    if file.read_bytes() != croissant_bytes(get_release(manifest.release), manifest):
        return [f"{CROISSANT}: does not match manifest.json (edited, or from another build)"]
    return validate_croissant(file)


def _stray_files(path: Path, listed: set[str]) -> list[str]:
    allowed = listed | {CARD, CROISSANT, MANIFEST, FAILURES}
    problems = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        for p in sorted(entry.rglob("*")) if entry.is_dir() and not entry.is_symlink() else [entry]:
            rel = p.relative_to(path).as_posix()
            if p.is_dir() and not p.is_symlink():
                continue
            if rel not in allowed:
                kind = "link" if p.is_symlink() else "file"
                problems.append(f"{rel}: stray {kind}, not listed in manifest.json")
            elif p.is_symlink():
                problems.append(f"{rel}: is a symbolic link, not a file")
    return problems


def _members_problems(rel: str, key: str, suffixes: list[str], fields, config: str) -> list[str]:
    out = []
    if len(set(suffixes)) != len(suffixes):
        out.append(f"{rel}: sample {key!r} has a member twice")
    have = set(suffixes)
    for extra in sorted(have - fields):
        why = (f"is not a declared field of config {config}" if decodable(extra) or extra not in fields.declared
               else "has an extension densegen does not decode (refused, never decoded)")
        out.append(f"{rel}: sample {key!r} member {key}.{extra} {why}")
    for missing in sorted(fields - have):
        out.append(f"{rel}: sample {key!r} lacks {missing}")
    return out


def _verify_shard(path: Path, sh: dict, fields, config: str, state: dict) -> list[str]:
    """Problems of one listed shard (reads it once)."""
    rel, problems = sh["path"], []
    shard = path / rel
    if shard.is_symlink() or not shard.is_file():
        return [f"{rel}: listed in manifest.json but missing"] if not shard.is_symlink() else []
    size = shard.stat().st_size
    if size != sh["bytes"]:
        problems.append(f"{rel}: {size} bytes, manifest says {sh['bytes']}")
    digest = sha256_file(shard)
    if digest != sh["sha256"]:
        problems.append(f"{rel}: sha256 {digest[:16]}... does not match manifest {sh['sha256'][:16]}...")
    split, n = sh["split"], 0
    seen_fields = fields
    try:
        for key, members in iter_tar_samples(shard):
            n += 1
            suffixes = [s for s, _ in members]
            if seen_fields is None:  # older manifest without fields: samples must agree with the first
                seen_fields = _Fields(s for s in suffixes if decodable(s))
                seen_fields.declared = frozenset(suffixes)
            problems += _members_problems(rel, key, suffixes, seen_fields, config)
            if (config, key) in state["keys"]:
                problems.append(f"{rel}: sample {key!r} also in {state['keys'][(config, key)]}")
            state["keys"][(config, key)] = rel
            meta = None
            for suffix, data in members:
                if suffix not in seen_fields:
                    continue  # reported above; never decoded
                try:
                    value = decode_value(suffix, data)
                except ValueError as err:
                    problems.append(f"{rel}: sample {key!r}: {err}")
                    continue
                if suffix == "meta.json":
                    meta = value
            ik = meta.get("inchikey") if isinstance(meta, dict) else None
            if not isinstance(ik, str) or not ik:
                problems.append(f"{rel}: sample {key!r} has no inchikey")
                continue
            if assign_split(ik) != split:
                problems.append(f"{rel}: sample {key!r} ({ik}) belongs to split {assign_split(ik)}, found in {split}")
            first = state["split_of_identity"].setdefault(ik[:14], split)
            if first != split:
                problems.append(f"{rel}: molecule {ik} is in both {first} and {split}")
    except ShardError as err:
        problems.append(f"{rel}: unreadable shard ({str(err).removeprefix(str(shard) + ': ')})")
        return problems
    if n != sh["count"]:
        problems.append(f"{rel}: {n} samples, manifest says {sh['count']}")
    state["counts"][(config, split)] = state["counts"].get((config, split), 0) + n
    return problems


def _non_file_members(path: Path, rel: str) -> list[str]:
    """Members that are not regular files (links, folders, devices): never written by densegen."""
    import tarfile

    try:
        with tarfile.open(path / rel, mode="r:") as tar:
            return [f"{rel}: member {m.name!r} is not a regular file" for m in tar if not m.isfile()]
    except (tarfile.TarError, OSError, EOFError):
        return []  # reported by the full read


def verify_release(path: Path) -> list[str]:
    """Check a release folder; returns a list of problems (empty when all is well).

    Checks: the card (README.md) and manifest.json exist and the manifest has the right
    shape (:func:`builders.format.manifest.read_manifest`); every declared field decodes with the safe
    table (no ``.pyd``/``.pth``/...); no file in the folder is unlisted (see the module
    docstring for what is allowed); every listed shard exists with the recorded sha256, size and
    sample count; every sample has exactly its config's fields (members) and they decode; every
    sample has a ``meta.json`` with an ``inchikey``, sits in the split the split function gives
    it, and no identity or key appears in two splits or twice; split totals match.
    """
    path = Path(path)
    try:
        return _verify(path)
    except Exception as err:  # noqa: BLE001 - verify reports, never crashes
        return [f"{path}: verify stopped: {type(err).__name__}: {err}"]


def _verify(path: Path) -> list[str]:
    if not path.is_dir():
        return [f"{path}: not a folder"]
    problems: list[str] = []
    if not has_manifest(path):
        return [f"{path}: no manifest.json (not a densegen release folder?)"]
    try:
        manifest = read_manifest(path)
    except (ManifestError, OSError) as err:
        return [str(err)]
    if not (path / CARD).is_file():
        problems.append(f"{CARD}: missing (the release's dataset card)")
    problems += _croissant_problems(path, manifest)

    configs = manifest.configs or {"default": {}}
    fields_of = {}
    for name in configs:
        fields = config_fields(manifest, name)
        fields_of[name] = fields
        for f in sorted(fields or ()):
            if not decodable(f):
                problems.append(f"{MANIFEST}: config {name} declares field {f!r}, which densegen does not decode "
                                f"(.npy, .txt, .json, optionally .zst)")
        if fields is not None:
            fields_of[name] = _Fields(f for f in fields if decodable(f))
            fields_of[name].declared = fields

    shards = manifest.shard_records
    problems += _stray_files(path, {sh["path"] for sh in shards} | {r["path"] for r in parquet_records(manifest)})

    state = {"keys": {}, "counts": {}, "split_of_identity": {}}
    for sh in shards:
        problems += _non_file_members(path, sh["path"]) if (path / sh["path"]).is_file() else []
        problems += _verify_shard(path, sh, fields_of.get(sh["config"]), sh["config"], state)
    for config in {sh["config"] for sh in shards}:
        for split in manifest.split_names:
            n, want = state["counts"].get((config, split), 0), manifest.samples(split)
            if n != want:
                problems.append(f"{MANIFEST}: config {config}, split {split}: {n} samples, manifest says {want}")
    for config in parquet_configs(manifest):
        for split in manifest.split_names:
            problems += _verify_parquet(path, manifest, config, split, shards)
    return problems


def _verify_parquet(path: Path, manifest, config: str, split: str, shards: list[dict]) -> list[str]:
    """Problems of the Parquet copy of one config and split: its row total, each file, and its
    rows against the decoded samples of the config's shards of that split, in order."""
    recs = parquet_records(manifest, split, config)
    rows, want = sum(r["count"] for r in recs), manifest.samples(split)
    if rows != want:
        return [f"{MANIFEST}: Parquet copy of config {config}, split {split}: {rows} rows, manifest says {want}"]
    if not recs:
        return []
    tars = [sh for sh in shards if sh["config"] == config and sh["split"] == split]

    def samples():
        for sh in tars:
            for key, members in iter_tar_samples(path / sh["path"]):
                yield decode_sample(key, members, sh["path"])

    try:
        return check_parquet_copy(path, manifest, config, split, samples())
    except (ShardError, ValueError, OSError) as err:
        return [f"parquet/{config}/{split}: not compared with the shards, which do not read ({err})"]
