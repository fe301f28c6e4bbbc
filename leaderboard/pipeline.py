"""One path through a submission, shared by ``submit`` and ``validate``:
read -> parse -> schema -> semantic checks -> predictions -> rescore -> reproduction -> entry.

Every check is a small function that takes the :class:`Context` (the document, its task, the
prediction arrays, the board's entries, the options) and returns a refusal (a
:class:`~leaderboard.errors.Rejected`: a code and a one-line message) or None; it may also
raise one. :data:`CHECKS` lists them in the order they run; a new check is one function and
one row there. ``submit`` runs the rows of mode "submit", then takes the board's lock, runs the
rows that read the board again (``board=True``: another submit may have written meanwhile) and
writes; ``validate`` runs the rows of mode "validate" over each stored entry. A refusal raised
by the pipeline carries the name of its check in ``.check``.

Nothing submitted is executed, unpickled or followed (links are refused); what is scored comes
from the task's pinned data, never from the document (its ``protocol`` is not read by the
rescoring, except ``quick``, which the leaderboard refuses).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import os
import re
import secrets
import stat
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .board import (MARK_SUFFIX, PREDICTIONS_SUFFIX, Board, content_hash, entry_stem, make_entry, mark_path,
                    predictions_path)
from .checks import (DUPLICATE_ATOL, DUPLICATE_RTOL, check_code_url, check_safe_name, check_task, command_differences,
                     declared_kinds, get_path, is_mixed_script, lookalike_keys, name_key, name_scripts, parse_command,
                     rescore, same_predictions, same_seed, seed_count)
from .errors import Rejected
from .safeio import (ENTRY_MAX_BYTES, LARGE_NPZ_MAX_UNPACKED_BYTES, LARGE_PREDICTIONS_MAX_BYTES, NPZ_MAX_UNPACKED_BYTES,
                     PREDICTIONS_MAX_BYTES, RESULTS_MAX_BYTES, canonical_json, inspect_npz, load_members, load_npz_safe,
                     loads_strict, open_regular, read_capped, sha256_hex, sha256_stream)
from .schema import check_entry_schema, check_results_schema

PARAMETERS_MAX = 10 ** 13          # model.parameters must be below (a 10-trillion-parameter model is not a typo away)
CPUS_MAX = 1_000_000
WALL_TIME_MAX_S = 10 ** 8          # three years
HARDWARE_MAX_KEYS = 32
STRING_MAX = 200                   # any hardware / environment string
PACKAGES_MAX = 200
EARLIEST_DATE = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)
CLOCK_SKEW = _dt.timedelta(days=1)
LOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Options:
    """How a submission is checked.

    Attributes:
        reproduce: submit re-runs the model (``leaderboard.reproduce.reproduce``) after
            rescoring and stores the mark it returns; needed for results that match the labels
            and for predictions too large to store.
        rescore: recompute the metrics from the predictions (validate --no-rescore: False).
        allow_quick: TESTS ONLY: accept a --quick run and rescore it on the task's quick
            subset (the leaderboard itself always refuses quick runs).
        allow_import: with ``reproduce``, also re-run models outside the project's registry
            (their code runs: a maintainer passes this after reviewing the package).
        work_dir: where reproduce's temporary folder goes (default: the system's).
        skip: TESTS ONLY: names of checks not to run.
    """

    reproduce: bool = False
    rescore: bool = True
    allow_quick: bool = False
    allow_import: bool = False
    work_dir: Path | None = None
    skip: frozenset = frozenset()


@dataclass
class Context:
    """What the checks read and fill in, for one submission (mode "submit") or one stored
    entry (mode "validate")."""

    mode: str
    board: Board
    data_root: Path = Path(".")
    options: Options = Options()
    path: Path | None = None               # submit: the results JSON; validate: the entry JSON
    predictions_path: Path | None = None   # submit: the predictions .npz (default: next to the results)
    code_url: str | None = None            # submit: the code link given
    task_entries: list | None = None       # validate: (path, entry) of the other entries of the task to compare with
    cache: dict = field(default_factory=dict)   # other entries' prediction arrays, by path
    raw: bytes | None = None
    parsed: object = None
    doc: dict | None = None                # the results document (validate: the entry's)
    entry: dict | None = None              # validate: the stored entry
    task: object = None
    others: list = field(default_factory=list)  # (path, entry) of the same task and variant, not this one
    pred_file: Path | None = None          # submit: the predictions file read
    pred_source: object = None             # the predictions: bytes, or an open file (too large to hold)
    pred_sha256: str | None = None
    pred_bytes: int | None = None
    pred_stored: bool = True
    members: dict | None = None
    arrays: dict | None = None
    rescored: list | None = None
    mark: dict | None = None
    notes: list = field(default_factory=list)
    opened: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.doc["model"]["name"]

    @property
    def variant(self):
        return self.doc["task"]["variant"]

    def close(self) -> None:
        for f in self.opened:
            f.close()
        self.opened.clear()


@dataclass(frozen=True)
class Check:
    """One row of :data:`CHECKS`: the check's name (its function's), the function, the refusal
    codes it gives, the modes it runs in and whether it reads the board's other entries."""

    name: str
    fn: Callable[[Context], Rejected | None]
    codes: tuple[str, ...]
    modes: tuple[str, ...] = ("submit", "validate")
    board: bool = False


