"""The generated Hugging Face dataset card (README.md) of a release."""
from __future__ import annotations

import yaml

from builders.format.fields import markdown_table
from builders.format.manifest import Manifest

CITATION_BIBTEX = """\
@misc{densegen,
  title  = {densegen: datasets and benchmarks for 3D molecular representations},
  note   = {Built from the pipelines of 3DGrid-VQGAN (electron densities) and Mo3ENet (point clouds)}
}"""
CITATIONS = f"```bibtex\n{CITATION_BIBTEX}\n```"


def _split_files(manifest: Manifest, config: str, cfg: dict, split: str) -> list[str]:
    """The exact shard paths of one config and split (never a glob: a stray file copied into
    the folder is not part of the dataset)."""
    if "shards" not in manifest:  # a manifest without a shard list: the folder's shards
        return [f"{cfg['folder']}/{split}/*.tar"]
    return manifest.shard_paths(split, config)


def card_metadata(spec, manifest: dict) -> dict:
    """The YAML header: license, tags, configs with data_files (the exact shard paths) per
    split, declared features."""
    manifest = Manifest(manifest)
    splits = [s for s in manifest.split_names if manifest.samples(s) > 0]
    n = sum(manifest.samples(s) for s in manifest.split_names)
    configs = manifest.configs or {"default": {"folder": "data", "default": True}}
    size = ("n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000
            else "100K<n<1M" if n < 1_000_000 else "1M<n<10M")
    return {
        "license": spec.license,
        "pretty_name": spec.pretty_name or spec.name,
        "tags": list(spec.tags),
        "size_categories": [size],
        "configs": [{"config_name": name, **({"default": True} if cfg["default"] else {}),
                     "data_files": [{"split": s, "path": _split_files(manifest, name, cfg, s)} for s in splits]}
                    for name, cfg in configs.items()],
        "dataset_info": [{"config_name": name, "features": spec.features(name, manifest.parameters)._to_yaml_list(),
                          "splits": [{"name": s, "num_bytes": manifest.split_bytes(s, name),
                                      "num_examples": manifest.samples(s)} for s in splits]}
                         for name, cfg in configs.items()],
    }


def parquet_section(spec, manifest: Manifest) -> str:
    """The card's "Parquet" section: how to load the Parquet copy (empty when the release has none)."""
    from builders.format.parquet import parquet_configs, parquet_records

    configs = parquet_configs(manifest)
    if not configs:
        return ""
    config = configs[0]
    n_files = len(parquet_records(manifest, None, config))
    point_cloud = any(f.name == "positions" for f in spec.fields(config, manifest.parameters)) and any(
        f.name == "atomic_numbers" for f in spec.fields(config, manifest.parameters))
    batches = ("""
for batch in point_cloud_batches(ds, batch_size=1024):   # flat numpy arrays from the Arrow buffers
    batch["z"], batch["pos"], batch["num_atoms"], batch["batch"]""" if point_cloud else "")
    return f"""## Parquet

The `{config}` config is also stored as Parquet ({n_files} files under `parquet/`, listed with
their sha256 in `manifest.json`): the same samples in the same order and split, one row per
sample, a column per field under its own name (`__key__` is the shard key). `verify` checks
that the rows equal the shards' samples. It is not a `configs:` entry above, because `datasets`
reads every config of a folder with the builder of the first one; load it as Parquet with the
exact file list:

```python
import json
from datasets import load_dataset
m = json.load(open("densegen/{spec.name}/manifest.json"))
files = [f"densegen/{spec.name}/{{r['path']}}" for r in m["parquet"]
         if r["config"] == "{config}" and r["split"] == "train"]
ds = load_dataset("parquet", data_files={{"train": files}}, split="train").with_format("numpy")
batch = ds[:256]                                          # dict of column -> numpy arrays
assert len(batch["__key__"]) == min(256, len(ds))
```

With densegen, the files are checked against the manifest first:

```python
from builders.format.parquet import load_parquet, point_cloud_batches
ds = load_parquet("densegen/{spec.name}", "train")   # datasets.Dataset{batches}
```
"""


