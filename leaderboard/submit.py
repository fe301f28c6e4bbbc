"""``python -m leaderboard submit RESULTS.json [--predictions FILE] [--code-url URL] [--board DIR]``:
check a results file from ``benchmarks.run`` and, if every check passes, add it to the board
as ``<board>/entries/<task>/<entry>.json`` (+ a copy of the predictions), never overwriting.

Order: size caps (before reading) -> strict JSON -> schema -> names, task table, quick flag,
seeds -> duplicates on the board -> predictions size cap, sha256, npz without pickle ->
every metric recomputed from the predictions -> write. A refusal raises :class:`Rejected`
and writes nothing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .board import PREDICTIONS_SUFFIX, Board, entry_stem, make_entry
from .checks import check_code_url, check_document, rescore
from .errors import Rejected
from .safeio import PREDICTIONS_MAX_BYTES, RESULTS_MAX_BYTES, canonical_json, loads_strict, read_capped, sha256_hex
from .schema import check_entry_schema, check_results_schema
from .validate import check_predictions, duplicate_reason, read_entry


def _board_entries(board: Board, task_name: str) -> list[dict]:
    out = []
    for p in board.entry_files():
        if p.parent.name != task_name:
            continue
        try:
            out.append(read_entry(p))
        except Rejected as err:
            raise Rejected("board-invalid", f"the board holds an invalid entry {p}: {err.message}; "
                                            "run `python -m leaderboard validate` first") from None
    return out


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # never overwrite
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def submit(results_path: Path, predictions_path: Path | None = None, board: Board = Board(),
           code_url: str | None = None, data_root: Path | str = ".") -> Path:
    """Check a results file and add it to the board.

    Args:
        results_path: the ``<task>-<model>.json`` that ``benchmarks.run`` wrote.
        predictions_path: its predictions ``.npz``; default: the file named in the results,
            next to them.
        data_root: where the task's data is (built on first use), for rescoring.
        board: the leaderboard to add to.
        code_url: an https link to the model's code (shown on the board), or None.

    Returns:
        The path of the new entry JSON.

    Raises:
        Rejected: the first failed check (nothing is written).
    """
    results_path = Path(results_path)
    doc = loads_strict(read_capped(results_path, RESULTS_MAX_BYTES, "results file"), "results file")
    check_results_schema(doc)
    check_code_url(code_url)
    task = check_document(doc)
    if predictions_path is None:
        predictions_path = results_path.parent / doc["predictions"]["file"]
    candidate = {"results_sha256": sha256_hex(canonical_json(doc)), "predictions": doc["predictions"], "results": doc}
    for other in _board_entries(board, task.name):
        reason = duplicate_reason(candidate, other)
        if reason:
            raise Rejected("duplicate", reason)
    data = read_capped(Path(predictions_path), PREDICTIONS_MAX_BYTES, "predictions file")
    arrays = check_predictions(candidate, data, "predictions file")
    rescore(task, doc, arrays, data_root)
    entry = make_entry(doc, sha256_hex(data), len(data), code_url)
    check_entry_schema(entry)
    folder = board.task_dir(task.name)
    stem = entry_stem(entry)
    entry_path, pred_copy = folder / f"{stem}.json", folder / f"{stem}{PREDICTIONS_SUFFIX}"
    if entry_path.exists() or pred_copy.exists():
        raise Rejected("duplicate", f"{entry_path} already exists; entries are never overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(entry, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
    _write_new(pred_copy, data)
    try:
        _write_new(entry_path, text + b"\n")
    except BaseException:
        pred_copy.unlink(missing_ok=True)
        raise
    return entry_path