# ============================================================================ reading

def read_results(ctx: Context):
    """The results file: a regular file (no link), at most RESULTS_MAX_BYTES, read before parsing."""
    ctx.raw = read_capped(ctx.path, RESULTS_MAX_BYTES, "results file")


def read_entry_file(ctx: Context):
    """The stored entry file: a regular file (no link), at most ENTRY_MAX_BYTES."""
    ctx.raw = read_capped(ctx.path, ENTRY_MAX_BYTES, "entry file")


def parse_json(ctx: Context):
    """Strict JSON: UTF-8, nesting at most JSON_MAX_DEPTH, finite numbers, no repeated keys."""
    ctx.parsed = loads_strict(ctx.raw, "results file" if ctx.mode == "submit" else f"entry {ctx.path.name}")


def results_schema(ctx: Context):
    """The results schema (``densegen-results-3``, owned by benchmarks.results)."""
    check_results_schema(ctx.parsed)
    ctx.doc = ctx.parsed


def entry_schema(ctx: Context):
    """The entry schema (``densegen-leaderboard-entry-2``, the results schema inside)."""
    check_entry_schema(ctx.parsed)
    ctx.entry = ctx.parsed
    ctx.doc = ctx.entry["results"]


def entry_integrity(ctx: Context):
    """Content hash, results hash, file name, task folder, predictions record: an entry edited
    after submission is ``tampered``."""
    entry, path = ctx.entry, ctx.path
    if content_hash(entry) != entry["content_sha256"]:
        return Rejected("tampered", f"entry {path.name}: content hash {entry['content_sha256']} does not match its "
                                    f"content (sha256 {content_hash(entry)}): the entry was edited after submission")
    if sha256_hex(canonical_json(entry["results"])) != entry["results_sha256"]:
        return Rejected("tampered", f"entry {path.name}: results_sha256 does not match the embedded results")
    if path.suffix != ".json" or path.stem != entry_stem(entry):
        return Rejected("tampered", f"entry file {path.name!r} should be named {entry_stem(entry)}.json")
    if entry["task"] != entry["results"]["task"]["name"] or path.parent.name != entry["task"]:
        return Rejected("tampered", f"entry {path.name} of task {entry['results']['task']['name']!r} is filed under "
                                    f"{path.parent.name!r} / says task {entry['task']!r}")
    rec, res = entry["predictions"], entry["results"]["predictions"]
    if rec["sha256"] != res["sha256"] or rec["bytes"] != res["bytes"]:
        return Rejected("tampered", f"entry {path.name}: predictions sha256/size differ from those in its results")
    if not rec["stored"] and rec["bytes"] <= PREDICTIONS_MAX_BYTES:
        return Rejected("tampered", f"entry {path.name}: predictions of {rec['bytes']:,} bytes are small enough to "
                                    "store, yet the entry says they are not stored")
    return None


# ============================================================================ document fields

def parameters(ctx: Context):
    """model.parameters: a JSON integer from 0 to below PARAMETERS_MAX (1e30 is a float)."""
    p = ctx.doc["model"]["parameters"]
    if type(p) is not int or not 0 <= p < PARAMETERS_MAX:
        return Rejected("bad-parameters", f"model.parameters {str(p)[:40]} must be a JSON integer from 0 to "
                                          f"{PARAMETERS_MAX:.0e} (exclusive)")
    return None


def _bad_string(value, limit: int = STRING_MAX) -> bool:
    return (not isinstance(value, str) or len(value) > limit
            or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") for c in value))


def hardware(ctx: Context):
    """environment.hardware: a machine name, cpus >= 1, at most HARDWARE_MAX_KEYS flat fields of
    bounded strings or numbers."""
    hw = ctx.doc["environment"]["hardware"]
    why = None
    if len(hw) > HARDWARE_MAX_KEYS:
        why = f"has {len(hw)} fields (at most {HARDWARE_MAX_KEYS})"
    elif _bad_string(hw.get("machine"), 100) or not hw.get("machine", "").strip():
        why = "needs 'machine', a non-empty string of at most 100 characters (platform.machine())"
    elif type(hw.get("cpus")) is not int or not 1 <= hw["cpus"] <= CPUS_MAX:
        why = f"needs 'cpus', an integer from 1 to {CPUS_MAX:,} (got {str(hw.get('cpus'))[:20]})"
    else:
        for key, value in hw.items():
            if len(key) > 64 or _bad_string(key):
                why = f"has a field name {key[:70]!r} that is too long or holds control characters"
            elif isinstance(value, bool) or value is None:
                continue
            elif isinstance(value, int):
                if abs(value) > 10 ** 9:
                    why = f"field {key!r} = {str(value)[:20]} is out of range"
            elif isinstance(value, float):
                if not math.isfinite(value) or abs(value) > 1e12:
                    why = f"field {key!r} = {value} is out of range"
            elif _bad_string(value):
                why = (f"field {key!r} must be a string of at most {STRING_MAX} characters without control "
                       "characters, or a number")
            if why:
                break
    return None if why is None else Rejected("bad-hardware", f"environment.hardware {why}")


def environment(ctx: Context):
    """environment: exactly the fields benchmarks.run writes; python and package versions bounded."""
    env = ctx.doc["environment"]
    extra = sorted(set(env) - {"hardware", "packages", "python", "densegen_commit"})
    why = None
    if extra:
        why = f"has fields {extra[:5]} that benchmarks.run does not write"
    elif _bad_string(env["python"], 64) or not env["python"]:
        why = "python must be a version string of at most 64 characters"
    elif len(env["packages"]) > PACKAGES_MAX:
        why = f"lists {len(env['packages'])} packages (at most {PACKAGES_MAX})"
    else:
        for name, version in env["packages"].items():
            if _bad_string(name, 100) or (version is not None and _bad_string(version, 100)):
                why = f"package {name[:40]!r}: names and versions are strings of at most 100 characters"
                break
    return None if why is None else Rejected("bad-environment", f"environment {why}")


def wall_time(ctx: Context):
    """wall_time_s: at most WALL_TIME_MAX_S."""
    if ctx.doc["wall_time_s"] > WALL_TIME_MAX_S:
        return Rejected("bad-wall-time", f"wall_time_s {ctx.doc['wall_time_s']:g} is more than {WALL_TIME_MAX_S:g} s")
    return None


_TIME = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
                   r"(Z|([+-])([0-9]{2}):([0-9]{2}))$")


