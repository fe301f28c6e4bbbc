"""Leaderboard: what a hostile submitter found, each case refused by its OWN check (the pipeline
stamps every refusal with the name of the check that gave it) with the board left unchanged;
every row of ``leaderboard.pipeline.CHECKS`` has a case here that only it refuses
(``test_every_check_has_a_case``); and one real --quick results file of every task is rescored
through the pipeline."""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run as bench_run
from benchmarks.tasks import TASKS, get_task
from leaderboard import pipeline
from leaderboard.board import MARK_SUFFIX, Board, entry_stem, make_entry, mark_path, rank_key
from leaderboard.checks import ABS_TOL, REL_TOL, metric_differences, rescore
from leaderboard.errors import Rejected
from leaderboard.pipeline import CHECKS, Context, Options, check_results_file, validate_entry
from leaderboard.render import render
from leaderboard.safeio import canonical_json, sha256_hex
from leaderboard.schema import check_entry_schema
from leaderboard.validate import validate

TASK = "pointcloud-reconstruction"
COVERED: dict[str, list[str]] = {}  # check name -> tests that make it refuse


def covers(*names):
    """Mark a test as the case of the named checks (it asserts that they refuse it)."""
    def mark(fn):
        for n in names:
            COVERED.setdefault(n, []).append(fn.__name__)
        return fn
    return mark


# ---------------------------------------------------------------------------------------------- helpers

def run_benchmark(argv: list[str]) -> int:
    """``python -m benchmarks.run ARGV`` in-process, with sys.argv as the shell would set it (the
    results record it as their command)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["benchmarks/run.py", *argv])
        return bench_run.main(argv)


def tree(root: Path) -> dict:
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def npz_bytes(arrays: dict, order=None, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name in order or arrays:
            member = io.BytesIO()
            np.save(member, arrays[name], allow_pickle=False)
            zf.writestr(f"{name}.npy", member.getvalue())
    return buf.getvalue()


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def submission(src: Path, dest: Path, edit=None, arrays: dict | None = None, raw: bytes | None = None,
               text: str | None = None) -> Path:
    """A copy of the results ``src`` (+ predictions) in ``dest``: ``edit(doc)`` applied, the
    predictions replaced by ``arrays`` (or raw bytes) with their sha256/size recorded."""
    dest.mkdir(parents=True, exist_ok=True)
    doc = json.loads(src.read_text())
    pred = dest / doc["predictions"]["file"]
    if raw is None and arrays is not None:
        raw = npz_bytes(arrays)
    if raw is None:
        shutil.copy(src.parent / doc["predictions"]["file"], pred)
    else:
        pred.write_bytes(raw)
        doc["predictions"]["sha256"], doc["predictions"]["bytes"] = hashlib.sha256(raw).hexdigest(), len(raw)
    if edit:
        edit(doc)
    path = dest / src.name
    path.write_text(text if text is not None else json.dumps(doc))
    return path


def refuse(results: Path, board: Board, code: str, check: str, fragment: str | None = None,
           **kw) -> Rejected:
    """Submit must refuse ``results`` with ``code`` from ``check`` and write nothing."""
    before = tree(board.root)
    with pytest.raises(Rejected) as info:
        pipeline.submit(results, board=board, **kw)
    err = info.value
    assert (err.code, getattr(err, "check", None)) == (code, check), str(err)
    if fragment:
        assert fragment in err.message, err.message
    assert "\n" not in err.message
    assert tree(board.root) == before, "a refused submission changed the board"
    return err


def refuse_entry(path: Path, board: Board, code: str, check: str, fragment: str | None = None, **kw) -> Rejected:
    with pytest.raises(Rejected) as info:
        validate_entry(path, board, [], **kw)
    err = info.value
    assert (err.code, getattr(err, "check", None)) == (code, check), str(err)
    if fragment:
        assert fragment in err.message, err.message
    return err


def set_name(name):
    def edit(doc):
        doc["model"]["name"] = name
    return edit


def fake_mark(doc: dict, date: str = "2026-12-02") -> dict:
    from leaderboard.reproduce import MARK_SCHEMA_VERSION

    return {"schema_version": MARK_SCHEMA_VERSION, "results_sha256": sha256_hex(canonical_json(doc)), "date": date,
            "hardware": {"machine": "x86_64", "cpus": 2}, "wall_time_s": 1.0, "densegen_commit": None,
            "comparison": "predictions", "predictions_sha256": doc["predictions"]["sha256"], "identical": True,
            "max_abs_diff": 0.0, "metrics_max_rel_diff": 0.0, "tolerance": {"pred_rtol": 1e-4}}


@pytest.fixture
def fake_reproduce(monkeypatch):
    """leaderboard.reproduce.reproduce replaced by one that returns a valid mark at once."""
    calls = []

    def fake(doc, stored, data_root, work_dir=None, **kw):
        calls.append((doc, stored, work_dir))
        return fake_mark(doc)

    monkeypatch.setattr("leaderboard.reproduce.reproduce", fake)
    return calls


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Real full point-cloud runs: blur (sigma 0.1 and 0.2) and identity."""
    out = tmp_path_factory.mktemp("runs")
    paths = {}
    for key, argv in {"blur": ["--model", "blur", "--model-arg", "sigma=0.1"],
                      "blur2": ["--model", "blur", "--model-arg", "sigma=0.2"],
                      "identity": ["--model", "identity"]}.items():
        d = out / key
        assert run_benchmark([*argv, "--task", TASK, "--out", str(d), "--no-progress"]) == 0
        (paths[key],) = d.glob("*.json")
    return paths


@pytest.fixture(scope="module")
def blur(runs) -> Path:
    return runs["blur"]


@pytest.fixture(scope="module")
def board(runs, tmp_path_factory) -> Board:
    """A board holding the blur run under the name 'pace-xo' (never written to by the tests)."""
    b = Board(tmp_path_factory.mktemp("board"))
    src = submission(runs["blur"], tmp_path_factory.mktemp("pace"), set_name("pace-xo"))
    pipeline.submit(src, board=b)
    return b


@pytest.fixture
def empty(tmp_path) -> Board:
    return Board(tmp_path / "board")


