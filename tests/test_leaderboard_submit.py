"""Leaderboard submit/validate: an honest benchmarks.run results file is accepted (and shows up in
the rendered README and page); hostile submissions are each refused with their own reason and
leave the board untouched; tampering with a stored entry is caught by validate."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run as bench_run
from benchmarks.tasks import get_task
from leaderboard.__main__ import main as lb_main
from leaderboard.board import Board, content_hash, entry_stem
from leaderboard.checks import check_document
from leaderboard.errors import Rejected
from leaderboard.render import render
from leaderboard.schema import check_results_schema
from leaderboard.submit import submit
from leaderboard.validate import validate

TASK = "pointcloud-reconstruction"


def run_benchmark(argv: list[str]) -> int:
    """``python -m benchmarks.run ARGV`` in this process, with sys.argv set as the shell would
    (the results record sys.argv as their command, which the leaderboard checks)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["benchmarks/run.py", *argv])
        return bench_run.main(argv)


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    """Results JSON of a real, full run of the identity baseline (predictions next to it)."""
    out = tmp_path_factory.mktemp("honest")
    assert run_benchmark(["--model", "identity", "--task", TASK, "--out", str(out), "--no-progress"]) == 0
    return out / f"{TASK}-with-h-identity.json"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    """Results JSON of a real --quick (smoke) run."""
    out = tmp_path_factory.mktemp("quick")
    assert run_benchmark(["--model", "identity", "--task", TASK, "--quick", "--out", str(out), "--no-progress"]) == 0
    return out / f"{TASK}-with-h-identity.json"


@pytest.fixture(scope="module")
def accepted(honest, tmp_path_factory) -> tuple[Board, Path]:
    """A board holding the honest identity entry (submitted once). Identity reconstructs every
    atom exactly (the perfect score), which is accepted only when reproduced: submit re-runs it."""
    board = Board(tmp_path_factory.mktemp("board"))
    path = submit(honest, board=board, code_url="https://github.com/example/densegen-identity", reproduce=True)
    return board, path


