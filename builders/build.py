"""The build driver: inputs -> work units (resumable) -> shards, manifest, card, failures.

Layout while building (inside the release folder)::

    .build/params.json             parameters the work units were made with
    .build/units/unit-NNNNNN.tar   samples of one work unit (same encoding as shards)
    .build/units/unit-NNNNNN.json  its record: inputs, samples (key, split, inchikey), failures

A unit is done when its ``.json`` exists; both files are written atomically (tar first), so a
killed build resumes from the units it finished and redoes only the unit it was in. Samples
are seeded by (seed, key), never by worker or order, so any schedule gives the same bytes.
Finalizing routes samples to their split in input order and writes shards, ``failures.jsonl``,
``manifest.json`` and ``README.md``; then ``.build/units`` is removed (unless keep_work).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import card
from .encoding import encode_sample
from .executor import make_executor
from .failures import MoleculeFailure
from .provenance import PACKAGE_VERSION, git_commit, package_versions
from .spec import Input, ReleaseSpec
from .splits import SPLITS, assign_split, split_record
from .tario import iter_tar_samples, write_atomic, write_shard

MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"
FORMAT_VERSION = 1


class BuildError(Exception):
    """A build cannot start or finish (bad parameters, a foreign folder); nothing is lost."""


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to build one work unit (picklable)."""

    release: str
    params: dict
    seed: int
    index: int
    inputs: tuple[Input, ...]
    units_dir: str


def release_dir(root: Path, name: str) -> Path:
    """Where a release lives: ``<root>/densegen/<name>``."""
    return Path(root) / "densegen" / name


def unit_paths(units_dir: Path, index: int) -> tuple[Path, Path]:
    """(tar, json) paths of work unit ``index``."""
    stem = Path(units_dir) / f"unit-{index:06d}"
    return stem.with_suffix(".tar"), stem.with_suffix(".json")


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def run_unit(task: UnitTask) -> dict:
    """Build one work unit in this process; writes its tar and json, returns its record.

    Per-input failures (MoleculeFailure or any other exception) are recorded, never raised.
    """
    from .registry import get_release

    spec = get_release(task.release)
    samples, records, failures = [], [], []
    stage_seconds: Counter = Counter()
    for item in task.inputs:
        start = time.perf_counter()
        try:
            built = spec.process(item, task.params, task.seed)
            many = isinstance(built, list)
            outputs = built if many else [("", built)]
            encoded = []
            for suffix, fields in outputs:
                timings = fields.pop("_timings", {})
                for stage, seconds in timings.items():
                    if stage != "total":  # the driver times the whole molecule itself
                        stage_seconds[stage] += seconds
                inchikey = fields["meta"]["inchikey"]
                key = f"{item.key}-{suffix}" if many else item.key
                t_enc = time.perf_counter()
                members = encode_sample(fields)
                stage_seconds["write"] += time.perf_counter() - t_enc
                encoded.append((key, members, {"key": key, "split": assign_split(inchikey), "inchikey": inchikey}))
        except MoleculeFailure as err:
            failures.append({"key": item.key, "input": item.text, "source": item.source,
                             "stage": err.stage, "reason": err.reason})
            continue
        except Exception as err:  # a bug or a library error on one molecule must not stop the build
            last = traceback.extract_tb(err.__traceback__)[-1]
            failures.append({"key": item.key, "input": item.text, "source": item.source, "stage": "internal",
                             "reason": f"{type(err).__name__}: {err} ({Path(last.filename).name}:{last.lineno})"})
            continue
        finally:
            stage_seconds["total"] += time.perf_counter() - start
        for key, members, record in encoded:
            samples.append((key, members))
            records.append(record)
    tar_path, json_path = unit_paths(Path(task.units_dir), task.index)
    t_write = time.perf_counter()
    info = write_shard(tar_path, samples)
    stage_seconds["write"] += time.perf_counter() - t_write
    record = {"index": task.index, "inputs": [i.key for i in task.inputs], "samples": records,
              "failures": failures, "tar_sha256": info["sha256"],
              "stage_seconds": {k: round(v, 6) for k, v in sorted(stage_seconds.items())}}
    write_atomic(json_path, _json_bytes(record))
    return record


def _load_unit(units_dir: Path, index: int, expected_keys: list[str]) -> dict | None:
    """A finished unit's record if it matches the expected inputs, else None (redo it)."""
    tar_path, json_path = unit_paths(units_dir, index)
    if not json_path.exists() or not tar_path.exists():
        return None
    try:
        record = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("inputs") == expected_keys else None


