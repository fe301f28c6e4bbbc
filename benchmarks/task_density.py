"""The density-reconstruction task: reconstruct electron-density grids of a fixed, pinned set of
test molecules and score them against the benchmark's own references.

Data (a variant, ranked separately; the variant and the data root are arguments):

* ``qm9``: the 1,000 qm9-small test molecules, RHF/STO-3G on their QM9 geometries through the
  qm9-hf-density builder;
* ``pubchem``: 200 pubchem-hf-density test-split molecules, RHF/STO-3G on their committed final
  geometries (after the paper's conformer search and MINDO3), so rebuilding them is RHF only.

On first use the densities are built under ``<data root>/densegen-benchmarks/`` (a progress
bar; resumable), and on every run each sample is checked against the pinned table of RHF
energies (within 1e-6 Ha), electron counts and InChIKeys (``benchmarks.pinned_data``).
``--quick`` takes (and builds) only the first :data:`QUICK_SIZE` molecules. The run streams:
one batch of grids in memory at a time, the grids on disk for the pooled metrics and the
predictions file.

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
* ``fid_<x>``, ``kid_<x>`` (and ``kid_std_<x>``): UNPAIRED FID/KID between
  the set of references and the set of reconstructions (all feature vectors pooled; a model
  returning another molecule's density can score well on them), with ``x = central_rows``
  (``densegen-central-slice-rows``) and ``x = 3dnet`` (``densegen-3dnet-v1``); KID 100 subsets,
  polynomial kernel (``benchmarks.metrics.fidelity``).
* ``seed_fid``, ``seed_kid``, ``seed_ssim``, ``seed_ms_ssim``, ``seed_psnr``, ``seed_mae``: what
  the authors' evaluation computes, per molecule on log(rho + 1) and PAIRED
  (``benchmarks.metrics.seed``); identical grids give exactly FID 0, KID 0, SSIM 1.
* ``lpips``: unweighted VGG16 LPIPS on 3 central slices (``benchmarks.metrics.lpips``) when
  a local VGG16 weights file is given (``--lpips-weights``); otherwise ``null`` and the skip
  message in the protocol.

Physical metrics, raw density only: ``nmae`` = 100 sum|rho_hat - rho| / sum rho per molecule (in
percent, as the density-learning literature reports it; the primary metric, lower is better); ``electron_count_error`` = |N(rho_hat) - N(rho)| electrons on
the same grid; ``electron_count_error_vs_true`` = |N(rho_hat) - n_electrons| against the
molecule's true electron count (includes the grid's own quadrature and box error, which is
also reported as ``reference_electron_count_error`` for scale); ``dipole_error_debye`` =
|mu(rho_hat) - mu(rho)| with mu from the grid density and the nuclear charges (Debye).

Predictions file (npz, no pickle): ``keys`` (B,) str sample keys in task order;
``grid_shapes`` (B, 3) int64; ``grid_values`` (sum of prod(shape),) float16: the
reconstructions, flattened in C order and concatenated (full task: 4 MiB per 128^3 sample).
:func:`score_predictions` re-renders the references of the variant the results record under
the data root it is given and recomputes every metric from them.
The metrics are deterministic: 1 seed (``--seeds`` is ignored).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm


from .task import Metric, Task, finite_or_none

VARIANTS = ("qm9", "pubchem")  # data variants, ranked separately
QUICK_SIZE = 8
QUICK_SHAPE = (32, 32, 32)
BATCH_SIZE = 4
TRANSFORMS = ("raw", "log1p")
EXTRACTOR_TAGS = {"central_rows": "densegen-central-slice-rows", "3dnet": "densegen-3dnet-v1"}
SEED_NAMES = ("seed_fid", "seed_kid", "seed_ssim", "seed_ms_ssim", "seed_psnr", "seed_mae")
SSIM = {"win_size": 11, "sigma": 1.5}
MS_SSIM = {"win_size": 7, "sigma": 1.5}
KID = {"subsets": 100, "degree": 3, "coef0": 1.0, "rng_seed": 2020}
LPIPS_CHUNK = 16
FLOAT16_MAX = 65504.0
PRIMARY = "nmae"



def metric_names() -> tuple[str, ...]:
    """Every metric key of a per-seed result (and of the aggregate), in a fixed order: the
    primary NMAE first. Names, units and definitions: ``benchmarks.metrics.catalog``."""
    names = ["nmae", "electron_count_error", "electron_count_error_vs_true", "reference_electron_count_error",
             "dipole_error"]
    for t in TRANSFORMS:
        names += [f"ssim_{t}", f"ms_ssim_{t}", f"psnr_{t}", f"mae_{t}"]
        for x in EXTRACTOR_TAGS:
            names += [f"fid_{x}_{t}", f"kid_{x}_{t}", f"kid_std_{x}_{t}"]
        names.append(f"lpips_{t}")
    names += list(SEED_NAMES)
    return tuple(names)


# --------------------------------------------------------------------------- data
CACHE = "densegen-benchmarks"  # under the data root: the data the task builds on first use


def test_records(variant: str, quick: bool) -> tuple[list[dict], str]:
    """The variant's pinned test molecules, in task order (quick: the first QUICK_SIZE), and the
    sha256 of the pinned table they come from.

    Each record has at least ``key``, ``n_electrons`` and ``rhf_energy_hartree``.
    """
    from .pinned_data import load_density_pubchem, load_density_qm9

    if variant == "qm9":
        table, digest = load_density_qm9()
        records = list(table.values())
    else:
        records, digest = load_density_pubchem()
    return (records[:QUICK_SIZE] if quick else records), digest


def _cache_dir(data_root, variant: str, quick: bool) -> Path:
    return Path(data_root) / CACHE / (f"density-{variant}-v1" + ("-quick" if quick else ""))


def prepare_data(data_root, variant: str, quick: bool, progress: bool = True) -> dict:
    """Build on first use, and verify on every run, the variant's test samples under
    ``<data_root>/densegen-benchmarks/density-<variant>-v1[-quick]/``: RHF/STO-3G of the pinned
    molecules (qm9: on the QM9 geometries through the qm9-hf-density builder; pubchem: on the
    committed final geometries), each checked against the pinned table (energy within 1e-6 Ha,
    electron count, InChIKey). Quick runs build and use only the first QUICK_SIZE molecules.

    Returns:
        what the results record about the data (table, its sha256, molecule count, cache folder).
    Raises:
        benchmarks.pinned_data.PinnedDataError: a pinned file changed or a sample does not match.
    """
    from .pinned_data import QM9_SMALL_SHA256, build_qm9_density, ensure_pubchem_density

    from builders.format.manifest import is_finished_release, release_dir

    records, digest = test_records(variant, quick)
    folder = _cache_dir(data_root, variant, quick)
    if variant == "pubchem":
        if progress and not (folder / "index.json").is_file():
            print(f"density-reconstruction [pubchem]: building the {len(records)} pinned test densities (RHF/STO-3G on "
                  f"the committed geometries) under {folder} (first use)", flush=True)
        ensure_pubchem_density(folder, records, progress=progress)
    elif quick:
        build_qm9_subset(folder, records, progress)
    else:
        if progress and not is_finished_release(release_dir(folder, "qm9-hf-density")):
            print(f"density-reconstruction [qm9]: building the {len(records)} pinned test densities (RHF/STO-3G on the "
                  f"QM9 geometries of the qm9-small test split, key file {QM9_SMALL_SHA256[:12]}...) under {folder} "
                  f"(first use; resumable)", flush=True)
        build_qm9_density(folder, workers=max(1, min(2, os.cpu_count() or 1)), progress=progress)
    name = "density-qm9-v1.tsv" if variant == "qm9" else "density-pubchem-v1.jsonl"
    return {"name": f"benchmarks/data/{name}", "sha256": digest, "molecules": len(records), "variant": variant,
            "cache": str(folder.relative_to(Path(data_root))) if folder.is_relative_to(Path(data_root)) else str(folder)}


def build_qm9_subset(folder, records: list[dict], progress: bool = True) -> Path:
    """Build (a no-op when built) and verify qm9-hf-density for some of the pinned qm9 test
    molecules (``records``, a slice of :func:`test_records`) under ``<folder>/densegen/``, their
    ``test`` split in the records' order.

    Returns:
        the release folder.
    Raises:
        benchmarks.pinned_data.PinnedDataError: a sample does not match its pinned record.
    """
    from builders.format.build import build_release
    from builders.format.manifest import is_finished_release, release_dir
    from builders.format.registry import get_release

    from .pinned_data import PinnedDataError, verify_qm9_density_release

    folder = Path(folder)
    release = release_dir(folder, "qm9-hf-density")
    if not is_finished_release(release):
        keys = folder / "gdb-indices.txt"
        folder.mkdir(parents=True, exist_ok=True)
        keys.write_text("".join(f"{r['gdb_index']}\ttest\n" for r in records))
        spec = get_release("qm9-hf-density")
        build_release(spec, folder, spec.resolve_params({"gdb_indices": str(keys)}), progress=progress)
    problems = verify_qm9_density_release(release, table={r["key"]: r for r in records})
    if problems:
        raise PinnedDataError(f"{release}: {problems[0]}")
    return release


def iter_test_samples(data_root, variant: str, quick: bool) -> Iterator[dict]:
    """Stream the variant's prepared test samples in task order (one in memory at a time), with
    the ``meta`` scalars also at top level.

    Raises:
        ValueError: when the prepared samples are not the pinned ones, in order.
    """
    from builders.format.manifest import release_dir
    from builders.format.reader import iter_release

    from .pinned_data import iter_pubchem_density

    records, _ = test_records(variant, quick)
    folder = _cache_dir(data_root, variant, quick)
    if variant == "pubchem":
        samples = iter_pubchem_density(folder, records)
    else:
        samples = iter_release(release_dir(folder, "qm9-hf-density"), "test")
    yield from in_pinned_order(samples, records, folder)


def in_pinned_order(samples: Iterable[dict], records: list[dict], where) -> Iterator[dict]:
    """Stream ``samples`` checking they are the pinned ``records`` in order (one each), with the
    ``meta`` scalars also at top level.

    Raises:
        ValueError: naming ``where``, at the first sample out of order or when the counts differ.
    """
    n = 0
    for rec, s in zip(records, samples):
        if s["__key__"] != rec["key"]:
            raise ValueError(f"{where}: sample {s['__key__']} where the pinned order has {rec['key']}")
        n += 1
        yield {**s.get("meta", {}), **s}
    if n != len(records):
        raise ValueError(f"{where}: {n} prepared test samples, the pinned table has {len(records)}")


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
class GridStore:
    """A disk-backed (memmap, float16) array of N grids of one shape: the set-level metrics read
    it one grid at a time, so a run's memory does not grow with its number of grids."""

    def __init__(self, folder: Path, name: str, n: int, shape):
        self.array = np.lib.format.open_memmap(Path(folder) / f"{name}.npy", mode="w+", dtype=np.float16,
                                               shape=(n, *shape))

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, i) -> np.ndarray:
        return self.array[i]


