"""Command line: ``python -m builders {build,verify,list,estimate,publish,preview,export-cube} ...``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from builders.format.registry import get_release, release_names


def _cmd_list(args) -> int:
    for name in release_names():
        spec = get_release(name)
        first = spec.summary.split(". ")[0].rstrip(".")
        print(f"{name:20s} v{spec.version:7s} {first[:110] + ('...' if len(first) > 110 else '')}")
    return 0


def _cmd_build(args) -> int:
    from builders.format.build import BuildError, build_release, make_executor, summary_line
    from builders.format.manifest import release_dir

    spec = get_release(args.release)
    executor = None
    try:
        params = spec.params_from_args(args)
        if args.executor != "local" or args.scheduler is not None or args.in_flight is not None:
            executor = make_executor(args.workers, kind=args.executor, scheduler=args.scheduler,
                                     in_flight=args.in_flight)
        manifest = build_release(spec, args.root, params, seed=args.seed, limit=args.limit, workers=args.workers,
                                 keep_work=args.keep_work, progress=not args.quiet, unit_size=args.unit_size,
                                 executor=executor, threads=args.threads_per_worker)
    except (BuildError, ValueError, FileNotFoundError, ModuleNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permissions, read-only file system...: work done so far is kept
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror or err}{where}; the work finished so far is kept: fix this and run the same "
              f"command again to resume", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted; the work finished so far is kept: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if executor is not None:
            executor.close()
    print(summary_line(manifest, release_dir(args.root, spec.name)))
    return 0


def _cmd_verify(args) -> int:
    from builders.format.verify import verify_release

    problems = verify_release(args.path)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if problems:
        print(f"{args.path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.path}: OK")
    return 0


def _cmd_estimate(args) -> int:
    from builders.format.estimate import estimate, format_estimate
    from builders.format.manifest import ManifestError, read_manifest, release_dir

    pilot = args.pilot or release_dir(args.root, args.release)
    try:
        manifest = read_manifest(pilot)
        if manifest.release != args.release:
            raise ValueError(f"{pilot} is a {manifest.release} release, not {args.release}")
        print(format_estimate(estimate(manifest, args.molecules, args.workers)))
    except (ValueError, FileNotFoundError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _cmd_publish(args) -> int:
    from builders.format.publish import PublishError, publish, publish_checks

    try:
        plan = publish_checks(args.path, args.repo_id, private=args.private)
        if args.dry_run:
            print(plan.describe())
            return 0
        print(f"uploaded to {publish(plan)}")
    except PublishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _built_release_spec(path: Path):
    """The registered ReleaseSpec of the release built at ``path`` (named by its manifest)."""
    from builders.format.reader import read_manifest

    return get_release(read_manifest(path).release)


def _cmd_preview(args) -> int:
    try:
        out = _built_release_spec(args.path).preview(args.path, args.key, args.out)
        if args.distributions:
            from builders.crystals.preview import plot_distributions

            plot_distributions(args.path, args.distributions)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _cmd_export_cube(args) -> int:
    from builders.format.reader import find_sample

    try:
        spec = _built_release_spec(args.path)
        sample = find_sample(args.path, args.key)
        spec.export(sample, args.out, shape=tuple(args.shape) if args.shape else None)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builders", description="Build, verify and list densegen releases.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="show the registered releases")
    p_list.set_defaults(func=_cmd_list)

    p_build = sub.add_parser("build", help="build (or resume) a release into ROOT/densegen/<release>/")
    bsub = p_build.add_subparsers(dest="release", required=True, metavar="release")
    argv = sys.argv[1:] if argv is None else list(argv)
    wanted = argv[1] if len(argv) > 1 and argv[0] == "build" else None
    for name in release_names():
        if name != wanted:  # only the release being built is imported (rdkit, pyscf, torch stay unloaded)
            bsub.add_parser(name, help=f"see `python -m builders build {name} --help`")
            continue
        spec = get_release(name)
        p = bsub.add_parser(name, help=spec.summary.split(". ")[0])
        p.add_argument("--limit", type=int, default=None, help="use only the first N inputs")
        p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="worker processes (default: all cores; with --executor dask and no --scheduler: the "
                            "LocalCluster's workers)")
        p.add_argument("--executor", choices=("local", "dask"), default="local",
                       help="local: this machine's process pool (default); dask: a distributed cluster")
        p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="with --executor dask: a running scheduler (e.g. tcp://10.0.0.5:8786); "
                            "default: start a LocalCluster")
        p.add_argument("--in-flight", type=int, default=None, metavar="N",
                       help="with --executor dask: work units queued on the cluster at once (default: twice "
                            "its worker threads; with adaptive scaling, about twice the most workers it may "
                            "grow to, so it sees the demand)")
        p.add_argument("--threads-per-worker", type=int, default=1,
                       help="BLAS/OpenMP threads each worker runs a molecule with (default 1; keep it the same "
                            "between builds that must give the same bytes)")
        p.add_argument("--seed", type=int, default=0, help="build seed (default 0)")
        p.add_argument("--root", type=Path, default=Path("."), help="folder that holds densegen/ (default: .)")
        p.add_argument("--keep-work", action="store_true", help="keep the .build/ work units after finishing")
        p.add_argument("--unit-size", type=int, default=None,
                       help=f"inputs per resumable work unit (default {spec.unit_size}; does not change the shards)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        spec.add_arguments(p)
        p.set_defaults(func=_cmd_build)

    p_verify = sub.add_parser("verify", help="re-hash shards, re-count samples, check split disjointness")
    p_verify.add_argument("path", type=Path, help="release folder, e.g. densegen/random-conformers")
    p_verify.set_defaults(func=_cmd_verify)

    p_est = sub.add_parser("estimate", help="project CPU hours, wall time and size of a build from a pilot build")
    p_est.add_argument("release", help="release name, e.g. pubchem-hf-density")
    p_est.add_argument("--molecules", type=int, required=True, help="inputs of the projected build")
    p_est.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts (default 1)")
    p_est.add_argument("--root", type=Path, default=Path("."), help="folder that holds the pilot's densegen/")
    p_est.add_argument("--pilot", type=Path, default=None, help="the pilot release folder (default: ROOT/densegen/RELEASE)")
    p_est.set_defaults(func=_cmd_estimate)

    p_pub = sub.add_parser("publish", help="upload a verified release folder to a Hugging Face dataset repo")
    p_pub.add_argument("path", type=Path, help="release folder, e.g. densegen/pubchem-hf-density")
    p_pub.add_argument("--repo-id", required=True, help="the dataset repo, ORG/NAME")
    p_pub.add_argument("--private", action="store_true", help="create the repo private")
    p_pub.add_argument("--dry-run", action="store_true", help="run every check and print what would be uploaded")
    p_pub.set_defaults(func=_cmd_publish)

    p_prev = sub.add_parser("preview", help="draw one sample (density slices, crystal unit cell) to a PNG")
    p_prev.add_argument("path", type=Path, help="release folder")
    p_prev.add_argument("key", help="sample key")
    p_prev.add_argument("out", type=Path, help="output PNG")
    p_prev.add_argument("--distributions", type=Path, default=None,
                        help="p1-crystals: also write the energy / packing-coefficient distributions to this PNG")
    p_prev.set_defaults(func=_cmd_preview)

    p_cube = sub.add_parser("export-cube", help="render a density sample to a Gaussian cube file")
    p_cube.add_argument("path", type=Path, help="density release folder")
    p_cube.add_argument("key", help="sample key")
    p_cube.add_argument("out", type=Path, help="output .cube")
    p_cube.add_argument("--shape", type=int, nargs=3, default=None, help="grid points per axis (default: the sample's frame)")
    p_cube.set_defaults(func=_cmd_export_cube)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
