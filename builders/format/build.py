"""The build driver: inputs -> work units (resumable) -> shards, manifest, card, failures.

Layout while building (inside the release folder)::

    .build/params.json                 parameters, inputs hash and builder version of this build
    .build/units/unit-NNNNNN.tar       samples of one work unit (same encoding as shards)
    .build/units/unit-NNNNNN.json      its record: identity, inputs, samples (key, split,
                                       inchikey), failures, the tar's sha256
    .build/units/unit-NNNNNN.started   while a unit runs: the key of each input as it starts

A unit is done when its ``.json`` exists; both files are written atomically (tar first), so a
killed build resumes from the units it finished and redoes only the unit it was in. Every
unit record carries the hash of the parameters and of its own inputs it was made with
(:func:`unit_identity`), and a unit whose hash or tar does not match is redone, whatever
state ``.build/`` is in (a half-removed ``.build/`` from another build, say). Samples are
seeded by (seed, key), never by worker or order, so any schedule gives the same bytes.

One build at a time per release folder: a second build of the same release into the same
root refuses with a message while the first holds ``<root>/densegen/.<release>.lock``.

An input whose processing kills its worker process (a segfault in a native library, the
OOM killer) is found from the ``.started`` journal and retried in a fresh worker, up to
``MAX_ATTEMPTS`` times in all; then it is recorded as a failure (stage ``worker``) and the
rest of its unit is built without it.

Finalizing routes samples to their split in input order and writes shards, ``failures.jsonl``,
``manifest.json`` and ``README.md``; then ``.build/`` is removed (unless keep_work).
"""
from __future__ import annotations

import errno
import hashlib
import json
import shutil
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from builders.format import card
from builders.format.croissant import croissant_bytes
from builders.format.encoding import encode_sample
from builders.format.executor import Executor, ProcessPoolExecutor, SerialExecutor, WorkerDied
from builders.format.failures import MoleculeFailure
from builders.format.fields import sample_problems
from builders.format.manifest import CARD, CROISSANT, FAILURES, MANIFEST, WORK_DIR, Manifest, release_dir
from builders.format.parquet import PARQUET_DIR, parquet_features, parquet_path, sample_row, write_parquet_file
from builders.format.provenance import PACKAGE_VERSION, git_commit, package_versions
from builders.format.registry import import_string_of
from builders.format.spec import Built, Input, ReleaseSpec
from builders.format.splits import SPLITS, assign_split, split_record
from builders.format.tario import iter_tar_samples, sha256_file, tar_bytes, write_atomic, write_shard
from builders.format.threads import DEFAULT_THREADS, limited_threads

# 2: configs[*].fields (every sample's members), exact shard lists in the card's data_files
FORMAT_VERSION = 2
MAX_ATTEMPTS = 3  # tries of an input whose processing kills its worker (the first and 2 retries)
MAX_SEED = 2**63 - 1
# OS errors that say the machine, not the molecule, is in trouble: they stop the build (with
# everything done so far kept) instead of being recorded as a failure of every molecule
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE,
                                errno.ENOMEM, errno.EIO})


class BuildError(Exception):
    """A build cannot start or finish (bad parameters, a foreign folder); nothing is lost."""


class SampleSchemaError(BuildError):
    """A sample that ``process`` made does not match the release's field table (a bug in the
    release): the build stops, naming the sample and the field; finished work units are kept."""


