"""The board on disk: ``<root>/entries/<task>/<entry>.json`` (+ ``<entry>.predictions.npz``, and
``<entry>.reproduced.json`` when the entry was reproduced), ``<root>/README.md`` and
``<root>/site/index.html``; how an entry is built, content-hashed and ranked.

An entry (``densegen-leaderboard-entry-2``) is the accepted results document plus the code
link, the predictions' sha256, size and whether a copy is stored on the board, the UTC time
``submit`` accepted it (``accepted``, written by submit, never taken from the submission), and
``content_sha256`` = sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the entry
without that field. Its file name is ``<sanitized model name>-<content_sha256[:12]>``.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path

from .checks import safe_stem
from .safeio import canonical_json, sha256_hex
from .schema import ENTRY_SCHEMA_VERSION

DEFAULT_ROOT = Path(__file__).resolve().parent
PREDICTIONS_SUFFIX = ".predictions.npz"
MARK_SUFFIX = ".reproduced.json"  # = leaderboard.reproduce.MARK_SUFFIX: a reproduction mark next to <entry>.json
LOCK_NAME = ".submit.lock"        # under the board root: held by submit around check-duplicates-then-write
ACCEPTED_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


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

    @property
    def lock(self) -> Path:
        return Path(self.root) / LOCK_NAME

    def task_dir(self, task_name: str) -> Path:
        return self.entries / task_name

    def entry_files(self) -> list[Path]:
        """Every entry ``*.json`` under ``entries/<task>/`` (not the ``*.reproduced.json`` marks), sorted."""
        if not self.entries.is_dir():
            return []
        return sorted(p for d in self.entries.iterdir() if d.is_dir() and not d.is_symlink()
                      for p in d.glob("*.json") if not p.name.endswith(MARK_SUFFIX))


def content_hash(entry: dict) -> str:
    """sha256 (hex) of the canonical JSON of ``entry`` without ``content_sha256``."""
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k != "content_sha256"}))


def entry_stem(entry: dict) -> str:
    """The file stem an entry must have: sanitized model name + '-' + first 12 hex of its hash."""
    return f"{safe_stem(entry['results']['model']['name'])}-{entry['content_sha256'][:12]}"


def mark_path(entry_path: Path) -> Path:
    """Where the reproduction mark of the entry at ``entry_path`` lives (``<stem>.reproduced.json``)."""
    entry_path = Path(entry_path)
    return entry_path.with_name(entry_path.stem + MARK_SUFFIX)


def predictions_path(entry_path: Path) -> Path:
    """Where the stored predictions of the entry at ``entry_path`` live."""
    entry_path = Path(entry_path)
    return entry_path.with_name(entry_path.stem + PREDICTIONS_SUFFIX)


def utc_now() -> str:
    """The current UTC time in the ``accepted`` format (microseconds, ``Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime(ACCEPTED_FORMAT)


def make_entry(doc: dict, predictions_sha256: str, predictions_bytes: int, code_url: str | None,
               accepted: str | None = None, stored: bool = True) -> dict:
    """Build a (hashed) entry from an accepted results document.

    Args:
        doc: the parsed, fully checked results document (stored unchanged).
        predictions_sha256: hex sha256 of the predictions file's bytes.
        predictions_bytes: its size in bytes.
        code_url: an https link to the model's code, or None.
        accepted: the UTC acceptance time (``YYYY-MM-DDTHH:MM:SS.ffffffZ``); default now.
        stored: whether a copy of the predictions is stored next to the entry (False for
            predictions too large to commit; those entries need a reproduction mark).
    """
    entry = {
        "schema_version": ENTRY_SCHEMA_VERSION,
        "task": doc["task"]["name"],
        "code_url": code_url,
        "results_sha256": sha256_hex(canonical_json(doc)),
        "predictions": {"sha256": predictions_sha256, "bytes": int(predictions_bytes), "stored": bool(stored)},
        "accepted": accepted or utc_now(),
        "results": doc,
    }
    entry["content_sha256"] = content_hash(entry)
    return entry


def rank_key(entry: dict, task) -> tuple[float, str, str]:
    """Sort key of an entry within its task (and variant) table, best first: the primary
    metric's mean in the better direction, then the time submit accepted it (earlier first),
    then the content hash. Nothing in it is chosen by the submitter except the (rescored)
    metric: the results' own ``created`` date is not used.

    Args:
        entry: an integrity-checked entry (``densegen-leaderboard-entry-2``).
        task: its :class:`benchmarks.task.Task` (``primary_metric``, ``lower_is_better``).
    Returns:
        (signed mean, accepted, content_sha256); use ``sorted(entries, key=lambda e: rank_key(e, task))``.
    """
    stat = entry["results"]["metrics"]["aggregate"].get(task.primary_metric)
    mean = stat.get("mean") if isinstance(stat, dict) else None
    if not isinstance(mean, (int, float)) or isinstance(mean, bool) or not math.isfinite(mean):
        signed = math.inf  # validate refuses such entries; ranked last if one is rendered anyway
    else:
        signed = float(mean) if task.lower_is_better else -float(mean)
    return (signed, str(entry["accepted"]), str(entry["content_sha256"]))
