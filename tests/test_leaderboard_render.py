"""Leaderboard render: README tables and the static page (ranking, reference rows, escaping,
no external resources, --check), from entries built directly (render does not re-score)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from benchmarks.results import SCHEMA_VERSION
from benchmarks.tasks import get_task
from leaderboard.__main__ import main as lb_main
from leaderboard.board import DEFAULT_ROOT, PREDICTIONS_SUFFIX, Board, entry_stem, make_entry
from leaderboard.errors import Rejected
from leaderboard.render import render, render_html, render_markdown, section_title, sections, task_rows
from leaderboard.schema import check_entry_schema

TASK = "pointcloud-reconstruction"
REPORTED = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "reference" / "qm9_reported.json")
                      .read_text())["rows"]


def results_doc(model: str, mean: float, std: float = 0.0, task: str = TASK, seeds: int = 1,
                params: int = 1000, created: str = "2026-11-20T10:00:00+00:00", gpu: str | None = None) -> dict:
    """A schema-valid results document (as benchmarks.run writes) with the given primary metric."""
    spec = get_task(task)
    per_seed = [{"seed": s, spec.primary_metric: mean} for s in range(seeds)]
    hardware = {"machine": "x86_64", "cpus": 2, "system": "Linux", "cpu": "AMD EPYC"}
    if gpu:
        hardware["gpu"] = gpu
    return {
        "schema_version": SCHEMA_VERSION,
        "task": spec.record(spec.check_variant(None)),
        "release": None,
        "model": {"name": model, "import": "my.models:Model", "parameters": params, "arguments": {},
                  "weights_sha256": None},
        "protocol": {"quick": False},
        "metrics": {"per_seed": per_seed, "aggregate": {spec.primary_metric: {"mean": mean, "std": std}}},
        "predictions": {"file": "p.predictions.npz", "sha256": hashlib.sha256(f"{model} {mean}".encode()).hexdigest(),
                        "bytes": 100},
        "environment": {"hardware": hardware, "packages": {"numpy": "2.4.6"}, "python": "3.11.7",
                        "densegen_commit": None},
        "wall_time_s": 1.0,
        "command": "python -m benchmarks.run --model my.models:Model",
        "created": created,
    }


def add_entry(board: Board, doc: dict, code_url: str | None = None) -> Path:
    """File an entry on the board the way submit does (without re-scoring: render never re-scores)."""
    entry = make_entry(doc, doc["predictions"]["sha256"], doc["predictions"]["bytes"], code_url,
                       accepted=f"{doc['created'][:19]}.000000Z")
    check_entry_schema(entry)
    folder = board.task_dir(doc["task"]["name"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{entry_stem(entry)}.json"
    path.write_text(json.dumps(entry, indent=2))
    path.with_name(path.stem + PREDICTIONS_SUFFIX).write_bytes(b"")
    return path


@pytest.fixture
def board(tmp_path) -> Board:
    b = Board(tmp_path / "board")
    add_entry(b, results_doc("blur-0.3", 0.3, created="2026-11-21T09:00:00+00:00"), "https://example.org/blur")
    add_entry(b, results_doc("mo3enet", 0.1, 0.01, params=2_345_678, gpu="NVIDIA H100 80GB HBM3"),
              "https://github.com/example/mo3enet")
    add_entry(b, results_doc("blur-0.2", 0.2))
    add_entry(b, results_doc("cm-mlp", 1.7, 0.05, task="qm9", seeds=5))
    return b


def table_lines(readme: str, task: str) -> list[str]:
    """The rows of ``task``'s table (its default variant's, for tasks with variants)."""
    spec = get_task(task)
    section = readme.split(f"## {section_title(spec, spec.check_variant(None))} ")[1].split("\n## ")[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| rank")]


def test_readme_ranks_entries_and_marks_reported_rows(board):
    render(board)
    readme = board.readme.read_text()
    rows = table_lines(readme, TASK)
    assert [r.split(" | ")[:2] for r in rows] == [["| 1", "mo3enet"], ["| 2", "blur-0.2"], ["| 3", "blur-0.3"]]
    stem = next(p.stem for p in board.entry_files() if p.stem.startswith("mo3enet"))
    assert rows[0] == ("| 1 | mo3enet | 0.1 ± 0.01 | 1 | 2,345,678 | NVIDIA H100 80GB HBM3 | 1 s | 2026-11-20 | no | "
                       f"[json](entries/{TASK}/{stem}.json) | [code](https://github.com/example/mo3enet) |")
    assert re.search(r"\| 1,000 \| AMD EPYC \(2 CPUs\) \| 1 s \| 2026-11-20 \| no \| \[json\]\(entries/[^)]+\) \| — \|$",
                     rows[1])
    # the summary table on top names the leader of each table
    assert f"| {TASK}, variant with-h | `penalized_mean_deviation` | mo3enet: 0.1 Angstrom | 3 |" in readme
    assert "| qm9-small | `avg_mae` | — | 0 |" in readme
    qm9 = table_lines(readme, "qm9")
    # the entry (1.7) sits between the reported 1.5894 (MoLFormer-XL) and 1.9995 (123-gnn)
    models = [r.split(" | ")[1] for r in qm9]
    reported = sorted(REPORTED, key=lambda m: REPORTED[m]["avg_mae"])
    assert len(qm9) == len(reported) + 1
    assert models.index("cm-mlp") == sum(REPORTED[m]["avg_mae"] < 1.7 for m in REPORTED)
    assert qm9[models.index("cm-mlp")].startswith("| 1 | cm-mlp | 1.7 ± 0.05 | 5 |")
    assert all(r.startswith("| *reported* |") and "*(reported)*" in r for r in qm9 if "cm-mlp" not in r)
    assert "| *reported* | 3DGrid-VQGAN *(reported)* | 1.2148 |" in qm9[0]


def test_page_rows_chart_and_no_external_resources(board):
    render(board)
    page = board.page.read_text()
    section = page.split('id="task-pointcloud-reconstruction-with-h"')[1].split("</section>")[0]
    assert re.findall(r'<tr class="entry" data-entry="[^"]+"><td class="num" data-value="(\d)">', section) == ["1", "2", "3"]
    assert re.findall(r'<tr class="entry"[^>]*><td[^>]*>[^<]*</td><td data-value="([^"]+)">', section) == \
        ["mo3enet", "blur-0.2", "blur-0.3"]
    # chart: one bar per row, widths proportional to the metric (0.1 : 0.2 : 0.3, max incl. std 0.3)
    widths = [float(w) for w in re.findall(r'<g class="bar entry">.*?<rect x="\d+" y="[\d.]+" width="([\d.]+)"', section)]
    assert widths == pytest.approx([560 * 0.1 / 0.3, 560 * 0.2 / 0.3, 560.0], abs=0.01)
    qm9 = page.split('id="task-qm9"')[1].split("</section>")[0]
    assert qm9.count('<tr class="reported">') == len(REPORTED) == qm9.count('<g class="bar reported">')
    assert qm9.count('<tr class="entry"') == 1
    n_cols = qm9.split("</thead>")[0].count("<th ")
    assert n_cols == 11 and {row.count("<td") for row in re.findall(r'<tr class="(?:entry|reported)".*?</tr>', qm9)} == {n_cols}
    # self-contained: no src/href to anything but the entries' code links, their JSON files and the
    # page's own anchors; CSP locks the rest
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page)
    hrefs = set(re.findall(r'href="([^"]+)"', page))
    assert sorted(h for h in hrefs if "://" in h) == ["https://example.org/blur", "https://github.com/example/mo3enet"]
    files = {f"../{p.relative_to(board.root).as_posix()}" for p in board.entry_files()}
    assert {h for h in hrefs if h.startswith("../")} == files
    assert {h for h in hrefs if h.startswith("#")} == {f"#task-{sid.replace('/', '-')}" for sid, _, _ in sections()}
    assert all(h.startswith(("https://", "../entries/", "#task-")) for h in hrefs)
    # each entry row carries the command that reproduces it
    for p in board.entry_files():
        assert f"python -m leaderboard reproduce leaderboard/{p.relative_to(board.root).as_posix()}" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_hostile_strings_are_escaped(tmp_path):
    b = Board(tmp_path / "board")
    add_entry(b, results_doc("<script>alert(1)</script>|x", 0.5))
    render(b)
    page, readme = b.page.read_text(), b.readme.read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page
    assert "<script>alert" not in readme and "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in readme
    assert page.count("<script>") == 1  # only the page's own sorter


def test_empty_board_and_committed_files_are_current(tmp_path):
    b = Board(tmp_path / "empty")
    render(b)
    readme = b.readme.read_text()
    for _, task, variant in sections():
        assert f"## {section_title(task, variant)} (task version {task.version})" in readme
    assert readme.count("*no entries yet*") == len(sections())
    assert "## density-reconstruction, variant qm9 " in readme  # variants are ranked separately
    assert render(b, check=True) == []
    # the repository's own README.md and site/index.html must match what render writes
    assert render(Board(DEFAULT_ROOT), check=True) == [], "run: python -m leaderboard render"


def test_check_detects_stale_output_and_tampered_entries(board, capsys):
    render(board)
    assert lb_main(["render", "--board", str(board.root), "--check"]) == 0
    path = add_entry(board, results_doc("late", 0.05))
    assert set(render(board, check=True)) == {board.readme, board.page}
    assert lb_main(["render", "--board", str(board.root), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    entry = json.loads(path.read_text())
    entry["results"]["metrics"]["aggregate"]["penalized_mean_deviation"]["mean"] = 0.0
    path.write_text(json.dumps(entry))
    with pytest.raises(Rejected, match="tampered"):
        render(board)


def test_higher_is_better_ranks_descending(board):
    task = type("HigherIsBetter", (type(get_task(TASK)),), {"lower_is_better": False})()
    entries = [json.loads(p.read_text()) for p in board.entry_files() if p.parent.name == TASK]
    assert [r.model for r in task_rows(task, entries)] == ["blur-0.3", "blur-0.2", "mo3enet"]
    assert render_markdown({}) and render_html({})  # renders without any entries at all


def test_reproduction_marks_show_only_when_they_name_the_entry(board):
    from leaderboard.reproduce import MARK_SCHEMA_VERSION, mark_path

    path = next(p for p in board.entry_files() if p.stem.startswith("blur-0.2"))
    entry = json.loads(path.read_text())
    mark = {"schema_version": MARK_SCHEMA_VERSION, "results_sha256": entry["results_sha256"], "date": "2026-12-02",
            "hardware": {"machine": "x86_64", "cpus": 2, "cpu": "AMD EPYC"}, "wall_time_s": 3.0,
            "densegen_commit": None, "comparison": "predictions", "predictions_sha256": "a" * 64, "identical": True,
            "max_abs_diff": 0.0, "metrics_max_rel_diff": 0.0, "tolerance": {"pred_rtol": 1e-4}}
    mark_path(path).write_text(json.dumps(mark))
    render(board)
    row = next(r for r in table_lines(board.readme.read_text(), TASK) if "blur-0.2" in r)
    assert "| 2026-12-02 on AMD EPYC (2 CPUs) |" in row
    assert '<span class="badge ok">reproduced</span> 2026-12-02 on AMD EPYC (2 CPUs)' in board.page.read_text()
    mark["results_sha256"] = "0" * 64  # a mark of other results is not shown
    mark_path(path).write_text(json.dumps(mark))
    render(board)
    row = next(r for r in table_lines(board.readme.read_text(), TASK) if "blur-0.2" in r)
    assert "| no |" in row and "reproduced</span>" not in board.page.read_text()
