"""p1-crystals: synthetic P1, Z'=1 crystals of rigid random conformers (paper 002, section 4.4).

One input = one conformer: the undistorted conformer (``undistorted_positions``) of a
random-conformers release (version >= 2.0.0; earlier versions lack that field and are refused),
or a SMILES run through the same conformer pipeline (its undistorted conformer). The noise and
rescale of the random-conformers ``positions`` are autoencoder-training augmentations; crystals
are built from the plain conformer, as in the authors' code (``process_smiles_to_crystal_opt``
in MXtalTools' ``parallel_synthesis.py`` builds crystals from ``process_smiles_list`` samples,
which are not noised; noise and rescale are applied in ``modeller.py preprocess_ae_inputs``).

Per input, with generators seeded by (build seed, key): random starts -> rigid-body LJ
optimization (Adam at the optimization cutoff) -> Newton refinement to a stationary point of
the stored LJ energy (stored cutoff) -> optima kept when converged, stationary and below the
authors' filter -> ``n_noisy`` noisy copies of each, kept when below the same filter
(``builders.crystals.optimize``). Every crystal is one sample keyed ``<input key>-cNN``
(optimum NN) or ``<input key>-cNN-nKK`` (noise draw KK of it); all crystals of a molecule carry
the molecule's InChIKey, so they share one split. Energies: ``lj_energy`` and
``buckingham_energy`` are lattice energies per molecule (every pair of the infinite crystal
once); the ``*_mxtaltools`` fields are the authors' convention, twice that
(``builders.crystals.energy``). MACE energies: ``builders.crystals.mace``.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from builders.crystals.params import CrystalParams
from builders.format.failures import MoleculeFailure
from builders.format.fields import Field
from builders.format.params import add_arguments, from_args, resolve
from builders.format.spec import NO_PERSONAL_DATA, Built, Input, ReleaseSpec
from builders.conformers.release import RandomConformers, molecule_rng

CONFORMER_RELEASE = "random-conformers"
CONFORMER_SOURCE = "random-conformers"  # Input.source of inputs read from a conformer release
BUILD_HINT = "python -m builders build random-conformers --limit 200"
MIN_CONFORMER_VERSION = 2  # major version of random-conformers that stores undistorted_positions
_LJ = "LJ units (eps = 1) per molecule"
_BH = "Buckingham units per molecule"

#: the fields of a p1-crystals sample (the one place they are declared)
FIELDS = (
    Field("atomic_numbers", "uint8", (None,), "", "Z of each atom of the molecule"),
    Field("positions", "float64", (None, 3), "Angstrom", "the molecule in its standard frame (centred, principal axes)"),
    Field("params", "float64", (12,), "Angstrom, radian, fractional",
          "cell lengths a, b, c; angles alpha, beta, gamma; fractional centroid; orientation rotation vector"),
    Field("cell", "float64", (3, 3), "Angstrom", "cell matrix, rows = lattice vectors a, b, c"),
    Field("inchikey", "string", (), "", "the conformer's InChIKey (stereo removed), shared by all crystals of the molecule; the split "
          "uses its first (connectivity) block",
          meta=True),
    Field("smiles", "string", (), "", "SMILES of the molecule", meta=True),
    Field("parent_key", "string", (), "", "key of the input conformer", meta=True),
    Field("parent_source", "string", (), "", "where the conformer came from (random-conformers or a file)",
          meta=True),
    Field("seed", "int64", (), "", "build seed", meta=True),
    Field("is_optimum", "bool", (), "", "a refined optimum (else a noisy copy of one)", meta=True),
    Field("optimum_key", "string", (), "", "key of the optimum this crystal is (or is a copy of)", meta=True),
    Field("lj_energy", "float64", (), _LJ, "Lennard-Jones lattice energy, every pair of the crystal once",
          meta=True),
    Field("buckingham_energy", "float64", (), _BH, "Buckingham lattice energy, every pair once", meta=True),
    Field("lj_energy_mxtaltools", "float64", (), "LJ units (eps = 1)", "the authors' convention: 2 x lj_energy",
          meta=True),
    Field("buckingham_energy_mxtaltools", "float64", (), "Buckingham units",
          "the authors' convention: 2 x buckingham_energy", meta=True),
    Field("scaled_lj_mxtaltools", "float64", (), "", "the authors' scaled LJ (their filter keeps < 3)", meta=True),
    Field("packing_coefficient", "float64", (), "", "molecular vdW volume / cell volume", meta=True),
    Field("molecular_volume_a3", "float64", (), "Angstrom^3", "vdW volume of the molecule", meta=True),
    Field("cell_volume_a3", "float64", (), "Angstrom^3", "volume of the cell", meta=True),
    Field("min_contact_ratio", "float64", (), "", "shortest intermolecular contact / vdW-radius sum", meta=True,
          nullable=True),
    Field("energy_cutoff_a", "float64", (), "Angstrom", "pair cutoff of the stored energies", meta=True),
    Field("opt_cutoff_a", "float64", (), "Angstrom", "LJ cutoff of the Adam stage", meta=True),
    Field("noise_sigma", "float64", (), "", "noise on the standardized parameters (0 for an optimum)", meta=True),
    Field("opt_steps", "int64", (), "", "Adam steps of the optimum's run", meta=True),
    Field("opt_initial_lj_energy", "float64", (), _LJ, "LJ energy of the random start (Adam cutoff)", meta=True),
    Field("opt_final_lj_energy", "float64", (), _LJ, "LJ energy after Adam (Adam cutoff)", meta=True),
    Field("opt_converged", "bool", (), "", "Adam met its stopping rule", meta=True),
    Field("opt_grad_norm", "float64", (), "natural units", "gradient norm after refinement (stored cutoff)",
          meta=True),
    Field("opt_refine_steps", "int64", (), "", "Newton refinement steps", meta=True),
    Field("molecule_n_starts", "int64", (), "", "random starts of this molecule", meta=True),
    Field("molecule_n_converged", "int64", (), "", "starts whose Adam run converged", meta=True),
    Field("molecule_n_stationary", "int64", (), "", "converged starts refined to a stationary point", meta=True),
    Field("molecule_n_above_lj_max", "int64", (), "", "stationary optima rejected by the authors' filter",
          meta=True),
    Field("molecule_n_rejected_extra", "int64", (), "", "optima rejected by the optional extra filters",
          meta=True),
    Field("molecule_n_optima", "int64", (), "", "optima kept", meta=True),
    Field("molecule_n_copies", "int64", (), "", "noisy copies kept", meta=True),
    Field("molecule_n_copies_rejected", "int64", (), "", "noisy copies rejected by the authors' filter",
          meta=True),
    Field("mace_lattice_energy_ev", "float64", (), "eV per molecule", "MACE lattice energy (with --mace-model)",
          meta=True, optional=True),
    Field("mace_cell_energy_ev", "float64", (), "eV", "MACE energy of the cell (with --mace-model)", meta=True,
          optional=True),
    Field("mace_gas_energy_ev", "float64", (), "eV", "MACE energy of the isolated molecule (with --mace-model)",
          meta=True, optional=True),
)


def conformer_text(sample: dict) -> str:
    """The Input.text of a conformer read from a release: compact JSON holding the SMILES,
    InChIKey, atomic numbers and ``positions`` = the sample's ``undistorted_positions``
    (Angstrom; float32 values written exactly), the conformer before noise and rescale."""
    return json.dumps({"smiles": sample["meta"]["smiles"], "inchikey": sample["meta"]["inchikey"],
                       "z": [int(v) for v in sample["atomic_numbers"]],
                       "positions": [[float(c) for c in row] for row in sample["undistorted_positions"]]},
                      separators=(",", ":"), sort_keys=True)


def conformer_inputs(path: Path) -> list[Input]:
    """Every sample of a random-conformers release (all splits) as an Input, ordered by a
    hash of the key (so ``--limit N`` takes a mix of splits and sources).

    Raises:
        FileNotFoundError: when ``path`` holds no release, saying how to build one.
    """
    from builders.format.manifest import has_manifest
    from builders.format.reader import iter_release, read_manifest

    path = Path(path)
    if not has_manifest(path):
        raise FileNotFoundError(
            f"no random-conformers release at {path}: build it first, e.g. `{BUILD_HINT}` "
            f"(with the same --root), or pass --conformers PATH, or --input SMILES_FILE")
    manifest = read_manifest(path)
    if manifest.release != CONFORMER_RELEASE:
        raise ValueError(f"{path} is a {manifest.release!r} release, not {CONFORMER_RELEASE}")
    version = manifest.release_version
    if manifest.major_version < MIN_CONFORMER_VERSION:
        raise ValueError(
            f"{path} is random-conformers {version}, which has no undistorted_positions (its positions carry the "
            f"training noise and rescale); crystals need the undistorted conformer: rebuild the conformer release "
            f"with this densegen (version >= {MIN_CONFORMER_VERSION}.0.0), e.g. `{BUILD_HINT}`")
    items = [Input(s["__key__"], conformer_text(s), CONFORMER_SOURCE)
             for split in manifest.split_names for s in iter_release(path, split)]
    items.sort(key=lambda i: hashlib.sha256(i.key.encode()).hexdigest())
    return items


def _conformer(item: Input, params: dict, seed: int) -> dict:
    """(z uint8 (N,), positions float64 (N, 3) Angstrom, smiles, inchikey) of one input: the
    undistorted conformer (read from the release text, or made now from a SMILES)."""
    if item.source == CONFORMER_SOURCE:
        rec = json.loads(item.text)
        return {"z": np.asarray(rec["z"], dtype=np.uint8), "positions": np.asarray(rec["positions"], dtype=np.float64),
                "smiles": rec["smiles"], "inchikey": rec["inchikey"]}
    sample = RandomConformers().process(item, {"conformer": params.get("conformer", {})}, seed)
    return {"z": sample["atomic_numbers"], "positions": sample["undistorted_positions"].astype(np.float64),
            "smiles": sample["meta"]["smiles"], "inchikey": sample["meta"]["inchikey"]}


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class P1Crystals(ReleaseSpec):
    name = "p1-crystals"
    version = "2.0.0"
    license = "mit"
    pretty_name = "densegen synthetic P1 molecular crystals"
    summary = ("Synthetic P1, Z'=1 molecular crystals of rigid, undistorted random conformers: random cells at "
               "packing coefficient 0.5, rigid-body Lennard-Jones optimization of the cell and orientation "
               "refined to stationary points of the stored 10 A energy, plus up to 10 noisy copies of each "
               "optimum, all filtered like the authors' code (scaled LJ < 3), with Lennard-Jones and Buckingham "
               "lattice energies per molecule and in the authors' convention (and MACE lattice energies when "
               "built with a local MACE model) and packing coefficients.")
    unit_size = 8
    samples_per_shard = 20_000
    parquet_rows_per_file = 100_000

    def parquet_config_names(self, params: dict) -> tuple[str, ...]:
        return ("default",)
    tags = ("chemistry", "molecules", "3d", "crystals", "crystal-structure", "webdataset")

    # ---- parameters -------------------------------------------------------------------
    def add_arguments(self, parser):
        parser.add_argument("--conformers", type=Path, default=None,
                            help="random-conformers release folder (default: ROOT/densegen/random-conformers)")
        parser.add_argument("--input", type=Path, default=None,
                            help="a SMILES file, run through the random-conformers pipeline, instead of a release")
        add_arguments(parser, CrystalParams)
        parser.add_argument("--mace-model", type=Path, default=None,
                            help="local MACE model file: adds MACE lattice energies (needs pip install mace-torch)")

    def params_from_args(self, args) -> dict:
        from builders.format.manifest import release_dir
        from builders.conformers.random_conformer import ConformerParams

        conformers = None
        if args.input is None:
            conformers = str(args.conformers or release_dir(args.root, CONFORMER_RELEASE))
        return {"conformers": conformers, "input": str(args.input) if args.input else None,
                "conformer": ConformerParams().to_dict(), **from_args(CrystalParams, args),
                "mace_model": str(args.mace_model) if args.mace_model else None}

    def resolve_params(self, params: dict) -> dict:
        """Defaults filled in; with a MACE model, checks mace-torch and the file now (one clear
        error for the whole build) and records the file's sha256."""
        from builders.conformers.random_conformer import ConformerParams

        out = {"conformers": params.get("conformers"), "input": params.get("input"),
               "conformer": ConformerParams(**params.get("conformer", {})).to_dict()}
        out.update(resolve(CrystalParams, params, extra=("conformers", "input", "conformer", "mace_model",
                                                          "mace_model_sha256", "mace_dtype")))
        if out["n_starts"] < 1 or out["n_noisy"] < 0 or out["noise_sigma"] < 0 or not 0 < out["target_packing"] < 1:
            raise ValueError("need --starts >= 1, --noisy >= 0, --noise-sigma >= 0 and 0 < --target-packing < 1")
        if out["cutoff"] <= 0 or out["opt_cutoff"] <= 0:
            raise ValueError("cutoffs must be positive (Angstrom)")
        if out["grad_tol"] <= 0:
            raise ValueError("--grad-tol must be positive")
        mace_model = params.get("mace_model")
        out["mace_model"] = None
        out["mace_model_sha256"] = None
        out["mace_dtype"] = "float64"
        if mace_model:
            from builders.crystals.mace import file_sha256, model_file, require_mace

            path = model_file(mace_model).resolve()
            require_mace()
            out["mace_model"] = str(path)
            out["mace_model_sha256"] = params.get("mace_model_sha256") or file_sha256(path)
        return out

    # ---- inputs and processing ----------------------------------------------------------
    def load_inputs(self, params: dict):
        if params.get("input"):
            from builders.sources import smiles_file_inputs

            return smiles_file_inputs(Path(params["input"]))
        if not params.get("conformers"):
            raise ValueError("p1-crystals needs a random-conformers release (params['conformers']) or a SMILES file "
                             f"(params['input']); build the release first: `{BUILD_HINT}`")
        return conformer_inputs(Path(params["conformers"])), []

    def process(self, item: Input, params: dict, seed: int) -> list:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # deterministic, and fair to the other worker processes
        try:
            return self._process(item, params, seed)
        finally:
            torch.set_num_threads(threads)

    def _process(self, item: Input, params: dict, seed: int) -> list:
        import torch

        from builders.crystals.energy import MXTALTOOLS_FACTOR, min_contact_ratio, scaled_lj_mxtaltools
        from builders.crystals.molecules import MoleculeBatch
        from builders.crystals.optimize import generate_crystals
        from builders.crystals.volume import vdw_volume

        t0 = time.process_time()
        mol = _conformer(item, params, seed)
        z, pos = mol["z"], mol["positions"]
        timings = {"conformer": time.process_time() - t0}
        t0 = time.process_time()
        mace_model = self._mace_model(z, params) if params.get("mace_model") else None
        if mace_model is not None:
            timings["mace"] = time.process_time() - t0  # model loading (once per process)
        rng = molecule_rng(seed, f"{item.key}:crystals")
        crystal_seed = int(rng.integers(0, 2**63 - 1))

        t0 = time.process_time()
        volume = vdw_volume(z, pos, spacing=params["volume_spacing"])
        cs = generate_crystals([(z, pos)], params["n_starts"], crystal_seed, target_packing=params["target_packing"],
                               scaled_lj_max=params["scaled_lj_max"], energy_threshold=params["energy_threshold"],
                               n_noisy=params["n_noisy"], noise_sigma=params["noise_sigma"], cutoff=params["cutoff"],
                               opt_cutoff=params["opt_cutoff"], max_steps=params["max_steps"],
                               grad_tol=params["grad_tol"], refine_steps=params["refine_steps"], mol_volumes=[volume],
                               max_grad_norm=params["max_grad_norm"] or None)
        mols = MoleculeBatch.from_molecules([(z, pos)])
        contact = (min_contact_ratio(cs.params, mols, cs.mol_index, cutoff=max(params["opt_cutoff"], 6.0))
                   if len(cs) else torch.zeros(0, dtype=torch.float64))
        timings["crystals"] = time.process_time() - t0

        # optima (with their copies) that pass the optional contact filter (rows: optimum, copies...)
        st = cs.stats
        opt_rows = cs.is_optimum.nonzero().squeeze(1).tolist()
        limit = params.get("min_contact_ratio")
        good = [r for r in opt_rows if limit is None or float(contact[r]) >= limit]
        n_extra = st["n_above_energy_threshold"] + len(opt_rows) - len(good)
        if not good:
            extra = []
            if params.get("energy_threshold") is not None:
                extra.append(f"{st['n_above_energy_threshold']} above the optional E_LJ < {params['energy_threshold']}")
            if limit is not None:
                extra.append(f"{len(opt_rows) - len(good)} with a contact closer than the optional {limit} x vdW sum")
            raise MoleculeFailure("optimize", (
                f"no crystal kept: {st['n_converged']} of {st['n_starts']} starts converged (Adam, "
                f"{params['opt_cutoff']} A), {st['n_stationary']} refined to a stationary point at {params['cutoff']} A "
                f"(|grad| <= {params['grad_tol']}), {st['n_above_lj_max']} of these rejected by the authors' filter "
                f"(E_LJ >= {st['lj_max']:.4f}, i.e. scaled LJ >= {params['scaled_lj_max']})"
                + ("; " + ", ".join(extra) if extra else "")))
        parent = cs.parent.tolist()
        rows = [(j, r, [c for c in range(len(cs)) if parent[c] == r]) for j, r in enumerate(good)]
        flat = [r for _, r, copies in rows for r in [r, *copies]]
        energies = torch.stack((cs.lj, cs.buckingham, cs.packing, contact))[:, flat]
        if not bool(torch.isfinite(energies[:3]).all()):
            raise MoleculeFailure("energy", "a crystal has a non-finite LJ or Buckingham energy or packing coefficient")

        mace = None
        if mace_model is not None:
            t0 = time.process_time()
            mace = self._mace(mace_model, z, cs, mols, flat)
            timings["mace"] += time.process_time() - t0

        std = mols.coords[0].numpy().copy()
        n_copies = sum(len(copies) for _, _, copies in rows)
        stats = {"molecule_n_starts": st["n_starts"], "molecule_n_converged": st["n_converged"],
                 "molecule_n_stationary": st["n_stationary"], "molecule_n_above_lj_max": st["n_above_lj_max"],
                 "molecule_n_rejected_extra": n_extra, "molecule_n_optima": len(good),
                 "molecule_n_copies": n_copies, "molecule_n_copies_rejected": len(good) * params["n_noisy"] - n_copies}
        scaled = scaled_lj_mxtaltools(cs.lj)
        out = []
        for j, r, copies in rows:
            opt_suffix = f"c{j:02d}"
            for c in [r, *copies]:
                suffix = opt_suffix if c == r else f"{opt_suffix}-n{int(cs.copy_index[c]):02d}"
                meta = {
                    "inchikey": mol["inchikey"], "smiles": mol["smiles"], "parent_key": item.key,
                    "parent_source": item.source, "seed": int(seed), "is_optimum": c == r,
                    "optimum_key": f"{item.key}-{opt_suffix}", "lj_energy": float(cs.lj[c]),
                    "buckingham_energy": float(cs.buckingham[c]),
                    "lj_energy_mxtaltools": MXTALTOOLS_FACTOR * float(cs.lj[c]),
                    "buckingham_energy_mxtaltools": MXTALTOOLS_FACTOR * float(cs.buckingham[c]),
                    "scaled_lj_mxtaltools": float(scaled[c]), "packing_coefficient": float(cs.packing[c]),
                    "molecular_volume_a3": float(volume), "cell_volume_a3": float(torch.linalg.det(cs.cell[c])),
                    "min_contact_ratio": _finite(contact[c]), "energy_cutoff_a": params["cutoff"],
                    "opt_cutoff_a": params["opt_cutoff"], "noise_sigma": params["noise_sigma"] if c != r else 0.0,
                    "opt_steps": int(cs.opt_steps[r]), "opt_initial_lj_energy": float(cs.opt_initial_energy[r]),
                    "opt_final_lj_energy": float(cs.opt_final_energy[r]), "opt_converged": bool(cs.opt_converged[r]),
                    "opt_grad_norm": float(cs.opt_grad_norm[r]), "opt_refine_steps": int(cs.opt_refine_steps[r]),
                    **stats,
                }
                if mace is not None:
                    i = flat.index(c)
                    meta.update({"mace_lattice_energy_ev": float(mace["lattice"][i]),
                                 "mace_cell_energy_ev": float(mace["cell"][i]),
                                 "mace_gas_energy_ev": float(mace["gas"])})
                fields = {"atomic_numbers": np.asarray(z, dtype=np.uint8), "positions": std,
                          "params": cs.params[c].numpy().astype(np.float64),
                          "cell": cs.cell[c].numpy().astype(np.float64), "meta": meta}
                out.append((suffix, fields))
        return Built(out, timings)

    @staticmethod
    def _mace_model(z, params):
        """The build's MACE model (loaded once per process), checked to cover the elements of z."""
        from builders.crystals.mace import cached_model

        try:
            model = cached_model(params["mace_model"], params["mace_model_sha256"], "cpu", params["mace_dtype"])
        except Exception as err:  # noqa: BLE001  (checked at startup; a file changed or broken since must still be visible)
            raise MoleculeFailure("mace", f"{type(err).__name__}: {err}") from None
        missing = model.missing_elements(z)
        if missing:
            raise MoleculeFailure("mace", f"the MACE model has no parameters for elements {missing}")
        return model

    @staticmethod
    def _mace(model, z, cs, mols, flat) -> dict:
        """MACE energies (eV) of the crystals in rows ``flat`` of ``cs`` (see crystals.mace)."""
        import torch

        from builders.crystals.energy import pose_molecules

        idx = torch.tensor(flat)
        H, coords, _ = pose_molecules(cs.params[idx], mols, torch.zeros_like(idx))
        n = len(z)
        res = model.lattice_energies(z, coords[:, :n].numpy(), H.numpy(), std_positions=mols.coords[0, :n].numpy())
        if not (np.isfinite(res["lattice"]).all() and math.isfinite(res["gas"])):
            raise MoleculeFailure("mace", "non-finite MACE energy")
        return res

    # ---- schema and card ----------------------------------------------------------------
    def fields(self, config: str = "default", params: dict | None = None) -> list[Field]:
        with_mace = bool(params and params.get("mace_model"))
        return [f for f in FIELDS if with_mace or not f.name.startswith("mace_")]

    def preview(self, release_path, key: str, out_png):
        """Draw crystal ``key``: its unit cell and molecules (builders.crystals.preview)."""
        from builders.crystals.preview import draw_crystal
        from builders.format.reader import find_sample

        return draw_crystal(find_sample(release_path, key), out_png)

    def responsible_ai(self, manifest: dict) -> dict:
        return {
            "data_collection": ("Computed, not measured: synthetic P1, Z'=1 crystals of the undistorted conformers "
                                "of a densegen random-conformers release, from random cells at packing 0.5 and "
                                "rigid-body Lennard-Jones optimization (paper 002, section 4.4)."),
            "data_preprocessing_protocol": ("Optima refined to stationary points of the stored 10 A energy, up to "
                                            "10 noisy copies each, every crystal kept only below the authors' "
                                            "filter (scaled LJ < 3); thresholds listed in the card."),
            "data_biases": ("Rigid molecules, one per cell, space group P1 only; the molecules are those of "
                            "random-conformers (small, H/C/N/O/F). Energies are from generic LJ and Buckingham "
                            "potentials, not fitted to these molecules, so their ranking of packings is not "
                            "that of real lattice energies."),
            "data_limitations": ("Not experimental or predicted real crystal structures; no symmetry beyond P1; "
                                 "energies are model potentials (MACE only when built with a local model)."),
            "data_use_cases": ("Training and benchmarking models of molecular-crystal energy and packing from "
                               "point clouds (the crystal-energy task)."),
            "personal_sensitive_information": NO_PERSONAL_DATA,
        }

    def card_body(self, manifest: dict) -> str:
        from builders.crystals.optimize import lj_bound

        p = manifest.parameters
        mace = (f"MACE lattice energies from the local model file `{Path(p['mace_model']).name}` (sha256 "
                f"`{p['mace_model_sha256']}`), evaluated in {p['mace_dtype']}." if p.get("mace_model")
                else "This build has no MACE energies (built without `--mace-model`).")
        lj_max = lj_bound(p["scaled_lj_max"])
        thr, contact = p.get("energy_threshold"), p.get("min_contact_ratio")
        return CARD_BODY.format(
            starts=p["n_starts"], packing=p["target_packing"], opt_cutoff=p["opt_cutoff"], max_steps=p["max_steps"],
            clip=p.get("max_grad_norm") or "(off)", noisy=p["n_noisy"], sigma=p["noise_sigma"], cutoff=p["cutoff"],
            grad_tol=p["grad_tol"], refine_steps=p["refine_steps"], scaled=p["scaled_lj_max"],
            lj_max=f"{lj_max:.4f}", lj_max_mxt=f"{2 * lj_max:.4f}",
            threshold="off" if thr is None else f"E_LJ < {thr} (stored cutoff)",
            contact="off" if contact is None else f"shortest contact >= {contact} x vdW sum",
            mace=mace)


