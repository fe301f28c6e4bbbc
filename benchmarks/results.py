"""Results files: everything needed to trust a number (task + split hash, metrics per seed and
aggregated, predictions file + sha256, model, parameters, hardware, time, versions, command)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

SCHEMA_VERSION = "densegen-results-1"


def hardware() -> dict:
    """CPU/GPU description of this machine."""
    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "system": platform.system()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def package_versions() -> dict:
    from builders.provenance import package_versions as pv

    return pv(("densegen", "numpy", "scipy", "torch", "rdkit", "pyscf", "datasets", "webdataset", "torch-fidelity",
               "scikit-image"))


def npz_bytes(arrays: dict) -> bytes:
    """Serialize arrays as a compressed .npz (numeric/str arrays only: no pickle). Deterministic
    bytes; read back with ``np.load(path, allow_pickle=False)``."""
    for k, v in arrays.items():
        if np.asarray(v).dtype.hasobject:
            raise ValueError(f"prediction array {k!r} has objects; only numeric/str arrays are stored")
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def write_results(out_dir: Path, task, model_name: str, model_target: str, n_params: int, protocol: dict,
                  per_seed: list[dict], aggregate: dict, predictions: dict, wall_time_s: float,
                  release: dict | None = None) -> Path:
    """Write ``<out_dir>/<task>-<model>.json`` and its predictions ``.npz``; returns the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe_model = "".join(c if c.isalnum() or c in "-_" else "-" for c in model_name)
    stem = f"{task.name}-{safe_model}"
    pred_bytes = npz_bytes(predictions)
    pred_path = out_dir / f"{stem}.predictions.npz"
    pred_path.write_bytes(pred_bytes)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "task": {"name": task.name, "version": task.version, "split_sha256": task.split_sha256,
                 "primary_metric": task.primary_metric, "lower_is_better": task.lower_is_better},
        "release": release,
        "model": {"name": model_name, "import": model_target, "parameters": int(n_params)},
        "protocol": protocol,
        "metrics": {"per_seed": per_seed, "aggregate": aggregate},
        "predictions": {"file": pred_path.name, "sha256": hashlib.sha256(pred_bytes).hexdigest(),
                        "bytes": len(pred_bytes)},
        "environment": {"hardware": hardware(), "packages": package_versions(), "python": platform.python_version()},
        "wall_time_s": round(float(wall_time_s), 3),
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.run", *sys.argv[1:]]),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return path