def parse_time(text: str) -> _dt.datetime | None:
    """An ISO 8601 date-time with offset (as the schemas write it) as an aware datetime, or
    None when it is not a real one (0000-00-00, month 99, hour 25, offset +99:00, ...)."""
    m = _TIME.match(text) if isinstance(text, str) else None
    if not m:
        return None
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    try:
        if z == "Z":
            tz = _dt.timezone.utc
        else:
            if int(oh) > 23 or int(om) > 59:
                return None
            delta = _dt.timedelta(hours=int(oh), minutes=int(om))
            tz = _dt.timezone(delta if sign == "+" else -delta)
        micro = int((frac or "0")[:6].ljust(6, "0"))
        return _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
    except ValueError:
        return None


def dates(ctx: Context):
    """created (and a stored entry's accepted): real ISO dates, not before 2024, not in the
    future beyond CLOCK_SKEW; the run was created before it was accepted."""
    now = _dt.datetime.now(_dt.timezone.utc)
    stamps = [("created", ctx.doc["created"])]
    if ctx.entry is not None:
        stamps.append(("accepted", ctx.entry["accepted"]))
    parsed = {}
    for field_name, text in stamps:
        t = parse_time(text)
        if t is None:
            return Rejected("bad-date", f"{field_name} {text[:40]!r} is not a real ISO 8601 date and time")
        if t < EARLIEST_DATE or t > now + CLOCK_SKEW:
            return Rejected("bad-date", f"{field_name} {text!r} is before {EARLIEST_DATE.date()} or in the future")
        parsed[field_name] = t
    if "accepted" in parsed and parsed["created"] > parsed["accepted"] + CLOCK_SKEW:
        return Rejected("bad-date", f"created {ctx.doc['created']!r} is after the entry was accepted "
                                    f"({ctx.entry['accepted']!r})")
    return None


# ============================================================================ names and links

def model_name(ctx: Context):
    """The model name and import string: no control/format characters, nothing path-like."""
    check_safe_name(ctx.name, "model name")
    imp = ctx.doc["model"]["import"]
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in imp) or "/" in imp or "\\" in imp or ".." in imp:
        return Rejected("unsafe-name", f"model import {imp!r} must be a dotted module:Class name")
    return None


def lookalike_name(ctx: Context):
    """The model name as NFKC writes it (no fullwidth / mathematical / ligature letters) and in
    one script (Unicode TR39's highly restrictive level: Latin may mix only with Han and kana,
    Bopomofo or Hangul)."""
    name = ctx.name
    nfkc = unicodedata.normalize("NFKC", name)
    if nfkc != name:
        return Rejected("lookalike-name", f"model name {name!r} is written with compatibility characters (fullwidth, "
                                          f"mathematical, circled or ligature letters) that read as {nfkc!r}; "
                                          f"submit it as {nfkc!r}")
    if is_mixed_script(name):
        return Rejected("lookalike-name", f"model name {name!r} mixes the scripts "
                                          f"{', '.join(sorted(name_scripts(name)))}; look-alike letters from several "
                                          "alphabets are refused: write it in one script")
    return None


def code_url(ctx: Context):
    """The code link: https, no spaces, quotes or angle brackets, at most 500 characters."""
    check_code_url(ctx.code_url if ctx.mode == "submit" else ctx.entry["code_url"])


# ============================================================================ task and protocol

def task_table(ctx: Context):
    """The current task table: known task, current version, variant, split hash, primary metric."""
    ctx.task = check_task(ctx.doc)


