"""`python -m speed gpu`: says so and exits 0 without CUDA; every section runs at toy sizes on the CPU."""
import os
import subprocess
import sys

import torch

from speed import gpu
from speed.__main__ import main as speed_main
from tests.conftest import REPO


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert speed_main(["gpu"]) == 0
    assert capsys.readouterr().out.startswith("speed gpu: no CUDA device on this machine")


def test_cpu_needs_quick_and_unknown_commands_are_refused(capsys):
    assert gpu.main(["--device", "cpu"]) == 2
    assert "--device cpu needs --quick" in capsys.readouterr().out
    assert speed_main(["gpus"]) == 2
    assert "usage: python -m speed {gpu}" in capsys.readouterr().err


def test_quick_cpu_run_times_every_section_in_one_table():
    res = subprocess.run([sys.executable, "-m", "speed", "gpu", "--device", "cpu", "--quick"], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line.split(" | ") for line in res.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["| what", "setting", "fp32", "bf16 autocast", "unit |"]
    what = [r[0].removeprefix("| ") for r in rows[1:]]
    assert what == ["renderer methyl acetate", "crystal optimizer", "Mo3ENet train step (small)",
                    "VQGAN train step (small)"]
    for r in rows[1:]:
        assert float(r[2].replace(",", "")) > 0 and r[3] == "-"     # no bf16 autocast on the CPU
    assert [r[4] for r in rows[1:]] == ["grids/s |", "starts/s |", "molecules/s |", "grids/s |"]