@pytest.fixture(scope="module")
def qm9_test():
    """(gdb indices, labels (n, 12)) of the qm9 task's test split."""
    from benchmarks.qm9 import load_qm9
    from benchmarks.task_qm9 import split_rows

    data = load_qm9(progress=False)
    rows = split_rows(data, quick=False)["test"]
    return data["index"][rows], data["targets"][rows]


def qm9_submission(blur: Path, dest: Path, gdb, y_pred, command: str | None = None, protocol: dict | None = None,
                   name: str = "labels-copy") -> Path:
    """A qm9 results file made from predictions ``y_pred`` (seeds, n, 12), its metrics computed
    by the task's own scorer (as an honest runner would write them)."""
    from benchmarks.qm9 import TARGETS

    task = get_task("qm9")
    arrays = {"gdb_index": np.asarray(gdb), "y_pred": np.asarray(y_pred, np.float64), "targets": np.array(TARGETS)}
    try:
        per_seed = task.score(arrays, ".", quick=False)
    except ValueError:  # not the test split: metrics as a cheater would write them
        per_seed = [{"seed": s, "avg_mae": 0.0} for s in range(len(y_pred))]
    n = len(per_seed)

    def edit(doc):
        doc["model"]["name"] = name
        doc["task"] = task.record(None)
        doc["protocol"] = protocol or {"quick": False, "seeds": list(range(n)), "head": "paper000"}
        doc["metrics"] = {"per_seed": per_seed, "aggregate": task.aggregate(per_seed)}
        doc["command"] = command or (f"python -m benchmarks.run --model blur --model-arg sigma=0.1 --task qm9 --seeds {n} "
                                     "--out results --no-progress")
    return submission(blur, dest, edit, arrays=arrays)


# ---------------------------------------------------------------------------------------------- the list itself

def test_every_check_has_a_case():
    names = [c.name for c in CHECKS]
    assert len(set(names)) == len(names) and all(c.fn.__name__ == c.name for c in CHECKS)
    assert sorted(set(names) - set(COVERED)) == [], "checks without a refusal test"
    assert sorted(set(COVERED) - set(names)) == []
    codes = {code for c in CHECKS for code in c.codes}
    assert {"duplicate-predictions", "matches-labels", "command-mismatch", "bad-dtype", "too-deep", "npy-header",
            "symlink", "identical-seeds", "lookalike-name", "bad-date", "bad-parameters", "bad-hardware"} <= codes


def test_every_task_declares_its_arrays():
    for name in TASKS:
        task = get_task(name)
        assert task.prediction_dtypes, name
        assert all(set(k) <= set("biufcUS") for k in task.prediction_dtypes.values())
        assert all(any(__import__("fnmatch").fnmatchcase(a, p) for p in task.prediction_dtypes)
                   for a in task.model_predictions), name
        assert task.primary_metric in task.perfect_scores, name  # a perfect primary metric always needs a reproduction
        assert task.primary_metric not in task.optional_weight_metrics


# ---------------------------------------------------------------------------------------------- reading, parsing

@covers("read_results")
def test_results_symlink_loop_and_symlink(blur, empty, tmp_path):
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    refuse(loop, empty, "symlink", "read_results", "symbolic link")
    d = tmp_path / "d"
    d.symlink_to(d)
    err = refuse(d / "r.json", empty, "unreadable", "read_results", "cannot be read")
    assert "Errno" not in err.message or "levels" in err.message
    link = tmp_path / "link.json"
    link.symlink_to(blur)
    refuse(link, empty, "symlink", "read_results")


@covers("read_predictions")
def test_predictions_symlink_to_a_file_outside_is_never_read(blur, empty, tmp_path):
    secret = tmp_path / "secret" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----" + b"x" * 12318)  # 12,345 bytes
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    path = submission(blur, tmp_path / "sub")
    doc = json.loads(path.read_text())
    pred = path.parent / doc["predictions"]["file"]
    pred.unlink()
    pred.symlink_to(secret)
    err = refuse(path, empty, "symlink", "read_predictions", "symbolic link")
    assert digest not in err.message and "12,345" not in err.message and "12345" not in err.message
    err = refuse(path, empty, "symlink", "read_predictions", predictions_path=pred)
    assert digest not in err.message
    pred.unlink()
    pred.symlink_to(pred)  # a loop
    refuse(path, empty, "symlink", "read_predictions")
    pred.unlink()
    shutil.copy(blur.parent / doc["predictions"]["file"], pred)
    with open(pred, "ab") as f:
        f.write(b"\0")
    refuse(path, empty, "predictions-hash", "read_predictions", "not the file the run wrote")


@covers("parse_json")
def test_deep_nesting_is_refused_at_parse_time(blur, empty, tmp_path):
    """A 2 KB results file with a list nested 244 deep inside a metric: RecursionError before."""
    deep = "[" * 244 + "1" + "]" * 244

    def edit(doc):
        doc["metrics"]["per_seed"][0]["extra"] = "@"
    path = submission(blur, tmp_path / "sub", edit)
    path.write_text(path.read_text().replace('"@"', deep))
    assert path.stat().st_size < 8000
    refuse(path, empty, "too-deep", "parse_json", "248 deep; the limit is 32")  # 244 + metrics/per_seed/[]/{}
    path.write_text("[" * 100_000)
    refuse(path, empty, "too-deep", "parse_json")
    path.write_text('{"a": "' + "[" * 5000 + '"}')  # brackets inside a string do not count
    refuse(path, empty, "schema-version", "results_schema")
    path.write_text(blur.read_text().replace('"wall_time_s": ', '"wall_time_s": 1e400, "x": ', 1))
    refuse(path, empty, "non-finite", "parse_json")


