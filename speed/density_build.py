"""Figures of a density build: time per stage and bytes per sample for each config.

    python -m builders build pubchem-hf-density --limit 20 --grid --root /tmp/pc
    python -m speed.density_build /tmp/pc/densegen/pubchem-hf-density

Prints the CPU seconds per stage (summed over molecules, from the manifest), the share of
non-QM work (conformers, grid, write) relative to QM work (semiempirical + RHF), and the
median/mean bytes per sample of each config (tar members of each sample, headers included).
"""
from __future__ import annotations

import argparse
import statistics
import tarfile
from collections import defaultdict
from pathlib import Path

QM_STAGES = ("semiempirical", "mindo3", "xtb", "rhf")


def sample_bytes(shard: Path) -> list[int]:
    """Bytes per sample of a shard: each member's 512-byte header + its data padded to 512."""
    sizes: dict[str, int] = defaultdict(int)
    with tarfile.open(shard) as tar:
        for m in tar:
            key = Path(m.name).name.split(".", 1)[0]
            sizes[key] += 512 + (m.size + 511) // 512 * 512
    return list(sizes.values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("release", type=Path)
    args = ap.parse_args(argv)
    from builders.format.reader import read_manifest

    m = read_manifest(args.release)
    n = sum(v["samples"] for v in m["splits"].values())
    stages = m["timing"]["stage_cpu_seconds"]
    print(f"{m['release']}: {n} samples, {m['failures']['total']} failures {m['failures']['by_stage']}")
    print(f"wall time of the build: {m['timing']['build_seconds_this_run']:.1f} s")
    for stage, sec in stages.items():
        print(f"  {stage:14s} {sec:9.2f} s total  {sec / max(n, 1):8.2f} s/sample")
    qm = sum(v for k, v in stages.items() if k in QM_STAGES)
    other = sum(v for k, v in stages.items() if k not in QM_STAGES and k != "total")
    if qm:
        print(f"non-QM stages (conformers, grid, write) / QM stages (semiempirical, RHF): {other / qm:.1%}")
    for name, cfg in m.get("configs", {"default": {}}).items():
        sizes = []
        for sh in m["shards"]:
            if sh.get("config", "default") == name:
                sizes += sample_bytes(args.release / sh["path"])
        if sizes:
            print(f"config {name}: median {statistics.median(sizes) / 1e3:.1f} KB/sample, "
                  f"mean {statistics.mean(sizes) / 1e3:.1f} KB, max {max(sizes) / 1e3:.1f} KB ({len(sizes)} samples)")


if __name__ == "__main__":
    main()
