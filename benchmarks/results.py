"""Results files: everything needed to trust a number (task + variant + split hash, metrics per
seed and aggregated with their units, predictions file + sha256, model, parameters, hardware,
time, versions, command). The schema lives here, next to the writer, which validates every
document before writing it; the leaderboard checks submissions against the same schema."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

SCHEMA_VERSION = "densegen-results-3"  # 2: task.variant and task.units; 3: model arguments + weights digest, densegen commit

SHA256_SCHEMA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_FILE_NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[A-Za-z0-9_][A-Za-z0-9._-]*\.npz$"}

RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://densegen.invalid/schema/" + SCHEMA_VERSION,
    "title": "densegen benchmark results file",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "task", "release", "model", "protocol", "metrics", "predictions",
                 "environment", "wall_time_s", "command", "created"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "task": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "version", "variant", "split_sha256", "primary_metric", "lower_is_better", "units"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 64},
                "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
                "variant": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}$"}]},
                "split_sha256": {"anyOf": [SHA256_SCHEMA, {"type": "null"}]},
                "primary_metric": {"type": "string", "minLength": 1, "maxLength": 100},
                "lower_is_better": {"type": "boolean"},
                "units": {"type": "object", "maxProperties": 1000,
                          "additionalProperties": {"type": "string", "maxLength": 200}},
            },
        },
        "release": {"anyOf": [{"type": "null"}, {"type": "object"}]},
        "model": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "import", "parameters", "arguments", "weights_sha256"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "import": {"type": "string", "minLength": 1, "maxLength": 300,
                           "pattern": r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"},
                "parameters": {"type": "integer", "minimum": 0},
                "arguments": {"type": "object", "maxProperties": 50,
                              "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
                              "additionalProperties": {"type": ["string", "integer", "number", "boolean", "null"],
                                                       "maxLength": 500}},
                "weights_sha256": {"anyOf": [SHA256_SCHEMA, {"type": "null"}]},
            },
        },
        "protocol": {"type": "object", "required": ["quick"], "properties": {"quick": {"type": "boolean"}}},
        "metrics": {
            "type": "object", "additionalProperties": False, "required": ["per_seed", "aggregate"],
            "properties": {
                "per_seed": {
                    "type": "array", "minItems": 1, "maxItems": 1000,
                    "items": {"type": "object", "required": ["seed"],
                              "properties": {"seed": {"type": "integer", "minimum": 0}},
                              "additionalProperties": {"$ref": "#/$defs/number_tree"}},
                },
                "aggregate": {"type": "object", "minProperties": 1,
                              "additionalProperties": {"$ref": "#/$defs/aggregate_tree"}},
            },
        },
        "predictions": {
            "type": "object", "additionalProperties": False, "required": ["file", "sha256", "bytes"],
            "properties": {"file": _FILE_NAME, "sha256": SHA256_SCHEMA, "bytes": {"type": "integer", "minimum": 0}},
        },
        "environment": {
            "type": "object", "required": ["hardware", "packages", "python", "densegen_commit"],
            "properties": {
                "densegen_commit": {"anyOf": [{"type": "null"},
                                              {"type": "string", "pattern": "^[0-9a-f]{40}(\\+dirty)?$"}]},
                "hardware": {"type": "object"},
                "packages": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                "python": {"type": "string"},
            },
        },
        "wall_time_s": {"type": "number", "minimum": 0},
        "command": {"type": "string", "maxLength": 10000},
        "created": {"type": "string",
                    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"},
    },
    "$defs": {
        "number_tree": {"type": ["number", "null", "array", "object"], "items": {"$ref": "#/$defs/number_tree"},
                        "additionalProperties": {"$ref": "#/$defs/number_tree"}},
        "stat": {"type": "object", "additionalProperties": False, "required": ["mean", "std"],
                 "properties": {"mean": {"type": ["number", "null"]}, "std": {"type": ["number", "null"], "minimum": 0}}},
        "aggregate_tree": {"type": "object", "if": {"required": ["mean"]}, "then": {"$ref": "#/$defs/stat"},
                           "else": {"minProperties": 1, "additionalProperties": {"$ref": "#/$defs/aggregate_tree"}}},
    },
}



class ResultsError(ValueError):
    """A results document does not match :data:`RESULTS_SCHEMA`; the message names the JSON path."""


def schema_error(doc):
    """The most relevant schema violation of ``doc`` (a ``jsonschema.ValidationError``), or None."""
    import jsonschema
    from jsonschema.exceptions import best_match

    return best_match(jsonschema.Draft202012Validator(RESULTS_SCHEMA).iter_errors(doc))


def validate_results(doc) -> None:
    """Check a results document against :data:`RESULTS_SCHEMA` (the writer calls this before
    writing; the leaderboard turns the same check into refusal codes).

    Raises:
        ResultsError: naming the JSON path of the first violation.
    """
    error = schema_error(doc)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ResultsError(f"results document does not match {SCHEMA_VERSION} at {where}: {error.message}")


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


def git_commit() -> str | None:
    """The densegen commit that ran (``+dirty`` with uncommitted changes), None outside a git checkout."""
    from builders.format.provenance import git_commit as commit

    return commit()


def commit_that_ran(at_start: str | None) -> str | None:
    """The commit to record for a run that started at commit ``at_start``: that commit, or
    ``<commit>+dirty`` when the checkout changed (a commit or an edit) while the run ran, since
    the code that ran is then neither the old commit nor the new one for certain."""
    at_end = git_commit()
    if at_start is None or at_end == at_start:
        return at_start
    return at_start.split("+")[0] + "+dirty"


def package_versions() -> dict:
    from builders.format.provenance import package_versions as pv

    return pv(("densegen", "numpy", "scipy", "torch", "rdkit", "pyscf", "datasets", "webdataset", "torch-fidelity",
               "scikit-image"))


def write_npz(path: Path, arrays: dict) -> tuple[str, int]:
    """Write arrays as a compressed ``.npz`` (numeric/str arrays only: no pickle), streamed
    member by member (a disk-backed array is never loaded whole), with fixed zip timestamps so
    equal arrays give equal bytes; written to a temporary file and renamed. Read back with
    ``np.load(path, allow_pickle=False)``.

    Returns:
        (sha256 hex digest, size in bytes) of the file.
    Raises:
        ValueError: for an array of Python objects.
    """
    import os
    import zipfile

    from builders.format.tario import sha256_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for name, value in arrays.items():
                array = value if isinstance(value, np.ndarray) else np.asarray(value)
                if array.dtype.hasobject:
                    raise ValueError(f"array {name!r} has objects; only numeric/str arrays are stored")
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha256_file(path), path.stat().st_size


def write_results(out_dir: Path, task, variant: str | None, model_name: str, model_target: str, n_params: int,
                  run: dict, wall_time_s: float, model_arguments: dict | None = None,
                  weights_sha256: str | None = None, densegen_commit: str | None = "now") -> Path:
    """Write ``<out_dir>/<task>[-<variant>]-<model>.json`` and its predictions ``.npz``; the
    document is validated against :data:`RESULTS_SCHEMA` first (nothing is written if it fails).

    Args:
        task: the :class:`benchmarks.task.Task`.
        variant: its data variant (None for tasks without).
        run: what ``task.run`` returned (protocol, per_seed, aggregate, predictions, release).
        model_arguments: the keyword arguments the model was constructed with (``--model-arg``).
        weights_sha256: :func:`benchmarks.protocol.weights_digest` of the weights it loaded.
        densegen_commit: the commit of the code that ran (see :func:`commit_that_ran`); by
            default the checkout's commit now.
    Returns:
        the JSON path.
    Raises:
        ResultsError: when the document would not match the schema.
    """
    out_dir = Path(out_dir)
    safe_model = "".join(c if c.isalnum() or c in "-_" else "-" for c in model_name)
    stem = f"{task.name}-{variant}-{safe_model}" if variant else f"{task.name}-{safe_model}"
    pred_path = out_dir / f"{stem}.predictions.npz"
    doc = {
        "schema_version": SCHEMA_VERSION,
        "task": task.record(variant),
        "release": run.get("release"),
        "model": {"name": model_name, "import": model_target, "parameters": int(n_params),
                  "arguments": dict(model_arguments or {}), "weights_sha256": weights_sha256},
        "protocol": run["protocol"],
        "metrics": {"per_seed": run["per_seed"], "aggregate": run["aggregate"]},
        "predictions": {"file": pred_path.name, "sha256": None, "bytes": None},
        "environment": {"hardware": hardware(), "packages": package_versions(), "python": platform.python_version(),
                        "densegen_commit": git_commit() if densegen_commit == "now" else densegen_commit},
        "wall_time_s": round(float(wall_time_s), 3),
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.run", *sys.argv[1:]]),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    probe = {**doc, "predictions": {"file": pred_path.name, "sha256": "0" * 64, "bytes": 0}}
    validate_results(json.loads(json.dumps(probe, allow_nan=False)))  # before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    digest, size = write_npz(pred_path, run["predictions"])
    doc["predictions"].update(sha256=digest, bytes=size)
    text = json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n"
    validate_results(json.loads(text))
    path = out_dir / f"{stem}.json"
    path.write_text(text)
    return path
