"""render_density and friends take every sample form users have: this reader's, webdataset's
(decoded or raw bytes), a datasets row, and a numpy-formatted datasets row."""
from __future__ import annotations

import numpy as np
import pytest

from builders.format.reader import as_fields, iter_release, load_release, shard_specs, webdataset_pipeline

pytest.importorskip("pyscf")

SHAPE = (24, 20, 16)


@pytest.fixture(scope="module")
def density_root(tmp_path_factory):
    """The folder holding densegen/pubchem-hf-density: methanol and formamide."""
    from builders.format.build import build_release
    from builders.format.registry import get_release

    root = tmp_path_factory.mktemp("forms")
    smi = root / "tiny.smi"
    smi.write_text("CO\nNC=O\n")
    build_release(get_release("pubchem-hf-density"), root, {"input": str(smi), "n_conformers": 2}, seed=0,
                  workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def density_forms(density_root):
    """{form: sample} for the same molecule (formamide) of a tiny density release."""
    import os

    import webdataset as wds
    from datasets import load_dataset

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = density_root
    out = root / "densegen" / "pubchem-hf-density"
    split = next(s for s in ("train", "valid", "test") if shard_specs(out, s))
    ours = next(s for s in iter_release(out, split) if s["meta"]["canonical_smiles"] == "NC=O")
    key = ours["__key__"]
    pick = lambda rows: next(r for r in rows if str(r["__key__"]) == key)  # noqa: E731
    urls = [str(s.path) for s in shard_specs(out, split)]
    ds = load_dataset(str(out), split=split, cache_dir=str(root / "hf"))
    return {
        "reader": ours,
        "webdataset": pick(webdataset_pipeline(out, split)),
        "webdataset-raw-bytes": pick(wds.WebDataset(urls, shardshuffle=False)),
        "load_dataset": pick(ds),
        "load_release-streaming": pick(load_release(out, split, streaming=True)),
        "numpy-float64": pick(ds.with_format("numpy", dtype=np.float64)),
        "numpy": pick(ds.with_format("numpy")),
    }


def test_as_fields_gives_the_reader_form_from_every_form(density_forms):
    ours = density_forms["reader"]
    for form, sample in density_forms.items():
        f = as_fields(sample)
        assert {k for k in f if not k.startswith("__")} == {k for k in ours if not k.startswith("__")}, form
        assert f["meta"]["basis"] == ours["meta"]["basis"] and int(f["meta"]["n_electrons"]) == ours["meta"]["n_electrons"]
        assert np.array_equal(np.asarray(f["atomic_numbers"]).astype(int), ours["atomic_numbers"]), form
        assert np.asarray(f["positions"]).shape == ours["positions"].shape, form
        if form != "numpy":  # exact values (datasets' default numpy format casts float64 to float32)
            assert np.array_equal(np.asarray(f["positions"], np.float64), ours["positions"]), form
            assert np.array_equal(np.asarray(f["grid_axes"], np.float64), ours["grid_axes"]), form
        assert np.array_equal(np.asarray(f["density_matrix"], np.float32), ours["density_matrix"]), form


def test_render_density_gives_the_same_grid_from_every_form(density_forms):
    from builders.density import render_density
    from builders.density.molecule import density_matrix_from_sample, mole_from_sample
    from builders.density.render import resolve_frame

    ref = render_density(density_forms["reader"], shape=SHAPE)
    assert ref.shape == SHAPE and ref.max() > 1.0
    nao = mole_from_sample(density_forms["reader"]).nao_nr()
    for form, sample in density_forms.items():
        rho = render_density(sample, shape=SHAPE)
        assert mole_from_sample(sample).nao_nr() == nao
        assert density_matrix_from_sample(sample).shape == (nao, nao)
        assert len(resolve_frame(sample, SHAPE)) == 3
        if form == "numpy":
            # with_format("numpy") casts positions, grid_origin and grid_axes (float64) to float32:
            # atoms and grid points move by up to ~6e-8 relative (~1e-6 Bohr), and the steep core
            # 1s functions turn that into a ~1e-6 relative change of the grid; the float64 format
            # (with_format("numpy", dtype=np.float64)) is exact, see above
            err = np.abs(rho - ref).max() / ref.max()
            assert 0 < err < 1e-5, err
        else:
            np.testing.assert_allclose(rho, ref, rtol=1e-12, atol=1e-12 * ref.max(), err_msg=form)


def test_render_density_transform_takes_every_form(density_forms):
    import torch

    from builders.format.torch_data import RenderDensity

    ref = RenderDensity(shape=SHAPE)(density_forms["reader"])["grid"]
    for form in ("webdataset", "webdataset-raw-bytes", "load_dataset", "numpy-float64"):
        out = RenderDensity(shape=SHAPE)(density_forms[form])
        assert torch.equal(out["grid"], ref), form
        assert out["__key__"] == density_forms["reader"]["__key__"]


def test_a_missing_field_is_named():
    from builders.density.molecule import mole_from_sample

    with pytest.raises(KeyError, match="sample 'k' has no 'positions'"):
        mole_from_sample({"__key__": "k", "atomic_numbers.npy": [6, 8], "meta.json": {"basis": "sto-3g"},
                          "positions.npy": None})


def test_readme_density_snippet_runs(density_root, tmp_path, monkeypatch):
    import datasets

    from .test_release_read import readme_code

    monkeypatch.chdir(density_root)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    code = readme_code("### pubchem-hf-density and qm9-hf-density", "### At scale")
    assert "render_density(row" in code
    code = code.replace("(128, 128, 128)", "(32, 32, 32)")  # the same code, a smaller grid
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["rho"].shape == (64, 64, 64) and scope["rho"].max() > 1.0
    assert next(iter(scope["loader"]))["grid"].shape == (2, 1, 64, 64, 64)  # 2 molecules
