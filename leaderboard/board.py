"""The board on disk: ``<root>/entries/<task>/<entry>.json`` (+ ``<entry>.predictions.npz``),
``<root>/README.md`` and ``<root>/site/index.html``; how an entry is built and content-hashed.

An entry is the accepted results document plus the code link, the predictions' sha256 and
size, and ``content_sha256`` = sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of
the entry without that field. Its file name is ``<sanitized model name>-<content_sha256[:12]>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checks import safe_stem
from .safeio import canonical_json, sha256_hex
from .schema import ENTRY_SCHEMA_VERSION

DEFAULT_ROOT = Path(__file__).resolve().parent
PREDICTIONS_SUFFIX = ".predictions.npz"


@dataclass(frozen=True)
class Board:
    """Paths of a leaderboard rooted at ``root`` (the repository's ``leaderboard/`` by default)."""

    root: Path = DEFAULT_ROOT

    @property
    def entries(self) -> Path:
        return Path(self.root) / "entries"

    @property
    def readme(self) -> Path:
        return Path(self.root) / "README.md"

    @property
    def page(self) -> Path:
        return Path(self.root) / "site" / "index.html"

    def task_dir(self, task_name: str) -> Path:
        return self.entries / task_name

    def entry_files(self) -> list[Path]:
        """Every ``*.json`` under ``entries/<task>/``, sorted."""
        if not self.entries.is_dir():
            return []
        return sorted(p for d in self.entries.iterdir() if d.is_dir() for p in d.glob("*.json"))


def content_hash(entry: dict) -> str:
    """sha256 (hex) of the canonical JSON of ``entry`` without ``content_sha256``."""
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k != "content_sha256"}))


def entry_stem(entry: dict) -> str:
    """The file stem an entry must have: sanitized model name + '-' + first 12 hex of its hash."""
    return f"{safe_stem(entry['results']['model']['name'])}-{entry['content_sha256'][:12]}"


def make_entry(doc: dict, predictions_sha256: str, predictions_bytes: int, code_url: str | None) -> dict:
    """Build a (hashed) entry from an accepted results document.

    Args:
        doc: the parsed, fully checked results document (stored unchanged).
        predictions_sha256: hex sha256 of the predictions file's bytes.
        predictions_bytes: its size in bytes.
        code_url: an https link to the model's code, or None.
    """
    entry = {
        "schema_version": ENTRY_SCHEMA_VERSION,
        "task": doc["task"]["name"],
        "code_url": code_url,
        "results_sha256": sha256_hex(canonical_json(doc)),
        "predictions": {"sha256": predictions_sha256, "bytes": int(predictions_bytes)},
        "results": doc,
    }
    entry["content_sha256"] = content_hash(entry)
    return entry
