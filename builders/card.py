"""The generated Hugging Face dataset card (README.md) of a release."""
from __future__ import annotations

import yaml

CITATIONS = """\
```bibtex
@misc{densegen,
  title  = {densegen: datasets and benchmarks for 3D molecular representations},
  note   = {Built from the pipelines of 3DGrid-VQGAN (electron densities) and Mo3ENet (point clouds)}
}
```"""


def card_metadata(spec, manifest: dict) -> dict:
    """The YAML header: license, tags, configs with data_files per split, declared features."""
    splits = [s for s, v in manifest["splits"].items() if v["samples"] > 0]
    n = sum(v["samples"] for v in manifest["splits"].values())
    configs = manifest.get("configs") or {"default": {"folder": "data", "default": True,
                                                      "splits": {s: {"bytes": manifest["splits"][s]["bytes"]} for s in splits}}}
    size = ("n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000
            else "100K<n<1M" if n < 1_000_000 else "1M<n<10M")
    return {
        "license": spec.license,
        "pretty_name": spec.pretty_name or spec.name,
        "tags": list(spec.tags),
        "size_categories": [size],
        "configs": [{"config_name": name, **({"default": True} if cfg["default"] else {}),
                     "data_files": [{"split": s, "path": f"{cfg['folder']}/{s}/*.tar"} for s in splits]}
                    for name, cfg in configs.items()],
        "dataset_info": [{"config_name": name, "features": spec.features(name, manifest["parameters"])._to_yaml_list(),
                          "splits": [{"name": s, "num_bytes": cfg["splits"][s]["bytes"],
                                      "num_examples": manifest["splits"][s]["samples"]} for s in splits]}
                         for name, cfg in configs.items()],
    }


def render_card(spec, manifest: dict) -> str:
    """Full README.md text: YAML front matter + a generated body."""
    meta = yaml.safe_dump(card_metadata(spec, manifest), sort_keys=False, default_flow_style=False)
    sp = manifest["splits"]
    rows = "\n".join(f"| {s} | {v['samples']} | {v['shards']} |" for s, v in sp.items())
    fails = "\n".join(f"| {stage} | {n} |" for stage, n in manifest["failures"]["by_stage"].items()) or "| (none) | 0 |"
    params = "\n".join(f"| `{k}` | `{v}` |" for k, v in manifest["parameters"].items())
    commit = manifest["builder"].get("git_commit") or "unknown"
    return f"""---
{meta}---

# {spec.pretty_name or spec.name}

{spec.summary}

Release `{manifest['release']}` version {manifest['release_version']}, built by densegen
{manifest['builder']['version']} (commit `{commit}`). Everything below is generated from
`manifest.json`, which also holds the sha256 of every shard.

## Loading

```python
from datasets import load_dataset
ds = load_dataset("densegen/{spec.name}", split="train")            # from the folder holding densegen/
ds = load_dataset("densegen/{spec.name}", split="train", streaming=True)

import webdataset as wds, glob
shards = sorted(glob.glob("densegen/{spec.name}/data/train/*.tar"))
for sample in wds.WebDataset(shards, shardshuffle=False).decode():
    ...
```

Arrays are `.npy` members (decoded without pickle), strings `.txt`, records `.json`.

## Splits

Split membership is a pure function of molecule identity: {manifest['split_function']['function']}.
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
