"""The checks a results document must pass (shared by ``submit`` and ``validate``): safe names,
the current task table (task, version, split hash, primary metric), no quick runs, enough
seeds, and every metric recomputed from the predictions by the task's own scorer.

Rescoring goes through the task object of the task table (``task.score`` and
``task.aggregate``), the same code the runner uses, with no per-task special cases.
"""
from __future__ import annotations

import math
import numbers
import re
import unicodedata

from benchmarks.task import Task
from benchmarks.tasks import TASKS, get_task

from .errors import Rejected

REL_TOL = 1e-9   # relative tolerance of a recomputed metric
ABS_TOL = 1e-12  # absolute tolerance (metrics that are exactly 0)
MODEL_NAME_MAX = 100


def check_safe_name(value: str, what: str) -> None:
    """Refuse names that could escape a folder or hide text: control/format characters, path
    separators, ``..``, absolute paths, names without a letter or digit.

    Raises:
        Rejected: ``control-char`` or ``unsafe-name``.
    """
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")]
    if bad:
        raise Rejected("control-char", f"{what} {value!r} holds control/format characters "
                                       f"{', '.join(f'U+{ord(c):04X}' for c in bad[:5])}")
    if "/" in value or "\\" in value or ".." in value or value.startswith("~") or re.match(r"^[A-Za-z]:", value):
        raise Rejected("unsafe-name", f"{what} {value!r} looks like a path ('/', '\\', '..', '~' or a drive); "
                                      "names must be plain words")
    if not any(c.isalnum() for c in value) or value != value.strip():
        raise Rejected("unsafe-name", f"{what} {value!r} needs a letter or digit and no leading/trailing spaces")


