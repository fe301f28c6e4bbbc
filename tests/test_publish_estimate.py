"""``builders estimate`` and ``builders publish`` (issue 15): everything up to the network call."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from builders.format.manifest import read_manifest, release_dir

from .conftest import REPO, build_small

RELEASE = "random-conformers"


def _cli(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "builders", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture()
def release(tmp_path, small_smiles_file):
    manifest, out = build_small(tmp_path, small_smiles_file)
    return manifest, out


def test_estimate_scales_the_pilots_stage_seconds_and_bytes(release):
    from builders.format.estimate import estimate, format_estimate

    manifest, out = release
    n = manifest["inputs"]["processed"]
    est = estimate(manifest, 10 * n, workers=(1, 4))
    stages = manifest["timing"]["stage_cpu_seconds"]
    assert est.stage_cpu_hours["total"] == pytest.approx(10 * stages["total"] / 3600)
    assert est.wall_hours[4] == pytest.approx(est.wall_hours[1] / 4)
    assert est.samples == pytest.approx(10 * manifest.total_samples)
    assert est.bytes == pytest.approx(10 * manifest.total_bytes)
    text = format_estimate(est)
    assert f"{10 * n:,} inputs, projected from a pilot of {n}" in text and "| total |" in text
    with pytest.raises(ValueError, match="--molecules must be >= 1"):
        estimate(manifest, 0)


def test_estimate_cli_prints_the_projection_and_refuses_a_pilot_without_timings(release, tmp_path):
    manifest, out = release
    res = _cli("estimate", RELEASE, "--molecules", 855000, "--workers", 1, 100, 1000, "--pilot", out)
    assert res.returncode == 0, res.stderr
    assert "855,000 inputs" in res.stdout and "| 1,000 |" in res.stdout and "release size" in res.stdout
    bare = tmp_path / "bare"
    bare.mkdir()
    doc = dict(manifest)
    doc.pop("timing")
    (bare / "manifest.json").write_text(json.dumps(doc))
    res = _cli("estimate", RELEASE, "--molecules", 10, "--pilot", bare)
    assert res.returncode == 2 and "records no processed inputs or stage timings" in res.stderr
    res = _cli("estimate", "p1-crystals", "--molecules", 10, "--pilot", out)
    assert res.returncode == 2 and "is a random-conformers release, not p1-crystals" in res.stderr


def test_publish_dry_run_lists_the_files_and_why_each_check_passed(release):
    manifest, out = release
    res = _cli("publish", out, "--repo-id", "densegen/random-conformers", "--dry-run", env={"HF_TOKEN": "hf_test"})
    assert res.returncode == 0, res.stderr
    listed = {line.split()[0] for line in res.stdout.splitlines() if line.startswith("  ")}
    assert listed == {"README.md", "manifest.json", "failures.jsonl", "croissant.json"} | \
        set(manifest.shard_paths("train")) | \
        set(manifest.shard_paths("valid")) | set(manifest.shard_paths("test")) | \
        {r["path"] for r in manifest["parquet"]}                       # and the Parquet copy
    assert "check passed: verify" in res.stdout and "check passed: card: YAML parsed" in res.stdout
    assert "check passed: layout" in res.stdout and "check passed: token" in res.stdout
    assert "hf_test" not in res.stdout  # the token itself is never printed


def test_publish_never_uploads_work_folders_or_locks(release):
    from builders.format.publish import publish_checks

    manifest, out = release
    (out / ".build").mkdir()
    (out / ".build" / "unit-000000.tar").write_bytes(b"x")
    (out / ".x.lock").write_bytes(b"")
    files = set(publish_checks(out, "a/b").files)
    assert not any(f.startswith(".build/") or f.endswith(".lock") for f in files)
    assert set(manifest.shard_paths("train")) <= files and "manifest.json" in files


@pytest.mark.parametrize("damage, message", [
    ("yaml", "the Hub cannot parse its YAML header"),
    ("license", "has no license"),
    ("data_files", "which is not in the folder"),
])
def test_a_card_the_hub_would_refuse_stops_the_publish(release, damage, message):
    from builders.format.publish import PublishError, check_card

    _, out = release
    card = (out / "README.md").read_text()
    head, body = card.split("\n---\n", 1)
    if damage == "yaml":
        head = head + "\nconfigs: [unclosed"
    elif damage == "license":
        head = "\n".join(line for line in head.splitlines() if not line.startswith("license:"))
    else:
        head = head.replace("data/train/", "data/nowhere/", 1)
    (out / "README.md").write_text(head + "\n---\n" + body)
    with pytest.raises(PublishError, match=message):
        check_card(out)


def test_hub_limits_are_checked_on_the_file_list():
    from builders.format.publish import PublishError, check_layout

    ok, notes = check_layout({"README.md": 10, "data/train/a.tar": 5 * 10**8})
    assert "largest data/train/a.tar" in ok and notes == []
    with pytest.raises(PublishError, match="10,000 per folder"):
        check_layout({f"data/train/s-{i:06d}.tar": 10 for i in range(10_000)})
    with pytest.raises(PublishError, match="under 20 GB"):
        check_layout({"data/train/huge.tar": 21 * 10**9})
    _, notes = check_layout({f"data/{i % 50}/s-{i:06d}.tar": 10**6 for i in range(200)})
    assert notes and "median 1.0 MB" in notes[0]


def test_a_bad_repo_id_or_folder_is_one_line(tmp_path, release):
    _, out = release
    res = _cli("publish", out, "--repo-id", "not a repo", "--dry-run")
    assert res.returncode == 2 and "must look like ORG/NAME" in res.stderr
    res = _cli("publish", tmp_path / "missing", "--repo-id", "a/b", "--dry-run")
    assert res.returncode == 2 and "not a release folder" in res.stderr
