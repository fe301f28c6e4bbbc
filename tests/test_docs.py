"""Every code block of README.md, DATASET_CARD.md and the generated release cards runs.

README's blocks run in order in one scratch folder, as a new user would paste them (a later
block may read what an earlier one built). Rules, checked here so they cannot drift:

* every block says what it is: ``bash``, ``python`` or ``text`` (layouts, not code);
* the two set-up commands are the contract of README's first lines: their venv/pip part is
  exactly what CI runs (``.ci/run``), and what follows it runs here as written (the tests
  already run inside that environment); the test command itself is not run again from
  inside the tests;
* a command that takes hours as written is run with the smaller arguments listed in
  ``SMALLER`` (each entry must match a line of README, so the table cannot go stale);
* README's example model (the block defining ``class MyModel``) is saved as
  ``mypkg/mymodule.py``, where README says to save it, before README's own run line uses it;
* README's Slurm recipe runs against stand-ins for ``sbatch`` and ``scancel``
  (``tests/data/slurm_stub``, first on PATH), which run each job script dask-jobqueue writes
  as a local process, with the smaller settings of ``SMALLER_PYTHON``;
* README's Hub reads go to a stand-in of the Hub's file endpoint (``tests/hub_server.py``,
  as ``HF_ENDPOINT``) serving the random-conformers release README built, as
  ``densegen/random-conformers``.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO
from .hub_server import HubStandIn

FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
LANGUAGES = {"bash", "python", "text", "bibtex"}  # text and bibtex are not run
SETUP = ("python3 -m venv .venv", ". .venv/bin/activate")
# README command -> what this test runs instead, and why
SMALLER = {
    "python -m benchmarks.run --model coulomb-matrix --task qm9":
        ("python -m benchmarks.run --model coulomb-matrix --task qm9 --quick --seeds 2",
         "the full run embeds 130,831 molecules and trains 3 x 12 heads: about an hour on 2 cores"),
    "python -m baselines.mo3enet.train --preset small --release densegen/random-conformers --max-minutes 45":
        ("python -m baselines.mo3enet.train --preset small --release densegen/random-conformers --max-steps 3",
         "45 minutes of training; 3 steps exercise the same code"),
    "python -m baselines.vqgan3d.train --preset small --release densegen/qm9-hf-density --max-steps 300":
        ("python -m baselines.vqgan3d.train --preset small --release densegen/qm9-hf-density --max-steps 2",
         "minutes of training; 2 steps exercise the same code"),
}

# README python line -> what this test runs instead, and why
SMALLER_PYTHON = {
    'BUILD = ["pubchem-hf-density", "--root", "slurm-build"]':
        ('BUILD = ["pubchem-hf-density", "--root", "slurm-build", "--limit", "2"]',
         "the whole embedded set is 9,880 molecules: about 16 CPU-hours"),
    "MAX_JOBS = 100": ("MAX_JOBS = 2", "two local processes stand in for the Slurm jobs"),
}


def readme_example_model(blocks) -> str:
    """The python block of README that defines ``class MyModel``."""
    found = [code for lang, code, _ in blocks if lang == "python" and "class MyModel" in code]
    assert len(found) == 1, "README must hold exactly one example model (class MyModel)"
    return found[0]


def code_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of every fenced block of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def commands(code: str) -> list[str]:
    """The commands of a bash block: one a line (backslash continuations joined), comments
    and blank lines dropped."""
    out, current = [], ""
    for line in code.splitlines():
        current += line.strip() if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip() + " "
            continue
        stripped = current.split(" #", 1)[0].strip() if not current.lstrip().startswith("#") else ""
        if stripped:
            out.append(stripped)
        current = ""
    return out


def ci_test_command() -> str:
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    return next(line for line in lines if line.startswith("python3 -m venv"))


def strip_setup(command: str) -> tuple[list[str], list[str]]:
    """Split a README set-up command into (its venv/pip steps, the rest)."""
    parts = [p.strip() for p in command.split("&&")]
    setup = [p for p in parts if p in SETUP or p.startswith("pip install")]
    return setup, [p for p in parts if p not in setup]


def run_bash(command: str, cwd: Path, env: dict, timeout: int = 1500) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"README command failed: {command}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def run_python(code: str, cwd: Path, env: dict, name: str, timeout: int = 900) -> None:
    script = cwd / f"{name}.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{name} failed:\n{code}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


def user_env(cwd: Path) -> dict:
    """The environment of a user who activated the project's venv (this interpreter's)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(cwd)]), "HF_DATASETS_OFFLINE": "1"}


