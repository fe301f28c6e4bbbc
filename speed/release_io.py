"""Build and read rates of the release machinery on the random-conformers release.

    python -m speed.release_io [--limit 2000] [--workers 2] [--root /tmp/densegen-perf]

Prints: build rate (input molecules/s, samples/s) with the given workers, and read rates
(samples/s) through webdataset (decoded), the project's own reader, Hugging Face `datasets`
streaming, a torch DataLoader with the point-cloud collate, and the Parquet copy
(`builders.format.parquet`): `load_dataset("parquet")` in numpy format, sliced and through
`.iter(batch_size=1024)`, flat batches from the Arrow buffers, and a shuffling torch DataLoader
over it. Not a test: figures only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s ({n} in {seconds:.2f} s)"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--root", type=Path, default=Path("/tmp/densegen-perf"))
    ap.add_argument("--reads", type=int, default=3, help="passes over the shards for read timing")
    ap.add_argument("--release", type=Path, default=None, help="time reading this existing release (no build)")
    args = ap.parse_args(argv)

    from builders.format.build import build_release
    from builders.format.manifest import read_manifest, release_dir
    from builders.format.reader import iter_release, release_shards, webdataset_pipeline
    from builders.format.registry import get_release

    spec = get_release("random-conformers")
    out = args.release or release_dir(args.root, spec.name)
    if args.release is None:
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        manifest = build_release(spec, args.root, spec.resolve_params({}), seed=0, limit=args.limit,
                                 workers=args.workers, progress=True)
        build_s = time.perf_counter() - t
        n = sum(v["samples"] for v in manifest["splits"].values())
        print(f"build: {args.limit} inputs, {n} samples, {args.workers} workers: "
              f"inputs {_rate(args.limit, build_s)}; samples {_rate(n, build_s)} "
              f"(input loading included; CPU s per stage {manifest['timing']['stage_cpu_seconds']})")

    splits = [s for s in ("train", "valid", "test") if release_shards(out, s)]

    def time_reader(name, make_iter):
        best = None
        for _ in range(args.reads):
            t0 = time.perf_counter()
            count = sum(1 for _ in make_iter())
            dt = time.perf_counter() - t0
            best = dt if best is None or dt < best else best
        print(f"read {name}: {_rate(count, best)} (best of {args.reads})")

    def wds_all():
        for s in splits:
            yield from webdataset_pipeline(out, s)

    def own_all():
        for s in splits:
            yield from iter_release(out, s)

    time_reader("webdataset (decoded)", wds_all)
    time_reader("densegen reader", own_all)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: huggingface_hub reads it then
    from datasets import load_dataset

    def hf_streaming():
        for s in splits:
            yield from load_dataset(str(out), split=s, streaming=True)

    time_reader("datasets streaming", hf_streaming)

    import torch

    from builders.format.torch_data import ReleaseIterableDataset, collate_point_clouds

    def loader():
        ds = ReleaseIterableDataset(out, "train")
        for batch in torch.utils.data.DataLoader(ds, batch_size=256, num_workers=2, collate_fn=collate_point_clouds):
            yield from batch["keys"]

    time_reader("torch DataLoader (2 workers, collate, train split)", loader)

    from builders.format.parquet import load_parquet, parquet_records, point_cloud_batches

    if not parquet_records(read_manifest(out)):
        print("parquet: this release has no Parquet copy (built before it existed?)")
        return
    cols = ["__key__", "atomic_numbers", "positions"]
    pq = {s: load_parquet(out, s).with_format("numpy", columns=cols) for s in splits}

    def pq_slices():
        for ds in pq.values():
            for i in range(0, len(ds), 1024):
                yield from ds[i:i + 1024]["__key__"]

    def pq_iter():
        for ds in pq.values():
            for batch in ds.iter(batch_size=1024):
                yield from batch["__key__"]

    def pq_flat():
        for ds in pq.values():
            for batch in point_cloud_batches(ds, batch_size=1024):
                yield from batch["__key__"]

    def pq_loader():
        loader = torch.utils.data.DataLoader(pq["train"], batch_size=256, shuffle=True, num_workers=0,
                                             collate_fn=collate_point_clouds)
        for batch in loader:
            yield from batch["keys"]

    from builders.format.torch_data import ParquetPointCloudBatches

    def pq_batches(workers):
        def run():
            batches = ParquetPointCloudBatches(pq["train"], batch_size=256, shuffle=True)
            for batch in torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers):
                yield from batch["keys"]
        return run

    time_reader("parquet, load_dataset numpy format, ds[i:i+1024]", pq_slices)
    time_reader("parquet, load_dataset numpy format, .iter(batch_size=1024)", pq_iter)
    time_reader("parquet, point_cloud_batches (Arrow buffers, flat arrays)", pq_flat)
    time_reader("parquet, torch DataLoader (shuffled, batch 256, collate, main process, train)", pq_loader)
    time_reader("parquet, ParquetPointCloudBatches (shuffled, batch 256, main process, train)", pq_batches(0))
    time_reader("parquet, ParquetPointCloudBatches (shuffled, batch 256, 2 workers, train)", pq_batches(2))


if __name__ == "__main__":
    main()