CARD_BODY = """## How it was built

Paper 002 (Mo3ENet), section 4.4 and appendix F, and the authors' code (MXtalTools,
`mxtaltools/dataset_utils/construction/parallel_synthesis.py`, `process_smiles_to_crystal_opt`).
Inputs are the **undistorted** conformers (`undistorted_positions`) of a `random-conformers`
release, version >= 2.0.0 (or SMILES run through the same conformer pipeline, taking its
undistorted conformer): the Gaussian noise and global rescale of that release's `positions`
are autoencoder-training augmentations and are not used here, as in the authors' code
(crystals are built from `process_smiles_list` samples; noise and rescale are applied in
`modeller.py`, `preprocess_ae_inputs`). Each molecule is a rigid body; per molecule, with a
generator seeded by (build seed, key):

1. {starts} random P1, Z'=1 starts: cell angles uniform in [70, 110] deg, orientation uniform
   on SO(3), centroid uniform in the cell, cell lengths from the posed molecule's extent + 3 A
   with random aspect factors, scaled to a packing coefficient of exactly {packing}.
2. Rigid-body optimization against the Lennard-Jones energy per molecule at a {opt_cutoff} A
   cutoff (the cheap stage): Adam on log lengths and logit-mapped angles (kept in
   [60.5, 119.5] deg), each crystal's gradient clipped to norm {clip} (most random starts
   have clashes whose huge gradients would otherwise stall Adam in loose cells), at most
   {max_steps} steps, converged when the energy stops decreasing.
3. Refinement of each converged optimum at the stored cutoff ({cutoff} A): damped Newton
   steps with exact analytic derivatives on the 9 cell + orientation parameters (at most
   {refine_steps} steps), until the gradient of the stored LJ energy has norm <= {grad_tol} in
   natural units (per unit relative change of a cell length, per radian of cell angle, per
   radian of rigid rotation of the molecule; u, v, w do not enter P1 energies) and the Hessian
   has no eigenvalue below -1e-6 x its largest |eigenvalue| (a minimum, not a saddle). So every stored optimum is a
   stationary point of the stored energy (`meta.opt_grad_norm`). When Newton moves a cell
   angle out of [60.5, 119.5] deg, the crystal is re-expressed on a reduced basis of the
   same lattice (same crystal, same energies; angles then in [60, 120] deg).
4. Kept optima: see the filters below.
5. {noisy} noisy copies drawn per kept optimum: Gaussian noise of standard deviation {sigma}
   on the standardized parameters (log lengths / 0.5, angles / 0.2015 rad, fractional
   coordinates / 0.2887, rotation-vector components / 1.328 rad), then angles clipped into
   [60.5, 119.5] deg, fractional coordinates wrapped into [0, 1). A copy is kept only if it
   passes the authors' filter, so an optimum has at most {noisy} copies.
6. Energies of every crystal (optima and copies) with a {cutoff} A cutoff.

### Filters in effect

| filter | applied to | this build | whose |
|---|---|---|---|
| scaled LJ < {scaled} in the authors' convention, i.e. `lj_energy` < (e^{scaled} - 1) / 2 = {lj_max} (`lj_energy_mxtaltools` < {lj_max_mxt}) at {cutoff} A | optima and noisy copies | on | the authors' (their threshold is 3: `scaled_lj < 3`, applied to the optima and again to optima + copies in `process_smiles_to_crystal_opt`) |
| Adam converged (energy drop < 1e-3 + 1e-4 x \\|E\\| over the last 20 steps) | optima | on | ours: an optimum must be a minimum |
| stationary: gradient norm <= {grad_tol} at {cutoff} A, no Hessian eigenvalue below -1e-6 x the largest, angles in [60, 120] deg | optima | on | ours: needed for stationarity |
| `energy_threshold` | optima | {threshold} | ours, optional |
| `min_contact_ratio` | optima (with their copies) | {contact} | ours, optional |

A molecule without any kept optimum is a recorded failure (stage `optimize`, with the counts
of each step in the reason).

Keys: `<conformer key>-cNN` is optimum NN of a molecule, `<conformer key>-cNN-nKK` its noise
draw KK (draws that failed the filter are absent, so KK can have gaps). Every crystal of a
molecule carries the molecule's InChIKey (`meta.inchikey`), so all of them are in the same
split: a molecule is never in two splits.

## Energies and conventions

* `meta.lj_energy`, `meta.buckingham_energy`: lattice energy **per molecule**: every
  intermolecular pair of the infinite crystal counted once per molecule (half the sum over
  the central molecule's pairs with all its images), pairs closer than {cutoff} A, without
  shift or tail correction. Both potentials use s_ij = r_vdw,i + r_vdw,j (RDKit vdW radii:
  H 1.20, C 1.70, N 1.60, O 1.55, F 1.50 A; MXtalTools' `VDW_RADII` table,
  `mxtaltools/constants/atom_properties.py`, has the same values for H to Ba).
  * Lennard-Jones, eps = 1 (dimensionless): E = 4 [(s/r)^12 - (s/r)^6], minimum -1 at r = 2^(1/6) s
    (the same form as MXtalTools' `compute_lj_edgewise`, `mxtaltools/analysis/vdw_analysis.py`).
  * Buckingham (dimensionless): E = A exp(-B r/s) - C (r/s)^-6 with B = 1, C = -0.2 and
    A = -1.2 e = -3.26194. Derivation: a minimum of -1 at r = s requires A e^-B - C = -1 and
    -A B e^-B + 6 C = 0; with B = 1 this gives C = -0.2 and A = 6 e C = -1.2 e. MXtalTools'
    `buckingham_energy` (`vdw_analysis.py`) uses the same form and scaling (distance divided
    by the vdW-radius sum) with A = -3.2619, B = 1, C = -0.2: its A is ours rounded, a relative
    difference of 1.2e-5 in the exponential term. With A, C < 0 the exponential is the
    attractive term, so the attraction decays slowly (a C...C pair still has E = -0.56 at 6 A).
* `meta.lj_energy_mxtaltools`, `meta.buckingham_energy_mxtaltools` = 2 x the per-molecule
  values: the authors' convention. MXtalTools sums the pair energy over the directed edges of
  `build_radial_graph` (`mxtaltools/models/functions/radial_graph.py`) from every atom of the
  asymmetric unit to every atom of the other molecules of its cluster within the cutoff
  (`lj_analysis`, `buckingham_energy`), i.e. over all images n != 0, which counts each pair
  of the crystal twice. Their crystal energies use a 10 A cutoff, as here: the LJ of the
  filter (`build_and_analyze(cutoff=10)`: in `sample_about_crystal` for the copies, in the
  optimizer's record for the optima) and the Buckingham
  targets of the energy regression (`embed_dataloader_dataset` in `mxtaltools/modeller.py`
  recomputes them with `embed_crystal_list(..., redo_crystal_analysis=True)`,
  `mxtaltools/models/utils.py`, at 10 A, and clips the targets to their 0.5-99.5% quantiles).
  To compare with paper 002 (Fig. 7), use the `_mxtaltools` fields (or divide their values
  by 2). `meta.scaled_lj_mxtaltools` = their `scaled_lj` = `log_rescale_positive`
  (`mxtaltools/common/utils.py`) of `lj_energy_mxtaltools`: the value itself if <= 0, else
  log(1 + value).
* Cutoff choice: stored energies use {cutoff} A (the authors' code uses 10 A; the paper text
  says 6 A, which drops much of the slowly decaying Buckingham attraction); the Adam stage uses
  {opt_cutoff} A for speed, the refinement {cutoff} A.
* `meta.packing_coefficient` = V_vdW(molecule) / V_cell (Z = 1), the molecular volume being
  the union of the vdW spheres (`meta.molecular_volume_a3`, A^3).
* MACE (optional): `meta.mace_lattice_energy_ev` = E_cell / Z - E_gas in eV per molecule,
  E_cell the MACE energy of the periodic unit cell, E_gas that of the same rigid molecule in
  vacuum (`meta.mace_cell_energy_ev`, `meta.mace_gas_energy_ev`). {mace}

### Where this differs from the authors' code

* Their optimization (`gradient_descent_optimization` and `compute_auxiliary_loss` in
  `mxtaltools/crystal_search/crystal_opt_utils.py`, called with `do_box_restriction=True`,
  `compression_factor=0.1`, `cutoff=10`) minimizes the LJ sum plus a box-restriction term
  (80000 / l^12 per asymmetric-unit length) and 0.1 x the sum of the asymmetric-unit lengths;
  here the optima minimize the LJ energy alone and are refined to stationary points of it.
* Their noisy copies (`sample_about_crystal(noise_level=0.05, cutoff=10)`, which
  `noise_cell_parameters` applies to their own standardized cell parameters) and ours (noise
  0.05 on the standardization above) are not on the same scale.
* Convergence and stationarity of optima are required here (our additions).
* Versions read: MXtalTools HEAD and, for `sample_about_crystal` (still imported by
  `parallel_synthesis.py` at HEAD but removed in commit 8dea6b56), commit 8dea6b56^; the
  optimizer that recorded the optima's `scaled_lj_pot` for the filter is
  `standalone_gradient_descent_optimization` (`crystal_search/standalone_crystal_opt.py`,
  e.g. at commit 1d2b807b).

## Crystal model and units

* `params.npy` (12, float64): a, b, c (Angstrom), alpha, beta, gamma (radians), u, v, w
  (fractional coordinates of the molecule's geometric centroid), rx, ry, rz (rotation vector,
  radians, from the molecule's standard frame to its pose).
* `cell.npy` (3 x 3, float64, Angstrom): rows are the lattice vectors; a along x, b in the xy
  plane; Cartesian = fractional @ cell.
* `positions.npy` (N x 3, float64, Angstrom): the rigid, undistorted molecule in its standard
  frame (centroid at the origin, axes = principal axes of the unit-weight inertia tensor,
  smallest moment first, signs fixed by the third moments). Atom positions in the crystal:
  `positions @ R(rx, ry, rz).T + (u, v, w) @ cell`, images translated by integer
  combinations of the cell rows. `atomic_numbers.npy` (uint8).

## Other fields (`meta.json`)

`is_optimum`, `optimum_key` (the optimum a copy comes from; its own key for an optimum),
`parent_key` / `parent_source` (the conformer), `smiles`, `seed`, `noise_sigma` (0 for
optima), `min_contact_ratio` (shortest intermolecular r / (r_vdw,i + r_vdw,j) within 6 A),
the optimization record of the optimum (`opt_steps` Adam steps, `opt_initial_lj_energy` and
`opt_final_lj_energy` at the Adam start and end at the {opt_cutoff} A cutoff, `opt_converged`,
`opt_grad_norm` the gradient norm of the stored energy at the stored optimum,
`opt_refine_steps` Newton steps) and per-molecule counts (`molecule_n_starts`,
`molecule_n_converged`, `molecule_n_stationary`, `molecule_n_above_lj_max` stationary optima
rejected by the authors' filter, `molecule_n_rejected_extra` rejected by the optional
filters, `molecule_n_optima`, `molecule_n_copies` kept, `molecule_n_copies_rejected`).

## Changes

### 2.0.0

* Crystals are built from the undistorted conformer (`undistorted_positions` of
  random-conformers >= 2.0.0; older conformer releases are refused). 1.x used the perturbed
  `positions` (Gaussian noise, 0.1 A in train, and a global rescale N(1, 0.1) clipped to
  [0.9, 1.25]), so its molecules had distorted bonds.
* Optima are refined to stationary points of the stored {cutoff} A energy (new
  `opt_grad_norm`, `opt_refine_steps`); in 1.x they were Adam optima of the 6 A energy only.
  Refined optima whose cell angle left [60.5, 119.5] deg are stored on a reduced basis.
* The authors' filter (scaled LJ < 3) is applied to optima and to noisy copies; 1.x kept
  optima with a 6 A LJ energy < 0 and a shortest contact >= 0.8 x vdW sum and kept every
  copy, however repulsive. Both 1.x filters are now optional and off by default
  (`energy_threshold` now acts on the stored-cutoff energy). Dropped copies leave gaps in KK.
* New fields `lj_energy_mxtaltools`, `buckingham_energy_mxtaltools`, `scaled_lj_mxtaltools`
  (the authors' convention, 2 x ours), `molecule_n_stationary`, `molecule_n_above_lj_max`,
  `molecule_n_rejected_extra`, `molecule_n_copies`, `molecule_n_copies_rejected`; removed
  `molecule_n_below_threshold`, `molecule_n_too_close`.
"""