def _inputs_digest(inputs: list[Input]) -> str:
    h = hashlib.sha256()
    for item in inputs:
        h.update(f"{item.key}\t{item.source}\t{item.text}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _clear_stale_tmp(folder: Path) -> None:
    for tmp in folder.rglob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


def build_release(spec: ReleaseSpec, root: Path, params: dict, seed: int = 0, limit: int | None = None,
                  workers: int = 1, keep_work: bool = False, progress: bool = True, executor=None,
                  unit_size: int | None = None) -> dict:
    """Build (or resume) a release under ``<root>/densegen/<name>``.

    Args:
        spec: the release.
        root: folder that holds ``densegen/``.
        params: release-specific parameters (JSON-serializable; recorded in the manifest).
        seed: the build seed; with the same inputs and seed the shards are byte-identical.
        limit: use only the first ``limit`` inputs (in the release's input order).
        workers: local worker processes (ignored if ``executor`` is given).
        keep_work: keep ``.build/units`` after finishing.
        progress: show a progress bar.
        executor: an :class:`builders.executor.Executor` to use instead of a local pool.
        unit_size: inputs per work unit (resume granularity; default: the release's). It does
            not change the shards, only how much work a kill can lose.
    Returns:
        The manifest (also written to ``manifest.json``).
    Raises:
        BuildError: if the folder holds a build made with other parameters.
    """
    params = spec.resolve_params(params)
    out = release_dir(root, spec.name)
    work = out / ".build"
    units_dir = work / "units"
    inputs, rejected = spec.load_inputs(params)
    if limit is not None:
        if limit < 0:
            raise BuildError(f"--limit must be >= 0, got {limit}")
        inputs = inputs[:limit]
    unit_size = int(unit_size or spec.unit_size)
    if unit_size < 1:
        raise BuildError(f"unit size must be >= 1, got {unit_size}")
    full_params = {"release": spec.name, "seed": seed, "limit": limit, "unit_size": unit_size,
                   "samples_per_shard": spec.samples_per_shard, **params}
    identity = {"params": full_params, "inputs_sha256": _inputs_digest(inputs), "builder_version": PACKAGE_VERSION}

    manifest_path = out / MANIFEST
    if manifest_path.exists() and not (work / "params.json").exists():
        old = json.loads(manifest_path.read_text())
        if old.get("build_identity") == identity:
            if progress:
                print(f"{spec.name}: already built at {out} with these parameters; nothing to do")
            return old
    params_path = work / "params.json"
    if params_path.exists():
        old = json.loads(params_path.read_text())
        if old != identity:  # parameters, builder version or the inputs themselves changed
            changed = sorted(k for k in set(old["params"]) | set(full_params)
                             if old["params"].get(k) != full_params.get(k))
            if old.get("inputs_sha256") != identity["inputs_sha256"]:
                changed.append("inputs")
            raise BuildError(f"{out} holds an unfinished build with other parameters ({', '.join(changed) or 'builder version'}); "
                             f"finish it with the same options or delete {work}")
    else:
        write_atomic(params_path, _json_bytes(identity))
    units_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_tmp(out)

    n_units = (len(inputs) + unit_size - 1) // unit_size
    chunks = [tuple(inputs[i * unit_size:(i + 1) * unit_size]) for i in range(n_units)]
    records: dict[int, dict] = {}
    for i, chunk in enumerate(chunks):
        rec = _load_unit(units_dir, i, [c.key for c in chunk])
        if rec is not None:
            records[i] = rec
    todo = [UnitTask(spec.name, params, seed, i, chunks[i], str(units_dir)) for i in range(n_units) if i not in records]

    started = time.perf_counter()
    bar = tqdm(total=len(inputs), initial=sum(len(chunks[i]) for i in records), unit="mol",
               desc=f"build {spec.name}", disable=not progress, dynamic_ncols=True)
    own_executor = executor is None
    executor = executor or make_executor(min(workers, max(1, len(todo))))
    try:
        for _, record in executor.map_unordered(run_unit, todo):
            records[record["index"]] = record
            bar.update(len(record["inputs"]))
            bar.set_postfix(ok=sum(len(r["samples"]) for r in records.values()),
                            failed=sum(len(r["failures"]) for r in records.values()))
    finally:
        bar.close()
        if own_executor:
            executor.close()
    build_seconds = time.perf_counter() - started

    manifest = finalize(spec, out, chunks, records, rejected, full_params, identity, build_seconds)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def finalize(spec: ReleaseSpec, out: Path, chunks, records: dict, rejected, full_params: dict,
             identity: dict, build_seconds: float) -> dict:
    """Write shards, failures, manifest and card from finished work units."""
    units_dir = out / ".build" / "units"
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    for i in range(len(chunks)):
        for rec in records[i]["samples"]:
            by_split[rec["split"]].append((i, rec["key"]))

    shards = []
    wanted = set()
    configs = spec.configs(full_params)
    fields: dict[str, set] = {cfg.name: set() for cfg in configs}  # member suffixes seen per config
    for cfg in configs:
        for split in SPLITS:
            entries = by_split[split]
            per = spec.samples_per_shard
            groups = [entries[j:j + per] for j in range(0, len(entries), per)]
            stem = spec.name if cfg.default else f"{spec.name}-{cfg.name}"
            for n, group in enumerate(groups):
                rel = Path(cfg.folder) / split / f"{stem}-{split}-{n:06d}.tar"
                wanted.add(rel.as_posix())
                info = write_shard(out / rel, _recording_fields(_members_for(units_dir, group, cfg.exclude),
                                                                fields[cfg.name], cfg.name))
                shards.append({"path": rel.as_posix(), "config": cfg.name, "split": split, "sha256": info["sha256"],
                               "bytes": info["bytes"], "count": info["count"]})
    for folder in {cfg.folder for cfg in configs} | {"data"}:
        if (out / folder).exists():
            for old in (out / folder).rglob("*.tar"):
                if old.relative_to(out).as_posix() not in wanted:
                    old.unlink()

    failures = [{"key": None, "input": r.text, "source": r.source, "stage": r.stage, "reason": r.reason}
                for r in rejected]
    for i in range(len(chunks)):
        failures.extend(records[i]["failures"])
    write_atomic(out / FAILURES, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures).encode("utf-8"))

    stage_seconds: Counter = Counter()
    for rec in records.values():
        stage_seconds.update(rec.get("stage_seconds", {}))
    n_inputs = sum(len(c) for c in chunks) + len(rejected)
    manifest = {
        "format": "webdataset",
        "format_version": FORMAT_VERSION,
        "release": spec.name,
        "release_version": spec.version,
        "license": spec.license,
        "builder": {"package": "densegen", "version": PACKAGE_VERSION, "git_commit": git_commit(),
                    "packages": package_versions()},
        "parameters": full_params,
        "build_identity": identity,
        "split_function": split_record(),
        "inputs": {"count": n_inputs, "processed": sum(len(c) for c in chunks), "sha256": identity["inputs_sha256"]},
        "configs": {c.name: {"folder": c.folder, "default": c.default, "excluded_fields": sorted(c.exclude),
                             "fields": sorted(next(iter(fields[c.name])) if fields[c.name] else
                                              (k for k in spec.features(c.name, full_params) if not k.startswith("__"))),
                             "splits": {s: {"shards": sum(1 for sh in shards if sh["config"] == c.name and sh["split"] == s),
                                            "bytes": sum(sh["bytes"] for sh in shards if sh["config"] == c.name and sh["split"] == s)}
                                        for s in SPLITS}} for c in configs},
        "splits": {s: {"samples": len(by_split[s]),
                       "shards": sum(1 for sh in shards if sh["split"] == s and sh["config"] == configs[0].name),
                       "bytes": sum(sh["bytes"] for sh in shards if sh["split"] == s and sh["config"] == configs[0].name)}
                   for s in SPLITS},
        "shards": shards,
        "failures": {"total": len(failures), "by_stage": dict(sorted(Counter(f["stage"] for f in failures).items())),
                     "file": FAILURES},
        "timing": {"build_seconds_this_run": round(build_seconds, 3),
                   "stage_cpu_seconds": {k: round(v, 3) for k, v in sorted(stage_seconds.items())}},
    }
    write_atomic(out / MANIFEST, _json_bytes(manifest))
    write_atomic(out / "README.md", card.render_card(spec, manifest).encode("utf-8"))
    return manifest