class DensityScorer:
    """Streams (reference, reconstruction) pairs: per-sample metrics as they come, the grids
    into :class:`GridStore` s for the pooled FID/KID at the end.

    Args:
        n: number of samples; shape: (X, Y, Z) of every grid; folder: where the stores live.
        vgg16_weights: local VGG16 weights for LPIPS (None: LPIPS is null).
    """

    def __init__(self, n: int, shape, folder: Path, vgg16_weights=None):
        self.n, self.shape = n, tuple(shape)
        self.refs = GridStore(folder, "references", n, shape)
        self.preds = GridStore(folder, "reconstructions", n, shape)
        self.per = {k: [] for k in metric_names() if not k.startswith(("fid_", "kid_", "lpips_"))}
        self.lpips = {t: [] for t in TRANSFORMS}
        self.vgg16_weights = vgg16_weights
        self.count = 0

    def add(self, ref: np.ndarray, pred: np.ndarray, origin, axes, atoms, n_electrons: int) -> None:
        """Score one pair: (X, Y, Z) float16 grids (e/Bohr^3) on the frame (origin, axes) (Bohr),
        atoms = (atomic numbers (N,), positions (N, 3) Angstrom), the molecule's electron count."""
        from benchmarks.metrics import density as dm
        from benchmarks.metrics.seed import seed_metrics
        from benchmarks.metrics.ssim import ms_ssim3d, ssim3d

        if ref.shape != self.shape or pred.shape != self.shape:
            raise ValueError(f"grids of shape {ref.shape} / {pred.shape}, the task's are {self.shape}")
        self.refs.array[self.count] = ref
        self.preds.array[self.count] = pred
        self.count += 1
        r = torch.from_numpy(ref.astype(np.float64))
        p = torch.from_numpy(pred.astype(np.float64))
        per = self.per
        for t in TRANSFORMS:
            per[f"ssim_{t}"].append(ssim3d(p, r, transform=t, **SSIM))
            per[f"ms_ssim_{t}"].append(ms_ssim3d(p, r, transform=t, **MS_SSIM))
            per[f"psnr_{t}"].append(dm.psnr(p, r, transform=t))
            per[f"mae_{t}"].append(dm.mae(p, r, transform=t))
        per["nmae"].append(dm.nmae(p, r))
        n_pred, n_ref = (float(dm.electron_count(g, axes)[0]) for g in (p, r))
        per["electron_count_error"].append(dm.electron_count_error(p, r, axes))
        per["electron_count_error_vs_true"].append(abs(n_pred - n_electrons))
        per["reference_electron_count_error"].append(abs(n_ref - n_electrons))
        per["dipole_error"].append(dm.dipole_error(p, r, origin, axes, *atoms))
        for name, value in seed_metrics(p, r, reduction="none").items():
            per[name].append(float(np.asarray(value).ravel()[0]))
        if self.vgg16_weights:
            from benchmarks.metrics.lpips import lpips_slices

            for t in TRANSFORMS:
                res = lpips_slices(ref.astype(np.float64), pred.astype(np.float64),
                                   vgg16_weights_path=self.vgg16_weights, transform=t)
                self.lpips[t].append(None if res.skipped else res.value)

    def finish(self) -> dict:
        """{metric: mean over samples (float or None)} plus the pooled set metrics."""
        from benchmarks.metrics.fidelity import fidelity_metrics

        if self.count != self.n:
            raise ValueError(f"{self.count} samples scored, {self.n} expected")
        out = {}
        for k, v in self.per.items():
            a = np.asarray(v, np.float64)
            out[k] = finite_or_none(a.mean()) if np.isfinite(a).all() else None  # +inf PSNR, undefined MS-SSIM
        for t in TRANSFORMS:
            vals = self.lpips[t]
            out[f"lpips_{t}"] = None if not vals or any(v is None for v in vals) else float(np.mean(vals))
            for tag, extractor in EXTRACTOR_TAGS.items():
                if self.n < 2:
                    fk = {"fid": None, "kid_mean": None, "kid_std": None}
                else:
                    fk = fidelity_metrics(self.refs, self.preds, extractor, t, kid_subsets=KID["subsets"],
                                          kid_degree=KID["degree"], kid_coef0=KID["coef0"], rng_seed=KID["rng_seed"])
                out[f"fid_{tag}_{t}"] = finite_or_none(fk["fid"])
                out[f"kid_{tag}_{t}"] = finite_or_none(fk["kid_mean"])
                out[f"kid_std_{tag}_{t}"] = finite_or_none(fk["kid_std"])
        return {k: out[k] for k in metric_names()}


