"""benchmarks.plot: each task draws its figures from a results file and its predictions."""
from __future__ import annotations

import json

import pytest

from benchmarks.plot import main as plot_main
from benchmarks.run import main as run_main


@pytest.mark.parametrize("model, task, png", [
    ("identity", "pointcloud-reconstruction", "deviations"),
    ("volume", "crystal-energy", "parity"),
])
def test_plot_writes_the_task_figures(tmp_path, model, task, png):
    out = tmp_path / "results"
    assert run_main(["--model", model, "--task", task, "--quick", "--seeds", "1", "--out", str(out),
                     "--no-progress"]) == 0
    results = next(out.glob(f"{task}-*.json"))
    assert json.loads(results.read_text())["task"]["name"] == task
    assert plot_main([str(results), "--out", str(tmp_path / "figs")]) == 0
    path = tmp_path / "figs" / f"{results.stem}-{png}.png"
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_missing_file_is_one_line(tmp_path, capsys):
    assert plot_main([str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.json" in err[0]