def field_table(spec: ReleaseSpec, params: dict) -> list:
    """Every field a sample of ``spec`` built with ``params`` holds: the union of its configs'
    field tables (a sample is checked before it is split into configs)."""
    table = {}
    for config in spec.configs(params):
        for field in spec.fields(config.name, params):
            table.setdefault(field.name, field)
    return list(table.values())


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to build one work unit (picklable).

    Attributes:
        spec: import string ``"module:Class"`` of the release (so unregistered releases work too).
        identity: :func:`unit_identity` of this unit, stored in its record.
        skip: input key -> failure reason, for inputs not to process again (they killed
            their worker ``MAX_ATTEMPTS`` times).
        threads: BLAS/OpenMP threads the unit runs with (``builders.format.threads``).
    """

    spec: str
    params: dict
    seed: int
    index: int
    inputs: tuple[Input, ...]
    units_dir: str
    identity: str
    skip: dict = field(default_factory=dict)
    threads: int | None = DEFAULT_THREADS


def unit_paths(units_dir: Path, index: int) -> tuple[Path, Path]:
    """(tar, json) paths of work unit ``index``."""
    stem = Path(units_dir) / f"unit-{index:06d}"
    return stem.with_suffix(".tar"), stem.with_suffix(".json")


def journal_path(units_dir: Path, index: int) -> Path:
    """The ``.started`` journal of work unit ``index`` (input keys, one a line, as they start)."""
    return Path(units_dir) / f"unit-{index:06d}.started"


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def unit_identity(build_identity: dict, inputs) -> str:
    """sha256 naming what a unit is made from: the build's identity (parameters, all inputs'
    hash, builder version) and the unit's own inputs (key, source, text)."""
    h = hashlib.sha256(_json_bytes(build_identity))
    h.update(_inputs_digest(inputs).encode("ascii"))
    return h.hexdigest()


def _is_environment_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS


def run_unit(task: UnitTask) -> dict:
    """Build one work unit in this process; writes its tar and json, returns its record.

    Per-input failures (MoleculeFailure or any other exception) are recorded, never raised,
    except OS errors of the machine itself (disk full, read-only file system, out of file
    handles: :data:`ENVIRONMENT_ERRNOS`), which stop the unit and reach the driver. The
    ``.started`` journal next to the unit tells the driver which input a dead worker was on.
    """
    units_dir = Path(task.units_dir)
    with open(journal_path(units_dir, task.index), "w", encoding="utf-8") as journal:
        data, record = _build_unit(task, journal)
    write_unit(units_dir, task.index, data, record)
    journal_path(units_dir, task.index).unlink(missing_ok=True)
    return record


def run_unit_remote(task: UnitTask) -> dict:
    """Build one work unit on a worker that shares no file system with the driver (Dask):
    nothing is written here; returns ``{"tar": unit tar bytes, "record": its record}`` for the
    driver to write with :func:`write_unit`."""
    import io

    data, record = _build_unit(task, io.StringIO())
    return {"tar": data, "record": record}


def write_unit(units_dir: Path, index: int, data: bytes, record: dict) -> None:
    """Write a finished unit atomically: its tar, then its json record (the json is what marks
    the unit done, so a kill between the two only redoes the unit)."""
    tar_path, json_path = unit_paths(units_dir, index)
    write_atomic(tar_path, data)
    write_atomic(json_path, _json_bytes(record))


def _build_unit(task: UnitTask, journal) -> tuple[bytes, dict]:
    """Process the unit's inputs with the task's thread limit: (unit tar bytes, record)."""
    with limited_threads(task.threads):
        return _process_inputs(task, journal)


