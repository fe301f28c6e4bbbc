"""The Dask executor (issue 15): a real distributed.LocalCluster of 2 worker processes builds
the same bytes as the process pool, also when a worker is SIGKILLed mid-build and when the
driver is killed with -9 and the build rerun; README's Slurm recipe (dask-jobqueue's real
SLURMCluster, adaptive) builds them too, its jobs run by stand-ins for sbatch and scancel."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from builders.format.build import build_release
from builders.format.manifest import read_manifest, release_dir
from builders.format.registry import get_release
from builders.format.verify import verify_release

from .conftest import REPO, TEST_DATA, zinc_smiles

pytest.importorskip("distributed")

RELEASE = "random-conformers"


def _hashes(manifest) -> dict:
    return {sh["path"]: sh["sha256"] for sh in manifest.shard_records}


def _params(smiles_file) -> dict:
    return {"input": str(smiles_file), "sources": "qm9,zinc", "conformer": {}}


@pytest.fixture(scope="module")
def pool_release(tmp_path_factory, small_smiles_file):
    """The 120-line input built by the local process pool (2 workers)."""
    root = tmp_path_factory.mktemp("pool")
    return build_release(get_release(RELEASE), root, _params(small_smiles_file), workers=2, progress=False,
                         unit_size=8)


def test_a_local_cluster_of_two_workers_builds_the_process_pools_bytes(tmp_path, small_smiles_file, pool_release):
    from builders.format.dask_executor import DaskExecutor

    with DaskExecutor(workers=2) as executor:
        assert len(executor.client.nthreads()) == 2  # two worker processes, one task thread each
        manifest = build_release(get_release(RELEASE), tmp_path, _params(small_smiles_file), executor=executor,
                                 progress=False, unit_size=8)
    assert _hashes(manifest) == _hashes(pool_release)
    assert manifest.total_samples == pool_release.total_samples > 50
    assert verify_release(release_dir(tmp_path, RELEASE)) == []


def test_a_worker_killed_mid_build_costs_only_its_unit(tmp_path, small_smiles_file, pool_release, monkeypatch):
    """The worker that reaches input 70 SIGKILLs itself once; Dask reschedules its unit, the
    nanny starts a new worker, and the release is byte-identical to the undisturbed build."""
    from builders.format.dask_executor import DaskExecutor
    from tests.crash_release import KilledOnceConformers

    target = small_smiles_file.read_text().splitlines()[70]
    trigger = tmp_path / "kill-once.txt"
    trigger.write_text(target + "\n")
    monkeypatch.setenv("DENSEGEN_TEST_KILL_ONCE", str(trigger))  # before the cluster starts its workers
    with DaskExecutor(workers=2) as executor:
        manifest = build_release(KilledOnceConformers(), tmp_path, _params(small_smiles_file), executor=executor,
                                 progress=False, unit_size=8)
    assert (tmp_path / "kill-once.txt.done").exists(), "no worker was killed"
    assert _hashes(manifest) == _hashes(pool_release)
    assert manifest.failures_total == pool_release.failures_total  # no input blamed for the death


def _units(root):
    return list((release_dir(root, RELEASE) / ".build" / "units").glob("*.json"))


def test_a_driver_killed_with_sigkill_resumes_to_the_same_bytes(tmp_path, small_smiles_file):
    """kill -9 of the CLI driver after a few units: its LocalCluster worker processes end with it, and
    the same command run again finishes the build with the process pool's bytes."""
    big = tmp_path / "big.smi"
    big.write_text(small_smiles_file.read_text() * 5)  # 600 lines, 300 units: long enough to kill
    pool = build_release(get_release(RELEASE), tmp_path / "pool", _params(big), workers=2, progress=False,
                         unit_size=2)
    argv = [sys.executable, "-m", "builders", "build", RELEASE, "--input", str(big), "--root", str(tmp_path),
            "--executor", "dask", "--workers", "2", "--unit-size", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(_units(tmp_path)) < 4 and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the build finished before it could be killed"
    done_before = len(_units(tmp_path))
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2, "the LocalCluster's worker processes were not found"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"worker processes outlived the killed driver: {alive}"
    assert 0 < done_before < 300 and not (release_dir(tmp_path, RELEASE) / "manifest.json").exists()
    res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    manifest = read_manifest(release_dir(tmp_path, RELEASE))
    assert _hashes(manifest) == _hashes(pool)


def test_dask_options_are_checked_with_one_line(tmp_path, small_smiles_file):
    from builders.format.build import make_executor

    with pytest.raises(ValueError, match="--scheduler needs --executor dask"):
        make_executor(2, kind="local", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="unknown executor 'spark'"):
        make_executor(2, kind="spark")
    res = subprocess.run([sys.executable, "-m", "builders", "build", RELEASE, "--input", str(small_smiles_file),
                          "--root", str(tmp_path), "--threads-per-worker", "0", "--quiet"], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--threads-per-worker must be an integer >= 1" in res.stderr


def test_dask_in_flight_is_checked(tmp_path):
    from builders.format.build import make_executor

    with pytest.raises(ValueError, match="--in-flight needs --executor dask"):
        make_executor(2, kind="local", in_flight=4)
    res = subprocess.run([sys.executable, "-m", "builders", "build", RELEASE, "--root", str(tmp_path),
                          "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--in-flight", "0", "--quiet"],
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and res.stderr.strip() == "error: --in-flight must be >= 1, got 0"


def test_the_window_grows_with_the_cluster():
    """Units queued follow the cluster's task threads as it grows (what adaptive scaling needs)."""
    from builders.format.dask_executor import DaskExecutor

    with DaskExecutor(workers=1) as executor:
        assert executor._window() == 2
        executor.cluster.scale(3)
        executor.client.wait_for_workers(3, timeout=60)
        executor._threads_read_at = float("-inf")  # the 5 s cache of the thread count, expired
        assert executor._window() == 6


def test_the_slurm_recipe_builds_the_process_pools_bytes(tmp_path, monkeypatch):
    """README's recipe: a real dask_jobqueue.SLURMCluster with adaptive scaling, whose job
    scripts the sbatch stand-in (tests/data/slurm_stub) runs as local processes; the CLI build
    connects with --scheduler and gives the process pool's bytes, the cluster grows to its
    maximum because --in-flight queues the work, and closing it cancels every job."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    stub = tmp_path / "slurm"
    shutil.copytree(TEST_DATA / "slurm_stub", stub)
    monkeypatch.setenv("PATH", f"{stub}{os.pathsep}{os.environ['PATH']}")
    big = tmp_path / "zinc600.smi"
    big.write_text("\n".join(zinc_smiles(600)) + "\n")  # 600 molecules in 12 units of 50: 8 queued at
    pool = build_release(get_release(RELEASE), tmp_path / "pool", _params(big), workers=2, progress=False,
                         unit_size=50)  # 60 s each exceed adapt's 5 s target, so a second job is submitted
    import dask

    from builders.format.dask_executor import TASK_PREFIX

    # as README's recipe: adaptive scaling knows a unit's duration before the first one ends
    durations = dask.config.set({"distributed.scheduler.default-task-durations": {TASK_PREFIX: "60s"}})
    cluster = SLURMCluster(cores=1, processes=1, memory="2GiB", walltime="00:30:00",
                           worker_extra_args=["--lifetime", "25m", "--lifetime-stagger", "1m"],
                           job_script_prologue=["export OMP_NUM_THREADS=1"])
    try:
        script = cluster.job_script()
        for line in ("#SBATCH --cpus-per-task=1", "#SBATCH --mem=2G", "#SBATCH -t 00:30:00", "--nthreads 1",
                     "--lifetime 25m", "export OMP_NUM_THREADS=1"):
            assert line in script, f"{line!r} not in the job script:\n{script}"
        cluster.adapt(minimum_jobs=1, maximum_jobs=2)
        res = subprocess.run([sys.executable, "-m", "builders", "build", RELEASE, "--input", str(big),
                              "--root", str(tmp_path), "--executor", "dask", "--scheduler", cluster.scheduler_address,
                              "--in-flight", "8", "--unit-size", "50", "--quiet"],
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        cluster.close()
        durations.__exit__(None, None, None)  # the setting is undone
    manifest = read_manifest(release_dir(tmp_path, RELEASE))
    assert _hashes(manifest) == _hashes(pool)
    jobs = sorted(p.stem for p in (stub / "jobs").glob("*.sh"))
    assert len(jobs) == 2, f"adaptive scaling submitted {len(jobs)} job(s), expected its maximum of 2"
    assert all(re.fullmatch(r"\d+", j) for j in jobs)
    deadline = time.time() + 30
    while time.time() < deadline and len(list((stub / "jobs").glob("*.cancelled"))) < 2:
        time.sleep(0.2)
    assert len(list((stub / "jobs").glob("*.cancelled"))) == 2, "closing the cluster did not scancel its jobs"
