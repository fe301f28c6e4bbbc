"""``python -m leaderboard {submit,validate,render}``: the leaderboard's command line.

  submit RESULTS.json [--predictions FILE] [--code-url URL] [--reproduce]
                                                              check a results file and add it
  validate [ENTRY.json ...] [--no-rescore]                    re-check stored entries (CI)
  render [--check]                                            write README.md and site/index.html
  reproduce ENTRY.json [--write-mark] [--allow-import]        re-run an entry's model and compare

Every command takes ``--board DIR`` (default: this package's folder, ``leaderboard/``); submit
and validate take ``--data-root DIR`` for tasks scored against a local release.
Exit status: 0 success, 1 rejected / invalid / out of date, 2 usage error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .board import DEFAULT_ROOT, MARK_SUFFIX, Board
from .errors import Rejected


def _validate_targets(board: Board, paths: list[Path]) -> tuple[Board, list[Path] | None]:
    """``validate PATH``: a board folder, its ``entries/``, a task folder or entry files (whose
    board is the folder above ``entries/``)."""
    if len(paths) == 1 and paths[0].is_dir():
        d = paths[0].resolve()
        if (d / "entries").is_dir():
            return Board(d), None
        if d.name == "entries":
            return Board(d.parent), None
        if d.parent.name == "entries":
            return Board(d.parent.parent), sorted(p for p in d.glob("*.json") if not p.name.endswith(MARK_SUFFIX))
    files = [p.resolve() for p in paths]
    if files and all(p.parent.parent.name == "entries" for p in files):
        board = Board(files[0].parent.parent.parent)
    return board, files or None


def _reproduce(args) -> int:
    """``reproduce ENTRY``: re-run, compare, print the verdict and timing, optionally store the mark."""
    import time

    from .board import PREDICTIONS_SUFFIX
    from .reproduce import reproduce, write_mark
    from .validate import read_entry

    start = time.perf_counter()
    try:
        entry = read_entry(args.entry)
        stored = args.entry.with_name(args.entry.stem + PREDICTIONS_SUFFIX)
        mark = reproduce(entry["results"], stored if stored.is_file() else None, args.data_root, args.work_dir,
                         allow_import=args.allow_import)
    except Rejected as err:
        print(f"NOT REPRODUCED {args.entry}: {err}", file=sys.stderr)
        return 1
    how = {"predictions": f"predictions within tolerance (max |diff| {mark['max_abs_diff']:.3g})",
           "sha256": "predictions byte-identical (sha256)",
           "metrics": f"metrics within tolerance (max rel diff {mark['metrics_max_rel_diff']:.3g})"}[mark["comparison"]]
    print(f"REPRODUCED {args.entry}: {how}; identical bytes: {mark['identical']}; re-run {mark['wall_time_s']:.1f} s "
          f"on {mark['hardware'].get('cpu', mark['hardware']['machine'])} ({mark['hardware']['cpus']} CPUs); "
          f"total {time.perf_counter() - start:.1f} s")
    if args.write_mark:
        print(f"wrote {write_mark(args.entry, mark)}")
    return 0


def main(argv=None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m leaderboard", description="densegen leaderboard: submit, "
                                 "validate and render entries (see leaderboard/SUBMITTING.md)")
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--board", type=Path, default=DEFAULT_ROOT,
                        help="leaderboard folder holding entries/, README.md, site/ (default: %(default)s)")
    scoring = argparse.ArgumentParser(add_help=False)
    scoring.add_argument("--data-root", type=Path, default=Path("."),
                         help="folder holding densegen/<release> and the data tasks build on first use, "
                              "for rescoring (default: the current folder)")
    s = sub.add_parser("submit", parents=[common, scoring], help="check a results file and add it to the board")
    s.add_argument("results", type=Path, help="the results JSON written by python -m benchmarks.run")
    s.add_argument("--predictions", type=Path, default=None,
                   help="its predictions .npz (default: the file named in the results, next to them)")
    s.add_argument("--code-url", default=None, help="https link to the model's code (shown on the board)")
    s.add_argument("--reproduce", action="store_true",
                   help="re-run the model and store a reproduction mark next to the entry; needed for results that "
                        "match the test labels and for predictions too large to store (then not stored)")
    s.add_argument("--allow-import", action="store_true",
                   help="with --reproduce, also re-run a model outside the project's registry (its code runs: "
                        "review it first)")
    v = sub.add_parser("validate", parents=[common, scoring], help="re-run all checks over stored entries")
    v.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="entry files, a task folder, entries/ or a board folder (default: the whole --board)")
    v.add_argument("--no-rescore", action="store_true", help="skip recomputing metrics (integrity checks only)")
    rp = sub.add_parser("reproduce", parents=[scoring], help="re-run the model an entry names and compare its "
                        "predictions with the stored ones")
    rp.add_argument("entry", type=Path, help="an entry file under entries/<task>/")
    rp.add_argument("--write-mark", action="store_true",
                    help="on success, store the reproduction mark next to the entry (<entry>.reproduced.json)")
    rp.add_argument("--allow-import", action="store_true",
                    help="also run models outside the project's registry (their code runs: review it first)")
    rp.add_argument("--work-dir", type=Path, default=None, help="folder for the re-run's files (default: a temp dir)")
    r = sub.add_parser("render", parents=[common], help="write README.md and site/index.html")
    r.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = ap.parse_args(argv)
    if args.command == "reproduce":
        return _reproduce(args)
    board = Board(args.board)

    if args.command == "submit":
        from .submit import submit

        try:
            path = submit(args.results, args.predictions, board, args.code_url, args.data_root,
                          reproduce=args.reproduce, allow_import=args.allow_import)
        except Rejected as err:
            print(f"REJECTED {args.results}: {err}", file=sys.stderr)
            return 1
        extra = [q.name for q in (path.with_name(path.stem + ".predictions.npz"), path.with_name(path.stem + MARK_SUFFIX))
                 if q.exists()]
        print(f"accepted: {path}\nnext: python -m leaderboard render, then open a pull request with "
              f"{path.parent.name}/{path.name}" + "".join(f" and {x}" for x in extra))
        return 0

    if args.command == "validate":
        from .validate import validate

        board, paths = _validate_targets(board, args.paths)
        report = validate(board, paths, do_rescore=not args.no_rescore, data_root=args.data_root)
        bad = 0
        for path, status in report:
            ok = status.startswith("OK")
            bad += not ok
            print(f"{'OK      ' if ok else 'INVALID '} {path}{status[2:] if ok else ': ' + status}",
                  file=sys.stdout if ok else sys.stderr)
        print(f"{len(report) - bad} valid, {bad} invalid")
        return 1 if bad else 0

    from .render import render

    try:
        paths = render(board, check=args.check)
    except Rejected as err:
        print(f"error: {err} (run python -m leaderboard validate)", file=sys.stderr)
        return 1
    if args.check:
        for p in paths:
            print(f"out of date: {p} (run python -m leaderboard render)", file=sys.stderr)
        return 1 if paths else 0
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
