"""p1-crystals: synthetic P1, Z'=1 crystals of rigid random conformers (paper 002, section 4.4).

One input = one conformer (a sample of a random-conformers release, or a SMILES run through
the same conformer pipeline). Per input, with generators seeded by (build seed, key):
random starts -> rigid-body LJ optimization of the 12 cell parameters -> converged optima
below the energy threshold whose shortest intermolecular contact is at least
``min_contact_ratio`` x the vdW-radius sum -> ``n_noisy`` noisy copies of each optimum.
Every crystal is one sample keyed ``<input key>-cNN`` (optimum NN) or ``<input key>-cNN-nKK``
(its noisy copy KK); all crystals of a molecule carry the molecule's InChIKey, so they share
one split. The crystal model is ``builders.crystals``; MACE energies ``builders.crystals.mace``.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from ..failures import MoleculeFailure
from ..spec import Input, ReleaseSpec
from .random_conformers import RandomConformers, molecule_rng

CONFORMER_RELEASE = "random-conformers"
CONFORMER_SOURCE = "random-conformers"  # Input.source of inputs read from a conformer release
BUILD_HINT = "python -m builders build random-conformers --limit 200"


def defaults() -> dict:
    """Default build parameters (imported lazily: the CLI lists releases without torch)."""
    from ..crystals.energy import DEFAULT_CUTOFF
    from ..crystals.optimize import MAX_GRAD_NORM, MIN_CONTACT_RATIO, OPT_CUTOFF

    return {"n_starts": 4, "n_noisy": 10, "noise_sigma": 0.05, "energy_threshold": 0.0, "cutoff": DEFAULT_CUTOFF,
            "opt_cutoff": OPT_CUTOFF, "max_steps": 500, "max_grad_norm": MAX_GRAD_NORM, "target_packing": 0.5,
            "min_contact_ratio": MIN_CONTACT_RATIO, "volume_spacing": 0.05}


def conformer_text(sample: dict) -> str:
    """The Input.text of a conformer read from a release: compact JSON holding the SMILES,
    InChIKey, atomic numbers and positions (Angstrom; float32 values written exactly)."""
    return json.dumps({"smiles": sample["meta"]["smiles"], "inchikey": sample["meta"]["inchikey"],
                       "z": [int(v) for v in sample["atomic_numbers"]],
                       "positions": [[float(c) for c in row] for row in sample["positions"]]},
                      separators=(",", ":"), sort_keys=True)


def conformer_inputs(path: Path) -> list[Input]:
    """Every sample of a random-conformers release (all splits) as an Input, ordered by a
    hash of the key (so ``--limit N`` takes a mix of splits and sources).

    Raises:
        FileNotFoundError: when ``path`` holds no release, saying how to build one.
    """
    from ..reader import iter_release, read_manifest

    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no random-conformers release at {path}: build it first, e.g. `{BUILD_HINT}` "
            f"(with the same --root), or pass --conformers PATH, or --input SMILES_FILE")
    manifest = read_manifest(path)
    if manifest.get("release") != CONFORMER_RELEASE:
        raise ValueError(f"{path} is a {manifest.get('release')!r} release, not {CONFORMER_RELEASE}")
    items = [Input(s["__key__"], conformer_text(s), CONFORMER_SOURCE)
             for split in manifest["splits"] for s in iter_release(path, split)]
    items.sort(key=lambda i: hashlib.sha256(i.key.encode()).hexdigest())
    return items


def _conformer(item: Input, params: dict, seed: int) -> dict:
    """(z uint8 (N,), positions float64 (N, 3) Angstrom, smiles, inchikey) of one input."""
    if item.source == CONFORMER_SOURCE:
        rec = json.loads(item.text)
        return {"z": np.asarray(rec["z"], dtype=np.uint8), "positions": np.asarray(rec["positions"], dtype=np.float64),
                "smiles": rec["smiles"], "inchikey": rec["inchikey"]}
    sample = RandomConformers().process(item, {"conformer": params.get("conformer", {})}, seed)
    return {"z": sample["atomic_numbers"], "positions": sample["positions"].astype(np.float64),
            "smiles": sample["meta"]["smiles"], "inchikey": sample["meta"]["inchikey"]}


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class P1Crystals(ReleaseSpec):
    name = "p1-crystals"
    version = "1.0.0"
    license = "mit"
    pretty_name = "densegen synthetic P1 molecular crystals"
    summary = ("Synthetic P1, Z'=1 molecular crystals of rigid random conformers: random cells at packing "
               "coefficient 0.5, rigid-body Lennard-Jones optimization of the 12 cell parameters, converged "
               "optima plus 10 noisy copies each, with Lennard-Jones and Buckingham lattice energies (and MACE "
               "lattice energies when built with a local MACE model) and packing coefficients.")
    unit_size = 8
    samples_per_shard = 20_000
    tags = ("chemistry", "molecules", "3d", "crystals", "crystal-structure", "webdataset")

    # ---- parameters -------------------------------------------------------------------
    def add_arguments(self, parser):
        parser.add_argument("--conformers", type=Path, default=None,
                            help="random-conformers release folder (default: ROOT/densegen/random-conformers)")
        parser.add_argument("--input", type=Path, default=None,
                            help="a SMILES file, run through the random-conformers pipeline, instead of a release")
        parser.add_argument("--starts", type=int, default=None, help="random starts per molecule (default 4)")
        parser.add_argument("--noisy", type=int, default=None, help="noisy copies per kept optimum (default 10)")
        parser.add_argument("--noise-sigma", type=float, default=None,
                            help="noise on the standardized parameters (default 0.05)")
        parser.add_argument("--energy-threshold", type=float, default=None,
                            help="keep optima with LJ energy per molecule (at the optimization cutoff) below this "
                                 "(default 0; write negative values as --energy-threshold=-50)")
        parser.add_argument("--cutoff", type=float, default=None,
                            help="pair cutoff of the stored LJ/Buckingham energies, Angstrom (default 10)")
        parser.add_argument("--opt-cutoff", type=float, default=None,
                            help="LJ cutoff while optimizing, Angstrom (default 6)")
        parser.add_argument("--max-steps", type=int, default=None, help="optimizer step limit (default 500)")
        parser.add_argument("--max-grad-norm", type=float, default=None,
                            help="per-crystal gradient clipping of the optimizer (default 10; 0 = off)")
        parser.add_argument("--target-packing", type=float, default=None,
                            help="packing coefficient of the random starts (default 0.5)")
        parser.add_argument("--mace-model", type=Path, default=None,
                            help="local MACE model file: adds MACE lattice energies (needs pip install mace-torch)")

    def params_from_args(self, args) -> dict:
        from ..build import release_dir
        from ..chem.random_conformer import ConformerParams

        conformers = None
        if args.input is None:
            conformers = str(args.conformers or release_dir(args.root, CONFORMER_RELEASE))
        return {"conformers": conformers, "input": str(args.input) if args.input else None,
                "conformer": ConformerParams().to_dict(), "n_starts": args.starts, "n_noisy": args.noisy,
                "noise_sigma": args.noise_sigma, "energy_threshold": args.energy_threshold, "cutoff": args.cutoff,
                "opt_cutoff": args.opt_cutoff, "max_steps": args.max_steps, "target_packing": args.target_packing,
                "max_grad_norm": args.max_grad_norm,
                "mace_model": str(args.mace_model) if args.mace_model else None}

    def resolve_params(self, params: dict) -> dict:
        """Defaults filled in; with a MACE model, checks mace-torch and the file now (one clear
        error for the whole build) and records the file's sha256."""
        from ..chem.random_conformer import ConformerParams

        out = {"conformers": params.get("conformers"), "input": params.get("input"),
               "conformer": ConformerParams(**params.get("conformer", {})).to_dict()}
        for name, default in defaults().items():
            value = params.get(name)
            out[name] = type(default)(value) if value is not None else default
        if out["n_starts"] < 1 or out["n_noisy"] < 0 or out["noise_sigma"] < 0 or not 0 < out["target_packing"] < 1:
            raise ValueError("need --starts >= 1, --noisy >= 0, --noise-sigma >= 0 and 0 < --target-packing < 1")
        if out["cutoff"] <= 0 or out["opt_cutoff"] <= 0:
            raise ValueError("cutoffs must be positive (Angstrom)")
        mace_model = params.get("mace_model")
        out["mace_model"] = None
        out["mace_model_sha256"] = None
        out["mace_dtype"] = "float64"
        if mace_model:
            from ..crystals.mace import file_sha256, model_file, require_mace

            path = model_file(mace_model).resolve()
            require_mace()
            out["mace_model"] = str(path)
            out["mace_model_sha256"] = params.get("mace_model_sha256") or file_sha256(path)
        return out

    # ---- inputs and processing ----------------------------------------------------------
    def load_inputs(self, params: dict):
        if params.get("input"):
            from ..sources import smiles_file_inputs

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

        from ..crystals.energy import min_contact_ratio
        from ..crystals.molecules import MoleculeBatch
        from ..crystals.optimize import generate_crystals
        from ..crystals.volume import vdw_volume

        t0 = time.perf_counter()
        mol = _conformer(item, params, seed)
        z, pos = mol["z"], mol["positions"]
        timings = {"conformer": time.perf_counter() - t0}
        t0 = time.perf_counter()
        mace_model = self._mace_model(z, params) if params.get("mace_model") else None
        if mace_model is not None:
            timings["mace"] = time.perf_counter() - t0  # model loading (once per process)
        rng = molecule_rng(seed, f"{item.key}:crystals")
        crystal_seed = int(rng.integers(0, 2**63 - 1))

        t0 = time.perf_counter()
        volume = vdw_volume(z, pos, spacing=params["volume_spacing"])
        cs = generate_crystals([(z, pos)], params["n_starts"], crystal_seed, target_packing=params["target_packing"],
                               energy_threshold=params["energy_threshold"], n_noisy=params["n_noisy"],
                               noise_sigma=params["noise_sigma"], cutoff=params["cutoff"],
                               opt_cutoff=params["opt_cutoff"], max_steps=params["max_steps"], mol_volumes=[volume],
                               max_grad_norm=params["max_grad_norm"] or None)
        mols = MoleculeBatch.from_molecules([(z, pos)])
        contact = (min_contact_ratio(cs.params, mols, cs.mol_index, cutoff=max(params["opt_cutoff"], 6.0))
                   if len(cs) else torch.zeros(0, dtype=torch.float64))
        timings["crystals"] = time.perf_counter() - t0

        # optima that pass the contact check, each with its copies (rows: optimum, copies...)
        opt_rows = cs.is_optimum.nonzero().squeeze(1).tolist()
        good = [r for r in opt_rows if float(contact[r]) >= params["min_contact_ratio"]]
        n_close = len(opt_rows) - len(good)
        if not good:
            raise MoleculeFailure("optimize", f"no crystal kept: {cs.stats['n_converged']} of {cs.stats['n_starts']} "
                                  f"starts converged, {cs.stats['n_kept_optima']} below E_LJ "
                                  f"{params['energy_threshold']}, {n_close} of them with a contact closer than "
                                  f"{params['min_contact_ratio']} x the vdW sum")
        parent = cs.parent.tolist()
        rows = [(j, r, [c for c in range(len(cs)) if parent[c] == r]) for j, r in enumerate(good)]
        flat = [r for _, r, copies in rows for r in [r, *copies]]
        energies = torch.stack((cs.lj, cs.buckingham, cs.packing, contact))[:, flat]
        if not bool(torch.isfinite(energies[:3]).all()):
            raise MoleculeFailure("energy", "a crystal has a non-finite LJ or Buckingham energy or packing coefficient")

        mace = None
        if mace_model is not None:
            t0 = time.perf_counter()
            mace = self._mace(mace_model, z, cs, mols, flat)
            timings["mace"] += time.perf_counter() - t0

        std = mols.coords[0].numpy().copy()
        stats = {"molecule_n_starts": cs.stats["n_starts"], "molecule_n_converged": cs.stats["n_converged"],
                 "molecule_n_below_threshold": cs.stats["n_kept_optima"], "molecule_n_too_close": n_close,
                 "molecule_n_optima": len(good)}
        out = []
        for j, r, copies in rows:
            opt_suffix = f"c{j:02d}"
            for k, c in enumerate([r, *copies]):
                suffix = opt_suffix if c == r else f"{opt_suffix}-n{k - 1:02d}"
                meta = {
                    "inchikey": mol["inchikey"], "smiles": mol["smiles"], "parent_key": item.key,
                    "parent_source": item.source, "seed": int(seed), "is_optimum": c == r,
                    "optimum_key": f"{item.key}-{opt_suffix}", "lj_energy": float(cs.lj[c]),
                    "buckingham_energy": float(cs.buckingham[c]), "packing_coefficient": float(cs.packing[c]),
                    "molecular_volume_a3": float(volume), "cell_volume_a3": float(torch.linalg.det(cs.cell[c])),
                    "min_contact_ratio": _finite(contact[c]), "energy_cutoff_a": params["cutoff"],
                    "opt_cutoff_a": params["opt_cutoff"], "noise_sigma": params["noise_sigma"] if c != r else 0.0,
                    "opt_steps": int(cs.opt_steps[r]), "opt_initial_lj_energy": float(cs.opt_initial_energy[r]),
                    "opt_final_lj_energy": float(cs.opt_final_energy[r]), "opt_converged": bool(cs.opt_converged[r]),
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
        out[0][1]["_timings"] = timings
        return out

    @staticmethod
    def _mace_model(z, params):
        """The build's MACE model (loaded once per process), checked to cover the elements of z."""
        from ..crystals.mace import cached_model

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

        from ..crystals.energy import pose_molecules

        idx = torch.tensor(flat)
        H, coords, _ = pose_molecules(cs.params[idx], mols, torch.zeros_like(idx))
        n = len(z)
        res = model.lattice_energies(z, coords[:, :n].numpy(), H.numpy(), std_positions=mols.coords[0, :n].numpy())
        if not (np.isfinite(res["lattice"]).all() and math.isfinite(res["gas"])):
            raise MoleculeFailure("mace", "non-finite MACE energy")
        return res

    # ---- schema and card ----------------------------------------------------------------
    def features(self, config: str = "default", params: dict | None = None):
        from datasets import Array2D, Features, List, Value

        f64, i64 = Value("float64"), Value("int64")
        meta = {"inchikey": Value("string"), "smiles": Value("string"), "parent_key": Value("string"),
                "parent_source": Value("string"), "seed": i64, "is_optimum": Value("bool"),
                "optimum_key": Value("string"), "lj_energy": f64, "buckingham_energy": f64,
                "packing_coefficient": f64, "molecular_volume_a3": f64, "cell_volume_a3": f64,
                "min_contact_ratio": f64, "energy_cutoff_a": f64, "opt_cutoff_a": f64, "noise_sigma": f64,
                "opt_steps": i64, "opt_initial_lj_energy": f64, "opt_final_lj_energy": f64,
                "opt_converged": Value("bool"), "molecule_n_starts": i64, "molecule_n_converged": i64,
                "molecule_n_below_threshold": i64, "molecule_n_too_close": i64, "molecule_n_optima": i64}
        if params and params.get("mace_model"):
            meta.update({"mace_lattice_energy_ev": f64, "mace_cell_energy_ev": f64, "mace_gas_energy_ev": f64})
        return Features({
            "__key__": Value("string"),
            "__url__": Value("string"),
            "atomic_numbers.npy": List(Value("uint8")),
            "cell.npy": Array2D(shape=(3, 3), dtype="float64"),
            "meta.json": dict(sorted(meta.items())),
            "params.npy": List(Value("float64"), length=12),
            "positions.npy": Array2D(shape=(None, 3), dtype="float64"),
        })

    def card_body(self, manifest: dict) -> str:
        p = manifest["parameters"]
        mace = (f"MACE lattice energies from the local model file `{Path(p['mace_model']).name}` (sha256 "
                f"`{p['mace_model_sha256']}`), evaluated in {p['mace_dtype']}." if p.get("mace_model")
                else "This build has no MACE energies (built without `--mace-model`).")
        return CARD_BODY.format(starts=p["n_starts"], packing=p["target_packing"], opt_cutoff=p["opt_cutoff"],
                                max_steps=p["max_steps"], threshold=p["energy_threshold"],
                                clip=p.get("max_grad_norm") or "(off)",
                                contact=p["min_contact_ratio"], noisy=p["n_noisy"], sigma=p["noise_sigma"],
                                cutoff=p["cutoff"], mace=mace)


CARD_BODY = """## How it was built

Paper 002 (Mo3ENet), section 4.4 and appendix F. Inputs are conformers of a
`random-conformers` release (or SMILES run through the same conformer pipeline). Each
molecule is a rigid body; per molecule, with a generator seeded by (build seed, key):

1. {starts} random P1, Z'=1 starts: cell angles uniform in [70, 110] deg, orientation uniform
   on SO(3), centroid uniform in the cell, cell lengths from the posed molecule's extent + 3 A
   with random aspect factors, scaled to a packing coefficient of exactly {packing}.
2. Rigid-body optimization of the 12 parameters against the Lennard-Jones energy per molecule
   (cutoff {opt_cutoff} A): Adam on log lengths and logit-mapped angles (kept in
   [60.5, 119.5] deg), each crystal's gradient clipped to norm {clip} (most random starts
   have clashes whose huge gradients would otherwise stall Adam in loose cells), at most
   {max_steps} steps, converged when the energy stops decreasing.
3. Kept: converged optima with E_LJ < {threshold} (per molecule, at the optimization cutoff)
   whose shortest intermolecular contact is at least {contact} x the sum of the two atoms'
   vdW radii (`meta.min_contact_ratio`; the LJ pair energy at 0.8 x sigma is +43).
4. {noisy} noisy copies of each kept optimum: Gaussian noise of standard deviation {sigma} on
   the standardized parameters (log lengths / 0.5, angles / 0.2015 rad, fractional
   coordinates / 0.2887, rotation-vector components / 1.328 rad), then angles clipped into
   [60.5, 119.5] deg, fractional coordinates wrapped into [0, 1).
5. Energies of every crystal (optima and copies) with a {cutoff} A cutoff.

Keys: `<conformer key>-cNN` is optimum NN of a molecule, `<conformer key>-cNN-nKK` its noisy
copy KK. Every crystal of a molecule carries the molecule's InChIKey (`meta.inchikey`), so all
of them are in the same split: a molecule is never in two splits.

## Crystal model and units

* `params.npy` (12, float64): a, b, c (Angstrom), alpha, beta, gamma (radians), u, v, w
  (fractional coordinates of the molecule's geometric centroid), rx, ry, rz (rotation vector,
  radians, from the molecule's standard frame to its pose).
* `cell.npy` (3 x 3, float64, Angstrom): rows are the lattice vectors; a along x, b in the xy
  plane; Cartesian = fractional @ cell.
* `positions.npy` (N x 3, float64, Angstrom): the rigid molecule in its standard frame
  (centroid at the origin, axes = principal axes of the unit-weight inertia tensor, smallest
  moment first, signs fixed by the third moments). Atom positions in the crystal:
  `positions @ R(rx, ry, rz).T + (u, v, w) @ cell`, images translated by integer
  combinations of the cell rows. `atomic_numbers.npy` (uint8).
* Energies are per molecule (lattice energy: every intermolecular pair of the infinite crystal
  counted once per molecule), over pairs closer than the cutoff, without shift or tail
  correction. Both potentials use s_ij = r_vdw,i + r_vdw,j (RDKit vdW radii, Bondi for H, C, O, F).
  * Lennard-Jones, eps = 1 (dimensionless): E = 4 [(s/r)^12 - (s/r)^6], minimum -1 at r = 2^(1/6) s.
  * Buckingham (dimensionless): E = A exp(-B r/s) - C (r/s)^-6 with B = 1, C = -0.2 and
    A = -1.2 e = -3.26194. Derivation: a minimum of -1 at r = s requires A e^-B - C = -1 and
    -A B e^-B + 6 C = 0; with B = 1 this gives C = -0.2 and A = 6 e C = -1.2 e (the paper's
    -3.2619 rounded). With A, C < 0 the exponential is the attractive term, so the attraction
    decays slowly (a C...C pair still has E = -0.56 at 6 A).
* Cutoff choice: stored energies use {cutoff} A (the authors' code uses 10 A; the paper text
  says 6 A, which drops much of the slowly decaying Buckingham attraction); the optimizer uses
  {opt_cutoff} A for speed, where the LJ tail is small.
* `meta.packing_coefficient` = V_vdW(molecule) / V_cell (Z = 1), the molecular volume being
  the union of the vdW spheres (`meta.molecular_volume_a3`, A^3).
* MACE (optional): `meta.mace_lattice_energy_ev` = E_cell / Z - E_gas in eV per molecule,
  E_cell the MACE energy of the periodic unit cell, E_gas that of the same rigid molecule in
  vacuum (`meta.mace_cell_energy_ev`, `meta.mace_gas_energy_ev`). {mace}

## Other fields (`meta.json`)

`is_optimum`, `optimum_key` (the optimum a copy comes from; its own key for an optimum),
`parent_key` / `parent_source` (the conformer), `smiles`, `seed`, `noise_sigma` (0 for
optima), the optimization record of the optimum (`opt_steps`, `opt_initial_lj_energy`,
`opt_final_lj_energy` at the optimization cutoff, `opt_converged`) and per-molecule counts
(`molecule_n_starts`, `molecule_n_converged`, `molecule_n_below_threshold`,
`molecule_n_too_close`, `molecule_n_optima`). A molecule with no kept optimum is a recorded
failure (stage `optimize`).
"""