def _recording_fields(samples, seen: set, config: str):
    """Pass (key, members) through, adding each sample's member-suffix set to ``seen``.

    Every sample of a config must have the same members (the ``datasets`` WebDataset reader
    needs it, and readers check samples against the manifest's ``fields``).

    Raises:
        BuildError: naming the sample whose members differ from the earlier samples'.
    """
    for key, members in samples:
        names = frozenset(sfx for sfx, _ in members)
        if seen and names not in seen:
            raise BuildError(f"config {config}: sample {key!r} has members {sorted(names)}, "
                             f"others have {sorted(next(iter(seen)))}")
        seen.add(names)
        yield key, members


def _members_for(units_dir: Path, group, exclude=frozenset()):
    """Yield (key, members) for the (unit index, key) entries of one shard, reading unit tars;
    members of fields in ``exclude`` are left out."""
    by_unit: dict[int, list[str]] = {}
    for unit, key in group:
        by_unit.setdefault(unit, []).append(key)
    for unit in sorted(by_unit):
        keys = set(by_unit[unit])
        tar_path, _ = unit_paths(units_dir, unit)
        for key, members in iter_tar_samples(tar_path):
            if key in keys:
                yield key, [(sfx, data) for sfx, data in members if sfx.split(".", 1)[0] not in exclude]


def summary_line(manifest: dict, out: Path) -> str:
    """One line saying what a build produced."""
    s = manifest["splits"]
    n = sum(v["samples"] for v in s.values())
    size = sum(sh["bytes"] for sh in manifest["shards"])
    return (f"{manifest['release']}: {n} samples (train {s['train']['samples']}, valid {s['valid']['samples']}, "
            f"test {s['test']['samples']}) in {len(manifest['shards'])} shards, {size / 1e6:.1f} MB; "
            f"{manifest['failures']['total']} failures; {manifest['timing']['build_seconds_this_run']:.1f} s -> {out}")