@covers("entry_schema", "read_entry_file", "entry_integrity", "board_entries")
def test_deep_entry_on_the_board_is_reported_not_a_crash(board, blur, tmp_path):
    """An entry nested too deep makes validate report it, render refuse and submit say the
    board is invalid: no RecursionError anywhere."""
    b = Board(tmp_path / "b")
    shutil.copytree(board.root, b.root)
    folder = b.entries / TASK
    bad = folder / "evil-000000000000.json"
    bad.write_text('{"schema_version": "densegen-leaderboard-entry-2", "x": ' + "[" * 244 + "]" * 244 + "}")
    report = dict(validate(b, do_rescore=False))
    assert report[bad].startswith("[too-deep]")
    with pytest.raises(Rejected, match="too-deep"):
        render(b)
    sub = submission(blur, tmp_path / "sub", set_name("another"))
    refuse(sub, b, "board-invalid", "board_entries", "too-deep")
    refuse_entry(bad, b, "too-deep", "parse_json")
    bad.write_text('{"schema_version": "densegen-leaderboard-entry-1"}')
    refuse_entry(bad, b, "schema-version", "entry_schema")
    bad.unlink()
    good = b.entry_files()[0]
    refuse_entry(folder / "missing-0123456789ab.json", b, "missing-file", "read_entry_file")
    entry = json.loads(good.read_text())
    entry["accepted"] = "2026-12-01T00:00:00.000000Z"  # an earlier acceptance typed in
    good.write_text(json.dumps(entry))
    refuse_entry(good, b, "tampered", "entry_integrity", "edited after submission")


@covers("board_entries")
def test_board_entries_are_those_of_the_task_and_variant(board, runs):
    ctx = Context("submit", board, doc=json.loads(runs["blur"].read_text()))
    ctx.task = get_task(TASK)
    pipeline.board_entries(ctx)
    assert [e["results"]["model"]["name"] for _, e in ctx.others] == ["pace-xo"]
    other = copy.deepcopy(ctx.others[0][1])
    other["results"]["task"]["variant"] = "heavy-atoms"
    ctx.task_entries = [(Path("a.json"), other), ctx.others[0]]
    pipeline.board_entries(ctx)
    assert len(ctx.others) == 1 and ctx.others[0][1]["results"]["task"]["variant"] == "with-h"


# ---------------------------------------------------------------------------------------------- fields

@covers("parameters")
@pytest.mark.parametrize("literal", ["1e30", "1.0", "10000000000000", "-1", "true"])
def test_absurd_parameter_counts(literal, blur, empty, tmp_path):
    path = submission(blur, tmp_path / "sub", lambda d: d["model"].__setitem__("parameters", "@"))
    path.write_text(path.read_text().replace('"@"', literal))
    code, check = ("bad-parameters", "parameters") if literal not in ("-1", "true") else ("schema", "results_schema")
    if literal == "true":
        code = "wrong-type"
    refuse(path, empty, code, check)


def test_parameters_in_range_pass(blur, empty, tmp_path):
    path = submission(blur, tmp_path / "sub", lambda d: d["model"].__setitem__("parameters", 10 ** 13 - 1))
    check_results_file(path, board=empty, stop_after="parameters")


@covers("hardware")
@pytest.mark.parametrize("hw", [{}, {"machine": "x86_64", "cpus": -4}, {"machine": "", "cpus": 2},
                                {"machine": "x86_64", "cpus": 0}, {"machine": "x86_64"},
                                {"machine": "x86_64", "cpus": 2, "cpu": "A" * 10_000},
                                {"machine": "x86_64", "cpus": 2, "gpu": {"name": "H100"}},
                                {"machine": "x86_64", "cpus": 2.5}, {"machine": "x86_64", "cpus": True},
                                {"machine": "x86_64", "cpus": 2, "cpu": "evil\x1b[2J"}])
def test_unchecked_hardware(hw, blur, empty, tmp_path):
    path = submission(blur, tmp_path / "sub", lambda d: d["environment"].__setitem__("hardware", hw))
    refuse(path, empty, "bad-hardware", "hardware")


@covers("environment")
@pytest.mark.parametrize("edit", [lambda e: e.__setitem__("python", "3" * 1000),
                                  lambda e: e.__setitem__("shell_history", "..."),
                                  lambda e: e["packages"].__setitem__("numpy", "1" * 500),
                                  lambda e: e.__setitem__("packages", {f"p{i}": "1" for i in range(1000)})])
def test_unchecked_environment(edit, blur, empty, tmp_path):
    path = submission(blur, tmp_path / "sub", lambda d: edit(d["environment"]))
    refuse(path, empty, "bad-environment", "environment")


@covers("wall_time")
def test_absurd_wall_time(blur, empty, tmp_path):
    path = submission(blur, tmp_path / "sub", lambda d: d.__setitem__("wall_time_s", 1e300))
    refuse(path, empty, "bad-wall-time", "wall_time")


@covers("dates")
@pytest.mark.parametrize("created", ["0000-00-00T00:00:00Z", "9999-99-99T99:99:99Z", "2023-12-31T23:59:59+00:00",
                                     "2026-02-30T10:00:00Z", "2026-11-20T10:00:00+99:00", "2026-11-20T24:00:00Z",
                                     "FUTURE"])
def test_unreal_dates(created, blur, empty, tmp_path):
    import datetime as dt

    if created == "FUTURE":
        created = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).isoformat(timespec="seconds")
    path = submission(blur, tmp_path / "sub", lambda d: d.__setitem__("created", created))
    refuse(path, empty, "bad-date", "dates")


def test_clock_skew_of_hours_is_fine(blur, empty, tmp_path):
    import datetime as dt

    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=5)).isoformat(timespec="seconds")
    path = submission(blur, tmp_path / "sub", lambda d: d.__setitem__("created", soon))
    check_results_file(path, board=empty, stop_after="dates")


def test_ranking_ties_are_broken_by_acceptance_not_by_the_submitters_date(runs):
    """Two entries with the same score: the one accepted first ranks first, whatever `created`
    its results claim; then the content hash."""
    task = get_task(TASK)
    doc = json.loads(runs["blur"].read_text())
    early_claim = {**copy.deepcopy(doc), "created": "2024-01-02T00:00:00+00:00"}
    early_claim["model"]["name"] = "claims-2024"
    first = make_entry(doc, doc["predictions"]["sha256"], doc["predictions"]["bytes"], None,
                       accepted="2026-12-01T10:00:00.000001Z")
    second = make_entry(early_claim, "1" * 64, 10, None, accepted="2026-12-01T10:00:00.000002Z")
    for e in (first, second):
        check_entry_schema(e)
    ranked = sorted([second, first], key=lambda e: rank_key(e, task))
    assert [e["results"]["model"]["name"] for e in ranked] == [doc["model"]["name"], "claims-2024"]
    same = make_entry(early_claim, "1" * 64, 10, None, accepted=first["accepted"])
    assert rank_key(same, task)[:2] == rank_key(first, task)[:2]
    assert sorted([same, first], key=lambda e: rank_key(e, task))[0]["content_sha256"] == \
        min(same["content_sha256"], first["content_sha256"])
    higher = type("HigherIsBetter", (type(task),), {"lower_is_better": False})()
    assert rank_key(first, higher)[0] == -rank_key(first, task)[0]
    broken = copy.deepcopy(first)
    broken["results"]["metrics"]["aggregate"][task.primary_metric]["mean"] = None
    assert rank_key(broken, task)[0] == rank_key(broken, higher)[0] == float("inf")  # last either way


