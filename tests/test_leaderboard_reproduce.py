"""``leaderboard.reproduce``: an entry's run is re-run from what its results record, and the new
predictions are compared with the stored ones; tampered predictions, other weights, unknown
models and marks of other results are refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run as bench_run
from benchmarks.results import write_npz
from leaderboard.errors import Rejected
from leaderboard.reproduce import PRED_ATOL, PRED_RTOL, compare_npz, mark_path, read_mark, reproduce, rerun_argv, write_mark
from leaderboard.safeio import canonical_json, sha256_hex


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A quick pointcloud-reconstruction run of the blur model (seconds): its results and predictions."""
    root = tmp_path_factory.mktemp("repro")
    out = root / "res"
    assert bench_run.main(["--model", "blur", "--model-arg", "sigma=0.2", "--task", "pointcloud-reconstruction",
                           "--quick", "--out", str(out), "--data-root", str(root / "data"), "--no-progress"]) == 0
    (doc_path,) = out.glob("*.json")
    doc = json.loads(doc_path.read_text())
    return root, doc, out / doc["predictions"]["file"]


def test_rerun_argv_repeats_the_recorded_options(quick_run):
    root, doc, _ = quick_run
    argv = rerun_argv(doc, "ROOT", "OUT")
    assert argv[:2] == ["--model", "baselines.simple:Blur"]
    assert ["--model-arg", "sigma=0.2"] == argv[2:4]
    assert argv[argv.index("--task") + 1] == "pointcloud-reconstruction"
    assert argv[argv.index("--seeds") + 1] == "1" and "--quick" in argv
    args = bench_run.build_parser().parse_args(argv)  # what benchmarks.run will see
    assert args.model_arg == ["sigma=0.2"] and args.quick and str(args.data_root) == "ROOT"


def test_reproduces_stored_predictions_exactly_and_writes_a_mark(quick_run, tmp_path):
    root, doc, pred = quick_run
    mark = reproduce(doc, pred, root / "data")
    assert mark["comparison"] == "predictions" and mark["identical"] and mark["max_abs_diff"] == 0.0
    assert mark["metrics_max_rel_diff"] == 0.0 and mark["results_sha256"] == sha256_hex(canonical_json(doc))
    assert mark["hardware"]["cpus"] >= 1 and mark["wall_time_s"] >= 0
    entry_path = tmp_path / "blur-0123456789ab.json"
    entry = {"results_sha256": mark["results_sha256"]}
    written = write_mark(entry_path, mark)
    assert written == mark_path(entry_path) and written.name == "blur-0123456789ab.reproduced.json"
    assert read_mark(written, entry) == mark
    with pytest.raises(Rejected) as err:  # a mark of other results
        read_mark(written, {"results_sha256": "0" * 64})
    assert err.value.code == "bad-mark"
    broken = json.loads(written.read_text())
    broken["date"] = "9999-99-99"
    written.write_text(json.dumps(broken))
    with pytest.raises(Rejected) as err:
        read_mark(written, entry)
    assert err.value.code == "bad-mark" and "date" in err.value.message


def test_without_stored_predictions_the_sha256_decides(quick_run):
    root, doc, _ = quick_run
    mark = reproduce(doc, None, root / "data")
    assert mark["comparison"] == "sha256" and mark["identical"] and mark["max_abs_diff"] is None


def test_tampered_predictions_fail(quick_run, tmp_path):
    root, doc, pred = quick_run
    arrays = dict(np.load(pred, allow_pickle=False))
    arrays["positions"] = arrays["positions"].copy()
    arrays["positions"][3, 1] += 0.05  # 0.05 Angstrom on one atom: far beyond the stated tolerance
    tampered = tmp_path / "tampered.npz"
    write_npz(tampered, arrays)
    with pytest.raises(Rejected) as err:
        reproduce(doc, tampered, root / "data")
    assert err.value.code == "not-reproduced" and "'positions'" in err.value.message
    # the comparison itself: within tolerance passes, just beyond it fails
    ok = dict(arrays)
    ok["positions"] = np.load(pred)["positions"].astype(np.float64) * (1 + 0.5 * PRED_RTOL)
    write_npz(tmp_path / "close.npz", ok)
    assert 0 < compare_npz(tmp_path / "close.npz", pred) < PRED_ATOL + PRED_RTOL * 100


def test_other_weights_and_unregistered_models_are_refused(quick_run, monkeypatch):
    root, doc, pred = quick_run
    other = json.loads(json.dumps(doc))
    other["model"]["weights_sha256"] = "ab" * 32
    with pytest.raises(Rejected) as err:
        reproduce(other, pred, root / "data")
    assert err.value.code == "weights-differ"
    foreign = json.loads(json.dumps(doc))
    foreign["model"]["import"] = "evil.module:Model"
    with pytest.raises(Rejected) as err:
        reproduce(foreign, pred, root / "data")
    assert err.value.code == "not-registered"


def test_shape_and_name_changes_fail(quick_run, tmp_path):
    _, _, pred = quick_run
    arrays = dict(np.load(pred, allow_pickle=False))
    write_npz(tmp_path / "fewer.npz", {k: v for k, v in arrays.items() if k != "weights"})
    with pytest.raises(Rejected, match="arrays"):
        compare_npz(tmp_path / "fewer.npz", pred)
    arrays["weights"] = arrays["weights"][:-1]
    write_npz(tmp_path / "short.npz", arrays)
    with pytest.raises(Rejected, match="'weights'"):
        compare_npz(tmp_path / "short.npz", pred)


def _file_entry(board_root: Path, doc: dict, pred: Path) -> Path:
    """File a results document as a board entry the way submit writes it (without its checks:
    quick runs are refused by submit, and these tests need second-long runs)."""
    from leaderboard.board import entry_stem, make_entry, predictions_path

    data = pred.read_bytes()
    entry = make_entry(doc, sha256_hex(data), len(data), None)
    folder = board_root / "entries" / doc["task"]["name"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{entry_stem(entry)}.json"
    path.write_text(json.dumps(entry, indent=2))
    predictions_path(path).write_bytes(data)
    return path


def test_cli_reproduces_an_entry_and_a_tampered_entry_fails(quick_run, tmp_path, capsys):
    from leaderboard.__main__ import main as lb_main

    root, doc, pred = quick_run
    path = _file_entry(tmp_path / "board", doc, pred)
    assert lb_main(["reproduce", str(path), "--data-root", str(root / "data"), "--write-mark"]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED" in out and "byte" not in out.split("REPRODUCED")[0]
    assert read_mark(mark_path(path), json.loads(path.read_text()))["identical"] is True
    # tampered: better predictions (every atom moved halfway back to... anywhere: here 0.1 Angstrom),
    # results and hashes rewritten consistently so that every integrity check passes
    arrays = dict(np.load(pred, allow_pickle=False))
    arrays["positions"] = arrays["positions"] + np.float32(0.1)
    forged = tmp_path / "forged.npz"
    digest, size = write_npz(forged, arrays)
    doc2 = json.loads(json.dumps(doc))
    doc2["predictions"].update(sha256=digest, bytes=size)
    path2 = _file_entry(tmp_path / "board2", doc2, forged)
    assert lb_main(["reproduce", str(path2), "--data-root", str(root / "data")]) == 1
    err = capsys.readouterr().err
    assert "NOT REPRODUCED" in err and "[not-reproduced]" in err and "'positions'" in err
