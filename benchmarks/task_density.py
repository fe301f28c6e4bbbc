"""The density-reconstruction task: reconstruct electron-density grids of the test split of
pubchem-hf-density (or qm9-hf-density) and score them against the benchmark's own references.

Data. The test split (the project's identity-hash split, ``builders.splits``) of the release
of the data variant (:data:`VARIANTS`: ``pubchem`` -> pubchem-hf-density, ``qm9`` ->
qm9-hf-density) under ``<data root>/densegen/<release>``, in release (shard) order; the
variant and the data root are arguments. ``--quick`` takes the first :data:`QUICK_SIZE` test samples. When the release
is missing, a small one is built first (one line says so; see :func:`auto_build`): for
pubchem-hf-density the first 6 embedded PubChem SMILES whose InChIKey is in the test split and
that have <= 5 heavy atoms, with 3 ETKDG conformers instead of the paper's 50 (speed: ~40 s on
2 busy cores); for qm9-hf-density the shortest QM9 prefix holding 6 test molecules. What was
built is recorded in the results (``protocol.auto_build``, ``release.parameters``); such a run
is a smoke test on a toy test set, not a leaderboard number.

Grids. Each sample is rendered with ``builders.density.render_density`` (electrons/Bohr^3) on
its own frame: full task = the sample's ``grid_shape`` (the seed's 128^3 over the bounding box
+ 3 Bohr); quick = :data:`QUICK_SHAPE` (32^3) over the same box (axes rescaled, see
``render.resolve_frame``). The reference is rounded to float16 (the precision of the release's
``grid`` config), and the model gets exactly that grid (as float32) in ``sample["grid"]``
with ``grid_origin`` / ``grid_axes`` / ``grid_shape`` describing it (Bohr); every other field
of the release sample is there too (``meta`` scalars both in ``sample["meta"]`` and at top
level). ``model.reconstruct(batch)`` returns one (X, Y, Z) grid per sample, in e/Bohr^3. The
reconstructions are stored as float16 and the metrics are computed on what is stored, so a
re-score of the predictions file gives the same numbers and ``identity`` scores exactly.
Reconstructions must be finite, |value| <= 65504 and > -1 (log1p), else ValueError.

Metrics (per sample, then the mean over samples; ``benchmarks.metrics``), for both transforms
``raw`` (rho) and ``log1p`` (log(rho + 1), the seed's), suffix ``_raw`` / ``_log1p``:

* ``ssim``: 3D SSIM, Gaussian window 11 voxels, sigma 1.5, valid region, K1 0.01, K2 0.03,
  data range = max - min of the transformed reference (per sample).
* ``ms_ssim``: 3D MS-SSIM, window 7, sigma 1.5, Wang et al. weights truncated to the scales the
  grid allows and renormalized (128^3: 5 scales; 32^3: 3), same data range.
* ``psnr``: 10 log10(L^2 / MSE) dB, L = max of the transformed reference (per sample);
  identical grids give +inf, written as ``null`` (JSON has no infinity).
* ``mae``: mean |T(rho_hat) - T(rho)| over voxels.
* ``fid_<x>``, ``kid_<x>`` (and ``kid_std_<x>``) with both torch-fidelity extractors,
  ``x = slice_rows`` (``densegen-slice-rows``: seed-compatible slice-row features, 384 rows per
  grid) and ``x = 3dnet`` (``densegen-3dnet-v1``: the fixed, checksummed random 3D net, one
  64-vector per grid); KID: 100 subsets of min(1000, n features) features, polynomial kernel
  degree 3, coef0 1, gamma 1/dim, rng seed 2020 (``benchmarks.metrics.fidelity``). Between the
  set of references and the set of reconstructions; needs >= 2 samples; features on the CPU.
* ``lpips``: unweighted VGG16 LPIPS on 3 central slices (``benchmarks.metrics.lpips``) when
  a local VGG16 weights file is given (``--lpips-weights``); otherwise ``null`` and the skip
  message in the protocol.

Physical metrics, raw density only: ``nmae`` = sum|rho_hat - rho| / sum rho (a fraction; the
primary metric, lower is better); ``electron_count_error`` = |N(rho_hat) - N(rho)| electrons on
the same grid; ``electron_count_error_vs_true`` = |N(rho_hat) - n_electrons| against the
molecule's true electron count (includes the grid's own quadrature and box error, which is
also reported as ``reference_electron_count_error`` for scale); ``dipole_error_debye`` =
|mu(rho_hat) - mu(rho)| with mu from the grid density and the nuclear charges (Debye).

Predictions file (npz, no pickle): ``keys`` (B,) str sample keys in task order;
``grid_shapes`` (B, 3) int64; ``grid_values`` (sum of prod(shape),) float16: the
reconstructions, flattened in C order and concatenated (full task: 4 MiB per 128^3 sample).
:func:`score_predictions` re-renders the references of the variant the results record under
the data root it is given and recomputes every metric from them.
The metrics are deterministic: 1 seed (``--seeds`` is ignored). KID is the unbiased estimator:
it can be slightly negative, and for identical sets it is ~0 only relative to its std.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from builders.build import release_dir

from .task import Metric, Task, finite_or_none

VARIANTS = {"pubchem": "pubchem-hf-density", "qm9": "qm9-hf-density"}  # data variant -> release
QUICK_SIZE = 8
QUICK_SHAPE = (32, 32, 32)
BATCH_SIZE = 4
TRANSFORMS = ("raw", "log1p")
EXTRACTOR_TAGS = {"slice_rows": "densegen-slice-rows", "3dnet": "densegen-3dnet-v1"}
SSIM = {"win_size": 11, "sigma": 1.5}
MS_SSIM = {"win_size": 7, "sigma": 1.5}
KID = {"subsets": 100, "degree": 3, "coef0": 1.0, "rng_seed": 2020}
LPIPS_CHUNK = 16
FLOAT16_MAX = 65504.0
PRIMARY = "nmae"

# The release the runner builds when none is present (see auto_build).
AUTO_BUILD = {"n_molecules": 6, "max_heavy_atoms": 5, "n_conformers": 3, "seed": 0}


def metric_names() -> tuple[str, ...]:
    """Every metric key of a per-seed result (and of the aggregate), in a fixed order."""
    names = []
    for t in TRANSFORMS:
        names += [f"ssim_{t}", f"ms_ssim_{t}", f"psnr_{t}", f"mae_{t}"]
        for x in EXTRACTOR_TAGS:
            names += [f"fid_{x}_{t}", f"kid_{x}_{t}", f"kid_std_{x}_{t}"]
        names.append(f"lpips_{t}")
    names += ["nmae", "electron_count_error", "electron_count_error_vs_true", "reference_electron_count_error",
              "dipole_error_debye"]
    return tuple(names)


# --------------------------------------------------------------------------- data
def auto_build_smiles(n: int = AUTO_BUILD["n_molecules"], max_heavy_atoms: int = AUTO_BUILD["max_heavy_atoms"]):
    """The first ``n`` embedded PubChem molecules (file order) whose InChIKey is in the test split
    and that have at most ``max_heavy_atoms`` heavy atoms; list of (input key, SMILES)."""
    from rdkit import Chem

    from builders.identity import inchikey_of_smiles
    from builders.sources import pubchem_inputs
    from builders.splits import assign_split

    out = []
    for item in pubchem_inputs()[0]:
        mol = Chem.MolFromSmiles(item.text)
        if mol is None or mol.GetNumHeavyAtoms() > max_heavy_atoms:
            continue
        if assign_split(inchikey_of_smiles(item.text)) == "test":
            out.append((item.key, item.text))
            if len(out) == n:
                break
    return out


def _qm9_limit(n: int) -> int:
    """Smallest --limit (QM9 inputs in gdb order) that holds ``n`` test-split molecules."""
    from builders.identity import inchikey_of_smiles
    from builders.sources import qm9_inputs
    from builders.splits import assign_split

    found = 0
    for i, item in enumerate(qm9_inputs()):
        if assign_split(inchikey_of_smiles(item.text)) == "test":
            found += 1
            if found == n:
                return i + 1
    raise ValueError("QM9 has fewer test molecules than asked for")


def auto_build(root: Path, release: str, progress: bool = True) -> dict:
    """Build the small release the runner uses when ``<root>/densegen/<release>`` is missing.

    pubchem-hf-density: the molecules of :func:`auto_build_smiles` (written to
    ``<root>/densegen/.auto-inputs/<release>.smi`` and built with ``--input`` that file and
    ``n_conformers`` = ``AUTO_BUILD["n_conformers"]`` instead of 50: all of them land in the test
    split). qm9-hf-density: ``--limit`` = the smallest prefix of QM9 holding that many test
    molecules (RHF on the QM9 geometries, no conformer search).

    Returns:
        a description of what was built (recorded in the results' protocol).
    """
    from builders.build import build_release
    from builders.registry import get_release

    spec = get_release(release)
    n = AUTO_BUILD["n_molecules"]
    if release == "pubchem-hf-density":
        chosen = auto_build_smiles(n, AUTO_BUILD["max_heavy_atoms"])
        inputs = (Path(root) / "densegen" / ".auto-inputs" / f"{release}.smi").resolve()
        inputs.parent.mkdir(parents=True, exist_ok=True)
        inputs.write_text("".join(f"{smi} {key}\n" for key, smi in chosen))
        params, limit = {"input": str(inputs), "n_conformers": AUTO_BUILD["n_conformers"]}, None
        what = {"inputs": [key for key, _ in chosen], "smiles": [smi for _, smi in chosen],
                "selection": (f"first {n} embedded PubChem SMILES in the test split with <= "
                              f"{AUTO_BUILD['max_heavy_atoms']} heavy atoms"),
                "n_conformers": AUTO_BUILD["n_conformers"]}
    else:
        limit = _qm9_limit(n)
        params = {}
        what = {"selection": f"the first {limit} QM9 molecules (gdb order), {n} of them in the test split"}
    build_release(spec, root, params, seed=AUTO_BUILD["seed"], limit=limit, progress=progress)
    return {"release": release, "limit": limit, "params": params, **what}


def ensure_release(root: Path, release: str, progress: bool = True) -> dict | None:
    """Build the small release first when ``<root>/densegen/<release>`` has no manifest (printing
    one line saying so); returns :func:`auto_build`'s description, or None when present."""
    path = release_dir(root, release)
    if (path / "manifest.json").is_file():
        return None
    n = AUTO_BUILD["n_molecules"]
    what = (f"{n} embedded PubChem molecules of the test split with <= {AUTO_BUILD['max_heavy_atoms']} heavy atoms, "
            f"{AUTO_BUILD['n_conformers']} conformers each" if release == "pubchem-hf-density"
            else f"the first QM9 molecules up to {n} of the test split, RHF on the QM9 geometries")
    print(f"density-reconstruction: no {release} release at {path}; building a small one first ({what}; "
          f"about a minute)", flush=True)
    return auto_build(root, release, progress)


def read_test_samples(root: Path, release: str, quick: bool) -> list[dict]:
    """Test-split samples of the release in release order (quick: the first QUICK_SIZE), with the
    ``meta`` scalars also at top level.

    Raises:
        FileNotFoundError: no release. ValueError: no test samples.
    """
    from builders.reader import iter_release

    samples = []
    for s in iter_release(release_dir(root, release), "test"):
        samples.append({**s.get("meta", {}), **s})
        if quick and len(samples) == QUICK_SIZE:
            break
    if not samples:
        raise ValueError(f"{release_dir(root, release)} has no test samples")
    return samples


def release_info(root: Path, release: str) -> dict:
    """What the results file records about the release: version, parameters, test shards."""
    path = release_dir(root, release)
    raw = (path / "manifest.json").read_bytes()
    m = json.loads(raw)
    keep = ("limit", "input", "n_conformers", "seed", "semiempirical", "grid_shape", "margin_bohr", "spacing_bohr",
            "cubic")
    return {"name": release, "version": m.get("release_version"), "path": str(path),
            "manifest_sha256": hashlib.sha256(raw).hexdigest(),
            "parameters": {k: m["parameters"].get(k) for k in keep if k in m["parameters"]},
            "test_samples": m["splits"]["test"]["samples"],
            "test_shards": [{"path": sh["path"], "sha256": sh["sha256"]} for sh in m["shards"]
                            if sh["split"] == "test" and sh["config"] == "compact"]}


def task_shape(sample: dict, quick: bool) -> tuple[int, int, int]:
    """Grid shape of the task: the sample's own grid_shape (full) or QUICK_SHAPE (quick)."""
    if quick:
        return QUICK_SHAPE
    return tuple(int(n) for n in np.asarray(sample["grid_shape"]).ravel())


def render_reference(sample: dict, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference grid of a sample and its frame.

    Returns:
        (rho float16 (X, Y, Z) e/Bohr^3, origin (3,) Bohr, axes (3, 3) Bohr).
    """
    from builders.density.render import render_density, resolve_frame

    origin, axes, shp = resolve_frame(sample, shape)
    rho = np.asarray(render_density(sample, shape=shp, origin=origin, axes=axes))
    if not np.isfinite(rho).all() or np.abs(rho).max() > FLOAT16_MAX:
        raise ValueError(f"{sample['__key__']}: rendered density outside the float16 range")
    return rho.astype(np.float16), origin, axes


def _as_prediction(grid, shape, key: str) -> np.ndarray:
    g = np.asarray(grid.detach().cpu().numpy() if torch.is_tensor(grid) else grid, dtype=np.float64)
    if g.shape != tuple(shape):
        raise ValueError(f"{key}: reconstruction has shape {g.shape}, the input grid {tuple(shape)}")
    _check_values(g, key)
    g16 = g.astype(np.float16)
    _check_values(g16.astype(np.float64), key)  # what is scored and stored is the float16 grid
    return g16


def _check_values(g: np.ndarray, key: str) -> None:
    """Reconstructions must be finite, within float16's range and > -1 (log1p is defined)."""
    if not np.isfinite(g).all() or np.abs(g).max() > FLOAT16_MAX:
        raise ValueError(f"{key}: reconstruction has non-finite values or values beyond float16's range")
    if g.min() <= -1.0:
        raise ValueError(f"{key}: reconstruction has values <= -1 e/Bohr^3, where log(rho + 1) is undefined")


# --------------------------------------------------------------------------- scoring
class _LazyGrids(torch.utils.data.Dataset):
    """Grids (float16 arrays) transformed on access: the whole set never exists in float64."""

    def __init__(self, grids: list[np.ndarray], transform: str):
        self.grids, self.transform = grids, transform

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, i) -> torch.Tensor:
        from benchmarks.metrics.density import apply_transform

        return apply_transform(self.grids[i].astype(np.float64), self.transform)[0]

    def same_shape(self) -> bool:
        return len({g.shape for g in self.grids}) == 1


def fidelity(real: list[np.ndarray], fake: list[np.ndarray], extractor: str, transform: str) -> dict:
    """FID and KID between reference and reconstructed grid sets through torch-fidelity.

    The same call and settings as ``benchmarks.metrics.fidelity.fidelity_metrics`` (KID subset
    size min(1000, n features), polynomial kernel, rng seed 2020, no cache), on lazily
    transformed datasets so that 128^3 test sets fit in memory. Features are always extracted
    on the CPU (cheap next to KID), so the numbers do not depend on the device a run had and a
    CPU re-score reproduces them.

    Returns:
        {"fid", "kid_mean", "kid_std"} floats.
    """
    import torch_fidelity

    from benchmarks.metrics import features

    if len(real) < 2:
        raise ValueError("FID/KID need at least 2 samples")
    r, f = _LazyGrids(real, transform), _LazyGrids(fake, transform)
    per_sample = 3 * features.SLICE_SIZE if extractor == features.SLICE_ROWS else 1
    out = torch_fidelity.calculate_metrics(
        input1=f, input2=r, feature_extractor=extractor, fid=True, kid=True,
        kid_subsets=KID["subsets"], kid_subset_size=min(1000, len(r) * per_sample, len(f) * per_sample),
        kid_kernel="poly", kid_kernel_poly_degree=KID["degree"], kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=KID["coef0"], rng_seed=KID["rng_seed"],
        batch_size=16 if (r.same_shape() and f.same_shape()) else 1,
        cuda=False, cache=False, save_cpu_ram=True, verbose=False)
    return {"fid": float(out["frechet_inception_distance"]), "kid_mean": float(out["kernel_inception_distance_mean"]),
            "kid_std": float(out["kernel_inception_distance_std"])}


def _lpips(real: list[np.ndarray], fake: list[np.ndarray], transform: str, vgg16_weights):
    """Mean slice LPIPS over the set (chunks of LPIPS_CHUNK same-shape pairs); None when skipped."""
    from benchmarks.metrics.lpips import lpips_slices

    if not vgg16_weights:
        return None
    total, n = 0.0, 0
    for a in range(0, len(real), LPIPS_CHUNK):
        rs, fs = real[a:a + LPIPS_CHUNK], fake[a:a + LPIPS_CHUNK]
        groups: dict = {}
        for r, f in zip(rs, fs):
            groups.setdefault(r.shape, []).append((r, f))
        for pairs in groups.values():
            res = lpips_slices(np.stack([p[0] for p in pairs]).astype(np.float64),
                               np.stack([p[1] for p in pairs]).astype(np.float64), transform=transform,
                               vgg16_weights_path=vgg16_weights)
            if res.skipped:
                return None
            total += res.value * len(pairs)
            n += len(pairs)
    return total / n


def lpips_status(vgg16_weights) -> dict:
    """Whether LPIPS runs: {"skipped": bool, "message": str} for the given local VGG16 weights
    file (None: not given)."""
    from benchmarks.metrics.lpips import SKIP_MESSAGE, VARIANT

    if not vgg16_weights or not os.path.isfile(vgg16_weights):
        return {"skipped": True, "message": SKIP_MESSAGE}
    return {"skipped": False, "message": f"{VARIANT} on 3 central slices, weights {vgg16_weights}"}


def score_grids(references: list[np.ndarray], predictions: list[np.ndarray], frames: list[tuple],
                atoms: list[tuple], n_electrons: list[int], progress: bool = False, vgg16_weights=None) -> dict:
    """Every metric of the task for paired grid lists.

    Args:
        references, predictions: lists of (X, Y, Z) float16 grids, e/Bohr^3, pairwise on one frame.
        frames: per sample (origin (3,), axes (3, 3)), Bohr.
        atoms: per sample (atomic_numbers (N,), positions (N, 3) Angstrom).
        n_electrons: per sample the molecule's true electron count.
    Returns:
        {metric name: float or None} (see the module docstring and :func:`metric_names`).
    """
    from benchmarks.metrics import density as dm
    from benchmarks.metrics.ssim import ms_ssim3d, ssim3d

    per = {k: [] for k in metric_names() if not k.startswith(("fid_", "kid_", "lpips_"))}
    for ref, pred, (origin, axes), (z, pos), n_el in tqdm(
            list(zip(references, predictions, frames, atoms, n_electrons)), desc="score", disable=not progress,
            unit="grid"):
        r = torch.from_numpy(ref.astype(np.float64))
        p = torch.from_numpy(pred.astype(np.float64))
        for t in TRANSFORMS:
            per[f"ssim_{t}"].append(ssim3d(p, r, transform=t, **SSIM))
            per[f"ms_ssim_{t}"].append(ms_ssim3d(p, r, transform=t, **MS_SSIM))
            per[f"psnr_{t}"].append(dm.psnr(p, r, transform=t))
            per[f"mae_{t}"].append(dm.mae(p, r, transform=t))
        per["nmae"].append(dm.nmae(p, r))
        n_pred, n_ref = (float(dm.electron_count(g, axes)[0]) for g in (p, r))
        per["electron_count_error"].append(dm.electron_count_error(p, r, axes))
        per["electron_count_error_vs_true"].append(abs(n_pred - n_el))
        per["reference_electron_count_error"].append(abs(n_ref - n_el))
        per["dipole_error_debye"].append(dm.dipole_error(p, r, origin, axes, z, pos))
    out = {k: finite_or_none(float(np.mean(v))) for k, v in per.items()}
    for t in TRANSFORMS:
        for tag, extractor in EXTRACTOR_TAGS.items():
            fk = fidelity(references, predictions, extractor, t)
            out[f"fid_{tag}_{t}"] = finite_or_none(fk["fid"])
            out[f"kid_{tag}_{t}"] = finite_or_none(fk["kid_mean"])
            out[f"kid_std_{tag}_{t}"] = finite_or_none(fk["kid_std"])
        out[f"lpips_{t}"] = _lpips(references, predictions, t, vgg16_weights)
    return {k: out[k] for k in metric_names()}


def _sample_atoms(s: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(s["atomic_numbers"]).astype(np.int64), np.asarray(s["positions"], np.float64)


# --------------------------------------------------------------------------- runner
def run(model, data_root: Path, variant: str, quick: bool = False, progress: bool = True,
        vgg16_weights=None) -> dict:
    """Run the density-reconstruction task with ``model.reconstruct``.

    Args:
        model: has ``reconstruct(batch) -> list of (X, Y, Z) grids`` (see the module docstring).
        data_root: folder holding ``densegen/<release>`` (built small first when missing).
        variant: ``"pubchem"`` or ``"qm9"`` (:data:`VARIANTS`).
        quick: the first QUICK_SIZE test samples on QUICK_SHAPE grids.
        vgg16_weights: local VGG16 weights file for LPIPS (None: LPIPS is null).
    Returns:
        {"protocol", "per_seed", "predictions", "release"}; the metrics are deterministic (one seed, 0).
    """
    root = Path(data_root)
    release = VARIANTS[variant]
    built = ensure_release(root, release, progress)
    samples = read_test_samples(root, release, quick)
    refs, preds, frames = [], [], []
    bar = tqdm(total=len(samples), desc="render+reconstruct", disable=not progress, unit="grid")
    for a in range(0, len(samples), BATCH_SIZE):
        batch = []
        for s in samples[a:a + BATCH_SIZE]:
            shape = task_shape(s, quick)
            rho, origin, axes = render_reference(s, shape)
            refs.append(rho)
            frames.append((origin, axes))
            batch.append({**s, "grid": rho.astype(np.float32), "grid_origin": origin.copy(),
                          "grid_axes": axes.copy(), "grid_shape": np.asarray(rho.shape, np.int32)})
        out = model.reconstruct(batch)
        if len(out) != len(batch):
            raise ValueError(f"model.reconstruct returned {len(out)} grids for {len(batch)} samples")
        preds += [_as_prediction(g, b["grid"].shape, b["__key__"]) for g, b in zip(out, batch)]
        bar.update(len(batch))
    bar.close()
    metrics = score_grids(refs, preds, frames, [_sample_atoms(s) for s in samples],
                          [int(s["n_electrons"]) for s in samples], progress=progress, vgg16_weights=vgg16_weights)
    per_seed = [{"seed": 0, **metrics, "n_samples": len(samples)}]
    predictions = {
        "keys": np.array([s["__key__"] for s in samples]),
        "grid_shapes": np.array([p.shape for p in preds], np.int64),
        "grid_values": np.concatenate([p.ravel() for p in preds]),
    }
    from benchmarks.metrics.ssim import ms_ssim_num_scales

    shapes = sorted({p.shape for p in preds})
    protocol = {
        "quick": quick, "seeds": [0], "variant": variant, "release": release, "n_samples": len(samples),
        "samples": f"the test split of {release} in release order" + (f", first {QUICK_SIZE}" if quick else ""),
        "grid": {"shape": list(QUICK_SHAPE) if quick else "each sample's own grid_shape (seed frame, 128^3)",
                 "shapes_seen": [list(s) for s in shapes],
                 "box": "each sample's frame box (bounding box + margin, Bohr); quick resamples the same box",
                 "units": "electrons/Bohr^3", "precision": "references and reconstructions rounded to float16; "
                                                         "the model gets the float16 reference as float32"},
        "transforms": {"raw": "rho", "log1p": "log(rho + 1), natural log (the seed's)"},
        "ssim": {**SSIM, "filter": "separable Gaussian, valid region", "K1": 0.01, "K2": 0.03,
                 "data_range": "per sample max - min of the transformed reference"},
        "ms_ssim": {**MS_SSIM, "weights": "Wang et al. 2003, truncated to the scales and renormalized",
                    "scales": {"x".join(map(str, s)): ms_ssim_num_scales(s, MS_SSIM["win_size"]) for s in shapes},
                    "data_range": "per sample max - min of the transformed reference, all scales"},
        "psnr": {"data_range": "per sample max of the transformed reference",
                 "aggregation": "mean of per-sample dB; null = +inf (identical grids)"},
        "mae": "mean over voxels of |T(pred) - T(ref)|, mean over samples",
        "fid_kid": {"extractors": dict(EXTRACTOR_TAGS), "between": "reference set vs reconstruction set",
                    "kid": {**KID, "subset_size": "min(1000, feature vectors per set)", "kernel": "poly",
                            "gamma": "1/dim"}, "library": "torch-fidelity"},
        "lpips": lpips_status(vgg16_weights),
        "physical": {"nmae": "sum|pred - ref| / sum ref (raw)", "electron_count": "sum(rho) |det(axes)| electrons",
                     "electron_count_error_vs_true": "vs meta n_electrons",
                     "dipole": "nuclei (Z, Bohr) minus grid electrons, Debye (1 e Bohr = 2.541746473 D)"},
        "primary_metric": PRIMARY,
        "auto_build": built,
        "predictions": "keys (B,) str, grid_shapes (B, 3) int64, grid_values float16 flat C-order",
    }
    return {"protocol": protocol, "per_seed": per_seed, "predictions": predictions,
            "release": release_info(root, release)}


def score_predictions(predictions: dict, data_root: Path, variant: str, quick: bool, vgg16_weights=None) -> list[dict]:
    """Recompute every metric from a predictions file against re-rendered references.

    Args:
        predictions: the arrays of the predictions .npz (see the module docstring).
        data_root: folder holding ``densegen/<release>`` of the variant.
        variant: the data variant the predictions were made on.
        quick: whether they come from a ``--quick`` run.
    Raises:
        ValueError: when the predictions do not cover the task's samples in order, or a shape or
        size is off.
    """
    samples = read_test_samples(Path(data_root), VARIANTS[variant], quick)
    keys = [str(k) for k in np.asarray(predictions["keys"]).ravel()]
    if keys != [s["__key__"] for s in samples]:
        raise ValueError(f"predictions cover {len(keys)} samples, the task has {len(samples)} (or another order)")
    shapes = np.asarray(predictions["grid_shapes"], np.int64)
    values = np.asarray(predictions["grid_values"])
    if values.dtype != np.float16 or values.ndim != 1:
        raise ValueError("grid_values must be a flat float16 array")
    if shapes.shape != (len(samples), 3) or int(np.prod(shapes, axis=1).sum()) != values.size:
        raise ValueError(f"grid_shapes {shapes.shape} do not fit {values.size} grid values")
    refs, preds, frames, start = [], [], [], 0
    for s, shp in zip(samples, shapes):
        want = task_shape(s, quick)
        if tuple(shp) != tuple(want):
            raise ValueError(f"{s['__key__']}: grid shape {tuple(shp)}, the task renders {tuple(want)}")
        rho, origin, axes = render_reference(s, want)
        n = int(np.prod(shp))
        refs.append(rho)
        preds.append(values[start:start + n].reshape(tuple(shp)))
        _check_values(preds[-1], s["__key__"])
        frames.append((origin, axes))
        start += n
    metrics = score_grids(refs, preds, frames, [_sample_atoms(s) for s in samples],
                          [int(s["n_electrons"]) for s in samples], vgg16_weights=vgg16_weights)
    return [{"seed": 0, **metrics, "n_samples": len(samples)}]


_UNITS = {"ssim": "dimensionless", "ms_ssim": "dimensionless", "psnr": "dB", "mae": "electrons/Bohr^3 (raw) or "
          "log(1 + electrons/Bohr^3) (log1p)", "fid": "dimensionless (feature space)",
          "kid": "dimensionless (feature space)", "kid_std": "dimensionless (feature space)",
          "lpips": "dimensionless"}
_HIGHER = {"ssim", "ms_ssim", "psnr"}


class DensityTask(Task):
    """Reconstruct electron-density grids of a fixed test set and score them (module docstring)."""

    name = "density-reconstruction"
    version = "1.0.0"
    input_kind = "density"
    needs = ("reconstruct",)
    data = ("variant pubchem: the test split of pubchem-hf-density; variant qm9: the test split of qm9-hf-density; "
            "under <data root>/densegen/ (a small one is built first when missing)")
    split = "the release's identity-hash split (builders.splits, test part); the manifest's shard sha256s pin it"
    split_sha256 = None
    primary_metric = PRIMARY
    lower_is_better = True
    min_seeds_leaderboard = 1
    default_seeds = 1
    protocol = ("render each test sample's density (e/Bohr^3, builders.density.render_density) on its own frame, "
                "rounded to float16 -> model.reconstruct -> metrics on the float16 reconstruction "
                "(details in benchmarks/task_density.py)")
    quick = f"the first {QUICK_SIZE} test samples on {QUICK_SHAPE[0]}^3 grids over the same box"
    variants = tuple(VARIANTS)

    def metrics(self) -> dict[str, Metric]:
        out = {}
        for name in metric_names():
            base = name
            for t in TRANSFORMS:
                base = base.removesuffix(f"_{t}")
            for tag in EXTRACTOR_TAGS:
                base = base.removesuffix(f"_{tag}")
            if name == "nmae":
                out[name] = Metric(name, "fraction", True, "sum|rho_hat - rho| / sum rho per sample, mean over samples")
            elif name.startswith(("electron_count", "reference_electron")):
                out[name] = Metric(name, "electrons", True, "see benchmarks/task_density.py")
            elif name == "dipole_error_debye":
                out[name] = Metric(name, "Debye", True, "|mu(rho_hat) - mu(rho)| from grid electrons and nuclei")
            else:
                out[name] = Metric(name, _UNITS.get(base, "dimensionless"), base not in _HIGHER,
                                   "see benchmarks/task_density.py")
        return out

    def run(self, model, data_root, *, variant=None, seeds=None, quick=False, progress=True, vgg16_weights=None, **_):
        variant = self.check_variant(variant)
        out = run(model, data_root, variant, quick=quick, progress=progress, vgg16_weights=vgg16_weights)
        out["aggregate"] = self.aggregate(out["per_seed"])
        return out

    def score(self, predictions, data_root, *, variant=None, quick=False, vgg16_weights=None):
        return score_predictions(predictions, data_root, self.check_variant(variant), quick, vgg16_weights)

    def plot(self, doc, predictions, data_root, stem, n: int = 3):
        from .plot import density_slices

        quick = bool(doc["protocol"].get("quick"))
        variant = self.check_variant(doc["task"]["variant"])
        samples = read_test_samples(Path(data_root), VARIANTS[variant], quick)[:n]
        shapes = np.asarray(predictions["grid_shapes"], np.int64)
        values = np.asarray(predictions["grid_values"])
        pairs, start = [], 0
        keys = [str(k) for k in np.asarray(predictions["keys"]).ravel()]
        for s, key, shp in zip(samples, keys, shapes):
            if s["__key__"] != key:
                raise ValueError(f"predictions are for {key}, the task's sample is {s['__key__']}")
            size = int(np.prod(shp))
            rec = values[start:start + size].reshape(tuple(shp)).astype(np.float64)
            start += size
            pairs.append((key, render_reference(s, task_shape(s, quick))[0].astype(np.float64), rec))
        path = Path(f"{stem}-slices.png")
        density_slices(pairs, f"{self.name} [{variant}]: {doc['model']['name']}", path)
        return [path]
