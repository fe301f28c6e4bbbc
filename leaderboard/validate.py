"""``python -m leaderboard validate [PATH ...] [--board DIR] [--no-rescore]``: re-run every
submission check over stored entries (what CI runs on a pull request that adds an entry).

Per entry: size cap, strict JSON, entry schema (with the results schema inside), content hash,
file name = sanitized model name + short hash, folder = task, results hash, the results checks
(names, current task table, no quick run, seeds), the predictions file next to it (size cap,
sha256, npz without pickle) and every metric recomputed from it. Across the board: no
duplicates, no stray files, no unknown task folders.
"""
from __future__ import annotations

import stat
from pathlib import Path

from benchmarks.tasks import TASKS

from .board import PREDICTIONS_SUFFIX, Board, content_hash, entry_stem
from .checks import check_code_url, check_document, rescore, safe_stem
from .errors import Rejected
from .safeio import (ENTRY_MAX_BYTES, PREDICTIONS_MAX_BYTES, canonical_json, load_npz_safe, loads_strict,
                     read_capped, sha256_hex)
from .schema import check_entry_schema


def read_entry(path: Path) -> dict:
    """Read an entry file and check its integrity (no re-scoring): size cap, strict JSON,
    schema, content hash, results hash, file name and task folder.

    Raises:
        Rejected: ``tampered`` when the content hash, results hash or name does not match,
        else the code of the failed check.
    """
    path = Path(path)
    entry = loads_strict(read_capped(path, ENTRY_MAX_BYTES, "entry file"), f"entry {path.name}")
    check_entry_schema(entry)
    if content_hash(entry) != entry["content_sha256"]:
        raise Rejected("tampered", f"entry {path.name}: content hash {entry['content_sha256']} does not match "
                                   f"its content (sha256 {content_hash(entry)}): the entry was edited after submission")
    if sha256_hex(canonical_json(entry["results"])) != entry["results_sha256"]:
        raise Rejected("tampered", f"entry {path.name}: results_sha256 does not match the embedded results")
    if path.suffix != ".json" or path.stem != entry_stem(entry):
        raise Rejected("tampered", f"entry file {path.name!r} should be named {entry_stem(entry)}.json")
    if entry["task"] != entry["results"]["task"]["name"] or path.parent.name != entry["task"]:
        raise Rejected("tampered", f"entry {path.name} of task {entry['results']['task']['name']!r} is filed "
                                   f"under {path.parent.name!r} / says task {entry['task']!r}")
    if entry["predictions"]["sha256"] != entry["results"]["predictions"]["sha256"]:
        raise Rejected("tampered", f"entry {path.name}: predictions sha256 differs from the one in its results")
    return entry


def duplicate_reason(new: dict, old: dict) -> str | None:
    """Why entry-like ``new`` duplicates stored entry ``old`` (same task assumed), or None.

    ``new`` needs ``results_sha256``, ``predictions.sha256`` and ``results``; it may lack
    ``content_sha256``.
    """
    if new.get("content_sha256") and new.get("content_sha256") == old["content_sha256"]:
        return "the same entry (content hash) is already on the board"
    if new["results_sha256"] == old["results_sha256"]:
        return "the same results file is already on the board"
    if new["predictions"]["sha256"] == old["predictions"]["sha256"]:
        return "identical predictions (same sha256) are already on the board"
    a, b = new["results"]["model"]["name"], old["results"]["model"]["name"]
    if safe_stem(a).casefold() == safe_stem(b).casefold():
        return f"model {a!r} already has an entry for this task ({b!r}); pick another model name"
    return None


def check_predictions(entry: dict, data: bytes, what: str) -> dict:
    """Check predictions bytes against the sha256/size in ``entry['results']`` and load them
    safely. Returns the arrays.

    Raises:
        Rejected: ``predictions-hash``, ``pickle``, ``not-npz``, ``too-large`` or ``non-finite``.
    """
    rec = entry["results"]["predictions"]
    digest = sha256_hex(data)
    if digest != rec["sha256"] or len(data) != rec["bytes"]:
        raise Rejected("predictions-hash", f"{what} has sha256 {digest} ({len(data):,} bytes); the results record "
                                           f"{rec['sha256']} ({rec['bytes']:,} bytes): not the file the run wrote")
    return load_npz_safe(data, what)


def check_entry(path: Path, others: list[dict], do_rescore: bool = True, data_root: Path | str = ".") -> dict:
    """All checks on one stored entry; ``others`` are the other entries of its task. Returns it.

    Raises:
        Rejected: the first failed check.
    """
    path = Path(path)
    entry = read_entry(path)
    check_code_url(entry["code_url"])
    task = check_document(entry["results"])
    for other in others:
        reason = duplicate_reason(entry, other)
        if reason:
            raise Rejected("duplicate", f"entry {path.name}: {reason}")
    pred_path = path.with_name(path.stem + PREDICTIONS_SUFFIX)
    data = read_capped(pred_path, PREDICTIONS_MAX_BYTES, "predictions file")
    arrays = check_predictions(entry, data, f"predictions file {pred_path.name}")
    if do_rescore:
        rescore(task, entry["results"], arrays, data_root)
    return entry


def _stray_files(board: Board) -> list[tuple[Path, Rejected]]:
    out = []
    if not board.entries.is_dir():
        return out
    for item in sorted(board.entries.iterdir()):
        if item.name in (".gitkeep", "README.md") and item.is_file() and not item.is_symlink():
            continue
        if item.is_symlink() or not item.is_dir():
            out.append((item, Rejected("stray-file", f"{item.name}: only task folders belong in entries/")))
            continue
        if item.name not in TASKS:
            out.append((item, Rejected("unknown-task", f"folder {item.name!r} is not a task of the task table")))
        stems = {p.stem for p in item.glob("*.json")}
        for f in sorted(item.iterdir()):
            mode = f.lstat().st_mode
            if not stat.S_ISREG(mode):
                out.append((f, Rejected("stray-file", f"{f.name}: not a regular file (links are not allowed)")))
            elif f.name.endswith(PREDICTIONS_SUFFIX):
                if f.name[: -len(PREDICTIONS_SUFFIX)] not in stems:
                    out.append((f, Rejected("stray-file", f"{f.name}: predictions without an entry")))
            elif f.suffix != ".json" and f.name != ".gitkeep":
                out.append((f, Rejected("stray-file", f"{f.name}: unexpected file in an entries folder")))
    return out


def validate(board: Board, paths: list[Path] | None = None, do_rescore: bool = True,
             data_root: Path | str = ".") -> list[tuple[Path, str]]:
    """Check entries of ``board`` (all of them, or only ``paths``, compared with the rest).

    Returns:
        (path, "OK") or (path, "[code] message") for each checked item; stray files and folders
        are reported when the whole board is checked.
    """
    all_files = board.entry_files()
    chosen = [Path(p) for p in paths] if paths else all_files
    report: list[tuple[Path, str]] = []
    if not paths:
        report.extend((p, str(err)) for p, err in _stray_files(board))
    accepted: dict[str, list[dict]] = {}
    # entries not being checked are the reference for duplicates of the checked ones
    for p in all_files:
        if p.resolve() in {c.resolve() for c in chosen}:
            continue
        try:
            e = read_entry(p)
            accepted.setdefault(e["task"], []).append(e)
        except Rejected:
            pass
    for p in chosen:
        try:
            task_name = p.parent.name
            e = check_entry(p, accepted.get(task_name, []), do_rescore, data_root)
            accepted.setdefault(e["task"], []).append(e)
            report.append((p, "OK"))
        except Rejected as err:
            report.append((p, str(err)))
    return report