def test_submit_writes_its_own_acceptance_time(board):
    import datetime as dt

    entry = json.loads(board.entry_files()[0].read_text())
    accepted = pipeline.parse_time(entry["accepted"])
    assert abs(dt.datetime.now(dt.timezone.utc) - accepted) < dt.timedelta(hours=2)
    assert entry["schema_version"] == "densegen-leaderboard-entry-2" and entry["predictions"]["stored"] is True


# ---------------------------------------------------------------------------------------------- names

@covers("model_name", "results_schema")
def test_path_like_and_control_names(blur, empty, tmp_path):
    refuse(submission(blur, tmp_path / "a", set_name("../../x")), empty, "unsafe-name", "model_name")
    refuse(submission(blur, tmp_path / "b", set_name("x\u202ey")), empty, "control-char", "model_name")
    refuse(submission(blur, tmp_path / "c", set_name("x\U000e0001y")), empty, "control-char", "model_name")
    refuse(submission(blur, tmp_path / "d", lambda d: d["model"].__setitem__("import", "os.system('x')")), empty,
           "schema", "results_schema")


@covers("lookalike_name")
@pytest.mark.parametrize("name", ["pacе-xo",         # one Cyrillic е: mixed scripts
                                  "ｐａｃｅ-ｘｏ",  # fullwidth: NFKC differs
                                  "𝐩𝐚𝐜𝐞-xo",         # mathematical bold
                                  "Ωmega"])
def test_lookalike_names_on_their_own(name, blur, board, tmp_path):
    refuse(submission(blur, tmp_path / "sub", set_name(name)), board, "lookalike-name", "lookalike_name")


@covers("same_name")
@pytest.mark.parametrize("name,code", [("расе-хо", "lookalike-name"),  # all Cyrillic, single script
                                       ("pace-x0", "lookalike-name"),  # digit zero for o
                                       ("PACE_XO", "duplicate"), ("Pace.Xo", "duplicate"), ("pace xo", "duplicate")])
def test_names_of_an_existing_entry(name, code, runs, board, tmp_path):
    refuse(submission(runs["blur2"], tmp_path / "sub", set_name(name)), board, code, "same_name")


@pytest.mark.parametrize("name", ["pace-xo-2", "日本語モデル", "модель-2"])
def test_legitimate_names_pass(name, runs, board, tmp_path):
    check_results_file(submission(runs["blur2"], tmp_path / "sub", set_name(name)), board=board, stop_after="same_name")


def test_a_legitimate_name_is_not_a_duplicate_of_a_lookalike(blur, runs, tmp_path):
    """Today every all-non-ASCII name had the stem 'model': a legitimate 'model' was refused as a
    duplicate of 'модель' (Russian for model, one script, a legitimate name of its own)."""
    b = Board(tmp_path / "b")
    doc = json.loads(runs["blur2"].read_text())
    doc["model"]["name"] = "модель"
    entry = make_entry(doc, doc["predictions"]["sha256"], doc["predictions"]["bytes"], None)
    folder = b.task_dir(TASK)
    folder.mkdir(parents=True)
    (folder / f"{entry_stem(entry)}.json").write_text(json.dumps(entry))
    assert entry_stem(entry).startswith("model-")
    sub = submission(blur, tmp_path / "sub", set_name("model"))
    ctx = check_results_file(sub, board=b, stop_after="same_name")
    assert [e["results"]["model"]["name"] for _, e in ctx.others] == ["модель"]


@covers("code_url")
def test_code_url(blur, empty):
    refuse(blur, empty, "bad-code-url", "code_url", code_url="https://x.org/\u202e")


# ---------------------------------------------------------------------------------------------- task, protocol, command

@covers("task_table")
def test_wrong_variant(blur, empty, tmp_path):
    refuse(submission(blur, tmp_path / "sub", lambda d: d["task"].__setitem__("variant", "qm9")), empty,
           "unknown-variant", "task_table")


@covers("full_run")
def test_quick_flag(blur, empty, tmp_path):
    refuse(submission(blur, tmp_path / "sub", lambda d: d["protocol"].__setitem__("quick", True)), empty,
           "quick-run", "full_run")


@covers("release_built")
def test_auto_built(blur, empty, tmp_path):
    refuse(submission(blur, tmp_path / "sub", lambda d: d["protocol"].__setitem__("auto_build", {"x": 1})), empty,
           "auto-built-release", "release_built")


@covers("enough_seeds", "seed_ids", "primary_metric")
def test_seeds_and_primary(blur, empty, tmp_path, qm9_test):
    gdb, y = qm9_test
    sub = qm9_submission(blur, tmp_path / "a", gdb, y[None] + 1.0)
    refuse(sub, empty, "too-few-seeds", "enough_seeds", "needs at least 5")

    def dup(doc):
        doc["metrics"]["per_seed"][1]["seed"] = 0
    refuse(submission(blur, tmp_path / "b", lambda d: (d["metrics"]["per_seed"].append(copy.deepcopy(
        d["metrics"]["per_seed"][0])), dup(d))), empty, "duplicate-seed", "seed_ids")
    refuse(submission(blur, tmp_path / "c", lambda d: d["metrics"]["aggregate"]["penalized_mean_deviation"]
                      .__setitem__("mean", None)), empty, "missing-field", "primary_metric")


