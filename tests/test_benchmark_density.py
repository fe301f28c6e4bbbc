"""The density-reconstruction task (benchmarks.task_density) on a tiny real release: three small
molecules whose InChIKey is in the test split, built with the real pipeline (3 conformers),
scored on the quick 32^3 grids. KID uses 10 subsets here instead of 100 (speed)."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from baselines.simple import Blur, Identity
from benchmarks import task_density as td
from builders.identity import inchikey_of_smiles
from builders.splits import assign_split

TINY = ("O", "C#C", "NC(N)=O")  # water, acetylene, urea: all in the test split (checked below)
SIGMAS = (0.5, 1.0, 2.0)
HIGHER_IS_BETTER = ("ssim_", "ms_ssim_", "psnr_")
# FID of identical sets is 0 up to the eigenvalue square roots of rank-deficient covariances
FID_TOL = 1e-4


@pytest.fixture(scope="module")
def fast_kid():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(td.KID, "subsets", 10)
        yield


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """<root>/densegen/pubchem-hf-density holding the three TINY molecules (all test split)."""
    from builders.build import build_release
    from builders.registry import get_release

    root = tmp_path_factory.mktemp("density-root")
    smi = root / "tiny.smi"
    smi.write_text("\n".join(TINY) + "\n")
    manifest = build_release(get_release("pubchem-hf-density"), root, {"input": str(smi), "n_conformers": 3},
                             progress=False)
    assert manifest["splits"]["test"]["samples"] == len(TINY), manifest["failures"]
    return root


@pytest.fixture(scope="module")
def identity_result(tiny_root, fast_kid):
    return td.DensityTask().run(Identity(), tiny_root, variant="pubchem", quick=True, progress=False)


@pytest.fixture(scope="module")
def runner_out(tiny_root, fast_kid, tmp_path_factory):
    """``python -m benchmarks.run --model blur`` (sigma 1 voxel) on the tiny release: results folder."""
    from benchmarks.run import main

    out = tmp_path_factory.mktemp("results")
    rc = main(["--model", "blur", "--model-arg", "sigma=1.0", "--task", "density-reconstruction", "--quick",
               "--root", str(tiny_root), "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def blur_results(tiny_root, fast_kid, runner_out):
    doc = json.loads((runner_out / "density-reconstruction-pubchem-blur.json").read_text())
    res = {1.0: doc["metrics"]["per_seed"][0]}
    for s in SIGMAS:
        if s != 1.0:
            res[s] = td.run(Blur(sigma=s), tiny_root, "pubchem", quick=True, progress=False)["per_seed"][0]
    return res


def test_tiny_molecules_are_test_split():
    assert [assign_split(inchikey_of_smiles(s)) for s in TINY] == ["test"] * len(TINY)


def test_identity_is_perfect(identity_result):
    m = identity_result["per_seed"][0]
    assert m["n_samples"] == len(TINY)
    for t in td.TRANSFORMS:
        assert m[f"ssim_{t}"] == pytest.approx(1.0, abs=1e-12)
        assert m[f"ms_ssim_{t}"] == pytest.approx(1.0, abs=1e-12)
        assert m[f"mae_{t}"] == 0.0
        assert m[f"psnr_{t}"] is None  # +inf: identical grids
        for x in td.EXTRACTOR_TAGS:
            assert abs(m[f"fid_{x}_{t}"]) < FID_TOL
    assert m["nmae"] == 0.0
    assert m["electron_count_error"] == 0.0
    assert m["dipole_error_debye"] == 0.0
    # vs the true count only the grid's own quadrature/box error is left
    assert m["electron_count_error_vs_true"] == pytest.approx(m["reference_electron_count_error"], abs=1e-12)
    assert m["reference_electron_count_error"] > 0
    assert identity_result["aggregate"]["nmae"] == {"mean": 0.0, "std": 0.0}
    proto = identity_result["protocol"]
    assert proto["grid"]["shapes_seen"] == [list(td.QUICK_SHAPE)]
    assert proto["ms_ssim"]["scales"] == {"32x32x32": 3}
    if proto["lpips"]["skipped"]:
        assert m["lpips_raw"] is None and m["lpips_log1p"] is None


def test_model_gets_float16_reference(tiny_root, fast_kid):
    seen = []

    class Spy(Identity):
        def reconstruct(self, batch):
            seen.extend(batch)
            return super().reconstruct(batch)

    td.run(Spy(), tiny_root, "pubchem", quick=True, progress=False)
    assert len(seen) == len(TINY)
    stored = td.read_test_samples(tiny_root, "pubchem-hf-density", quick=True)
    for s, own in zip(seen, stored):
        assert s["__key__"] == own["__key__"] and s["basis"] == "sto-3g"
        ref, origin, axes = td.render_reference(own, td.QUICK_SHAPE)
        assert s["grid"].dtype == np.float32 and s["grid"].shape == td.QUICK_SHAPE
        np.testing.assert_array_equal(s["grid"], ref.astype(np.float32))
        np.testing.assert_array_equal(s["grid_axes"], axes)
        np.testing.assert_array_equal(s["grid_origin"], own["grid_origin"])
        # quick resamples the sample's own box: same far corner, 32 points a side
        far_own = own["grid_origin"] + (np.asarray(own["grid_shape"]) - 1) @ own["grid_axes"]
        assert origin + (np.array(td.QUICK_SHAPE) - 1) @ axes == pytest.approx(far_own, abs=1e-9)


def test_blur_worse_with_sigma_on_every_metric(identity_result, blur_results):
    ident = identity_result["per_seed"][0]
    checked = 0
    for k in td.metric_names():
        if k.startswith(("kid_std_", "lpips_")) or k == "reference_electron_count_error":
            continue
        vals = [blur_results[s][k] for s in SIGMAS]
        if not k.startswith("psnr_"):
            vals = [ident[k]] + vals  # identity = sigma 0 (its PSNR is +inf)
        sign = -1.0 if k.startswith(HIGHER_IS_BETTER) else 1.0
        worse = [sign * v for v in vals]
        assert all(b > a for a, b in itertools.pairwise(worse)), (k, vals)
        checked += 1
    assert checked == 20  # 8 per transform (ssim, ms_ssim, psnr, mae, 2 fid, 2 kid) + 4 physical
    assert blur_results[2.0]["reference_electron_count_error"] == ident["reference_electron_count_error"]


def test_runner_results_rescore(tiny_root, fast_kid, runner_out):
    out = runner_out
    doc = json.loads((out / "density-reconstruction-pubchem-blur.json").read_text())
    assert doc["task"]["primary_metric"] == "nmae" and doc["protocol"]["quick"] is True
    assert doc["release"]["name"] == "pubchem-hf-density" and doc["release"]["test_samples"] == len(TINY)
    with np.load(out / doc["predictions"]["file"], allow_pickle=False) as z:
        preds = {k: z[k] for k in z.files}
    assert preds["grid_values"].dtype == np.float16
    assert preds["grid_shapes"].tolist() == [list(td.QUICK_SHAPE)] * len(TINY)
    rescored = td.score_predictions(preds, tiny_root, "pubchem", quick=True)
    assert rescored == doc["metrics"]["per_seed"]
    assert td.DensityTask().aggregate(rescored) == doc["metrics"]["aggregate"]
    assert doc["task"]["variant"] == "pubchem" and doc["task"]["units"]["dipole_error_debye"] == "Debye"
    assert doc["metrics"]["per_seed"][0]["nmae"] > 0

    # the scorer refuses predictions for other samples or in another order
    swapped = dict(preds, keys=preds["keys"][::-1])
    with pytest.raises(ValueError, match="another order"):
        td.score_predictions(swapped, tiny_root, "pubchem", quick=True)
    short = dict(preds, grid_values=preds["grid_values"][:-1])
    with pytest.raises(ValueError, match="grid values"):
        td.score_predictions(short, tiny_root, "pubchem", quick=True)


def test_auto_build_line_when_release_missing(tiny_root, fast_kid, tmp_path, monkeypatch, capsys):
    built = []

    def tiny_build(root, release, progress=True):  # stands in for the ~1 minute real build
        shutil.copytree(tiny_root / "densegen" / release, Path(root) / "densegen" / release)
        built.append(release)
        return {"release": release, "selection": "test copy"}

    monkeypatch.setattr(td, "auto_build", tiny_build)
    res = td.run(Identity(), tmp_path, "pubchem", quick=True, progress=False)
    line = capsys.readouterr().out
    assert "no pubchem-hf-density release" in line and "building a small one first" in line
    assert built == ["pubchem-hf-density"] and res["protocol"]["auto_build"]["selection"] == "test copy"
    # present now: no second build, no line
    assert td.ensure_release(tmp_path, "pubchem-hf-density", progress=False) is None
    assert built == ["pubchem-hf-density"] and capsys.readouterr().out == ""


def test_auto_build_picks_small_test_split_molecules():
    from rdkit import Chem

    chosen = td.auto_build_smiles(n=3, max_heavy_atoms=5)
    assert len(chosen) == 3 and len({k for k, _ in chosen}) == 3
    for key, smi in chosen:
        assert key.startswith("pubchem_")
        assert assign_split(inchikey_of_smiles(smi)) == "test"
        assert Chem.MolFromSmiles(smi).GetNumHeavyAtoms() <= 5


def test_task_fidelity_equals_metric_module(tiny_root, fast_kid):
    from scipy.ndimage import gaussian_filter

    from benchmarks.metrics.fidelity import fidelity_metrics

    samples = td.read_test_samples(tiny_root, "pubchem-hf-density", quick=True)
    refs = [td.render_reference(s, (16, 16, 16))[0] for s in samples]
    fakes = [gaussian_filter(r.astype(np.float64), 1.0, mode="constant").astype(np.float16) for r in refs]
    for extractor in td.EXTRACTOR_TAGS.values():
        mine = td.fidelity(refs, fakes, extractor, "log1p")
        ref = fidelity_metrics([r.astype(np.float64) for r in refs], [f.astype(np.float64) for f in fakes],
                               extractor, "log1p", kid_subsets=td.KID["subsets"], cuda=False)
        assert mine["fid"] == pytest.approx(ref["fid"], rel=1e-9, abs=1e-12)
        assert mine["kid_mean"] == pytest.approx(ref["kid_mean"], rel=1e-9, abs=1e-12)
        assert mine["fid"] > 0


@pytest.mark.parametrize("bad, match", [
    (lambda g: g[:-1], "shape"),
    (lambda g: g - 2.0, "log"),
    (lambda g: g * np.nan, "non-finite"),
])
def test_bad_reconstructions_rejected(tiny_root, bad, match):
    class Bad:
        def reconstruct(self, batch):
            return [bad(np.asarray(s["grid"], np.float64)) for s in batch]

    with pytest.raises(ValueError, match=match):
        td.run(Bad(), tiny_root, "pubchem", quick=True, progress=False)


def test_unknown_variant_rejected():
    with pytest.raises(ValueError, match="variants pubchem, qm9, not 'random-conformers'"):
        td.DensityTask().check_variant("random-conformers")
