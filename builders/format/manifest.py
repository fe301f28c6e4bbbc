"""The manifest of a release (``manifest.json``): reading, shape validation, shard lists.

Every reader and ``verify`` go through :func:`read_manifest`, which checks the shape with a
JSON Schema (:data:`SCHEMA`) and a few rules a schema cannot say (shard paths inside the
release folder, listed once, of a known split and config), so a hand-edited or foreign
``manifest.json`` fails with ONE line naming the file and what is wrong, never a
``KeyError``/``TypeError`` deep inside a reader.

What readers use (the build writes more: parameters, builder versions, timing):

* ``release`` (str), ``splits`` ({split: {"samples": int}}),
* ``shards``: [{"path": "data/train/<name>-train-000000.tar", "config", "split", "sha256",
  "bytes", "count"}] (``config`` defaults to ``"default"`` in older manifests),
* ``parquet`` (optional): the Parquet copy of some configs (``builders.format.parquet``), records
  like the shards': [{"path": "parquet/<config>/<split>/<name>-<split>-00000.parquet", "config",
  "split", "sha256", "bytes", "count"}],
* ``configs`` (optional): {name: {"folder", "default", "fields"}}, ``fields`` being the sorted
  member suffixes every sample of that config has (e.g. ``["atomic_numbers.npy",
  "meta.json", "positions.npy"]``); older manifests may lack ``fields``.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jsonschema

MANIFEST = "manifest.json"
CARD = "README.md"
FAILURES = "failures.jsonl"
CROISSANT = "croissant.json"  # Croissant metadata (builders.format.croissant)
WORK_DIR = ".build"  # an unfinished build's work units; a finished release has none


def release_dir(root: Path, name: str) -> Path:
    """Where a release lives: ``<root>/densegen/<name>``."""
    return Path(root) / "densegen" / name


def has_manifest(path) -> bool:
    """Whether the folder ``path`` (or the file itself) holds a ``manifest.json`` (not validated)."""
    return manifest_file(path).is_file()


def is_finished_release(path: Path) -> bool:
    """Whether ``path`` holds a finished build: a ``manifest.json`` and no ``.build/`` work
    folder (its shards are not checked here: :func:`builders.format.verify.verify_release`)."""
    path = Path(path)
    return has_manifest(path) and not (path / WORK_DIR).exists()

_COUNT = {"type": "integer", "minimum": 0}
_SHARD = {
    "type": "object",
    "required": ["path", "split", "sha256", "bytes", "count"],
    "properties": {
        "path": {"type": "string", "minLength": 1},
        "config": {"type": "string", "minLength": 1},
        "split": {"type": "string", "minLength": 1},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "bytes": _COUNT,
        "count": _COUNT,
    },
}
_CONFIG = {
    "type": "object",
    "properties": {
        "folder": {"type": "string", "minLength": 1},
        "default": {"type": "boolean"},
        "fields": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*\.[a-z0-9.]+$"},
                   "uniqueItems": True},
    },
}
#: JSON Schema of the parts of ``manifest.json`` that readers rely on (other keys are allowed).
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["release", "splits", "shards"],
    "properties": {
        "format": {"const": "webdataset"},
        "release": {"type": "string", "minLength": 1},
        "splits": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["samples"], "properties": {"samples": _COUNT}}},
        "shards": {"type": "array", "items": _SHARD},
        "parquet": {"type": "array", "items": {**_SHARD, "required": [*_SHARD["required"], "config"]}},
        "configs": {"type": "object", "additionalProperties": _CONFIG},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}
_SCHEMA_TYPES = {"object": "an object", "array": "a list", "string": "a string", "boolean": "a boolean",
                 "integer": "an integer", "number": "a number"}


class ManifestError(ValueError):
    """``manifest.json`` is not valid JSON or does not have the shape of a densegen manifest."""


class Manifest(dict):
    """A validated ``manifest.json`` (what :func:`read_manifest` returns): the parsed dict, with
    named accessors for what readers, verify, the card and the benchmark tasks use, so no
    caller spells a raw key. Still a dict: ``json.dumps`` and ``==`` work as on the parsed file.
    """

    @property
    def release(self) -> str:
        """Release name, e.g. ``"qm9-hf-density"``."""
        return self["release"]

    @property
    def release_version(self) -> str:
        """Release version (``"0"`` when an old manifest does not say)."""
        return str(self.get("release_version", "0"))

    @property
    def major_version(self) -> int:
        """Major part of :attr:`release_version`."""
        return int(self.release_version.split(".")[0])

    @property
    def parameters(self) -> dict:
        """The build parameters the release was made with (``{}`` when not recorded)."""
        return self.get("parameters") or {}

    @property
    def split_names(self) -> list[str]:
        """Split names in manifest order."""
        return list(self["splits"])

    def samples(self, split: str) -> int:
        """Number of samples in ``split``."""
        return int(self["splits"][split]["samples"])

    @property
    def failures_total(self) -> int:
        """Inputs that failed to build (0 when not recorded)."""
        return int((self.get("failures") or {}).get("total", 0))

    @property
    def failures_by_stage(self) -> dict:
        """Failed inputs per stage (``{}`` when not recorded)."""
        return dict((self.get("failures") or {}).get("by_stage", {}))

    @property
    def builder_version(self) -> str:
        """densegen version that built the release (``"unknown"`` when not recorded)."""
        return str((self.get("builder") or {}).get("version", "unknown"))

    @property
    def split_function(self) -> str:
        """The split function's description (``"unknown"`` when not recorded)."""
        return str((self.get("split_function") or {}).get("function", "unknown"))

    @property
    def builder_commit(self) -> str | None:
        """git commit of the densegen that built the release, when recorded."""
        return (self.get("builder") or {}).get("git_commit")

    @property
    def configs(self) -> dict:
        """Config name -> its record (``{}`` for manifests without configs)."""
        return self.get("configs") or {}

    @property
    def default_config(self) -> str:
        """Name of the default config (``"default"`` for manifests without configs)."""
        return default_config(self)

    @property
    def shard_records(self) -> list[dict]:
        """The listed shards as recorded (path, config, split, sha256, bytes, count), config
        defaulting to ``"default"`` for older manifests."""
        return [{**sh, "config": sh.get("config", "default")} for sh in self["shards"]]

    def shard_paths(self, split: str, config: str | None = None) -> list[str]:
        """Paths (relative to the release folder) of the shards of one split and config
        (None: the default config), in manifest order."""
        config = self.default_config if config is None else config
        return [sh["path"] for sh in self.shard_records if sh["config"] == config and sh["split"] == split]

    def split_shards(self, split: str, config: str | None = None) -> int:
        """Number of shards of one split and config (None: the default config)."""
        return len(self.shard_paths(split, config))

    def split_bytes(self, split: str, config: str | None = None) -> int:
        """Bytes of the shards of one split and config (None: the default config)."""
        config = self.default_config if config is None else config
        return sum(sh["bytes"] for sh in self.shard_records if sh["config"] == config and sh["split"] == split)

    @property
    def total_samples(self) -> int:
        """Samples over all splits (of one config: every config holds the same samples)."""
        return sum(self.samples(s) for s in self.split_names)

    @property
    def total_bytes(self) -> int:
        """Bytes of every listed shard, all configs."""
        return sum(sh["bytes"] for sh in self["shards"])

    @property
    def build_seconds(self) -> float | None:
        """Wall seconds of the build run that wrote the manifest, when recorded."""
        return (self.get("timing") or {}).get("build_seconds_this_run")

    @classmethod
    def assemble(cls, *, release: str, release_version: str, license: str, format_version: int,
                 builder: dict, parameters: dict, build_identity: dict, split_function: dict,
                 inputs: dict, configs: list[dict], split_samples: dict, shards: list[dict],
                 failures: list[dict], build_seconds: float, stage_cpu_seconds: dict,
                 parquet: list[dict] = ()) -> "Manifest":
        """The manifest a build writes: the one place its layout is spelled out.

        Args:
            release, release_version, license: what the release spec says.
            format_version: version of this layout.
            builder: {"package", "version", "git_commit", "packages"}.
            parameters: the build's full parameter record.
            build_identity: what two builds must share to be the same build.
            split_function: ``builders.format.splits.split_record()``.
            inputs: {"count", "processed", "sha256"}.
            configs: [{"name", "folder", "default", "excluded_fields", "fields"}], the first
                being the one whose shards ``splits`` counts.
            split_samples: {split: number of samples}, in split order.
            shards: [{"path", "config", "split", "sha256", "bytes", "count"}].
            failures: the failure records (key, input, source, stage, reason).
            build_seconds: wall seconds of this run. stage_cpu_seconds: {stage: CPU seconds}.
            parquet: the Parquet copy's files, records like ``shards`` (absent when empty).
        """
        def count(config, split):
            return sum(1 for sh in shards if sh["config"] == config and sh["split"] == split)

        def size(config, split):
            return sum(sh["bytes"] for sh in shards if sh["config"] == config and sh["split"] == split)

        first = configs[0]["name"]
        return cls({
            "format": "webdataset",
            "format_version": format_version,
            "release": release,
            "release_version": release_version,
            "license": license,
            "builder": builder,
            "parameters": parameters,
            "build_identity": build_identity,
            "split_function": split_function,
            "inputs": inputs,
            "configs": {c["name"]: {"folder": c["folder"], "default": c["default"],
                                    "excluded_fields": sorted(c["excluded_fields"]), "fields": sorted(c["fields"]),
                                    "splits": {s: {"shards": count(c["name"], s), "bytes": size(c["name"], s)}
                                               for s in split_samples}} for c in configs},
            "splits": {s: {"samples": n, "shards": count(first, s), "bytes": size(first, s)}
                       for s, n in split_samples.items()},
            "shards": shards,
            **({"parquet": list(parquet)} if parquet else {}),
            "failures": {"total": len(failures),
                         "by_stage": dict(sorted(Counter(f["stage"] for f in failures).items())),
                         "file": FAILURES},
            "timing": {"build_seconds_this_run": round(build_seconds, 3),
                       "stage_cpu_seconds": {k: round(v, 3) for k, v in sorted(stage_cpu_seconds.items())}},
        })