def tree(root: Path) -> dict:
    """Every file under ``root`` with its sha256 (to prove nothing was written)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def copy_submission(honest: Path, dest: Path) -> tuple[Path, dict, dict]:
    """Copy the honest results + predictions into ``dest``; returns (json path, doc, arrays)."""
    dest.mkdir(parents=True, exist_ok=True)
    doc = json.loads(honest.read_text())
    shutil.copy(honest, dest / honest.name)
    shutil.copy(honest.parent / doc["predictions"]["file"], dest / doc["predictions"]["file"])
    with np.load(dest / doc["predictions"]["file"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return dest / honest.name, doc, arrays


def write_predictions(path: Path, doc: dict, data: bytes) -> None:
    """Store predictions bytes next to the results and record their (correct) sha256 and size."""
    (path.parent / doc["predictions"]["file"]).write_bytes(data)
    doc["predictions"]["sha256"] = hashlib.sha256(data).hexdigest()
    doc["predictions"]["bytes"] = len(data)
    path.write_text(json.dumps(doc))


def npz_bytes(arrays: dict, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.save(member, arr, allow_pickle=allow_pickle)
            zf.writestr(f"{name}.npy", member.getvalue())
    return buf.getvalue()


def assert_rejected(results: Path, board: Board, code: str, fragment: str, **kw) -> Rejected:
    before = tree(board.root)
    with pytest.raises(Rejected) as info:
        submit(results, board=board, **kw)
    assert info.value.code == code, str(info.value)
    assert fragment in info.value.message, info.value.message
    assert tree(board.root) == before, "a rejected submission wrote files"
    return info.value


# ------------------------------------------------------------------ honest path

def test_honest_run_is_accepted_and_rendered(honest, accepted):
    board, path = accepted
    entry = json.loads(path.read_text())
    assert path.parent == board.entries / TASK
    assert path.stem == entry_stem(entry) and path.stem.startswith("identity-")
    assert entry["content_sha256"] == content_hash(entry)
    doc = json.loads(honest.read_text())
    assert entry["results"] == doc  # stored unchanged
    assert entry["predictions"]["sha256"] == doc["predictions"]["sha256"]
    copy = path.with_name(path.stem + ".predictions.npz")
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == doc["predictions"]["sha256"]
    # identity reconstructs every atom exactly: deviation 0, everything matched
    assert entry["results"]["metrics"]["aggregate"]["penalized_mean_deviation"] == {"mean": 0.0, "std": 0.0}
    assert entry["results"]["metrics"]["per_seed"][0]["n_molecules"] == 13215

    mark = json.loads(path.with_name(path.stem + ".reproduced.json").read_text())
    assert mark["results_sha256"] == entry["results_sha256"] and mark["identical"] is True
    assert validate(board) == [(path, f"OK (reproduced {mark['date']})")]
    render(board)
    readme = board.readme.read_text()
    row = next(line for line in readme.splitlines() if "| identity |" in line)
    assert row.startswith("| 1 | identity | 0 ± 0 | 1 | 0 |")
    assert "https://github.com/example/densegen-identity" in row
    page = board.page.read_text()
    assert f'data-entry="{TASK}/{entry["content_sha256"][:12]}"' in page
    assert ">identity</td>" in page


def test_perfect_score_needs_a_reproduction(honest, tmp_path):
    """Identity's 0 deviation is what predictions copied from the labels give: refused without
    --reproduce (the same run is accepted with it, see ``accepted``)."""
    err = assert_rejected(honest, Board(tmp_path / "board"), "matches-labels", "within 0.0001 of the perfect 0")
    assert "--reproduce" in err.message


def test_cli_submit_and_validate_exit_codes(honest, accepted, tmp_path, capsys):
    board, _ = accepted
    assert lb_main(["validate", "--board", str(board.root), "--no-rescore"]) == 0
    assert lb_main(["submit", str(honest), "--board", str(board.root)]) == 1
    assert "REJECTED" in capsys.readouterr().err


# ------------------------------------------------------------------ hostile submissions (cheap checks)

def _edit(doc, key_path, value):
    node = doc
    for k in key_path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[key_path[-1]]
    else:
        node[key_path[-1]] = value


DOC_EDITS = {
    # id: (edit path, new value, expected code, message fragment)
    "wrong-schema-version": (["schema_version"], "densegen-results-0", "schema-version", "densegen-results-0"),
    "missing-field": (["environment"], KeyError, "missing-field", "'environment' is a required property"),
    "missing-nested-field": (["task", "split_sha256"], KeyError, "missing-field", "'split_sha256'"),
    "wrong-split-hash": (["task", "split_sha256"], "0" * 64, "split-hash", "another split"),
    "unknown-task": (["task", "name"], "protein-folding", "unknown-task", "unknown task 'protein-folding'"),
    "old-task-version": (["task", "version"], "0.9.0", "task-version", "not the current 2.1.0"),
    "other-primary-metric": (["task", "primary_metric"], "molwise_matched_fraction", "task-definition",
                             "primary metric"),
    "quick-flag": (["protocol", "quick"], True, "quick-run", "--quick run"),
    "auto-built-release": (["protocol", "auto_build"], {"release": "p1-crystals", "random_conformers": 150},
                           "auto-built-release", "small release the runner builds"),
    "path-traversal-name": (["model", "name"], "../../etc/passwd", "unsafe-name", "looks like a path"),
    "absolute-path-name": (["model", "name"], "/tmp/evil", "unsafe-name", "looks like a path"),
    "control-chars-name": (["model", "name"], "good\x1b[31mmodel", "control-char", "U+001B"),
    "bidi-override-name": (["model", "name"], "ledom\u202eevil", "control-char", "U+202E"),
    "traversal-predictions-file": (["predictions", "file"], "../../secret.npz", "schema", "predictions/file"),
    "absolute-predictions-file": (["predictions", "file"], "/etc/passwd.npz", "schema", "predictions/file"),
    "wrong-type-parameters": (["model", "parameters"], "many", "wrong-type", "'many' is not of type 'integer'"),
    "negative-std": (["metrics", "aggregate", "penalized_mean_deviation", "std"], -1.0, "schema",
                     "aggregate/penalized_mean_deviation/std: -1.0 is less than the minimum of 0"),
    "string-metric": (["metrics", "per_seed", 0, "penalized_mean_deviation"], "0.0", "wrong-type",
                      "per_seed/0/penalized_mean_deviation: '0.0' is not of type"),
    "no-seeds": (["metrics", "per_seed"], [], "schema", "should be non-empty"),
    "extra-top-level-field": (["leaderboard_rank"], 1, "unknown-field", "'leaderboard_rank' was unexpected"),
    "duplicate-seed-ids": (["metrics", "per_seed"], [{"seed": 0, "penalized_mean_deviation": 0.0}] * 2,
                           "duplicate-seed", "seed ids repeat"),
}


@pytest.mark.parametrize("case", sorted(DOC_EDITS))
def test_hostile_document_edits(case, honest, tmp_path):
    key_path, value, code, fragment = DOC_EDITS[case]
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    _edit(doc, key_path, value)
    path.write_text(json.dumps(doc))
    assert_rejected(path, Board(tmp_path / "board"), code, fragment)


def test_schema_takes_null_metrics_but_not_a_null_primary_metric(honest):
    """Metrics a task writes as null (e.g. PSNR of identical grids) pass the schema; a null
    primary metric cannot be ranked and is refused."""
    doc = json.loads(honest.read_text())
    doc["metrics"]["per_seed"][0]["psnr_raw"] = None
    doc["metrics"]["aggregate"]["psnr_raw"] = {"mean": None, "std": None}
    check_results_schema(doc)
    doc["metrics"]["aggregate"]["penalized_mean_deviation"] = {"mean": None, "std": None}
    check_results_schema(doc)
    with pytest.raises(Rejected, match="no mean/std for the primary metric"):
        check_document(doc)


def test_quick_run_is_rejected(quick_run, tmp_path):
    err = assert_rejected(quick_run, Board(tmp_path / "board"), "quick-run", "smoke test")
    assert "without --quick" in err.message


@pytest.mark.parametrize("token,fragment", [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
                                            ("1e999", "overflows")])
def test_non_finite_numbers(token, fragment, honest, tmp_path):
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    text = path.read_text().replace('"wall_time_s": ' + json.dumps(doc["wall_time_s"]), f'"wall_time_s": {token}')
    assert token in text
    path.write_text(text)
    assert_rejected(path, Board(tmp_path / "board"), "non-finite", fragment)


def test_not_json(honest, tmp_path):
    path, _, _ = copy_submission(honest, tmp_path / "sub")
    path.write_text("{'task': 'qm9'}")
    assert_rejected(path, Board(tmp_path / "board"), "not-json", "not valid JSON")


def test_repeated_json_key(honest, tmp_path):
    """Two "metrics" objects: one parser would read the first, json.loads the last."""
    path, _, _ = copy_submission(honest, tmp_path / "sub")
    text = path.read_text()
    path.write_text(text.replace('"metrics": {', '"metrics": {"per_seed": [], "aggregate": {}},\n  "metrics": {', 1))
    assert_rejected(path, Board(tmp_path / "board"), "duplicate-key", "repeats the key(s) ['metrics']")


def test_too_few_seeds(honest, tmp_path):
    """A qm9 result with one seed (the task needs 5)."""
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    doc["task"] = get_task("qm9").record(None)
    doc["metrics"] = {"per_seed": [{"seed": 0, "avg_mae": 1.0}], "aggregate": {"avg_mae": {"mean": 1.0, "std": 0.0}}}
    path.write_text(json.dumps(doc))
    assert_rejected(path, Board(tmp_path / "board"), "too-few-seeds", "needs at least 5")


def test_oversized_results_file(honest, tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB apparent size, nothing written to disk
    err = assert_rejected(path, Board(tmp_path / "board"), "too-large", "1,073,741,824 bytes")
    assert "results file" in err.message
    path2 = tmp_path / "just-over.json"
    path2.write_bytes(b" " * ((1 << 20) + 1))
    assert_rejected(path2, Board(tmp_path / "board"), "too-large", "limit is 1,048,576")


def test_one_gigabyte_predictions_file(honest, tmp_path):
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    with open(path.parent / doc["predictions"]["file"], "r+b") as f:
        f.truncate(1 << 30)  # sparse
    err = assert_rejected(path, Board(tmp_path / "board"), "too-large", "1,073,741,824 bytes")
    assert "predictions file" in err.message


def test_predictions_hash_mismatch(honest, tmp_path):
    path, doc, arrays = copy_submission(honest, tmp_path / "sub")
    arrays["positions"] = arrays["positions"] + np.float32(0.5)  # other predictions, results untouched
    (path.parent / doc["predictions"]["file"]).write_bytes(npz_bytes(arrays))
    assert_rejected(path, Board(tmp_path / "board"), "predictions-hash", "not the file the run wrote")


def test_pickled_object_array(honest, tmp_path):
    path, doc, arrays = copy_submission(honest, tmp_path / "sub")
    arrays["positions"] = np.array([{"__reduce__": "os.system"}, 1], dtype=object)
    write_predictions(path, doc, npz_bytes(arrays, allow_pickle=True))
    assert_rejected(path, Board(tmp_path / "board"), "pickle", "pickled object array")


def test_nan_in_predictions(honest, tmp_path):
    path, doc, arrays = copy_submission(honest, tmp_path / "sub")
    arrays["weights"] = arrays["weights"].copy()
    arrays["weights"][7] = np.nan
    write_predictions(path, doc, npz_bytes(arrays))
    assert_rejected(path, Board(tmp_path / "board"), "non-finite", "'weights' holds NaN")


def test_not_an_npz(honest, tmp_path):
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    write_predictions(path, doc, b"#!/bin/sh\nrm -rf /\n")
    assert_rejected(path, Board(tmp_path / "board"), "not-npz", "not an .npz archive")


def test_missing_and_non_regular_predictions(honest, tmp_path):
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    pred = path.parent / doc["predictions"]["file"]
    pred.unlink()
    assert_rejected(path, Board(tmp_path / "board"), "missing-file", "does not exist")
    pred.mkdir()
    assert_rejected(path, Board(tmp_path / "board"), "not-a-file", "not a regular file")


def test_predictions_of_wrong_length(honest, tmp_path):
    """One molecule fewer than the hold-out (hash recorded correctly): the scorer refuses."""
    path, doc, arrays = copy_submission(honest, tmp_path / "sub")
    off = arrays["offsets"]
    short = {"gdb_index": arrays["gdb_index"][:-1], "offsets": off[:-1],
             **{k: arrays[k][: off[-2]] for k in ("positions", "type_probs", "weights")}}
    write_predictions(path, doc, npz_bytes(short))
    assert_rejected(path, Board(tmp_path / "board"), "predictions-invalid", "predictions cover 13214 molecules")


def test_bad_code_url(honest, tmp_path):
    assert_rejected(honest, Board(tmp_path / "board"), "bad-code-url", "https://",
                    code_url="javascript:alert(document.cookie)")


def test_metric_edited_after_the_run(honest, tmp_path):
    """A better number typed into the results (per seed and aggregate kept consistent)."""
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    doc["metrics"]["per_seed"][0]["molwise_matched_fraction"] = 0.999
    doc["metrics"]["aggregate"]["molwise_matched_fraction"]["mean"] = 0.999
    path.write_text(json.dumps(doc))
    err = assert_rejected(path, Board(tmp_path / "board"), "metric-mismatch",
                          "per_seed[0].molwise_matched_fraction: submitted 0.999, recomputed 1.0")
    assert "aggregate.molwise_matched_fraction.mean" in err.message


# ------------------------------------------------------------------ duplicates (board with the honest entry)

def test_duplicate_resubmission(honest, accepted):
    board, _ = accepted
    assert_rejected(honest, board, "duplicate", "same results file")


def test_duplicate_predictions_under_another_name(honest, accepted, tmp_path):
    board, _ = accepted
    path, doc, _ = copy_submission(honest, tmp_path / "sub")
    doc["model"]["name"] = "identity-v2"
    path.write_text(json.dumps(doc))
    assert_rejected(path, board, "duplicate", "identical predictions")


def test_duplicate_model_name(honest, accepted, tmp_path):
    board, _ = accepted
    path, doc, arrays = copy_submission(honest, tmp_path / "sub")
    arrays["positions"] = arrays["positions"] + np.float32(0.01)
    write_predictions(path, doc, npz_bytes(arrays))
    doc["model"]["name"] = "IDENTITY"  # same model, other case
    path.write_text(json.dumps(doc))
    assert_rejected(path, board, "duplicate", "already has an entry")


# ------------------------------------------------------------------ validate: tampering with stored entries

def _copy_board(board: Board, dest: Path) -> tuple[Board, Path]:
    shutil.copytree(board.root, dest)
    new = Board(dest)
    return new, new.entry_files()[0]


def test_validate_catches_edited_entry(accepted, tmp_path):
    board, _ = _copy_board(accepted[0], tmp_path / "b")
    path = board.entry_files()[0]
    entry = json.loads(path.read_text())
    entry["results"]["metrics"]["aggregate"]["penalized_mean_deviation"]["mean"] = -1.0
    path.write_text(json.dumps(entry))
    [(p, status)] = validate(board, do_rescore=False)
    assert p == path and status.startswith("[tampered]") and "edited after submission" in status
    assert lb_main(["validate", "--board", str(board.root), "--no-rescore"]) == 1


def test_validate_catches_rehashed_entry(accepted, tmp_path):
    """A forger who also recomputes the content hash and renames the file is caught by re-scoring."""
    board, path = _copy_board(accepted[0], tmp_path / "b")
    entry = json.loads(path.read_text())
    entry["results"]["metrics"]["per_seed"][0]["atomwise_matched_fraction"] = 0.5
    entry["results"]["metrics"]["aggregate"]["atomwise_matched_fraction"]["mean"] = 0.5
    entry["results_sha256"] = hashlib.sha256(json.dumps(entry["results"], sort_keys=True, separators=(",", ":"),
                                                        ensure_ascii=False).encode()).hexdigest()
    entry["content_sha256"] = content_hash(entry)
    new = path.with_name(entry_stem(entry) + ".json")
    path.rename(new)
    path.with_name(path.stem + ".predictions.npz").rename(new.with_name(new.stem + ".predictions.npz"))
    new.write_text(json.dumps(entry))
    old_mark = path.with_name(path.stem + ".reproduced.json")
    mark = json.loads(old_mark.read_text())
    old_mark.unlink()
    new_mark = new.with_name(new.stem + ".reproduced.json")
    new_mark.write_text(json.dumps({**mark, "results_sha256": "0" * 64}))
    [(_, status)] = validate(board, do_rescore=False)
    assert status.startswith("[bad-mark]")  # the mark names the results it reproduced
    new_mark.write_text(json.dumps({**mark, "results_sha256": entry["results_sha256"]}))  # marks are not signed
    assert validate(board, do_rescore=False) == [(new, f"OK (reproduced {mark['date']})")]  # integrity cannot tell
    [(_, status)] = validate(board)
    assert status.startswith("[metric-mismatch]") and "atomwise_matched_fraction: submitted 0.5" in status


def test_validate_catches_swapped_predictions_and_stray_files(accepted, tmp_path):
    board, path = _copy_board(accepted[0], tmp_path / "b")
    pred = path.with_name(path.stem + ".predictions.npz")
    pred.write_bytes(pred.read_bytes() + b"\0")
    (board.entries / TASK / "notes.txt").write_text("hello")
    (board.entries / "protein-folding").mkdir()
    report = dict(validate(board, do_rescore=False))
    assert report[path].startswith("[predictions-hash]")
    assert report[board.entries / TASK / "notes.txt"].startswith("[stray-file]")
    assert report[board.entries / "protein-folding"].startswith("[unknown-task]")