def full_run(ctx: Context):
    """Not a --quick run (a smoke test on a subset)."""
    if ctx.doc["protocol"]["quick"] and not ctx.options.allow_quick:
        return Rejected("quick-run", "this is a --quick run (a smoke test on a subset); the leaderboard takes only "
                                     "full runs: rerun benchmarks.run without --quick")
    return None


def release_built(ctx: Context):
    """Not made on the small release the runner builds when none is present."""
    if ctx.doc["protocol"].get("auto_build"):
        return Rejected("auto-built-release", "this run used the small release the runner builds when none is "
                                              "present (a smoke test); build the full release and rerun")
    return None


def enough_seeds(ctx: Context):
    """At least the task's min_seeds_leaderboard seeds."""
    n, need = len(ctx.doc["metrics"]["per_seed"]), ctx.task.min_seeds_leaderboard
    if n < need and not ctx.options.allow_quick:
        return Rejected("too-few-seeds", f"{n} seed(s); task {ctx.task.name!r} needs at least {need} "
                                         f"(benchmarks.run --seeds {need})")
    return None


def seed_ids(ctx: Context):
    """Seed ids do not repeat."""
    seeds = [s["seed"] for s in ctx.doc["metrics"]["per_seed"]]
    if len(set(seeds)) != len(seeds):
        return Rejected("duplicate-seed", f"seed ids repeat: {seeds[:20]}")
    return None


def primary_metric(ctx: Context):
    """The aggregate has a numeric mean of the primary metric (what the board ranks by)."""
    agg = ctx.doc["metrics"]["aggregate"].get(ctx.task.primary_metric)
    if not (isinstance(agg, dict) and isinstance(agg.get("mean"), numbers.Real)):
        return Rejected("missing-field", f"aggregate has no mean/std for the primary metric {ctx.task.primary_metric!r}")
    return None


def recorded_command(ctx: Context):
    """The recorded command parses with benchmarks.run's own parser and agrees with the results
    (--quick, --model, --task, --variant, --seeds, --model-arg)."""
    args = parse_command(ctx.doc["command"])
    diffs = command_differences(ctx.doc, ctx.task, args)
    if diffs:
        return Rejected("command-mismatch", f"the recorded command does not match the results: {'; '.join(diffs[:3])}")
    return None


DOCUMENT_CHECKS = ("parameters", "hardware", "environment", "wall_time", "dates", "model_name", "lookalike_name",
                   "task_table", "full_run", "release_built", "enough_seeds", "seed_ids", "primary_metric",
                   "recorded_command")


# ============================================================================ the board

def board_entries(ctx: Context):
    """The board's other entries of this task and variant (submit: every entry of the task
    folder must pass the integrity checks, else the board is invalid)."""
    if ctx.task_entries is not None:
        entries = ctx.task_entries
    else:
        entries = []
        for p in ctx.board.entry_files():
            if p.parent.name != ctx.task.name:
                continue
            try:
                entries.append((p, read_entry(p)))
            except Rejected as err:
                return Rejected("board-invalid", f"the board holds an invalid entry {p}: [{err.code}] {err.message}; "
                                                 "run `python -m leaderboard validate` first")
    ctx.others = [(p, e) for p, e in entries
                  if e["results"]["task"]["variant"] == ctx.variant and (ctx.path is None or p != ctx.path)]
    return None


def same_entry(ctx: Context):
    """Not the same entry, results file or predictions file (sha256) as another entry."""
    results_sha = sha256_hex(canonical_json(ctx.doc))
    for _, old in ctx.others:
        if ctx.entry is not None and ctx.entry["content_sha256"] == old["content_sha256"]:
            return Rejected("duplicate", "the same entry (content hash) is already on the board")
        if results_sha == old["results_sha256"]:
            return Rejected("duplicate", "the same results file is already on the board")
        if ctx.doc["predictions"]["sha256"] == old["predictions"]["sha256"]:
            return Rejected("duplicate", "identical predictions (same sha256) are already on the board")
    return None


def same_name(ctx: Context):
    """The model name differs from every other entry's of the task and variant in more than case
    and punctuation (else ``duplicate``) and is not a look-alike of one (TR39 skeletons of the
    NFKC forms, casefolded: ``lookalike-name``)."""
    a = ctx.name
    keys = lookalike_keys(a)
    for _, old in ctx.others:
        b = old["results"]["model"]["name"]
        if name_key(a) == name_key(b):
            return Rejected("duplicate", f"model {a!r} already has an entry for this task ({b!r}); pick another model "
                                         "name")
        if keys & lookalike_keys(b):
            return Rejected("lookalike-name", f"model name {a!r} looks like {b!r}, which already has an entry for this "
                                              "task (Unicode confusables); pick a name that reads differently")
    return None


# ============================================================================ predictions

