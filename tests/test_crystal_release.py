"""The p1-crystals release: build, verify, reproducibility, splits, undistorted molecules,
stationary optima, the authors' filter, energies in both conventions against a brute-force
lattice sum, noisy copies, read-back (reader, webdataset order, Hugging Face datasets) and
error messages."""

import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from builders.format.build import build_release
from builders.format.manifest import release_dir
from builders.format.spec import Built
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.optimize import MIN_CONTACT_RATIO, PARAM_SCALES
from builders.format.reader import iter_release
from builders.format.registry import get_release
from builders.format.splits import SPLITS, assign_split
from builders.format.verify import verify_release
from tests.conftest import build_small

SMILES = ["CCO", "CC(=O)O", "c1ccncc1", "NC(N)=O"]
PARAMS = {"n_starts": 2, "n_noisy": 10, "noise_sigma": 0.05, "max_steps": 250}


def _build(root, conformers, seed=0, unit_size=None, limit=None, **extra):
    spec = get_release("p1-crystals")
    params = {"conformers": str(conformers), **PARAMS, **extra}
    manifest = build_release(spec, root, params, seed=seed, progress=False, unit_size=unit_size, limit=limit)
    return manifest, release_dir(root, spec.name)


def _samples(out):
    return {s["__key__"]: (split, s) for split in SPLITS for s in iter_release(out, split)}


@pytest.fixture(scope="module")
def conformers(tmp_path_factory):
    root = tmp_path_factory.mktemp("conf")
    smi = root / "mols.smi"
    smi.write_text("\n".join(SMILES) + "\n")
    _, out = build_small(root, smi)
    return smi, out


@pytest.fixture(scope="module")
def built(tmp_path_factory, conformers):
    return _build(tmp_path_factory.mktemp("crys"), conformers[1])


def test_build_verifies_and_has_every_crystal(built, conformers):
    manifest, out = built
    assert verify_release(out) == []
    samples = _samples(out)
    n_conf = sum(v["samples"] for v in json.loads((conformers[1] / "manifest.json").read_text())["splits"].values())
    by_parent = defaultdict(list)
    for _, s in samples.values():
        by_parent[s["meta"]["parent_key"]].append(s)
    failed = manifest["failures"]["total"]
    assert len(by_parent) + failed == n_conf and len(by_parent) >= 3
    for group in by_parent.values():
        meta = group[0]["meta"]
        n_opt = meta["molecule_n_optima"]
        assert 1 <= n_opt <= PARAMS["n_starts"]
        assert sum(s["meta"]["is_optimum"] for s in group) == n_opt
        assert len(group) == n_opt + meta["molecule_n_copies"]
        assert meta["molecule_n_copies"] + meta["molecule_n_copies_rejected"] == n_opt * PARAMS["n_noisy"]
        assert meta["molecule_n_stationary"] - meta["molecule_n_above_lj_max"] - meta["molecule_n_rejected_extra"] == n_opt
    assert sum(v["samples"] for v in manifest["splits"].values()) == len(samples)
    assert manifest["release_version"] == "2.0.0" and manifest["parameters"]["scaled_lj_max"] == 3.0
    assert manifest["parameters"]["energy_threshold"] is None and manifest["parameters"]["min_contact_ratio"] is None
    text = (out / "README.md").read_text()
    assert "A = -1.2 e" in text and "10.0 A cutoff" in text and "E_cell / Z - E_gas" in text
    assert "(e^3.0 - 1) / 2 = 9.5428" in text and "### 2.0.0" in text and "undistorted" in text
    assert "| `energy_threshold` | optima | off | ours, optional |" in text


def test_same_seed_same_bytes_other_seed_differs(built, conformers, tmp_path):
    manifest, _ = built
    again, _ = _build(tmp_path / "a", conformers[1], unit_size=1)  # another schedule, same bytes
    assert [(s["path"], s["sha256"]) for s in again["shards"]] == [(s["path"], s["sha256"]) for s in manifest["shards"]]
    _, other = _build(tmp_path / "b", conformers[1], seed=1, limit=1)
    first = next(s for _, s in _samples(other).values())
    ref = _samples(built[1])
    assert first["__key__"] in ref  # the same optimum slot exists in the seed-0 build
    assert not np.array_equal(ref[first["__key__"]][1]["params"], first["params"])


