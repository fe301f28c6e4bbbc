"""Command line: ``python -m builders {build,verify,list} ...``."""
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
    from builders.format.build import BuildError, build_release, summary_line
    from builders.format.manifest import release_dir

    spec = get_release(args.release)
    try:
        params = spec.params_from_args(args)
        manifest = build_release(spec, args.root, params, seed=args.seed, limit=args.limit, workers=args.workers,
                                 keep_work=args.keep_work, progress=not args.quiet, unit_size=args.unit_size)
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
        p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
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