def read_predictions(ctx: Context):
    """The predictions file: a regular file (no link); at most PREDICTIONS_MAX_BYTES to be
    stored, larger only with --reproduce (then rescored locally and not stored); its sha256
    and size are the ones the results record."""
    rec = ctx.doc["predictions"]
    if ctx.mode == "validate":
        if not ctx.entry["predictions"]["stored"]:
            ctx.pred_stored = False
            ctx.notes.append("predictions not stored")
            return None
        path = predictions_path(ctx.path)
        data = read_capped(path, PREDICTIONS_MAX_BYTES, f"predictions file {path.name}")
        what = f"predictions file {path.name}"
        ctx.pred_source, ctx.pred_sha256, ctx.pred_bytes = data, sha256_hex(data), len(data)
    else:
        path = Path(ctx.predictions_path) if ctx.predictions_path else ctx.path.parent / rec["file"]
        what = "predictions file"
        opened = open_regular(path, what)
        ctx.pred_file = path
        if opened.size <= PREDICTIONS_MAX_BYTES:
            try:
                data = opened.handle.read(PREDICTIONS_MAX_BYTES + 1)
            finally:
                opened.close()
            if len(data) > PREDICTIONS_MAX_BYTES:
                return Rejected("too-large", f"{what} {str(path)!r} grew beyond {PREDICTIONS_MAX_BYTES:,} bytes")
            ctx.pred_source, ctx.pred_sha256, ctx.pred_bytes = data, sha256_hex(data), len(data)
        else:
            ctx.opened.append(opened)
            if not ctx.options.reproduce or opened.size > LARGE_PREDICTIONS_MAX_BYTES:
                limit = PREDICTIONS_MAX_BYTES if not ctx.options.reproduce else LARGE_PREDICTIONS_MAX_BYTES
                hint = ("; predictions this large are not stored on the board: submit with --reproduce (the model "
                        "is re-run and the entry records the predictions' sha256 only)" if not ctx.options.reproduce
                        else "")
                return Rejected("too-large", f"{what} {str(path)!r} is {opened.size:,} bytes; the limit is "
                                             f"{limit:,} bytes{hint}")
            ctx.pred_sha256, ctx.pred_bytes = sha256_stream(opened.handle)
            ctx.pred_source, ctx.pred_stored = opened.handle, False
            ctx.notes.append("predictions not stored")
    if ctx.pred_sha256 != rec["sha256"] or ctx.pred_bytes != rec["bytes"]:
        return Rejected("predictions-hash", f"{what} has sha256 {ctx.pred_sha256} ({ctx.pred_bytes:,} bytes); the "
                                            f"results record {rec['sha256']} ({rec['bytes']:,} bytes): not the file "
                                            "the run wrote")
    return None


def npz_members(ctx: Context):
    """An npz of top-level .npy members whose headers (read before any array) declare no object
    or structured dtype and exactly the bytes each member holds; unpacked size capped."""
    if ctx.pred_source is None:
        return None
    cap = NPZ_MAX_UNPACKED_BYTES if ctx.pred_stored else LARGE_NPZ_MAX_UNPACKED_BYTES
    ctx.members = inspect_npz(ctx.pred_source, "predictions file", cap)
    return None


def prediction_dtypes(ctx: Context):
    """Only the arrays the task declares (``task.prediction_dtypes``), each of a dtype kind it
    accepts (no complex, bool or string values where numbers are meant): checked on the
    headers, before loading or scoring."""
    if ctx.members is None:
        return None
    task = ctx.task
    for name, m in ctx.members.items():
        kinds = declared_kinds(task, name)
        if kinds is None:
            return Rejected("predictions-invalid", f"the predictions hold an array {name[:60]!r} that task "
                                                   f"{task.name!r} does not have (its arrays: "
                                                   f"{', '.join(task.prediction_dtypes) or 'none declared'})")
        if m.dtype.kind not in kinds:
            return Rejected("bad-dtype", f"predictions array {name!r} has dtype {m.dtype} (kind {m.dtype.kind!r}); "
                                         f"task {task.name!r} accepts kinds {kinds!r} there")
    from fnmatch import fnmatchcase

    missing = [p for p in task.prediction_dtypes if not any(fnmatchcase(n, p) for n in ctx.members)]
    if missing:
        return Rejected("predictions-invalid", f"the predictions lack the array(s) {missing} of task {task.name!r}")
    return None


def load_predictions(ctx: Context):
    """The arrays themselves (allow_pickle=False), finite."""
    if ctx.members is None:
        return None
    ctx.arrays = load_members(ctx.pred_source, ctx.members, "predictions file")
    return None


def identical_seeds(ctx: Context):
    """Tasks with trained heads: no two seeds' predictions are the same (within the duplicate
    tolerances): copies of one prediction are not several seeds."""
    task = ctx.task
    if ctx.arrays is None or not task.trained_heads:
        return None
    names = task.model_predictions
    n = seed_count(ctx.arrays, names)
    for i in range(n):
        for j in range(i + 1, n):
            if same_seed(ctx.arrays, i, ctx.arrays, j, names):
                return Rejected("identical-seeds", f"the predictions of seeds {i} and {j} ({', '.join(names)}) are the "
                                                   f"same (rtol {DUPLICATE_RTOL:g}, atol {DUPLICATE_ATOL:g}); seeds "
                                                   "of trained heads differ")
    return None


def _other_predictions(ctx: Context, path: Path, entry: dict):
    if path not in ctx.cache:
        arrays = None
        if entry["predictions"]["stored"]:
            try:
                data = read_capped(predictions_path(path), PREDICTIONS_MAX_BYTES, "stored predictions")
                if sha256_hex(data) == entry["predictions"]["sha256"]:
                    arrays = load_npz_safe(data, "stored predictions")
            except Rejected:
                arrays = None  # validate reports that entry on its own
        ctx.cache[path] = arrays
    return ctx.cache[path]


