"""Croissant metadata (issue 15): every build writes a croissant.json that mlcroissant
validates; the records mlcroissant reads from the local release (its own tar extraction and
file matching) are the reader's samples; verify refuses an edited or missing file."""
from __future__ import annotations

import json
import shutil

import pytest

from builders.format.croissant import RAI_KEYS, croissant_bytes, croissant_records, validate_croissant
from builders.format.manifest import CROISSANT, read_manifest
from builders.format.reader import iter_release
from builders.format.registry import get_release, release_names
from builders.format.verify import verify_release

pytest.importorskip("mlcroissant")


@pytest.fixture()
def croissant_cache(tmp_path, monkeypatch):
    """A fresh folder for mlcroissant's extraction of the shards: it keys them on their path
    relative to croissant.json, so two test releases would otherwise share one extraction.
    (``$CROISSANT_CACHE`` sets it, but only before mlcroissant is first imported.)"""
    from etils import epath
    import mlcroissant._src.operation_graph.operations.extract as extract

    cache = tmp_path / "croissant-extract"
    monkeypatch.setattr(extract, "EXTRACT_PATH", epath.Path(cache))
    return cache


def test_the_build_writes_a_croissant_file_mlcroissant_validates(small_release):
    manifest, out = small_release
    file = out / CROISSANT
    assert validate_croissant(file) == []
    doc = json.loads(file.read_text())
    assert doc["name"] == "random-conformers"
    assert doc["license"] == "https://opensource.org/licenses/MIT"
    assert "Mo3ENet" in doc["rai:dataCollection"] and "QM9" in doc["rai:dataBiases"]
    shards = {d["contentUrl"]: d for d in doc["distribution"] if d["@type"] == "cr:FileObject"}
    listed = manifest.shard_records + manifest["parquet"]                # shards and the Parquet copy
    assert set(shards) == {sh["path"] for sh in listed}
    assert {shards[r["path"]]["encodingFormat"] for r in manifest["parquet"]} == {"application/x-parquet"}
    for sh in listed:
        assert shards[sh["path"]]["sha256"] == sh["sha256"]
        assert shards[sh["path"]]["contentSize"] == f"{sh['bytes']} B"
    assert [rs["@id"] for rs in doc["recordSet"]] == ["default/train", "default/valid", "default/test"]
    # the same manifest gives the same bytes (a rebuild, or verify's regeneration)
    assert file.read_bytes() == croissant_bytes(get_release("random-conformers"), read_manifest(out))


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_mlcroissant_reads_the_readers_samples(small_release, split, croissant_cache):
    _, out = small_release
    records = croissant_records(out / CROISSANT, f"default/{split}")
    mine = {s["__key__"]: s["meta"] for s in iter_release(out, split)}
    assert len(records) == len(mine) > 0
    assert {r["__key__"]: r["meta"] for r in records} == mine
    assert any(croissant_cache.rglob("*.meta.json"))  # read from mlcroissant's own extraction of the shards


def test_verify_refuses_an_edited_or_missing_croissant(small_release, tmp_path):
    _, out = small_release
    copy = tmp_path / "random-conformers"
    shutil.copytree(out, copy)
    doc = json.loads((copy / CROISSANT).read_text())
    doc["distribution"][0]["sha256"] = "0" * 64
    (copy / CROISSANT).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert verify_release(copy) == ["croissant.json: does not match manifest.json (edited, or from another build)"]
    (copy / CROISSANT).unlink()
    assert verify_release(copy) == ["croissant.json: missing (the release's Croissant metadata)"]


def test_a_broken_croissant_is_reported_by_mlcroissant(tmp_path):
    bad = tmp_path / CROISSANT
    bad.write_text(json.dumps({"@context": {"@vocab": "https://schema.org/"}, "@type": "sc:Dataset"}))
    problems = validate_croissant(bad)
    assert problems and all(p.startswith(f"{bad}: ") for p in problems)


@pytest.mark.parametrize("name", release_names())
def test_every_release_says_what_it_knows_for_responsible_ai(name):
    rai = get_release(name).responsible_ai({"parameters": {}})
    assert set(rai) <= set(RAI_KEYS)
    for key in ("data_collection", "data_biases", "data_limitations", "personal_sensitive_information"):
        assert len(rai.get(key, "")) > 40, f"{name}: {key} is missing or empty"