@covers("recorded_command")
@pytest.mark.parametrize("command,code,fragment", [
    ("rm -rf /", "bad-command", "is not `python -m benchmarks.run"),
    ("python -m benchmarks.run --model", "bad-command", "expected one argument"),
    ("python -m benchmarks.run --model blur --task protein-folding", "bad-command", "invalid choice"),
    ("python -m benchmarks.run --model 'blur", "bad-command", "does not split"),
    ("python -m benchmarks.run --help", "bad-command", "not a command line"),
    ("python -m benchmarks.run --model blur --model-arg sigma=0.1 --task pointcloud-reconstruction --quick",
     "command-mismatch", "--quick is given"),
    ("python -m benchmarks.run --model blur --model-arg sigma=0.1 --task qm9", "command-mismatch", "does not include"),
    ("python -m benchmarks.run --model identity --model-arg sigma=0.1", "command-mismatch", "--model 'identity'"),
    ("python -m benchmarks.run --model blur --model-arg sigma=0.3", "command-mismatch", "--model-arg gives"),
    ("python -m benchmarks.run --model blur", "command-mismatch", "--model-arg gives"),
    ("python -m benchmarks.run --model blur --model-arg sigma", "command-mismatch", "expects key=value"),
])
def test_recorded_command_must_match(command, code, fragment, blur, empty, tmp_path):
    sub = submission(blur, tmp_path / "sub", lambda d: d.__setitem__("command", command))
    refuse(sub, empty, code, "recorded_command", fragment)


def test_recorded_command_seeds_and_variant(blur, empty, tmp_path, qm9_test):
    gdb, y = qm9_test
    preds = np.stack([y + 0.1 * (s + 1) for s in range(5)])
    sub = qm9_submission(blur, tmp_path / "a", gdb, preds,
                         command="python -m benchmarks.run --model blur --model-arg sigma=0.1 --task qm9 --seeds 3")
    refuse(sub, empty, "command-mismatch", "recorded_command", "--seeds gives 3, the results hold 5")
    sub = qm9_submission(blur, tmp_path / "b", gdb, preds,
                         command="python -m benchmarks.run --model blur --model-arg sigma=0.1 --task qm9")
    refuse(sub, empty, "command-mismatch", "recorded_command", "--seeds gives 3")  # the task's default
    density = get_task("density-reconstruction")

    def to_density(doc):
        doc["task"] = density.record("qm9")
        doc["metrics"] = {"per_seed": [{"seed": 0, "nmae": 1.0}], "aggregate": {"nmae": {"mean": 1.0, "std": 0.0}}}
        doc["command"] = ("python -m benchmarks.run --model blur --model-arg sigma=0.1 --task density-reconstruction "
                          "--variant pubchem")
    refuse(submission(blur, tmp_path / "c", to_density), empty, "command-mismatch", "recorded_command",
           "--variant gives 'pubchem'")
    # the default variant of a command without --variant is the task's first, qm9: it matches
    ctx = check_results_file(submission(blur, tmp_path / "d", lambda d: (to_density(d), d.__setitem__(
        "command", "python -m benchmarks.run --model blur --model-arg sigma=0.1"))), board=empty,
        stop_after="recorded_command")
    assert ctx.task.name == "density-reconstruction"


# ---------------------------------------------------------------------------------------------- duplicates

@covers("same_entry")
def test_same_results_again(blur, board, tmp_path):
    refuse(submission(blur, tmp_path / "sub", set_name("pace-xo-other")), board, "duplicate", "same_entry",
           "identical predictions (same sha256)")


@covers("duplicate_predictions")
@pytest.mark.parametrize("how", ["uncompressed", "reordered", "noise", "copied-positions-float64"])
def test_predictions_of_another_entry_reencoded(how, blur, board, tmp_path):
    doc = json.loads(blur.read_text())
    arrays = load(blur.parent / doc["predictions"]["file"])
    if how == "uncompressed":
        raw = npz_bytes(arrays)
    elif how == "reordered":
        raw = npz_bytes(arrays, order=sorted(arrays, reverse=True), compress=True)
    elif how == "noise":
        raw = npz_bytes({**arrays, "positions": arrays["positions"] + np.float32(1e-6)})
    else:
        raw = npz_bytes({**arrays, "positions": arrays["positions"].astype(np.float64)})
    sub = submission(blur, tmp_path / "sub", set_name("my-own-model"), raw=raw)
    refuse(sub, board, "duplicate-predictions", "duplicate_predictions", "entry pace-xo-")


def test_other_predictions_are_not_duplicates(blur, board, tmp_path):
    doc = json.loads(blur.read_text())
    arrays = load(blur.parent / doc["predictions"]["file"])
    sub = submission(blur, tmp_path / "sub", set_name("my-own-model"),
                     arrays={**arrays, "positions": arrays["positions"] + np.float32(0.01)})
    check_results_file(sub, board=board, stop_after="duplicate_predictions")


def test_a_copied_seed_is_a_duplicate(blur, tmp_path, qm9_test):
    gdb, y = qm9_test
    b = Board(tmp_path / "b")
    theirs = np.stack([y + 0.5 + 0.01 * s for s in range(5)])
    pipeline.submit(qm9_submission(blur, tmp_path / "a", gdb, theirs, name="theirs"), board=b)
    mine = np.stack([y + 0.7 + 0.01 * s for s in range(5)])
    mine[3] = theirs[1]
    refuse(qm9_submission(blur, tmp_path / "c", gdb, mine, name="mine"), b, "duplicate-predictions",
           "duplicate_predictions", "seed 3 of the predictions equals seed 1")


# ---------------------------------------------------------------------------------------------- npz

