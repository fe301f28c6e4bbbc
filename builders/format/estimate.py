"""Cost of a build at scale, projected from a pilot build's manifest
(``python -m builders estimate``).

The manifest of every build records, per stage, the seconds its workers spent
(``timing.stage_cpu_seconds``: CPU seconds of the worker process, ``time.process_time``,
inside each work unit, so time spent waiting for a core on a busy machine is not counted), how many inputs
were processed and the bytes of every shard. From a
pilot build of n inputs, a build of N inputs costs ``N / n`` times as much per stage; its
wall time on W workers is the total CPU time over W (perfect scaling: an upper bound on the
speed, to be read next to the measured scaling in README); its size is the pilot's bytes per
sample times the samples expected (the pilot's yield of samples per input).

The projection is as good as the pilot is typical: molecules of the pilot that are smaller
or simpler than the release's (the first molecules of the embedded PubChem set are small)
make it an underestimate.
"""
from __future__ import annotations

from dataclasses import dataclass

from builders.format.manifest import Manifest


@dataclass(frozen=True)
class Estimate:
    """A projected build.

    Attributes:
        release: release name. molecules: inputs projected (N). pilot_inputs: inputs of the pilot (n).
        stage_cpu_hours: {stage: CPU hours for N inputs} (``total`` = the whole molecule).
        samples: samples expected. bytes: release size expected (all configs), bytes.
        wall_hours: {workers: wall hours at perfect scaling}.
    """

    release: str
    molecules: int
    pilot_inputs: int
    stage_cpu_hours: dict
    samples: float
    bytes: float
    wall_hours: dict


def estimate(manifest: Manifest, molecules: int, workers=(1,)) -> Estimate:
    """Project a build of ``molecules`` inputs from a pilot build's manifest.

    Args:
        manifest: the pilot's :class:`builders.format.manifest.Manifest`.
        molecules: inputs of the projected build (N >= 1).
        workers: worker counts to give the wall time for (each >= 1).
    Raises:
        ValueError: a pilot without timing or processed inputs (an old or empty build), or bad N / W.
    """
    if molecules < 1:
        raise ValueError(f"--molecules must be >= 1, got {molecules}")
    if any(w < 1 for w in workers):
        raise ValueError(f"--workers must be >= 1, got {list(workers)}")
    stages = dict((manifest.get("timing") or {}).get("stage_cpu_seconds") or {})
    processed = int((manifest.get("inputs") or {}).get("processed") or 0)
    if processed < 1 or not stages.get("total"):
        raise ValueError(f"{manifest.release}: the pilot build records no processed inputs or stage timings; "
                         f"build a pilot with this densegen first (e.g. --limit 8)")
    scale = molecules / processed
    total = stages["total"]
    hours = {k: v * scale / 3600 for k, v in sorted(stages.items(), key=lambda kv: (kv[0] == "total", -kv[1]))}
    samples = manifest.total_samples * scale
    size = manifest.total_bytes / max(manifest.total_samples, 1) * samples
    return Estimate(manifest.release, int(molecules), processed, hours, samples, size,
                    {int(w): total * scale / w / 3600 for w in workers})


def _duration(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.1f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _size(n: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def format_estimate(est: Estimate) -> str:
    """The estimate as Markdown tables (the form README carries)."""
    total = est.stage_cpu_hours["total"]
    rows = [f"{est.release}: {est.molecules:,} inputs, projected from a pilot of {est.pilot_inputs:,}", "",
            "| stage | CPU hours | share |", "|---|---:|---:|"]
    for stage, h in est.stage_cpu_hours.items():
        rows.append(f"| {stage} | {h:,.1f} | {100 * h / total:.0f}% |")
    rows += ["", "| workers | wall time (perfect scaling) |", "|---:|---:|"]
    rows += [f"| {w:,} | {_duration(h)} |" for w, h in est.wall_hours.items()]
    rows += ["", f"expected samples: {est.samples:,.0f}; release size: {_size(est.bytes)} (all configs)"]
    return "\n".join(rows)


__all__ = ["Estimate", "estimate", "format_estimate"]