def _process_inputs(task: UnitTask, journal) -> tuple[bytes, dict]:
    from builders.format.registry import release_from_import_string

    spec = release_from_import_string(task.spec)
    table = field_table(spec, task.params)
    samples, records, failures = [], [], []
    stage_seconds: Counter = Counter()
    for item in task.inputs:
        if item.key in task.skip:
            failures.append({"key": item.key, "input": item.text, "source": item.source,
                             "stage": "worker", "reason": task.skip[item.key]})
            continue
        journal.write(item.key + "\n")
        journal.flush()  # the process may die in native code: the driver reads this to know where
        start = time.process_time()
        try:
            built = Built.of(spec.process(item, task.params, task.seed))
            many = isinstance(built.samples, list)
            outputs = built.samples if many else [("", built.samples)]
            for stage, seconds in built.timings.items():
                if stage != "total":  # the driver times the whole molecule itself
                    stage_seconds[stage] += seconds
            encoded = []
            for suffix, fields in outputs:
                key = f"{item.key}-{suffix}" if many else item.key
                problems = sample_problems(table, fields)
                if problems:
                    raise SampleSchemaError(f"{spec.name}: sample {key!r} does not match the release's field "
                                            f"table: {'; '.join(problems)}")
                inchikey = fields["meta"]["inchikey"]
                t_enc = time.process_time()
                members = encode_sample(fields)
                stage_seconds["write"] += time.process_time() - t_enc
                encoded.append((key, members, {"key": key, "split": assign_split(inchikey), "inchikey": inchikey}))
        except MoleculeFailure as err:
            failures.append({"key": item.key, "input": item.text, "source": item.source,
                             "stage": err.stage, "reason": err.reason})
            continue
        except SampleSchemaError:
            raise  # a bug in the release, not in the molecule: stop the build
        except Exception as err:  # a bug or a library error on one molecule must not stop the build
            if _is_environment_error(err):
                raise
            last = traceback.extract_tb(err.__traceback__)[-1]
            failures.append({"key": item.key, "input": item.text, "source": item.source, "stage": "internal",
                             "reason": f"{type(err).__name__}: {err} ({Path(last.filename).name}:{last.lineno})"})
            continue
        finally:
            stage_seconds["total"] += time.process_time() - start
        for key, members, record in encoded:
            samples.append((key, members))
            records.append(record)
    t_write = time.process_time()
    data, _ = tar_bytes(samples)
    stage_seconds["write"] += time.process_time() - t_write
    record = {"index": task.index, "identity": task.identity, "inputs": [i.key for i in task.inputs],
              "samples": records, "failures": failures, "tar_sha256": hashlib.sha256(data).hexdigest(),
              "stage_seconds": {k: round(v, 6) for k, v in sorted(stage_seconds.items())}}
    return data, record


def _load_unit(units_dir: Path, index: int, identity: str) -> dict | None:
    """A finished unit's record if it was made from exactly these parameters and inputs and
    its tar is the one it recorded, else None (redo it)."""
    tar_path, json_path = unit_paths(units_dir, index)
    try:
        record = json.loads(json_path.read_text())
        if not isinstance(record, dict) or record.get("identity") != identity:
            return None
        if sha256_file(tar_path) != record.get("tar_sha256"):
            return None
    except (OSError, ValueError):
        return None
    return record


def _inputs_digest(inputs) -> str:
    h = hashlib.sha256()
    for item in inputs:
        h.update(f"{item.key}\t{item.source}\t{item.text}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _clear_stale_tmp(folder: Path) -> None:
    for tmp in folder.rglob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


def _last_started(units_dir: Path, index: int) -> str | None:
    """The key of the input a unit's worker was processing when it died (from its journal)."""
    try:
        lines = journal_path(units_dir, index).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


EXECUTORS = ("local", "dask")


def make_executor(workers: int, kind: str = "local", scheduler: str | None = None,
                  in_flight: int | None = None) -> Executor:
    """The executor of a build.

    Args:
        workers: worker processes (``local``: serial for ``<= 1``; ``dask`` without a scheduler:
            the LocalCluster's worker processes).
        kind: ``"local"`` (this machine's process pool) or ``"dask"``.
        scheduler: (dask) address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``; None
            starts a ``distributed.LocalCluster``.
        in_flight: (dask) units queued on the cluster at once (default: twice its task threads).
    Raises:
        ValueError: an unknown kind, or a scheduler or in_flight given for the local pool.
        ModuleNotFoundError: dask without ``dask[distributed]`` installed, saying how to install it.
    """
    if kind == "dask":
        from builders.format.dask_executor import DaskExecutor

        return DaskExecutor(workers=workers, scheduler=scheduler, in_flight=in_flight)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None:
        raise ValueError("--scheduler needs --executor dask")
    if in_flight is not None:
        raise ValueError("--in-flight needs --executor dask")
    return SerialExecutor() if workers <= 1 else ProcessPoolExecutor(workers)


def build_lock(root: Path, name: str):
    """The lock that keeps two builds of release ``name`` out of one root: a
    ``filelock.FileLock`` on ``<root>/densegen/.<name>.lock`` (held by the OS, so a killed
    build never leaves it held)."""
    from filelock import FileLock

    path = Path(root) / "densegen" / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=0)