def lpips_status(vgg16_weights) -> dict:
    """Whether LPIPS runs: {"skipped": bool, "message": str} for the given local VGG16 weights
    file (None: not given)."""
    from benchmarks.metrics.lpips import SKIP_MESSAGE, VARIANT

    if not vgg16_weights or not os.path.isfile(vgg16_weights):
        return {"skipped": True, "message": SKIP_MESSAGE}
    return {"skipped": False, "message": f"{VARIANT} on 3 central slices, weights {vgg16_weights}"}


def _sample_atoms(s: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(s["atomic_numbers"]).astype(np.int64), np.asarray(s["positions"], np.float64)


def _model_input(s: dict, rho: np.ndarray, origin, axes) -> dict:
    return {**s, "grid": rho.astype(np.float32), "grid_origin": origin.copy(), "grid_axes": axes.copy(),
            "grid_shape": np.asarray(rho.shape, np.int32)}


# --------------------------------------------------------------------------- runner
def run(model, data_root: Path, variant: str, quick: bool = False, progress: bool = True,
        vgg16_weights=None, work_dir=None) -> dict:
    """Run the density-reconstruction task with ``model.reconstruct``, streaming: one batch of
    grids in memory at a time; the grids go to disk (``work_dir``, default a temporary folder)
    for the pooled metrics and the predictions file.

    Args:
        model: has ``reconstruct(batch) -> list of (X, Y, Z) grids`` (see the module docstring).
        data_root: where the variant's data is built on first use and cached (:func:`prepare_data`).
        variant: ``"pubchem"`` or ``"qm9"``.
        quick: the first QUICK_SIZE test samples on QUICK_SHAPE grids.
        vgg16_weights: local VGG16 weights file for LPIPS (None: LPIPS is null).
    Returns:
        {"protocol", "per_seed", "predictions", "release"}; the metrics are deterministic (one
        seed, 0). ``predictions["grid_values"]`` is a disk-backed array (valid until the
        temporary folder is removed, i.e. for the life of the returned dict's ``_work`` entry).
    """
    import tempfile

    info = prepare_data(data_root, variant, quick, progress)
    records, _ = test_records(variant, quick)
    work = tempfile.TemporaryDirectory(prefix="densegen-density-", dir=work_dir)
    scorer, keys, shape = None, [], None
    bar = tqdm(total=len(records), desc="render+reconstruct+score", disable=not progress, unit="grid")
    batch, refs = [], []

    def flush():
        out = model.reconstruct([b for b, _ in batch])
        if len(out) != len(batch):
            raise ValueError(f"model.reconstruct returned {len(out)} grids for {len(batch)} samples")
        for g, (b, s) in zip(out, batch):
            pred = _as_prediction(g, b["grid"].shape, b["__key__"])
            scorer.add(b["grid"].astype(np.float16), pred, b["grid_origin"], b["grid_axes"], _sample_atoms(s),
                       int(s["n_electrons"]))
            bar.update(1)
        batch.clear()

    for s in iter_test_samples(data_root, variant, quick):
        rho, origin, axes = render_reference(s, task_shape(s, quick))
        if scorer is None:
            shape = rho.shape
            scorer = DensityScorer(len(records), shape, Path(work.name), vgg16_weights)
        keys.append(s["__key__"])
        batch.append((_model_input(s, rho, origin, axes), s))
        if len(batch) == BATCH_SIZE:
            flush()
    if batch:
        flush()
    bar.close()
    metrics = scorer.finish()
    per_seed = [{"seed": 0, **metrics, "n_samples": len(keys)}]
    predictions = {
        "keys": np.array(keys),
        "grid_shapes": np.tile(np.array(shape, np.int64), (len(keys), 1)),
        "grid_values": scorer.preds.array.reshape(-1),
    }
    from benchmarks.metrics.ssim import ms_ssim_num_scales

    protocol = {
        "quick": quick, "seeds": [0], "variant": variant, "n_samples": len(keys),
        "samples": f"the pinned {variant} test molecules ({info['name']})" + (f", first {QUICK_SIZE}" if quick else ""),
        "grid": {"shape": list(shape), "box": "each sample's seed frame (bounding box + 3 Bohr; quick resamples it)",
                 "units": "electrons/Bohr^3", "precision": "references and reconstructions rounded to float16; "
                                                         "the model gets the float16 reference as float32"},
        "transforms": {"raw": "rho", "log1p": "log(rho + 1), natural log (the seed's)"},
        "ssim": {**SSIM, "filter": "separable Gaussian, valid region", "K1": 0.01, "K2": 0.03,
                 "data_range": "per sample max - min of the transformed reference"},
        "ms_ssim": {**MS_SSIM, "weights": "Wang et al. 2003, truncated to the scales and renormalized",
                    "scales": ms_ssim_num_scales(shape, MS_SSIM["win_size"])},
        "seed_metrics": "benchmarks.metrics.seed: the authors' per-molecule FID/KID/SSIM/MS-SSIM/PSNR/MAE on log(rho+1)",
        "fid_kid": {"extractors": dict(EXTRACTOR_TAGS), "between": "reference set vs reconstruction set "
                           "(unpaired; not the seed's)", "kid": {**KID, "kernel": "poly", "gamma": "1/dim"}},
        "lpips": lpips_status(vgg16_weights),
        "physical": {"nmae": "100 sum|pred - ref| / sum ref per sample (raw), %",
                     "electron_count": "sum(rho) |det(axes)| electrons",
                     "electron_count_error_vs_true": "vs the molecule's electron count",
                     "dipole": "nuclei (Z, Bohr) minus grid electrons, Debye (1 e Bohr = 2.541746473 D)"},
        "primary_metric": PRIMARY,
        "predictions": "keys (B,) str, grid_shapes (B, 3) int64, grid_values float16 flat C-order",
    }
    return {"protocol": protocol, "per_seed": per_seed, "predictions": predictions, "release": info, "_work": work}


def score_predictions(predictions: dict, data_root: Path, variant: str, quick: bool, vgg16_weights=None) -> list[dict]:
    """Recompute every metric from a predictions file against re-rendered references (streamed
    over the samples; the references are rebuilt under ``data_root`` when missing).

    Raises:
        ValueError: when the predictions do not cover the task's samples in order, or a shape or
        size is off.
    """
    import tempfile

    records, _ = test_records(variant, quick)
    keys = [str(k) for k in np.asarray(predictions["keys"]).ravel()]
    if keys != [r["key"] for r in records]:
        raise ValueError(f"predictions cover {len(keys)} samples, the task has {len(records)} (or another order)")
    shapes = np.asarray(predictions["grid_shapes"], np.int64)
    values = predictions["grid_values"]
    if values.dtype != np.float16 or values.ndim != 1:
        raise ValueError("grid_values must be a flat float16 array")
    if shapes.shape != (len(records), 3) or int(np.prod(shapes, axis=1).sum()) != values.size:
        raise ValueError(f"grid_shapes {shapes.shape} do not fit {values.size} grid values")
    prepare_data(data_root, variant, quick, progress=False)
    with tempfile.TemporaryDirectory(prefix="densegen-density-score-") as work:
        scorer, start = None, 0
        for s, shp in zip(iter_test_samples(data_root, variant, quick), shapes):
            want = task_shape(s, quick)
            if tuple(shp) != tuple(want):
                raise ValueError(f"{s['__key__']}: grid shape {tuple(shp)}, the task renders {tuple(want)}")
            rho, origin, axes = render_reference(s, want)
            n = int(np.prod(shp))
            pred = np.asarray(values[start:start + n]).reshape(tuple(shp))
            _check_values(pred.astype(np.float64), s["__key__"])
            start += n
            if scorer is None:
                scorer = DensityScorer(len(records), want, Path(work), vgg16_weights)
            scorer.add(rho, pred, origin, axes, _sample_atoms(s), int(s["n_electrons"]))
        metrics = scorer.finish()
    return [{"seed": 0, **metrics, "n_samples": len(records)}]


_TASK_METRICS = {  # the task's own, beside the catalog's
    "electron_count_error_vs_true": Metric("electron_count_error_vs_true", "electrons", True,
                                           "|N(rho_hat) - n_electrons| on the task grid, mean over molecules"),
    "reference_electron_count_error": Metric("reference_electron_count_error", "electrons", None,
                                             "|N(rho) - n_electrons| of the reference grid itself (its quadrature "
                                             "and box error, for scale)"),
}


class DensityTask(Task):
    """Reconstruct electron-density grids of a fixed test set and score them (module docstring)."""

    name = "density-reconstruction"
    version = "2.0.0"
    input_kind = "density"
    needs = ("reconstruct",)
    data = ("variant qm9: the 1,000 qm9-small test molecules, RHF/STO-3G on the QM9 geometries "
            "(benchmarks/data/density-qm9-v1.tsv); variant pubchem: 200 pubchem-hf-density test-split molecules, "
            "RHF/STO-3G on committed final geometries (benchmarks/data/density-pubchem-v1.jsonl); built under the "
            "data root on first use and verified against the pinned energies and electron counts on every run")
    split = "the pinned tables (test molecules of the project's identity-hash split)"
    primary_metric = PRIMARY
    lower_is_better = True
    min_seeds_leaderboard = 1
    default_seeds = 1
    protocol = ("render each test molecule's density (e/Bohr^3) on the seed's 128^3 frame, rounded to float16 -> "
                "model.reconstruct -> metrics on the float16 reconstruction (details in benchmarks/task_density.py)")
    quick = f"the first {QUICK_SIZE} test molecules on {QUICK_SHAPE[0]}^3 grids over the same box"
    variants = VARIANTS
    prediction_dtypes = {"keys": "US", "grid_shapes": "iu", "grid_values": "f"}
    perfect_scores = {PRIMARY: (0.0, 1e-3)}  # percent: identity's bound, needs a reproduction
    optional_weight_metrics = tuple(f"lpips_{t}" for t in TRANSFORMS)  # VGG16 weights only where present

    def record(self, variant):
        """As Task.record, with the variant's pinned table as the split hash."""
        out = super().record(variant)
        out["split_sha256"] = test_records(self.check_variant(variant), False)[1]
        return out

    def metrics(self) -> dict[str, Metric]:
        from .metrics.catalog import METRICS

        return {name: _TASK_METRICS.get(name) or METRICS[name] for name in metric_names()}

    def evaluate(self, model, data_root, *, variant, seeds, quick, progress, head, vgg16_weights=None, **_):
        return run(model, data_root, variant, quick=quick, progress=progress, vgg16_weights=vgg16_weights)

    def rescore(self, predictions, data_root, *, variant, quick, vgg16_weights=None):
        return score_predictions(predictions, data_root, variant, quick, vgg16_weights)

    def plot(self, doc, predictions, data_root, stem, n: int = 3):
        from .plot import density_slices

        quick = bool(doc["protocol"].get("quick"))
        variant = self.check_variant(doc["task"]["variant"])
        prepare_data(data_root, variant, quick, progress=False)
        samples = [s for s, _ in zip(iter_test_samples(data_root, variant, quick), range(n))]
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
