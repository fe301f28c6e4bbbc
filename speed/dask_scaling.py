"""Scaling of a build on a Dask LocalCluster: 1 vs 2 (or more) workers, in one run.

    python -m speed.dask_scaling --release random-conformers --limit 3000 --workers 1 2
    python -m speed.dask_scaling --release pubchem-hf-density --limit 8 --workers 1 2

For each worker count it builds the release into a fresh temporary root with
``--executor dask`` semantics (``builders.format.dask_executor.DaskExecutor``, one BLAS/OpenMP
thread per worker) and prints the wall time, the speed-up over the first count, the driver's own
CPU seconds and peak memory (``resource.getrusage(RUSAGE_SELF)``: the driver process only, not
its workers) and whether the shards are byte-identical to the first build.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def run(release: str, limit: int, workers: int, root: Path, unit_size: int | None) -> dict:
    """Build ``release`` with ``limit`` inputs on a LocalCluster of ``workers``; return figures."""
    from builders.format.build import build_release
    from builders.format.dask_executor import DaskExecutor
    from builders.format.registry import get_release

    spec = get_release(release)
    with DaskExecutor(workers=workers) as executor:
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        manifest = build_release(spec, root, {}, limit=limit, executor=executor, progress=False, unit_size=unit_size)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": wall, "driver_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "driver_peak_rss_mb": after.ru_maxrss / 1024, "samples": manifest.total_samples,
            "hashes": {sh["path"]: sh["sha256"] for sh in manifest.shard_records}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", default="random-conformers")
    ap.add_argument("--limit", type=int, default=3000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--unit-size", type=int, default=None)
    args = ap.parse_args(argv)
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            r = run(args.release, args.limit, w, Path(tmp) / f"w{w}", args.unit_size)
            first = first or r
            rows.append((w, r))
    print(f"{args.release}, --limit {args.limit}, Dask LocalCluster, 1 thread per worker")
    print("| workers | wall s | speed-up | driver CPU s | driver peak RSS MB | samples | same bytes |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for w, r in rows:
        print(f"| {w} | {r['wall_s']:.1f} | {first['wall_s'] / r['wall_s']:.2f} | {r['driver_cpu_s']:.1f} | "
              f"{r['driver_peak_rss_mb']:.0f} | {r['samples']} | {'yes' if r['hashes'] == first['hashes'] else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