def build_release(spec: ReleaseSpec, root: Path, params: dict, seed: int = 0, limit: int | None = None,
                  workers: int = 1, keep_work: bool = False, progress: bool = True, executor=None,
                  unit_size: int | None = None, threads: int | None = DEFAULT_THREADS) -> "Manifest":
    """Build (or resume) a release under ``<root>/densegen/<name>``.

    Args:
        spec: the release.
        root: folder that holds ``densegen/``.
        params: release-specific parameters (JSON-serializable; recorded in the manifest).
        seed: the build seed, 0 <= seed < 2^63; with the same inputs and seed the shards are
            byte-identical.
        limit: use only the first ``limit`` inputs (in the release's input order).
        workers: local worker processes (ignored if ``executor`` is given).
        keep_work: keep ``.build/`` after finishing.
        progress: show a progress bar.
        executor: an :class:`builders.format.executor.Executor` to use instead of a local pool.
        unit_size: inputs per work unit (resume granularity; default: the release's). It does
            not change the shards, only how much work a kill can lose.
        threads: BLAS/OpenMP threads per work unit (default 1, whichever executor runs it;
            None: the libraries' own defaults). Keep it fixed to rebuild byte-identically.
    Returns:
        The manifest (also written to ``manifest.json``).
    Raises:
        BuildError: bad parameters, a folder holding an unfinished build with other
            parameters, or another build of the release running into the same root.
        OSError: the machine's own errors (disk full, ...); everything finished is kept and a
            rerun resumes.
    """
    from filelock import Timeout

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BuildError(f"--seed must be an integer from 0 to 2^63-1, got {seed!r}")
    if limit is not None and limit < 0:
        raise BuildError(f"--limit must be >= 0, got {limit}")
    if executor is None and workers < 1:
        raise BuildError(f"--workers must be >= 1, got {workers}")
    if unit_size is not None and unit_size < 1:
        raise BuildError(f"--unit-size must be >= 1, got {unit_size}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BuildError(f"--threads-per-worker must be an integer >= 1, got {threads!r}")
    lock = build_lock(root, spec.name)
    try:
        lock.acquire()
    except Timeout:
        raise BuildError(f"another build of {spec.name} is running into {release_dir(root, spec.name)} "
                         f"(it holds {lock.lock_file}); wait for it to finish or use another --root") from None
    try:
        return _build_locked(spec, root, params, seed, limit, workers, keep_work, progress, executor, unit_size,
                             threads)
    finally:
        lock.release()


def _build_locked(spec, root, params, seed, limit, workers, keep_work, progress, executor, unit_size,
                  threads) -> dict:
    params = spec.resolve_params(params)
    out = release_dir(root, spec.name)
    work = out / WORK_DIR
    units_dir = work / "units"
    inputs, rejected = spec.load_inputs(params)
    if limit is not None:
        inputs = inputs[:limit]
    unit_size = spec.unit_size if unit_size is None else int(unit_size)
    full_params = {"release": spec.name, "seed": seed, "limit": limit, "unit_size": unit_size,
                   "samples_per_shard": spec.samples_per_shard, "threads_per_worker": threads, **params}
    identity = {"params": full_params, "inputs_sha256": _inputs_digest(inputs), "builder_version": PACKAGE_VERSION}

    manifest_path = out / MANIFEST
    params_path = work / "params.json"
    if manifest_path.exists() and not params_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("build_identity") == identity:
            if progress:
                print(f"{spec.name}: already built at {out} with these parameters; nothing to do")
            return Manifest(old)
    if params_path.exists():
        try:
            old = json.loads(params_path.read_text())
        except (OSError, ValueError):
            old = None  # unreadable: nothing of it can be trusted, and units check themselves
        if isinstance(old, dict) and old != identity:  # parameters, builder version or the inputs changed
            old_params = old.get("params") if isinstance(old.get("params"), dict) else {}
            changed = sorted(k for k in set(old_params) | set(full_params) if old_params.get(k) != full_params.get(k))
            if old.get("inputs_sha256") != identity["inputs_sha256"]:
                changed.append("inputs")
            raise BuildError(f"{out} holds an unfinished build with other parameters ({', '.join(changed) or 'builder version'}); "
                             f"finish it with the same options or delete {work}")
        if old is None:
            write_atomic(params_path, _json_bytes(identity))
    else:
        write_atomic(params_path, _json_bytes(identity))
    units_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_tmp(out)

    n_units = (len(inputs) + unit_size - 1) // unit_size
    chunks = [tuple(inputs[i * unit_size:(i + 1) * unit_size]) for i in range(n_units)]
    identities = [unit_identity(identity, chunk) for chunk in chunks]
    records: dict[int, dict] = {}
    for i in range(n_units):
        rec = _load_unit(units_dir, i, identities[i])
        if rec is not None:
            records[i] = rec
    spec_target = import_string_of(spec)
    attempts: Counter = Counter()  # input key -> times its worker died on it
    skip: dict[int, dict] = {}     # unit -> {input key: failure reason}

    def task(i: int) -> UnitTask:
        return UnitTask(spec_target, params, seed, i, chunks[i], str(units_dir), identities[i], dict(skip.get(i, {})),
                        threads)

    started = time.perf_counter()
    bar = tqdm(total=len(inputs), initial=sum(len(chunks[i]) for i in records), unit="mol",
               desc=f"build {spec.name}", disable=not progress, dynamic_ncols=True)
    own_executor = executor is None
    todo = [i for i in range(n_units) if i not in records]
    executor = executor or make_executor(min(workers, max(1, len(todo))))
    remote = not executor.shares_filesystem  # workers elsewhere: they send units back, the driver writes them
    try:
        while todo:  # a round per wave of retries after worker deaths
            tasks = [task(i) for i in todo]
            todo = []
            for pos, result in executor.map_unordered(run_unit_remote if remote else run_unit, tasks):
                index = tasks[pos].index
                if isinstance(result, WorkerDied):
                    todo.append(index)
                    _note_worker_death(units_dir, index, chunks[index], result, attempts, skip, bar)
                    continue
                if remote:
                    write_unit(units_dir, index, result["tar"], result["record"])
                    result = result["record"]
                records[index] = result
                bar.update(len(result["inputs"]))
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


def _note_worker_death(units_dir: Path, index: int, chunk, died: WorkerDied, attempts: Counter,
                       skip: dict, bar) -> None:
    """Blame the input a dead worker was on (its unit's journal); after MAX_ATTEMPTS deaths on
    it, mark it to be recorded as a failure instead of processed."""
    key = _last_started(units_dir, index)
    if key is None or key not in {c.key for c in chunk}:  # died before its first input: not a molecule's fault
        attempts[f"unit {index}"] += 1
        if attempts[f"unit {index}"] >= MAX_ATTEMPTS:
            raise BuildError(f"worker processes {died.describe()} {MAX_ATTEMPTS} times on work unit {index}, before "
                             f"any input or on an executor that cannot say which input (look at the machines' "
                             f"memory and limits, or rerun with the local pool, which names the input)")
        return
    attempts[key] += 1
    if attempts[key] >= MAX_ATTEMPTS:
        skip.setdefault(index, {})[key] = (f"the worker process {died.describe()} while processing this input, "
                                           f"in {attempts[key]} attempts")
    bar.write(f"worker {died.describe()} on input {key} (attempt {attempts[key]} of {MAX_ATTEMPTS})")


def finalize(spec: ReleaseSpec, out: Path, chunks, records: dict, rejected, full_params: dict,
             identity: dict, build_seconds: float) -> dict:
    """Write shards, failures, manifest and card from finished work units."""
    units_dir = out / WORK_DIR / "units"
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
    parquet = _write_parquet_copy(spec, out, units_dir, by_split, full_params, wanted)
    for folder, pattern in [*((cfg.folder, "*.tar") for cfg in configs), ("data", "*.tar"),
                            (PARQUET_DIR, "*.parquet")]:
        if (out / folder).exists():
            for old in (out / folder).rglob(pattern):
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
    manifest = Manifest.assemble(
        release=spec.name, release_version=spec.version, license=spec.license, format_version=FORMAT_VERSION,
        builder={"package": "densegen", "version": PACKAGE_VERSION, "git_commit": git_commit(),
                 "packages": package_versions()},
        parameters=full_params, build_identity=identity, split_function=split_record(),
        inputs={"count": n_inputs, "processed": sum(len(c) for c in chunks), "sha256": identity["inputs_sha256"]},
        configs=[{"name": c.name, "folder": c.folder, "default": c.default, "excluded_fields": c.exclude,
                  "fields": next(iter(fields[c.name])) if fields[c.name] else
                  [k for k in spec.features(c.name, full_params) if not k.startswith("__")]} for c in configs],
        split_samples={s: len(by_split[s]) for s in SPLITS}, shards=shards, failures=failures,
        build_seconds=build_seconds, stage_cpu_seconds=dict(stage_seconds), parquet=parquet)
    write_atomic(out / MANIFEST, _json_bytes(manifest))
    write_atomic(out / CARD, card.render_card(spec, manifest).encode("utf-8"))
    write_atomic(out / CROISSANT, croissant_bytes(spec, manifest))
    return manifest


def _write_parquet_copy(spec: ReleaseSpec, out: Path, units_dir: Path, by_split: dict, params: dict,
                        wanted: set) -> list[dict]:
    """Write the Parquet copy of the configs ``spec.parquet_config_names`` names: the same
    samples as their shards, in the same order, ``spec.parquet_rows_per_file`` rows a file.
    Adds the paths to ``wanted``; returns the manifest records."""
    from builders.format.reader import decode_sample

    records = []
    names = set(spec.parquet_config_names(params))
    for cfg in (c for c in spec.configs(params) if c.name in names):
        features = parquet_features(spec.fields(cfg.name, params))
        stem = spec.name if cfg.default else f"{spec.name}-{cfg.name}"
        per = spec.parquet_rows_per_file
        for split in SPLITS:
            entries = by_split[split]
            for n, j in enumerate(range(0, len(entries), per)):
                rel = parquet_path(cfg.name, split, stem, n)
                rows = [sample_row(decode_sample(key, members), features)
                        for key, members in _members_for(units_dir, entries[j:j + per], cfg.exclude)]
                info = write_parquet_file(out / rel, rows, features)
                wanted.add(rel)
                records.append({"path": rel, "config": cfg.name, "split": split, **info})
    return records


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


def summary_line(manifest: Manifest, out: Path) -> str:
    """One line saying what a build produced."""
    m = manifest
    return (f"{m.release}: {m.total_samples} samples (train {m.samples('train')}, valid {m.samples('valid')}, "
            f"test {m.samples('test')}) in {len(m.shard_records)} shards, {m.total_bytes / 1e6:.1f} MB; "
            f"{m.failures_total} failures; {m.build_seconds:.1f} s -> {out}")