def duplicate_predictions(ctx: Context):
    """Not another entry's predictions (same task and variant) up to re-encoding or noise: the
    same array names and shapes with values within rtol DUPLICATE_RTOL / atol DUPLICATE_ATOL
    (float64); for trained heads, no seed equal to a seed of another entry."""
    if ctx.arrays is None:
        return None
    names = ctx.task.model_predictions if ctx.task.trained_heads else ()
    n = seed_count(ctx.arrays, names) if names else 0
    for path, old in ctx.others:
        theirs = _other_predictions(ctx, path, old)
        if theirs is None:
            continue
        who = f"entry {path.name} (model {old['results']['model']['name']!r})"
        if same_predictions(ctx.arrays, theirs):
            return Rejected("duplicate-predictions", f"the predictions equal those of {who} within rtol "
                                                     f"{DUPLICATE_RTOL:g} / atol {DUPLICATE_ATOL:g}")
        m = seed_count(theirs, names) if names else 0
        for i in range(n):
            for j in range(m):
                if same_seed(ctx.arrays, i, theirs, j, names):
                    return Rejected("duplicate-predictions", f"seed {i} of the predictions equals seed {j} of {who} "
                                                             f"within rtol {DUPLICATE_RTOL:g} / atol "
                                                             f"{DUPLICATE_ATOL:g}")
    return None


def rescore_metrics(ctx: Context):
    """Every metric recomputed from the predictions by the task's own scorer (relative
    tolerance 1e-9), against the task's pinned data; metrics needing optional weights are not
    compared. Only ``protocol.quick`` of the document is read (and only when a test allows
    quick runs)."""
    if ctx.arrays is None or not ctx.options.rescore:
        return None
    quick = bool(ctx.options.allow_quick and ctx.doc["protocol"]["quick"] is True)
    ctx.rescored = rescore(ctx.task, ctx.doc, ctx.arrays, ctx.data_root, quick=quick)
    return None


# ============================================================================ reproduction and the labels

def _reproduce_module():
    import importlib

    return importlib.import_module("leaderboard.reproduce")


def _checked_mark(ctx: Context, mark) -> dict:
    try:
        canonical_json(mark)
    except (TypeError, ValueError) as err:
        raise Rejected("bad-mark", f"the reproduction mark is not plain JSON: {err}") from None
    if not isinstance(mark, dict) or mark.get("results_sha256") != sha256_hex(canonical_json(ctx.doc)):
        raise Rejected("bad-mark", "the reproduction mark is not for these results (results_sha256 differs)")
    return mark


