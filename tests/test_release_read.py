"""Reading a release: own reader, webdataset, Hugging Face datasets (streaming and not), DataLoader."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from builders.format.reader import iter_release, load_release, release_shards, webdataset_pipeline
from builders.format.registry import get_release
from builders.sources import smiles_file_inputs
from builders.format.torch_data import ReleaseIterableDataset, collate_point_clouds


def written_samples(small_smiles_file, keys):
    """Re-run the builder on the given keys: exactly what was written for them."""
    spec = get_release("random-conformers")
    params = spec.resolve_params({"input": str(small_smiles_file)})
    items = {i.key: i for i in smiles_file_inputs(small_smiles_file)[0]}
    return {k: spec.process(items[k], params, 0) for k in keys}


def test_arrays_read_back_equal_what_was_written(small_release, small_smiles_file):
    _, out = small_release
    ours = {s["__key__"]: s for sp in ("train", "valid", "test") for s in iter_release(out, sp)}
    truth = written_samples(small_smiles_file, sorted(ours)[:12])
    for key, fields in truth.items():
        s = ours[key]
        assert np.array_equal(s["atomic_numbers"], fields["atomic_numbers"]) and s["atomic_numbers"].dtype == np.uint8
        assert np.array_equal(s["positions"], fields["positions"]) and s["positions"].dtype == np.float32
        assert s["meta"] == fields["meta"]

    wds_samples = {}
    for sp in ("train", "valid", "test"):
        if release_shards(out, sp):
            for s in webdataset_pipeline(out, sp):
                wds_samples[s["__key__"]] = s
    assert set(wds_samples) == set(ours)
    for key, s in ours.items():
        w = wds_samples[key]
        assert np.array_equal(w["positions.npy"], s["positions"]) and w["positions.npy"].dtype == np.float32
        assert np.array_equal(w["atomic_numbers.npy"], s["atomic_numbers"])
        assert w["meta.json"] == s["meta"]


@pytest.mark.parametrize("helper", [False, True])
@pytest.mark.parametrize("streaming", [False, True])
def test_load_dataset_from_the_folder_holding_densegen(small_release, tmp_path, monkeypatch, streaming, helper):
    from datasets import load_dataset

    _, out = small_release
    monkeypatch.chdir(out.parent.parent)  # the folder that holds densegen/
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = {s["__key__"]: s for s in iter_release(out, "train")}
    if helper:  # the checked helper gives the same rows as plain load_dataset
        ds = load_release("densegen/random-conformers", "train", streaming=streaming, cache_dir=str(tmp_path / "hf-cache"))
    else:
        ds = load_dataset("densegen/random-conformers", split="train", streaming=streaming,
                          cache_dir=str(tmp_path / "hf-cache"))
    if not streaming:
        assert len(ds) == len(ours)
        assert str(ds.features["positions.npy"].dtype) == "float32"
        assert ds.features["atomic_numbers.npy"].feature.dtype == "uint8"
        ds = ds.with_format("numpy")
    n = 0
    for row in ds:
        s = ours[str(row["__key__"])]
        pos = np.asarray(row["positions.npy"])
        assert pos.dtype == np.float32 and np.array_equal(pos, s["positions"])
        assert np.array_equal(np.asarray(row["atomic_numbers.npy"]), s["atomic_numbers"])
        assert row["meta.json"]["inchikey"] == s["meta"]["inchikey"]
        assert row["meta.json"]["torsions_deg"] == pytest.approx(s["meta"]["torsions_deg"])
        n += 1
    assert n == len(ours)


def test_dataloader_recipe_with_collate(small_release):
    _, out = small_release
    ds = ReleaseIterableDataset(out, "train", shuffle_buffer=8, seed=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2, collate_fn=collate_point_clouds)
    seen = []
    for batch in loader:
        b = len(batch["num_atoms"])
        assert batch["z"].shape == (int(batch["num_atoms"].sum()),) and batch["pos"].shape[1] == 3
        assert batch["batch"].max() == b - 1
        assert batch["mask"].sum() == batch["num_atoms"].sum()
        for i in range(b):
            n = int(batch["num_atoms"][i])
            assert torch.equal(batch["z_padded"][i, :n], batch["z"][batch["batch"] == i])
            assert torch.equal(batch["pos_padded"][i, :n], batch["pos"][batch["batch"] == i])
        seen += batch["keys"]
    keys = [s["__key__"] for s in iter_release(out, "train")]
    assert sorted(seen) == sorted(keys)  # every sample exactly once across 2 workers


def test_collate_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        collate_point_clouds([])


def readme_code(start: str, end: str) -> str:
    """The python code blocks of README.md between two headings."""
    from .conftest import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index(start):text.index(end)]
    return "\n".join(block.split("```", 1)[0] for block in section.split("```python\n")[1:])


def test_readme_reading_snippets_run(small_release, tmp_path, monkeypatch):
    import datasets

    _, out = small_release
    monkeypatch.chdir(out.parent.parent)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    from etils import epath
    import mlcroissant._src.operation_graph.operations.extract as croissant_extract

    monkeypatch.setattr(croissant_extract, "EXTRACT_PATH", epath.Path(tmp_path / "croissant"))  # a fresh cache
    code = readme_code("### Reading", "### random-conformers")
    assert "load_release" in code and "webdataset_pipeline" in code and ".decode()" not in code
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["row"]["positions.npy"].ndim == 2 and scope["batch"]["z"].ndim == 1


def test_generated_card_loading_snippets_run(small_release, tmp_path, monkeypatch):
    import datasets

    _, out = small_release
    monkeypatch.chdir(out.parent.parent)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    card = (out / "README.md").read_text()
    assert "*.tar" not in card.split("---\n")[1]  # exact shard lists, no globs
    section = card[card.index("## Loading"):card.index("## Splits")]
    code = "\n".join(b.split("```", 1)[0] for b in section.split("```python\n")[1:])
    assert ".decode(safe, pre=[], post=[])" in code and "load_release" in code
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the card's own code
    assert sum(scope["got"].values()) == len(scope["ds"]) == scope["m"]["splits"]["train"]["samples"]
    assert scope["sample"]["positions.npy"].shape[1] == 3