@covers("npz_members")
def test_npy_header_declaring_terabytes(blur, empty, tmp_path):
    """A header declaring shape (10^12, 3) float64 (21.8 TiB) on a 96-byte member: refused from
    the header, nothing allocated."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12, 3)})
    member.write(np.zeros(12).tobytes())
    doc = json.loads(blur.read_text())
    arrays = load(blur.parent / doc["predictions"]["file"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in arrays.items():
            m = io.BytesIO()
            np.save(m, v)
            zf.writestr(f"{k}.npy", m.getvalue() if k != "positions" else member.getvalue())
    sub = submission(blur, tmp_path / "sub", raw=buf.getvalue())
    refuse(sub, empty, "npy-header", "npz_members", "(1000000000000, 3)")
    m = io.BytesIO()
    m.write(b"\x93NUMPY\x01\x00" + (20).to_bytes(2, "little") + b"{'descr': 1}        ")
    sub = submission(blur, tmp_path / "sub2", raw=_zip([("positions.npy", m.getvalue())]))
    refuse(sub, empty, "npy-header", "npz_members", "unreadable .npy header")
    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = _zip([("weights.npy", member.getvalue()), ("weights.npy", member.getvalue())])
    refuse(submission(blur, tmp_path / "sub3", raw=twice), empty, "not-npz", "npz_members", "repeats member names")
    sub = submission(blur, tmp_path / "sub4", raw=_zip([("../a.npy", b"x")]))
    refuse(sub, empty, "not-npz", "npz_members", "not top-level")


def _zip(members: list) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


@covers("prediction_dtypes")
@pytest.mark.parametrize("array,value,code", [
    ("positions", lambda a: a.astype(np.complex128) + 1j, "bad-dtype"),   # the imaginary part was dropped
    ("weights", lambda a: a > 0, "bad-dtype"),
    ("positions", lambda a: a.astype(str), "bad-dtype"),
    ("gdb_index", lambda a: a.astype(np.float64), "bad-dtype"),
    ("offsets", lambda a: a.astype(np.float32), "bad-dtype"),
    ("extra", lambda a: np.zeros(3), "predictions-invalid"),
    ("weights", None, "predictions-invalid"),
])
def test_prediction_dtypes(array, value, code, blur, empty, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "PREDICTIONS_MAX_BYTES", 1 << 30)  # complex/str copies outgrow the stored-file cap
    doc = json.loads(blur.read_text())
    arrays = load(blur.parent / doc["predictions"]["file"])
    if value is None:
        del arrays[array]
    else:
        arrays[array] = value(arrays.get(array, arrays["weights"]))
    refuse(submission(blur, tmp_path / "sub", arrays=arrays), empty, code, "prediction_dtypes")


@covers("load_predictions")
def test_nan_prediction(blur, empty, tmp_path):
    doc = json.loads(blur.read_text())
    arrays = load(blur.parent / doc["predictions"]["file"])
    arrays["positions"] = arrays["positions"].copy()
    arrays["positions"][5, 1] = np.inf
    refuse(submission(blur, tmp_path / "sub", arrays=arrays), empty, "non-finite", "load_predictions")


# ---------------------------------------------------------------------------------------------- cherry-picking, labels

@covers("identical_seeds")
def test_five_copies_of_the_labels_are_not_five_seeds(blur, empty, tmp_path, qm9_test):
    """The cherry-pick: a truthy protocol.subset, five copies of perfect predictions."""
    gdb, y = qm9_test
    sub = qm9_submission(blur, tmp_path / "a", gdb, np.stack([y] * 5),
                         protocol={"quick": False, "subset": True, "seeds": [0, 1, 2, 3, 4]})
    refuse(sub, empty, "identical-seeds", "identical_seeds", "seeds 0 and 1")
    noisy = np.stack([y + 1e-7 * s for s in range(5)])  # copies up to noise
    refuse(qm9_submission(blur, tmp_path / "b", gdb, noisy), empty, "identical-seeds", "identical_seeds")


def test_seeds_of_deterministic_tasks_are_exempt():
    assert not get_task(TASK).trained_heads and not get_task("density-reconstruction").trained_heads
    assert all(get_task(t).trained_heads for t in ("qm9", "qm9-small", "qm9-tensor", "crystal-energy"))


@covers("rescore_metrics")
def test_predictions_for_50_of_13215_molecules(blur, empty, tmp_path, qm9_test):
    """Whatever the protocol says (subset: true), what is scored is the task's pinned test split."""
    gdb, y = qm9_test
    sub = qm9_submission(blur, tmp_path / "a", gdb[:50], np.stack([y[:50] + 0.3 * s for s in range(5)]),
                         protocol={"quick": False, "subset": {"n": 50}, "seeds": [0, 1, 2, 3, 4]})
    refuse(sub, empty, "predictions-invalid", "rescore_metrics", "predictions cover 50 molecules, the test split "
                                                                  "has 13215")


def test_rescoring_reads_nothing_of_the_protocol_but_quick(blur, empty, qm9_test, tmp_path):
    class Spy(dict):
        read: set = set()

        def __getitem__(self, k):
            Spy.read.add(k)
            return super().__getitem__(k)

        def get(self, k, default=None):
            Spy.read.add(k)
            return super().get(k, default)

    gdb, y = qm9_test
    sub = qm9_submission(blur, tmp_path / "a", gdb, np.stack([y + 0.2 * (s + 1) for s in range(5)]),
                         protocol={"quick": False, "subset": True, "n": {"test": 50}, "seeds": [0]})
    ctx = check_results_file(sub, board=empty, stop_after="identical_seeds")
    ctx.doc["protocol"] = Spy(ctx.doc["protocol"])
    Spy.read = set()
    pipeline.rescore_metrics(ctx)
    assert Spy.read <= {"quick"} and ctx.rescored and len(ctx.rescored) == 5
    Spy.read = set()
    rescore(ctx.task, ctx.doc, ctx.arrays, ".")
    assert Spy.read == set()


@covers("matches_labels")
def test_labels_as_predictions(blur, empty, tmp_path, qm9_test):
    """avg_mae ~ 0 (the labels, per seed a little noise on one target so the seeds differ)."""
    gdb, y = qm9_test
    preds = np.stack([y.copy() for _ in range(5)])
    for s in range(5):
        preds[s, :, 2] += 1e-4 * (s + 1)  # homo, in Hartree: differs between seeds, MAE < 1e-3
    sub = qm9_submission(blur, tmp_path / "a", gdb, preds)
    refuse(sub, empty, "matches-labels", "matches_labels", "avg_mae")
    # the same with the --quick the run recorded: its own refusal, before the predictions are read
    quick = qm9_submission(blur, tmp_path / "b", gdb, preds,
                           command="python -m benchmarks.run --model blur --model-arg sigma=0.1 --task qm9 --seeds 5 "
                                   "--quick")
    refuse(quick, empty, "command-mismatch", "recorded_command", "--quick is given")


