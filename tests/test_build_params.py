"""Build parameters declared once (builders.format.params): one frozen dataclass per release
gives the CLI options, their defaults and help, and the manifest's record."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from builders.format.params import add_arguments, fixed, from_args, option, resolve


@dataclasses.dataclass(frozen=True)
class Toy:
    steps: int = option(4, "steps per thing", flag="--steps")
    sigma: float = option(0.5, "noise, Angstrom")
    cap: float | None = option(None, "optional cap", type=float)
    fast: bool = option(False, "go fast")
    basis: str = fixed("sto-3g")


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Toy)
    return parser, parser.parse_args(argv)


def test_cli_options_defaults_help_and_record_come_from_the_dataclass():
    parser, args = _parse([])
    text = parser.format_help()
    assert "--steps STEPS" in text and "steps per thing (default 4)" in text and "--basis" not in text
    assert from_args(Toy, args) == {"steps": 4, "sigma": 0.5, "cap": None, "fast": False}
    assert resolve(Toy, from_args(Toy, args)) == {"steps": 4, "sigma": 0.5, "cap": None, "fast": False,
                                                  "basis": "sto-3g"}
    _, args = _parse(["--steps", "7", "--cap", "2.5", "--fast"])
    assert resolve(Toy, from_args(Toy, args)) == {"steps": 7, "sigma": 0.5, "cap": 2.5, "fast": True,
                                                  "basis": "sto-3g"}


def test_resolve_fills_defaults_converts_types_and_refuses_unknown_names():
    assert resolve(Toy, {"steps": 3.0, "cap": 1, "sigma": None}) == {
        "steps": 3, "sigma": 0.5, "cap": 1.0, "fast": False, "basis": "sto-3g"}
    assert list(resolve(Toy, {})) == ["steps", "sigma", "cap", "fast", "basis"]  # the record keeps field order
    with pytest.raises(ValueError, match="unknown build parameter.*stpes"):
        resolve(Toy, {"stpes": 3})
    assert resolve(Toy, {"basis": "6-31g"})["basis"] == "sto-3g"  # a fixed parameter cannot be changed


@pytest.mark.parametrize("release", ["pubchem-hf-density", "qm9-hf-density", "p1-crystals", "random-conformers"])
def test_a_release_built_without_options_records_the_dataclass_defaults(release, tmp_path):
    from builders.format.registry import get_release

    spec = get_release(release)
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=tmp_path)
    spec.add_arguments(parser)
    args = parser.parse_args([])
    record = spec.resolve_params(spec.params_from_args(args))
    assert record == spec.resolve_params(record)  # resolving a recorded manifest changes nothing
    params_type = {"pubchem-hf-density": "PubChemDensityParams", "qm9-hf-density": "DensityParams",
                   "p1-crystals": "CrystalParams", "random-conformers": "RandomConformersParams"}[release]
    module = {"p1-crystals": "builders.crystals.params", "random-conformers": "builders.conformers.release"}.get(
        release, "builders.density.params")
    declared = getattr(__import__(module, fromlist=[params_type]), params_type)
    for field in dataclasses.fields(declared):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        assert record[field.name] == default, field.name


def test_a_sample_that_does_not_match_its_field_table_stops_the_build_naming_it(tmp_path):
    from builders.format.build import SampleSchemaError, build_release
    from tests.crash_release import MisdeclaredConformers

    smiles = tmp_path / "in.smi"
    smiles.write_text("C\nCO\nCC\nCCO\n")
    spec = MisdeclaredConformers()
    with pytest.raises(SampleSchemaError, match=r"positions' has dtype float64, declared float32"):
        build_release(spec, tmp_path, {"input": str(smiles)}, workers=1, progress=False, unit_size=1)
    assert (tmp_path / "densegen" / "random-conformers").exists()  # finished work units are kept for a resume


def test_sample_problems_names_missing_undeclared_and_misshapen_fields():
    import numpy as np

    from builders.format.fields import Field, sample_problems

    table = [Field("positions", "float32", (None, 3), "Angstrom"), Field("grid_axes", "float64", (3, 3), "Bohr"),
             Field("n", "int64", (), meta=True), Field("tag", "string", (), meta=True),
             Field("ratio", "float64", (), meta=True, nullable=True), Field("extra", "float64", (), meta=True,
                                                                           optional=True)]
    good = {"positions": np.zeros((4, 3), np.float32), "grid_axes": np.eye(3), "meta": {"n": 3, "tag": "x",
                                                                                          "ratio": None}}
    assert sample_problems(table, good) == []
    bad = {"positions": np.zeros((4, 2), np.float32), "grid_axes": np.eye(3), "stray": np.zeros(2),
           "meta": {"n": 2.5, "ratio": 1.0}}
    assert sample_problems(table, bad) == [
        "array 'stray' is not in the release's field table",
        "array 'positions' has shape (4, 2), declared (n, 3)",
        "meta 'n' is 2.5, declared int64",
        "meta 'tag' is missing",
    ]


def test_sample_problems_checks_encoded_members_and_meta_lists():
    """The compressed grid is checked by its .npy header (dtype, shape), not only its presence;
    meta lists by number kind and fixed lengths."""
    import numpy as np
    import zstandard

    from builders.format.encoding import Encoded, npy_bytes
    from builders.format.fields import Field, sample_problems

    table = [Field("density", "float32", (4, 4, 4), "e/Bohr^3", member="density.npy.zst"),
             Field("counts", "int64", (None,), meta=True), Field("dipole", "float64", (3,), meta=True)]

    def packed(array):
        return Encoded("npy.zst", zstandard.ZstdCompressor().compress(npy_bytes(array)))

    good = {"density": packed(np.zeros((4, 4, 4), np.float32)), "meta": {"counts": [1, 2], "dipole": [0, 1.5, 2]}}
    assert sample_problems(table, good) == []
    bad = {"density": packed(np.zeros((4, 4, 5), np.float64)), "meta": {"counts": [1.5], "dipole": [1.0, 2.0]}}
    assert sample_problems(table, bad) == [
        "array 'density' has dtype float64, declared float32",
        "meta 'counts' is float64 of shape (1,), declared int64 (n,)",
        "meta 'dipole' is float64 of shape (2,), declared float64 (3,)",
    ]
    assert sample_problems(table, {**good, "density": Encoded("npy.zst", b"not zstd")})[0].startswith(
        "array 'density' is not a zstd-compressed .npy array")
    assert sample_problems(table, {**good, "density": Encoded("npy", npy_bytes(np.zeros(3)))}) == [
        "array 'density' is Encoded 'npy', declared an encoded npy.zst member"]
    assert sample_problems(table, {**good, "meta": {"counts": [[1], [2, 3]], "dipole": [0, 0, 0]}}) == [
        "meta 'counts' is a ragged list, declared int64 (n,)"]


@pytest.mark.parametrize("release", ["random-conformers", "p1-crystals", "pubchem-hf-density", "qm9-hf-density"])
def test_a_misspelt_build_parameter_is_refused_by_every_release(release):
    from builders.format.registry import get_release

    spec = get_release(release)
    with pytest.raises(ValueError, match=r"unknown build parameter\(s\) n_strats"):
        spec.resolve_params({"n_strats": 3})
    # and the full record a build writes resolves again to itself (a resumed build re-reads it)
    record = spec.resolve_params({})
    assert spec.resolve_params(record) == record
