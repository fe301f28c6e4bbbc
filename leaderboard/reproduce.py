"""``python -m leaderboard reproduce ENTRY.json``: re-run the model an entry names and compare.

An entry's results record what produced them: the model's import string and constructor
arguments, the sha256 of the weights it loaded, the task, variant, seeds, head and quick flag,
and the densegen commit. :func:`reproduce` runs ``benchmarks.run`` again with exactly those
options (in a fresh folder), checks that the model loaded the same weights, and compares:

* the new predictions with the stored ones, array by array, streamed (density grids are
  gigabytes): same names, shapes and dtype kinds, and every value within
  ``|new - old| <= PRED_ATOL + PRED_RTOL * |old|`` (float64); string and integer arrays equal;
* when the entry's predictions are not stored (too large to commit), the new file's sha256
  with the recorded one; if they differ, the per-seed metrics of the new run with the recorded
  ones within ``METRIC_RTOL`` relative (``METRIC_ATOL`` absolute).

A reproduction passes or raises :class:`~leaderboard.errors.Rejected` (``not-reproduced``,
``weights-differ``, ``not-registered``). The returned *mark* (schema
``densegen-reproduction-1``) says when, on what hardware, in how long, with which commit and
how close; ``--write-mark`` stores it as ``<entry>.reproduced.json`` next to the entry, where
the board shows it and ``validate`` checks it names the entry's results.

Reproducing executes the model's code, so only models of the project's registry
(``benchmarks.protocol.MODELS``) are run unless ``allow_import=True`` (``--allow-import``),
which a maintainer passes after installing and reading the submitter's package.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from .board import MARK_SUFFIX, mark_path  # noqa: F401  (the sidecar's name is the board's)
from builders.format.encoding import NpyHeaderError, read_npy_header

from .errors import Rejected

MARK_SCHEMA_VERSION = "densegen-reproduction-1"
PRED_RTOL = 1e-4      # relative tolerance on each predicted value
PRED_ATOL = 1e-6      # absolute tolerance on each predicted value (in the array's units)
METRIC_RTOL = 1e-6    # relative tolerance on each recomputed metric, when predictions are not stored
METRIC_ATOL = 1e-9
CHUNK_ELEMENTS = 1 << 22  # values compared per step (streaming: ~32 MB of float64 per side)

MARK_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "densegen reproduction mark",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "results_sha256", "date", "hardware", "wall_time_s", "densegen_commit",
                 "comparison", "predictions_sha256", "identical", "max_abs_diff", "metrics_max_rel_diff",
                 "tolerance"],
    "properties": {
        "schema_version": {"const": MARK_SCHEMA_VERSION},
        "results_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "date": {"type": "string", "pattern": r"^20[2-9][0-9]-[01][0-9]-[0-3][0-9]$"},
        "hardware": {"type": "object", "required": ["machine", "cpus"], "maxProperties": 20,
                     "properties": {"machine": {"type": "string", "minLength": 1, "maxLength": 100},
                                    "cpus": {"type": "integer", "minimum": 1, "maximum": 1_000_000}},
                     "additionalProperties": {"type": ["string", "integer", "null"], "maxLength": 200}},
        "wall_time_s": {"type": "number", "minimum": 0, "maximum": 1e8},
        "densegen_commit": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[0-9a-f]{40}(\\+dirty)?$"}]},
        "comparison": {"enum": ["predictions", "sha256", "metrics"]},
        "predictions_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "identical": {"type": "boolean"},
        "max_abs_diff": {"type": ["number", "null"], "minimum": 0},
        "metrics_max_rel_diff": {"type": ["number", "null"], "minimum": 0},
        "tolerance": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
    },
}


def rerun_argv(doc: dict, data_root, out_dir, progress: bool = False) -> list[str]:
    """The ``benchmarks.run`` arguments that redo the run a results document records: model
    (import string) and its arguments, task, variant, seed count, head, quick flag."""
    model = doc["model"]
    argv = ["--model", model["import"]]
    for key, value in sorted(model.get("arguments", {}).items()):
        argv += ["--model-arg", f"{key}={value}"]
    argv += ["--task", doc["task"]["name"]]
    if doc["task"].get("variant"):
        argv += ["--variant", doc["task"]["variant"]]
    argv += ["--seeds", str(len(doc["metrics"]["per_seed"]))]
    head = doc["protocol"].get("head")
    if head:
        argv += ["--head", str(head)]
    if doc["protocol"].get("quick"):
        argv.append("--quick")
    return argv + ["--data-root", str(data_root), "--out", str(out_dir)] + ([] if progress else ["--no-progress"])


def _npz_members(path: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}


def _member_header(zf: zipfile.ZipFile, name: str):
    f = zf.open(f"{name}.npy")
    try:
        shape, fortran, dtype = read_npy_header(f)
    except NpyHeaderError as err:
        raise Rejected("not-reproduced", f"array {name!r}: {err}") from None
    if dtype.hasobject:
        raise Rejected("not-reproduced", f"array {name!r} has dtype object")
    return f, shape, fortran, dtype


def _chunks(f, dtype: np.dtype, count: int):
    done = 0
    while done < count:
        n = min(CHUNK_ELEMENTS, count - done)
        data = f.read(n * dtype.itemsize)
        if len(data) != n * dtype.itemsize:
            raise Rejected("not-reproduced", "a predictions array is shorter than its header says")
        yield np.frombuffer(data, dtype=dtype)
        done += n


def compare_npz(new_path: Path, old_path: Path) -> float:
    """Largest ``|new - old|`` over every numeric array of two predictions files, streamed in
    chunks; raises when names, shapes or kinds differ or a value is out of tolerance.

    Raises:
        Rejected: ``not-reproduced`` naming the first array that differs.
    """
    new_members, old_members = _npz_members(new_path), _npz_members(old_path)
    if set(new_members) != set(old_members):
        raise Rejected("not-reproduced", f"the re-run wrote arrays {sorted(new_members)}, the entry stores "
                                         f"{sorted(old_members)}")
    worst = 0.0
    with zipfile.ZipFile(new_path) as zn, zipfile.ZipFile(old_path) as zo:
        for name in sorted(new_members):
            fn, shape_n, fort_n, dt_n = _member_header(zn, name)
            fo, shape_o, fort_o, dt_o = _member_header(zo, name)
            if shape_n != shape_o or fort_n != fort_o or dt_n.kind != dt_o.kind:
                raise Rejected("not-reproduced", f"array {name!r}: re-run {dt_n}{list(shape_n)}, stored "
                                                 f"{dt_o}{list(shape_o)}")
            count = math.prod(shape_n)
            numeric = dt_n.kind in "fiub"
            for a, b in zip(_chunks(fn, dt_n, count), _chunks(fo, dt_o, count)):
                if not numeric:
                    if not np.array_equal(a, b):
                        raise Rejected("not-reproduced", f"array {name!r} differs (non-numeric values)")
                    continue
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                diff = np.abs(a64 - b64)
                bad = diff > PRED_ATOL + PRED_RTOL * np.abs(b64)
                if bad.any() or not np.isfinite(diff).all():
                    i = int(np.argmax(bad | ~np.isfinite(diff)))
                    raise Rejected("not-reproduced", f"array {name!r} differs beyond |d| <= {PRED_ATOL:g} + "
                                                     f"{PRED_RTOL:g}|old|: re-run {a64[i]!r}, stored {b64[i]!r}")
                if diff.size:
                    worst = max(worst, float(diff.max()))
    return worst


def _metric_diff(new, old, path: str, out: list) -> float:
    """Largest relative difference of the numbers of two metric trees (appends mismatches)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            out.append(f"{path}: not an object in the re-run")
            return math.inf
        return max([_metric_diff(new.get(k), v, f"{path}.{k}", out) for k, v in old.items()] + [0.0])
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            out.append(f"{path}: lengths differ")
            return math.inf
        return max([_metric_diff(a, b, f"{path}[{i}]", out) for i, (a, b) in enumerate(zip(new, old))] + [0.0])
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        if not isinstance(new, (int, float)) or isinstance(new, bool):
            out.append(f"{path}: re-run {new!r}, recorded {old!r}")
            return math.inf
        if not math.isclose(new, old, rel_tol=METRIC_RTOL, abs_tol=METRIC_ATOL):
            out.append(f"{path}: re-run {new!r}, recorded {old!r}")
        return abs(new - old) / max(abs(old), 1e-300) if new != old else 0.0
    if new != old:
        out.append(f"{path}: re-run {new!r}, recorded {old!r}")
    return 0.0