def safe_stem(model_name: str) -> str:
    """File-name form of a (checked) model name: runs of other characters -> '-', at most 80 chars."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-._")[:80].strip("-._")
    return stem or "model"


def check_code_url(url) -> None:
    """A code link must be an https URL without spaces, quotes or angle brackets (or None).

    Raises:
        Rejected: ``bad-code-url``.
    """
    if url is None:
        return
    if (not isinstance(url, str) or len(url) > 500 or not re.fullmatch(r"https://[^\s<>\"'`\\]+", url)
            or any(unicodedata.category(c) in ("Cc", "Cf") for c in url)):
        raise Rejected("bad-code-url", f"code URL {url!r} must be an https:// link of at most 500 characters "
                                       "without spaces, control characters, quotes or angle brackets")


def check_task(doc: dict) -> Task:
    """The task of a (schema-valid) results document, checked against the current task table.

    Raises:
        Rejected: ``unknown-task``, ``task-version``, ``split-hash``, ``task-definition`` or
        ``unknown-variant``.
    """
    t = doc["task"]
    if t["name"] not in TASKS:
        raise Rejected("unknown-task", f"unknown task {t['name']!r}; the task table has {', '.join(sorted(TASKS))}")
    task = get_task(t["name"])
    if t["version"] != task.version:
        raise Rejected("task-version", f"task {task.name!r} version {t['version']} is not the current "
                                       f"{task.version}; rerun benchmarks.run with the current code")
    try:
        expected = task.record(task.check_variant(t["variant"]))["split_sha256"]
    except ValueError as err:
        raise Rejected("unknown-variant", str(err)) from None
    if t["split_sha256"] != expected:
        raise Rejected("split-hash", f"split sha256 {t['split_sha256']} differs from the task table's "
                                     f"{expected} for {task.name!r}: the results were made on another split")
    if t["primary_metric"] != task.primary_metric or t["lower_is_better"] != task.lower_is_better:
        raise Rejected("task-definition", f"primary metric {t['primary_metric']!r} (lower_is_better="
                                          f"{t['lower_is_better']}) differs from the task table's "
                                          f"{task.primary_metric!r} ({task.lower_is_better})")
    try:
        if task.check_variant(t["variant"]) != t["variant"]:
            raise ValueError(f"task {task.name!r} needs its variant named (one of {', '.join(task.variants)})")
    except ValueError as err:
        raise Rejected("unknown-variant", str(err)) from None
    return task


def check_document(doc: dict) -> Task:
    """Every check on a schema-valid results document that needs no predictions: names, task
    table, quick flag, seed count and seed ids, primary metric present. Returns the task.

    Raises:
        Rejected: with the code of the failed check.
    """
    check_safe_name(doc["model"]["name"], "model name")
    imp = doc["model"]["import"]
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in imp) or "/" in imp or "\\" in imp or ".." in imp:
        raise Rejected("unsafe-name", f"model import {imp!r} must be a dotted module:Class name")
    task = check_task(doc)
    if doc["protocol"]["quick"]:
        raise Rejected("quick-run", "this is a --quick run (a smoke test on a subset); the leaderboard takes "
                                    "only full runs: rerun benchmarks.run without --quick")
    if doc["protocol"].get("auto_build"):
        raise Rejected("auto-built-release", "this run used the small release the runner builds when none is "
                                             "present (a smoke test); build the full release and rerun")
    per_seed = doc["metrics"]["per_seed"]
    if len(per_seed) < task.min_seeds_leaderboard:
        raise Rejected("too-few-seeds", f"{len(per_seed)} seed(s); task {task.name!r} needs at least "
                                        f"{task.min_seeds_leaderboard} (benchmarks.run --seeds "
                                        f"{task.min_seeds_leaderboard})")
    seeds = [s["seed"] for s in per_seed]
    if len(set(seeds)) != len(seeds):
        raise Rejected("duplicate-seed", f"seed ids repeat: {seeds}")
    agg = doc["metrics"]["aggregate"].get(task.primary_metric)
    if not (isinstance(agg, dict) and isinstance(agg.get("mean"), numbers.Real)):
        raise Rejected("missing-field", f"aggregate has no mean/std for the primary metric {task.primary_metric!r}")
    return task


def _compare(sub, ref, path: str, exact_keys: bool, out: list) -> None:
    if isinstance(ref, dict):
        if not isinstance(sub, dict):
            out.append(f"{path}: submitted {type(sub).__name__}, recomputed an object")
            return
        for key in ref:
            if key not in sub:
                out.append(f"{path}.{key}: missing (recomputed {ref[key]!r})")
            else:
                _compare(sub[key], ref[key], f"{path}.{key}", exact_keys, out)
        if exact_keys:
            out.extend(f"{path}.{k}: not a metric of this task" for k in sub if k not in ref)
    elif isinstance(ref, (list, tuple)):
        if not isinstance(sub, list) or len(sub) != len(ref):
            out.append(f"{path}: submitted {sub!r}, recomputed {list(ref)!r}")
            return
        for i, (a, b) in enumerate(zip(sub, ref)):
            _compare(a, b, f"{path}[{i}]", exact_keys, out)
    elif isinstance(ref, numbers.Real) and not isinstance(ref, bool):
        ok = (isinstance(sub, numbers.Real) and not isinstance(sub, bool)
              and math.isclose(float(sub), float(ref), rel_tol=REL_TOL, abs_tol=ABS_TOL))
        if not ok:
            out.append(f"{path}: submitted {sub!r}, recomputed {float(ref)!r}")
    elif sub != ref:
        out.append(f"{path}: submitted {sub!r}, recomputed {ref!r}")


def rescore(task: Task, doc: dict, predictions: dict, data_root=".") -> None:
    """Recompute every per-seed metric and the aggregate from the predictions with the task's
    own scorer (``task.score``: full task, the variant the document names, against the
    benchmark's labels under ``data_root``) and compare with the document.

    Per seed, every recomputed metric must be present and equal (relative tolerance 1e-9);
    extra per-seed keys (e.g. training epochs) are allowed. The aggregate must equal
    ``task.aggregate(recomputed)`` key for key.

    Raises:
        Rejected: ``predictions-invalid`` (the scorer refuses the arrays, e.g. wrong length) or
        ``metric-mismatch`` (listing the first differences).
    """
    try:
        per_seed = task.score(predictions, data_root, variant=doc["task"]["variant"], quick=False)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, FileNotFoundError) as err:
        raise Rejected("predictions-invalid", f"the predictions do not fit task {task.name!r}: "
                                              f"{type(err).__name__}: {err}") from None
    submitted = doc["metrics"]["per_seed"]
    if len(per_seed) != len(submitted):
        raise Rejected("metric-mismatch", f"the predictions hold {len(per_seed)} seed(s), the results list "
                                          f"{len(submitted)}")
    diffs: list[str] = []
    for i, (sub, ref) in enumerate(zip(submitted, per_seed)):
        ref = {k: v for k, v in ref.items() if k != "seed"}
        _compare(sub, ref, f"per_seed[{i}]", False, diffs)
    _compare(doc["metrics"]["aggregate"], task.aggregate(per_seed), "aggregate", True, diffs)
    if diffs:
        more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
        raise Rejected("metric-mismatch", "metrics differ from those recomputed from the predictions "
                                          f"(relative tolerance {REL_TOL:g}): {'; '.join(diffs[:5])}{more}")
