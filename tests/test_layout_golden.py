"""Moving code must not change what it builds: every release, built small with a fixed seed
through the command line, gives shards whose sha256 equals the hashes recorded here.

The hashes were recorded at commit aa84fbc, before the builders were reorganised (issue 14).
A change that alters a shard on purpose (a new field, a new encoding) must bump the release's
version and record the new hashes here in the same commit, saying why.

The last bits of BLAS and torch reductions follow the SIMD kernels the libraries pick for the
CPU: the hashes and metrics were recorded where OpenBLAS chose its Haswell kernels and torch
AVX2, and on an AVX-512 machine (OpenBLAS SkylakeX, torch AVX512) both parts differ in the
last digit. Every build and run here is therefore a subprocess with those kernels pinned
(:data:`PINNED_KERNELS`, x86-64 only), so the test compares code, not CPUs.

Two parts still follow the CPU: on an AVX2-only AMD EPYC (2026-12-04, the same packages) the
two train shards of the PubChem pipeline (their RHF density matrices) differ in the last bits,
and the quick runs' metrics by up to 5e-6 relative (the trained heads and the feature
extractors; kernels the two variables above do not pin, such as numpy's own SIMD loops). So
those shards have a second recorded set of hashes (:data:`OTHER_CPU_SHARDS`, byte-exact as
well), and metrics are compared to ``rel 1e-5`` (``abs 1e-12`` for the values that are zero
but for rounding): a code change gives identical numbers or ones far outside that.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

#: the SIMD kernels of the machine that recorded the hashes and metrics (read at library load)
PINNED_KERNELS = {"OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2"} \
    if platform.machine() in ("x86_64", "AMD64") else {}


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``python -m ...`` from the repository with :data:`PINNED_KERNELS` set."""
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **PINNED_KERNELS})


# Three tiny molecules for the PubChem pipeline, so the test pays for seconds of RHF, not minutes.
TINY_SMILES = "O\nCC\nC=O\n"

BUILDS = {
    # release: (extra command-line options, {shard path under the release: sha256})
    "random-conformers": (["--limit", "6"], {
        "data/train/random-conformers-train-000000.tar":
            "670b155e85d70f2e32b3901c41809b9e977d744bfaa6da4181f2b027665262d9",
    }),
    "p1-crystals": (["--limit", "3", "--starts", "1", "--noisy", "1"], {
        "data/train/p1-crystals-train-000000.tar":
            "c74f2a2f4cba7f02ffa628d486728c5f8a5939b5d87c537ee4d3e414ba05daa2",
    }),
    "pubchem-hf-density": (["--input", "{smiles}", "--conformers", "2", "--spacing", "0.6", "--grid"], {
        "data/train/pubchem-hf-density-train-000000.tar":
            "682d9a7aa028f0b746518c9c34acd2ba99df92b9de0d1290f8710dd9d60ae718",
        "data/test/pubchem-hf-density-test-000000.tar":
            "379e8f58d704b3c314b06256a107391e969a7f63b1610ef9408e0cc0953ae6a7",
        "grid/train/pubchem-hf-density-grid-train-000000.tar":
            "c60fae71a92d23229522276d7616969c389cbc28be32be25d46fea62125af638",
        "grid/test/pubchem-hf-density-grid-test-000000.tar":
            "6c2ce591bc59c9ad93601f1aac240c6f957caf157870ea47c6cd4479c3dd42ff",
    }),
    "qm9-hf-density": (["--limit", "2", "--spacing", "0.6", "--grid"], {
        "data/train/qm9-hf-density-train-000000.tar":
            "ebfb09ed039fdca10bf0761e47c52418976141ec4952bddf22b5d4923d47219f",
        "data/valid/qm9-hf-density-valid-000000.tar":
            "d39e6928aa8123c6ac585bf14d6671ddae4561a0309bcee30ede3f788428c327",
        "grid/train/qm9-hf-density-grid-train-000000.tar":
            "290d61b25d433f4a961f829114840e8d0273a0a4c6654b92bbfe8657a7c3a218",
        "grid/valid/qm9-hf-density-grid-valid-000000.tar":
            "ef525281f0ff85afe9a131c5899cd6c6ef827e6a6005e7583f2c65f92c0b90cf",
    }),
}