@pytest.mark.parametrize("doc", ["README.md", "DATASET_CARD.md"])
def test_every_block_says_what_it_is(doc):
    for lang, _, line in code_blocks(REPO / doc):
        assert lang in LANGUAGES, f"{doc}:{line}: a code block must be ```bash, ```python, ```text or ```bibtex, not {lang!r}"


def test_the_two_setup_commands_are_the_contract():
    blocks = [b for b in code_blocks(REPO / "README.md") if b[0] == "bash"]
    main_job, test_job = commands(blocks[0][1]), commands(blocks[1][1])
    assert len(main_job) == 1 and len(test_job) == 1
    assert test_job[0] == ci_test_command(), "README's test command must be what .ci/run runs"
    setup, rest = strip_setup(main_job[0])
    ci_setup, ci_rest = strip_setup(test_job[0])
    quiet = [step.replace(" -q ", " ") for step in ci_setup]
    assert setup == quiet, "the main job must set up exactly as CI does (CI only adds -q)"
    assert ci_rest == ["python -m pytest -q"]
    assert rest and rest[0].startswith("python -m builders build "), rest
    for readme_line in SMALLER:
        assert any(readme_line in cmd for _, code, _ in code_blocks(REPO / "README.md") for cmd in commands(code)), \
            f"SMALLER lists a command README no longer has: {readme_line}"
    for readme_line in SMALLER_PYTHON:
        assert any(readme_line in code for lang, code, _ in code_blocks(REPO / "README.md") if lang == "python"), \
            f"SMALLER_PYTHON lists a line README no longer has: {readme_line}"


@pytest.mark.slow
def test_readme_blocks_run_in_order(tmp_path):
    work = tmp_path / "user"
    work.mkdir()
    blocks = code_blocks(REPO / "README.md")
    # README's example model, saved where README says, is the model its own run line uses
    (work / "mypkg").mkdir()
    (work / "mypkg" / "__init__.py").write_text("")
    (work / "mypkg" / "mymodule.py").write_text(readme_example_model(blocks))
    env = user_env(work)
    stub = work / "slurm-stub"  # sbatch and scancel for the Slurm recipe (module docstring)
    shutil.copytree(REPO / "tests" / "data" / "slurm_stub", stub)
    env["PATH"] = str(stub) + os.pathsep + env["PATH"]
    env["CROISSANT_CACHE"] = str(work / "croissant-cache")  # README: a fresh one for releases built here
    with HubStandIn({"densegen/random-conformers": work / "densegen" / "random-conformers"}) as hub:
        env["HF_ENDPOINT"] = hub.endpoint
        env.pop("HF_HUB_OFFLINE", None)  # other tests set it; this Hub is the local stand-in
        _run_readme_blocks(blocks, work, env)


def _run_readme_blocks(blocks, work, env) -> None:
    bash_seen = 0
    for n, (lang, code, line) in enumerate(blocks):
        if lang == "text":
            continue
        if lang == "python":
            for readme_line, (smaller, _why) in SMALLER_PYTHON.items():
                code = code.replace(readme_line, smaller)
            run_python(code, work, env, f"readme_block_{n}_line_{line}")
            continue
        bash_seen += 1
        for cmd in commands(code):
            if bash_seen <= 2:  # the set-up contract: run what follows the venv/pip steps
                if bash_seen == 2:
                    continue  # the test command (this very suite)
                cmd = " && ".join(strip_setup(cmd)[1])
            for readme_line, (smaller, _why) in SMALLER.items():
                if cmd == readme_line:
                    cmd = smaller
            run_bash(cmd, work, env)


def test_generated_cards_code_runs(small_release):
    """The Loading snippet of a built release's card runs from the folder holding densegen/."""
    _, out = small_release
    root = out.parent.parent
    env = user_env(root)
    blocks = code_blocks(out / "README.md")
    assert any(lang == "python" for lang, _, _ in blocks)
    for n, (lang, code, line) in enumerate(blocks):
        assert lang in LANGUAGES, f"card line {line}: {lang!r}"
        if lang == "python":
            run_python(code, root, env, f"card_block_{n}")
        elif lang == "bash":
            for cmd in commands(code):
                run_bash(cmd, root, env)


def test_commands_parse_like_bash():
    assert commands("a \\\n  b  # note\n# only a comment\n\nc") == ["a b", "c"]
    assert shlex.split(commands("python -m x --y 'a b'")[0])[-1] == "a b"
