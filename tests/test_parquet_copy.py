"""The Parquet copy of a release config: same samples as the shards, checked by verify and the loader."""
import hashlib
import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders.format.manifest import ManifestError, read_manifest
from builders.format.parquet import ParquetError, load_parquet, parquet_records, point_cloud_batches
from builders.format.reader import iter_release
from builders.format.torch_data import collate_point_clouds
from builders.format.verify import verify_release
from tests.conftest import build_small


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    return tmp_path / "hf"


def _record(release, rel):
    """Record the current sha256 and size of the listed file ``rel`` in the manifest (and the
    Croissant file made from it), so only the content checks can object to the file."""
    from builders.format.croissant import croissant_bytes
    from builders.format.registry import get_release

    path = release / rel
    m = json.loads((release / "manifest.json").read_text())
    for r in m["parquet"]:
        if r["path"] == rel:
            r["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            r["bytes"] = path.stat().st_size
    (release / "manifest.json").write_text(json.dumps(m))
    (release / "croissant.json").write_bytes(croissant_bytes(get_release(m["release"]), read_manifest(release)))


def _rewrite(release, rec, table):
    """Write ``table`` over a listed Parquet file and record it (:func:`_record`)."""
    pq.write_table(table, release / rec["path"])
    _record(release, rec["path"])


def test_every_split_has_a_parquet_copy_with_the_shards_samples(small_release, hf_cache):
    manifest, out = small_release
    for split in ("train", "valid", "test"):
        recs = parquet_records(manifest, split, "default")
        assert [r["path"] for r in recs] == [f"parquet/default/{split}/random-conformers-{split}-00000.parquet"]
        assert recs[0]["count"] == manifest["splits"][split]["samples"] > 0
    ds = load_parquet(out, "train")
    samples = list(iter_release(out, "train"))
    assert ds["__key__"] == [s["__key__"] for s in samples]
    f = ds.features
    assert (f["positions"].shape, f["positions"].dtype) == ((None, 3), "float32")
    assert f["atomic_numbers"].feature.dtype == "uint8" and f["smiles"].dtype == "string"
    rows = ds.with_format("numpy")
    for i in (0, len(samples) // 2, len(samples) - 1):
        row, s = rows[i], samples[i]
        assert np.array_equal(row["positions"], s["positions"]) and row["positions"].dtype == np.float32
        assert np.array_equal(row["atomic_numbers"], s["atomic_numbers"])
        assert row["smiles"] == s["meta"]["smiles"] and row["seed"] == s["meta"]["seed"]
        assert list(row["torsions_deg"]) == s["meta"]["torsions_deg"]
    assert verify_release(out) == []


def test_point_cloud_batches_equal_the_collate_of_the_samples(small_release, hf_cache):
    _, out = small_release
    ds = load_parquet(out, "train")
    samples = list(iter_release(out, "train"))[:7]
    batch = next(point_cloud_batches(ds, batch_size=7))
    ref = collate_point_clouds(samples, padded=False)
    assert np.array_equal(batch["pos"], ref["pos"].numpy()) and batch["pos"].dtype == np.float32
    assert np.array_equal(batch["z"], ref["z"].numpy())
    assert np.array_equal(batch["num_atoms"], ref["num_atoms"].numpy())
    assert np.array_equal(batch["batch"], ref["batch"].numpy())
    assert list(batch["__key__"]) == [s["__key__"] for s in samples]


def test_rebuild_with_other_work_units_gives_byte_identical_parquet(tmp_path, small_smiles_file, small_release):
    manifest0, _ = small_release
    manifest, _ = build_small(tmp_path, small_smiles_file, unit_size=40)
    assert [(r["path"], r["sha256"]) for r in manifest["parquet"]] == \
        [(r["path"], r["sha256"]) for r in manifest0["parquet"]]


def test_verify_names_the_first_parquet_row_that_differs_from_the_shards(tmp_path, small_release):
    _, out = small_release
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rec = parquet_records(read_manifest(copy), "train", "default")[0]
    table = pq.read_table(copy / rec["path"])
    smiles = table.column("smiles").to_pylist()
    smiles[3] = "C"
    _rewrite(copy, rec, table.set_column(table.schema.get_field_index("smiles"), "smiles",
                                         pa.array(smiles, pa.string())))
    key = table.column("__key__")[3].as_py()
    problems = verify_release(copy)
    assert problems == [f"{rec['path']}: rows differ from the tar samples of config default, split train "
                        f"(first at row 3, sample {key!r})"]


def test_verify_reports_a_dropped_column_missing_rows_and_a_non_parquet_file(tmp_path, small_release, hf_cache):
    _, out = small_release
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    m = read_manifest(copy)
    rec = parquet_records(m, "train", "default")[0]
    table = pq.read_table(copy / rec["path"])
    _rewrite(copy, rec, table.drop_columns(["smiles"]))
    assert verify_release(copy) == [f"{rec['path']}: columns ['smiles'] differ from the tar samples' fields"]

    _rewrite(copy, rec, table.slice(0, 5))                      # rows dropped, manifest count unchanged
    assert f"{rec['path']}: 5 rows, manifest says {rec['count']}" in verify_release(copy)

    test = parquet_records(m, "test", "default")[0]
    (copy / test["path"]).write_bytes(b"PAR1 not a parquet file PAR1")
    _record(copy, test["path"])
    problems = verify_release(copy)
    assert any(p.startswith(f"{test['path']}: unreadable Parquet file (") for p in problems), problems

    (copy / test["path"]).unlink()
    assert f"{test['path']}: listed in manifest.json but missing" in verify_release(copy)
    with pytest.raises(ParquetError, match=f"^{test['path']}: listed in manifest.json but missing$"):
        load_parquet(copy, "test")


def test_load_parquet_refuses_a_changed_file_and_an_unknown_config(tmp_path, small_release, hf_cache):
    _, out = small_release
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rec = parquet_records(read_manifest(copy), "valid", "default")[0]
    path = copy / rec["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ParquetError, match=f"^{rec['path']}: sha256 .* does not match manifest"):
        load_parquet(copy, "valid")
    with pytest.raises(ParquetError, match=r"no Parquet copy of config 'grid' \(Parquet configs: \['default'\]\)"):
        load_parquet(copy, "train", config="grid")


@pytest.mark.parametrize("path, why", [
    ("../outside.parquet", "must be a plain relative path parquet/.../*.parquet"),
    ("data/train/x.parquet", "must be a plain relative path parquet/.../*.parquet"),
    ("parquet/default/train/x.tar", "must be a plain relative path parquet/.../*.parquet"),
])
def test_manifest_refuses_parquet_paths_outside_the_parquet_folder(tmp_path, small_release, path, why):
    _, out = small_release
    m = json.loads((out / "manifest.json").read_text())
    m["parquet"][0]["path"] = path
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=re.escape(f"parquet[0].path '{path}' {why} inside the release")):
        read_manifest(tmp_path)


def test_parquet_batches_in_a_dataloader_visit_every_sample_once_in_a_new_order_each_epoch(small_release, hf_cache):
    import torch

    from builders.format.torch_data import ParquetPointCloudBatches

    _, out = small_release
    ds = load_parquet(out, "train")
    samples = {s["__key__"]: s for s in iter_release(out, "train")}
    batches = ParquetPointCloudBatches(ds, batch_size=8, shuffle=True, seed=3)
    orders = []
    for epoch in (0, 1):
        batches.set_epoch(epoch)
        got = list(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=2))
        keys = [k for b in got for k in b["keys"]]
        assert sorted(keys) == sorted(samples) and len(got) == len(batches)
        orders.append(keys)
        b = got[1]
        ref = collate_point_clouds([samples[k] for k in b["keys"]], padded=False)
        for name in ("z", "pos", "batch", "num_atoms"):
            assert torch.equal(b[name], ref[name]), name
    assert orders[0] != orders[1]
    assert [k for b in point_cloud_batches(ds, 8) for k in b["__key__"]] == ds["__key__"]   # unshuffled: file order
