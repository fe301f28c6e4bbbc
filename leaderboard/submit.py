"""``python -m leaderboard submit RESULTS.json [--predictions FILE] [--code-url URL] [--reproduce] [--board DIR]``:
check a results file from ``benchmarks.run`` and, if every check passes, add it to the board
as ``<board>/entries/<task>/<entry>.json`` (+ a copy of the predictions, + the reproduction
mark with ``--reproduce``), never overwriting.

The checks and their order are :data:`leaderboard.pipeline.CHECKS` (read -> parse -> schema ->
semantic checks -> predictions -> rescore -> reproduction -> entry); this module is the thin
caller. A refusal raises :class:`~leaderboard.errors.Rejected` and writes nothing.
"""
from __future__ import annotations

from pathlib import Path

from .board import Board
from .pipeline import Options, submit as _submit


def submit(results_path: Path, predictions_path: Path | None = None, board: Board = Board(),
           code_url: str | None = None, data_root: Path | str = ".", reproduce: bool = False,
           allow_import: bool = False) -> Path:
    """Check a results file and add it to the board.

    Args:
        results_path: the ``<task>-<model>.json`` that ``benchmarks.run`` wrote.
        predictions_path: its predictions ``.npz``; default: the file named in the results,
            next to them.
        board: the leaderboard to add to.
        code_url: an https link to the model's code (shown on the board), or None.
        data_root: where the task's data is (built on first use), for rescoring.
        reproduce: also re-run the model (``leaderboard.reproduce``) and store the mark; needed
            for results that match the labels and for predictions larger than
            ``PREDICTIONS_MAX_BYTES`` (then not stored).
        allow_import: with ``reproduce``, also re-run a model outside the project's registry
            (its code runs: review the package first).

    Returns:
        The path of the new entry JSON.

    Raises:
        Rejected: the first failed check (nothing is written).
    """
    return _submit(results_path, predictions_path, board, code_url, data_root,
                   options=Options(reproduce=reproduce, allow_import=allow_import))
