"""Model cards of the shipped weights: generated from the files, kept in sync by a test; the one load line."""
import json
import shutil

import pytest

from baselines import model_card
from baselines.model_card import card_path, leaderboard_results, main, render_card, weights_facts
from tests.conftest import REPO


@pytest.mark.parametrize("model,card", [("mo3enet", "mo3enet/MODEL_CARD.md"), ("vqgan3d", "vqgan3d/MODEL_CARD.md"),
                                        ("mo3enet-heavy", "mo3enet/MODEL_CARD-heavy.md")])
def test_committed_card_matches_the_files(model, card):
    assert card_path(model) == REPO / "baselines" / card
    assert card_path(model).read_text(encoding="utf-8") == render_card(model), \
        "run python -m baselines.model_card"


def test_card_lists_exactly_the_entries_made_with_these_weights(tmp_path):
    facts = weights_facts("mo3enet")
    assert facts["step"] == 4786 and facts["preset"] == "small" and facts["parameters"] == 471_742
    src = REPO / "leaderboard" / "entries" / "qm9-tensor"
    entry = next(p for p in sorted(src.glob("mo3enet-*.json")) if not p.name.endswith(".reproduced.json"))
    board = tmp_path / "leaderboard"
    (board / "entries" / "qm9-tensor").mkdir(parents=True)
    shutil.copy(entry, board / "entries" / "qm9-tensor" / entry.name)
    other = json.loads(entry.read_text())
    other["results"]["model"]["weights_sha256"] = "0" * 64            # other weights: not this card's
    (board / "entries" / "qm9-tensor" / "mo3enet-other.json").write_text(json.dumps(other))
    rows = leaderboard_results("mo3enet", facts["digest"], board)
    doc = json.loads(entry.read_text())["results"]
    assert [(r["task"], r["metric"], r["seeds"], r["reproduced"]) for r in rows] == [
        ("qm9-tensor", "dipole_mae", len(doc["metrics"]["per_seed"]), "")]   # its mark was not copied
    assert rows[0]["mean"] == doc["metrics"]["aggregate"]["dipole_mae"]["mean"]
    card = render_card("mo3enet", board)
    assert "| qm9-tensor | — | dipole_mae (Debye, lower is better) |" in card and "| qm9 |" not in card
    assert "model-index:" in card and "type: dipole_mae" in card


def test_check_reports_a_stale_card(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "MODEL_CARD.md"
    stale.write_text("old\n")
    monkeypatch.setattr(model_card, "card_path", lambda model: stale)
    monkeypatch.setattr(model_card, "REPO", tmp_path)
    assert main(["--check", "vqgan3d"]) == 1
    assert "MODEL_CARD.md is out of date: run python -m baselines.model_card" in capsys.readouterr().err
    assert main(["nonesuch"]) == 2


def test_adapters_print_one_line_naming_the_weights(capsys):
    from baselines.mo3enet.benchmark import Mo3ENetBenchmarkModel
    from baselines.vqgan3d.benchmark import VQGAN3DBenchmarkModel

    Mo3ENetBenchmarkModel()
    VQGAN3DBenchmarkModel()
    run = REPO / "baselines/mo3enet/training-runs/heavy-atoms-small"
    step = int((run / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))
    Mo3ENetBenchmarkModel(weights=str(run))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("mo3enet: shipped weights (small preset, 4,786 training steps, sigma 1.42 A), "
                        "a CPU demonstration; see baselines/mo3enet/MODEL_CARD.md")
    assert lines[1] == ("vqgan3d: shipped weights (small preset, 2,000 training steps), a CPU demonstration; "
                        "see baselines/vqgan3d/MODEL_CARD.md")
    assert lines[2].startswith("mo3enet: weights from ") and lines[2].endswith(
        f"heavy-atoms-small (small preset, {step:,} training steps, heavy atoms only)")
    assert len(lines) == 3
