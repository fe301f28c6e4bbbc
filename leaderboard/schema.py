"""Versioned JSON schemas: the results file ``benchmarks.run`` writes (``densegen-results-1``)
and a stored leaderboard entry (``densegen-leaderboard-entry-1``), with a validator that turns
the first schema error into a :class:`Rejected` with a clear message.

A change to either layout bumps its version string; the leaderboard accepts exactly the
versions named here.
"""
from __future__ import annotations

import jsonschema
from jsonschema.exceptions import best_match

from benchmarks.results import (
    SCHEMA_VERSION as RESULTS_SCHEMA_VERSION,  # the writer owns the version
)

from .errors import Rejected

ENTRY_SCHEMA_VERSION = "densegen-leaderboard-entry-1"

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_FILE_NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[A-Za-z0-9_][A-Za-z0-9._-]*\.npz$"}

RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://densegen.invalid/schema/" + RESULTS_SCHEMA_VERSION,
    "title": "densegen benchmark results file",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "task", "release", "model", "protocol", "metrics", "predictions",
                 "environment", "wall_time_s", "command", "created"],
    "properties": {
        "schema_version": {"const": RESULTS_SCHEMA_VERSION},
        "task": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "version", "split_sha256", "primary_metric", "lower_is_better"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 64},
                "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
                "split_sha256": {"anyOf": [_SHA256, {"type": "null"}]},
                "primary_metric": {"type": "string", "minLength": 1, "maxLength": 100},
                "lower_is_better": {"type": "boolean"},
            },
        },
        "release": {"anyOf": [{"type": "null"}, {"type": "object"}]},
        "model": {
            "type": "object", "additionalProperties": False, "required": ["name", "import", "parameters"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "import": {"type": "string", "minLength": 1, "maxLength": 300},
                "parameters": {"type": "integer", "minimum": 0},
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
            "properties": {"file": _FILE_NAME, "sha256": _SHA256, "bytes": {"type": "integer", "minimum": 0}},
        },
        "environment": {
            "type": "object", "required": ["hardware", "packages", "python"],
            "properties": {
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

ENTRY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://densegen.invalid/schema/" + ENTRY_SCHEMA_VERSION,
    "title": "densegen leaderboard entry",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "task", "code_url", "results_sha256", "predictions", "results",
                 "content_sha256"],
    "properties": {
        "schema_version": {"const": ENTRY_SCHEMA_VERSION},
        "task": {"type": "string", "minLength": 1, "maxLength": 64},
        "code_url": {"anyOf": [{"type": "null"},
                               {"type": "string", "maxLength": 500, "pattern": "^https://[^\\s<>\"'`\\\\]+$"}]},
        "results_sha256": _SHA256,
        "predictions": {
            "type": "object", "additionalProperties": False, "required": ["sha256", "bytes"],
            "properties": {"sha256": _SHA256, "bytes": {"type": "integer", "minimum": 0}},
        },
        "results": RESULTS_SCHEMA,
        "content_sha256": _SHA256,
    },
}

_CODES = {"required": "missing-field", "additionalProperties": "unknown-field", "type": "wrong-type"}


def _check(doc, schema: dict, version: str, what: str) -> None:
    if not isinstance(doc, dict):
        raise Rejected("wrong-type", f"{what} must be a JSON object, got {type(doc).__name__}")
    if doc.get("schema_version") != version:
        raise Rejected("schema-version", f"{what} has schema_version {doc.get('schema_version')!r}; "
                                         f"this leaderboard accepts {version!r}")
    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if error is None:
        return
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    code = _CODES.get(error.validator, "schema")
    raise Rejected(code, f"{what} does not match schema {version} at {where}: {error.message}")


def check_results_schema(doc) -> None:
    """Validate a parsed results document against ``densegen-results-1``.

    Raises:
        Rejected: ``schema-version``, ``missing-field``, ``unknown-field``, ``wrong-type`` or
        ``schema`` (any other violation), naming the JSON path.
    """
    _check(doc, RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION, "results file")


def check_entry_schema(doc) -> None:
    """Validate a parsed leaderboard entry against ``densegen-leaderboard-entry-1`` (the embedded
    results are checked against the results schema as part of it).

    Raises:
        Rejected: as :func:`check_results_schema`.
    """
    _check(doc, ENTRY_SCHEMA, ENTRY_SCHEMA_VERSION, "entry")
