"""Build and read rates of the release machinery on the random-conformers release.

    python -m speed.release_io [--limit 2000] [--workers 2] [--root /tmp/densegen-perf]

Prints: build rate (input molecules/s, samples/s) with the given workers, and read rates
(samples/s) through webdataset (decoded), the project's own reader, Hugging Face `datasets`
streaming, and a torch DataLoader with the point-cloud collate. Not a test: figures only.
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
    from builders.format.manifest import release_dir
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


if __name__ == "__main__":
    main()
