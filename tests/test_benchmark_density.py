"""The density-reconstruction task (benchmarks.task_density) on its pinned pubchem variant, quick
mode: the first 8 pinned test molecules, rebuilt by RHF/STO-3G from their committed geometries
under a scratch data root (verified against the pinned energies), scored on 32^3 grids.
KID uses 10 subsets here instead of 100 (speed)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from baselines.simple import Blur, Identity
from benchmarks import task_density as td

SIGMAS = (0.5, 1.0, 2.0)
VARIANT = "pubchem"


@pytest.fixture(scope="module")
def fast_kid():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(td.KID, "subsets", 10)
        yield


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data-root")
    info = td.prepare_data(root, VARIANT, quick=True, progress=False)
    assert info["molecules"] == td.QUICK_SIZE and info["sha256"] == td.test_records(VARIANT, False)[1]
    return root


@pytest.fixture(scope="module")
def identity_result(data_root, fast_kid):
    return td.DensityTask().run(Identity(), data_root, variant=VARIANT, quick=True, progress=False)


@pytest.fixture(scope="module")
def runner_out(data_root, fast_kid, tmp_path_factory):
    """``python -m benchmarks.run --model blur`` (sigma 1 voxel), quick: the results folder."""
    from benchmarks.run import main

    out = tmp_path_factory.mktemp("results")
    rc = main(["--model", "blur", "--model-arg", "sigma=1.0", "--task", "density-reconstruction", "--variant",
               VARIANT, "--quick", "--data-root", str(data_root), "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def blur_results(data_root, fast_kid, runner_out):
    doc = json.loads((runner_out / f"density-reconstruction-{VARIANT}-blur.json").read_text())
    res = {1.0: doc["metrics"]["per_seed"][0]}
    for s in SIGMAS:
        if s != 1.0:
            res[s] = td.run(Blur(sigma=s), data_root, VARIANT, quick=True, progress=False)["per_seed"][0]
    return res


def test_prepared_samples_are_the_pinned_ones(data_root):
    records, _ = td.test_records(VARIANT, quick=True)
    samples = list(td.iter_test_samples(data_root, VARIANT, quick=True))
    assert [s["__key__"] for s in samples] == [r["key"] for r in records]
    for s, r in zip(samples, records):
        assert int(s["n_electrons"]) == r["n_electrons"]
        assert abs(float(s["rhf_energy_hartree"]) - r["rhf_energy_hartree"]) <= 1e-6
    # a second preparation is a no-op that verifies again
    assert td.prepare_data(data_root, VARIANT, quick=True, progress=False)["molecules"] == len(records)


def test_identity_is_perfect_on_every_metric(identity_result):
    m = identity_result["per_seed"][0]
    assert m["n_samples"] == td.QUICK_SIZE
    for t in td.TRANSFORMS:
        assert m[f"ssim_{t}"] == pytest.approx(1.0, abs=1e-12)
        assert m[f"ms_ssim_{t}"] == pytest.approx(1.0, abs=1e-12)
        assert m[f"mae_{t}"] == 0.0
        assert m[f"psnr_{t}"] is None  # +inf: identical grids
        for x in td.EXTRACTOR_TAGS:
            assert m[f"fid_{x}_{t}"] == 0.0 and m[f"kid_{x}_{t}"] == 0.0
    assert m["nmae"] == 0.0 and m["electron_count_error"] == 0.0 and m["dipole_error"] == 0.0
    assert m["seed_fid"] == 0.0 and m["seed_kid"] == 0.0 and m["seed_ssim"] == 1.0 and m["seed_mae"] == 0.0
    assert m["seed_psnr"] is None  # +inf
    assert m["seed_ms_ssim"] is None  # undefined below 97 voxels a side (32^3 quick grids)
    # vs the true count only the grid's own quadrature/box error is left
    assert m["electron_count_error_vs_true"] == pytest.approx(m["reference_electron_count_error"], abs=1e-12)
    assert identity_result["aggregate"]["nmae"] == {"mean": 0.0, "std": 0.0}
    assert identity_result["protocol"]["grid"]["shape"] == list(td.QUICK_SHAPE)


def test_another_molecules_density_scores_badly_on_the_seed_fid_kid(data_root, fast_kid, identity_result):
    """Returning the next molecule's density: the pooled (unpaired) FID/KID barely notice, the
    paired seed FID/KID and NMAE do."""
    class Shifted(Identity):
        def __init__(self):
            self.grids = [np.asarray(td._model_input(s, *td.render_reference(s, td.QUICK_SHAPE))["grid"])
                          for s in td.iter_test_samples(data_root, VARIANT, quick=True)]

        def reconstruct(self, batch):
            keys = [s["__key__"] for s in td.iter_test_samples(data_root, VARIANT, quick=True)]
            return [self.grids[(keys.index(s["__key__"]) + 1) % len(keys)] for s in batch]

    shifted = td.run(Shifted(), data_root, VARIANT, quick=True, progress=False)["per_seed"][0]
    blurred = td.run(Blur(sigma=0.5), data_root, VARIANT, quick=True, progress=False)["per_seed"][0]
    assert shifted["seed_fid"] > 10 * blurred["seed_fid"] and shifted["seed_kid"] > 10 * blurred["seed_kid"]
    assert shifted["nmae"] > 50.0 > blurred["nmae"]
    # the same set of grids in another order: the unpaired metrics cannot tell
    assert shifted["fid_3dnet_log1p"] == pytest.approx(0.0, abs=1e-6)


def test_model_gets_the_float16_reference(data_root, fast_kid):
    seen = []

    class Spy(Identity):
        def reconstruct(self, batch):
            seen.extend(batch)
            return super().reconstruct(batch)

    td.run(Spy(), data_root, VARIANT, quick=True, progress=False)
    assert len(seen) == td.QUICK_SIZE
    for s, own in zip(seen, td.iter_test_samples(data_root, VARIANT, quick=True)):
        assert s["__key__"] == own["__key__"] and s["basis"] == "sto-3g"
        ref, origin, axes = td.render_reference(own, td.QUICK_SHAPE)
        assert s["grid"].dtype == np.float32 and s["grid"].shape == td.QUICK_SHAPE
        np.testing.assert_array_equal(s["grid"], ref.astype(np.float32))
        np.testing.assert_array_equal(s["grid_axes"], axes)
        # quick resamples the sample's own box: same far corner, 32 points a side
        far_own = own["grid_origin"] + (np.asarray(own["grid_shape"]) - 1) @ own["grid_axes"]
        assert origin + (np.array(td.QUICK_SHAPE) - 1) @ axes == pytest.approx(far_own, abs=1e-9)


def test_blur_worse_with_sigma(identity_result, blur_results):
    ident = identity_result["per_seed"][0]
    checked = 0
    for k in td.metric_names():
        m = td.DensityTask().metrics()[k]
        if m.lower_is_better is None or k.startswith("lpips_") or ident[k] is None and not k.startswith("psnr"):
            continue
        if k.startswith(("fid_", "kid_", "seed_ms_ssim", "seed_kid")) or k == "electron_count_error_vs_true":
            continue  # 8 molecules: set statistics are noisy; seed KID is an unbiased estimate (< 0 near 0);
            # seed MS-SSIM is undefined at 32^3; the error
            # vs the true count is dominated by the coarse 32^3 reference's own quadrature error
        vals = [blur_results[s][k] for s in SIGMAS]
        if ident[k] is not None:
            vals = [ident[k]] + vals  # identity = sigma 0 (its PSNRs are +inf)
        sign = 1.0 if m.lower_is_better else -1.0
        worse = [sign * v for v in vals]
        assert all(b > a for a, b in itertools.pairwise(worse)), (k, vals)
        checked += 1
    assert checked == 14  # nmae, electron count, dipole; 4 metrics x 2 transforms; seed fid/ssim/mae


def test_runner_results_rescore_through_the_task(data_root, fast_kid, runner_out):
    task = td.DensityTask()
    doc = json.loads((runner_out / f"density-reconstruction-{VARIANT}-blur.json").read_text())
    assert doc["task"]["primary_metric"] == "nmae" and doc["task"]["units"]["nmae"] == "%"
    assert doc["task"]["variant"] == VARIANT and doc["task"]["split_sha256"] == td.test_records(VARIANT, False)[1]
    assert doc["release"]["sha256"] == doc["task"]["split_sha256"]
    with np.load(runner_out / doc["predictions"]["file"], allow_pickle=False) as z:
        preds = {k: z[k] for k in z.files}
    assert preds["grid_values"].dtype == np.float16
    rescored = task.score(preds, data_root, variant=VARIANT, quick=True)
    assert rescored == doc["metrics"]["per_seed"]
    assert task.aggregate(rescored) == doc["metrics"]["aggregate"]
    swapped = dict(preds, keys=preds["keys"][::-1])
    with pytest.raises(ValueError, match="another order"):
        task.score(swapped, data_root, variant=VARIANT, quick=True)
    short = dict(preds, grid_values=preds["grid_values"][:-1])
    with pytest.raises(ValueError, match="grid values"):
        task.score(short, data_root, variant=VARIANT, quick=True)


@pytest.mark.parametrize("bad, match", [
    (lambda g: g[:-1], "shape"),
    (lambda g: g - 2.0, "log"),
    (lambda g: g * np.nan, "non-finite"),
])
def test_bad_reconstructions_rejected(data_root, bad, match):
    class Bad:
        def reconstruct(self, batch):
            return [bad(np.asarray(s["grid"], np.float64)) for s in batch]

    with pytest.raises(ValueError, match=match):
        td.run(Bad(), data_root, VARIANT, quick=True, progress=False)


def test_unknown_variant_rejected():
    with pytest.raises(ValueError, match="variants qm9, pubchem, not 'random-conformers'"):
        td.DensityTask().check_variant("random-conformers")


def test_plot_draws_slices(data_root, runner_out, tmp_path):
    from benchmarks.plot import main as plot_main

    results = runner_out / f"density-reconstruction-{VARIANT}-blur.json"
    assert plot_main([str(results), "--data-root", str(data_root), "--out", str(tmp_path)]) == 0
    png = tmp_path / f"{results.stem}-slices.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000


def test_nmae_is_scored_against_the_reference(data_root, fast_kid):
    """A reconstruction of twice the reference is 100 % off; with the arguments swapped inside
    the task it would read 50 %."""
    class Double(Identity):
        def reconstruct(self, batch):
            return [2.0 * np.asarray(s["grid"], np.float64) for s in batch]

    m = td.run(Double(), data_root, VARIANT, quick=True, progress=False)["per_seed"][0]
    assert m["nmae"] == pytest.approx(100.0, rel=1e-3)
