"""Hostile shards: every reader the README shows raises naming the shard (or reads only the
listed shards), nothing unpickles, and ``verify`` names each problem in one line.

Cases, each a copy of the small random-conformers release with one thing wrong:
truncated at a member header (manifest as built, or re-hashed so only the count is wrong),
truncated mid-sample, truncated inside a member, a stray test shard in data/train/ (with the
card as built, and with an old-style glob card), an extra .pyd (pickle) and .pth (torch.save)
member whose unpickling would create a marker file (manifest re-hashed, and once with the
manifest's fields edited to declare it), and a manifest that is a JSON list.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from builders.format.encoding import safe_handler
from builders.format.manifest import ManifestError
from builders.format.reader import (ShardError, check_rows, iter_release, load_release, read_manifest, safe_decoder,
                             shard_specs, webdataset_pipeline)
from builders.format.tario import iter_tar_samples, tar_bytes
from builders.format.torch_data import ReleaseIterableDataset, collate_point_clouds
from builders.format.verify import verify_release

from .conftest import REPO


class OpenOnLoad:
    """Unpickling this calls ``open(path, "w")``: it creates a marker file (code execution)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(OpenOnLoad(marker))


def torch_payload(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(OpenOnLoad(marker), buf)
    return buf.getvalue()


def train_shard(release: Path) -> str:
    return next(sh["path"] for sh in read_manifest(release)["shards"] if sh["split"] == "train")


def rehash(release: Path, name: str, fields=None) -> None:
    """Update a shard's bytes and sha256 in the manifest (the count stays as built)."""
    manifest = json.loads((release / "manifest.json").read_text())
    data = (release / name).read_bytes()
    for sh in manifest["shards"]:
        if sh["path"] == name:
            sh.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if fields is not None:
        manifest["configs"]["default"]["fields"] = fields
    (release / "manifest.json").write_text(json.dumps(manifest))


def member_offsets(shard: Path):
    """[(member name, header offset, data offset)] of a tar."""
    with tarfile.open(shard) as tar:
        return [(m.name, m.offset, m.offset_data) for m in tar]


def sample_start(shard: Path, index: int) -> int:
    """Header offset of the first member of sample ``index``."""
    keys, seen = [], set()
    for name, off, _ in member_offsets(shard):
        key = name.split(".")[0]
        if key not in seen:
            seen.add(key)
            keys.append(off)
    return keys[index]


def truncate(shard: Path, at: int) -> None:
    shard.write_bytes(shard.read_bytes()[:at])


def add_member(shard: Path, suffix: str, data: bytes) -> str:
    """Add ``<first key>.<suffix>`` to the first sample; returns that key."""
    samples = list(iter_tar_samples(shard))
    key, members = samples[0]
    samples[0] = (key, members + [(suffix, data)])
    shard.write_bytes(tar_bytes(samples)[0])
    return key


def glob_card(release: Path) -> None:
    """Rewrite the card's data_files as per-split globs (cards before exact shard lists)."""
    import yaml

    text = (release / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    meta = yaml.safe_load(header)
    for cfg in meta["configs"]:
        for df in cfg["data_files"]:
            df["path"] = f"data/{df['split']}/*.tar"
    (release / "README.md").write_text(f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}")


CASES = ["truncated-at-header", "truncated-at-header-rehashed", "truncated-mid-sample-rehashed",
         "truncated-mid-member", "stray-shard", "stray-shard-glob-card", "extra-pyd", "extra-pth",
         "extra-pyd-declared", "list-manifest"]


@pytest.fixture(scope="module")
def hostile(small_release, tmp_path_factory):
    """{case: (release dir, shard name it concerns, marker path or None)}."""
    _, out = small_release
    root = tmp_path_factory.mktemp("hostile")
    cases = {}
    for case in CASES:
        rel = root / case / "densegen" / "random-conformers"
        shutil.copytree(out, rel)
        name = train_shard(rel)
        shard = rel / name
        marker = None
        if case.startswith("truncated-at-header"):
            truncate(shard, sample_start(shard, 30))
            if case.endswith("rehashed"):
                rehash(rel, name)
        elif case == "truncated-mid-sample-rehashed":
            offsets = member_offsets(shard)
            second = next(off for n, off, _ in offsets if off > sample_start(shard, 30))
            truncate(shard, second)  # sample 30 keeps its first member only
            rehash(rel, name)
        elif case == "truncated-mid-member":
            _, _, data_at = member_offsets(shard)[40]
            truncate(shard, data_at + 3)
        elif case.startswith("stray-shard"):
            test = next(sh["path"] for sh in read_manifest(rel)["shards"] if sh["split"] == "test")
            name = name.replace("000000", "000001")
            shutil.copy(rel / test, rel / name)
            if case.endswith("glob-card"):
                glob_card(rel)
        elif case.startswith("extra-"):
            marker = root / f"{case}.executed"
            suffix, payload = (("evil.pth", torch_payload(marker)) if case == "extra-pth"
                               else ("evil.pyd", pickle_payload(marker)))
            add_member(shard, suffix, payload)
            fields = None
            if case == "extra-pyd-declared":
                fields = sorted(read_manifest(rel)["configs"]["default"]["fields"] + [suffix])
            rehash(rel, name, fields)
        elif case == "list-manifest":
            manifest = read_manifest(rel)
            (rel / "manifest.json").write_text(json.dumps(manifest["shards"]))
            name = "manifest.json"
        cases[case] = (rel, name, marker)
    return cases


def read_iter_release(rel, tmp):
    return [s["__key__"] for s in iter_release(rel, "train")]


def read_webdataset(rel, tmp):
    return [s["__key__"] for s in webdataset_pipeline(rel, "train")]


def read_dataloader(rel, tmp):
    ds = ReleaseIterableDataset(rel, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=1, collate_fn=collate_point_clouds)
    return [k for batch in loader for k in batch["keys"]]


def read_datasets(rel, tmp):
    return list(load_release(rel, "train", cache_dir=str(tmp / "hf"))["__key__"])


def read_datasets_streaming(rel, tmp):
    return [r["__key__"] for r in load_release(rel, "train", streaming=True)]


def read_plain_streaming_checked(rel, tmp):
    from datasets import load_dataset

    rows = load_dataset(str(rel), split="train", streaming=True)
    return [r["__key__"] for r in check_rows(rows, rel, "train")]


READERS = {"iter_release": read_iter_release, "webdataset_pipeline": read_webdataset,
           "DataLoader": read_dataloader, "load_release": read_datasets,
           "load_release-streaming": read_datasets_streaming, "load_dataset-streaming+check_rows": read_plain_streaming_checked}

# what a reader must do where it is not "raise naming the shard"
READS_LISTED_SHARDS_ONLY = {("stray-shard", r) for r in READERS} | {
    ("stray-shard-glob-card", r) for r in ("iter_release", "webdataset_pipeline", "DataLoader", "load_release-streaming")}
# datasets drops members its features do not declare before check_rows sees the rows: the
# pickle is never decoded and never returned, but check_rows cannot see it (a .pth member is
# torch.load-ed with weights_only=True by datasets, which refuses it: check_rows names the shard)
DATASETS_DROPS_MEMBER = {("extra-pyd", "load_dataset-streaming+check_rows")}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("case", CASES)
def test_every_reader_refuses_a_hostile_release(hostile, small_release, case, reader, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rel, name, marker = hostile[case]
    train_keys = [s["__key__"] for s in iter_release(small_release[1], "train")]
    if (case, reader) in READS_LISTED_SHARDS_ONLY:
        keys = READERS[reader](rel, tmp_path)
        assert sorted(keys) == sorted(train_keys)  # exactly the listed train samples, no test sample
        return
    if (case, reader) in DATASETS_DROPS_MEMBER:
        keys = READERS[reader](rel, tmp_path)
        assert sorted(keys) == sorted(train_keys)
        assert not marker.exists()
        return
    error = ManifestError if case == "list-manifest" else ShardError
    with pytest.raises(error) as info:
        READERS[reader](rel, tmp_path)
    message = str(info.value)
    assert Path(name).name in message, message
    if case == "truncated-at-header-rehashed":
        assert "30 samples, manifest says 64" in message or "30 rows, manifest says 64" in message
    if case == "truncated-mid-sample-rehashed":
        assert "lacks" in message
    if case in ("extra-pyd", "extra-pth"):
        assert ("undeclared member" in message and "evil." in message
                or reader == "load_dataset-streaming+check_rows" and "reading failed after 0 rows (UnpicklingError" in message)
        assert "\n" not in message or reader == "DataLoader"  # torch adds the worker's traceback
    if case == "extra-pyd-declared":
        assert ("evil.pyd have an extension densegen does not decode" in message
                or reader == "load_dataset-streaming+check_rows" and "lacks evil.pyd" in message), message
    if marker is not None:
        assert not marker.exists(), f"{reader} executed the {case} payload"


SHARD = "random-conformers-train-000000.tar"
EXPECTED_PROBLEMS = {  # case: [(text, file the same line names)]
    "truncated-at-header": [("bytes, manifest says", SHARD), ("sha256", SHARD), ("30 samples, manifest says 64", SHARD)],
    "truncated-at-header-rehashed": [("30 samples, manifest says 64", SHARD)],
    "truncated-mid-sample-rehashed": [("lacks", SHARD)],
    "truncated-mid-member": [("unreadable shard (truncated or corrupt tar", SHARD)],
    "stray-shard": [("stray file, not listed in manifest.json", "random-conformers-train-000001.tar")],
    "stray-shard-glob-card": [("stray file, not listed in manifest.json", "random-conformers-train-000001.tar")],
    "extra-pyd": [("evil.pyd is not a declared field of config default", SHARD)],
    "extra-pth": [("evil.pth is not a declared field of config default", SHARD)],
    "extra-pyd-declared": [("declares field 'evil.pyd', which densegen does not decode", "manifest.json"),
                           ("evil.pyd has an extension densegen does not decode (refused, never decoded)", SHARD)],
    "list-manifest": [("not a densegen manifest: top level must be an object, not a list", "manifest.json")],
}


@pytest.mark.parametrize("case", CASES)
def test_verify_names_each_problem_without_executing_anything(hostile, case):
    rel, name, marker = hostile[case]
    problems = verify_release(rel)
    for expected, file in EXPECTED_PROBLEMS[case]:
        assert any(expected in p and file in p for p in problems), (expected, problems)
    assert all("\n" not in p for p in problems)
    if marker is not None:
        assert not marker.exists()
    if case == "list-manifest":
        assert len(problems) == 1


@pytest.mark.parametrize("case", ["truncated-mid-member", "extra-pth", "list-manifest"])
def test_verify_cli_exits_1_with_one_line_per_problem_and_no_traceback(hostile, case):
    rel, name, marker = hostile[case]
    res = subprocess.run([sys.executable, "-m", "builders", "verify", str(rel)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and Path(name).name in res.stderr
    lines = res.stderr.strip().splitlines()
    assert all(line.startswith("FAIL ") for line in lines[:-1]) and "problem(s)" in lines[-1]
    if marker is not None:
        assert not marker.exists()


def test_verify_refuses_a_missing_card_and_ignores_hidden_work_folders(small_release, tmp_path):
    _, out = small_release
    rel = tmp_path / "random-conformers"
    shutil.copytree(out, rel)
    (rel / ".build").mkdir()
    (rel / ".build" / "params.json").write_text("{}")  # work folder of a --keep-work build: not part of it
    (rel / ".gitattributes").write_text("*.tar filter=lfs\n")
    assert verify_release(rel) == []
    (rel / "README.md").unlink()
    (rel / "data" / "notes.txt").write_text("x")
    (rel / "data" / "train" / ".hidden.tar").write_bytes(b"")  # hidden inside data/: stray
    problems = verify_release(rel)
    assert "README.md: missing (the release's dataset card)" in problems
    assert "data/notes.txt: stray file, not listed in manifest.json" in problems
    assert "data/train/.hidden.tar: stray file, not listed in manifest.json" in problems
    assert len(problems) == 3


def test_the_payloads_are_live_under_webdataset_default_decode_and_inert_under_ours(small_release, tmp_path):
    """Control: webdataset's default .decode() runs both payloads; the safe table never does."""
    import webdataset as wds

    _, out = small_release
    src = out / train_shard(out)
    for suffix, make in (("evil.pyd", pickle_payload), ("evil.pth", torch_payload)):
        ours, theirs = tmp_path / f"ours-{suffix}", tmp_path / f"theirs-{suffix}"
        shard_ours, shard_theirs = tmp_path / f"o-{suffix}.tar", tmp_path / f"t-{suffix}.tar"
        shutil.copy(src, shard_ours)
        shutil.copy(src, shard_theirs)
        add_member(shard_ours, suffix, make(ours))
        add_member(shard_theirs, suffix, make(theirs))
        for s in wds.WebDataset([str(shard_theirs)], shardshuffle=False).decode():
            pass
        assert theirs.exists()  # the payload really runs code
        with pytest.raises(Exception) as info:  # webdataset's DecodingError, from our ValueError
            for s in wds.WebDataset([str(shard_ours)], shardshuffle=False).decode(safe_handler, pre=[], post=[]):
                pass
        assert "is not one densegen decodes" in str(info.value.__cause__ or info.value)
        with pytest.raises(ShardError, match=f"{shard_ours.name}.*{suffix}"):
            for s in wds.WebDataset([str(shard_ours)], shardshuffle=False).map(safe_decoder):
                pass
        assert not ours.exists()


def test_plain_webdataset_with_the_safe_handler_reads_what_iter_release_reads(small_release):
    import numpy as np
    import webdataset as wds

    _, out = small_release
    urls = [str(s.path) for s in shard_specs(out, "train")]
    theirs = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False).decode(safe_handler, pre=[], post=[])}
    ours = {s["__key__"]: s for s in iter_release(out, "train")}
    assert sorted(theirs) == sorted(ours)
    for k, s in ours.items():
        assert np.array_equal(theirs[k]["positions.npy"], s["positions"]) and theirs[k]["meta.json"] == s["meta"]


def test_a_changed_release_never_comes_back_from_a_stale_datasets_cache(small_release, tmp_path, monkeypatch):
    """datasets keys a local folder's cache on its card alone: a shard rewritten with other
    values (same counts and sizes, so the same card) or truncated in place comes back from the
    old cache. load_release keys the cache on the card, the manifest and the shards' size and
    mtime, and checks every shard."""
    import numpy as np
    from datasets import load_dataset

    from builders.format.encoding import decode_value, npy_bytes

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, out = small_release
    rel = tmp_path / "densegen" / "random-conformers"
    shutil.copytree(out, rel)
    plain_cache, ours_cache = str(tmp_path / "plain"), str(tmp_path / "ours")
    n = read_manifest(rel)["splits"]["train"]["samples"]
    assert len(load_dataset(str(rel), split="train", cache_dir=plain_cache)) == n
    assert len(load_release(rel, "train", cache_dir=ours_cache)) == n

    # 1. the train shard is rewritten (positions moved by 1 A) and the manifest re-hashed: the
    #    card does not change (same counts, same sizes)
    card = (rel / "README.md").read_text()
    shard = rel / train_shard(rel)
    moved = [(key, [(sfx, npy_bytes(decode_value(sfx, data) + np.float32(1.0)) if sfx == "positions.npy" else data)
                    for sfx, data in members]) for key, members in iter_tar_samples(shard)]
    shard.write_bytes(tar_bytes(moved)[0])
    rehash(rel, train_shard(rel))
    assert (rel / "README.md").read_text() == card
    fresh = {s["__key__"]: s["positions"] for s in iter_release(rel, "train")}
    stale = load_dataset(str(rel), split="train", cache_dir=plain_cache)
    row = stale[0]
    assert np.array_equal(np.asarray(row["positions.npy"], np.float32) + 1, fresh[row["__key__"]])  # the bug
    new = load_release(rel, "train", cache_dir=ours_cache)
    assert len(new) == len(fresh)
    for row in new:
        assert np.array_equal(np.asarray(row["positions.npy"], np.float32), fresh[row["__key__"]])

    # 2. a shard truncated in place: plain load_dataset returns the old rows, load_release raises
    truncate(shard, sample_start(shard, 10))
    assert len(load_dataset(str(rel), split="train", cache_dir=plain_cache)) == n  # the bug
    with pytest.raises(ShardError, match=shard.name):
        load_release(rel, "train", cache_dir=ours_cache)


@pytest.mark.parametrize("suffix", ["evil.pyd", "evil.pkl", "evil.pickle", "evil.pth", "evil.npz", "evil.npy.gz", "evil"])
def test_the_decoder_table_refuses_other_extensions_naming_the_member(suffix):
    from builders.format.encoding import decode_value

    with pytest.raises(ValueError, match=f"member '{suffix}': extension .* is not one densegen decodes"):
        decode_value(suffix, b"\x80\x04N.")


def test_the_decoder_table_refuses_object_arrays_and_oversized_zst(monkeypatch):
    import numpy as np
    import zstandard

    import builders.format.encoding as enc

    buf = io.BytesIO()
    np.save(buf, np.array([OpenOnLoad("/nonexistent/never")], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="member 'x.npy': Object arrays cannot be loaded"):
        enc.decode_value("x.npy", buf.getvalue())
    monkeypatch.setattr(enc, "MAX_DECOMPRESSED_BYTES", 1 << 16)
    raw = enc.npy_bytes(np.zeros(1 << 16))
    for frame in (zstandard.ZstdCompressor().compress(raw),
                  zstandard.ZstdCompressor(write_content_size=False).compress(raw)):
        with pytest.raises(ValueError, match="member 'density.npy.zst': .*over the limit|more than the limit"):
            enc.decode_value("density.npy.zst", frame)
    small = enc.npy_bytes(np.arange(10.0))
    assert np.array_equal(enc.decode_value("d.npy.zst", zstandard.ZstdCompressor().compress(small)), np.arange(10.0))


@pytest.mark.parametrize("manifest, message", [
    ([], "top level must be an object, not a list"),
    ({"release": "x", "splits": {}}, "'shards' is a required property"),
    ({"release": "x", "splits": {"train": {"samples": "64"}}, "shards": []}, "splits.train.samples must be an integer"),
    ({"release": "x", "splits": {"train": {"samples": 1}}, "shards": {}}, "shards must be a list, not an object"),
    ({"release": "x", "splits": {"train": {"samples": 1}},
      "shards": [{"path": "../../etc/passwd", "split": "train", "sha256": "0" * 64, "bytes": 1, "count": 1}]},
     "must be a plain relative path inside the release"),
    ({"release": "x", "splits": {"train": {"samples": 1}},
      "shards": [{"path": "data/train/a.tar", "split": "test", "sha256": "0" * 64, "bytes": 1, "count": 1}]},
     "has split 'test', not one of"),
])
def test_read_manifest_gives_one_line_naming_the_file(tmp_path, manifest, message):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path)
    text = str(info.value)
    assert text.startswith(str(tmp_path / "manifest.json")) and message in text and "\n" not in text
    assert verify_release(tmp_path) == [text]
