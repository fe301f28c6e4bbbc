"""The p1-crystals release: build, verify, reproducibility, splits, noisy copies, contacts,
read-back (reader, webdataset order, Hugging Face datasets) and error messages."""

import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from builders.build import build_release, release_dir
from builders.crystals.energy import crystal_energies
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.optimize import MIN_CONTACT_RATIO, OPT_CUTOFF, PARAM_SCALES
from builders.reader import iter_release
from builders.registry import get_release
from builders.splits import SPLITS, assign_split
from builders.verify import verify_release
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
        n_opt = group[0]["meta"]["molecule_n_optima"]
        assert 1 <= n_opt <= PARAMS["n_starts"]
        assert sum(s["meta"]["is_optimum"] for s in group) == n_opt
        assert len(group) == n_opt * (1 + PARAMS["n_noisy"])
    assert sum(v["samples"] for v in manifest["splits"].values()) == len(samples)
    text = (out / "README.md").read_text()
    assert "A = -1.2 e" in text and "10.0 A cutoff" in text and "E_cell / Z - E_gas" in text


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
        # the optimum is a local LJ minimum at the optimization cutoff: copies lie above it
        e = crystal_energies(torch.tensor(np.stack([p, q])), MoleculeBatch.from_molecules([(s["atomic_numbers"], s["positions"])]),
                             torch.zeros(2, dtype=torch.long), cutoff=OPT_CUTOFF, kinds=("lj",))["lj"]
        higher += bool(e[0] > e[1])
        assert math.isclose(float(e[1]), opt["meta"]["opt_final_lj_energy"], rel_tol=1e-9, abs_tol=1e-9)
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


def test_optima_have_no_close_contacts_and_stored_energies_are_right(built):
    """Brute force in numpy, independent of builders.crystals.energy: every image within
    reach, every pair; LJ summed over all images / 2 (each pair once per molecule)."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    n_opt = 0
    for _, s in _samples(built[1]).values():
        meta = s["meta"]
        H = s["cell"]
        np.testing.assert_allclose(H, _cell_from_lengths_angles(s["params"]), atol=1e-12)
        assert math.isclose(meta["packing_coefficient"], meta["molecular_volume_a3"] / abs(np.linalg.det(H)), rel_tol=1e-9)
        if not meta["is_optimum"]:
            continue
        n_opt += 1
        x = _posed(s)
        r_vdw = np.array([table.GetRvdw(int(z)) for z in s["atomic_numbers"]])
        sig = r_vdw[:, None] + r_vdw[None]
        cutoff = meta["energy_cutoff_a"]
        reach = cutoff + 2 * np.linalg.norm(x - x.mean(0), axis=1).max()
        nmax = np.ceil(reach * np.linalg.norm(np.linalg.inv(H), axis=0)).astype(int)
        ratio, lj = np.inf, 0.0
        for n in np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij"), -1).reshape(-1, 3):
            if not n.any():
                continue
            r = np.linalg.norm(x[:, None] - (x + n @ H)[None], axis=-1)
            ratio = min(ratio, (r / sig).min())
            inside = r < cutoff
            q = (sig[inside] / r[inside]) ** 6
            lj += 0.5 * (4 * (q * q - q)).sum()
        assert ratio >= MIN_CONTACT_RATIO
        assert math.isclose(ratio, meta["min_contact_ratio"], rel_tol=1e-9)
        assert math.isclose(lj, meta["lj_energy"], rel_tol=1e-7, abs_tol=1e-7)
        assert meta["opt_converged"] and meta["opt_final_lj_energy"] < 0 and meta["lj_energy"] < 0
    assert n_opt >= 3


def test_read_back_equals_what_process_returns(built, conformers):
    manifest, out = built
    spec = get_release("p1-crystals")
    params = {k: manifest["parameters"][k] for k in spec.resolve_params({})}
    inputs, _ = spec.load_inputs(params)
    item = inputs[0]
    made = spec.process(item, params, seed=0)
    stored = _samples(out)
    assert sorted(f"{item.key}-{sfx}" for sfx, _ in made) == sorted(k for k in stored if k.startswith(item.key + "-"))
    for suffix, fields in made:
        fields.pop("_timings", None)
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

    mols_in = [(s["atomic_numbers"], s["positions"].astype(np.float64))
               for split in SPLITS for s in iter_release(conformers[1], split)]
    mols = MoleculeBatch.from_molecules(mols_in)
    vol = torch.tensor([vdw_volume(z, x) for z, x in mols_in], dtype=torch.float64)
    idx = torch.arange(len(mols_in)).repeat_interleave(4)
    p0 = random_start(mols, idx, vol, torch.Generator().manual_seed(5))
    assert float(min_contact_ratio(p0, mols, idx).min()) < 0.7  # some starts clash hard
    plain = optimize_crystals(p0, mols, idx, max_steps=300, max_grad_norm=None)
    clipped = optimize_crystals(p0, mols, idx, max_steps=300, max_grad_norm=MAX_GRAD_NORM)
    pack = lambda r: (vol[idx] / cell_volume(r.params[:, :3], r.params[:, 3:6]))
    assert bool(clipped.converged.all())
    # the worst start (a stalled loose cell without clipping) ends far lower with it
    assert float(clipped.final_energy.max()) < float(plain.final_energy.max()) - 10.0
    assert float(clipped.final_energy.median()) <= float(plain.final_energy.median()) + 1.0
    assert float(pack(clipped).min()) > float(pack(plain).min())