def render_card(spec, manifest: dict) -> str:
    """Full README.md text: YAML front matter + a generated body."""
    manifest = Manifest(manifest)
    meta = yaml.safe_dump(card_metadata(spec, manifest), sort_keys=False, default_flow_style=False)
    rows = "\n".join(f"| {s} | {manifest.samples(s)} | {manifest.split_shards(s)} |" for s in manifest.split_names)
    fails = "\n".join(f"| {stage} | {n} |" for stage, n in manifest.failures_by_stage.items()) or "| (none) | 0 |"
    params = "\n".join(f"| `{k}` | `{v}` |" for k, v in manifest.parameters.items())
    commit = manifest.builder_commit or "unknown"
    configs = manifest.configs
    default_config = manifest.default_config
    full_config = next((n for n, c in configs.items() if not c.get("excluded_fields")), default_config)
    field_table = markdown_table(spec.fields(full_config, manifest.parameters))
    return f"""---
{meta}---

# {spec.pretty_name or spec.name}

{spec.summary}

Release `{manifest.release}` version {manifest.release_version}, built by densegen
{manifest.builder_version} (commit `{commit}`). Everything below is generated from
`manifest.json`, which also holds the sha256 of every shard.

## Loading

With densegen installed, every reader checks each shard against `manifest.json` (size, sample
count, members, sha256) and raises naming the shard; only the listed shards are read and
nothing is unpickled:

```python
from builders.format.reader import iter_release, load_release, webdataset_pipeline
ds = load_release("densegen/{spec.name}", "train")                   # datasets.Dataset; the cache follows the files
ds = load_release("densegen/{spec.name}", "train", streaming=True)   # datasets.IterableDataset
for sample in webdataset_pipeline("densegen/{spec.name}", "train"):  # webdataset
    ...
```

Without densegen, from the folder that holds `densegen/` (or from the Hub): `data_files` list
the exact shards of each split, so files copied into the folder are never read. Compare the
rows per shard with the manifest (after the files change, pass `download_mode="force_redownload"`:
`datasets` keys a local folder's cache on this card alone):

```python
import collections, json
from datasets import load_dataset
m = json.load(open("densegen/{spec.name}/manifest.json"))
shards = {{s["path"]: s["count"] for s in m["shards"]
          if s["split"] == "train" and s.get("config", "default") == "{default_config}"}}
ds = load_dataset("densegen/{spec.name}", split="train")
got = collections.Counter(next((p for p in shards if u.endswith("/" + p)), u) for u in ds["__url__"])
assert got == shards, f"rows per shard {{dict(got)}} differ from manifest.json {{shards}}"
```

Plain webdataset: take the shard list from `manifest.json` and never use the default `.decode()`
(it unpickles `.pyd`/`.pkl` members and `torch.load`s `.pth` ones); decode with an explicit table:

```python
import io, json, numpy as np, webdataset as wds, zstandard

def safe(key, data):  # .npy without pickle, .txt, .json, .zst of those; anything else is an error
    if key.endswith(".zst"):
        key, data = key[:-4], zstandard.ZstdDecompressor().decompress(data)
    ext = key.rsplit(".", 1)[-1]
    if ext == "npy":
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if ext in ("txt", "json"):
        return data.decode() if ext == "txt" else json.loads(data)
    raise ValueError(f"unexpected member {{key}}")

m = json.load(open("densegen/{spec.name}/manifest.json"))
urls = [f"densegen/{spec.name}/{{s['path']}}" for s in m["shards"]
        if s["split"] == "train" and s.get("config", "default") == "{default_config}"]
for sample in wds.WebDataset(urls, shardshuffle=False).decode(safe, pre=[], post=[]):
    ...
```

Arrays are `.npy` members (decoded without pickle), strings `.txt`, records `.json`.

{parquet_section(spec, manifest)}
## Fields

Every sample of the `{full_config}` config has these fields (n: varies between samples); the
build checks each sample against this table.

{field_table}

## Splits

Split membership is a pure function of molecule identity: {manifest.split_function}.
The same function is used by every densegen release and benchmark task.

| split | samples | shards |
|---|---|---|
{rows}

## Failures

Inputs that could not be built are listed in `failures.jsonl` (input, stage, reason).

| stage | count |
|---|---|
{fails}

## Build parameters

| parameter | value |
|---|---|
{params}

{spec.card_body(manifest)}

## Citation

{CITATIONS}
"""