@dataclass(frozen=True)
class ShardSpec:
    """One shard and what the manifest says about it (None = not recorded).

    Attributes:
        path: the shard file.
        name: its path relative to the release folder (as listed in the manifest).
        count: number of samples.
        fields: member suffixes every sample has (e.g. ``{"positions.npy", "meta.json"}``).
        sha256: hex digest of the file.
        bytes: file size.
        split, config: where it belongs.
    """

    path: Path
    name: str = ""
    count: int | None = None
    fields: frozenset | None = None
    sha256: str | None = None
    bytes: int | None = None
    split: str | None = None
    config: str | None = None

    def __str__(self) -> str:
        return str(self.path)


def manifest_file(path) -> Path:
    """``manifest.json`` of a release folder (``path`` may also be the file itself)."""
    path = Path(path)
    return path if path.name == MANIFEST and not path.is_dir() else path / MANIFEST


def _where(error: jsonschema.ValidationError) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return parts.lstrip(".") or "top level"


def _describe(error: jsonschema.ValidationError) -> str:
    """A short one-line description (jsonschema's own message repeats the whole instance)."""
    v, value = error.validator, error.validator_value
    got = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
    if v == "type":
        return f"{_where(error)} must be {_SCHEMA_TYPES.get(value, value)}, not {got}"
    if v == "required":
        return error.message if _where(error) == "top level" else f"{_where(error)}: {error.message}"
    if v == "pattern":
        return f"{_where(error)} = {str(error.instance)[:60]!r} does not match {value!r}"
    if v in ("minimum", "minLength"):
        return f"{_where(error)} = {error.instance!r} is below the minimum {value}"
    if v == "const":
        return f"{_where(error)} must be {value!r}, not {str(error.instance)[:60]!r}"
    return f"{_where(error)}: {error.message[:200]}"


