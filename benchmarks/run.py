"""``python -m benchmarks.run --model NAME [--task T ...] [--variant V] [--seeds N] [--quick] [--out DIR] [--data-root DIR]``

Evaluates a model on benchmark tasks and writes one results JSON (+ predictions .npz) per
task to ``--out`` (default ``results/``), then prints a table with units. Tasks default to
every task the model can do (it has the methods the task needs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .protocol import load_model, num_parameters, resolve_model_target, weights_digest
from .results import commit_that_ran, git_commit, write_results
from .tasks import TASKS, all_tasks, get_task


def _parse_model_args(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg expects key=value, got {pair!r}")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[key] = value
    return out


def supported_tasks(model) -> list[str]:
    """Tasks whose needed methods the model has and whose input kind it takes."""
    kind = getattr(model, "input_kind", "any")
    return [name for name, task in all_tasks().items()
            if all(callable(getattr(model, m, None)) for m in task.needs)
            and (task.input_kind == "any" or kind == "any" or task.input_kind == kind)]


def run_task(task_name: str, model, model_name: str, args, commit_at_start: str | None = None) -> Path:
    """Run one task (for one data variant) and write its results file; returns the path.
    ``commit_at_start``: the checkout's commit when the code was imported (recorded, or
    ``+dirty`` if the checkout changed meanwhile)."""
    task = get_task(task_name)
    missing = [m for m in task.needs if not callable(getattr(model, m, None))]
    if missing:
        raise ValueError(f"model {model_name!r} has no {', '.join(missing)}(): task {task_name!r} needs it")
    if not task.variants:
        variant = task.check_variant(None)
    elif args.variant is None:
        variant = task.variant_for(model)
    else:
        variant = task.check_variant(args.variant)
    options = {"head": args.head} if args.head else {}
    if args.lpips_weights:
        options["vgg16_weights"] = str(args.lpips_weights)
    start = time.perf_counter()
    out = task.run(model, args.data_root, variant=variant, seeds=args.seeds, quick=args.quick,
                   progress=not args.no_progress, **options)
    wall = time.perf_counter() - start
    return write_results(args.out, task, variant, model_name, resolve_model_target(args.model), num_parameters(model),
                         out, wall, model_arguments=_parse_model_args(args.model_arg),
                         weights_sha256=weights_digest(model), densegen_commit=commit_that_ran(commit_at_start))


def print_table(paths: list[Path]) -> None:
    """A summary table of results files: the primary metric with its unit, then the per-target
    MAEs of qm9-like tasks."""
    import json

    print(f"{'task':34s} {'metric':22s} {'mean':>12s} {'std':>10s} {'unit':16s} seeds  wall")
    fmt = lambda v, w: f"{v:{w}.6g}" if isinstance(v, (int, float)) else f"{'n/a':>{w}s}"  # noqa: E731
    for path in paths:
        doc = json.loads(Path(path).read_text())
        task = doc["task"]
        units = task.get("units", {})
        agg = doc["metrics"]["aggregate"]
        primary = agg.get(task["primary_metric"]) or {"mean": None, "std": None}
        label = task["name"] + (f" [{task['variant']}]" if task.get("variant") else "")
        print(f"{label:34s} {task['primary_metric']:22s} {fmt(primary['mean'], 12)} {fmt(primary['std'], 10)} "
              f"{units.get(task['primary_metric'], ''):16.16s} {len(doc['metrics']['per_seed']):5d}  "
              f"{doc['wall_time_s']:.1f} s")
        if "mae" in agg and isinstance(agg["mae"], dict):
            for target, v in agg["mae"].items():
                print(f"{'':34s} {'mae ' + target:22s} {fmt(v['mean'], 12)} {fmt(v['std'], 10)} "
                      f"{units.get('mae/' + target, ''):16.16s}")
        print(f"{'':34s} -> {path}")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.run`` (also used to read back the ``command``
    a results file records)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[1])
    ap.add_argument("--model", required=True, help="registered name or package.module:Class")
    ap.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="keyword argument for the model's constructor (repeatable)")
    ap.add_argument("--task", action="append", default=None, choices=sorted(TASKS), help="task (repeatable)")
    ap.add_argument("--variant", default=None,
                    help="data variant of tasks that have several (density-reconstruction: qm9 or pubchem; "
                         "pointcloud-reconstruction: with-h or heavy-atoms; default: the task's first, "
                         "for pointcloud-reconstruction the one the model reads)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds of the trained heads (default: the task's; the leaderboard needs the task's minimum)")
    ap.add_argument("--quick", action="store_true", help="small, fast subset of each task (smoke runs)")
    ap.add_argument("--head", default=None, choices=("paper000", "paper002"),
                    help="regression head preset (default: the task's: qm9 paper000, crystal-energy paper002)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="results folder (default results/)")
    ap.add_argument("--data-root", "--root", dest="data_root", type=Path, default=Path("."),
                    help="folder holding densegen/ releases and the data tasks build on first use (default .)")
    ap.add_argument("--lpips-weights", type=Path, default=None,
                    help="local VGG16 weights file for LPIPS (density-reconstruction); without it LPIPS is null")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv=None) -> int:
    commit_at_start = git_commit()  # the code this process imports is the checkout's now
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be >= 1")
    try:
        model = load_model(args.model, **_parse_model_args(args.model_arg))
    except (KeyError, ImportError, AttributeError, TypeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tasks = args.task or supported_tasks(model)
    if not tasks:
        print(f"error: model {args.model!r} supports no task (it needs embed/reconstruct methods)", file=sys.stderr)
        return 2
    paths = []
    for name in tasks:
        try:
            paths.append(run_task(name, model, getattr(model, "name", args.model), args, commit_at_start))
        except (ValueError, FileNotFoundError, ModuleNotFoundError) as err:
            print(f"error in task {name}: {err}", file=sys.stderr)
            return 1
    print_table(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
