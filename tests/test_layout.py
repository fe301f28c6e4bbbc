"""The layout of the builders package (issue 14): no import circle, a light command line."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

HEAVY = ("rdkit", "pyscf", "torch")


def _builders_import_graph() -> dict:
    """module -> builders modules it imports anywhere in its file (module level or in a function)."""
    modules = {}
    for path in (REPO / "builders").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import (the package uses absolute imports)"
                if node.module in modules:
                    deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_planted_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_builders_even_through_imports_inside_functions():
    graph = _builders_import_graph()
    assert "builders.sources" in graph and "builders.format.reader" in graph
    assert _cycles(graph) == []


def _modules_loaded_by(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_command_line_imports_no_chemistry_or_torch_until_a_release_is_built(tmp_path):
    """Importing builders.__main__, building its parser (``build --help``) and ``verify`` of a
    missing folder load none of rdkit, pyscf, torch; building a release's own parser does."""
    missing = tmp_path / "nothing-here"
    loaded = _modules_loaded_by(
        "import contextlib, io\n"
        "import builders.__main__ as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['build', '--help'])\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        f"    cli.main(['verify', {str(missing)!r}])\n")
    assert not set(HEAVY) & set(loaded), loaded
    loaded = _modules_loaded_by(
        "import contextlib, io\n"
        "import builders.__main__ as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['build', 'random-conformers', '--help'])\n")
    assert "rdkit" in loaded


def test_the_simple_descriptors_and_the_metric_catalog_import_without_torch():
    loaded = _modules_loaded_by("import baselines.simple, benchmarks.metrics.catalog, benchmarks.metrics.pointcloud\n")
    assert "torch" not in loaded, "a light module pulled in torch"
    loaded = _modules_loaded_by("from benchmarks.metrics import nmae\n")
    assert "torch" in loaded  # the lazy names still resolve to the real functions


def test_preview_and_export_belong_to_the_release_spec():
    from builders.format.registry import get_release

    conformers = get_release("random-conformers")
    try:
        conformers.export({}, Path("x.cube"))
    except ValueError as err:
        assert "random-conformers" in str(err) and "no export" in str(err)
    else:
        raise AssertionError("random-conformers has no export, yet export() returned")
    assert type(get_release("pubchem-hf-density")).export is not type(conformers).export
    assert type(get_release("p1-crystals")).preview is not type(conformers).preview


def test_readers_get_a_manifest_with_named_accessors(tmp_path, small_smiles_file):
    """read_manifest and build_release return a Manifest: still the parsed dict (json round
    trip equal), with the accessors readers and tasks use instead of raw keys."""
    import json as _json

    from builders.format.build import build_release
    from builders.format.manifest import Manifest, is_finished_release, read_manifest, release_dir
    from builders.format.registry import get_release

    spec = get_release("random-conformers")
    built = build_release(spec, tmp_path, {"input": str(small_smiles_file)}, limit=12, workers=1, progress=False)
    out = release_dir(tmp_path, spec.name)
    manifest = read_manifest(out)
    assert isinstance(built, Manifest) and isinstance(manifest, Manifest) and is_finished_release(out)
    assert manifest == _json.loads((out / "manifest.json").read_text())
    assert manifest.release == "random-conformers" and manifest.major_version == 2
    assert sorted(manifest.split_names) == ["test", "train", "valid"]
    assert sum(manifest.samples(s) for s in manifest.split_names) + manifest.failures_total == 12
    assert manifest.parameters["input"] == str(small_smiles_file) and manifest.default_config == "default"
    assert Manifest({"release": "x", "splits": {}, "shards": []}).release_version == "0"
    # the sizes and counts the card and the summary line print come from the shard list
    assert manifest.total_samples == sum(sh["count"] for sh in manifest.shard_records)
    assert manifest.total_bytes == sum((out / p).stat().st_size
                                       for s in manifest.split_names for p in manifest.shard_paths(s))
    for s in manifest.split_names:
        assert manifest.split_bytes(s) == manifest["splits"][s]["bytes"]
        assert manifest.split_shards(s) == manifest["splits"][s]["shards"] == len(manifest.shard_paths(s))


def test_the_manifest_layout_is_assembled_in_one_place():
    """Manifest.assemble writes what read_manifest accepts, with per-config and per-split sums
    computed from the shard list (a wrong sum or a missing key would fail validation or here)."""
    from builders.format.manifest import Manifest, validate_manifest

    shards = [{"path": f"{folder}/{split}/x-{split}-{i:06d}.tar", "config": cfg, "split": split,
               "sha256": "0" * 64, "bytes": 100 * (i + 1), "count": 3}
              for cfg, folder in (("compact", "data"), ("grid", "grid"))
              for split in ("train", "test") for i in range(2 if split == "train" else 1)]
    m = Manifest.assemble(
        release="r", release_version="1.0.0", license="cc-by-4.0", format_version=2, builder={"version": "9"},
        parameters={"seed": 0}, build_identity={}, split_function={"function": "f"}, inputs={"count": 10},
        configs=[{"name": "compact", "folder": "data", "default": True, "excluded_fields": {"density"},
                  "fields": ["b.npy", "a.npy"]},
                 {"name": "grid", "folder": "grid", "default": False, "excluded_fields": set(), "fields": ["a.npy"]}],
        split_samples={"train": 6, "test": 3}, shards=shards,
        failures=[{"stage": "rhf"}, {"stage": "rhf"}, {"stage": "filter"}], build_seconds=1.23456,
        stage_cpu_seconds={"rhf": 2.0})
    validate_manifest(m)
    assert m["splits"] == {"train": {"samples": 6, "shards": 2, "bytes": 300}, "test": {"samples": 3, "shards": 1, "bytes": 100}}
    assert m["configs"]["compact"]["fields"] == ["a.npy", "b.npy"]
    assert m["configs"]["compact"]["excluded_fields"] == ["density"]
    assert m["configs"]["grid"]["splits"]["train"] == {"shards": 2, "bytes": 300}
    assert m.failures_total == 3 and m.failures_by_stage == {"filter": 1, "rhf": 2}
    assert m.build_seconds == 1.235 and m.default_config == "compact" and m.split_function == "f"
    assert m.shard_paths("test", "grid") == ["grid/test/x-test-000000.tar"] and m.total_bytes == 800


#: concept -> (regular expression over the package sources, the one file allowed to hold it)
DEFINED_ONCE = {
    "RDKit ETKDG parameters": (r"ETKDGv\d\(", "builders/etkdg.py"),
    "grid point coordinates": (r"def grid_points\(", "builders/density/frame.py"),
    "bounding-box grid frame": (r"def (box_frame|default_frame)\(", "builders/density/frame.py"),
    "cubegen's 3 Bohr margin": (r"SEED_MARGIN_BOHR\s*=", "builders/density/frame.py"),
    "the density build time limit": (r"DEFAULT_TIME_LIMIT_S\s*=", "builders/density/params.py"),
    "where a release lives": (r"def release_dir\(", "builders/format/manifest.py"),
    "the manifest's layout": (r"\"build_seconds_this_run\":", "builders/format/manifest.py"),
    "a molecule's InChIKey": (r"MolToInchiKey\(", "builders/format/identity.py"),
    "reading an .npy header": (r"read_magic\(", "builders/format/encoding.py"),
    "is there a manifest": (r"MANIFEST\)\.(is_file|exists)\(\)|def has_manifest\(", "builders/format/manifest.py"),
    "matplotlib without a display": (r"matplotlib\.use\(", "builders/format/plotting.py"),
    "a training run's RNG states": (r"get_rng_state\(", "baselines/checkpoints.py"),
}


def test_each_shared_definition_lives_in_one_file():
    import re

    sources = {p.relative_to(REPO).as_posix(): p.read_text()
               for pkg in ("builders", "benchmarks", "baselines", "leaderboard", "speed")
               for p in (REPO / pkg).rglob("*.py")}
    for concept, (pattern, home) in DEFINED_ONCE.items():
        where = sorted(f for f, text in sources.items() if re.search(pattern, text))
        if "manifest" in concept:  # the weights folder of baselines has its own manifest
            where = [f for f in where if not f.startswith("baselines/")]
        assert where == [home], f"{concept}: defined in {where}, expected only {home}"
