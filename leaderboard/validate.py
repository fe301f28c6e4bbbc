"""``python -m leaderboard validate [PATH ...] [--board DIR] [--no-rescore]``: re-run every
submission check over stored entries (what CI runs on a pull request that adds an entry).

Per entry: the validate rows of :data:`leaderboard.pipeline.CHECKS` (size cap, strict JSON,
entry schema with the results schema inside, content hash, file name, task folder, results
hash, the document checks, duplicates, the predictions file next to it and every metric
recomputed from it, the reproduction mark when there is one). Entries whose predictions are
not stored are checked for integrity and their mark only. Across the board: no stray files,
no unknown task folders.
"""
from __future__ import annotations

import stat
from pathlib import Path

from benchmarks.tasks import TASKS

from .board import MARK_SUFFIX, PREDICTIONS_SUFFIX, Board
from .errors import Rejected
from .pipeline import Options, read_entry, validate_entry

__all__ = ["check_entry", "read_entry", "validate"]


def check_entry(path: Path, others: list, do_rescore: bool = True, data_root: Path | str = ".",
                board: Board | None = None) -> dict:
    """All checks on one stored entry; ``others`` are (path, entry) of the other entries of its
    task (bare entries are accepted too). Returns it.

    Raises:
        Rejected: the first failed check.
    """
    path = Path(path)
    pairs = [o if isinstance(o, tuple) else (Path(f"<{o['content_sha256'][:12]}>"), o) for o in others]
    entry, _ = validate_entry(path, board or Board(path.parent.parent.parent), pairs,
                              Options(rescore=do_rescore), data_root)
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
        stems = {p.stem for p in item.glob("*.json") if not p.name.endswith(MARK_SUFFIX)}
        for f in sorted(item.iterdir()):
            mode = f.lstat().st_mode
            if not stat.S_ISREG(mode):
                out.append((f, Rejected("stray-file", f"{f.name}: not a regular file (links are not allowed)")))
            elif f.name.endswith(PREDICTIONS_SUFFIX):
                if f.name[: -len(PREDICTIONS_SUFFIX)] not in stems:
                    out.append((f, Rejected("stray-file", f"{f.name}: predictions without an entry")))
            elif f.name.endswith(MARK_SUFFIX):
                if f.name[: -len(MARK_SUFFIX)] not in stems:
                    out.append((f, Rejected("stray-file", f"{f.name}: a reproduction mark without an entry")))
            elif f.suffix != ".json" and f.name != ".gitkeep":
                out.append((f, Rejected("stray-file", f"{f.name}: unexpected file in an entries folder")))
    return out


def validate(board: Board, paths: list[Path] | None = None, do_rescore: bool = True,
             data_root: Path | str = ".") -> list[tuple[Path, str]]:
    """Check entries of ``board`` (all of them, or only ``paths``, compared with the rest).

    Returns:
        (path, status) for each checked item: ``"OK"``, ``"OK (notes)"`` (e.g. ``"OK
        (predictions not stored; reproduced 2026-12-02)"``) or ``"[code] message"``; stray
        files and folders are reported when the whole board is checked.
    """
    all_files = board.entry_files()
    chosen = [Path(p) for p in paths] if paths else all_files
    report: list[tuple[Path, str]] = []
    if not paths:
        report.extend((p, str(err)) for p, err in _stray_files(board))
    accepted: dict[str, list[tuple[Path, dict]]] = {}
    chosen_resolved = {c.resolve() for c in chosen}
    # entries not being checked are the reference for duplicates of the checked ones
    for p in all_files:
        if p.resolve() in chosen_resolved:
            continue
        try:
            e = read_entry(p)
            accepted.setdefault(e["task"], []).append((p, e))
        except Rejected:
            pass
    options = Options(rescore=do_rescore)
    cache: dict = {}
    for p in chosen:
        try:
            e, status = validate_entry(p, board, accepted.get(p.parent.name, []), options, data_root, cache)
            accepted.setdefault(e["task"], []).append((p, e))
            report.append((p, status))
        except Rejected as err:
            report.append((p, str(err)))
    return report