def reproduction(ctx: Context):
    """submit --reproduce: re-run the model (``leaderboard.reproduce.reproduce``, compared with
    the submitted predictions file) and keep the mark it returns. validate: a ``<entry>.reproduced.json`` mark, when present, must pass
    ``leaderboard.reproduce.read_mark``; entries whose predictions are not stored need one."""
    if ctx.mode == "submit":
        if not ctx.options.reproduce:
            return None
        try:
            module = _reproduce_module()
        except ImportError as err:
            return Rejected("not-reproduced", f"leaderboard.reproduce is not available ({err})")
        extra = {"allow_import": True} if ctx.options.allow_import else {}
        with tempfile.TemporaryDirectory(prefix="densegen-reproduce-", dir=ctx.options.work_dir) as work:
            try:  # the submitted predictions file (already checked) is what the re-run is compared with
                mark = module.reproduce(ctx.doc, ctx.pred_file, ctx.data_root, work_dir=Path(work), **extra)
            except Rejected:
                raise
            except Exception as err:  # the submitter's model failed to re-run: a refusal, not a crash
                return Rejected("not-reproduced", f"re-running the model failed: {type(err).__name__}: "
                                                  f"{str(err)[:300]}")
        ctx.mark = _checked_mark(ctx, mark)
    else:
        path = mark_path(ctx.path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as err:
            return Rejected("bad-mark", f"{path.name} cannot be read ({err.strerror})")
        if st is None:
            if not ctx.entry["predictions"]["stored"]:
                return Rejected("not-reproduced", f"entry {ctx.path.name}: its predictions are not stored, so it needs "
                                                  f"a reproduction mark {path.name} (submit --reproduce)")
            return None
        if not stat.S_ISREG(st.st_mode):
            return Rejected("bad-mark", f"{path.name} is not a regular file (links are not allowed)")
        try:
            module = _reproduce_module()
        except ImportError as err:
            return Rejected("bad-mark", f"{path.name} cannot be checked: leaderboard.reproduce is not available ({err})")
        try:
            mark = module.read_mark(path, ctx.entry)
        except Rejected:
            raise
        except Exception as err:
            return Rejected("bad-mark", f"{path.name} cannot be checked: {type(err).__name__}: {str(err)[:300]}")
        ctx.mark = mark if isinstance(mark, dict) else {}
    ctx.notes.append(f"reproduced {str(ctx.mark.get('date', 'on an unknown date'))[:40]}")
    return None


def matches_labels(ctx: Context):
    """No metric the task declares a perfect value for (``task.perfect_scores``) is within
    noise of it, per seed or on average, unless the run was reproduced: such results are what
    predictions equal to the test labels give."""
    if ctx.mark is not None:
        return None
    for metric, (perfect, noise) in ctx.task.perfect_scores.items():
        values = [get_path(s, metric) for s in ctx.doc["metrics"]["per_seed"]]
        stat_ = get_path(ctx.doc["metrics"]["aggregate"], metric)
        values.append(stat_.get("mean") if isinstance(stat_, dict) else None)
        hits = [v for v in values if isinstance(v, numbers.Real) and not isinstance(v, bool)
                and abs(float(v) - perfect) <= noise]
        if hits:
            return Rejected("matches-labels", f"{metric} = {float(hits[0]):.3g} is within {noise:g} of the perfect "
                                              f"{perfect:g}: results that match the test labels are accepted only "
                                              "when reproduced (python -m leaderboard submit --reproduce re-runs the "
                                              "model)")
    return None


# ============================================================================ the list

CHECKS: list[Check] = [
    Check("read_results", read_results, ("missing-file", "symlink", "not-a-file", "unreadable", "too-large"), ("submit",)),
    Check("read_entry_file", read_entry_file, ("missing-file", "symlink", "not-a-file", "unreadable", "too-large"),
          ("validate",)),
    Check("parse_json", parse_json, ("too-deep", "not-json", "non-finite", "duplicate-key")),
    Check("results_schema", results_schema, ("wrong-type", "schema-version", "missing-field", "unknown-field",
                                             "schema"), ("submit",)),
    Check("entry_schema", entry_schema, ("wrong-type", "schema-version", "missing-field", "unknown-field", "schema"),
          ("validate",)),
    Check("entry_integrity", entry_integrity, ("tampered",), ("validate",)),
    Check("parameters", parameters, ("bad-parameters",)),
    Check("hardware", hardware, ("bad-hardware",)),
    Check("environment", environment, ("bad-environment",)),
    Check("wall_time", wall_time, ("bad-wall-time",)),
    Check("dates", dates, ("bad-date",)),
    Check("model_name", model_name, ("control-char", "unsafe-name")),
    Check("lookalike_name", lookalike_name, ("lookalike-name",)),
    Check("code_url", code_url, ("bad-code-url",)),
    Check("task_table", task_table, ("unknown-task", "task-version", "unknown-variant", "split-hash",
                                     "task-definition")),
    Check("full_run", full_run, ("quick-run",)),
    Check("release_built", release_built, ("auto-built-release",)),
    Check("enough_seeds", enough_seeds, ("too-few-seeds",)),
    Check("seed_ids", seed_ids, ("duplicate-seed",)),
    Check("primary_metric", primary_metric, ("missing-field",)),
    Check("recorded_command", recorded_command, ("bad-command", "command-mismatch")),
    Check("board_entries", board_entries, ("board-invalid",), board=True),
    Check("same_entry", same_entry, ("duplicate",), board=True),
    Check("same_name", same_name, ("duplicate", "lookalike-name"), board=True),
    Check("read_predictions", read_predictions, ("missing-file", "symlink", "not-a-file", "unreadable", "too-large",
                                                 "predictions-hash")),
    Check("npz_members", npz_members, ("not-npz", "too-large", "npy-header", "pickle")),
    Check("prediction_dtypes", prediction_dtypes, ("predictions-invalid", "bad-dtype")),
    Check("load_predictions", load_predictions, ("not-npz", "non-finite")),
    Check("identical_seeds", identical_seeds, ("identical-seeds",)),
    Check("duplicate_predictions", duplicate_predictions, ("duplicate-predictions",), board=True),
    Check("rescore_metrics", rescore_metrics, ("predictions-invalid", "metric-mismatch")),
    Check("reproduction", reproduction, ("not-reproduced", "not-registered", "weights-differ", "bad-mark")),
    Check("matches_labels", matches_labels, ("matches-labels",)),
]

ENTRY_READ_CHECKS = ("read_entry_file", "parse_json", "entry_schema", "entry_integrity")


# ============================================================================ running it

def _one_line(err: Rejected, check: str) -> Rejected:
    out = Rejected(err.code, " ".join(str(err.message).split()))
    out.check = check
    return out


def run_checks(ctx: Context, names=None, stop_after: str | None = None) -> Context:
    """Run the rows of :data:`CHECKS` for ``ctx.mode`` in order (only ``names`` if given),
    stopping after ``stop_after``. Returns ``ctx``.

    Raises:
        Rejected: the first refusal, with ``.check`` = the check's name.
    """
    for check in CHECKS:
        if ctx.mode not in check.modes or check.name in ctx.options.skip or (names is not None and check.name not in names):
            continue
        try:
            refusal = check.fn(ctx)
        except Rejected as err:
            refusal = err
        if refusal is not None:
            raise _one_line(refusal, check.name) from None
        if check.name == stop_after:
            break
    return ctx


def check_document(doc: dict) -> object:
    """The checks of a schema-valid results document that need neither board nor predictions
    (:data:`DOCUMENT_CHECKS`); returns its task.

    Raises:
        Rejected: the first refusal.
    """
    ctx = Context("submit", Board(), doc=doc)
    run_checks(ctx, DOCUMENT_CHECKS)
    return ctx.task


def read_entry(path: Path) -> dict:
    """A stored entry, integrity-checked (no re-scoring): size cap, strict JSON, schema,
    content hash, results hash, file name and task folder.

    Raises:
        Rejected: ``tampered`` when a hash or the name does not match, else the failed check's code.
    """
    ctx = Context("validate", Board(), path=Path(path))
    run_checks(ctx, ENTRY_READ_CHECKS)
    return ctx.entry


def check_results_file(results_path: Path, predictions: Path | None = None, board: Board = Board(),
                       code_url: str | None = None, data_root: Path | str = ".", options: Options = Options(),
                       stop_after: str | None = None) -> Context:
    """Every submit check on a results file, writing nothing; returns the context (document,
    task, arrays, recomputed metrics, mark).

    Raises:
        Rejected: the first refusal.
    """
    ctx = Context("submit", board, Path(data_root), options, path=Path(results_path),
                  predictions_path=Path(predictions) if predictions else None, code_url=code_url)
    try:
        return run_checks(ctx, stop_after=stop_after)
    finally:
        ctx.close()


def _before_lock(ctx: Context) -> None:
    """Called between the checks and taking the board lock (tests race two submits here)."""


def _write_new(path: Path, data: bytes) -> None:
    """Write a new file atomically, never overwriting: a temporary file in the same folder,
    hard-linked to ``path`` (which fails if ``path`` exists), then removed."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise Rejected("duplicate", f"{path} already exists; entries are never overwritten") from None
        except OSError:  # a file system without hard links: exclusive create instead
            fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd2, "wb") as f:
                f.write(data)
    finally:
        tmp.unlink(missing_ok=True)


def _write(ctx: Context) -> Path:
    entry = make_entry(ctx.doc, ctx.pred_sha256, ctx.pred_bytes, ctx.code_url, stored=ctx.pred_stored)
    check_entry_schema(entry)
    folder = ctx.board.task_dir(ctx.task.name)
    entry_path = folder / f"{entry_stem(entry)}.json"
    files = []
    if ctx.pred_stored:
        files.append((predictions_path(entry_path), bytes(ctx.pred_source)))
    if ctx.mark is not None:
        files.append((mark_path(entry_path), (json.dumps(ctx.mark, indent=2, sort_keys=True, ensure_ascii=False,
                                                         allow_nan=False) + "\n").encode("utf-8")))
    text = json.dumps(entry, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    files.append((entry_path, text.encode("utf-8")))  # last: an entry file means everything is there
    for p, _ in files:
        if os.path.lexists(p):
            raise Rejected("duplicate", f"{p} already exists; entries are never overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for p, data in files:
            _write_new(p, data)
            written.append(p)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return entry_path


def submit(results_path: Path, predictions_path: Path | None = None, board: Board = Board(),
           code_url: str | None = None, data_root: Path | str = ".", reproduce: bool = False,
           options: Options | None = None) -> Path:
    """Run every submit check on a results file and, if all pass, add the entry to the board
    under the board's lock (the checks that read the board run again inside it).

    Returns:
        The path of the new entry JSON.
    Raises:
        Rejected: the first refusal (nothing is written).
    """
    from filelock import FileLock, Timeout

    options = options or Options(reproduce=reproduce)
    ctx = Context("submit", board, Path(data_root), options, path=Path(results_path),
                  predictions_path=Path(predictions_path) if predictions_path else None, code_url=code_url)
    try:
        run_checks(ctx)
        _before_lock(ctx)
        Path(board.root).mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(board.lock), timeout=LOCK_TIMEOUT_S):
                run_checks(ctx, [c.name for c in CHECKS if c.board])
                return _write(ctx)
        except Timeout:
            raise Rejected("board-busy", f"another submit held {board.lock} for {LOCK_TIMEOUT_S} s") from None
    finally:
        ctx.close()


def validate_entry(path: Path, board: Board, task_entries: list, options: Options = Options(),
                   data_root: Path | str = ".", cache: dict | None = None) -> tuple[dict, str]:
    """Every validate check on one stored entry, against ``task_entries`` ((path, entry) of the
    other entries of its task). Returns (entry, report status: ``"OK"`` or ``"OK (notes)"``).

    Raises:
        Rejected: the first refusal.
    """
    ctx = Context("validate", board, Path(data_root), options, path=Path(path), task_entries=task_entries,
                  cache=cache if cache is not None else {})
    try:
        run_checks(ctx)
    finally:
        ctx.close()
    return ctx.entry, "OK" + (f" ({'; '.join(ctx.notes)})" if ctx.notes else "")


__all__ = ["CHECKS", "Check", "Context", "Options", "MARK_SUFFIX", "PREDICTIONS_SUFFIX", "check_document",
           "check_results_file", "read_entry", "run_checks", "submit", "validate_entry"]