def validate_manifest(manifest, source: str = MANIFEST) -> dict:
    """Check the shape of a parsed manifest; returns it unchanged.

    Raises:
        ManifestError: one line ``"<source>: not a densegen manifest: <what>"``.
    """
    errors = sorted(_VALIDATOR.iter_errors(manifest), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(f"{source}: not a densegen manifest: {_describe(errors[0])}{more}")
    configs = manifest.get("configs")
    seen = set()
    for i, sh in enumerate(manifest["shards"]):
        rel = PurePosixPath(sh["path"])
        if rel.is_absolute() or ".." in rel.parts or "\\" in sh["path"] or rel.as_posix() != sh["path"]:
            raise ManifestError(f"{source}: shards[{i}].path {sh['path']!r} must be a plain relative path inside the release")
        if sh["path"] in seen:
            raise ManifestError(f"{source}: shard {sh['path']} is listed twice")
        seen.add(sh["path"])
        if sh["split"] not in manifest["splits"]:
            raise ManifestError(f"{source}: shard {sh['path']} has split {sh['split']!r}, not one of {sorted(manifest['splits'])}")
        if configs is not None and sh.get("config", "default") not in configs:
            raise ManifestError(f"{source}: shard {sh['path']} has config {sh.get('config', 'default')!r}, "
                                f"not one of {sorted(configs)}")
    for i, rec in enumerate(manifest.get("parquet", [])):
        rel = PurePosixPath(rec["path"])
        if (rel.is_absolute() or ".." in rel.parts or "\\" in rec["path"] or rel.as_posix() != rec["path"]
                or rel.parts[0] != "parquet" or rel.suffix != ".parquet"):
            raise ManifestError(f"{source}: parquet[{i}].path {rec['path']!r} must be a plain relative path "
                                f"parquet/.../*.parquet inside the release")
        if rec["path"] in seen:
            raise ManifestError(f"{source}: file {rec['path']} is listed twice")
        seen.add(rec["path"])
        if rec["split"] not in manifest["splits"]:
            raise ManifestError(f"{source}: Parquet file {rec['path']} has split {rec['split']!r}, "
                                f"not one of {sorted(manifest['splits'])}")
        if rec["config"] not in (configs if configs is not None else {"default"}):
            raise ManifestError(f"{source}: Parquet file {rec['path']} has config {rec['config']!r}, "
                                f"not one of {sorted(configs or ['default'])}")
    return manifest


def read_manifest(path) -> Manifest:
    """Read and validate the manifest of a release.

    Args:
        path: release folder (``.../densegen/<name>``) or its ``manifest.json``.
    Returns:
        the :class:`Manifest`.
    Raises:
        FileNotFoundError: naming the folder when it has no manifest.json.
        ManifestError: (a ValueError) naming the file when it is not JSON or has the wrong shape.
    """
    file = manifest_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file.parent} is not a densegen release (no manifest.json); build one with "
                                f"`python -m builders build <release>`")
    try:
        manifest = json.loads(file.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{file}: not valid JSON ({err})") from None
    return Manifest(validate_manifest(manifest, str(file)))


def default_config(manifest: dict) -> str:
    """Name of the default config (``"default"`` for manifests without ``configs``)."""
    configs = manifest.get("configs") or {}
    if not configs:
        return "default"
    return next((name for name, c in configs.items() if c.get("default")), next(iter(configs)))


def config_fields(manifest: dict, config: str) -> frozenset | None:
    """Member suffixes every sample of ``config`` has, or None when the manifest does not say."""
    fields = ((manifest.get("configs") or {}).get(config) or {}).get("fields")
    return frozenset(fields) if fields is not None else None


def shard_specs(release, split: str | None = None, config: str | None = None,
                manifest: dict | None = None) -> list[ShardSpec]:
    """The shards of a release as :class:`ShardSpec`, in manifest order.

    Args:
        release: release folder.
        split: only this split (None = all).
        config: only this config (None = the default config; ``"*"`` = every config).
        manifest: the already-read manifest (default: read it).
    Raises:
        ValueError: for an unknown split or config name.
    """
    release = Path(release)
    manifest = read_manifest(release) if manifest is None else manifest
    if split is not None and split not in manifest["splits"]:
        raise ValueError(f"unknown split {split!r}; this release has {sorted(manifest['splits'])}")
    configs = manifest.get("configs") or {"default": {}}
    if config is None:
        config = default_config(manifest)
    if config != "*" and config not in configs:
        raise ValueError(f"unknown config {config!r}; this release has {sorted(configs)}")
    out = []
    for sh in manifest["shards"]:
        cfg = sh.get("config", "default")
        if (split is None or sh["split"] == split) and config in ("*", cfg):
            out.append(ShardSpec(path=release / sh["path"], name=sh["path"], count=sh["count"],
                                 fields=config_fields(manifest, cfg), sha256=sh["sha256"], bytes=sh["bytes"],
                                 split=sh["split"], config=cfg))
    return out


__all__ = ["SCHEMA", "MANIFEST", "CARD", "FAILURES", "CROISSANT", "ManifestError", "ShardSpec", "manifest_file",
           "validate_manifest", "read_manifest", "has_manifest", "is_finished_release", "release_dir", "default_config", "config_fields", "shard_specs"]
