"""The committed board: it validates (every stored entry rescored against the task's own
labels), it renders without change, it holds a launch entry for every baseline/task/variant
pair or says in ``leaderboard/LAUNCH.md`` why not, and the entries whose run took under two
minutes reproduce here (the rest by ``python -m leaderboard reproduce``, dated on the board)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from leaderboard.board import DEFAULT_ROOT, Board, predictions_path
from leaderboard.reproduce import reproduce
from leaderboard.validate import validate

BOARD = Board(DEFAULT_ROOT)
LAUNCH = DEFAULT_ROOT / "LAUNCH.md"
QUICK_REPRODUCE_S = 120  # entries whose recorded run took less are reproduced in CI

#: (task, variant, model) the launch must cover (issue 13): simple descriptors on the regression
#: tasks, the bounds on the reconstruction tasks, the two learned baselines where they apply.
LAUNCH_PAIRS = (
    [(t, None, m) for t in ("qm9", "qm9-small", "crystal-energy") for m in ("none", "volume", "inertia",
                                                                          "coulomb-matrix")]
    + [("pointcloud-reconstruction", "with-h", m) for m in ("identity", "blur", "mo3enet")]
    + [("pointcloud-reconstruction", "heavy-atoms", m) for m in ("identity", "blur", "mo3enet-heavy")]
    + [("density-reconstruction", v, m) for v in ("qm9", "pubchem") for m in ("identity", "blur", "vqgan3d")]
    + [(t, None, "mo3enet") for t in ("qm9-small", "qm9", "crystal-energy", "qm9-tensor")]
    + [("qm9-small", None, "vqgan3d"), ("qm9-small", None, "mo3enet-heavy")]
)


def _entries() -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text())) for p in BOARD.entry_files()]


def _in_history(commit: str) -> bool:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return True  # not a git checkout (an sdist): nothing to look the commit up in
    done = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root, capture_output=True)
    return done.returncode == 0


def _key(entry: dict) -> tuple:
    r = entry["results"]
    return r["task"]["name"], r["task"]["variant"], r["model"]["name"]


def test_the_committed_board_validates(tmp_path):
    report = validate(BOARD, data_root=tmp_path)
    bad = [(p.name, s) for p, s in report if not s.startswith("OK")]
    assert bad == []
    assert len(report) >= len(BOARD.entry_files()) > 0


def test_every_launch_pair_has_an_entry_or_a_reason():
    have = {_key(e) for _, e in _entries()}
    text = LAUNCH.read_text()
    missing = [pair for pair in LAUNCH_PAIRS if pair not in have]
    unexplained = [pair for pair in missing
                   if f"| {pair[0]} | {pair[1] or '—'} | {pair[2]} |" not in text]
    assert unexplained == [], "add an entry or a line to leaderboard/LAUNCH.md"
    # and LAUNCH.md does not excuse pairs that are on the board
    excused = [pair for pair in LAUNCH_PAIRS if f"| {pair[0]} | {pair[1] or '—'} | {pair[2]} |" in text]
    assert not set(excused) & have


def test_entries_say_what_produced_them():
    for path, entry in _entries():
        r = entry["results"]
        assert r["model"]["import"].startswith("baselines."), path.name
        commit = r["environment"]["densegen_commit"]
        # a commit of this repository's history (entries made from a checkout with uncommitted
        # edits say +dirty; LAUNCH.md says which and what the edits were)
        assert commit and _in_history(commit.split("+")[0]), (path.name, commit)
        if commit.endswith("+dirty"):
            assert path.stem in LAUNCH.read_text(), f"{path.name}: +dirty entries are explained in LAUNCH.md"
        learned = r["model"]["name"] in ("mo3enet", "mo3enet-heavy", "vqgan3d")
        assert (r["model"]["weights_sha256"] is not None) == learned, path.name
        assert r["wall_time_s"] > 0 and r["environment"]["hardware"]["cpus"] >= 1


QUICK = [p for p, e in _entries() if e["results"]["wall_time_s"] < QUICK_REPRODUCE_S and e["predictions"]["stored"]]


def test_some_entries_are_quick_enough_to_reproduce_here():
    assert QUICK, "no committed entry runs in under two minutes: the reproduction test below would test nothing"


@pytest.mark.parametrize("path", QUICK, ids=[p.stem for p in QUICK])
def test_quick_entries_reproduce(path, tmp_path):
    entry = json.loads(path.read_text())
    mark = reproduce(entry["results"], predictions_path(path), tmp_path / "data", tmp_path)
    assert mark["comparison"] == "predictions" and mark["max_abs_diff"] is not None


def test_learned_entries_were_made_with_the_weights_that_ship():
    """A learned baseline's entries name the weights it ships now: new weights mean new entries
    (a stale one would fail `reproduce` with weights-differ)."""
    from baselines.model_card import TEXT, weights_folder
    from benchmarks.protocol import weights_digest

    class _Weights:
        def __init__(self, folder):
            self.weights = str(folder)

    shipped = {name: weights_digest(_Weights(weights_folder(name))) for name in TEXT}
    stale = [p.name for p, e in _entries() if e["results"]["model"]["name"] in shipped
             and e["results"]["model"]["weights_sha256"] != shipped[e["results"]["model"]["name"]]]
    assert stale == [], "re-run and resubmit these with the shipped weights"
