"""The read side of a published release (issue 15): fetch_release downloads with
huggingface_hub's real hf_hub_download exactly what the manifest lists, and the folder reads
and verifies like the local build; hub_shard_urls feeds webdataset over HTTP. The Hub is a
local stand-in of its file endpoint (tests/hub_server.py)."""
from __future__ import annotations

import shutil

import pytest

from builders.format.hub import fetch_release, hub_shard_urls
from builders.format.manifest import read_manifest
from builders.format.reader import iter_release, webdataset_pipeline
from builders.format.verify import verify_release

from .hub_server import HubStandIn, commit_of

REPO_ID = "densegen/random-conformers"


@pytest.fixture()
def published(small_release, tmp_path):
    """The small release as a Hub repo, with a stray shard the manifest does not list."""
    _, out = small_release
    repo = tmp_path / "repo"
    shutil.copytree(out, repo)
    (repo / "data" / "train" / "random-conformers-train-999999.tar").write_bytes(b"not listed")
    with HubStandIn({REPO_ID: repo}) as hub:
        yield hub, out


def _samples(path, split):
    return [(s["__key__"], s["positions"].tobytes(), s["meta"]) for s in iter_release(path, split)]


def test_a_fetched_release_reads_and_verifies_like_the_build(published, tmp_path):
    hub, out = published
    local = fetch_release(REPO_ID, tmp_path / "local", endpoint=hub.endpoint)
    assert verify_release(local) == []
    for split in ("train", "valid", "test"):
        assert _samples(local, split) == _samples(out, split)
    manifest = read_manifest(out)
    assert hub.downloaded() == {"manifest.json", "README.md", "croissant.json", "failures.jsonl"} | {
        sh["path"] for sh in manifest.shard_records} | {  # the stray shard was never asked for
        r["path"] for r in manifest["parquet"]}


def test_one_split_fetches_only_its_shards_and_a_second_fetch_downloads_nothing(published, tmp_path):
    hub, out = published
    local = fetch_release(REPO_ID, tmp_path / "local", splits=["test"], endpoint=hub.endpoint)
    shards = {p for p in hub.downloaded() if p.startswith("data/")}
    assert shards == set(read_manifest(out).shard_paths("test"))
    assert {p for p in hub.downloaded() if p.startswith("parquet/")} == {
        r["path"] for r in read_manifest(out)["parquet"] if r["split"] == "test"}   # the Parquet copy too
    assert _samples(local, "test") == _samples(out, "test")
    before = len([r for r in hub.requests if r[0] == "GET"])
    fetch_release(REPO_ID, tmp_path / "local", splits=["test"], endpoint=hub.endpoint)
    assert len([r for r in hub.requests if r[0] == "GET"]) == before  # unchanged files come from local_dir


def test_bad_names_are_refused_with_one_line(published, tmp_path):
    from huggingface_hub.errors import RepositoryNotFoundError

    hub, _ = published
    with pytest.raises(ValueError, match=r"random-conformers: no split 'tset'; it has \['test', 'train', 'valid'\]"):
        fetch_release(REPO_ID, tmp_path / "a", splits=["tset"], endpoint=hub.endpoint)
    with pytest.raises(ValueError, match="no config 'grid'"):
        fetch_release(REPO_ID, tmp_path / "b", config="grid", endpoint=hub.endpoint)
    with pytest.raises(RepositoryNotFoundError):
        fetch_release("densegen/no-such-release", tmp_path / "c", endpoint=hub.endpoint)


def test_webdataset_streams_the_listed_shards_over_http(published):
    import webdataset as wds

    from builders.format.encoding import safe_handler

    hub, out = published
    urls = hub_shard_urls(REPO_ID, "valid", endpoint=hub.endpoint)
    commit = commit_of(hub.repos[REPO_ID])
    manifest = read_manifest(out)
    assert urls == [f"{hub.endpoint}/datasets/{REPO_ID}/resolve/{commit}/{p}" for p in manifest.shard_paths("valid")]
    streamed = [(s["__key__"], s["meta.json"]) for s in wds.WebDataset(urls, shardshuffle=False)
                .decode(safe_handler, pre=[], post=[])]
    local = [(s["__key__"], s["meta.json"]) for s in webdataset_pipeline(out, "valid")]
    assert streamed == local and len(local) > 0