#: release -> {shard: sha256} recorded where the PubChem pipeline's float results round the
#: other way (AVX2-only AMD EPYC, 2026-12-04; shards not named keep the hash of :data:`BUILDS`)
OTHER_CPU_SHARDS = {
    "pubchem-hf-density": {
        "data/train/pubchem-hf-density-train-000000.tar":
            "c42cee6ff8d97adae11cc3b367475aaa7a92d2d9ca78979dade51d3c6f011cc3",
        "grid/train/pubchem-hf-density-grid-train-000000.tar":
            "a9a9a410bbecbc5e5321c6acac698686ab3081b5eee80a2bdf26584da3dc9eda",
    },
}
METRIC_REL_TOL, METRIC_ABS_TOL = 1e-5, 1e-12


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shards(release_dir: Path) -> dict:
    return {str(p.relative_to(release_dir)): _sha256(p) for p in sorted(release_dir.rglob("*.tar"))}


@pytest.fixture(scope="module")
def built_root(tmp_path_factory) -> Path:
    """One root with every release built small (p1-crystals from the random-conformers built there)."""
    root = tmp_path_factory.mktemp("golden")
    smiles = root / "tiny.smi"
    smiles.write_text(TINY_SMILES)
    for release, (options, _) in BUILDS.items():   # dict order: random-conformers before p1-crystals
        done = _run(["-m", "builders", "build", release, "--root", str(root), "--seed", "0", "--workers", "1",
                     "--quiet"] + [o.replace("{smiles}", str(smiles)) for o in options])
        assert done.returncode == 0, f"{release}: {done.stderr[-2000:]}"
    return root


@pytest.mark.parametrize("release", list(BUILDS))
def test_small_build_of_every_release_gives_the_recorded_shards(built_root, release):
    got = _shards(built_root / "densegen" / release)
    recorded = BUILDS[release][1]
    assert got in (recorded, {**recorded, **OTHER_CPU_SHARDS.get(release, {})})


GOLDEN_METRICS = REPO / "tests" / "data" / "golden_quick_metrics.json"


@pytest.fixture(scope="module")
def quick_data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quick-data")


def _differences(got, want, path: str = "") -> list[str]:
    """Where two metric trees differ: other keys, types or None-ness exactly, numbers beyond
    ``METRIC_REL_TOL`` / ``METRIC_ABS_TOL``."""
    import math

    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{path}: keys {sorted(set(got) ^ set(want))}"]
        return [d for k in want for d in _differences(got[k], want[k], f"{path}/{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items, recorded {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _differences(g, w, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool) and not isinstance(got, bool):
        ok = math.isclose(got, want, rel_tol=METRIC_REL_TOL, abs_tol=METRIC_ABS_TOL)
        return [] if ok else [f"{path}: {got!r}, recorded {want!r}"]
    return [] if got == want else [f"{path}: {got!r}, recorded {want!r}"]


def test_metric_comparison_catches_what_a_code_change_gives():
    want = {"per_seed": [{"seed": 0, "mae": 1.1208959388073934, "kid_std": 6.2e-16, "x": None}]}
    assert _differences({"per_seed": [{"seed": 0, "mae": 1.1208959388073934 * (1 + 5e-6), "kid_std": 4.8e-16,
                                       "x": None}]}, want) == []
    assert _differences({"per_seed": [{"seed": 0, "mae": 1.1209 * (1 + 1e-4), "kid_std": 6.2e-16, "x": None}]}, want)
    assert _differences({"per_seed": [{"seed": 1, "mae": 1.1208959388073934, "kid_std": 6.2e-16, "x": None}]}, want)
    assert _differences({"per_seed": [{"seed": 0, "mae": 1.1208959388073934, "kid_std": 6.2e-16, "x": 0.0}]}, want)
    assert _differences({"per_seed": [{"seed": 0, "mae": 1.1208959388073934, "kid_std": 6.2e-16}]}, want)


@pytest.mark.parametrize("run", sorted(__import__("json").loads(GOLDEN_METRICS.read_text())["runs"]))
def test_quick_benchmark_runs_give_the_recorded_metrics(quick_data_root, tmp_path, run):
    """``python -m benchmarks.run ... --quick``: every per-seed and aggregate number equals the one
    recorded (tests/data/golden_quick_metrics.json, written by this project at the commit it names),
    to :data:`METRIC_REL_TOL` (see the module docstring)."""
    import json

    recorded = json.loads(GOLDEN_METRICS.read_text())["runs"][run]
    out = tmp_path / "res"
    done = _run(["-m", "benchmarks.run", *recorded["argv"], "--quick", "--data-root", str(quick_data_root),
                 "--out", str(out), "--no-progress"])
    assert done.returncode == 0, f"{run}: {done.stderr[-2000:]}"
    (result,) = [p for p in out.glob("*.json")]
    assert _differences(json.loads(result.read_text())["metrics"], recorded["metrics"]) == []
