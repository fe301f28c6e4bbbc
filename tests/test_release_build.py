"""Release machinery on the random-conformers release: determinism, resume, hostile inputs, verify."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from rdkit import Chem

from builders.conformers.random_conformer import ROTATABLE
from builders.format.reader import iter_release, read_manifest
from builders.format.verify import verify_release

from .conftest import REPO, build_small


def shard_hashes(manifest: dict) -> dict:
    return {sh["path"]: sh["sha256"] for sh in manifest["shards"]}


def test_layout_manifest_and_card(small_release):
    manifest, out = small_release
    assert (out / "README.md").is_file() and (out / "manifest.json").is_file() and (out / "failures.jsonl").is_file()
    assert not (out / ".build").exists()
    for sh in manifest["shards"]:
        assert sh["path"].startswith(f"data/{sh['split']}/random-conformers-{sh['split']}-")
        assert (out / sh["path"]).stat().st_size == sh["bytes"]
    assert manifest["parameters"]["seed"] == 0
    assert manifest["parameters"]["conformer"]["max_heavy_atoms"] == 9
    assert manifest["split_function"]["version"] == "densegen-split-v1"
    assert manifest["inputs"]["count"] == 120
    n_samples = sum(v["samples"] for v in manifest["splits"].values())
    assert n_samples + manifest["failures"]["total"] == 120
    assert sum(manifest["failures"]["by_stage"].values()) == manifest["failures"]["total"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "license: mit" in card
    # data_files list the exact shards of each split (a stray file in data/train/ is never loaded)
    for sh in manifest["shards"]:
        assert f"- {sh['path']}\n" in card
    assert "*.tar" not in card and "positions.npy" in card
    assert "MXtalTools" in card  # the card notes where the authors' code differed


def test_every_built_molecule_is_chemically_sane(small_release):
    _, out = small_release
    n = 0
    noise = {"train": [], "valid": [], "test": []}
    for split in ("train", "valid", "test"):
        for s in iter_release(out, split):
            n += 1
            z, pos = s["atomic_numbers"], s["positions"]
            assert z.dtype == np.uint8 and pos.dtype == np.float32 and pos.shape == (len(z), 3)
            assert set(z.tolist()) <= {1, 6, 7, 8, 9}
            assert 5 <= len(z) <= 30
            meta = s["meta"]
            mol = Chem.MolFromSmiles(meta["smiles"])
            assert mol is not None, meta["smiles"]  # sanitizes
            assert mol.GetNumHeavyAtoms() <= 9
            molh = Chem.AddHs(mol)
            assert sorted(a.GetAtomicNum() for a in molh.GetAtoms()) == sorted(z.tolist())
            d = np.linalg.norm(pos[:, None].astype(np.float64) - pos[None], axis=-1)
            d[np.diag_indices(len(d))] = np.inf
            assert d.min() >= 0.7
            und = s["undistorted_positions"].astype(np.float64)
            assert s["undistorted_positions"].dtype == np.float32 and und.shape == pos.shape
            assert np.linalg.norm(und - und.mean(0), axis=1).max() <= 15.0
            sigma, scale = meta["noise_sigma_angstrom"], meta["scale"]
            assert sigma == (0.1 if split == "train" else 0.01)
            if split == "train":
                assert 0.9 <= scale <= 1.25
            else:
                assert scale == 1.0  # the authors never rescale at evaluation
            # positions = c + s (undistorted + noise - c), c the undistorted centroid: the noise comes back
            c = und.mean(0)
            noise[split].append(((pos.astype(np.float64) - c) / scale + c - und).ravel())
            # every rotatable bond of the molecule as built was spun (the paper; not the code's gate)
            assert len(meta["torsions_deg"]) == len(molh.GetSubstructMatches(ROTATABLE))
            assert all(0.0 <= t < 360.0 for t in meta["torsions_deg"])
    assert n > 60
    for split, expected in (("train", 0.1), ("valid", 0.01), ("test", 0.01)):
        drawn = np.concatenate(noise[split])
        assert len(drawn) > 30 and abs(drawn.std() / expected - 1) < 0.25, (split, drawn.std())


def test_same_seed_gives_byte_identical_shards_other_seed_does_not(tmp_path, small_smiles_file, small_release):
    manifest0, _ = small_release
    again, _ = build_small(tmp_path / "a", small_smiles_file, seed=0, workers=2, unit_size=7)
    assert shard_hashes(again) == shard_hashes(manifest0)  # other worker count and unit size too
    other, _ = build_small(tmp_path / "b", small_smiles_file, seed=1)
    assert shard_hashes(other) != shard_hashes(manifest0)


def test_kill_9_mid_build_then_resume_equals_uninterrupted(tmp_path, small_smiles_file, small_release):
    manifest0, _ = small_release
    root = tmp_path / "killed"
    cmd = [sys.executable, "-m", "builders", "build", "random-conformers", "--input", str(small_smiles_file),
           "--root", str(root), "--workers", "1", "--unit-size", "4", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    units = root / "densegen" / "random-conformers" / ".build" / "units"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(units.glob("*.json"))) < 5 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(units.glob("*.json")))
    assert 5 <= done_before < 30
    assert not (root / "densegen" / "random-conformers" / "manifest.json").exists()

    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    manifest = read_manifest(root / "densegen" / "random-conformers")
    assert shard_hashes(manifest) == shard_hashes(manifest0)
    assert verify_release(root / "densegen" / "random-conformers") == []
    keys = [s["__key__"] for sp in ("train", "valid", "test") for s in iter_release(root / "densegen" / "random-conformers", sp)]
    assert len(keys) == len(set(keys))
    failures = (root / "densegen" / "random-conformers" / "failures.jsonl").read_text().splitlines()
    assert len(failures) == manifest0["failures"]["total"]


def test_verify_names_a_shard_with_one_flipped_byte(tmp_path, small_release):
    import shutil

    _, out = small_release
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert verify_release(copy) == []
    shard = copy / read_manifest(copy)["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = verify_release(copy)
    assert problems and any(shard.relative_to(copy).as_posix() in p and "sha256" in p for p in problems)
    res = subprocess.run([sys.executable, "-m", "builders", "verify", str(copy)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 1 and shard.name in res.stderr


def test_verify_catches_a_molecule_in_the_wrong_split(tmp_path, small_release):
    """Move a train shard into the test folder (and fix its hash): verify must object."""
    import hashlib
    import shutil

    _, out = small_release
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = read_manifest(copy)
    train = next(sh for sh in manifest["shards"] if sh["split"] == "train")
    target = copy / "data" / "test" / "moved.tar"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(copy / train["path"], target)
    manifest["shards"].append({**train, "path": "data/test/moved.tar", "split": "test",
                               "sha256": hashlib.sha256(target.read_bytes()).hexdigest()})
    (copy / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_release(copy)
    assert any("belongs to split train" in p for p in problems)
    assert any("also in" in p for p in problems)


def test_rebuild_of_a_finished_release_is_a_no_op_and_other_params_refuse_to_mix(tmp_path, small_smiles_file):
    from builders.format.build import BuildError, build_release
    from builders.format.registry import get_release

    m1, out = build_small(tmp_path, small_smiles_file, unit_size=40)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    m2, _ = build_small(tmp_path, small_smiles_file, unit_size=40)
    assert m2 == m1 and (out / "manifest.json").stat().st_mtime_ns == mtime
    # an unfinished build with other parameters is never silently mixed with a new one
    (out / ".build").mkdir()
    (out / ".build" / "params.json").write_text(json.dumps({"params": {"seed": 5}, "builder_version": "0.1.0"}))
    spec = get_release("random-conformers")
    with pytest.raises(BuildError, match="unfinished build with other parameters"):
        build_release(spec, tmp_path, {"input": str(small_smiles_file), "sources": "qm9,zinc", "conformer": {}},
                      seed=0, progress=False, unit_size=40)
    # same parameters (and keys) as an unfinished build, but the input file was edited since:
    # its work units must not be reused
    params = {"input": str(small_smiles_file), "sources": "qm9,zinc", "conformer": {}}
    (out / ".build" / "params.json").write_text(json.dumps({
        "params": {"release": spec.name, "seed": 0, "limit": None, "unit_size": 40,
                   "samples_per_shard": spec.samples_per_shard, "threads_per_worker": 1,
                   **spec.resolve_params(params)},
        "inputs_sha256": "0" * 64, "builder_version": "0.1.0"}))
    with pytest.raises(BuildError, match=r"\(inputs\)"):
        build_release(spec, tmp_path, {"input": str(small_smiles_file), "sources": "qm9,zinc", "conformer": {}},
                      seed=0, progress=False, unit_size=40)


def hostile_lines(rng) -> list[bytes]:
    """1,000 hostile input lines, each with the stage it must fail at."""
    lines: list[bytes] = []
    invalid = ["C1CC", "c1ccccc", "C(C)(C)(C)(C)C", "[Xx]", "C==C", "N(", "))", "C%99", "[C@@H", "XYZ", "1CC1", "c1cccc1"]
    charged = ["C[N+](C)(C)C", "CC(=O)[O-]", "[NH4+]", "[O-][N+](=O)c1ccccc1", "C[O-]", "[CH3+]"]
    metals = ["[Na]Cl", "[Fe]", "CC[Sn](CC)CC", "[Cu]1OC1", "O=[Pt]", "C[Hg]C", "[Li]C", "[Mg](Cl)C"]
    for i in range(300):
        lines.append(invalid[i % len(invalid)].encode() + b"q" * (i // len(invalid)))  # distinct invalid SMILES
    for i in range(200):
        lines.append((charged[i % len(charged)] + "." * 0 + "C" * (i // len(charged))).encode())
    for i in range(150):
        lines.append((metals[i % len(metals)] + "C" * (i // len(metals))).encode())
    for i in range(50):
        lines.append(("C" * (200 + i)).encode())  # 200-atom molecules
    lines += [b""] * 100  # empty lines
    lines += [b"CCO"] + [b"CCO"] * 99  # one real molecule, 99 duplicates of it
    garbage = np.random.default_rng(0).integers(0, 256, size=(100, 40), dtype=np.uint8)
    for row in garbage:
        lines.append(bytes(b if b != 10 else 11 for b in row.tolist()))  # binary garbage, no newlines
    assert len(lines) == 1000
    return lines


def test_1000_hostile_inputs_complete_with_every_rejection_recorded(tmp_path):
    path = tmp_path / "hostile.smi"
    path.write_bytes(b"\n".join(hostile_lines(np.random.default_rng(0))) + b"\n")
    manifest, out = build_small(tmp_path, path, unit_size=250)
    n_ok = sum(v["samples"] for v in manifest["splits"].values())
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert n_ok + len(failures) == 1000
    assert n_ok >= 1  # the one real molecule (CCO)
    for f in failures:
        assert f["stage"] and f["reason"] and "input" in f and f["stage"] != "internal", f
    stages = manifest["failures"]["by_stage"]
    assert stages.get("input", 0) >= 199 + 99  # empty lines, duplicates and undecodable garbage
    reasons = [f["reason"] for f in failures]
    assert sum(r == "empty line" for r in reasons) == 100
    assert sum(r.startswith("duplicate of line") for r in reasons) == 99
    assert any("not in H, C, N, O, F" in r for r in reasons)
    assert any("charged" in r for r in reasons)
    assert any("exceeds the input limit" in r for r in reasons)
    assert any(f["stage"] == "parse" for f in failures)
    assert verify_release(out) == []