def test_one_seed_at_the_labels_needs_a_reproduction_too():
    task = get_task("crystal-energy")
    per_seed = [{"seed": s, "model": {"buckingham_energy": {"mae": 30.0}}} for s in range(3)]
    per_seed[1]["model"]["buckingham_energy"]["mae"] = 2e-4
    doc = {"metrics": {"per_seed": per_seed, "aggregate": {"buckingham_mae": {"mean": 20.0, "std": 14.1}}}}
    ctx = Context("submit", Board(), doc=doc)
    ctx.task = task
    err = pipeline.matches_labels(ctx)
    assert err.code == "matches-labels" and err.message.startswith("model/buckingham_energy/mae = 0.0002")
    per_seed[1]["model"]["buckingham_energy"]["mae"] = 25.0
    assert pipeline.matches_labels(ctx) is None
    ctx.mark = {"date": "2026-12-02"}
    doc["metrics"]["aggregate"]["buckingham_mae"]["mean"] = 0.0
    assert pipeline.matches_labels(ctx) is None  # reproduced


def test_labels_with_a_reproduction_mark_are_accepted(blur, tmp_path, qm9_test, fake_reproduce):
    gdb, y = qm9_test
    preds = np.stack([y.copy() for _ in range(5)])
    for s in range(5):
        preds[s, :, 2] += 1e-4 * (s + 1)
    b = Board(tmp_path / "b")
    path = pipeline.submit(qm9_submission(blur, tmp_path / "a", gdb, preds), board=b, reproduce=True)
    (doc, stored, work_dir), = fake_reproduce
    assert Path(stored).is_file() and work_dir is not None and not Path(work_dir).exists()  # a temporary folder
    mark = mark_path(path)
    assert json.loads(mark.read_text())["results_sha256"] == json.loads(path.read_text())["results_sha256"]
    assert validate(b) == [(path, "OK (reproduced 2026-12-02)")]
    mark.unlink()
    [(_, status)] = validate(b)
    assert status.startswith("[matches-labels]")


@covers("reproduction")
def test_failed_reproductions(tmp_path, monkeypatch, runs):
    b = Board(tmp_path / "b")
    sub = submission(runs["identity"], tmp_path / "sub")

    def fails(*a, **k):
        raise Rejected("not-reproduced", "array 'positions' differs")
    monkeypatch.setattr("leaderboard.reproduce.reproduce", fails)
    refuse(sub, b, "not-reproduced", "reproduction", "differs", reproduce=True)

    def crashes(*a, **k):
        raise RuntimeError("CUDA out of memory")
    monkeypatch.setattr("leaderboard.reproduce.reproduce", crashes)
    refuse(sub, b, "not-reproduced", "reproduction", "CUDA out of memory", reproduce=True)
    monkeypatch.setattr("leaderboard.reproduce.reproduce", lambda doc, *a, **k: {**fake_mark(doc),
                                                                                "results_sha256": "0" * 64})
    refuse(sub, b, "bad-mark", "reproduction", reproduce=True)


def test_real_reproduction_of_identity(runs, tmp_path):
    """identity reaches the perfect score; submit --reproduce re-runs it for real."""
    b = Board(tmp_path / "b")
    refuse(runs["identity"], b, "matches-labels", "matches_labels")
    path = pipeline.submit(runs["identity"], board=b, reproduce=True)
    mark = json.loads(mark_path(path).read_text())
    assert mark["identical"] and mark["comparison"] == "predictions"
    assert validate(b) == [(path, f"OK (reproduced {mark['date']})")]
    os.symlink("/etc/hostname", tmp_path / "elsewhere.json")
    mark_path(path).unlink()
    mark_path(path).symlink_to(tmp_path / "elsewhere.json")
    report = dict(validate(b))
    assert report[path].startswith("[bad-mark]") and "/etc/hostname" not in report[path]


# ---------------------------------------------------------------------------------------------- rescoring tolerance

def test_metric_off_by_a_millionth_is_refused(blur, empty, tmp_path):
    def edit(doc):
        v = doc["metrics"]["per_seed"][0]["penalized_mean_deviation"] * (1 + 1e-6)
        doc["metrics"]["per_seed"][0]["penalized_mean_deviation"] = v
        doc["metrics"]["aggregate"]["penalized_mean_deviation"]["mean"] = v
    err = refuse(submission(blur, tmp_path / "sub", edit), empty, "metric-mismatch", "rescore_metrics",
                 "per_seed[0].penalized_mean_deviation")
    assert "aggregate.penalized_mean_deviation.mean" in err.message
    assert REL_TOL <= 1e-9 and ABS_TOL <= 1e-12


def test_extra_aggregate_key_is_refused(blur, empty, tmp_path):
    refuse(submission(blur, tmp_path / "sub", lambda d: d["metrics"]["aggregate"].__setitem__(
        "bonus", {"mean": 1.0, "std": 0.0})), empty, "metric-mismatch", "rescore_metrics", "not a metric of this task")


def test_metrics_needing_optional_weights_are_never_compared():
    task = get_task("density-reconstruction")
    assert set(task.optional_weight_metrics) == {"lpips_raw", "lpips_log1p"}
    per_seed = [{"seed": 0, "nmae": 1.0, "lpips_raw": None, "lpips_log1p": None}]
    doc = {"metrics": {"per_seed": [{"seed": 0, "nmae": 1.0, "lpips_raw": 0.25, "lpips_log1p": 0.5}],
                       "aggregate": {**task.aggregate(per_seed), "lpips_raw": {"mean": 0.25, "std": 0.0}}}}
    doc["metrics"]["aggregate"].pop("lpips_log1p")
    assert metric_differences(task, doc, per_seed) == []
    doc["metrics"]["per_seed"][0]["nmae"] = 1.5
    assert metric_differences(task, doc, per_seed)[0].startswith("per_seed[0].nmae")


# ---------------------------------------------------------------------------------------------- large predictions

def test_large_predictions_need_reproduce_and_are_not_stored(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "PREDICTIONS_MAX_BYTES", 1000)
    b = Board(tmp_path / "b")
    sub = submission(runs["blur2"], tmp_path / "sub", set_name("big"))
    refuse(sub, b, "too-large", "read_predictions", "submit with --reproduce")
    path = pipeline.submit(sub, board=b, reproduce=True)
    entry = json.loads(path.read_text())
    assert entry["predictions"]["stored"] is False and entry["predictions"]["bytes"] > 1000
    assert not path.with_name(path.stem + ".predictions.npz").exists()
    mark = json.loads(mark_path(path).read_text())
    assert validate(b) == [(path, f"OK (predictions not stored; reproduced {mark['date']})")]
    mark_path(path).unlink()
    [(_, status)] = validate(b)
    assert status.startswith("[not-reproduced]") and "needs a reproduction mark" in status
    # an entry claiming not-stored predictions that are small enough to store is tampered with
    monkeypatch.setattr(pipeline, "PREDICTIONS_MAX_BYTES", 10 ** 9)
    assert dict(validate(b))[path].startswith("[tampered]")