def test_splits_follow_the_parent_molecule(built, conformers):
    _, out = built
    parents = {s["__key__"]: s["meta"]["inchikey"] for split in SPLITS for s in iter_release(conformers[1], split)}
    split_of_parent = {}
    for key, (split, s) in _samples(out).items():
        meta = s["meta"]
        assert key.startswith(meta["parent_key"] + "-c")
        assert meta["inchikey"] == parents[meta["parent_key"]]
        assert assign_split(meta["inchikey"]) == split
        assert split_of_parent.setdefault(meta["parent_key"], split) == split


def test_noisy_copies_have_the_requested_noise(built):
    samples = {k: s for k, (_, s) in _samples(built[1]).items()}
    scales = np.array(PARAM_SCALES)
    diffs, higher, n_copies = [], 0, 0
    for key, s in samples.items():
        meta = s["meta"]
        opt = samples[meta["optimum_key"]]
        if meta["is_optimum"]:
            assert meta["optimum_key"] == key and meta["noise_sigma"] == 0
            continue
        n_copies += 1
        assert meta["noise_sigma"] == PARAMS["noise_sigma"]
        assert np.array_equal(s["positions"], opt["positions"]) and np.array_equal(s["atomic_numbers"], opt["atomic_numbers"])
        assert meta["opt_steps"] == opt["meta"]["opt_steps"]
        p, q = s["params"], opt["params"]
        d = np.empty(9)
        d[:3] = np.log(p[:3] / q[:3]) / scales[:3]
        d[3:6] = (p[3:6] - q[3:6]) / scales[3:6]
        d[6:9] = ((p[6:9] - q[6:9] + 0.5) % 1.0 - 0.5) / scales[6:9]  # wrapped fractional coordinates
        clipped = np.isclose(p[3:6], np.radians(60.5)) | np.isclose(p[3:6], np.radians(119.5))
        diffs.append(np.where(np.r_[np.zeros(3, bool), clipped, np.zeros(3, bool)], np.nan, d))
        # the optimum is a local minimum of the stored LJ energy: copies lie above it
        higher += meta["lj_energy"] > opt["meta"]["lj_energy"]
        assert meta["opt_grad_norm"] == opt["meta"]["opt_grad_norm"]
    d = np.array(diffs)
    sigma = np.sqrt(np.nanmean(d**2))
    assert n_copies >= 30
    assert 0.04 < sigma < 0.06, sigma
    assert abs(np.nanmean(d)) < 0.015
    assert higher >= 0.8 * n_copies, (higher, n_copies)


def _posed(s):
    from scipy.spatial.transform import Rotation

    p = s["params"]
    return s["positions"] @ Rotation.from_rotvec(p[9:12]).as_matrix().T + p[6:9] @ s["cell"]