def reproduce(doc: dict, stored: Path | None, data_root, work_dir=None, allow_import: bool = False,
              progress: bool = False) -> dict:
    """Re-run what a results document records and compare with it.

    Args:
        doc: the (checked) results document of an entry.
        stored: its predictions ``.npz`` on disk, or None when the entry does not store them.
        data_root: where the task's data lives (built on first use).
        work_dir: folder for the re-run's files (a temporary folder by default, removed after).
        allow_import: run a model that is not in ``benchmarks.protocol.MODELS``.
    Returns:
        the reproduction mark (see :data:`MARK_SCHEMA`).
    Raises:
        Rejected: ``not-registered``, ``weights-differ`` or ``not-reproduced``.
    """
    from benchmarks import run as bench_run
    from benchmarks.protocol import MODELS
    from benchmarks.results import git_commit, hardware
    from builders.format.tario import sha256_file

    from .safeio import canonical_json, sha256_hex

    target = doc["model"]["import"]
    if target not in MODELS.values() and not allow_import:
        raise Rejected("not-registered", f"model {target!r} is not in the project's registry; install and review "
                                         "its package, then reproduce with --allow-import")
    with tempfile.TemporaryDirectory(prefix="densegen-reproduce-", dir=work_dir) as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        argv = rerun_argv(doc, data_root, out, progress)
        try:
            status = bench_run.main(argv)
        except (OSError, RuntimeError) as err:
            raise Rejected("not-reproduced", f"the re-run failed: {type(err).__name__}: {err}") from None
        wall = time.perf_counter() - start
        written = sorted(out.glob("*.json"))
        if status != 0 or len(written) != 1:
            raise Rejected("not-reproduced", f"the re-run `python -m benchmarks.run {' '.join(argv)}` exited "
                                             f"{status} and wrote {len(written)} results file(s)")
        new = json.loads(written[0].read_text())
        if new["model"]["weights_sha256"] != doc["model"]["weights_sha256"]:
            raise Rejected("weights-differ", f"the re-run loaded weights {new['model']['weights_sha256']}, the entry "
                                             f"was made with {doc['model']['weights_sha256']}")
        new_pred = out / new["predictions"]["file"]
        digest = sha256_file(new_pred)
        identical = digest == doc["predictions"]["sha256"]
        mismatches: list[str] = []
        metric_diff = _metric_diff(new["metrics"]["per_seed"], doc["metrics"]["per_seed"], "per_seed", mismatches)
        max_abs = None
        if stored is not None:
            comparison = "predictions"
            max_abs = compare_npz(new_pred, Path(stored))
        elif identical:
            comparison = "sha256"
        else:
            comparison = "metrics"
            if mismatches:
                raise Rejected("not-reproduced", "the entry's predictions are not stored, the re-run's differ "
                                                 f"(sha256 {digest}) and so do its metrics: {'; '.join(mismatches[:3])}")
    return {
        "schema_version": MARK_SCHEMA_VERSION,
        "results_sha256": sha256_hex(canonical_json(doc)),
        "date": _dt.datetime.now(_dt.timezone.utc).date().isoformat(),
        "hardware": {k: v for k, v in hardware().items() if isinstance(v, (str, int)) and k != "torch_threads"},
        "wall_time_s": round(wall, 1),
        "densegen_commit": git_commit(),
        "comparison": comparison,
        "predictions_sha256": digest,
        "identical": identical,
        "max_abs_diff": max_abs,
        "metrics_max_rel_diff": None if math.isinf(metric_diff) else metric_diff,
        "tolerance": {"pred_rtol": PRED_RTOL, "pred_atol": PRED_ATOL, "metric_rtol": METRIC_RTOL,
                      "metric_atol": METRIC_ATOL},
    }