# ---------------------------------------------------------------------------------------------- the race

def test_two_submits_at_once_under_one_name(runs, tmp_path, monkeypatch):
    """Both pass every check before either writes (a barrier before the lock); the lock makes
    the board checks run again, so exactly one is accepted."""
    b = Board(tmp_path / "b")
    subs = [submission(runs["blur"], tmp_path / "one", set_name("racer")),
            submission(runs["blur2"], tmp_path / "two", set_name("racer"))]
    barrier = threading.Barrier(2, timeout=120)
    monkeypatch.setattr(pipeline, "_before_lock", lambda ctx: barrier.wait())
    results = [None, None]

    def go(i):
        try:
            results[i] = pipeline.submit(subs[i], board=b)
        except Rejected as err:
            results[i] = err

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    accepted = [r for r in results if isinstance(r, Path)]
    refused = [r for r in results if isinstance(r, Rejected)]
    assert len(accepted) == 1 and len(refused) == 1, results
    assert (refused[0].code, refused[0].check) == ("duplicate", "same_name")
    assert len(b.entry_files()) == 1 and validate(b) == [(accepted[0], "OK")]
    assert sorted(p.name for p in (b.entries / TASK).iterdir()) == sorted(
        [accepted[0].name, accepted[0].stem + ".predictions.npz"])  # no temporary files left


# ---------------------------------------------------------------------------------------------- stray files

def test_marks_are_not_stray_but_orphans_are(board, tmp_path):
    b = Board(tmp_path / "b")
    shutil.copytree(board.root, b.root)
    (path,) = b.entry_files()
    entry = json.loads(path.read_text())
    mark_path(path).write_text(json.dumps(fake_mark(entry["results"])))
    orphan = path.with_name("gone-0123456789ab" + MARK_SUFFIX)
    orphan.write_text("{}")
    report = dict(validate(b))
    assert report[path] == "OK (reproduced 2026-12-02)"
    assert report[orphan].startswith("[stray-file]") and "without an entry" in report[orphan]
    assert b.entry_files() == [path]


# ---------------------------------------------------------------------------------------------- every task, for real

QUICK_RUNS = {
    "qm9": ["--model", "inertia"],
    "qm9-small": ["--model", "inertia"],
    "qm9-tensor": ["--model", "inertia"],
    "crystal-energy": ["--model", "none"],
    "pointcloud-reconstruction": ["--model", "identity"],
    "density-reconstruction/qm9": ["--model", "identity", "--variant", "qm9"],
    "density-reconstruction/pubchem": ["--model", "identity", "--variant", "pubchem"],
}


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> tuple[Path, dict]:
    """One real --quick run (2 seeds where seeds train heads) of every task and variant, made
    once: (data root, {run id: results path})."""
    root = tmp_path_factory.mktemp("quick")
    out = {}
    for key, argv in QUICK_RUNS.items():
        task = key.split("/")[0]
        d = root / "out" / key.replace("/", "-")
        assert run_benchmark([*argv, "--task", task, "--quick", "--seeds", "2", "--out", str(d), "--data-root",
                              str(root / "data"), "--no-progress"]) == 0
        (out[key],) = d.glob("*.json")
    return root / "data", out


def _truncate(task: str, arrays: dict) -> dict:
    """The same predictions without their last sample."""
    a = dict(arrays)
    if task == "pointcloud-reconstruction":
        off = a["offsets"]
        return {"gdb_index": a["gdb_index"][:-1], "offsets": off[:-1],
                **{k: a[k][: off[-2]] for k in ("positions", "type_probs", "weights")}}
    if task == "density-reconstruction":
        n = int(np.prod(a["grid_shapes"][-1]))
        return {"keys": a["keys"][:-1], "grid_shapes": a["grid_shapes"][:-1], "grid_values": a["grid_values"][:-n]}
    key = "keys" if task == "crystal-energy" else "gdb_index"
    return {k: (v[:-1] if k == key else v[:, :-1] if k.startswith("y_pred") else v) for k, v in a.items()}


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(QUICK_RUNS))
def test_rescore_a_real_run_of_every_task(key, quick_runs, tmp_path):
    """benchmarks.run --quick results of each task pass every pipeline check (the quick-run and
    seed-count refusals and the labels check aside: a test-only option) and rescore to their
    own numbers; one sample fewer is refused."""
    data_root, paths = quick_runs
    task = key.split("/")[0]
    options = Options(allow_quick=True, skip=frozenset({"matches_labels"}))
    ctx = check_results_file(paths[key], board=Board(tmp_path / "b"), data_root=data_root, options=options)
    assert ctx.task.name == task and ctx.rescored is not None
    assert metric_differences(ctx.task, ctx.doc, ctx.rescored) == []
    assert len(ctx.rescored) == (2 if ctx.task.trained_heads else 1)
    if task == "density-reconstruction":  # a recorded LPIPS (weights present elsewhere) is not compared
        def with_lpips(doc):
            doc["metrics"]["per_seed"][0]["lpips_raw"] = 0.125
            doc["metrics"]["aggregate"]["lpips_raw"] = {"mean": 0.125, "std": 0.0}
        sub = submission(paths[key], tmp_path / "lpips", with_lpips)
        check_results_file(sub, board=Board(tmp_path / "b"), data_root=data_root, options=options)
    short = _truncate(task, ctx.arrays)
    sub = submission(paths[key], tmp_path / "short", raw=npz_bytes(short))
    with pytest.raises(Rejected) as err:
        check_results_file(sub, board=Board(tmp_path / "b"), data_root=data_root, options=options)
    assert (err.value.code, err.value.check) == ("predictions-invalid", "rescore_metrics"), str(err.value)
    with pytest.raises(Rejected) as err:  # the leaderboard itself refuses a quick run
        check_results_file(paths[key], board=Board(tmp_path / "b"), data_root=data_root)
    assert err.value.code == "quick-run"