def _cell_from_lengths_angles(p):
    a, b, c = p[:3]
    al, be, ga = p[3:6]
    cy = (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    return np.array([[a, 0, 0], [b * math.cos(ga), b * math.sin(ga), 0],
                     [c * math.cos(be), c * cy, c * math.sqrt(1 - math.cos(be) ** 2 - cy**2)]])


def _radii(z):
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    return np.array([table.GetRvdw(int(a)) for a in z])


def _image_pairs(x, H, cutoff):
    """Every pair (i of the central molecule, j of image n != 0, both signs) closer than cutoff:
    (n (P, 3), i (P,), j (P,), r (P,)), from an explicit loop over lattice images."""
    reach = cutoff + 2 * np.linalg.norm(x - x.mean(0), axis=1).max()
    nmax = np.ceil(reach * np.linalg.norm(np.linalg.inv(H), axis=0)).astype(int)
    out = []
    for n in np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij"), -1).reshape(-1, 3):
        if not n.any():
            continue
        r = np.linalg.norm(x[:, None] - (x + n @ H)[None], axis=-1)
        i, j = np.nonzero(r < cutoff)
        out.append((np.repeat(n[None], len(i), 0), i, j, r[i, j]))
    return tuple(np.concatenate(v) for v in zip(*out))


def test_energies_in_both_conventions_equal_a_brute_force_lattice_sum_and_pass_the_authors_filter(built):
    """Numpy, independent of builders.crystals.energy: every image within reach, every pair.
    The authors' convention sums every asymmetric-unit-to-environment pair (all n != 0); ours
    counts each crystal pair once (half of it). Every stored crystal, copies included, passes
    their filter: log_rescale_positive(E_LJ,mxtaltools) < 3."""
    n_opt = n_copies = 0
    for _, s in _samples(built[1]).values():
        meta = s["meta"]
        H = s["cell"]
        np.testing.assert_allclose(H, _cell_from_lengths_angles(s["params"]), atol=1e-12)
        assert math.isclose(meta["packing_coefficient"], meta["molecular_volume_a3"] / abs(np.linalg.det(H)), rel_tol=1e-9)
        x = _posed(s)
        r_vdw = _radii(s["atomic_numbers"])
        cutoff = meta["energy_cutoff_a"]
        n, i, j, r = _image_pairs(x, H, cutoff)
        d = r / (r_vdw[i] + r_vdw[j])
        lj_all = (4 * (d**-12 - d**-6)).sum()
        bh_all = (-1.2 * math.e * np.exp(-d) + 0.2 * d**-6).sum()
        assert math.isclose(meta["lj_energy_mxtaltools"], lj_all, rel_tol=1e-9, abs_tol=1e-8)
        assert math.isclose(meta["buckingham_energy_mxtaltools"], bh_all, rel_tol=1e-9, abs_tol=1e-8)
        assert math.isclose(meta["lj_energy"], lj_all / 2, rel_tol=1e-9, abs_tol=1e-8)
        assert math.isclose(meta["buckingham_energy"], bh_all / 2, rel_tol=1e-9, abs_tol=1e-8)
        scaled = lj_all if lj_all <= 0 else math.log1p(lj_all)
        assert math.isclose(meta["scaled_lj_mxtaltools"], scaled, rel_tol=1e-9, abs_tol=1e-8)
        assert scaled < 3
        ratio = d[np.linalg.norm(n @ H + x[j] - x[i], axis=1) < 6.0].min()
        assert math.isclose(ratio, meta["min_contact_ratio"], rel_tol=1e-9)
        if meta["is_optimum"]:
            n_opt += 1
            assert ratio >= MIN_CONTACT_RATIO  # a property of the optima here, no longer a filter
            assert meta["opt_converged"] and meta["lj_energy"] < 0
        else:
            n_copies += 1
    assert n_opt >= 3 and n_copies >= 30


def _natural_gradient_np(s, h=1e-6):
    """Gradient of the stored LJ energy (ours: half the sum over all image pairs) w.r.t.
    (ln a, ln b, ln c, alpha, beta, gamma, omega): the pairs closer than the cutoff at the stored
    point, the analytic LJ pair force, and the derivatives of the pair vectors by central
    differences of the (smooth) map parameters -> geometry (scipy rotations, own cell matrix)."""
    from scipy.spatial.transform import Rotation

    p = s["params"]
    y = s["positions"]
    r_vdw = _radii(s["atomic_numbers"])

    def geometry(q):
        cell = _cell_from_lengths_angles(np.r_[np.exp(q[:3]), q[3:6]])
        rot = (Rotation.from_rotvec(q[6:9]) * Rotation.from_rotvec(p[9:12])).as_matrix()
        return y @ rot.T + p[6:9] @ cell, cell

    q0 = np.r_[np.log(p[:3]), p[3:6], 0, 0, 0]
    x, H = geometry(q0)
    n, i, j, r = _image_pairs(x, H, s["meta"]["energy_cutoff_a"])
    sig = r_vdw[i] + r_vdw[j]
    vec = lambda q: (lambda xc: xc[0][j] + n @ xc[1] - xc[0][i])(geometry(q))
    d0 = vec(q0)
    f = (-4 * (12 * sig**12 / r**14 - 6 * sig**6 / r**8))[:, None] * d0  # dE/dd of each pair
    g = np.empty(9)
    for k in range(9):
        e = np.zeros(9)
        e[k] = h
        g[k] = 0.5 * (f * (vec(q0 + e) - vec(q0 - e)) / (2 * h)).sum()
    return g


def test_stored_optima_are_stationary_at_the_stored_cutoff(built):
    from builders.crystals.refine import GRAD_TOL

    samples = [s for _, s in _samples(built[1]).values()]
    tol = built[0]["parameters"]["grad_tol"]
    assert tol == GRAD_TOL
    opt_norms, copy_norms = [], []
    for s in samples:
        gn = float(np.linalg.norm(_natural_gradient_np(s)))
        if s["meta"]["is_optimum"]:
            opt_norms.append(gn)
            assert gn <= tol, (s["__key__"], gn)
            assert abs(gn - s["meta"]["opt_grad_norm"]) <= 1e-6 + 1e-3 * gn
            assert s["meta"]["opt_refine_steps"] >= 1
        elif len(copy_norms) < 20:
            copy_norms.append(gn)
    assert len(opt_norms) >= 3
    assert np.median(copy_norms) > 1.0  # the same check on the noisy copies fails: it can tell


def test_every_bond_equals_the_undistorted_conformer(built, conformers):
    """The crystal's molecule is the conformer release's undistorted conformer (rigidly moved):
    every bond (covalent-radius rule) within 2% of it, in fact every distance equal to float32
    precision; the perturbed positions (noise and rescale) would fail the 2% test."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    ref = {s["__key__"]: s for split in SPLITS for s in iter_release(conformers[1], split)}
    worst_perturbed, n = 0.0, 0
    for _, s in _samples(built[1]).values():
        c = ref[s["meta"]["parent_key"]]
        assert np.array_equal(s["atomic_numbers"], c["atomic_numbers"])
        und = c["undistorted_positions"].astype(np.float64)
        rc = np.array([table.GetRcovalent(int(z)) for z in c["atomic_numbers"]])
        dist = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)
        d_und, d_crys, d_pert = dist(und), dist(s["positions"]), dist(c["positions"].astype(np.float64))
        bonds = np.triu(d_und < 1.2 * (rc[:, None] + rc[None]), 1)
        assert bonds.sum() >= len(rc) - 1
        assert np.abs(d_crys[bonds] / d_und[bonds] - 1).max() < 0.02
        np.testing.assert_allclose(d_crys, d_und, atol=1e-5)
        worst_perturbed = max(worst_perturbed, float(np.abs(d_pert[bonds] / d_und[bonds] - 1).max()))
        n += 1
    assert n >= 30 and worst_perturbed > 0.02


def test_an_old_conformer_release_is_refused(conformers, tmp_path):
    import shutil

    from builders.crystals.release import conformer_inputs

    old = tmp_path / "old"
    shutil.copytree(conformers[1], old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["release_version"] = "1.1.0"
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"random-conformers 1\.1\.0, which has no undistorted_positions.*rebuild"):
        conformer_inputs(old)


def test_read_back_equals_what_process_returns(built, conformers):
    manifest, out = built
    spec = get_release("p1-crystals")
    params = {k: manifest["parameters"][k] for k in spec.resolve_params({})}
    inputs, _ = spec.load_inputs(params)
    item = inputs[0]
    made = Built.of(spec.process(item, params, seed=0)).samples
    stored = _samples(out)
    assert sorted(f"{item.key}-{sfx}" for sfx, _ in made) == sorted(k for k in stored if k.startswith(item.key + "-"))
    for suffix, fields in made:
        _, s = stored[f"{item.key}-{suffix}"]
        assert s["meta"] == fields["meta"]
        for name in ("atomic_numbers", "positions", "params", "cell"):
            assert s[name].dtype == fields[name].dtype and np.array_equal(s[name], fields[name]), name
    sample = next(iter(stored.values()))[1]
    assert sample["positions"].shape == (len(sample["atomic_numbers"]), 3) and sample["params"].shape == (12,)
    assert sample["cell"].shape == (3, 3) and sample["positions"].dtype == np.float64
    # the standard frame: centroid at the origin, principal axes along x, y, z
    np.testing.assert_allclose(sample["positions"].mean(0), 0, atol=1e-12)
    r = sample["positions"]
    off = r.T @ r - np.diag(np.diag(r.T @ r))
    assert np.abs(off).max() < 1e-9


def test_load_dataset_reads_the_declared_features(built, tmp_path, monkeypatch):
    from datasets import load_dataset

    _, out = built
    monkeypatch.chdir(out.parent.parent)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = {s["__key__"]: s for s in iter_release(out, "train")}
    # cache_dir explicitly: datasets reads HF_DATASETS_CACHE once, at import (the build imported it)
    ds = load_dataset("densegen/p1-crystals", split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(ds) == len(ours)
    assert str(ds.features["positions.npy"].dtype) == "float64"
    assert ds.features["cell.npy"].shape == (3, 3)
    for row in ds:  # python lists: the numpy formatter would cast float64 to float32
        s = ours[str(row["__key__"])]
        assert np.array_equal(np.asarray(row["cell.npy"], dtype=np.float64), s["cell"])
        assert np.array_equal(np.asarray(row["params.npy"], dtype=np.float64), s["params"])
        assert np.array_equal(np.asarray(row["positions.npy"], dtype=np.float64), s["positions"])
        assert row["meta.json"]["lj_energy"] == s["meta"]["lj_energy"]
        assert bool(row["meta.json"]["is_optimum"]) == s["meta"]["is_optimum"]


def test_smiles_input_runs_the_same_conformer_pipeline(built, conformers, tmp_path):
    """--input SMILES_FILE: the conformer is made by the random-conformers pipeline with the
    same (seed, key), so the crystals equal those built from the release."""
    smi, _ = conformers
    spec = get_release("p1-crystals")
    manifest = build_release(spec, tmp_path, {"input": str(smi), **PARAMS}, seed=0, progress=False, limit=1)
    mine = _samples(release_dir(tmp_path, spec.name))
    ref = _samples(built[1])
    assert mine and manifest["failures"]["total"] == 0
    for key, (split, s) in mine.items():
        assert s["meta"]["parent_source"] == smi.name
        rsplit, r = ref[key]
        assert split == rsplit and np.array_equal(s["params"], r["params"]) and np.array_equal(s["positions"], r["positions"])
        assert s["meta"]["lj_energy"] == r["meta"]["lj_energy"]


def test_missing_conformer_release_says_how_to_build_it(tmp_path, capsys):
    from builders.__main__ import main

    with pytest.raises(FileNotFoundError, match="build random-conformers"):
        _build(tmp_path, tmp_path / "densegen" / "random-conformers")
    assert main(["build", "p1-crystals", "--root", str(tmp_path), "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "no random-conformers release" in err and "python -m builders build random-conformers" in err


def test_a_molecule_without_crystals_is_a_recorded_failure(conformers, tmp_path):
    manifest, out = _build(tmp_path, conformers[1], limit=1, energy_threshold=-1e9)
    assert manifest["failures"]["by_stage"] == {"optimize": 1}
    rec = json.loads((out / "failures.jsonl").read_text().splitlines()[0])
    assert "no crystal kept" in rec["reason"] and sum(v["samples"] for v in manifest["splits"].values()) == 0
    assert "authors' filter" in rec["reason"] and "above the optional E_LJ < -1000000000.0" in rec["reason"]


def test_gradient_clipping_reaches_deeper_optima(conformers):
    """The optimizer default (max_grad_norm): from the same clashing random starts,
    unclipped Adam stalls in loose cells; clipped, every start converges lower."""
    from builders.crystals.cell import cell_volume
    from builders.crystals.energy import min_contact_ratio
    from builders.crystals.optimize import (
        MAX_GRAD_NORM,
        optimize_crystals,
        random_start,
    )
    from builders.crystals.volume import vdw_volume

    mols_in = [(s["atomic_numbers"], s["undistorted_positions"].astype(np.float64))
               for split in SPLITS for s in iter_release(conformers[1], split)]
    mols = MoleculeBatch.from_molecules(mols_in)
    vol = torch.tensor([vdw_volume(z, x) for z, x in mols_in], dtype=torch.float64)
    idx = torch.arange(len(mols_in)).repeat_interleave(4)
    p0 = random_start(mols, idx, vol, torch.Generator().manual_seed(5))
    assert float(min_contact_ratio(p0, mols, idx).min()) < 0.7  # some starts clash hard
    plain = optimize_crystals(p0, mols, idx, max_steps=500, max_grad_norm=None)
    clipped = optimize_crystals(p0, mols, idx, max_steps=500, max_grad_norm=MAX_GRAD_NORM)
    pack = lambda r: (vol[idx] / cell_volume(r.params[:, :3], r.params[:, 3:6]))
    assert bool(clipped.converged.all())
    # the worst start (a stalled loose cell without clipping) ends far lower with it
    assert float(clipped.final_energy.max()) < float(plain.final_energy.max()) - 10.0
    assert float(clipped.final_energy.median()) <= float(plain.final_energy.median()) + 1.0
    assert float(pack(clipped).min()) > float(pack(plain).min())
