"""Versioned JSON schemas: the results file ``benchmarks.run`` writes (defined next to its
writer, ``benchmarks.results``) and a stored leaderboard entry (``densegen-leaderboard-entry-2``),
with a validator that turns the first schema error into a :class:`Rejected` with a clear message.

A change to either layout bumps its version string; the leaderboard accepts exactly the
versions named here.
"""
from __future__ import annotations

import jsonschema
from jsonschema.exceptions import best_match

from benchmarks.results import RESULTS_SCHEMA, SHA256_SCHEMA, SCHEMA_VERSION as RESULTS_SCHEMA_VERSION  # the writer owns them

from .errors import Rejected

ENTRY_SCHEMA_VERSION = "densegen-leaderboard-entry-2"  # 2: accepted (UTC, written by submit), predictions.stored

ACCEPTED_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"

ENTRY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://densegen.invalid/schema/" + ENTRY_SCHEMA_VERSION,
    "title": "densegen leaderboard entry",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "task", "code_url", "results_sha256", "predictions", "accepted", "results",
                 "content_sha256"],
    "properties": {
        "schema_version": {"const": ENTRY_SCHEMA_VERSION},
        "task": {"type": "string", "minLength": 1, "maxLength": 64},
        "code_url": {"anyOf": [{"type": "null"},
                               {"type": "string", "maxLength": 500, "pattern": "^https://[^\\s<>\"'`\\\\]+$"}]},
        "results_sha256": SHA256_SCHEMA,
        "predictions": {
            "type": "object", "additionalProperties": False, "required": ["sha256", "bytes", "stored"],
            "properties": {"sha256": SHA256_SCHEMA, "bytes": {"type": "integer", "minimum": 0},
                           "stored": {"type": "boolean"}},
        },
        "accepted": {"type": "string", "pattern": ACCEPTED_PATTERN},
        "results": RESULTS_SCHEMA,
        "content_sha256": SHA256_SCHEMA,
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
    """Validate a parsed results document against the results schema (``densegen-results-3``).

    Raises:
        Rejected: ``schema-version``, ``missing-field``, ``unknown-field``, ``wrong-type`` or
        ``schema`` (any other violation), naming the JSON path.
    """
    _check(doc, RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION, "results file")


def check_entry_schema(doc) -> None:
    """Validate a parsed leaderboard entry against ``densegen-leaderboard-entry-2`` (the embedded
    results are checked against the results schema as part of it).

    Raises:
        Rejected: as :func:`check_results_schema`.
    """
    _check(doc, ENTRY_SCHEMA, ENTRY_SCHEMA_VERSION, "entry")
