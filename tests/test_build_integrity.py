"""Builds never mix parameters or inputs, survive dying workers and full disks, refuse hostile
inputs with one line: each test reproduces a failure a user met (data-integrity issue)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders.format.build import BuildError, build_lock, build_release
from builders.format.manifest import release_dir
from builders.format.reader import read_manifest
from builders.format.registry import get_release
from builders.format.verify import verify_release

from .conftest import REPO, build_small

RELEASE = "random-conformers"


def shard_hashes(manifest: dict) -> dict:
    return {sh["path"]: sh["sha256"] for sh in manifest["shards"]}


def cli(*args, timeout=300, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "builders", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_leftover_units_without_params_then_another_seed_gives_a_clean_build(tmp_path, small_smiles_file):
    """A build killed while removing .build/ leaves units without params.json; a later build
    with another seed must redo them, not reuse them."""
    root = tmp_path / "mixed"
    build_small(root, small_smiles_file, seed=0, keep_work=True)
    out = release_dir(root, RELEASE)
    (out / ".build" / "params.json").unlink()
    (out / "manifest.json").unlink()
    assert len(list((out / ".build" / "units").glob("*.json"))) > 0
    mixed, _ = build_small(root, small_smiles_file, seed=1)
    clean, _ = build_small(tmp_path / "clean", small_smiles_file, seed=1)
    assert mixed["parameters"]["seed"] == 1
    assert shard_hashes(mixed) == shard_hashes(clean)
    assert verify_release(out) == []


def test_a_unit_whose_tar_changed_is_redone(tmp_path, small_smiles_file):
    root = tmp_path / "r"
    clean, out = build_small(root, small_smiles_file, keep_work=True)
    (out / "manifest.json").unlink()
    tar = out / ".build" / "units" / "unit-000000.tar"
    tar.write_bytes(tar.read_bytes()[:-1024])  # a unit damaged after it was written
    again, _ = build_small(root, small_smiles_file)
    assert shard_hashes(again) == shard_hashes(clean)


def test_a_second_build_into_the_same_release_refuses_with_one_line(tmp_path, small_smiles_file):
    from filelock import FileLock

    root = tmp_path / "locked"
    holder = FileLock(str(build_lock(root, RELEASE).lock_file))
    with holder:  # another build holds the release
        spec = get_release(RELEASE)
        with pytest.raises(BuildError, match="another build of random-conformers is running"):
            build_release(spec, root, {"input": str(small_smiles_file)}, progress=False)
        res = cli("build", RELEASE, "--input", small_smiles_file, "--root", root, "--quiet")
        assert res.returncode == 2 and len(error_lines(res.stderr)) == 1, res.stderr
        assert "another build" in res.stderr
    assert not release_dir(root, RELEASE).exists() or not (release_dir(root, RELEASE) / ".build").exists()


def test_two_simultaneous_builds_end_with_one_release_and_one_message(tmp_path, small_smiles_file, small_release):
    root = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "builders", "build", RELEASE, "--input", str(small_smiles_file), "--root", str(root),
           "--workers", "1", "--unit-size", "2", "--quiet"]
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    units = release_dir(root, RELEASE) / ".build" / "units"
    deadline = time.time() + 120
    while time.time() < deadline and not list(units.glob("*.json")) and first.poll() is None:
        time.sleep(0.02)
    assert first.poll() is None, "the first build finished before the second started"
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2 and error_lines(second.stderr) == [next(iter(error_lines(second.stderr)))]
    assert "another build of random-conformers is running" in second.stderr
    manifest = read_manifest(release_dir(root, RELEASE))
    assert shard_hashes(manifest) == shard_hashes(small_release[0])
    assert verify_release(release_dir(root, RELEASE)) == []
    assert not (release_dir(root, RELEASE) / ".build").exists()


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find worker processes")
def test_kill_9_of_the_build_leaves_no_worker_running(tmp_path, small_smiles_file):
    root = tmp_path / "orphans"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "builders", "build", RELEASE, "--input", str(small_smiles_file), "--root", str(root),
           "--workers", "2", "--unit-size", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    units = release_dir(root, RELEASE) / ".build" / "units"
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and proc.poll() is None:
        workers = [p for p in _children(proc.pid) if "densegen" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                   or "multiprocessing" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        if len(workers) >= 2 and len(list(units.glob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None and len(workers) >= 2, "the build ended before its workers could be seen"
    os.kill(proc.pid, signal.SIGKILL)  # the build's main process only, not its process group
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a worker outlived the killed build"


def test_inputs_that_kill_their_worker_become_recorded_failures(tmp_path, small_smiles_file, small_release):
    """A segfault and a hard exit on two inputs: the process-pool build completes, each is one
    failure with stage and reason, every other sample is exactly as without them."""
    lines = small_smiles_file.read_text().splitlines()
    lines[10], lines[50] = "CRASH_SEGV", "CRASH_EXIT"
    crashing = tmp_path / "crashing.smi"
    crashing.write_text("\n".join(lines) + "\n")
    from tests.crash_release import CrashingConformers

    params = {"input": str(crashing), "sources": "qm9,zinc", "conformer": {}}
    manifest = build_release(CrashingConformers(), tmp_path / "crash", params, workers=2, progress=False, unit_size=8)
    out = release_dir(tmp_path / "crash", RELEASE)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    worker = {f["input"]: f for f in failures if f["stage"] == "worker"}
    assert set(worker) == {"CRASH_SEGV", "CRASH_EXIT"}
    assert "SIGSEGV" in worker["CRASH_SEGV"]["reason"] and "3 attempts" in worker["CRASH_SEGV"]["reason"]
    assert "exited with code 7" in worker["CRASH_EXIT"]["reason"]
    # the same file built by the plain release (where the markers are just invalid SMILES)
    plain = build_release(get_release(RELEASE), tmp_path / "plain", params, workers=1, progress=False, unit_size=8)
    assert shard_hashes(manifest) == shard_hashes(plain)
    assert manifest["failures"]["total"] == plain["failures"]["total"]
    assert verify_release(out) == []


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return res.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a small tmpfs")
def test_a_full_disk_gives_one_line_and_a_resumable_state(tmp_path, small_smiles_file, small_release):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "320k"):
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        res = cli("build", RELEASE, "--input", small_smiles_file, "--root", disk, "--workers", "1",
                  "--unit-size", "4", "--quiet")
        assert res.returncode == 3, res.stderr
        lines = error_lines(res.stderr)
        assert len(lines) == 1 and "No space left on device" in lines[0] and "resume" in lines[0], res.stderr
        units = release_dir(disk, RELEASE) / ".build" / "units"
        assert len(list(units.glob("*.json"))) > 0  # what was finished is kept
        assert not list(release_dir(disk, RELEASE).rglob(".*.tmp-*"))  # no half-written files
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        res = cli("build", RELEASE, "--input", small_smiles_file, "--root", disk, "--workers", "1",
                  "--unit-size", "4", "--quiet")
        assert res.returncode == 0, res.stderr
        assert shard_hashes(read_manifest(release_dir(disk, RELEASE))) == shard_hashes(small_release[0])
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.parametrize("kind", ["directory", "empty", "fifo", "device", "missing"])
def test_an_input_that_is_not_a_smiles_file_is_refused_at_once(tmp_path, kind):
    path = {"directory": tmp_path, "empty": tmp_path / "empty.smi", "fifo": tmp_path / "fifo",
            "device": Path("/dev/zero"), "missing": tmp_path / "missing.smi"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    if kind == "fifo":
        os.mkfifo(path)
    start = time.perf_counter()
    res = cli("build", RELEASE, "--input", path, "--root", tmp_path / "root", "--quiet", timeout=60)
    assert time.perf_counter() - start < 30
    lines = error_lines(res.stderr)
    assert res.returncode == 2 and len(lines) == 1 and str(path) in lines[0], res.stderr
    expected = {"directory": "is a directory", "empty": "is empty", "fifo": "is a FIFO", "device": "is a device",
                "missing": "no such file"}[kind]
    assert expected in lines[0]
    assert not (tmp_path / "root" / "densegen" / RELEASE / "manifest.json").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--seed", "-1", "--seed must be an integer from 0 to 2^63-1"),
    ("--seed", "9223372036854775808", "--seed must be an integer from 0 to 2^63-1"),
    ("--workers", "0", "--workers must be >= 1"),
    ("--limit", "-5", "--limit must be >= 0"),
    ("--unit-size", "0", "--unit-size must be >= 1")])
def test_an_option_out_of_range_is_refused(tmp_path, small_smiles_file, option, value, message):
    res = cli("build", RELEASE, "--input", small_smiles_file, "--root", tmp_path, option, value, "--quiet")
    lines = error_lines(res.stderr)
    assert res.returncode == 2 and len(lines) == 1 and message in lines[0], res.stderr
    assert not (release_dir(tmp_path, RELEASE) / "manifest.json").exists()


def test_long_lines_and_look_alike_characters_are_recorded_not_built(tmp_path):
    path = tmp_path / "hostile.smi"
    lines = ["CCO", "C" * 1_000_000, "\uff23\uff23O", "\u0421CO", "C\u202eCO", "C\u200bCO", "CCN"]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    manifest, out = build_small(tmp_path, path)
    assert sum(v["samples"] for v in manifest["splits"].values()) == 2  # CCO and CCN
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 5 and all(f["stage"] == "input" for f in failures)
    assert max(len(json.dumps(f)) for f in failures) < 1000  # a 1 MB line is not stored whole
    by_line = {f["source"].rsplit(":", 1)[1]: f["reason"] for f in failures}
    assert "longer than the limit" in by_line["2"] and "1000001 bytes" in by_line["2"]
    assert "FULLWIDTH LATIN CAPITAL LETTER C" in by_line["3"]
    assert "CYRILLIC CAPITAL LETTER ES" in by_line["4"]
    assert "RIGHT-TO-LEFT OVERRIDE" in by_line["5"]
    assert "ZERO WIDTH SPACE" in by_line["6"]