def write_mark(entry_path: Path, mark: dict) -> Path:
    """Store a mark next to its entry (atomically; a newer reproduction replaces an older one)."""
    import os

    path = mark_path(entry_path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(mark, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_mark(path: Path, entry: dict) -> dict:
    """Read and check a reproduction mark against the entry it sits next to.

    Raises:
        Rejected: ``bad-mark`` (unreadable, not the schema, or it names other results).
    """
    import jsonschema
    from jsonschema.exceptions import best_match

    from .safeio import MARK_MAX_BYTES, loads_strict, read_capped

    try:
        mark = loads_strict(read_capped(Path(path), MARK_MAX_BYTES, "reproduction mark"), "reproduction mark")
    except Rejected as err:
        raise Rejected("bad-mark", err.message) from None
    error = best_match(jsonschema.Draft202012Validator(MARK_SCHEMA).iter_errors(mark))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise Rejected("bad-mark", f"reproduction mark {Path(path).name} does not match {MARK_SCHEMA_VERSION} at "
                                   f"{where}: {error.message}")
    if mark["results_sha256"] != entry["results_sha256"]:
        raise Rejected("bad-mark", f"reproduction mark {Path(path).name} is for results {mark['results_sha256']}, "
                                   f"not this entry's {entry['results_sha256']}")
    return mark
